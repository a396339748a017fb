// Adapter (CLI): what every command-line entry (keap-sync, the sandbox script, the benchmarks) adds to
// commander: a usage error is one clear line and exit code 2, an option value that looks like an option
// is refused instead of swallowed, and every help ends with examples.
import { type Command, CommanderError } from '@commander-js/extra-typings';

/** A command's input is wrong; nothing was written. Exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

// biome-ignore lint/suspicious/noExplicitAny: any command, whatever its typed arguments and options.
type AnyCommand = Command<any, any, any>;

/** Appends an "Examples" section (the last of the help, one command line per example). */
export function withExamples<C extends AnyCommand>(command: C, examples: readonly string[]): C {
  command.addHelpText('after', `\nExamples\n${examples.map((e) => `  ${e}`).join('\n')}`);
  return command;
}

/** An ISO-8601 date, or time with a zone (Z or an offset), for an option's argParser: epoch ms (a date alone is midnight UTC). */
export function isoTime(flag: string): (value: string) => number {
  return (value) => {
    const ms = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2}))?$/.test(value)
      ? Date.parse(value)
      : Number.NaN;
    if (!Number.isFinite(ms)) {
      throw new UsageError(
        `--${flag} must be an ISO-8601 date or a time with its zone, such as 2026-01-01T00:00:00Z; got "${value}".`,
      );
    }
    return ms;
  };
}

/** A whole number of 1 or more, for an option's argParser. */
export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < 1)
      throw new UsageError(`--${flag} must be a whole number of 1 or more; got "${value}".`);
    return n;
  };
}

/**
 * What commander accepts but an operator almost never means: `--contacts -5` (commander takes "-5" as
 * the value; so would `--data-dir --json` take "--json") and `--json=yes` on an option without a value.
 */
function checkOptionValues(command: AnyCommand, args: readonly string[]): void {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--') return;
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const option = command.options.find((o) => o.long === flag);
    if (!option) continue;
    const takesValue = option.required || option.optional;
    if (eq >= 0 && !takesValue) throw new UsageError(`Option '${flag}' does not take an argument.`);
    if (eq < 0 && option.required) {
      const next = args[i + 1];
      if (next?.startsWith('-') && next !== '-') {
        throw new UsageError(
          `Option '${flag}' argument is ambiguous: "${next}" looks like an option. ` +
            `A value that starts with a dash is written '${flag}=${next}'.`,
        );
      }
      i++;
    }
  }
}

/** Commander's "error: unknown option '--x'" as a sentence: "Unknown option '--x'". */
function sentence(err: CommanderError): string {
  const text = err.message.replace(/^error: /, '');
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

/** For an unknown option that another command has: which one (the option is misplaced, not misspelt). */
function elsewhere(program: AnyCommand, command: AnyCommand, err: CommanderError): string {
  if (err.code !== 'commander.unknownOption') return '';
  const flag = /unknown option '([^']+)'/.exec(err.message)?.[1];
  const owners = program.commands
    .filter((c) => c !== command && c.options.some((o) => o.long === flag))
    .map((c) => `"${program.name()} ${c.name()}"`);
  return owners.length ? ` (it is an option of ${owners.join(', ')})` : '';
}

export interface RunProgramOptions {
  /** Errors (besides UsageError and commander's own) that are the caller's fault: exit 2, no stack. */
  isUsageError?: (err: unknown) => boolean;
  out?: (text: string) => void;
  err?: (text: string) => void;
}

/**
 * Parses `argv` (without node and the script) and runs the chosen action. Resolves to the exit code:
 * 0 for help, 2 for a usage error (with one message naming the problem and the help to read), 1 for
 * any other error, else 0 (an action that has its own exit code keeps it itself).
 */
export async function runProgram(
  program: AnyCommand,
  argv: readonly string[],
  o: RunProgramOptions = {},
): Promise<number> {
  const out = o.out ?? ((text: string) => process.stdout.write(text));
  const err = o.err ?? ((text: string) => process.stderr.write(text));
  const name = program.name();
  const all = (c: AnyCommand): AnyCommand[] => [c, ...c.commands.flatMap((s) => all(s as AnyCommand))];
  for (const c of all(program)) {
    c.exitOverride();
    c.configureOutput({ writeOut: out, writeErr: err, outputError: () => {} });
  }
  const sub = program.commands.find((c) => c.name() === argv[0]) as AnyCommand | undefined;
  const command = sub ?? program;
  const help = sub ? `${name} ${sub.name()} --help` : `${name} --help`;
  try {
    checkOptionValues(command, sub ? argv.slice(1) : argv);
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0; // help was shown
      if (e.code === 'commander.unknownCommand') {
        err(`${name}: unknown command "${String(argv[0])}". Run "${name} --help".\n`);
      } else {
        err(`${name}: ${sentence(e)}${elsewhere(program, command, e)}\nRun "${help}" for its options.\n`);
      }
      return 2;
    }
    if (e instanceof UsageError || o.isUsageError?.(e)) {
      err(`${name}: ${(e as Error).message}\n`);
      return 2;
    }
    err(`${name}: ${(e as Error).name}: ${(e as Error).message}\n`);
    return 1;
  }
}
