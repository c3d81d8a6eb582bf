// Checkpoints: a commit of state/ on refs/checkpoints/<id> (and on main, so
// `git log` in state/ shows them), the task log's position, a checksum, and a
// snapshot of the workspace on refs/selfware/checkpoints/<id> in the
// workspace's own repository, made through a temporary index so the
// workspace's branch, index and HEAD are never touched.

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { dataError, noInputError, usageError } from '../exit.js';
import { fsyncDir, mkdirDurable } from '../fsutil.js';
import { IDENTITY, type Git } from '../git.js';
import type { RunPaths } from '../run.js';
import { TaskLog } from '../tasklog/index.js';
import { isoUtc } from '../units.js';
import { requireRun, stateGit, workspaceGit } from './layout.js';
import { indexTotals } from './gitindex.js';
import { withScratch } from './pending.js';
import { noteFailure, noteSuccess } from './attempts.js';
import { DB_COPY_REFS } from '../tasklog/copy.js';
import { checkObjects, gitObjectId, readObjects, setAsideObjects, writeLooseObject } from './objects.js';

export const KINDS = ['routine', 'task', 'pre-op', 'shutdown', 'recovery', 'manual'] as const;
export type Kind = (typeof KINDS)[number];

export const STATE_REF_PREFIX = 'refs/checkpoints/';
export const WORKSPACE_REF_PREFIX = 'refs/selfware/checkpoints/';

export interface Checkpoint {
  id: string;
  kind: Kind;
  /** ISO 8601 UTC. */
  time: string;
  seq: number;
  message: string;
  /** The state commit the ref points at. */
  commit: string;
  tree: string;
  parent: string | null;
  tasklog: { log: string; position: number };
  workspace: { commit: string | null; tree: string | null; head: string | null; branch: string | null };
  size: { state: number; workspace: number };
  checksum: string;
}

/** The JSON form of a checkpoint (documented in sw-checkpoint(1)). */
export function checkpointJson(c: Checkpoint): Record<string, unknown> {
  return {
    id: c.id,
    kind: c.kind,
    time: c.time,
    sequence: c.seq,
    message: c.message,
    size: c.size.state + c.size.workspace,
    state: { commit: c.commit, tree: c.tree, bytes: c.size.state },
    workspace: { commit: c.workspace.commit, tree: c.workspace.tree, head: c.workspace.head, branch: c.workspace.branch, bytes: c.size.workspace },
    tasklog: c.tasklog,
    checksum: c.checksum,
  };
}

const TRAILER = /^Selfware-([A-Za-z-]+): (.*)$/;

/** The canonical text the checksum covers: the metadata and both trees. */
function checksumInput(c: Omit<Checkpoint, 'commit' | 'parent' | 'checksum'>): string {
  return [
    'selfware-checkpoint 1',
    `id ${c.id}`,
    `kind ${c.kind}`,
    `time ${c.time}`,
    `seq ${c.seq}`,
    `message ${JSON.stringify(c.message)}`,
    `tasklog ${c.tasklog.log}@${c.tasklog.position}`,
    `state-tree ${c.tree}`,
    `workspace ${c.workspace.commit ?? 'none'} ${c.workspace.tree ?? 'none'} ${c.workspace.head ?? 'none'} ${c.workspace.branch ?? 'none'}`,
    `size ${c.size.state} ${c.size.workspace}`,
    '',
  ].join('\n');
}

export function computeChecksum(c: Omit<Checkpoint, 'commit' | 'parent' | 'checksum'>): string {
  return 'sha256:' + crypto.createHash('sha256').update(checksumInput(c)).digest('hex');
}

