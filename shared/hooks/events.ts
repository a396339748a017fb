// Domain: Keap's REST hook event keys, derived from the registry's `hook` part of each list: which key
// announces what (list and event kind), and the keys a list answers to.
import { type HookEventKind, type ListEntry, REGISTRY, type ResourceName } from '../keap/registry.ts';

export type { HookEventKind };

/** The lists Keap announces through REST hooks: every registry entry with a `hook` part. */
export type HookResource = {
  [R in ResourceName]: (typeof REGISTRY)[R] extends { hook: object } ? R : never;
}[ResourceName];

export interface HookEvent {
  resource: HookResource;
  event: HookEventKind;
}

const entries = Object.entries(REGISTRY) as Array<[ResourceName, ListEntry]>;

/** The hooked lists, in the registry's order (a tuple, so it can feed `z.enum`). */
export const HOOK_RESOURCES = entries.filter(([, e]) => e.hook !== undefined).map(([name]) => name) as [
  HookResource,
  ...HookResource[],
];

export const HOOK_EVENT_KINDS = ['add', 'edit', 'delete', 'applied', 'removed'] as const satisfies readonly [
  HookEventKind,
  ...HookEventKind[],
];

/** The event key of a list's event: `contact.add`, `contactGroup.applied`, ... */
export function eventKeyOf(resource: HookResource, event: HookEventKind): string {
  const hook = (REGISTRY[resource] as ListEntry).hook;
  if (!hook?.events.includes(event))
    throw new RangeError(`The registry gives ${resource} no "${event}" hook event.`);
  return `${hook.object}.${event}`;
}

/** Every event key the registry knows, with the list and event kind it announces. */
export const HOOK_EVENTS: ReadonlyMap<string, HookEvent> = new Map(
  entries.flatMap(([resource, e]) =>
    (e.hook?.events ?? []).map((event): [string, HookEvent] => [
      `${e.hook?.object}.${event}`,
      { resource: resource as HookResource, event },
    ]),
  ),
);

/** Every event key the registry knows, in the registry's order. */
export const HOOK_EVENT_KEYS: readonly string[] = [...HOOK_EVENTS.keys()];

/** The list and event kind of an event key, or undefined when the registry knows no such key. */
export function hookEventOf(eventKey: string): HookEvent | undefined {
  return HOOK_EVENTS.get(eventKey);
}
