// The run's memory across tasks: state/memory/notes.md (what the agent noted,
// its lessons) and state/memory/outcomes.md (how each attempt ended), plain
// lines a human can read and edit, checkpointed with the rest of state/.
// Appends are durable before they return; the files are kept to a bounded
// number of entries (the run lasts a week); a bad file is set aside, never
// fatal. Also what the model is given of them, within a token budget, and a
// short map of the workspace.

import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import path from 'node:path';
import { describeError } from '../exit.js';
import { fsyncDir, mkdirDurable, writeFileAtomic } from '../fsutil.js';
import { Git } from '../git.js';
import { notAFile } from '../safefile.js';
import { formatBytes, plural } from '../units.js';

export const NOTES_FILE = 'notes.md';
export const OUTCOMES_FILE = 'outcomes.md';
const HEADERS = {
  notes: '# What the agent noted; newest last. Edit freely.',
  outcomes: '# How each attempt ended; newest last. Edit freely.',
} as const;

/** Larger than this, a memory file is set aside: bounded, the files stay far below it, so only a paste or a defect gets there. */
export const MEMORY_FILE_LIMIT = 1024 * 1024;
/** The most a note (or an outcome's detail) may hold, in characters. */
export const NOTE_MAX = 500;
/** What outcomeDetail keeps of a line, in characters. */
export const DETAIL_MAX = 160;
/** What a condensed entry keeps in the prompt, in characters. */
const CONDENSED_MAX = 80;
export const MEMORY_LIMITS = { notes: 300, outcomes: 200 } as const;

type Kind = 'notes' | 'outcomes';
const FILES: Record<Kind, string> = { notes: NOTES_FILE, outcomes: OUTCOMES_FILE };

export function memoryDir(stateDir: string): string {
  return path.join(stateDir, 'memory');
}

/** Text on one line: newlines and tabs (any run of white space) as one space, trimmed, cut to max characters. */
function oneLine(text: string, max: number): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length <= max ? s : `${s.slice(0, max - 1).trimEnd()}…`;
}

/** Minutes are precise enough for a human reading the file, and keep the lines short. */
function minuteUtc(d: Date): string {
  return `${d.toISOString().slice(0, 16)}Z`;
}

/** A task id as a line can hold it (ids never hold white space or colons; this only keeps a bad one from breaking the format). */
function taskWord(task: string): string {
  return task.replace(/[\s:]+/g, '_') || '_';
}

/**
 * Append one line to a memory file and make it durable before returning,
 * the header first when the file is new. A torn last line (a crash
 * mid-write) gets its newline so it cannot swallow this one; one that is not
 * text (a multibyte character cut, or the NULs a power loss can leave) was
 * never acknowledged and is cut off, so it cannot get the file set aside.
 */
