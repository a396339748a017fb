// Adapter (CLI): loads the configuration file and applies environment overrides, once, at start.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type AppConfig, ConfigError, parseAppConfig } from '#shared/config/app-config.ts';

/** Environment variables that override the file (each documented in the README). */
export const ENV_OVERRIDES: Record<string, string> = {
  KEAP_API_BASE_URL: 'keap.baseUrl',
  KEAP_SYNC_WORKER_CONCURRENCY: 'worker.concurrency',
  KEAP_SYNC_WORKER_BATCH_SIZE: 'worker.batchSize',
  KEAP_SYNC_SCHEDULER_EVERY_MINUTES: 'scheduler.everyMinutes',
};

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): AppConfig {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('(file)', [
      `cannot read the configuration file ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ` +
        'pass --config <file> or create keap-sync.config.json',
    ]);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError('(file)', [`${path} is not valid JSON (${(err as Error).message})`]);
  }
  const applied: Array<{ name: string; setting: string; value: string }> = [];
  for (const [name, setting] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const [section, key] = setting.split('.') as [string, string];
    const target = { ...((raw[section] as Record<string, unknown> | undefined) ?? {}) };
    target[key] = /^\d+$/.test(value) ? Number(value) : value;
    raw[section] = target;
    applied.push({ name, setting, value });
  }
  try {
    return parseAppConfig(raw, path);
  } catch (err) {
    if (!(err instanceof ConfigError) || applied.length === 0) throw err;
    // A bad value that came from the environment: say so, or the operator looks for it in the file.
    const problems = err.problems.map((p) => {
      const from = applied.find((a) => p.includes(`: ${a.setting}:`));
      return from ? `${p} (set by the environment variable ${from.name}="${from.value}")` : p;
    });
    throw new ConfigError(err.setting, problems);
  }
}
