// The archive of finished tasks. A finished task (completed, failed for good,
// cancelled) keeps a queue file and a transcript in state/, a file (a disk
// block at least) each, read again by every look at the queue. Once the
// newest checkpoint holds both as they are, and the task has been finished a
// while (agent.archive_after), the agent moves them into the archive:
//
//   state/archive/DAY/HHMMSSmmm-N.jsonl.gz
//
// one new gzip file per pass, never written again (a file that grew would be
// stored in git anew at every checkpoint), one JSON line per task holding its
// queue file and transcript byte for byte. Archives older than
// agent.archive_keep leave state/; the checkpoints that hold them keep them
// until those are pruned. Readers that need finished tasks (sw-agent list,
// show, add's check for a used id, recovery's reconciliation) read the
// archive too; the agent's own loop reads only the live queue.

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { dataError } from '../exit.js';
import { fsyncDir, mkdirDurable, writeFileAtomic } from '../fsutil.js';
import type { Git } from '../git.js';
import { readFileBounded } from '../safefile.js';
import { parseTask, queueDir, readQueue, type Task, type TaskDefaults } from './task.js';

export const ARCHIVE_DIR = 'archive';
const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;
const FILE_RE = /^\d{9}-\d+\.jsonl\.gz$/;
const FINISHED = new Set(['completed', 'failed', 'cancelled']);

export function archiveDir(stateDir: string): string {
  return path.join(stateDir, ARCHIVE_DIR);
}

/** One archived task: its queue file's name and text, its transcript's text (null: it had none), and the archive holding it. */
export interface ArchiveEntry {
  id: string;
  name: string;
  queue: string;
  transcript: string | null;
  file: string;
}

/** The archive files, oldest first. */
export function archiveFiles(stateDir: string): string[] {
  const dir = archiveDir(stateDir);
  let days: string[] = [];
  try {
    days = fs.readdirSync(dir).filter((d) => DAY_RE.test(d)).sort();
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const d of days) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(path.join(dir, d)).filter((n) => FILE_RE.test(n)).sort();
    } catch {
      continue;
    }
    for (const n of names) out.push(path.join(dir, d, n));
  }
  return out;
}

/** The tasks of one archive file, in order, and the problems of lines that could not be read; throws when the file cannot be read. */
function readArchiveFile(file: string): { entries: ArchiveEntry[]; problems: string[] } {
  const text = zlib.gunzipSync(readFileBounded(file, 'archive'), { maxOutputLength: 1024 * 1024 * 1024 }).toString('utf8');
  const entries: ArchiveEntry[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    let v: Partial<ArchiveEntry>;
    try {
      v = JSON.parse(line) as Partial<ArchiveEntry>;
    } catch (e) {
      problems.push(`${file}:${i + 1}: ${(e as Error).message}`);
      return;
    }
    if (typeof v.id !== 'string' || typeof v.name !== 'string' || typeof v.queue !== 'string' || (v.transcript !== null && typeof v.transcript !== 'string')) {
      problems.push(`${file}:${i + 1}: not an archived task`);
      return;
    }
    entries.push({ id: v.id, name: v.name, queue: v.queue, transcript: v.transcript ?? null, file });
  });
  return { entries, problems };
}

/** Every archived task by id, and the problems of files or lines that could not be read (named, skipped). */
export function readArchive(stateDir: string): { entries: Map<string, ArchiveEntry>; problems: string[] } {
  const entries = new Map<string, ArchiveEntry>();
  const problems: string[] = [];
  for (const file of archiveFiles(stateDir)) {
    let r: ReturnType<typeof readArchiveFile>;
    try {
      r = readArchiveFile(file);
    } catch (e) {
      problems.push(`${file}: cannot read: ${(e as Error).message}`);
      continue;
    }
    problems.push(...r.problems);
    // The first archiving stands.
    for (const e of r.entries) if (!entries.has(e.id)) entries.set(e.id, e);
  }
  return { entries, problems };
}

/**
 * The blobs the newest checkpoint (refs/heads/main) holds under paths, by
 * path relative to the state directory; null when there is no checkpoint
 * to ask.
 */
