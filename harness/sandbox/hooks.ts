// Adapter: Keap's REST hooks in the sandbox: subscriptions (`/rest/v1/hooks`), the X-Hook-Secret
// handshake and batched deliveries with Keap's retry policy. Every delay is Keap's documented one times
// `timeScale`, so a test runs the whole policy (four attempts, then Inactive) in seconds.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { eventKeyOf, HOOK_EVENT_KEYS, type HookEventKind, hookEventOf } from '#shared/hooks/events.ts';
import { REGISTRY } from '#shared/keap/registry.ts';
import { ApiError, SandboxConfigError } from './errors.ts';
import type { ResourceType } from './generators.ts';
import { Prng } from './prng.ts';

export type HookStatus = 'Unverified' | 'Verified' | 'Inactive';

/** A subscription as Keap's v1 API shows it. */
export interface SandboxHook {
  key: string;
  eventKey: string;
  hookUrl: string;
  status: HookStatus;
}

export interface HookSettings {
  /** Every delay of Keap's policy times this (default 1: Keap's own 30-60 s, 5 min, 30 min). */
  timeScale?: number;
  /** A receiver that has not answered after this long has failed; default 30 s times `timeScale`. */
  responseTimeoutMs?: number;
  /** Handshake inside `POST /hooks` (the create answer then says Verified on success); default false. */
  verifyOnCreate?: boolean;
}

export const hookSettingsSchema = z
  .object({
    timeScale: z.number().positive().max(10).optional(),
    responseTimeoutMs: z.number().positive().optional(),
    verifyOnCreate: z.boolean().optional(),
  })
  .strict();

/** Keap's documented policy, in ms before scaling. */
export const KEAP_HOOK_POLICY = {
  firstAttempt: [30_000, 60_000],
  /** contactGroup.applied and contactGroup.delete wait longer before the first attempt. */
  slowFirstAttempt: [300_000, 600_000],
  slowEventKeys: ['contactGroup.applied', 'contactGroup.delete'],
  /** Waits after the 1st, 2nd and 3rd failed attempt. */
  retries: [
    [30_000, 60_000],
    [300_000, 300_000],
    [1_800_000, 1_800_000],
  ],
  attempts: 4,
  responseTimeoutMs: 30_000,
  maxObjectsPerDelivery: 1000,
} as const;

/** One changed object of a delivery: ids only, as Keap sends them. */
export interface HookObject {
  id: number;
  apiUrl: string;
  timestamp: string;
  /** Tag applications only: the contact the tag was applied to or removed from (UNVERIFIED form). */
  contact_id?: number;
}

export interface HookAttempt {
  attempt: number;
  /** Sandbox clock, epoch ms. */
  at: number;
  /** Real ms since the sandbox started: compare gaps with the scaled policy, never wall times. */
  realMs: number;
  status?: number;
  error?: string;
  ok: boolean;
}

export type DeliveryState = 'waiting' | 'sending' | 'delivered' | 'failed' | 'cancelled';

export interface HookDelivery {
  id: number;
  hookKey: string;
  eventKey: string;
  ids: string[];
  state: DeliveryState;
  attempts: HookAttempt[];
  /** Why a delivery ended without success: `410`, `4 attempts failed`, `hook inactive`, ... */
  reason?: string;
}

export interface HookVerification {
  at: number;
  realMs: number;
  ok: boolean;
  status?: number;
  error?: string;
}

export interface HooksSnapshot {
  settings: { timeScale: number; responseTimeoutMs: number; verifyOnCreate: boolean };
  hooks: Array<SandboxHook & { pending: number; verifications: HookVerification[] }>;
  deliveries: HookDelivery[];
}

interface HookState extends SandboxHook {
  secret?: string;
  pending: HookObject[];
  flushTimer?: NodeJS.Timeout;
  verifications: HookVerification[];
}

const hookBodySchema = z
  .object({ eventKey: z.string().min(1), hookUrl: z.url({ protocol: /^https?$/ }) })
  .strict();

const MAX_DELIVERIES_KEPT = 2000;

function parseJson(raw: string): unknown {
  try {
    return raw === '' ? undefined : JSON.parse(raw);
  } catch {
    throw new ApiError(400, 'The request body is not valid JSON.');
  }
}

