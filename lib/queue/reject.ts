// Queue entries that are not valid tasks are set aside rather than stopping
// anything: state/queue/rejected/<name>, with <name>.reason beside it (one
// line: when and why). The agent and sw-recover move them, under the state
// lock; read-only commands only report them (queueProblems).

import fs from 'node:fs';
import path from 'node:path';
import { describeError } from '../exit.js';
import { fsyncDir, mkdirDurable, writeFileAtomic } from '../fsutil.js';
import { notAFile, readTextFile } from '../safefile.js';
import { REJECTED_DIR, queueDir, readQueue, type InvalidEntry, type TaskDefaults } from './task.js';

/** How long an entry must be left unchanged before the agent sets it aside: a file still being written may not be valid yet. */
export const SETTLE_MS = 2000;

export function rejectedDir(stateDir: string): string {
  return path.join(queueDir(stateDir), REJECTED_DIR);
}

export interface Rejection {
  /** Where the entry was. */
  file: string;
  /** Where it is now (or would be, in a dry run). */
  to: string;
  /** Its one-line error, naming the original path. */
  error: string;
  /** The error with the entry's own name in front instead of the whole path (what the .reason file and the task log keep). */
  reason: string;
}

export interface SetAsideResult {
  moved: Rejection[];
  /** Entries left in place, and why: still being written, unreadable, or the move failed. */
  left: Array<{ file: string; error: string; why: string }>;
}

/** "x.yaml:3:9: ..." from "/.../queue/x.yaml:3:9: ...". */
function shortReason(e: InvalidEntry): string {
  const dir = path.dirname(e.file);
  return e.error.startsWith(`${dir}/`) ? e.error.slice(dir.length + 1) : e.error;
}

/** A name in rejected/ not yet taken (an entry is never called NAME.reason there: that is a reason's name). */
function freeName(dir: string, name: string): string {
  const taken = (n: string): boolean => {
    try {
      fs.lstatSync(path.join(dir, n));
      return true;
    } catch {
      return false;
    }
  };
  let n = name.endsWith('.reason') ? `${name}.1` : name;
  for (let i = 1; taken(n); i++) n = `${name}.${i}`;
  return n;
}

/**
 * Move bad queue entries to queue/rejected/, each with its reason; the
 * caller holds the state lock and read the entries under it. Never throws:
 * an entry that cannot be moved is left where it is and said why. Entries
 * changed less than settleMs ago are left for a later look, and unreadable
 * ones (a system error, not the file's fault) are only reported.
 */
export function setAsideInvalid(stateDir: string, entries: InvalidEntry[], opts: { settleMs?: number; now?: Date; dryRun?: boolean } = {}): SetAsideResult {
  const now = opts.now ?? new Date();
  const settle = opts.settleMs ?? 0;
  const dir = rejectedDir(stateDir);
  const out: SetAsideResult = { moved: [], left: [] };
  // A link or a file in the way of rejected/ is not followed or written through.
  let blocked: string | null = null;
  try {
    const what = notAFile(fs.lstatSync(dir));
    if (what !== 'a directory') blocked = `${dir} is ${what ?? 'a file'}, not a directory`;
  } catch {
    /* not made yet */
  }
  for (const e of entries) {
    if (e.unreadable) {
      out.left.push({ file: e.file, error: e.error, why: 'it cannot be read' });
      continue;
    }
    let st: fs.Stats;
    try {
      st = fs.lstatSync(e.file);
    } catch {
      continue; // gone meanwhile
    }
    if (Math.abs(now.getTime() - st.mtimeMs) < settle) {
      out.left.push({ file: e.file, error: e.error, why: 'it changed a moment ago (it may still be being written)' });
      continue;
    }
    const reason = shortReason(e);
    if (blocked) {
      out.left.push({ file: e.file, error: e.error, why: `it cannot be moved aside: ${blocked}` });
      continue;
    }
    try {
      const to = path.join(dir, freeName(dir, path.basename(e.file)));
      if (!opts.dryRun) {
        mkdirDurable(dir);
        // The reason first: a move interrupted here leaves the entry in the queue, to be set aside again.
        writeFileAtomic(`${to}.reason`, `${now.toISOString()} ${reason.replace(/[\r\n]+/g, ' ')}\n`);
        fs.renameSync(e.file, to);
        fsyncDir(path.dirname(e.file));
        fsyncDir(dir);
      }
      out.moved.push({ file: e.file, to, error: e.error, reason });
    } catch (err) {
      out.left.push({ file: e.file, error: e.error, why: `it cannot be moved to ${dir}: ${describeError(err)}` });
    }
  }
  return out;
}

/** The task log's record of a move (paths relative to state/). */
export function rejectionEvent(stateDir: string, r: Rejection): { t: 'task_rejected'; file: string; to: string; reason: string } {
  return { t: 'task_rejected', file: path.relative(stateDir, r.file), to: path.relative(stateDir, r.to), reason: r.reason };
}

export interface RejectedEntry {
  /** Its path in queue/rejected/. */
  file: string;
  /** When it was set aside (ISO 8601), from its .reason file; null when that is missing or unreadable. */
  time: string | null;
  reason: string | null;
}

/** What queue/rejected/ holds, oldest first, with when and why each was set aside. */
export function listRejected(stateDir: string): RejectedEntry[] {
  const dir = rejectedDir(stateDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: RejectedEntry[] = [];
  for (const n of names.sort()) {
    if (n.startsWith('.') || n.endsWith('.reason')) continue;
    let time: string | null = null;
    let reason: string | null = null;
    try {
      const line = readTextFile(path.join(dir, `${n}.reason`), 'task').split('\n')[0] ?? '';
      const m = /^(\S+) (.*)$/.exec(line);
      if (m && !Number.isNaN(Date.parse(m[1] as string))) [time, reason] = [m[1] as string, m[2] as string];
      else reason = line || null;
    } catch {
      /* no reason beside it: still listed */
    }
    out.push({ file: path.join(dir, n), time, reason });
  }
  return out.sort((a, b) => (a.time ?? '').localeCompare(b.time ?? '') || a.file.localeCompare(b.file));
}

/** For status and the report: the bad entries now in queue/ and those already set aside in queue/rejected/. */
export async function queueProblems(stateDir: string, defaults: TaskDefaults): Promise<{ invalid: InvalidEntry[]; rejected: RejectedEntry[] }> {
  const { invalid } = await readQueue(stateDir, defaults);
  return { invalid, rejected: listRejected(stateDir) };
}
