// Domain: the Keap REST v2 record shapes the sandbox serves (a subset of Keap's OpenAPI schemas). Which
// list holds which shape is generators.ts's `SandboxRecords`.

export interface CustomFieldValue {
  id: string;
  content: string | number | boolean | null;
}

export interface EmailAddress {
  email: string;
  field: 'EMAIL1' | 'EMAIL2' | 'EMAIL3';
  is_opt_in?: boolean;
  email_opt_status?: string;
  opt_in_reason?: string;
}

export interface PhoneNumber {
  number: string;
  field: 'PHONE1' | 'PHONE2' | 'PHONE3' | 'PHONE4' | 'PHONE5';
  type?: string;
  extension?: string;
}

export interface Address {
  field?: 'BILLING' | 'SHIPPING' | 'OTHER';
  line1?: string;
  line2?: string;
  locality?: string;
  region_code?: string;
  country_code?: string;
  postal_code?: string;
}

export interface CurrencyValue {
  amount: number;
  currency_code: string;
  formatted_amount: string;
}

/** Keap's `Contact` (REST v2). Times are ISO-8601 strings with milliseconds. */
export interface Contact {
  id: string;
  given_name?: string;
  family_name?: string;
  middle_name?: string;
  email_addresses: EmailAddress[];
  phone_numbers: PhoneNumber[];
  addresses: Address[];
  company?: { id: string; company_name: string };
  job_title?: string;
  owner_id?: string;
  contact_type?: string;
  source_type?: string;
  time_zone?: string;
  preferred_locale?: string;
  website?: string;
  score_value?: string;
  tag_ids: string[];
  custom_fields: CustomFieldValue[];
  create_time: string;
  update_time: string;
}

/** Keap's `Company`. */
export interface Company {
  id: string;
  company_name: string;
  email_address?: EmailAddress;
  phone_number?: PhoneNumber;
  address?: Address;
  website?: string;
  notes?: string;
  custom_fields: CustomFieldValue[];
  create_time: string;
  update_time: string;
}

export interface OrderItem {
  id: string;
  name: string;
  quantity: number;
  item_type: 'PRODUCT';
  price_per_unit: CurrencyValue;
  product: { id: string; name: string; sku: string };
}

/** Keap's `OrderV2`. Its update field is `modification_time`. */
export interface Order {
  id: string;
  title: string;
  status: 'DRAFT' | 'SENT' | 'VIEWED' | 'PAID';
  total: CurrencyValue;
  total_paid: CurrencyValue;
  total_due: CurrencyValue;
  contact: { id: string; email?: string; given_name?: string; family_name?: string };
  order_type: 'ONLINE' | 'OFFLINE';
  source_type: string;
  invoice_number: string;
  order_items: OrderItem[];
  custom_fields: CustomFieldValue[];
  order_time: string;
  creation_time: string;
  modification_time: string;
}

/** Keap's `RestV2Opportunity`. Its update field is `last_updated_time`. */
export interface Opportunity {
  id: string;
  opportunity_title: string;
  contact: { id: string; email?: string; first_name?: string; last_name?: string; company_name?: string };
  stage: { id: string; name: string; details: { probability: number; stage_order: number } };
  user?: { id: string; first_name?: string; last_name?: string };
  next_action_time?: string;
  estimated_close_time?: string;
  include_in_forecast: boolean;
  projected_revenue_low: number;
  projected_revenue_high: number;
  custom_fields: CustomFieldValue[];
  created_by: string;
  last_updated_by: string;
  status_id?: string;
  created_time: string;
  last_updated_time: string;
}

/** Keap's `Tag`. */
export interface Tag {
  id: string;
  name: string;
  description?: string;
  category?: { id: string };
  create_time: string;
  update_time: string;
}

/** One tag applied to one contact; id is `${tag_id}:${contact_id}`. Served as Keap's `TaggedContact`. */
export interface TagApplication {
  id: string;
  tag_id: string;
  contact_id: string;
  applied_time: string;
}

/** Keap's `Note`. */
export interface Note {
  id: string;
  title?: string;
  text?: string;
  type?: string;
  contact_id: string;
  assigned_to_user?: { id: string; given_name?: string; family_name?: string; email_address?: string };
  created_by_user_id: string;
  last_updated_by_user_id: string;
  custom_fields: CustomFieldValue[];
  create_time: string;
  update_time: string;
}

/** Keap's `Task`. Its update field is `modification_time`. */
export interface Task {
  id: string;
  title: string;
  description?: string;
  type?: string;
  priority: 'CRITICAL' | 'ESSENTIAL' | 'NONESSENTIAL';
  completed: boolean;
  contact_id?: string;
  assigned_to_user_id?: string;
  created_by_user_id: string;
  due_time?: string;
  completion_time?: string;
  custom_fields: CustomFieldValue[];
  create_time: string;
  modification_time: string;
}

/** Keap's `RestV2Product_List`. */
export interface Product {
  id: string;
  name: string;
  sku: string;
  price: CurrencyValue;
  active: boolean;
  description?: string;
  short_description?: string;
  shippable: boolean;
  taxable: boolean;
  subscription_only: boolean;
  storefront_hidden: boolean;
  create_time: string;
  update_time: string;
}

/** Keap's `Subscription`. Its update field is `modification_time`; dates are `YYYY-MM-DD`. */
export interface Subscription {
  id: string;
  contact_id: string;
  product_id: string;
  subscription_plan_id: string;
  quantity: number;
  active: boolean;
  billing_amount: number;
  billing_cycle: 'YEAR' | 'MONTH' | 'WEEK' | 'DAY';
  billing_frequency: number;
  auto_charge: boolean;
  start_date: string;
  next_bill_date?: string;
  end_date?: string;
  custom_fields: CustomFieldValue[];
  modification_time: string;
}

/** Keap's `User`. */
export interface User {
  id: string;
  given_name: string;
  family_name: string;
  email_addresses: EmailAddress[];
  status: 'ACTIVE' | 'INACTIVE';
  admin: boolean;
  partner: boolean;
  company_name?: string;
  create_time: string;
  update_time: string;
}

/** Keap's `CustomFieldMetaData`, as served by `GET /rest/v2/{object}/model`. */
export interface CustomFieldMetaData {
  id: string;
  label: string;
  field_name: string;
  field_type: 'TEXT' | 'WHOLE_NUMBER' | 'DATE' | 'DROPDOWN' | 'YES_NO';
  record_type: 'CONTACT' | 'COMPANY' | 'ORDER' | 'OPPORTUNITY' | 'TASK_NOTE_APPOINTMENT' | 'SUBSCRIPTION';
  options?: Array<{ id: string; label: string }>;
  group_id?: string;
  group_name?: string;
}
