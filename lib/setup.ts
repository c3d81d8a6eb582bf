// What a command does first with a run: check the name, act as the run's
// owner (lib/owner.ts) before anything is read or written, check that the run
// exists, and load its configuration, strictly for the agent itself and
// leniently (with one warning) for the commands that only read or keep the
// run protected.

import { configWarning, loadRunConfig, type RunConfig } from './config/index.js';
import type { Output } from './output.js';
import { actAsOwner, type Owner } from './owner.js';
import { requireDefined, runPaths, validateRunName, type RunPaths } from './run.js';

export interface RunSetup {
  paths: RunPaths;
  config: RunConfig;
  /** The config file read, or null for defaults. */
  file: string | null;
  /** Mistakes in the config file that a lenient load went past. */
  problems: string[];
  owner: Owner | null;
}

export interface SetupOptions {
  /** The command changes the run: another user than its owner gets exit 77. */
  writes: boolean;
  /** The command may create the run (sw-agent init, sw-agent run); otherwise a run that does not exist is exit 66. */
  creates?: boolean;
  /** Refuse any mistake in the config (exit 78), as the agent must; otherwise go on from the keys in `needs`. */
  strict?: boolean;
  needs?: string[];
  /** Where the one warning line about config mistakes goes. */
  out?: Output;
  /** The command line, for the hint of exit 77. */
  command?: string;
}

export async function setupRun(runArg: string, opts: SetupOptions): Promise<RunSetup> {
  const paths = runPaths(validateRunName(runArg));
  const owner = actAsOwner(paths, { writes: opts.writes, command: opts.command });
  if (!opts.creates) requireDefined(paths);
  const { config, file, problems } = await loadRunConfig(paths, opts.strict ? {} : { lenient: true, needs: opts.needs ?? [] });
  if (problems.length > 0) opts.out?.warn(configWarning(problems));
  return { paths, config, file, problems, owner };
}