function commitMessage(c: Omit<Checkpoint, 'commit' | 'parent'>): string {
  const subject = `checkpoint ${c.id}: ${c.kind}${c.message ? ': ' + (c.message.split('\n')[0] ?? '').slice(0, 100) : ''}`;
  return [
    subject,
    '',
    `Selfware-Checkpoint: ${c.id}`,
    `Selfware-Kind: ${c.kind}`,
    `Selfware-Time: ${c.time}`,
    `Selfware-Sequence: ${c.seq}`,
    `Selfware-Message: ${JSON.stringify(c.message)}`,
    `Selfware-Tasklog: ${c.tasklog.log}@${c.tasklog.position}`,
    `Selfware-Workspace: ${c.workspace.commit ?? 'none'} ${c.workspace.tree ?? 'none'}`,
    `Selfware-Workspace-Head: ${c.workspace.head ?? 'none'} ${c.workspace.branch ?? 'none'}`,
    `Selfware-Size: ${c.size.state} ${c.size.workspace}`,
    `Selfware-Checksum: ${c.checksum}`,
    '',
  ].join('\n');
}

/** Parse a checkpoint from its commit object; throws a data error naming what is wrong. */
export function parseCheckpoint(commit: string, raw: string): Checkpoint {
  const headerEnd = raw.indexOf('\n\n');
  const headers = raw.slice(0, headerEnd < 0 ? raw.length : headerEnd).split('\n');
  const body = headerEnd < 0 ? '' : raw.slice(headerEnd + 2);
  const tree = headers.find((h) => h.startsWith('tree '))?.slice(5) ?? '';
  const parent = headers.find((h) => h.startsWith('parent '))?.slice(7) ?? null;
  const t: Record<string, string> = {};
  for (const line of body.split('\n')) {
    const m = TRAILER.exec(line);
    if (m) t[(m[1] as string).toLowerCase()] = m[2] as string;
  }
  const need = (k: string): string => {
    const v = t[k];
    if (v === undefined) throw dataError(`commit ${commit.slice(0, 12)}: no Selfware-${k} trailer`);
    return v;
  };
  const none = (v: string | undefined): string | null => (v === undefined || v === 'none' ? null : v);
  const [log, pos] = need('tasklog').split('@');
  const [wsCommit, wsTree] = need('workspace').split(' ');
  const [wsHead, wsBranch] = (t['workspace-head'] ?? 'none none').split(' ');
  const [sState, sWs] = need('size').split(' ');
  let message = '';
  try {
    message = JSON.parse(t.message ?? '""') as string;
  } catch {
    throw dataError(`commit ${commit.slice(0, 12)}: malformed Selfware-Message trailer`);
  }
  const kind = need('kind') as Kind;
  if (!KINDS.includes(kind)) throw dataError(`commit ${commit.slice(0, 12)}: unknown checkpoint kind '${kind}'`);
  return {
    id: need('checkpoint'),
    kind,
    time: need('time'),
    seq: Number(need('sequence')),
    message,
    commit,
    tree,
    parent,
    tasklog: { log: log ?? '', position: Number(pos) },
    workspace: { commit: none(wsCommit), tree: none(wsTree), head: none(wsHead), branch: none(wsBranch) },
    size: { state: Number(sState), workspace: Number(sWs) },
    checksum: need('checksum'),
  };
}

/** Every checkpoint of a run, newest first (by time, then sequence). Unreadable refs are listed in `broken`. */
export async function listCheckpoints(paths: RunPaths): Promise<{ checkpoints: Checkpoint[]; broken: Array<{ id: string; reason: string }> }> {
  requireRun(paths);
  const git = stateGit(paths);
  const res = await git.run(['for-each-ref', '--format=%(refname)%00%(objectname)', STATE_REF_PREFIX]);
  const refs = res.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [ref, oid] = l.split('\0') as [string, string];
      return { id: ref.slice(STATE_REF_PREFIX.length), oid };
    });
  const checkpoints: Checkpoint[] = [];
  const broken: Array<{ id: string; reason: string }> = [];
  if (refs.length === 0) return { checkpoints, broken };
  let objects: Map<string, { type: string; content: Buffer }>;
  try {
    objects = await readObjects(git, [...new Set(refs.map((r) => r.oid))]);
  } catch {
    // A corrupt object makes the batch fail: read one by one to find which.
    objects = new Map();
    for (const r of refs) {
      try {
        const one = await readObjects(git, [r.oid]);
        for (const [k, v] of one) objects.set(k, v);
      } catch {
        /* reported below */
      }
    }
  }
  for (const r of refs) {
    const obj = objects.get(r.oid);
    if (!obj || obj.type !== 'commit') {
      broken.push({ id: r.id, reason: `commit ${r.oid.slice(0, 12)} is ${obj ? `a ${obj.type}` : 'missing or unreadable'}` });
      continue;
    }
    try {
      const c = parseCheckpoint(r.oid, obj.content.toString('utf8'));
      if (c.id !== r.id) throw dataError(`ref says ${r.id} but the commit says ${c.id}`);
      checkpoints.push(c);
    } catch (e) {
      broken.push({ id: r.id, reason: (e as Error).message });
    }
  }
  sortNewestFirst(checkpoints);
  return { checkpoints, broken };
}

