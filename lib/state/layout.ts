// A run on disk: state/ (plain files, a git work tree whose repository is
// state.git beside it, so a deleted state/.git loses no checkpoint), the task
// log, the workspace, and locks. Initialising is idempotent: a run killed
// half-way through its creation is finished by the next command.

import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { noInputError } from '../exit.js';
import { exists, fsyncDir, mkdirDurable, writeFileAtomic } from '../fsutil.js';
import { Git } from '../git.js';
import { acquireLock, type Lock } from '../lock.js';
import { requireDefined, type RunPaths } from '../run.js';
import { TaskLog } from '../tasklog/index.js';
import { version } from '../version.js';

/** Directories of state/ that always exist (kept in git by a .keep file). */
export const STATE_DIRS = ['queue', 'memory', 'transcripts', 'approvals'] as const;

export function stateRepoDir(paths: RunPaths): string {
  return path.join(paths.runDir, 'state.git');
}

/** git on the run's state/ work tree and its state.git repository. */
export function stateGit(paths: RunPaths): Git {
  return new Git(paths.stateDir, stateRepoDir(paths));
}

/** git on a workspace (a normal repository with its .git inside). */
export function workspaceGit(dir: string): Git {
  return new Git(dir, path.join(dir, '.git'));
}

export function runExists(paths: RunPaths): boolean {
  return exists(path.join(stateRepoDir(paths), 'HEAD'));
}

/** Throw exit 66 for a run whose state was never created (see requireDefined in lib/run.ts for a run that does not exist at all). */
export function requireRun(paths: RunPaths): void {
  requireDefined(paths);
  if (!runExists(paths)) throw noInputError(`run '${paths.run}' has no state yet (nothing at '${stateRepoDir(paths)}'): its first start or sw-agent init ${paths.run} makes it`);
}

export function stateLockFile(paths: RunPaths): string {
  return path.join(paths.lockDir, 'state.lock');
}

export function agentLockFile(paths: RunPaths): string {
  return path.join(paths.lockDir, 'agent.lock');
}

/** The lock over state/ and the checkpoint repository: taken by anyone who changes them. */
export async function lockState(paths: RunPaths, waitMs?: number): Promise<Lock> {
  mkdirDurable(paths.lockDir);
  return acquireLock(stateLockFile(paths), { what: `run '${paths.run}'`, waitMs });
}

/** state/.git: a file pointing at the checkpoints' repository. */
export const GITFILE = 'gitdir: ../state.git\n';

function initialRunYaml(run: string): string {
  return [
    `# selfware run '${run}': written once when the run was created.`,
    `# Its configuration is /etc/selfware/${run}.yaml (or $SELFWARE_CONFIG_DIR).`,
    `run: ${run}`,
    `created: ${new Date().toISOString()}`,
    `host: ${os.hostname()}`,
    `selfware: ${version()}`,
    '',
  ].join('\n');
}

export const INITIAL_AGENT_STATE = { status: 'stopped', paused: false, task: null, step: null, session: null };

/**
 * Create whatever of the run is missing: directories, the state repository
 * and its files, the task log, and the workspace repository. The caller holds
 * the state lock.
 */
export async function initRun(paths: RunPaths, workspace: string): Promise<{ created: boolean }> {
  const created = !runExists(paths);
  mkdirDurable(paths.runDir);
  mkdirDurable(paths.stateDir);
  await initStateRepo(paths);
  const gitfile = path.join(paths.stateDir, '.git');
  if (!exists(gitfile)) writeFileAtomic(gitfile, GITFILE);
  for (const d of STATE_DIRS) {
    mkdirDurable(path.join(paths.stateDir, d));
    const keep = path.join(paths.stateDir, d, '.keep');
    if (!exists(keep)) writeFileAtomic(keep, '');
  }
  const runYaml = path.join(paths.stateDir, 'run.yaml');
  if (!exists(runYaml)) writeFileAtomic(runYaml, initialRunYaml(paths.run));
  const agentJson = path.join(paths.stateDir, 'agent.json');
  if (!exists(agentJson)) writeFileAtomic(agentJson, JSON.stringify(INITIAL_AGENT_STATE, null, 2) + '\n');
  await TaskLog.forRun(paths).init();
  await initWorkspace(workspace);
  return { created };
}

/** Make state.git if it is missing. Returns whether it was made. */
export async function initStateRepo(paths: RunPaths): Promise<boolean> {
  const repo = stateRepoDir(paths);
  if (exists(path.join(repo, 'HEAD'))) return false;
  mkdirDurable(paths.runDir);
  // git init writes into a temp name first, so a kill never leaves a half repository at state.git.
  const tmp = `${repo}.init-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  await Git.plain(['init', '--quiet', '--bare', '--initial-branch=main', tmp], paths.runDir);
  for (const [k, v] of [
    ['core.bare', 'false'],
    // Durable for anyone's git here, not only for selfware's own commands (which pass these with -c).
    ['core.fsync', 'all'],
    ['core.fsyncMethod', 'fsync'],
    ['gc.auto', '0'],
    ['user.name', 'selfware'],
    ['user.email', 'selfware@localhost'],
  ]) {
    await Git.plain(['--git-dir', tmp, 'config', k as string, v as string], paths.runDir);
  }
  // Temp files of atomic writes in state/ are never part of a checkpoint.
  fs.mkdirSync(path.join(tmp, 'info'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'info', 'exclude'), '# selfware: temp files of atomic replacements\n.*.tmp\n');
  fs.renameSync(tmp, repo);
  fsyncDir(paths.runDir);
  return true;
}

/** Anything of the run on disk (even with its checkpoint repository lost). */
export function runPresent(paths: RunPaths): boolean {
  return exists(stateRepoDir(paths)) || exists(paths.stateDir) || exists(paths.tasklogJournal);
}

/** Make dir a git repository if it is not one. */
export async function initWorkspace(dir: string): Promise<void> {
  if (exists(path.join(dir, '.git'))) return;
  mkdirDurable(dir);
  await Git.plain(['init', '--quiet', '--initial-branch=main', dir], dir);
}