/** The sandbox's REST hook subscriptions and their deliveries. */
export class SandboxHooks {
  private readonly hooks = new Map<string, HookState>();
  private readonly deliveries: HookDelivery[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly rng: Prng;
  private readonly clock: () => number;
  private readonly baseUrl: () => string;
  private readonly closing = new AbortController();
  private readonly started = performance.now();
  private readonly scale: number;
  private readonly timeoutMs: number;
  private readonly verifyOnCreate: boolean;
  private nextKey = 1;
  private nextDelivery = 1;

  constructor(options: {
    settings?: HookSettings;
    seed: number;
    clock: () => number;
    baseUrl: () => string;
  }) {
    const s = hookSettingsSchema.safeParse(options.settings ?? {});
    if (!s.success) {
      const issue = s.error.issues[0];
      throw new SandboxConfigError(
        `hooks.${issue?.path.map(String).join('.') ?? ''}`,
        issue?.message ?? 'invalid',
      );
    }
    this.scale = s.data.timeScale ?? 1;
    this.timeoutMs = s.data.responseTimeoutMs ?? KEAP_HOOK_POLICY.responseTimeoutMs * this.scale;
    this.verifyOnCreate = s.data.verifyOnCreate ?? false;
    this.rng = new Prng(options.seed, 5);
    this.clock = options.clock;
    this.baseUrl = options.baseUrl;
  }

  // ---------------------------------------------------------------- v1 API

  /** Serves `<method> /rest/v1/hooks[/...]`; `sub` is the path after `hooks`, without slashes at the ends. */
  async handle(
    method: string,
    sub: string,
    raw: string,
    headers: Readonly<Record<string, string | string[] | undefined>>,
  ): Promise<{ status: number; body?: unknown }> {
    const parts = sub.split('/').filter((s) => s !== '');
    const [key, action] = parts;
    if (parts.length === 0) {
      if (method === 'GET') return { status: 200, body: this.list() };
      if (method === 'POST') return { status: 200, body: await this.create(parseJson(raw)) };
    } else if (parts.length === 1 && key === 'event_keys') {
      if (method === 'GET') return { status: 200, body: [...HOOK_EVENT_KEYS] };
    } else if (parts.length === 1 && key !== undefined) {
      if (method === 'GET') return { status: 200, body: this.view(this.must(key)) };
      if (method === 'PUT') return { status: 200, body: this.update(key, parseJson(raw)) };
      if (method === 'DELETE') {
        this.remove(key);
        return { status: 204 };
      }
    } else if (parts.length === 2 && key !== undefined && method === 'POST') {
      if (action === 'verify') return { status: 200, body: await this.verify(key) };
      if (action === 'delayedVerify') {
        const h = headers['x-hook-secret'];
        return { status: 200, body: this.delayedVerify(key, Array.isArray(h) ? h[0] : h) };
      }
    } else throw new ApiError(404, `No v1 endpoint /rest/v1/hooks/${sub}.`);
    throw new ApiError(405, `Method ${method} is not allowed on /rest/v1/hooks${sub ? `/${sub}` : ''}.`);
  }

  list(): SandboxHook[] {
    return [...this.hooks.values()].map((h) => this.view(h));
  }

  get(key: string): SandboxHook | undefined {
    const h = this.hooks.get(key);
    return h ? this.view(h) : undefined;
  }

  async create(body: unknown): Promise<SandboxHook> {
    const { eventKey, hookUrl } = this.parseHookBody(body);
    const key = String(this.nextKey++);
    const h: HookState = { key, eventKey, hookUrl, status: 'Unverified', pending: [], verifications: [] };
    this.hooks.set(key, h);
    if (this.verifyOnCreate) await this.handshake(h);
    return this.view(h);
  }

  update(key: string, body: unknown): SandboxHook {
    const h = this.must(key);
    const { eventKey, hookUrl } = this.parseHookBody(body);
    if (hookUrl !== h.hookUrl || eventKey !== h.eventKey) {
      this.stop(h, 'hook changed');
      h.status = 'Unverified';
      h.secret = undefined;
    }
    h.eventKey = eventKey;
    h.hookUrl = hookUrl;
    return this.view(h);
  }

  remove(key: string): void {
    const h = this.must(key);
    this.stop(h, 'hook deleted');
    this.hooks.delete(key);
  }

  /** `POST /hooks/{key}/verify`: the handshake now; Verified when the receiver echoes the secret. */
  async verify(key: string): Promise<SandboxHook> {
    const h = this.must(key);
    await this.handshake(h);
    return this.view(h);
  }

  /** `POST /hooks/{key}/delayedVerify`: the receiver sends back the secret of the last handshake. */
  delayedVerify(key: string, secret: string | undefined): SandboxHook {
    const h = this.must(key);
    if (!secret) throw new ApiError(400, 'Send the X-Hook-Secret of the last handshake as a header.');
    if (h.secret === undefined || secret !== h.secret)
      throw new ApiError(400, 'The X-Hook-Secret does not match the last one sent to the hook URL.');
    h.status = 'Verified';
    return this.view(h);
  }

  // ---------------------------------------------------------------- events

  /** Records changes of one list; every Verified hook on the event's key delivers them, batched. */
  emit(type: ResourceType, event: HookEventKind, ids: readonly string[], now: number): void {
    if (ids.length === 0) return;
    const spec = (REGISTRY[type] as { hook?: { events: readonly HookEventKind[] } }).hook;
    if (!spec?.events.includes(event)) return;
    const eventKey = eventKeyOf(type as Parameters<typeof eventKeyOf>[0], event);
    const targets = [...this.hooks.values()].filter(
      (h) => h.eventKey === eventKey && h.status === 'Verified',
    );
    if (targets.length === 0) return;
    const path = REGISTRY[type].path;
    const objects = ids.map((id): HookObject => {
      const timestamp = new Date(now).toISOString();
      if (type === 'tagApplications') {
        const [tagId = '', contactId = ''] = id.split(':');
        return {
          id: Number(tagId),
          apiUrl: `${this.baseUrl()}/rest/v2/tags/${tagId}/contacts`,
          timestamp,
          contact_id: Number(contactId),
        };
      }
      return { id: Number(id), apiUrl: `${this.baseUrl()}${path}/${id}`, timestamp };
    });
    for (const h of targets) {
      h.pending.push(...objects);
      if (h.flushTimer) continue;
      const [min, max] = (KEAP_HOOK_POLICY.slowEventKeys as readonly string[]).includes(eventKey)
        ? KEAP_HOOK_POLICY.slowFirstAttempt
        : KEAP_HOOK_POLICY.firstAttempt;
      h.flushTimer = this.after(this.draw(min, max), () => {
        h.flushTimer = undefined;
        this.flush(h);
      });
    }
  }

  snapshot(): HooksSnapshot {
    return {
      settings: {
        timeScale: this.scale,
        responseTimeoutMs: this.timeoutMs,
        verifyOnCreate: this.verifyOnCreate,
      },
      hooks: [...this.hooks.values()].map((h) => ({
        ...this.view(h),
        pending: h.pending.length,
        verifications: h.verifications.map((v) => ({ ...v })),
      })),
      deliveries: this.deliveries.map((d) => ({
        ...d,
        ids: [...d.ids],
        attempts: d.attempts.map((a) => ({ ...a })),
      })),
    };
  }

  close(): void {
    this.closing.abort();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // ---------------------------------------------------------------- internals

  private view(h: HookState): SandboxHook {
    return { key: h.key, eventKey: h.eventKey, hookUrl: h.hookUrl, status: h.status };
  }

  private must(key: string): HookState {
    const h = this.hooks.get(key);
    if (!h) throw new ApiError(404, `Hook ${key} was not found.`);
    return h;
  }

  private parseHookBody(body: unknown): { eventKey: string; hookUrl: string } {
    const r = hookBodySchema.safeParse(body);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new ApiError(400, `Invalid ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}.`);
    }
    if (!hookEventOf(r.data.eventKey))
      throw new ApiError(
        400,
        `Unknown eventKey "${r.data.eventKey}"; GET /rest/v1/hooks/event_keys lists them.`,
      );
    return r.data;
  }

  private draw(min: number, max: number): number {
    return (min + this.rng.next() * (max - min)) * this.scale;
  }

  private after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private realMs(): number {
    return performance.now() - this.started;
  }

  /** POSTs to the hook URL with a timeout; the status, or the reason there is none. */
  private async post(
    url: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status?: number; headers?: Headers; error?: string }> {
    if (this.closing.signal.aborted) return { error: 'sandbox closing' };
    const timeout = AbortSignal.timeout(this.timeoutMs);
    try {
      const init: RequestInit = {
        method: 'POST',
        headers,
        signal: AbortSignal.any([this.closing.signal, timeout]),
      };
      if (body !== undefined) init.body = body;
      const res = await fetch(url, init);
      await res.arrayBuffer();
      return { status: res.status, headers: res.headers };
    } catch (err) {
      if (timeout.aborted) return { error: `no answer within ${Math.round(this.timeoutMs)} ms` };
      return { error: err instanceof Error ? `${err.name}: ${err.message}` : 'request failed' };
    }
  }

  private async handshake(h: HookState): Promise<void> {
    const secret = randomBytes(24).toString('base64url');
    h.secret = secret;
    const at = this.clock();
    const realMs = this.realMs();
    const r = await this.post(h.hookUrl, { 'X-Hook-Secret': secret });
    const ok = r.status === 200 && r.headers?.get('x-hook-secret') === secret;
    const v: HookVerification = { at, realMs, ok };
    if (r.status !== undefined) v.status = r.status;
    if (r.error !== undefined) v.error = r.error;
    h.verifications.push(v);
    if (!this.hooks.has(h.key)) return;
    if (ok) h.status = 'Verified';
    else if (h.status === 'Verified') h.status = 'Unverified';
  }

  private flush(h: HookState): void {
    const objects = h.pending.splice(0);
    if (h.status !== 'Verified' || !this.hooks.has(h.key)) return;
    for (let i = 0; i < objects.length; i += KEAP_HOOK_POLICY.maxObjectsPerDelivery) {
      const batch = objects.slice(i, i + KEAP_HOOK_POLICY.maxObjectsPerDelivery);
      const d: HookDelivery = {
        id: this.nextDelivery++,
        hookKey: h.key,
        eventKey: h.eventKey,
        ids: batch.map((o) => (o.contact_id === undefined ? String(o.id) : `${o.id}:${o.contact_id}`)),
        state: 'waiting',
        attempts: [],
      };
      this.deliveries.push(d);
      if (this.deliveries.length > MAX_DELIVERIES_KEPT) this.deliveries.shift();
      const body = JSON.stringify({
        event_key: h.eventKey,
        object_type: h.eventKey.split('.')[0],
        object_keys: batch,
      });
      void this.attempt(h, d, body);
    }
  }

  private async attempt(h: HookState, d: HookDelivery, body: string): Promise<void> {
    if (d.state === 'cancelled') return;
    if (h.status !== 'Verified' || !this.hooks.has(h.key)) {
      this.end(d, 'cancelled', `hook ${h.status === 'Verified' ? 'deleted' : h.status}`);
      return;
    }
    d.state = 'sending';
    const at = this.clock();
    const realMs = this.realMs();
    const r = await this.post(h.hookUrl, { 'content-type': 'application/json' }, body);
    if (this.closing.signal.aborted) return;
    const ok = r.status !== undefined && r.status >= 200 && r.status < 400;
    const a: HookAttempt = { attempt: d.attempts.length + 1, at, realMs, ok };
    if (r.status !== undefined) a.status = r.status;
    if (r.error !== undefined) a.error = r.error;
    d.attempts.push(a);
    if (ok) {
      this.end(d, 'delivered');
      return;
    }
    if (r.status === 410) {
      this.end(d, 'failed', 'the receiver answered 410');
      this.deactivate(h);
      return;
    }
    const wait = KEAP_HOOK_POLICY.retries[d.attempts.length - 1];
    if (!wait || d.attempts.length >= KEAP_HOOK_POLICY.attempts) {
      this.end(d, 'failed', `${d.attempts.length} attempts failed`);
      this.deactivate(h);
      return;
    }
    d.state = 'waiting';
    this.after(this.draw(wait[0], wait[1]), () => {
      void this.attempt(h, d, body);
    });
  }

  private end(d: HookDelivery, state: DeliveryState, reason?: string): void {
    d.state = state;
    if (reason !== undefined) d.reason = reason;
  }

  /** Inactive: nothing more is delivered until the hook is verified again. */
  private deactivate(h: HookState): void {
    h.status = 'Inactive';
    this.stop(h, 'hook inactive');
  }

  private stop(h: HookState, reason: string): void {
    h.pending = [];
    if (h.flushTimer) {
      clearTimeout(h.flushTimer);
      this.timers.delete(h.flushTimer);
      h.flushTimer = undefined;
    }
    for (const d of this.deliveries)
      if (d.hookKey === h.key && d.state === 'waiting') this.end(d, 'cancelled', reason);
  }
}