export function sortNewestFirst(list: Checkpoint[]): Checkpoint[] {
  return list.sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.seq - a.seq);
}

/** What may name a checkpoint: an id, a prefix of one, or "latest". */
export const CHECKPOINT_REF_RE = /^[0-9a-f]{1,64}$|^latest$/;

/** Resolve an id, a unique prefix of one, or "latest". */
export function resolveId(list: Checkpoint[], id: string): Checkpoint {
  if (!CHECKPOINT_REF_RE.test(id)) throw usageError(`invalid checkpoint id '${id}'`);
  if (id === 'latest') {
    const c = list[0];
    if (!c) throw noInputError('no checkpoints yet');
    return c;
  }
  const exact = list.find((c) => c.id === id);
  if (exact) return exact;
  const matches = list.filter((c) => c.id.startsWith(id));
  if (matches.length === 1) return matches[0] as Checkpoint;
  if (matches.length > 1) throw usageError(`checkpoint id '${id}' is ambiguous: ${matches.map((c) => c.id).join(', ')}`);
  throw noInputError(`no such checkpoint '${id}'`);
}

/** The tip this process read last, by git dir: a run's agent checkpoints after every task, and main moves under it only as it does. */
const tips = new Map<string, Checkpoint>();

/** The tip of main: the newest checkpoint in creation order. */
export async function readTip(git: Git): Promise<Checkpoint | null> {
  const cached = tips.get(git.gitDir);
  if (cached && (await git.readRef('refs/heads/main')) === cached.commit) return cached;
  const res = await git.run(['cat-file', '--batch'], { input: 'refs/heads/main\n' });
  const nl = res.stdout.indexOf('\n');
  const [oid, type] = res.stdout.slice(0, nl).split(' ');
  if (type !== 'commit' || !oid) return null;
  const tip = parseCheckpoint(oid, res.stdout.slice(nl + 1).replace(/\n$/, ''));
  tips.set(git.gitDir, tip);
  return tip;
}

/** Stage all of state/ (new, changed, deleted) and return its tree. */
/** The staged tree with no damaged object under it: damaged ones set aside and written again from state/. */
async function stageIntact(paths: RunPaths, git: Git, tree: string, said: string[]): Promise<string> {
  for (let round = 0; round < 3; round++) {
    const seen = new Map<string, string | null>();
    await checkTreeObjects(git, [], tree, seen, 'state');
    const bad = [...seen].filter(([, err]) => err !== null);
    if (bad.length === 0) return tree;
    const aside = path.join(paths.runDir, `state.git.damaged-${Date.now()}`);
    for (const [oid, err] of bad) said.push(`state.git: object ${oid.slice(0, 12)} ${err}`);
    said.push(...(await setAsideObjects(git, bad.map(([oid]) => oid), aside)));
    // The index names the objects as written: without it git hashes state/ again and writes what is missing.
    fs.rmSync(path.join(git.gitDir, 'index'), { force: true });
    tree = await stageState(git);
  }
  throw dataError(`state.git: damaged objects remain after setting them aside three times`);
}

async function stageState(git: Git): Promise<string> {
  const [, tree] = await git.sequence([['add', '--all', '--', '.'], ['write-tree']]);
  return tree as string;
}

