// Benchmark/test harness: starts worker processes (bench/quota/worker.ts) and collects their results.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkerConfig, WorkerResult } from './worker.ts';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

export function runWorkerProcess(cfg: WorkerConfig): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER], {
      env: { ...process.env, BENCH_WORKER: JSON.stringify(cfg) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), Math.max(0, cfg.endAt - Date.now()) + 60_000);
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) {
        reject(
          new Error(`worker ${cfg.system}#${cfg.index} exited with ${code ?? signal}: ${err.slice(-2000)}`),
        );
        return;
      }
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as WorkerResult);
      } catch {
        reject(new Error(`worker ${cfg.system}#${cfg.index} printed no result: ${err.slice(-2000)}`));
      }
    });
  });
}

export function runFleet(configs: WorkerConfig[]): Promise<WorkerResult[]> {
  return Promise.all(configs.map(runWorkerProcess));
}
