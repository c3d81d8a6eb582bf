// Run names and where a run's files live (DESIGN.md "A run").

import path from 'node:path';
import { usageError } from './exit.js';

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
