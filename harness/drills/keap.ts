// Adapter (drills, soak and fault benchmarks): the Keap stand-in a drill runs against, either the
// sandbox in this process (tests: quick, relaxed limits) or in its own process (benchmarks: its arrival
// stamps, which Keap's gateway rules judge, do not depend on how busy the workers' process is).
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import {
  type ArrivalRecord,
  type MutationChange,
  type MutationResult,
  type ResourceType,
  type SandboxFaults,
  type SandboxKey,
  type SandboxOptions,
  startSandbox,
  UPDATE_FIELD,
} from '../sandbox/index.ts';

/** The stand-in's own process went away or answered an error. */
export class KeapStandInError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeapStandInError';
  }
}

/** One record as the mirror must hold it: its id and its update time (epoch ms). */
export type RecordStamp = [id: string, updateTimeMs: number];

export interface KeapStandIn {
  baseUrl: string;
  keys: SandboxKey[];
  /** Every arrival so far (from index `from`). */
  arrivals(from?: number): Promise<ArrivalRecord[]>;
  /** The records of a list now, as [id, update time]. */
  records(type: ResourceType): Promise<RecordStamp[]>;
  /** Notes whose title is `title` (to count creates). */
  notesTitled(prefix: string): Promise<Array<{ id: string; title: string }>>;
  /** Contacts with an email starting with `prefix` (to count upsert creates). */
  contactsEmailed(prefix: string): Promise<Array<{ id: string; email: string }>>;
  /** A contact id and a user id a write job can name. */
  anchors(): Promise<{ contactIds: string[]; userId: string }>;
  mutate(type: ResourceType, change: MutationChange): Promise<MutationResult>;
  setFaults(f: Partial<SandboxFaults>): Promise<void>;
  close(): Promise<void>;
}

type Request =
  | { op: 'arrivals'; from: number }
  | { op: 'records'; type: ResourceType }
  | { op: 'notesTitled'; prefix: string }
  | { op: 'contactsEmailed'; prefix: string }
  | { op: 'anchors' }
  | { op: 'mutate'; type: ResourceType; change: MutationChange }
  | { op: 'setFaults'; faults: Partial<SandboxFaults> };

/** The answers of every request, in the process that holds the sandbox. */
export function serve(sandbox: Awaited<ReturnType<typeof startSandbox>>, r: Request): unknown {
  const d = sandbox.dataset;
  switch (r.op) {
    case 'arrivals':
      return sandbox.arrivals.slice(r.from);
    case 'records': {
      const field = UPDATE_FIELD[r.type];
      return d
        .table(r.type)
        .values()
        .map((rec) => {
          const row = rec as unknown as Record<string, unknown> & { id: string };
          const t = row[field];
          return [row.id, typeof t === 'string' ? Date.parse(t) : Number.NaN];
        });
    }
    case 'notesTitled':
      return d.notes
        .values()
        .filter((n) => typeof n.title === 'string' && n.title.startsWith(r.prefix))
        .map((n) => ({ id: n.id, title: n.title }));
    case 'contactsEmailed':
      return d.contacts.values().flatMap((c) =>
        c.email_addresses
          .filter((e) => e.email.startsWith(r.prefix))
          .slice(0, 1)
          .map((e) => ({ id: c.id, email: e.email })),
      );
    case 'anchors':
      return {
        contactIds: d.contacts
          .values()
          .slice(0, 50)
          .map((c) => c.id),
        userId: d.users.values()[0]?.id ?? '',
      };
    case 'mutate':
      return sandbox.mutate(r.type, r.change);
    case 'setFaults':
      sandbox.setFaults(r.faults);
      return null;
  }
}

/** The sandbox in this process. */
export async function inProcessKeap(options: SandboxOptions): Promise<KeapStandIn> {
  const sandbox = await startSandbox(options);
  const ask = async <T>(r: Request) => serve(sandbox, r) as T;
  return standIn(sandbox.baseUrl, sandbox.keys, ask, () => sandbox.close());
}

const HOST = fileURLToPath(new URL('./sandbox-host.ts', import.meta.url));

/** The sandbox in a child process of its own, asked over IPC. */
export async function processKeap(options: Omit<SandboxOptions, 'clock'>): Promise<KeapStandIn> {
  const child: ChildProcess = fork(HOST, [], {
    env: { ...process.env, KEAP_SYNC_SANDBOX_OPTIONS: JSON.stringify(options) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 0;
  const [ready] = (await once(child, 'message')) as [{ baseUrl: string; keys: SandboxKey[] }];
  child.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new KeapStandInError(`The sandbox process answered an error: ${m.error ?? 'unknown'}`));
  });
  child.once('exit', (code) => {
    for (const p of pending.values()) p.reject(new KeapStandInError(`The sandbox process exited (${code}).`));
    pending.clear();
  });
  const ask = <T>(r: Request) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ id, request: r });
    });
  return standIn(ready.baseUrl, ready.keys, ask, async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
}

function standIn(
  baseUrl: string,
  keys: SandboxKey[],
  ask: <T>(r: Request) => Promise<T>,
  close: () => Promise<void>,
): KeapStandIn {
  return {
    baseUrl,
    keys,
    arrivals: (from = 0) => ask({ op: 'arrivals', from }),
    records: (type) => ask({ op: 'records', type }),
    notesTitled: (prefix) => ask({ op: 'notesTitled', prefix }),
    contactsEmailed: (prefix) => ask({ op: 'contactsEmailed', prefix }),
    anchors: () => ask({ op: 'anchors' }),
    mutate: (type, change) => ask({ op: 'mutate', type, change }),
    setFaults: (faults) => ask({ op: 'setFaults', faults }),
    close,
  };
}
