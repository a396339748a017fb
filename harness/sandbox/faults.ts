// Domain: injected faults (5xx, hangs, HTML pages, broken JSON, slowness, 429 storms, revoked keys), seeded.
import { z } from 'zod';
import { SandboxConfigError } from './errors.ts';
import { Prng } from './prng.ts';

export interface SandboxFaults {
  /** 0..1 share of requests answered 500/502/503 (JSON or HTML body). */
  serverErrorRate?: number;
  /** 0..1 share of requests that never answer (until the client aborts). */
  hangRate?: number;
  /** 0..1 share answered with an HTML error page (status 502/503, text/html). */
  htmlErrorRate?: number;
  /** 0..1 share answered 200 with truncated/malformed JSON. */
  malformedJsonRate?: number;
  /** Extra delay on every response. */
  slowMs?: number;
  /** Every request in [from, until) (sandbox clock ms) gets 429. */
  storm429?: { from: number; until: number };
  /** Key answers 401 from that time on. */
  revokedKeys?: Array<{ key: string; from: number }>;
}

const rate = z.number().min(0).max(1);

export const faultsSchema = z
  .object({
    serverErrorRate: rate.optional(),
    hangRate: rate.optional(),
    htmlErrorRate: rate.optional(),
    malformedJsonRate: rate.optional(),
    slowMs: z.number().int().nonnegative().optional(),
    storm429: z
      .object({ from: z.number(), until: z.number() })
      .refine((s) => s.until >= s.from, { message: 'until must not be before from' })
      .optional(),
    revokedKeys: z.array(z.object({ key: z.string().min(1), from: z.number() })).optional(),
  })
  .strict();

/** Validates a (partial) fault setting; the error names the first bad setting. */
export function parseFaults(input: unknown, prefix = 'faults'): SandboxFaults {
  const r = faultsSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue ? issue.path.map(String).join('.') : '';
    throw new SandboxConfigError(path ? `${prefix}.${path}` : prefix, issue?.message ?? 'invalid');
  }
  return r.data;
}

export type FaultKind = 'hang' | 'server-error' | 'html-error' | 'malformed-json';

/**
 * Decides the fault (if any) for each request the gateway admitted, with one seeded draw per request.
 * Rates are checked in the order hang, server error, HTML error, malformed JSON; if they sum past 1,
 * the later ones get what is left.
 */
export class FaultInjector {
  private faults: SandboxFaults;
  private readonly rng: Prng;

  constructor(seed: number, faults: SandboxFaults) {
    this.faults = { ...faults };
    this.rng = new Prng(seed, 3);
  }

  get current(): Readonly<SandboxFaults> {
    return this.faults;
  }

  /** Merges `f` into the current faults (a key set to undefined clears that fault). */
  set(f: Partial<SandboxFaults>): void {
    this.faults = { ...this.faults, ...parseFaults(f) };
    for (const [k, v] of Object.entries(f))
      if (v === undefined) delete (this.faults as Record<string, unknown>)[k];
  }

  draw(): FaultKind | undefined {
    const f = this.faults;
    const r = this.rng.next();
    let edge = 0;
    const steps: Array<[FaultKind, number | undefined]> = [
      ['hang', f.hangRate],
      ['server-error', f.serverErrorRate],
      ['html-error', f.htmlErrorRate],
      ['malformed-json', f.malformedJsonRate],
    ];
    for (const [kind, p] of steps) {
      edge += p ?? 0;
      if (r < edge) return kind;
    }
    return undefined;
  }

  /** The status of an injected server error, and whether its body is an HTML page. */
  serverError(): { status: 500 | 502 | 503; html: boolean } {
    return { status: this.rng.pick([500, 502, 503] as const), html: this.rng.chance(0.5) };
  }

  htmlError(): 502 | 503 {
    return this.rng.pick([502, 503] as const);
  }

  /** Where a malformed body is cut (a share of its length). */
  cut(length: number): number {
    return Math.max(1, Math.min(length - 1, Math.floor(length * (0.2 + 0.6 * this.rng.next()))));
  }

  inStorm(t: number): boolean {
    const s = this.faults.storm429;
    return s !== undefined && t >= s.from && t < s.until;
  }

  revokedFrom(key: string | undefined): number | undefined {
    if (key === undefined) return undefined;
    let from: number | undefined;
    for (const r of this.faults.revokedKeys ?? []) if (r.key === key) from = Math.min(from ?? r.from, r.from);
    return from;
  }
}

export function htmlErrorPage(status: number): string {
  const title =
    status === 502
      ? '502 Bad Gateway'
      : status === 503
        ? '503 Service Temporarily Unavailable'
        : `${status} Internal Server Error`;
  return `<!DOCTYPE html>\n<html><head><title>${title}</title></head><body><center><h1>${title}</h1></center><hr><center>nginx</center></body></html>\n`;
}
