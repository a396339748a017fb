// Infrastructure (composition): builds a keap-sync deployment, two stacks, from the configuration
// file and the CDK context settings. infra/app.ts calls it; the tests call it with their own context.
import { type App, Tags } from 'aws-cdk-lib';
import {
  type DeploySettings,
  type LoadedConfig,
  loadConfigFile,
  readContextSettings,
  resolveSettings,
} from './settings.ts';
import { KeapSyncAppStack } from './stacks/app-stack.ts';
import { KeapSyncDataStack } from './stacks/data-stack.ts';

export interface KeapSyncDeployment {
  loaded: LoadedConfig;
  settings: DeploySettings;
  /** Stateful: tables and queues (`<stackPrefix>Data`). */
  data: KeapSyncDataStack;
  /** Stateless: functions, schedule, alarms, dashboard (`<stackPrefix>App`). */
  app: KeapSyncAppStack;
}

/**
 * Reads the configuration (context `configFile`, relative to `cwd`), validates it and the context
 * settings, and adds both stacks to `app`. Env-agnostic stacks: no lookups, no credentials needed.
 */
export function buildKeapSync(app: App, cwd: string = process.cwd()): KeapSyncDeployment {
  const context = readContextSettings(app.node);
  const loaded = loadConfigFile(context.configFile, cwd);
  const settings = resolveSettings(context, loaded.config);
  Tags.of(app).add('app', 'keap-sync');
  const data = new KeapSyncDataStack(app, `${settings.stackPrefix}Data`, {
    description:
      'keap-sync data: quota ledger, sync state and mirror tables; job and dead-letter queues; change events bus',
    config: loaded.config,
    maxBatchingWindowSeconds: settings.workerMaxBatchingWindowSeconds,
    changeEventBus: {
      name: settings.eventBusName ?? `${settings.stackPrefix}-changes`,
      existing: settings.eventBusName !== undefined,
    },
  });
  const stack = new KeapSyncAppStack(app, `${settings.stackPrefix}App`, {
    description: 'keap-sync app: worker, scheduler and publisher functions, schedule, alarms, dashboard',
    loaded,
    settings,
    data,
  });
  return { loaded, settings, data, app: stack };
}
