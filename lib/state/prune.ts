// Pruning checkpoints: restic's forget policy, plus two checkpoints that are
// never removed (the newest valid one, and any a recovery used). Removing a
// checkpoint deletes its refs and rewrites main's history past it (checkpoint
// ids live in the commits' trailers, so they stay the same); then git gc frees
// the space and the bytes freed are measured on disk.

import fs from 'node:fs';
import path from 'node:path';
import type { RetentionPolicy } from '../config/schema.js';
import { diskUsage } from '../fsutil.js';
import { Git as GitRepo, type Git } from '../git.js';
import type { RunPaths } from '../run.js';
import { TaskLog } from '../tasklog/index.js';
import {
  STATE_REF_PREFIX,
  WORKSPACE_REF_PREFIX,
  computeChecksum,
  listCheckpoints,
  verifyCheckpoints,
  type Checkpoint,
} from './checkpoint.js';
import { stateGit, stateRepoDir, workspaceGit } from './layout.js';
import { applyPolicy } from './retention.js';

/** How long a prune keeps forensics and the workspace's unreferenced objects (checkpoint.forensics_keep, checkpoint.workspace_grace). */
export interface PruneKeep {
  forensicsMs: number;
  workspaceGraceMs: number;
}

export interface PrunePlan {
  keep: Array<{ checkpoint: Checkpoint; reasons: string[] }>;
  remove: Checkpoint[];
  /** Forensics refs and copies older than checkpoint.forensics_keep: what, and in which repository or directory. */
  forensics: string[];
  /** Refs that could not be read: left alone, reported by verify. */
  broken: Array<{ id: string; reason: string }>;
}

export interface PruneResult extends PrunePlan {
  bytesBefore: number;
  bytesAfter: number;
  bytesFreed: number;
}

/**
 * Ids of checkpoints a recovery recorded since `since` (ms) used: kept as
 * long as forensics are (checkpoint.forensics_keep), not for good, or a run
 * that meets faults every day would keep a checkpoint for each.
 */
async function recoveryCheckpoints(paths: RunPaths, since: number): Promise<Set<string>> {
  const snap = await TaskLog.forRun(paths).snapshot();
  try {
    const r = snap.db.exec('SELECT DISTINCT checkpoint_id FROM recoveries WHERE checkpoint_id IS NOT NULL AND ts >= ?', [since]);
    return new Set((r[0]?.values ?? []).map((v) => String(v[0])));
  } finally {
    snap.db.close();
  }
}

/** What a policy keeps and removes, with the two protections applied. */
export async function planPrune(paths: RunPaths, wsDir: string, policy: RetentionPolicy, keepFor: PruneKeep): Promise<PrunePlan> {
  const { checkpoints, broken } = await listCheckpoints(paths);
  const res = applyPolicy(
    checkpoints.map((c) => ({ ...c, checkpoint: c, time: Date.parse(c.time) })),
    policy,
  );
  const reasons = new Map<string, string[]>();
  for (const k of res.keep) reasons.set(k.id, res.reasons.get(k.id) ?? []);
  const protect = (c: Checkpoint, why: string): void => {
    reasons.set(c.id, [...(reasons.get(c.id) ?? []), why]);
  };
  // checkpoints is newest first: the first one that verifies is the newest valid.
  for (const c of checkpoints) {
    const [report] = await verifyCheckpoints(paths, wsDir, [c], []);
    if (report?.valid) {
      protect(c, 'newest valid');
      break;
    }
  }
  const used = await recoveryCheckpoints(paths, Date.now() - keepFor.forensicsMs);
  for (const c of checkpoints) if (used.has(c.id)) protect(c, 'used by a recovery');
  const keep = checkpoints.filter((c) => reasons.has(c.id)).map((c) => ({ checkpoint: c, reasons: [...new Set(reasons.get(c.id))] }));
  const remove = checkpoints.filter((c) => !reasons.has(c.id));
  return { keep, remove, broken, forensics: await oldForensics(paths, wsDir, keepFor.forensicsMs) };
}

/** Forensics refs (by commit time) and copies (by mtime) older than keepMs. */
async function oldForensics(paths: RunPaths, wsDir: string, keepMs: number): Promise<string[]> {
  const cutoff = (Date.now() - keepMs) / 1000;
  const out: string[] = [];
  const refs = async (git: Git, prefix: string): Promise<void> => {
    if (!fs.existsSync(git.gitDir)) return;
    const r = await git.run(['for-each-ref', '--format=%(refname) %(committerdate:unix)', prefix], { allowFail: true });
    for (const line of r.stdout.split('\n')) {
      const [ref, when] = line.split(' ');
      if (ref && Number(when) < cutoff) out.push(`${ref} in ${git.gitDir}`);
    }
  };
  await refs(stateGit(paths), 'refs/forensics/');
  await refs(workspaceGit(wsDir), 'refs/selfware/forensics/');
  const old = (p: string): boolean => {
    try {
      return fs.statSync(p).mtimeMs / 1000 < cutoff;
    } catch {
      return false;
    }
  };
  const dir = path.join(paths.runDir, 'forensics');
  if (fs.existsSync(dir)) for (const n of fs.readdirSync(dir)) if (old(path.join(dir, n))) out.push(path.join(dir, n));
  for (const n of fs.readdirSync(paths.runDir)) {
    if (/^tasklog\.db\.corrupt-|^tasklog\.journal\.damaged-|^state\.git\.broken-|^state\.git\.damaged-/.test(n) && old(path.join(paths.runDir, n))) out.push(path.join(paths.runDir, n));
  }
  return out;
}

