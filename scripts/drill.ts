// Operator script: `npm run drill -- <name>` runs one reliability drill (or all) at full length against
// the whole local system and prints its checks and figures; exit code 1 when a check fails.
import { Argument, Command, Option } from '@commander-js/extra-typings';
import { positiveInt } from '#harness/cli/commander.ts';
import { DRILL_NAMES, DRILLS, type DrillName, formatDrill } from '#harness/drills/drills.ts';

const program = new Command('drill')
  .description(
    'Runs a reliability drill against the whole local system (Keap sandbox, embedded DynamoDB and SQS ' +
      'behind links that can be cut, workers, scheduler) and prints what it checked:\n' +
      '  dynamo-outage  DynamoDB unreachable mid-sync: no Keap call while down, jobs resume, nothing lost or doubled\n' +
      '  sqs-outage     SQS unreachable mid-sync: scheduler and workers recover without a restart, no job lost\n' +
      '  worker-kills   worker processes SIGKILLed at random moments during a backfill with write jobs:\n' +
      '                 mirror == Keap record for record, no create made twice\n' +
      '  key-rotation   the Keap key revoked mid-run, then a new one stored: the account stops, then resumes\n' +
      '  all            each of the above in turn\n' +
      'Every drill ends with a scan of logs, dead letters, queue, tables, metrics and status for the key.',
  )
  .addArgument(new Argument('<name>', 'the drill').choices([...DRILL_NAMES, 'all'] as const))
  .addOption(
    new Option(
      '--outage-seconds <s>',
      'how long the part stays down (key-rotation: how long the revoked key stays)',
    )
      .argParser(positiveInt('outage-seconds'))
      .default(60),
  )
  .addOption(new Option('--kills <n>', 'worker-kills: SIGKILLs').argParser(positiveInt('kills')).default(20))
  .addOption(
    new Option('--contacts <n>', "the sandbox's contacts").argParser(positiveInt('contacts')).default(3000),
  )
  .addOption(
    new Option('--seed <n>', 'dataset and kill-timing seed').argParser(positiveInt('seed')).default(5),
  )
  .option('--json', 'print each report as JSON too')
  .addHelpText(
    'after',
    '\nExamples\n  npm run drill -- dynamo-outage\n  npm run drill -- worker-kills --kills 20\n  npm run drill -- all --outage-seconds 60',
  );

program.parse();
const [name] = program.processedArgs;
const o = program.opts();
const names: DrillName[] = name === 'all' ? [...DRILL_NAMES] : [name];
let failed = 0;
for (const n of names) {
  const r = await DRILLS[n]({
    outageMs: o.outageSeconds * 1000,
    kills: o.kills,
    contacts: o.contacts,
    seed: o.seed,
    progress: (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} [${n}] ${line}\n`),
  });
  process.stdout.write(`${formatDrill(r)}\n`);
  if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  if (!r.ok) failed++;
}
process.exitCode = failed > 0 ? 1 : 0;