function appendText(file: string, header: string, line: string): void {
  mkdirDurable(path.dirname(file));
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644);
  try {
    const size = fs.fstatSync(fd).size;
    let prefix = size === 0 ? `${header}\n` : '';
    if (size > 0) {
      const window = Buffer.alloc(Math.min(size, 4096));
      fs.readSync(fd, window, 0, window.length, size - window.length);
      if (window[window.length - 1] !== 0x0a) {
        const nl = window.lastIndexOf(0x0a);
        const tail = window.subarray(nl + 1);
        const whole = nl >= 0 || window.length === size;
        if (whole && (!isUtf8(tail) || tail.includes(0))) {
          fs.ftruncateSync(fd, size - tail.length);
          if (size === tail.length) prefix = `${header}\n`;
        } else prefix = '\n';
      }
    }
    fs.writeSync(fd, `${prefix}${line}\n`);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface NoteInput {
  time: Date;
  task: string;
  text: string;
}

/** Append a note (`- 2026-12-06T21:30Z task 12: TEXT`); the line written, or null for an empty note (nothing is written). */
export function appendNote(stateDir: string, note: NoteInput): string | null {
  const text = oneLine(note.text, NOTE_MAX);
  if (text === '') return null;
  // The same note of the same task as the last one (the model noting again after a restart that
  // left its note's step unknown): kept once, the line that is there given back.
  const last = lastLine(path.join(memoryDir(stateDir), NOTES_FILE));
  if (last !== null && last.endsWith(` task ${taskWord(note.task)}: ${text}`) && ENTRY.test(last)) return last;
  const line = `- ${minuteUtc(note.time)} task ${taskWord(note.task)}: ${text}`;
  appendText(path.join(memoryDir(stateDir), NOTES_FILE), HEADERS.notes, line);
  return line;
}

export interface OutcomeInput {
  time: Date;
  task: string;
  attempt: number;
  /** done, failed, timed out ... */
  outcome: string;
  /** Why, in a few words ("verify exit 1"); null or empty for none. */
  reason?: string | null;
  /** Steps the attempt took; null when unknown. */
  steps?: number | null;
  /** The summary the agent gave, or outcomeDetail of the verify output. */
  detail?: string | null;
}

/** Append an attempt's outcome (`- 2026-12-06T21:30Z task 12 attempt 2: done in 7 steps: SUMMARY`); the line written. */
export function appendOutcome(stateDir: string, o: OutcomeInput): string {
  let what = oneLine(o.outcome, 40) || 'ended';
  if (o.steps !== undefined && o.steps !== null) what += ` in ${plural(o.steps, 'step')}`;
  const reason = oneLine(o.reason ?? '', 80);
  if (reason) what += ` (${reason})`;
  const detail = oneLine(o.detail ?? '', NOTE_MAX);
  const line = `- ${minuteUtc(o.time)} task ${taskWord(o.task)} attempt ${o.attempt}: ${what}${detail ? `: ${detail}` : ''}`;
  appendText(path.join(memoryDir(stateDir), OUTCOMES_FILE), HEADERS.outcomes, line);
  return line;
}

/** Colours and cursor moves, as test runners print them on a TTY (and some everywhere). */
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
/** Lines that say what went wrong. */
const TELLING = /\b(?:\w*Error|error|\w*Exception|assert\w*|expected|panic\w*|traceback|not ok|undefined reference|segmentation fault|cannot|unable to|no such)\b|✗|✖|\bgot\b/i;
/** Lines that only say something failed (test counts): telling when nothing better is there. */
const FAILED = /fail|\berr\b/i;
/** The wrappers' last words (make's "*** Error 1", npm's "ERR!"): they say only that the command failed. */
const WRAPPER = /^(?:make(?:\[\d+\])?: \*\*\*|npm (?:ERR!|error)|error Command failed|Command failed)|^(?:#\s*fail\s+0|0 failed)\b/i;

/** The most telling line of a verify command's output: the last that looks like an error or failed assertion, else the last line; cut to 160 characters. */
export function outcomeDetail(verifyOutput: string): string {
  const lines = verifyOutput
    .replace(ANSI, '')
    .split(/\r?\n|\r/)
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .filter((l) => l !== '');
  const last = <T>(xs: T[], f: (x: T) => boolean): T | undefined => {
    for (let i = xs.length - 1; i >= 0; i--) if (f(xs[i] as T)) return xs[i];
    return undefined;
  };
  const own = lines.filter((l) => !WRAPPER.test(l));
  let pick = last(own, (l) => TELLING.test(l)) ?? last(own, (l) => FAILED.test(l)) ?? own[own.length - 1] ?? lines[lines.length - 1] ?? '';
  // "expected: 3" alone says half of it: the line after it says what came instead.
  const next = own[own.indexOf(pick) + 1];
  if (/^[-+]?\s*expected\b/i.test(pick) && next && /^[-+]?\s*(?:actual|got|received|but was)\b/i.test(next)) pick = `${pick}; ${next}`;
  return oneLine(pick, DETAIL_MAX);
}

export interface MemoryEntry {
  /** As written (`2026-12-06T21:30Z`); null for a line a human wrote in another form. */
  time: string | null;
  task: string | null;
  /** Outcomes only. */
  attempt: number | null;
  /** What follows `task 12[ attempt 1]: `, or the whole line (less a leading "- ") for a human's. */
  text: string;
  /** The line as it stands in the file, trimmed. */
  line: string;
}

export interface Memory {
  /** Oldest first, as in the files. */
  notes: MemoryEntry[];
  outcomes: MemoryEntry[];
  /** One line each: a file set aside or that could not be read. */
  problems: string[];
}

const ENTRY = /^- (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z) task ([^\s:]+)(?: attempt (\d+))?: ?(.*)$/;
const DROPPED = /^# (\d+) older (?:notes?|outcomes?) dropped\b/;

/** An entry is any line that is neither blank nor a comment. */
const isEntry = (l: string): boolean => l.trim() !== '' && !l.startsWith('#');

function parseEntry(raw: string): MemoryEntry {
  const line = raw.trim();
  const m = ENTRY.exec(line);
  if (m) return { time: m[1] as string, task: m[2] as string, attempt: m[3] ? Number(m[3]) : null, text: (m[4] as string).trim(), line };
  return { time: null, task: null, attempt: null, text: line.replace(/^[-*] /, ''), line };
}

/** Move a bad file out of the way (`NAME.bad-<epoch ms>` beside it, durably); the problem's line either way. */
function setAside(file: string, why: string): string {
  const to = `${file}.bad-${Date.now()}`;
  try {
    fs.renameSync(file, to);
    fsyncDir(path.dirname(file));
    return `${file}: ${why}; set aside as ${path.basename(to)}`;
  } catch (err) {
    return `${file}: ${why}; it cannot be set aside: ${describeError(err)}`;
  }
}

interface Loaded {
  /** The file's lines (a torn last line that is not text left out); empty when there is no file. */
  lines: string[];
  size: number;
  mtimeMs: number;
  problem: string | null;
}

/**
 * A memory file's lines. A file that is not a regular file, is larger than
 * MEMORY_FILE_LIMIT, or is not UTF-8 text is set aside so the next append
 * starts afresh (the checkpoints keep what it held); one that cannot be read
 * (a system error, not the file's fault) is only reported.
 */
function loadFile(file: string): Loaded {
  const none: Loaded = { lines: [], size: 0, mtimeMs: 0, problem: null };
  let buf: Buffer;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
    const what = notAFile(st);
    if (what) return { ...none, problem: setAside(file, `${what}, not a file`) };
    if (st.size > MEMORY_FILE_LIMIT) return { ...none, problem: setAside(file, `too big (${formatBytes(st.size)}; a memory file may hold at most ${formatBytes(MEMORY_FILE_LIMIT)})`) };
    buf = readBounded(file, st.size);
    if (buf.length > MEMORY_FILE_LIMIT) return { ...none, problem: setAside(file, `too big (grew past the ${formatBytes(MEMORY_FILE_LIMIT)} a memory file may hold)`) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return none;
    return { ...none, problem: `${file}: cannot be read: ${describeError(err)}` };
  }
  // A torn last line is the next append's to cut off, not a reason to set the file aside.
  if (buf.length > 0 && buf[buf.length - 1] !== 0x0a) {
    const tail = buf.subarray(buf.lastIndexOf(0x0a) + 1);
    if (!isUtf8(tail) || tail.includes(0)) buf = buf.subarray(0, buf.length - tail.length);
  }
  const nul = buf.indexOf(0);
  if (nul >= 0) return { ...none, problem: setAside(file, `not text: a NUL byte at line ${lineAt(buf, nul)}`) };
  if (!isUtf8(buf)) return { ...none, problem: setAside(file, 'not text: invalid UTF-8') };
  let text = buf.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  return { lines, size: st.size, mtimeMs: st.mtimeMs, problem: null };
}

/** A file's bytes, at most one past MEMORY_FILE_LIMIT (a file that grew since lstat said size is read on to there). */
function readBounded(file: string, size: number): Buffer {
  // O_NOFOLLOW and O_NONBLOCK: swapped for a link or a FIFO since lstat, it still cannot hang us.
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    let buf = Buffer.allocUnsafe(Math.min(size, MEMORY_FILE_LIMIT) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > MEMORY_FILE_LIMIT) break;
        const more = Buffer.allocUnsafe(Math.min(MEMORY_FILE_LIMIT + 1, n * 2));
        buf.copy(more, 0, 0, n);
        buf = more;
      }
      const r = fs.readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
    }
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

function lineAt(buf: Buffer, offset: number): number {
  let n = 1;
  for (let i = buf.indexOf(0x0a); i >= 0 && i < offset; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** Both files' entries, oldest first; bad files are set aside and said in problems, never thrown. */
export function readMemory(stateDir: string): Memory {
  const out: Memory = { notes: [], outcomes: [], problems: [] };
  for (const kind of ['notes', 'outcomes'] as const) {
    const f = loadFile(path.join(memoryDir(stateDir), FILES[kind]));
    if (f.problem) out.problems.push(f.problem);
    out[kind] = f.lines.filter(isEntry).map(parseEntry);
  }
  return out;
}

export interface BoundResult {
  /** Entries dropped now from each file. */
  notes: number;
  outcomes: number;
  problems: string[];
}

/**
 * Keep each file to its newest entries: when one holds more than its limit,
 * it is rewritten atomically without the oldest (down to four fifths of the
 * limit, so that a full file is rewritten once in a while, not at every
 * task), its header kept and one
 * line under it counting every entry dropped so far (the checkpoints in
 * state.git keep them). Cheap when nothing is to be dropped: a file too
 * small to hold that many lines is not read, and one that is read is
 * counted by its newline bytes, not decoded or parsed. The entries dropped
 * now, and any bad file found (set aside, as readMemory does).
 */
export function boundMemory(stateDir: string, limits: { notes?: number; outcomes?: number; now?: Date } = {}): BoundResult {
  const out: BoundResult = { notes: 0, outcomes: 0, problems: [] };
  for (const kind of ['notes', 'outcomes'] as const) {
    const limit = Math.max(1, limits[kind] ?? MEMORY_LIMITS[kind]);
    const file = path.join(memoryDir(stateDir), FILES[kind]);
    let size: number;
    try {
      size = fs.lstatSync(file).size;
    } catch {
      continue; // no file (or none to read): nothing to bound
    }
    // Cheap when nothing is to be dropped: too small to hold that many lines, or not that many newlines.
    if (size <= 2 * limit) continue;
    try {
      if (size <= MEMORY_FILE_LIMIT && newlines(readBounded(file, size)) + 1 <= limit) continue;
    } catch {
      /* loadFile says what is wrong */
    }
    const f = loadFile(file);
    if (f.problem) {
      out.problems.push(f.problem);
      continue;
    }
    const at: number[] = [];
    f.lines.forEach((l, i) => isEntry(l) && at.push(i));
    if (at.length <= limit) continue;
    // Down to four fifths of the limit, not to the limit: a file at its limit would otherwise be
    // rewritten at every task (a new blob in state.git each time, for a week).
    const drop = at.length - Math.max(1, Math.floor(limit * 0.8));
    const first = f.lines[0] ?? '';
    const head = first.startsWith('#') && !DROPPED.test(first) ? first : HEADERS[kind];
    const before = f.lines.reduce((n, l) => n + Number(DROPPED.exec(l)?.[1] ?? 0), 0);
    // From the first entry kept on: the comments and blank lines between the dropped ones go with them.
    const kept = f.lines.slice(at[drop]).filter((l) => !DROPPED.test(l));
    const now = limits.now ?? new Date();
    const note = `# ${before + drop} older ${kind} dropped, the last on ${minuteUtc(now)} (the checkpoints in state.git keep them)`;
    // A human may have saved the file since it was read: their edit wins, and the next call bounds it.
    try {
      const st = fs.lstatSync(file);
      if (st.size !== f.size || st.mtimeMs !== f.mtimeMs) continue;
      writeFileAtomic(file, [head, note, ...kept].join('\n') + '\n');
      out[kind] = drop;
    } catch (err) {
      out.problems.push(`${file}: cannot be rewritten without its ${plural(drop, `oldest ${kind === 'notes' ? 'note' : 'outcome'}`)}: ${describeError(err)}`);
    }
  }
  return out;
}

function newlines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

export interface MemorySection {
  /** The section for the prompt; empty when the run has noted nothing yet. */
  text: string;
  problems: string[];
  /** Entries given, whole or condensed. */
  shown: { notes: number; outcomes: number };
  /** Of those, how many were condensed. */
  condensed: number;
  /** Entries only counted in an "(and N older ...)" line. */
  omitted: number;
}

/** When a list does not fit whole, its newest entries whole take at most this share of its budget: the rest is for more entries, condensed. */
const WHOLE_SHARE = 0.5;
/** The share of the budget notes get when both need more than they have: what the agent noted matters more than how attempts ended. */
const NOTES_SHARE = 0.6;

const TITLE = 'What this run has learned (newest first):';
const HEADINGS: Record<Kind, string> = { notes: 'Notes:', outcomes: 'Outcomes of earlier attempts:' };

interface Fitted {
  lines: string[];
  shown: number;
  condensed: number;
  omitted: number;
  used: number;
}

function condensedLine(e: MemoryEntry): string {
  const who = e.task ? `task ${e.task}${e.attempt !== null ? ` attempt ${e.attempt}` : ''}: ` : '';
  return `- ${oneLine(who + e.text, CONDENSED_MAX)}`;
}

const wholeLine = (e: MemoryEntry): string => (/^[-*] /.test(e.line) ? e.line : `- ${e.line}`);

/**
 * Entries (newest first) within budget tokens, under their heading: all
 * whole if they fit, else the newest whole within half the budget (the
 * newest always, if it fits), then condensed, then the rest counted on one
 * line. Room for that line is kept at each step, so the count always fits.
 */
function fitEntries(kind: Kind, entries: MemoryEntry[], budget: number, count: (s: string) => number): Fitted {
  const wholeBudget = wholeCost(kind, entries, count, budget) <= budget ? budget : budget * WHOLE_SHARE;
  const cost = (s: string): number => count(`${s}\n`);
  const rest = (k: number): string => `(and ${plural(k, kind === 'notes' ? 'older note' : 'older outcome')}: in state/memory/${FILES[kind]})`;
  const restCost = (k: number): number => (k > 0 ? cost(rest(k)) : 0);
  const out: Fitted = { lines: [], shown: 0, condensed: 0, omitted: 0, used: cost(HEADINGS[kind]) };
  if (entries.length === 0 || out.used > budget) return { ...out, used: 0, omitted: entries.length };
  out.lines.push(HEADINGS[kind]);
  let whole = true;
  let i = 0;
  for (; i < entries.length; i++) {
    const e = entries[i] as MemoryEntry;
    const after = restCost(entries.length - i - 1);
    let line = whole ? wholeLine(e) : condensedLine(e);
    let c = cost(line);
    if (whole && out.used + c + after > (out.shown === 0 ? budget : wholeBudget)) {
      whole = false;
      line = condensedLine(e);
      c = cost(line);
    }
    if (out.used + c + after > budget) break;
    out.lines.push(line);
    out.used += c;
    out.shown++;
    if (!whole) out.condensed++;
  }
  if (i < entries.length) {
    out.omitted = entries.length - i;
    // Room for it was kept with each entry given; with none given it may not fit, and the list is left out.
    if (out.used + restCost(out.omitted) > budget) return { lines: [], shown: 0, condensed: 0, omitted: entries.length, used: 0 };
    out.lines.push(rest(out.omitted));
    out.used += restCost(out.omitted);
  }
  return out;
}

/** What all of a list costs given whole under its heading (0 for none), stopping once past cap. */
function wholeCost(kind: Kind, entries: MemoryEntry[], count: (s: string) => number, cap: number): number {
  if (entries.length === 0) return 0;
  let n = count(`${HEADINGS[kind]}\n`);
  for (const e of entries) {
    if (n > cap) break;
    n += count(`${wholeLine(e)}\n`);
  }
  return n;
}

/**
 * What the run has learned, newest first, within budgetTokens by count:
 * notes get about 60% of the budget and outcomes the rest, and a share one
 * does not need goes to the other. Within each, the newest entries whole,
 * older ones condensed (cut, the date dropped) and the oldest counted on one
 * line that says where they are. Reading the files may set a bad one aside
 * (see readMemory): said in problems.
 */
export function memorySection(stateDir: string, budgetTokens: number, count: (s: string) => number): MemorySection {
  const mem = readMemory(stateDir);
  const notes = [...mem.notes].reverse();
  const outcomes = [...mem.outcomes].reverse();
  const empty: MemorySection = { text: '', problems: mem.problems, shown: { notes: 0, outcomes: 0 }, condensed: 0, omitted: notes.length + outcomes.length };
  if (notes.length + outcomes.length === 0) return empty;
  // A counter need not add up line by line (a tokenizer merges across lines): the whole is checked, and the room narrowed until it fits.
  let room = budgetTokens - count(`${TITLE}\n`);
  for (let tries = 0; room > 0 && tries < 8; tries++) {
    const needNotes = wholeCost('notes', notes, count, room);
    const needOutcomes = wholeCost('outcomes', outcomes, count, room);
    let forNotes = Math.floor(room * NOTES_SHARE);
    if (needNotes <= forNotes) forNotes = needNotes;
    else if (needOutcomes <= room - forNotes) forNotes = room - needOutcomes;
    const n = fitEntries('notes', notes, forNotes, count);
    const o = fitEntries('outcomes', outcomes, room - n.used, count);
    const body = [...n.lines, ...o.lines];
    if (body.length === 0) return empty;
    const text = [TITLE, ...body].join('\n');
    const over = count(text) - budgetTokens;
    if (over <= 0) {
      return { text, problems: mem.problems, shown: { notes: n.shown, outcomes: o.shown }, condensed: n.condensed + o.condensed, omitted: n.omitted + o.omitted };
    }
    room -= over;
  }
  return empty;
}

/** How long git may take to list the workspace: a map is a help, not worth stalling a task for. */
const GIT_TIMEOUT_MS = 10_000;
/** Recently changed files given at most. */
const RECENT_MAX = 10;

/** git's NUL-separated output, or null when git failed (not a repository, no commits, timed out, not installed). */
async function gitList(git: Git, args: string[]): Promise<string[] | null> {
  try {
    const res = await git.run(args, { allowFail: true, timeoutMs: GIT_TIMEOUT_MS });
    if (res.code !== 0) return null;
    return res.stdout.split('\0').filter((s) => s !== '');
  } catch {
    return null;
  }
}

/** A titled list within budget tokens, those that do not fit counted on its last line; empty when not even that fits. */
function listWithin(title: string, items: string[], budget: number, count: (s: string) => number, more: (k: number) => string): string {
  const cost = (s: string): number => count(`${s}\n`);
  const lines = [title];
  let used = cost(title);
  for (let i = 0; i < items.length; i++) {
    const line = `  ${items[i]}`;
    const after = i < items.length - 1 ? cost(`  ${more(items.length - i - 1)}`) : 0;
    if (used + cost(line) + after > budget) {
      if (used + cost(`  ${more(items.length - i)}`) > budget) break;
      lines.push(`  ${more(items.length - i)}`);
      break;
    }
    lines.push(line);
    used += cost(line);
  }
  return lines.length > 1 ? lines.join('\n') : '';
}

/** The workspace's top level from git: directories first, each with its file count, then files. */
function topLevel(files: string[]): string[] {
  const dirs = new Map<string, number>();
  const plain: string[] = [];
  for (const f of files) {
    const slash = f.indexOf('/');
    if (slash < 0) plain.push(f);
    else dirs.set(f.slice(0, slash), (dirs.get(f.slice(0, slash)) ?? 0) + 1);
  }
  const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  return [...[...dirs.keys()].sort(byName).map((d) => `${d}/ (${plural(dirs.get(d) as number, 'file')})`), ...[...new Set(plain)].sort(byName)];
}

/**
 * A short map of the workspace for the prompt, within budgetTokens: its top
 * level (from git, so ignored files are left out; a directory with its file
 * count) and the files changed lately that are still there: those not
 * committed yet (newest first), then those of the newest commits. A
 * workspace that is not a git repository gets its top level as the
 * directory lists it, one without commits no recent files; never throws.
 */
export async function repoMap(workspace: string, budgetTokens: number, count: (s: string) => number): Promise<string> {
  const git = new Git(workspace);
  const files = await gitList(git, ['ls-files', '-z', '--cached', '--others', '--exclude-standard']);
  let top: string[] = [];
  if (files) top = topLevel(files);
  else {
    try {
      const ents = fs.readdirSync(workspace, { withFileTypes: true }).filter((e) => e.name !== '.git');
      top = [...ents.filter((e) => e.isDirectory()).map((e) => `${e.name}/`).sort(), ...ents.filter((e) => !e.isDirectory()).map((e) => e.name).sort()];
    } catch {
      /* no workspace to list: the map is empty */
    }
  }
  const recent: string[] = [];
  // Changes not committed yet first, newest first by time (the agent's work is mostly these; it
  // seldom commits), then the files of the newest commits.
  const status = files ? ((await gitList(git, ['status', '--porcelain=v1', '-z', '--untracked-files=all', '--no-renames'])) ?? []) : [];
  const pending = status
    .map((e) => e.slice(3))
    .filter((f) => f !== '')
    .map((f) => {
      try {
        return { f, t: fs.lstatSync(path.join(workspace, f)).mtimeMs };
      } catch {
        return null;
      }
    })
    .filter((x): x is { f: string; t: number } => x !== null)
    .sort((a, b) => b.t - a.t)
    .map((x) => x.f);
  for (const f of [...pending, ...((files && (await gitList(git, ['log', '-z', '--name-only', '--format=', '-n', '30']))) || [])]) {
    if (recent.length >= RECENT_MAX) break;
    if (recent.includes(f)) continue;
    try {
      fs.lstatSync(path.join(workspace, f));
      recent.push(f);
    } catch {
      /* deleted or renamed since */
    }
  }
  // The recent files are few and say where the work is: they get up to half the budget, the tree the rest.
  const changed = listWithin('Recently changed files (newest first):', recent, Math.floor(budgetTokens / 2), count, (k) => `(and ${k} more)`);
  const rest = budgetTokens - (changed ? count(`${changed}\n`) : 0);
  const tree = listWithin('Files of the workspace (top level):', top, rest, count, (k) => `(and ${plural(k, 'more entry', 'more entries')})`);
  let text = [tree, changed].filter((s) => s !== '').join('\n');
  // As in memorySection: a counter need not add up line by line.
  while (text !== '' && count(text) > budgetTokens) {
    const lines = text.split('\n').slice(0, -1);
    if (lines.length > 0 && !(lines[lines.length - 1] as string).startsWith('  ')) lines.pop(); // a title with nothing under it
    text = lines.join('\n');
  }
  return text;
}

export interface MemoryStatus {
  /** Entries (non-blank, non-comment lines) in each file; null when the file cannot be read as text. */
  notes: number | null;
  outcomes: number | null;
  /** Files set aside as NAME.bad-EPOCHMS, oldest first: a human reads them, fixes and moves them back, or deletes them. */
  set_aside: string[];
}

/**
 * What the report says of the memory, read only (nothing set aside, nothing
 * rewritten: a report changes nothing).
 */
export function memoryStatus(stateDir: string): MemoryStatus {
  const dir = memoryDir(stateDir);
  const entries = (name: string): number | null => {
    try {
      const buf = fs.readFileSync(path.join(dir, name));
      if (buf.length > MEMORY_FILE_LIMIT || buf.includes(0)) return null;
      return buf
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith('#')).length;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 0 : null;
    }
  };
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    /* no memory yet */
  }
  const stamp = (n: string): number => Number(/\.bad-(\d+)$/.exec(n)?.[1] ?? 0);
  const set_aside = names.filter((n) => /\.bad-\d+$/.test(n)).sort((a, b) => stamp(a) - stamp(b));
  return { notes: entries(NOTES_FILE), outcomes: entries(OUTCOMES_FILE), set_aside };
}

/** Whether outcomes.md has a line for this attempt (read as readMemory does, nothing set aside). */
export function hasOutcome(stateDir: string, task: string, attempt: number): boolean {
  try {
    const text = fs.readFileSync(path.join(memoryDir(stateDir), OUTCOMES_FILE), 'utf8');
    return text.includes(` task ${taskWord(task)} attempt ${attempt}: `);
  } catch {
    return false;
  }
}

/** A file's last non-empty line (from its last 4 KiB), or null. */
function lastLine(file: string): string | null {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.min(size, 4096));
      fs.readSync(fd, buf, 0, buf.length, size - buf.length);
      const lines = buf.toString('utf8').split('\n').filter((l) => l.trim() !== '');
      return lines[lines.length - 1] ?? null;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}