export interface WorkspaceSnapshot {
  tree: string;
  head: string | null;
  branch: string | null;
  /** Bytes of the files in the snapshot. */
  bytes: number;
}

const SNAPSHOT_INDEX = 'selfware-snapshot.index';

/**
 * The workspace's tracked and untracked (not ignored) files as a tree, staged
 * through a temporary index seeded from the real one (so unchanged files are
 * not hashed again). The real index, HEAD and branch are not touched.
 */
export async function snapshotWorkspace(wsDir: string): Promise<WorkspaceSnapshot> {
  const ws = workspaceGit(wsDir);
  const tmpIndex = path.join(ws.gitDir, `${SNAPSHOT_INDEX}.${process.pid}`);
  try {
    fs.rmSync(`${tmpIndex}.lock`, { force: true });
    try {
      fs.copyFileSync(path.join(ws.gitDir, 'index'), tmpIndex);
    } catch {
      fs.rmSync(tmpIndex, { force: true });
    }
    const g = ws.with({ GIT_INDEX_FILE: tmpIndex });
    const [, tree, resolved] = await g.sequence([['add', '--all', '--', '.'], ['write-tree'], { args: ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], allowFail: true }]);
    const head = resolved || null;
    const bytes = indexTotals(tmpIndex)?.bytes ?? 0;
    let branch: string | null = null;
    try {
      const h = fs.readFileSync(path.join(ws.gitDir, 'HEAD'), 'utf8').trim();
      if (h.startsWith('ref: refs/heads/')) branch = h.slice('ref: refs/heads/'.length);
    } catch {
      /* no HEAD: not a repository, add failed above */
    }
    return { tree, head, branch, bytes };
  } finally {
    fs.rmSync(tmpIndex, { force: true });
  }
}

/** Remove snapshot indexes and ref temp files left in a git dir by killed creates. */
export function removeStaleTempFiles(gitDir: string): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync(gitDir);
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(SNAPSHOT_INDEX) || n.startsWith('selfware-ref.')) fs.rmSync(path.join(gitDir, n), { force: true });
}

/** Lock files a killed update-ref left on our own refs (never the user's). */
function removeLocksUnder(dir: string): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) if (n.endsWith('.lock')) fs.rmSync(path.join(dir, n), { force: true });
}

/** How old a lock on the workspace's packed-refs must be to be taken for one a killed git left (git holds it for milliseconds). */
const STALE_PACKED_REFS_LOCK_MS = 60_000;

/**
 * The workspace's packed-refs.lock, when older than a minute: what a
 * pack-refs of packLoose killed mid-way leaves (the user's own git commands
 * hold it for milliseconds). Left there, it fails every deletion of a packed
 * ref, selfware's prune and the user's `git branch -d` alike.
 */
export function removeStalePackedRefsLock(gitDir: string): void {
  const lock = path.join(gitDir, 'packed-refs.lock');
  try {
    if (Date.now() - fs.statSync(lock).mtimeMs > STALE_PACKED_REFS_LOCK_MS) fs.rmSync(lock, { force: true });
  } catch {
    /* none */
  }
}

