// Domain: the sandbox's page latency model. Keap takes real time to build a list page: a base cost per
// page plus a cost per record in it (e.g. 300 ms + 2 ms per record), with some jitter. Off by default.
import { z } from 'zod';
import { SandboxConfigError } from './errors.ts';
import { Prng } from './prng.ts';

/** How long the sandbox takes to build one list page of `records` records. */
export interface PageLatency {
  /** Per page, ms. */
  baseMs: number;
  /** Per record in the page, ms. */
  perRecordMs: number;
  /**
   * Relative jitter, 0..1: each page takes the nominal time times a uniform factor in
   * [1 - jitter, 1 + jitter] (default 0).
   */
  jitter?: number;
}

export const pageLatencySchema = z
  .object({
    baseMs: z.number().finite().nonnegative(),
    perRecordMs: z.number().finite().nonnegative(),
    jitter: z.number().min(0).max(1).optional(),
  })
  .strict();

/**
 * Parses the command-line form `<base>[+<perRecord>/record]`, in ms, e.g. "300+2/record", "300",
 * "0+1.5/record". Throws a SandboxConfigError naming what is wrong.
 */
export function parsePageLatency(text: string, jitter?: number): PageLatency {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\+\s*(\d+(?:\.\d+)?)\s*\/\s*records?)?\s*$/.exec(text);
  if (!m)
    throw new SandboxConfigError(
      'pageLatency',
      `expected "<base ms>+<ms per record>/record", e.g. "300+2/record", got "${text}"`,
    );
  const out: PageLatency = { baseMs: Number(m[1]), perRecordMs: Number(m[2] ?? 0) };
  if (jitter !== undefined) {
    if (!Number.isFinite(jitter) || jitter < 0 || jitter > 1)
      throw new SandboxConfigError('pageLatency.jitter', `must be a share from 0 to 1, got ${jitter}`);
    out.jitter = jitter;
  }
  return out;
}

/** The model's nominal time for a page of `records` records (no jitter). */
export function nominalPageMs(model: PageLatency, records: number): number {
  return model.baseMs + model.perRecordMs * records;
}

/** Draws page latencies from a model; deterministic for a seed (its own stream, so nothing else shifts). */
export class PageLatencyModel {
  readonly model: PageLatency;
  private readonly rng: Prng;

  constructor(model: PageLatency, seed: number) {
    this.model = model;
    this.rng = new Prng(seed, 6);
  }

  /** The time to build the next page of `records` records, ms. */
  draw(records: number): number {
    const nominal = nominalPageMs(this.model, records);
    const j = this.model.jitter ?? 0;
    return j === 0 ? nominal : nominal * (1 - j + 2 * j * this.rng.next());
  }
}
