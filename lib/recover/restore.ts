// Putting state/ (and, for a rollback, the workspace) back to a checkpoint,
// after keeping what was there under a ref for forensics.

import fs from 'node:fs';
import path from 'node:path';
import { exists, mkdirDurable } from '../fsutil.js';
import type { RunPaths } from '../run.js';
import { isoUtc } from '../units.js';
import { snapshotWorkspace, workspaceCommitObject, writeRef, type Checkpoint } from '../state/checkpoint.js';
import { initRun, stateGit, stateRepoDir, workspaceGit } from '../state/layout.js';

export const FORENSICS_PREFIX = 'refs/forensics/';

export function stamp(now: Date): string {
  return isoUtc(now).replace(/[:.]/g, '').replace(/Z$/, 'Z');
}

/**
 * Commit whatever is in state/ now (valid or not) on refs/forensics/<name>
 * of state.git; when state.git itself is unusable, copy the files to
 * <run>/forensics/<name>/ instead. Doing it again with the same name replaces
 * the first (a recovery killed and run again keeps one copy). Returns where
 * it went.
 */
export async function keepForensics(paths: RunPaths, name: string, why: string): Promise<string> {
  const git = stateGit(paths);
  if (exists(path.join(stateRepoDir(paths), 'HEAD')) && exists(paths.stateDir)) {
    const tmpIndex = path.join(git.gitDir, `selfware-forensics.index.${process.pid}`);
    try {
      const g = git.with({ GIT_INDEX_FILE: tmpIndex });
      await g.run(['add', '--all', '--', '.']);
      const tree = await g.out(['write-tree']);
      const parent = await git.resolve('refs/heads/main');
      const args = ['commit-tree', tree, '-m', `forensics: state/ before recovery: ${why}`];
      if (parent) args.push('-p', parent);
      const commit = await git.out(args);
      const ref = `${FORENSICS_PREFIX}${name}`;
      writeRef(git.gitDir, ref, commit);
      return `${ref} in ${git.gitDir}`;
    } catch {
      /* fall through to a plain copy */
    } finally {
      fs.rmSync(tmpIndex, { force: true });
    }
  }
  const dir = path.join(paths.runDir, 'forensics', name);
  mkdirDurable(path.dirname(dir));
  fs.rmSync(dir, { recursive: true, force: true });
  if (exists(paths.stateDir)) fs.cpSync(paths.stateDir, path.join(dir, 'state'), { recursive: true });
  if (exists(stateRepoDir(paths))) fs.cpSync(stateRepoDir(paths), path.join(dir, 'state.git'), { recursive: true });
  return dir;
}

/** Make state/'s files exactly those of a checkpoint (index too); main and the checkpoints stay. */
export async function restoreStateFiles(paths: RunPaths, c: Checkpoint): Promise<void> {
  const git = stateGit(paths);
  fs.mkdirSync(paths.stateDir, { recursive: true });
  git.removeStaleLocks();
  await git.run(['read-tree', '--reset', '-u', c.tree]);
  // Files git did not track (garbage written after the checkpoint) go too; forensics kept them.
  await git.run(['clean', '-f', '-d', '-q']);
}

/**
 * No checkpoint can be used: start state/ afresh from the config. A broken
 * state.git is moved aside (kept) and a new one made.
 */
export async function freshState(paths: RunPaths, wsDir: string, now: Date): Promise<string[]> {
  const notes: string[] = [];
  const repo = stateRepoDir(paths);
  const headOk = exists(path.join(repo, 'HEAD')) && (await stateGit(paths).run(['rev-parse', '--git-dir'], { allowFail: true })).code === 0;
  if (exists(repo) && !headOk) {
    const aside = `${repo}.broken-${stamp(now)}`;
    fs.renameSync(repo, aside);
    notes.push(`state.git was unusable; moved to ${aside}`);
  }
  if (exists(paths.stateDir)) {
    for (const n of fs.readdirSync(paths.stateDir)) {
      if (n === '.git') continue;
      fs.rmSync(path.join(paths.stateDir, n), { recursive: true, force: true });
    }
  }
  await initRun(paths, wsDir);
  return notes;
}

/**
 * A human's rollback of the workspace to a checkpoint's snapshot: its branch
 * at the commit it was on, the index at that commit, and the files as they
 * were (tracked and untracked; ignored files are left alone). Staged-but-not-
 * committed changes come back as unstaged: the index itself is not kept.
 */
export async function restoreWorkspace(wsDir: string, c: Checkpoint, now: Date): Promise<string> {
  const ws = workspaceGit(wsDir);
  if (!c.workspace.tree) throw new Error(`checkpoint ${c.id} has no workspace snapshot`);
  // Forensics for the workspace: a snapshot of it as it is, on its own ref.
  const snap = await snapshotWorkspace(wsDir);
  const fBody = workspaceCommitObject(snap.tree, snap.head, Math.floor(now.getTime() / 1000), `forensics: workspace before rollback to checkpoint ${c.id}\n`);
  const fCommit = await ws.out(['hash-object', '-t', 'commit', '-w', '--stdin'], { input: fBody });
  const fRef = `refs/selfware/forensics/${stamp(now)}`;
  writeRef(ws.gitDir, fRef, fCommit);

  ws.removeStaleLocks();
  if (c.workspace.branch) {
    if (c.workspace.head) await ws.run(['update-ref', `refs/heads/${c.workspace.branch}`, c.workspace.head]);
    await ws.run(['symbolic-ref', 'HEAD', `refs/heads/${c.workspace.branch}`]);
  } else if (c.workspace.head) {
    await ws.run(['update-ref', '--no-deref', 'HEAD', c.workspace.head]);
  }
  await ws.run(['read-tree', '--reset', '-u', c.workspace.tree]);
  await ws.run(['clean', '-f', '-d', '-q']);
  if (c.workspace.head) await ws.run(['read-tree', c.workspace.head]);
  else await ws.run(['read-tree', '--empty']);
  return fRef;
}