/** The commit message of a checkpoint, as createCheckpoint wrote it. */
async function rawMessage(git: Git, commit: string): Promise<string> {
  const raw = await git.out(['cat-file', 'commit', commit]);
  const i = raw.indexOf('\n\n');
  return i < 0 ? '' : raw.slice(i + 2);
}

/**
 * Carry out a plan: rewrite main so removed checkpoints are no longer in any
 * kept one's history, delete their refs in both repositories, and gc. The
 * caller holds the state lock.
 */
export async function executePrune(paths: RunPaths, wsDir: string, plan: PrunePlan, keepFor: PruneKeep): Promise<PruneResult> {
  const git = stateGit(paths);
  const ws = workspaceGit(wsDir);
  const wsExists = fs.existsSync(ws.gitDir);
  const measure = (): number => diskUsage(stateRepoDir(paths)) + (wsExists ? diskUsage(ws.gitDir) : 0);
  const bytesBefore = measure();

  // Kept checkpoints in creation order, each re-parented onto the previous kept one.
  const kept = plan.keep.map((k) => k.checkpoint).sort((a, b) => a.seq - b.seq);
  const updates: string[] = [];
  let parent: string | null = null;
  for (const c of kept) {
    let commit = c.commit;
    if (c.parent !== parent) {
      if (computeChecksum(c) !== c.checksum) throw new Error(`checkpoint ${c.id}: checksum mismatch; run verify`);
      const epoch = Math.floor(Date.parse(c.time) / 1000);
      const args = ['commit-tree', c.tree];
      if (parent) args.push('-p', parent);
      commit = await git
        .with({ GIT_AUTHOR_DATE: `@${epoch} +0000`, GIT_COMMITTER_DATE: `@${epoch} +0000` })
        .out([...args, '-F', '-'], { input: await rawMessage(git, c.commit) });
      updates.push(`update ${STATE_REF_PREFIX}${c.id} ${commit} ${c.commit}`);
    }
    parent = commit;
  }
  for (const c of plan.remove) updates.push(`delete ${STATE_REF_PREFIX}${c.id} ${c.commit}`);
  if (parent) {
    const main = await git.resolve('refs/heads/main');
    if (main !== parent) updates.push(`update refs/heads/main ${parent}${main ? ' ' + main : ''}`);
  }
  if (updates.length > 0) await git.run(['update-ref', '--stdin'], { input: updates.join('\n') + '\n' });

  if (wsExists) {
    // Workspace snapshots of removed checkpoints, and orphans left by a killed create.
    const keepIds = new Set([...plan.keep.map((k) => k.checkpoint.id), ...plan.broken.map((b) => b.id)]);
    const refs = (await ws.out(['for-each-ref', '--format=%(refname)', WORKSPACE_REF_PREFIX])).split('\n').filter((r) => r !== '');
    const del = refs.filter((r) => !keepIds.has(r.slice(WORKSPACE_REF_PREFIX.length)));
    if (del.length > 0) await ws.run(['update-ref', '--stdin'], { input: del.map((r) => `delete ${r}`).join('\n') + '\n' });
  }

  for (const f of plan.forensics) {
    const m = /^(refs\/\S+) in (.+)$/.exec(f);
    if (m) await new GitRepo(path.basename(m[2] as string) === '.git' ? path.dirname(m[2] as string) : paths.stateDir, m[2] as string).run(['update-ref', '-d', m[1] as string], { allowFail: true });
    else fs.rmSync(f, { recursive: true, force: true });
  }

  const tasklog = TaskLog.forRun(paths);
  if (plan.remove.length > 0) tasklog.appendMany(plan.remove.map((c) => ({ t: 'checkpoint_pruned', id: c.id, kind: c.kind, time: c.time })));

  // state.git is ours alone and we hold its lock: unreachable objects can go now.
  await git.run(['reflog', 'expire', '--expire=now', '--expire-unreachable=now', '--all']);
  await git.run(['gc', '--quiet', '--prune=now']);
  // The workspace is shared with the agent's own git commands: keep what the
  // last checkpoint.workspace_grace (1h) wrote, so an operation in flight never loses its objects. Kept in
  // a cruft pack: without --cruft, gc writes each unreachable packed object of
  // the hour out again as a loose file (a disk block each), which no repack of
  // the checkpoints takes (they pack reachable objects) and which stayed until
  // the next day's prune.
  if (wsExists) await ws.run(['gc', '--quiet', '--cruft', `--prune=${Math.max(1, Math.round(keepFor.workspaceGraceMs / 1000))}.seconds.ago`]);

  const bytesAfter = measure();
  return { ...plan, bytesBefore, bytesAfter, bytesFreed: bytesBefore - bytesAfter };
}
