// Test support: synthesizes the deployment from a configuration written to a temporary file (read
// through the context setting configFile, as `cdk synth -c configFile=...` would), with cdk.json's
// context and bundling skipped unless a test asks for it. Everything a file writes (configurations and
// each App's cloud assembly) goes under one scratch folder that is removed when the file is done.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll } from 'vitest';
import type { AppConfigInput } from '#shared/config/app-config.ts';
import { buildKeapSync, type KeapSyncDeployment } from '../../infra/keap-sync.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

/** The context cdk.json gives every `cdk` command (feature flags). */
export const CDK_JSON_CONTEXT = (
  JSON.parse(readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> }
).context;

/** Two accounts: one secret by name, one by complete ARN; settings away from their defaults. */
export function testConfig(): AppConfigInput & { accounts: NonNullable<AppConfigInput['accounts']> } {
  return {
    accounts: [
      {
        id: 'acme',
        tenant: 'ab103.infusionsoft.com',
        secretId: 'keap-sync/acme',
        resources: { contacts: { everyMinutes: 5 }, tags: { everyMinutes: 60 } },
      },
      {
        id: 'globex',
        tenant: 'xy987',
        secretId: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:keap-sync/globex-AbC123',
        resources: { orders: { everyMinutes: 15 } },
      },
    ],
    limits: {},
    worker: { batchSize: 7, concurrency: 6, timeoutSeconds: 200, maxReceiveCount: 9 },
    scheduler: { everyMinutes: 10 },
  };
}

let dir: string | undefined;

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** This test file's scratch folder (created on first use, removed after the file's tests). */
export function scratchDir(): string {
  dir ??= mkdtempSync(path.join(tmpdir(), 'keap-sync-infra-'));
  return dir;
}

/** A fresh folder under the scratch folder, e.g. for a cloud assembly. */
export function scratchSubdir(prefix: string): string {
  return mkdtempSync(path.join(scratchDir(), prefix));
}

/** Writes configuration text to a fresh temporary file and returns its path. */
export function writeConfig(config: unknown): string {
  const file = path.join(scratchDir(), `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

export interface Synth {
  deployment: KeapSyncDeployment;
  data: Template;
  app: Template;
  cdkApp: App;
}

/** Builds the deployment; `context` adds or overrides CDK context settings. */
export function build(
  options: { config?: unknown; context?: Record<string, unknown>; bundle?: boolean } = {},
): { deployment: KeapSyncDeployment; cdkApp: App } {
  const context: Record<string, unknown> = {
    ...CDK_JSON_CONTEXT,
    ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
    ...(options.config === undefined ? {} : { configFile: writeConfig(options.config) }),
    ...options.context,
  };
  // Without an outdir, App synthesizes into a new os.tmpdir()/cdk.out* folder that nothing removes.
  const cdkApp = new App({ context, outdir: scratchSubdir('cdk.out-') });
  return { deployment: buildKeapSync(cdkApp, REPO_ROOT), cdkApp };
}

/** Builds and synthesizes both stacks' templates (the test configuration unless `config` is given). */
export function synth(options: { config?: unknown; context?: Record<string, unknown> } = {}): Synth {
  const { deployment, cdkApp } = build({ config: options.config ?? testConfig(), context: options.context });
  return {
    deployment,
    cdkApp,
    data: Template.fromStack(deployment.data),
    app: Template.fromStack(deployment.app),
  };
}

/** The logical id of the one resource of `type` whose id is `prefix` and CDK's 8-character hash. */
export function logicalId(template: Template, type: string, prefix: string): string {
  const pattern = new RegExp(`^${prefix}[0-9A-F]{8}$`);
  const ids = Object.keys(template.findResources(type)).filter((id) => pattern.test(id));
  if (ids.length !== 1)
    throw new Error(`expected one ${type} named ${prefix}*, found ${ids.join(', ') || 'none'}`);
  return ids[0] as string;
}

export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
}

/** Every statement of the inline policies attached to the role whose logical id starts with `rolePrefix`. */
export function roleStatements(template: Template, rolePrefix: string): Statement[] {
  const role = logicalId(template, 'AWS::IAM::Role', rolePrefix);
  const policies = Object.values(template.findResources('AWS::IAM::Policy')) as Array<{
    Properties: { Roles: Array<{ Ref: string }>; PolicyDocument: { Statement: Statement[] } };
  }>;
  return policies
    .filter((p) => p.Properties.Roles.some((r) => r.Ref === role))
    .flatMap((p) => p.Properties.PolicyDocument.Statement);
}

/** A readable name for a statement's resource: the resource's logical id it refers to, or the ARN. */
export function describeResource(resource: unknown): string {
  const text = JSON.stringify(resource);
  const named =
    /(LedgerTable|StateTable|MirrorTable|DeadLetterQueue|JobQueue|WorkerLogs|SchedulerLogs|HookReceiverLogs)/.exec(
      text,
    );
  if (named?.[1]) return named[1];
  const secret = /:secret:([^"]+)"/.exec(text);
  if (secret?.[1]) return `secret:${secret[1]}`;
  return text;
}

export interface Grant {
  actions: string[];
  resource: string;
}

/** Grants in a stable order, each with its actions sorted. */
export function sortGrants(list: Grant[]): Grant[] {
  return list
    .map((g) => ({ actions: [...g.actions].sort(), resource: g.resource }))
    .sort((a, b) => `${a.resource} ${a.actions}`.localeCompare(`${b.resource} ${b.actions}`));
}

/** Actions and resource of each statement, in a comparable form. */
export function grants(statements: Statement[]): Grant[] {
  return sortGrants(
    statements.map((s) => ({
      actions: [s.Action].flat(),
      resource: [s.Resource].flat().map(describeResource).join(','),
    })),
  );
}
