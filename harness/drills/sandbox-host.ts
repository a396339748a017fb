// Adapter (benchmarks): the Keap sandbox in a process of its own, driven over IPC by harness/drills/keap.ts.
import { startSandbox } from '../sandbox/index.ts';
import { serve } from './keap.ts';

const sandbox = await startSandbox(JSON.parse(process.env.KEAP_SYNC_SANDBOX_OPTIONS ?? '{}'));
process.on('message', (m: { id: number; request: Parameters<typeof serve>[1] }) => {
  try {
    process.send?.({ id: m.id, ok: true, value: serve(sandbox, m.request) });
  } catch (err) {
    process.send?.({
      id: m.id,
      ok: false,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    });
  }
});
const stop = () => {
  sandbox.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('disconnect', stop);
process.send?.({ baseUrl: sandbox.baseUrl, keys: sandbox.keys });