/** Point ref at oid: a loose ref file replaced atomically and durably (temp in the git dir, rename, fsync). */
export function writeRef(gitDir: string, ref: string, oid: string): void {
  const file = path.join(gitDir, ref);
  mkdirDurable(path.dirname(file));
  const tmp = path.join(gitDir, `selfware-ref.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    fs.writeSync(fd, `${oid}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** A commit object's text by selfware's identity (IDENTITY), for hash-object. */
export function workspaceCommitObject(tree: string, parent: string | null, epoch: number, message: string): string {
  const who = `${IDENTITY.name} <${IDENTITY.email}> ${epoch} +0000`;
  return `tree ${tree}\n${parent ? `parent ${parent}\n` : ''}author ${who}\ncommitter ${who}\n\n${message}`;
}

/** A fresh random id: no loose or packed ref of that name exists. */
function newId(git: Git): string {
  let packed = '';
  try {
    packed = fs.readFileSync(path.join(git.gitDir, 'packed-refs'), 'utf8');
  } catch {
    /* no packed refs */
  }
  for (;;) {
    const id = crypto.randomBytes(4).toString('hex');
    const ref = `${STATE_REF_PREFIX}${id}`;
    if (!fs.existsSync(path.join(git.gitDir, ref)) && !packed.includes(` ${ref}\n`)) return id;
  }
}

export interface CreateOptions {
  kind: Kind;
  message?: string;
  time?: Date;
  force?: boolean;
  /**
   * Read back every object the new state tree names before committing, and
   * write again from the live files any that is damaged (moved aside to
   * state.git.damaged-TIME): git otherwise reuses a damaged object whose name
   * it knows. Lines saying what was repaired are pushed here.
   */
  checkObjects?: string[];
}

export type CreateResult = { skipped: false; checkpoint: Checkpoint } | { skipped: true; latest: Checkpoint };

/**
 * Commit state/ and snapshot the workspace as a checkpoint. The caller holds
 * the state lock and has initialised the run.
 */
export async function createCheckpointLocked(paths: RunPaths, wsDir: string, opts: CreateOptions): Promise<CreateResult> {
  let result: CreateResult;
  try {
    result = await createLocked(paths, wsDir, opts);
  } catch (e) {
    noteFailure(paths, opts.kind, e);
    throw e;
  }
  noteSuccess(paths, opts.kind, result.skipped ? result.latest.id : null);
  if (!result.skipped) await packLoose([{ git: stateGit(paths), store: 'state' }, { git: workspaceGit(wsDir), store: 'workspace' }]);
  return result;
}

/** Loose objects past which a checkpoint packs them (git's gc.auto, which selfware otherwise turns off). */
export const PACK_LOOSE_AFTER = 128;
/** Packs past which they are consolidated into one (git's gc.autoPackLimit). */
export const PACK_LIMIT = 24;
/** Loose refs past which they are packed into packed-refs (git gc's pack-refs). */
export const PACK_REFS_AFTER = 64;

const isFanout = (n: string): boolean => /^[0-9a-f]{2}$/.test(n);

/** Loose ref files under refs/, counted (lock and temporary files aside). */
function looseRefs(dir: string): number {
  let n = 0;
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (e.isDirectory()) n += looseRefs(path.join(dir, e.name));
    else if (e.isFile() && !e.name.endsWith('.lock')) n++;
  }
  return n;
}

/** The names of a git dir's loose objects. */
function looseObjects(gitDir: string): string[] {
  const dir = path.join(gitDir, 'objects');
  const out: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (!isFanout(n)) continue;
    try {
      for (const f of fs.readdirSync(path.join(dir, n))) if (/^[0-9a-f]{38}$/.test(f)) out.push(n + f);
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Loose objects, packs and loose refs in a git dir, counted (git's gc --auto only estimates from one fan-out directory, too coarse at a few hundred). */
export function objectCounts(gitDir: string): { loose: number; packs: number; refs: number } {
  const dir = path.join(gitDir, 'objects');
  const loose = looseObjects(gitDir).length;
  let packs = 0;
  try {
    packs = fs.readdirSync(path.join(dir, 'pack')).filter((f) => f.endsWith('.pack')).length;
  } catch {
    /* none */
  }
  return { loose, packs, refs: looseRefs(path.join(gitDir, 'refs')) };
}

/**
 * Pack loose objects and refs as git's own gc --auto would, but sooner: past
 * PACK_LOOSE_AFTER loose objects, all of them into a new pack, reachable or
 * not (an incremental `git repack` takes the reachable ones only: it left the
 * snapshots of dropped pre-task refs and superseded task log copies loose, and
 * ran at every checkpoint, packing nothing); past PACK_LIMIT packs, all into
 * one, unreachable objects kept in the workspace's (the daily prune removes
 * them, with its own grace for the workspace's git commands in flight) and
 * dropped in state.git's; past PACK_REFS_AFTER loose refs, all refs into
 * packed-refs. Each loose object and each loose ref is a file, a
 * disk block at least (4 KiB for 41 bytes of ref), and every checkpoint writes
 * several objects and two refs: between two daily prunes a run that
 * checkpoints each task held thousands of such files, megabytes where a pack
 * of the same is a fraction of that. Under the caller's state lock, which is
 * what makes packing refs/heads/main safe (selfware moves it, as every
 * checkpoint ref, only under that lock; git locks the workspace's own). A
 * failure is not the checkpoint's (it is made): the next one, or the daily
 * prune, packs them.
 */
export async function packLoose(repos: Array<{ git: Git; store: 'state' | 'workspace' }>): Promise<void> {
  for (const { git: g, store } of repos) {
    const c = objectCounts(g.gitDir);
    if (c.loose >= PACK_LOOSE_AFTER) {
      // In state.git, the task log's database copy stays loose: storeDbCopy deletes its file when the
      // next copy replaces it, which it cannot do to an object in a pack.
      const keep = new Set(store === 'state' ? (await g.out(['for-each-ref', '--format=%(objectname)', DB_COPY_REFS], { allowFail: true })).split('\n') : []);
      const names = looseObjects(g.gitDir).filter((o) => !keep.has(o));
      const packed = await g.run(['pack-objects', '-q', path.join(g.gitDir, 'objects', 'pack', 'pack')], { input: `${names.join('\n')}\n`, allowFail: true });
      if (packed.code === 0) await g.run(['prune-packed', '-q'], { allowFail: true });
    }
    // Unreachable objects: kept in the workspace's (see above); in state.git, all of whose writers
    // hold the state lock, they are garbage (a superseded database copy, a pruned checkpoint's
    // objects) and go, but for what the index names (repack keeps those).
    if (c.packs >= PACK_LIMIT) await g.run(['repack', '-a', '-d', '-q', ...(store === 'workspace' ? ['--keep-unreachable'] : [])], { allowFail: true });
    if (c.refs >= PACK_REFS_AFTER) await g.run(['pack-refs', '--all', '--prune'], { allowFail: true });
  }
}

/** Promise.all, but a failure is thrown only once every promise has settled (the first failure, in order). */
async function allSettledOrThrow<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

async function createLocked(paths: RunPaths, wsDir: string, opts: CreateOptions): Promise<CreateResult> {
  const git = stateGit(paths);
  const ws = workspaceGit(wsDir);
  git.removeStaleLocks();
  removeStaleTempFiles(ws.gitDir);
  removeStaleTempFiles(git.gitDir);
  removeLocksUnder(path.join(ws.gitDir, WORKSPACE_REF_PREFIX));
  removeStalePackedRefsLock(ws.gitDir);

  const tasklog = TaskLog.forRun(paths);
  // Each settled before a failure is thrown: a git still at work when the command exits could not
  // remove the temporary objects it leaves on a full disk (removeTempObjects runs once it has failed).
  const [prev, staged, snap] = await allSettledOrThrow([readTip(git), stageState(git), snapshotWorkspace(wsDir)] as const);
  let stateTree = staged;
  if (opts.checkObjects) stateTree = await stageIntact(paths, git, stateTree, opts.checkObjects);

  if (prev && opts.kind === 'routine' && !opts.force && prev.tree === stateTree && prev.workspace.tree === snap.tree) {
    return { skipped: true, latest: prev };
  }
  const id = newId(git);
  const time = isoUtc(opts.time ?? new Date());
  const epoch = Math.floor(Date.parse(time) / 1000);

  const stateBytes = indexTotals(path.join(git.gitDir, 'index'))?.bytes ?? 0;
  // The workspace commit's bytes are fixed by its tree, parent, identity, time
  // and message, so its id is known before git writes it, and the state
  // commit (which names it) need not wait.
  const wsObject = workspaceCommitObject(snap.tree, snap.head, epoch, `selfware checkpoint ${id} of run ${paths.run}\n`);
  const wsCommit = gitObjectId('commit', wsObject);
  const end = tasklog.end();
  const meta = {
    id,
    kind: opts.kind,
    time,
    seq: (prev?.seq ?? 0) + 1,
    message: opts.message ?? '',
    tree: stateTree,
    tasklog: { log: end.log, position: end.position },
    workspace: { commit: wsCommit, tree: snap.tree, head: snap.head, branch: snap.branch },
    size: { state: stateBytes, workspace: snap.bytes },
  };
  const checksum = computeChecksum(meta);
  // Both commits written here, as git's hash-object and commit-tree would (selfware's identity, the checkpoint's time).
  const written = writeLooseObject(ws.gitDir, 'commit', wsObject);
  if (written !== wsCommit) throw new Error(`workspace snapshot commit is ${written}, expected ${wsCommit}`);
  const commit = writeLooseObject(git.gitDir, 'commit', workspaceCommitObject(stateTree, prev?.commit ?? null, epoch, commitMessage({ ...meta, checksum })));
  // The workspace ref first: a state checkpoint never lacks its snapshot.
  // Both refs are new names, and main moves under our lock, so they are
  // written as loose ref files directly (atomically, durably).
  writeRef(ws.gitDir, `${WORKSPACE_REF_PREFIX}${id}`, wsCommit);
  writeRef(git.gitDir, `${STATE_REF_PREFIX}${id}`, commit);
  writeRef(git.gitDir, 'refs/heads/main', commit);
  const checkpoint: Checkpoint = { ...meta, checksum, commit, parent: prev?.commit ?? null };
  tips.set(git.gitDir, checkpoint);
  tasklog.append({
    t: 'checkpoint',
    id,
    kind: opts.kind,
    time,
    message: meta.message,
    position: end.position,
    state_commit: commit,
    workspace_commit: wsCommit,
    size: stateBytes + snap.bytes,
  });
  return { skipped: false, checkpoint };
}

export interface VerifyReport {
  id: string;
  valid: boolean;
  errors: string[];
}

/**
 * Check checkpoints: every object of the state commit and of the workspace
 * snapshot re-hashed against its id, the checksum recomputed, and the task log
 * reaching the recorded position. Objects shared between checkpoints are
 * read once.
 */
export async function verifyCheckpoints(
  paths: RunPaths,
  wsDir: string,
  list: Checkpoint[],
  broken: Array<{ id: string; reason: string }>,
): Promise<VerifyReport[]> {
  const git = stateGit(paths);
  const ws = workspaceGit(wsDir);
  const checked = { state: new Map<string, string | null>(), ws: new Map<string, string | null>() };
  let logEnd: { position: number; log: string } | null = null;
  let logError = '';
  try {
    logEnd = TaskLog.forRun(paths).end();
  } catch (e) {
    logError = (e as Error).message;
  }
  const reports: VerifyReport[] = broken.map((b) => ({ id: b.id, valid: false, errors: [b.reason] }));
  for (const c of list) {
    const errors: string[] = [];
    const expect = computeChecksum(c);
    if (expect !== c.checksum) errors.push(`checksum mismatch: recorded ${c.checksum.slice(0, 19)}..., computed ${expect.slice(0, 19)}...`);
    errors.push(...(await checkTreeObjects(git, [c.commit], c.tree, checked.state, 'state')));
    if (c.workspace.commit && c.workspace.tree) {
      if (!fs.existsSync(ws.gitDir)) errors.push(`workspace repository '${wsDir}' is missing`);
      else {
        const refOk = await ws.run(['rev-parse', '--verify', '--quiet', `${WORKSPACE_REF_PREFIX}${c.id}`], { allowFail: true });
        if (refOk.code !== 0 || refOk.stdout.trim() !== c.workspace.commit) errors.push(`workspace snapshot ref ${WORKSPACE_REF_PREFIX}${c.id} is missing or moved`);
        errors.push(...(await checkTreeObjects(ws, [c.workspace.commit], c.workspace.tree, checked.ws, 'workspace')));
      }
    }
    if (!logEnd) errors.push(`task log unreadable: ${logError}`);
    else if (logEnd.log !== c.tasklog.log) errors.push(`task log ${c.tasklog.log} recorded, but the run's log is ${logEnd.log}`);
    else if (logEnd.position < c.tasklog.position) errors.push(`task log ends at position ${logEnd.position}, before the recorded ${c.tasklog.position}`);
    reports.push({ id: c.id, valid: errors.length === 0, errors });
  }
  return reports;
}

/** Check a commit and every object below tree; results are cached in seen (oid -> error or null). */
async function checkTreeObjects(git: Git, commits: string[], tree: string, seen: Map<string, string | null>, what: string): Promise<string[]> {
  const errors: string[] = [];
  const fresh = (oids: string[]): string[] => oids.filter((o) => !seen.has(o));
  const record = async (oids: string[]): Promise<void> => {
    const todo = fresh(oids);
    if (todo.length === 0) return;
    const bad = await checkObjects(git, todo);
    const badMap = new Map(bad.map((b) => [b.oid, b.reason]));
    for (const o of todo) seen.set(o, badMap.get(o) ?? null);
  };
  await record([...commits, tree]);
  const listing = await git.run(['ls-tree', '-r', '-t', '-z', tree], { allowFail: true });
  if (listing.code !== 0) {
    const first = listing.stderr.split('\n')[0]?.replace(/^(fatal|error): /, '') ?? '';
    errors.push(`${what} tree ${tree.slice(0, 12)} cannot be listed: ${first}`);
  } else {
    const oids = listing.stdout
      .split('\0')
      .filter((e) => e !== '')
      .map((e) => /^\d+ (\w+) ([0-9a-f]+)\t/.exec(e))
      .filter((m): m is RegExpExecArray => m !== null && m[1] !== 'commit')
      .map((m) => m[2] as string);
    await record(oids);
    for (const o of oids) {
      const err = seen.get(o);
      if (err) errors.push(`${what} object ${o.slice(0, 12)}: ${err}`);
    }
  }
  for (const o of [...commits, tree]) {
    const err = seen.get(o);
    if (err) errors.push(`${what} ${o === tree ? 'tree' : 'commit'} ${o.slice(0, 12)}: ${err}`);
  }
  return [...new Set(errors)];
}

export interface DiffEntry {
  path: string;
  status: 'added' | 'removed' | 'modified' | 'type-changed';
  added: number | null;
  removed: number | null;
}

/** What changed in state/ from checkpoint a to b (or to the files now). */
export async function diffState(paths: RunPaths, from: Checkpoint, to: Checkpoint | null): Promise<DiffEntry[]> {
  const git = stateGit(paths);
  // Against the files now: staged in a scratch index and object directory, so a diff writes nothing into the run.
  if (!to) return withScratch(git, ({ tree, read }) => diffTrees(read, from.tree, tree), { blobs: true });
  return diffTrees(git, from.tree, to.tree);
}

async function diffTrees(git: Git, fromTree: string, toTree: string): Promise<DiffEntry[]> {
  const [ns, num] = await Promise.all([
    git.out(['diff-tree', '-r', '-z', '--no-renames', '--name-status', fromTree, toTree]),
    git.out(['diff-tree', '-r', '-z', '--no-renames', '--numstat', fromTree, toTree]),
  ]);
  const counts = new Map<string, [number | null, number | null]>();
  const numParts = num.split('\0');
  for (const rec of numParts) {
    const m = /^(\d+|-)\t(\d+|-)\t(.*)$/s.exec(rec);
    if (m) counts.set(m[3] as string, [m[1] === '-' ? null : Number(m[1]), m[2] === '-' ? null : Number(m[2])]);
  }
  const parts = ns.split('\0').filter((p) => p !== '');
  const entries: DiffEntry[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const code = parts[i] as string;
    const p = parts[i + 1] as string;
    const status = code === 'A' ? 'added' : code === 'D' ? 'removed' : code === 'T' ? 'type-changed' : 'modified';
    const [a, r] = counts.get(p) ?? [null, null];
    entries.push({ path: p, status, added: a, removed: r });
  }
  return entries;
}