async function tipBlobs(git: Git, paths: string[]): Promise<Map<string, string> | null> {
  const ls = await git.run(['ls-tree', '-r', '--full-tree', 'refs/heads/main', '--', ...paths], { allowFail: true });
  if (ls.code !== 0) return null;
  const tip = new Map<string, string>();
  for (const l of ls.stdout.split('\n')) {
    const m = /^\d+ blob ([0-9a-f]+)\t(.+)$/.exec(l);
    if (m) tip.set(m[2] as string, m[1] as string);
  }
  return tip;
}

/**
 * The problems of the archives, for recovery's validation at every start:
 * an archive the newest checkpoint holds byte for byte (git's hash of the
 * file equals the checkpoint's) was read whole when it was written and is
 * not inflated again; the others (newer than the checkpoint, or changed
 * since) are read whole, as readArchive does.
 */
export async function archiveProblems(stateDir: string, git: Git): Promise<string[]> {
  const files = archiveFiles(stateDir);
  if (files.length === 0) return [];
  const tip = (await tipBlobs(git, [ARCHIVE_DIR])) ?? new Map<string, string>();
  let hashes: string[] = [];
  if (tip.size > 0) {
    const h = await git.run(['hash-object', '--stdin-paths'], { input: files.join('\n') + '\n', allowFail: true });
    if (h.code === 0) hashes = h.stdout.split('\n');
  }
  const problems: string[] = [];
  files.forEach((file, i) => {
    if (hashes[i] !== undefined && tip.get(path.relative(stateDir, file)) === hashes[i]) return;
    try {
      problems.push(...readArchiveFile(file).problems);
    } catch (e) {
      problems.push(`${file}: cannot read: ${(e as Error).message}`);
    }
  });
  return problems;
}

/**
 * The tasks of archives that left state/ (past agent.archive_keep): a line
 * each, `ID STATUS DAY`, so recovery never restores them and no new task takes
 * their id. About 30 bytes a task, rewritten only when an archive leaves.
 */
export const DROPPED_FILE = 'dropped.ids';

/** The tasks of archives that left state/, by id: their status and the day of their archive. */
export function readDropped(stateDir: string): Map<string, { status: string; day: string }> {
  const out = new Map<string, { status: string; day: string }>();
  let text: string;
  try {
    text = readFileBounded(path.join(archiveDir(stateDir), DROPPED_FILE), 'archive').toString('utf8');
  } catch {
    return out;
  }
  for (const l of text.split('\n')) {
    const [id, status, day] = l.split(' ');
    if (id && status && day && !out.has(id)) out.set(id, { status, day });
  }
  return out;
}

/** When an archive was written, from its folder and name (DAY/HHMMSSmmm-N), in ms; null when they do not say. */
export function archiveTime(file: string): number | null {
  const day = path.basename(path.dirname(file));
  const m = /^(\d{2})(\d{2})(\d{2})(\d{3})-/.exec(path.basename(file));
  if (!DAY_RE.test(day) || !m) return null;
  const t = Date.parse(`${day}T${m[1]}:${m[2]}:${m[3]}.${m[4]}Z`);
  return Number.isFinite(t) ? t : null;
}

/** The index beside an archive: a line per task, `ID STATUS`, so readers of ids and counts need not inflate the archive. */
const indexFile = (file: string): string => file.replace(/\.jsonl\.gz$/, '.ids');

const statusOf = (queueText: string): string => /^status:\s*(\S+)/m.exec(queueText)?.[1] ?? 'completed';

/** One archive's tasks and their status: from its index, or from the archive itself where the index is missing (a pass stopped between the two); empty when neither can be read. */
function indexOf(file: string): Map<string, string> {
  const out = new Map<string, string>();
  let text: string | null = null;
  try {
    text = readFileBounded(indexFile(file), 'archive').toString('utf8');
  } catch {
    text = null;
  }
  if (text !== null) {
    for (const l of text.split('\n')) {
      const [id, status] = l.split(' ');
      if (id && !out.has(id)) out.set(id, status ?? 'completed');
    }
    return out;
  }
  try {
    for (const e of readArchiveFile(file).entries) if (!out.has(e.id)) out.set(e.id, statusOf(e.queue));
  } catch {
    /* named by readArchive's problems (validation, list) */
  }
  return out;
}

