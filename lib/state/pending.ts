// What a checkpoint now would hold that the newest one does not: the changes
// to state/ and the workspace left unprotected. Staged the way a checkpoint
// stages them, but into a scratch index and object directory outside the run,
// so asking writes nothing into the run, whoever asks: `status`, the report
// and `--check`, and `sw-checkpoint diff`. The run's objects are never an
// alternate while staging: git would "freshen" (touch) every object it finds
// there already.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Git } from '../git.js';
import type { RunPaths } from '../run.js';
import { readTip, type Checkpoint } from './checkpoint.js';
import { stateGit, workspaceGit } from './layout.js';

export interface Scratch {
  /** The work tree staged as `git add --all` would: the tree's id (its objects, new ones in the scratch store only). */
  tree: string;
  /** A handle that reads the scratch objects and the run's (for diffs against a checkpoint). */
  read: Git;
}

/**
 * Stage repo's work tree into a scratch copy of its index and a scratch object
 * store, run fn, and remove both. Unchanged files are taken from the index
 * copy (not hashed again). With `blobs` (a diff needs their contents) what
 * changed is written, and only there; without, it is only hashed.
 */
export async function withScratch<T>(repo: Git, fn: (s: Scratch) => Promise<T>, opts: { blobs?: boolean } = {}): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'selfware-scratch-'));
  try {
    const index = path.join(dir, 'index');
    try {
      fs.copyFileSync(path.join(repo.gitDir, 'index'), index);
    } catch {
      /* no index yet: git starts an empty one */
    }
    const objects = path.join(dir, 'objects');
    fs.mkdirSync(objects);
    const write = repo.with({ GIT_INDEX_FILE: index, GIT_OBJECT_DIRECTORY: objects, GIT_ALTERNATE_OBJECT_DIRECTORIES: '' });
    if (opts.blobs || !(await hashChanges(write))) await write.run(['-c', 'core.untrackedCache=false', 'add', '--all', '--', '.']);
    // The objects of unchanged files and subtrees are in the run's store, which this handle does not see.
    const tree = await write.out(['write-tree', '--missing-ok']);
    const read = repo.with({ GIT_INDEX_FILE: index, GIT_OBJECT_DIRECTORY: objects, GIT_ALTERNATE_OBJECT_DIRECTORIES: path.join(repo.gitDir, 'objects') });
    return await fn({ tree, read });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What `git add --all` would do to the index, with the changed files hashed
 * but not stored (update-index --info-only): a 50 MB workspace is not
 * compressed and written again at every look. False when the work tree holds
 * what only `git add` handles (a repository inside it): the caller adds.
 */
async function hashChanges(g: Git): Promise<boolean> {
  // Fresh stat information first, so a file merely touched is not taken for a change.
  await g.run(['update-index', '-q', '--refresh'], { allowFail: true });
  const out = await g.run(['-c', 'core.untrackedCache=false', 'ls-files', '-z', '--others', '--exclude-standard', '--modified', '--deleted']);
  const paths = [...new Set(out.stdout.split('\0').filter((p) => p !== ''))];
  if (paths.some((p) => p.endsWith('/'))) return false;
  if (paths.length > 0) await g.run(['update-index', '-z', '--add', '--remove', '--info-only', '--stdin'], { input: paths.join('\0') + '\0' });
  return true;
}

export interface PendingChanges {
  /** The newest checkpoint (the tip of the state repository), or null when there is none. */
  checkpoint: Pick<Checkpoint, 'id' | 'time' | 'kind'> | null;
  /** Paths in state/ and in the workspace that differ from it ("state/queue/x.yaml", "workspace/src/a.ts"). */
  paths: string[];
  /**
   * Since when the oldest of those changes has been left unprotected (ms): the
   * oldest modification time among them, never before the checkpoint itself.
   */
  since: number | null;
}

/** What differs from the newest checkpoint now; throws when the repositories cannot be read. */
export async function pendingChanges(paths: RunPaths, wsDir: string): Promise<PendingChanges> {
  const git = stateGit(paths);
  const tip = await readTip(git);
  const changed: Array<{ where: string; path: string; status: string }> = [];
  await withScratch(git, async ({ tree, read: g }) => {
    if (tip && tree === tip.tree) return;
    for (const c of await diffTrees(g, tip?.tree ?? EMPTY_TREE, tree)) changed.push({ where: paths.stateDir, ...c });
  });
  if (fs.existsSync(path.join(wsDir, '.git'))) {
    const ws = workspaceGit(wsDir);
    await withScratch(ws, async ({ tree, read: g }) => {
      const before = tip?.workspace.tree ?? null;
      if (before === tree) return;
      // A snapshot tree the workspace repository no longer has (pruned, or a workspace
      // moved in the config) cannot be compared: everything counts as changed.
      const known = before !== null && (await g.run(['cat-file', '-e', `${before}^{tree}`], { allowFail: true })).code === 0;
      for (const c of await diffTrees(g, known ? (before as string) : EMPTY_TREE, tree)) changed.push({ where: wsDir, ...c });
    });
  }
  const ckTime = tip ? Date.parse(tip.time) : null;
  let oldest: number | null = null;
  for (const c of changed) {
    const t = changeTime(c.where, c.path);
    if (t !== null && (oldest === null || t < oldest)) oldest = t;
  }
  if (changed.length > 0 && oldest === null) oldest = Date.now();
  const since = oldest === null ? null : ckTime === null ? oldest : Math.max(oldest, ckTime);
  return {
    checkpoint: tip ? { id: tip.id, time: tip.time, kind: tip.kind } : null,
    paths: changed.map((c) => `${c.where === paths.stateDir ? 'state' : 'workspace'}/${c.path}`),
    since,
  };
}

/** git's empty tree, for "everything is new". */
const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

async function diffTrees(g: Git, from: string, to: string): Promise<Array<{ status: string; path: string }>> {
  const out = await g.out(['diff-tree', '-r', '-z', '--no-renames', '--name-status', from, to]);
  const parts = out.split('\0').filter((p) => p !== '');
  const list: Array<{ status: string; path: string }> = [];
  for (let i = 0; i + 1 < parts.length; i += 2) list.push({ status: parts[i] as string, path: parts[i + 1] as string });
  return list;
}

/** When a changed path changed: its mtime, or for a removed one its nearest remaining directory's. */
function changeTime(root: string, rel: string): number | null {
  let p = path.join(root, rel);
  for (;;) {
    try {
      return fs.lstatSync(p).mtimeMs;
    } catch {
      if (p === root || path.dirname(p) === p) return null;
      p = path.dirname(p);
    }
  }
}
