// Use case: the REST hook receiver's core, pure (no AWS, no I/O). Given one HTTP request it answers
// what to send back and, for an accepted delivery, the jobs to enqueue. The adapter (a Lambda or a
// local server) enqueues those jobs and only then sends the 200, so Keap retries whatever was not
// queued; it never does the work inline, because Keap gives a receiver 30 s before it counts a failure.
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { hookEventOf } from './events.ts';
import { HOOK_JOB_MAX_IDS, type HookEventJob, hookEventJobSchema } from './job.ts';

/** The one request header of Keap's verification handshake; the receiver echoes it. */
export const HOOK_SECRET_HEADER = 'x-hook-secret';
/** Keap sends at most this many objects in one delivery. */
export const KEAP_MAX_OBJECTS_PER_DELIVERY = 1000;
/** Shortest per-account URL token accepted (base64url of 16 random bytes is 22 characters). */
export const MIN_TOKEN_LENGTH = 22;

export interface HookRequest {
  method: string;
  /** The request path; the last segment is the account's token (`/hooks/<token>`). A query is ignored. */
  path: string;
  /** Header names in any case. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  body: string;
}

export interface HookResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type HookRejection =
  | 'no-token'
  | 'wrong-token'
  | 'method'
  | 'too-large'
  | 'invalid-json'
  | 'invalid-payload'
  | 'unregistered-event';

export type HookOutcome =
  | { kind: 'handshake'; response: HookResponse }
  | {
      kind: 'accepted';
      response: HookResponse;
      eventKey: string;
      /** Objects in the delivery (before ids were de-duplicated). */
      objects: number;
      jobs: HookEventJob[];
    }
  | { kind: 'rejected'; reason: HookRejection; message: string; response: HookResponse };

export interface HookReceiverSettings {
  account: string;
  /** The unguessable token the account's hook URLs end with (Keap signs nothing; the URL is the secret). */
  token: string;
  /** The event keys registered for the account; deliveries of any other key are refused. */
  eventKeys: readonly string[];
  /** Largest body accepted, in bytes (UTF-8). */
  maxBodyBytes: number;
  /** Ids per job; default and most HOOK_JOB_MAX_IDS. */
  idsPerJob?: number;
  /** Default Date.now. */
  clock?: () => number;
}

/** The receiver's settings are unusable; thrown once, when the receiver is built. */
export class HookReceiverConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HookReceiverConfigError';
  }
}

const numericId = z
  .union([z.number().int().nonnegative(), z.string().regex(/^[0-9]{1,20}$/)])
  .transform(String);

/** One changed object: ids only, never a record. `contact_id` is the sandbox's tag-application form. */
const objectKeySchema = z.looseObject({
  id: numericId,
  apiUrl: z.string().nullish(),
  timestamp: z.string().nullish(),
  contact_id: numericId.optional(),
});

export const hookPayloadSchema = z.looseObject({
  event_key: z.string().min(1).max(100),
  object_type: z.string().nullish(),
  object_keys: z.array(objectKeySchema).max(KEAP_MAX_OBJECTS_PER_DELIVERY),
});

export type HookPayload = z.output<typeof hookPayloadSchema>;

function reply(status: number, body: unknown, headers: Record<string, string> = {}): HookResponse {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(body),
  };
}

function reject(reason: HookRejection, status: number, message: string, headers?: Record<string, string>) {
  return { kind: 'rejected' as const, reason, message, response: reply(status, { message }, headers) };
}

function header(req: HookRequest, name: string): string | undefined {
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.toLowerCase() !== name) continue;
    const value = typeof v === 'string' ? v : v?.[0];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Compares in time independent of where the strings differ (and of their lengths: digests are compared). */
export function tokensEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

function lastSegment(path: string): string {
  const clean = path.split('?')[0] ?? '';
  const parts = clean.split('/').filter((s) => s !== '');
  return parts[parts.length - 1] ?? '';
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Builds the receiver of one account; its settings are checked once, here. */
export function createHookReceiver(settings: HookReceiverSettings): (req: HookRequest) => HookOutcome {
  if (settings.token.length < MIN_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+$/.test(settings.token))
    throw new HookReceiverConfigError(
      `The hook token must be at least ${MIN_TOKEN_LENGTH} URL-safe characters (letters, digits, - and _).`,
    );
  for (const key of settings.eventKeys)
    if (!hookEventOf(key))
      throw new HookReceiverConfigError(`The event key "${key}" names no list of the registry.`);
  if (!Number.isInteger(settings.maxBodyBytes) || settings.maxBodyBytes <= 0)
    throw new HookReceiverConfigError('maxBodyBytes must be a positive whole number of bytes.');
  const idsPerJob = settings.idsPerJob ?? HOOK_JOB_MAX_IDS;
  if (!Number.isInteger(idsPerJob) || idsPerJob < 1 || idsPerJob > HOOK_JOB_MAX_IDS)
    throw new HookReceiverConfigError(`idsPerJob must be a whole number from 1 to ${HOOK_JOB_MAX_IDS}.`);
  const registered = new Set(settings.eventKeys);
  const clock = settings.clock ?? Date.now;
  const { account, token, maxBodyBytes } = settings;
  // Fails here, not per delivery, when the account id is not one a job may carry.
  hookEventJobSchema.parse({
    kind: 'hookEvent',
    account,
    resource: 'contacts',
    event: 'add',
    ids: ['1'],
    receivedAt: new Date(0).toISOString(),
  });

  return (req) => {
    const given = lastSegment(req.path);
    if (given === '') return reject('no-token', 404, 'Not found.');
    if (!tokensEqual(given, token)) return reject('wrong-token', 403, 'Forbidden.');
    if (req.method.toUpperCase() !== 'POST')
      return reject('method', 405, `Method ${req.method} is not allowed; Keap delivers with POST.`, {
        allow: 'POST',
      });
    if (Buffer.byteLength(req.body, 'utf8') > maxBodyBytes)
      return reject('too-large', 413, `The body is larger than ${maxBodyBytes} bytes.`);

    const secret = header(req, HOOK_SECRET_HEADER);
    if (secret !== undefined)
      return { kind: 'handshake', response: reply(200, { verified: true }, { 'X-Hook-Secret': secret }) };

    let raw: unknown;
    try {
      raw = JSON.parse(req.body);
    } catch {
      return reject('invalid-json', 400, 'The body is not valid JSON.');
    }
    const parsed = hookPayloadSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.map(String).join('.') || 'body';
      return reject('invalid-payload', 400, `Invalid payload at ${where}: ${issue?.message ?? 'invalid'}.`);
    }
    const payload = parsed.data;
    const event = hookEventOf(payload.event_key);
    if (!event || !registered.has(payload.event_key))
      return reject(
        'unregistered-event',
        422,
        `The event key "${payload.event_key}" is not registered here.`,
      );

    const ids = [
      ...new Set(
        payload.object_keys.map((o) =>
          event.resource === 'tagApplications' && o.contact_id !== undefined
            ? `${o.id}:${o.contact_id}`
            : o.id,
        ),
      ),
    ];
    const receivedAt = new Date(clock()).toISOString();
    const jobs = chunk(ids, idsPerJob).map((part) =>
      hookEventJobSchema.parse({
        kind: 'hookEvent',
        account,
        resource: event.resource,
        event: event.event,
        ids: part,
        receivedAt,
      }),
    );
    return {
      kind: 'accepted',
      eventKey: payload.event_key,
      objects: payload.object_keys.length,
      jobs,
      response: reply(200, { accepted: payload.object_keys.length, jobs: jobs.length }),
    };
  };
}
