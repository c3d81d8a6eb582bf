// Run names and where a run's files live (DESIGN.md "A run").

import fs from 'node:fs';
import path from 'node:path';
import { didYouMean } from './config/spec.js';
import { noInputError, usageError } from './exit.js';

export const RUN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A run name is an instance name, never a path: validated before anything is touched. */
export function validateRunName(name: string | undefined): string {
  if (name === undefined || name === '') throw usageError(`invalid run name '': a run name must match ${RUN_NAME_RE.source}`);
  if (name === 'governor') throw usageError("invalid run name 'governor': it is reserved (/etc/selfware/governor.yaml is the governor's configuration)");
  if (!RUN_NAME_RE.test(name)) {
    const shown = name.length > 80 ? `${name.slice(0, 77)}...' (${name.length} characters)` : `${name}'`;
    throw usageError(`invalid run name '${shown}: a run name must match ${RUN_NAME_RE.source}`);
  }
  return name;
}

export interface Roots {
  configDir: string;
  stateDir: string;
  runtimeDir: string;
}

/** The three roots, each movable by its environment variable. */
export function roots(env: NodeJS.ProcessEnv = process.env): Roots {
  const abs = (p: string | undefined, dflt: string): string => path.resolve(p && p !== '' ? p : dflt);
  return {
    configDir: abs(env.SELFWARE_CONFIG_DIR, '/etc/selfware'),
    stateDir: abs(env.SELFWARE_STATE_DIR, '/var/lib/selfware'),
    runtimeDir: abs(env.SELFWARE_RUNTIME_DIR, '/run/selfware'),
  };
}

export interface RunPaths {
  run: string;
  roots: Roots;
  /** /etc/selfware/<run>.yaml */
  configFile: string;
  /** /var/lib/selfware/<run> */
  runDir: string;
  /** <runDir>/state: the git repo of plain files */
  stateDir: string;
  /** <runDir>/tasklog.db: the SQLite snapshot */
  tasklogDb: string;
  /** <runDir>/tasklog.journal: the append-only journal */
  tasklogJournal: string;
  /** <runDir>/workspace: the default workspace */
  defaultWorkspace: string;
  /**
   * <runDir>/locks: lock files. They live with the state they protect, not in
   * /run, because systemd removes a unit's RuntimeDirectory= when it stops
   * while other units of the run may still hold a lock there.
   */
  lockDir: string;
}

export function runPaths(run: string, env: NodeJS.ProcessEnv = process.env): RunPaths {
  validateRunName(run);
  const r = roots(env);
  const runDir = path.join(r.stateDir, run);
  return {
    run,
    roots: r,
    configFile: path.join(r.configDir, `${run}.yaml`),
    runDir,
    stateDir: path.join(runDir, 'state'),
    tasklogDb: path.join(runDir, 'tasklog.db'),
    tasklogJournal: path.join(runDir, 'tasklog.journal'),
    defaultWorkspace: path.join(runDir, 'workspace'),
    lockDir: path.join(runDir, 'locks'),
  };
}

/** A run exists when its config file or its state directory does. */
export function runDefined(paths: RunPaths): boolean {
  return fs.existsSync(paths.configFile) || fs.existsSync(paths.runDir);
}

/** Every run of these roots: a config file (but the governor's) or a state directory with a run's name. */
export function knownRuns(r: Roots): string[] {
  const names = new Set<string>();
  const list = (dir: string): string[] => {
    try {
      return fs.readdirSync(dir);
    } catch {
      return [];
    }
  };
  for (const f of list(r.configDir)) {
    const m = /^(.+)\.yaml$/.exec(f);
    if (m && m[1] !== 'governor' && RUN_NAME_RE.test(m[1] as string)) names.add(m[1] as string);
  }
  for (const d of list(r.stateDir)) {
    if (RUN_NAME_RE.test(d) && d !== 'governor' && fs.statSync(path.join(r.stateDir, d), { throwIfNoEntry: false })?.isDirectory()) names.add(d);
  }
  return [...names].sort();
}

/**
 * Exit 66 for a run that does not exist, with a did-you-mean among those that
 * do: a typo never creates a run (sw-agent init, or the first start, does).
 */
export function requireDefined(paths: RunPaths): void {
  if (runDefined(paths)) return;
  const hint = didYouMean(paths.run, knownRuns(paths.roots));
  throw noInputError(`no such run '${paths.run}'${hint ? `: did you mean '${hint}'?` : ''} (neither ${paths.configFile} nor ${paths.runDir} exists; sw-agent init ${paths.run} creates it)`);
}