/**
 * Every archived task's id and status (recovery's reconciliation, a new task's
 * id, the counts of status and the report), those of archives that left
 * state/ included, without inflating an archive that has its index.
 */
export function readArchiveIndex(stateDir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of archiveFiles(stateDir)) for (const [id, st] of indexOf(file)) if (!out.has(id)) out.set(id, st);
  for (const [id, d] of readDropped(stateDir)) if (!out.has(id)) out.set(id, d.status);
  return out;
}

/** The ids of every archived task. */
export function readArchiveIds(stateDir: string): Set<string> {
  return new Set(readArchiveIndex(stateDir).keys());
}

/** An archived task, parsed by the rules of the queue; null when it is not in the archive. */
export async function archivedTask(stateDir: string, id: string, defaults: TaskDefaults): Promise<{ task: Task; transcript: string | null; file: string } | null> {
  // The indexes say which archive holds it (the first archiving stands): only that one is inflated.
  let e: ArchiveEntry | undefined;
  for (const file of archiveFiles(stateDir)) {
    if (!indexOf(file).has(id)) continue;
    try {
      e = readArchiveFile(file).entries.find((x) => x.id === id);
    } catch {
      e = undefined;
    }
    if (e) break;
  }
  // An index that lost its line (a damaged byte): every archive, read whole.
  e ??= readArchive(stateDir).entries.get(id);
  if (!e) return null;
  return { task: await parseTask(path.join(e.file, e.name), e.queue, defaults), transcript: e.transcript, file: e.file };
}

