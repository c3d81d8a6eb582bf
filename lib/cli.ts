// The one main() wrapper every command uses: commander set up the same way
// (usage errors exit 64), common options, and errors mapped to exit codes.

import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { EXIT, SwError, describeError, exitCodeFor } from './exit.js';
import { Output, type OutputOptions } from './output.js';
import { version } from './version.js';

export type CommonOptions = OutputOptions;

/** --json, --quiet, --verbose, --debug on a command. */
export function withCommonOptions(cmd: Command, opts: { json?: boolean } = { json: true }): Command {
  if (opts.json !== false) cmd.option('--json', 'print data as one JSON document on stdout');
  return cmd
    .option('-q, --quiet', 'print only errors and warnings')
    .option('-v, --verbose', 'print more about what is done')
    .option('--debug', 'print debugging output and stack traces');
}

/** The root program of a command, configured the way every sw-* command behaves. */
export function createProgram(name: string, description: string): Command {
  const program = new Command(name);
  program
    .description(description)
    .version(version(), '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // main() prints usage errors itself, in the common format.
      outputError: () => {},
    });
  program.addHelpCommand(false);
  return program;
}

/** Options of the command that is running, including those of its parents. */
export function optsOf<T>(cmd: Command): T & CommonOptions {
  return cmd.optsWithGlobals() as T & CommonOptions;
}

/** An Output for a command from its parsed options. */
export function outputFor(cmd: Command): Output {
  const o = optsOf<CommonOptions>(cmd);
  let root = cmd;
  while (root.parent) root = root.parent;
  return new Output(root.name(), o);
}

/** Parser for an integer option: the offending value is named on error. */
export function intArg(min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^[+-]?\d+$/.test(value)) throw new InvalidArgumentError(`expected an integer, got '${value}'`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got '${value}'`);
    return n;
  };
}

/** Parser for a choice option. */
export function choiceArg(choices: readonly string[]) {
  return (value: string): string => {
    if (!choices.includes(value)) throw new InvalidArgumentError(`expected one of ${choices.join(', ')}, got '${value}'`);
    return value;
  };
}

function preScan(argv: string[]): OutputOptions {
  const rest = argv.slice(2);
  const end = rest.indexOf('--');
  const flags = end >= 0 ? rest.slice(0, end) : rest;
  return {
    json: flags.includes('--json'),
    quiet: flags.includes('-q') || flags.includes('--quiet'),
    debug: flags.includes('--debug'),
  };
}

/**
 * Parse argv, run the action, and exit with its code. An action returns the
 * exit status (or nothing for 0); errors are printed and mapped here only.
 */
export interface MainOptions {
  /** A usage error commander found (an unknown option, a bad choice): print it your way and return the exit status, or undefined for the usual 64. */
  onUsageError?: (message: string, argv: string[]) => number | undefined;
}

export async function main(program: Command, argv: string[] = process.argv, opts: MainOptions = {}): Promise<never> {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.OK);
  });
  const early = preScan(argv);
  const out = new Output(program.name(), early);
  let code: number = EXIT.OK;
  try {
    await program.parseAsync(argv);
    const status = (program as Command & { _swExit?: number })._swExit;
    code = typeof status === 'number' ? status : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
        code = EXIT.OK;
      } else if (err.code === 'commander.help') {
        // No subcommand given: commander printed the help on stderr.
        code = EXIT.USAGE;
      } else {
        const message = err.message.replace(/^error: /, '');
        const own = opts.onUsageError?.(message, argv);
        if (own !== undefined) code = own;
        else {
          out.error(message, EXIT.USAGE);
          if (!early.json) out.error(`see '${usageHint(program, argv)} --help'`);
          code = EXIT.USAGE;
        }
      }
    } else {
      code = exitCodeFor(err);
      out.error(describeError(err), code);
      if (err instanceof SwError && !early.json) for (const d of err.details) out.error(d);
      if (early.debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    }
  }
  // process.exit() drops what a pipe has not taken yet: wait until it has.
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => (s.writableLength > 0 ? s.write('', () => resolve()) : resolve()))));
  process.exit(code);
}

function usageHint(program: Command, argv: string[]): string {
  const sub = argv.slice(2).find((a) => !a.startsWith('-'));
  if (sub && program.commands.some((c) => c.name() === sub)) return `${program.name()} ${sub}`;
  return program.name();
}

/**
 * Wrap an action: it returns an exit status (or nothing for 0), recorded for
 * main() so that cleanup in finally blocks runs before the process exits.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void> | number | void) {
  return async (...args: A): Promise<void> => {
    const status = await fn(...args);
    const cmd = args[args.length - 1] as Command;
    let root = cmd;
    while (root.parent) root = root.parent;
    (root as Command & { _swExit?: number })._swExit = typeof status === 'number' ? status : EXIT.OK;
  };
}
