// Infrastructure (entry): the CDK app, run by cdk.json as `node infra/app.ts`. Builds the deployment
// from keap-sync.config.json (or context `configFile`), checks it against cdk-nag's AwsSolutions
// rules, and synthesizes offline. A bad setting stops synth with a message naming it.
import { App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../shared/config/app-config.ts';
import { buildKeapSync } from './keap-sync.ts';
import { DeploySettingError } from './settings.ts';

const app = new App();
try {
  buildKeapSync(app);
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  app.synth();
} catch (err) {
  if (!(err instanceof ConfigError || err instanceof DeploySettingError)) throw err;
  console.error(`\n${err.message}\n`);
  process.exitCode = 1;
}