export interface ArchivePass {
  /** Tasks moved into the new archive file. */
  archived: string[];
  /** The new archive file, or null. */
  file: string | null;
  /** Tasks already archived by a pass that was stopped before it removed their live files: removed now. */
  finished: string[];
  /** Archives older than agent.archive_keep that left state/ (DAY/FILE). */
  dropped: string[];
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/**
 * One pass: finished tasks idle for `olderThanMs` whose queue file and
 * transcript the newest checkpoint holds unchanged go into one new archive
 * file, then leave the queue. The caller holds the state lock (so no
 * checkpoint moves the tip meanwhile).
 */
export async function archiveFinished(
  stateDir: string,
  git: Git,
  opts: { defaults: TaskDefaults; olderThanMs: number; keepMs: number; now: number },
): Promise<ArchivePass> {
  const res: ArchivePass = { archived: [], file: null, finished: [], dropped: [] };
  // What the newest checkpoint holds, by path.
  const tip = await tipBlobs(git, ['queue', 'transcripts']);
  if (!tip) return res;
  const { tasks } = await readQueue(stateDir, opts.defaults);
  const candidates = tasks.filter((t) => FINISHED.has(t.status) && opts.now - Date.parse(t.updated) >= opts.olderThanMs);
  if (candidates.length > 0) {
    const files = candidates.map((t) => {
      const yaml = path.join(queueDir(stateDir), `${t.id}.yaml`);
      const name = fs.existsSync(yaml) ? `${t.id}.yaml` : `${t.id}.yml`;
      const tr = path.join(stateDir, 'transcripts', `${t.id}.jsonl`);
      return { task: t, name, queueFile: path.join(queueDir(stateDir), name), transcriptFile: fs.existsSync(tr) ? tr : null };
    });
    const toHash = files.flatMap((f) => [f.queueFile, ...(f.transcriptFile ? [f.transcriptFile] : [])]);
    const hashes = (await git.out(['hash-object', '--stdin-paths'], { input: toHash.join('\n') + '\n' })).split('\n');
    const live = new Map(toHash.map((p, i) => [p, hashes[i] ?? '']));
    const held = files.filter(
      (f) =>
        tip.get(`queue/${f.name}`) === live.get(f.queueFile) &&
        (f.transcriptFile ? tip.get(`transcripts/${f.task.id}.jsonl`) === live.get(f.transcriptFile) : !tip.has(`transcripts/${f.task.id}.jsonl`)),
    );
    // Already archived (a pass stopped before it removed the live files): found by the index, compared whole.
    const index = readArchiveIndex(stateDir);
    const entries = held.some((f) => index.has(f.task.id)) ? readArchive(stateDir).entries : new Map<string, ArchiveEntry>();
    const fresh: typeof held = [];
    for (const f of held) {
      const e = index.has(f.task.id) ? entries.get(f.task.id) : undefined;
      if (e && e.queue === fs.readFileSync(f.queueFile, 'utf8')) res.finished.push(f.task.id);
      else if (!index.has(f.task.id)) fresh.push(f);
    }
    if (fresh.length > 0) {
      const d = new Date(opts.now);
      const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
      const dir = path.join(archiveDir(stateDir), day);
      const file = path.join(dir, `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${pad(d.getUTCMilliseconds(), 3)}-${fresh.length}.jsonl.gz`);
      if (fs.existsSync(file)) throw dataError(`${file}: exists already`);
      const lines = fresh.map((f) =>
        JSON.stringify({ id: f.task.id, name: f.name, queue: fs.readFileSync(f.queueFile, 'utf8'), transcript: f.transcriptFile ? fs.readFileSync(f.transcriptFile, 'utf8') : null }),
      );
      mkdirDurable(dir);
      writeFileAtomic(file, zlib.gzipSync(lines.join('\n') + '\n', { level: 9 }));
      writeFileAtomic(indexFile(file), fresh.map((f) => `${f.task.id} ${f.task.status}`).join('\n') + '\n');
      res.file = file;
      res.archived = fresh.map((f) => f.task.id);
    }
    const gone = new Set([...res.archived, ...res.finished]);
    for (const f of files) {
      if (!gone.has(f.task.id)) continue;
      fs.rmSync(f.queueFile, { force: true });
      if (f.transcriptFile) fs.rmSync(f.transcriptFile, { force: true });
    }
    if (gone.size > 0) {
      fsyncDir(queueDir(stateDir));
      if (fs.existsSync(path.join(stateDir, 'transcripts'))) fsyncDir(path.join(stateDir, 'transcripts'));
    }
  }
  // Archives older than keepMs leave state/ (the checkpoints that hold them keep them); a day's
  // folder goes with its last archive.
  const horizon = opts.now - opts.keepMs;
  const leaving = archiveFiles(stateDir).filter((file) => {
    const t = archiveTime(file);
    return t !== null && t <= horizon;
  });
  if (leaving.length > 0) {
    // Their ids stay (dropped.ids, written before the archives go): recovery must not restore those
    // tasks from the task log, nor a new task take an id of theirs. Only the leaving archives' indexes are read.
    const kept = readDropped(stateDir);
    const lines = [...kept].map(([id, d]) => `${id} ${d.status} ${d.day}`);
    for (const file of leaving) {
      const day = path.basename(path.dirname(file));
      for (const [id, status] of indexOf(file)) {
        if (kept.has(id)) continue;
        kept.set(id, { status, day });
        lines.push(`${id} ${status} ${day}`);
      }
    }
    writeFileAtomic(path.join(archiveDir(stateDir), DROPPED_FILE), lines.join('\n') + '\n');
    const days = new Set<string>();
    for (const file of leaving) {
      fs.rmSync(file, { force: true });
      fs.rmSync(indexFile(file), { force: true });
      days.add(path.dirname(file));
      res.dropped.push(path.relative(archiveDir(stateDir), file));
    }
    for (const d of days) {
      let left: string[] = [];
      try {
        left = fs.readdirSync(d);
      } catch {
        continue;
      }
      if (left.length === 0) fs.rmSync(d, { recursive: true, force: true });
      else fsyncDir(d);
    }
    fsyncDir(archiveDir(stateDir));
  }
  return res;
}
