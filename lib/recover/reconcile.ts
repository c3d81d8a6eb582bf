// Reconciling the queue with the task log, which is the authority on what
// happened. Each task's new status follows from its newest attempt in the log
// alone (never from the queue's own guess), so reconciling twice changes
// nothing the second time:
//
//   log says                                  queue becomes
//   completed                                 completed
//   started, no outcome (in progress)         pending, same attempt (resumes at its next step)
//   failed, attempts left                     pending, attempt + 1
//   failed, attempts exhausted                failed
//   cancelled                                 cancelled
//   nothing (never started)                   pending, unchanged
//
// One exception: the queue is never moved backwards on the strength of the log.
// The agent writes an outcome to the log before the queue file, so a queue file
// ahead of the log (completed where the log has the attempt still running, or
// at a later attempt) means the log lost the record (a damaged byte): the queue
// file is kept, and the outcome it witnesses is written to the log again.

import type { Task, TaskSpec, TaskStatus } from '../queue/task.js';

export interface LogAttempt {
  attempt: number;
  outcome: string | null;
  reason: string | null;
  /** When it ended (ms), and in how many steps, as the log recorded; absent or null when unknown. */
  endedAt?: number | null;
  steps?: number | null;
}

export interface LogTask {
  spec: TaskSpec | null;
  latest: LogAttempt | null;
}

export interface Placement {
  status: TaskStatus;
  attempt: number;
}

export interface ReconcileChange {
  task: string;
  /** null when the queue had lost the task and it is restored from the log. */
  before: Placement | null;
  after: Placement;
  /** Which row of the matrix applied. */
  rule: string;
}

/** Where the log puts a task (null: the log has nothing to say; keep the queue's). */
export function placeFromLog(latest: LogAttempt | null, maxAttempts: number): { place: Placement; rule: string } | null {
  if (!latest) return null;
  switch (latest.outcome) {
    case 'completed':
      return { place: { status: 'completed', attempt: latest.attempt }, rule: 'completed' };
    case 'cancelled':
      return { place: { status: 'cancelled', attempt: latest.attempt }, rule: 'cancelled' };
    case 'failed':
      return latest.attempt < maxAttempts
        ? { place: { status: 'pending', attempt: latest.attempt + 1 }, rule: 'failed, attempts left' }
        : { place: { status: 'failed', attempt: latest.attempt }, rule: 'failed, attempts exhausted' };
    case null:
      return { place: { status: 'pending', attempt: latest.attempt }, rule: 'in progress' };
    default:
      return { place: { status: 'pending', attempt: latest.attempt }, rule: `unknown outcome '${latest.outcome}', treated as in progress` };
  }
}

/** An outcome the log lost and the queue file witnesses, to append again. */
export interface RestoredOutcome {
  task: string;
  attempt: number;
  outcome: 'completed' | 'failed' | 'cancelled';
  reason: string | null;
  /** When the queue file was written (the outcome's time, as near as is known). */
  ts: string;
}

const TERMINAL = new Set<TaskStatus>(['completed', 'failed', 'cancelled']);
/** How far a task has come: later attempts, and an ended attempt past a running one. */
const progress = (p: Placement): number => p.attempt * 2 + (TERMINAL.has(p.status) ? 1 : 0);

/** The outcomes the log must have had for the queue file to be where it is, past the log's own placement. */
function witnessed(t: Task, logAttempt: number): RestoredOutcome[] {
  const out: RestoredOutcome[] = [];
  // Every attempt before the queue's current one ended in failure (that is how attempts advance).
  for (let a = logAttempt; a < t.attempt; a++) out.push({ task: t.id, attempt: a, outcome: 'failed', reason: a === t.attempt - 1 && !TERMINAL.has(t.status) ? t.reason : null, ts: t.updated });
  if (TERMINAL.has(t.status)) out.push({ task: t.id, attempt: t.attempt, outcome: t.status as RestoredOutcome['outcome'], reason: t.reason, ts: t.updated });
  return out;
}

export interface ReconcilePlan {
  changes: ReconcileChange[];
  /** Outcomes the log lost, witnessed by queue files that are ahead of it. */
  restore: RestoredOutcome[];
  /** Tasks whose queue file was kept ahead of the log, with why. */
  kept: Array<{ task: string; status: TaskStatus; attempt: number; log: Placement }>;
  /** Tasks to write: changed ones and ones restored from the log. */
  write: Task[];
  /** Tasks the log knows without a definition, that the queue lacks: cannot be restored. */
  lost: string[];
}

/**
 * `archived`: finished tasks moved to the archive (lib/queue/archive.ts): not in
 * the queue, and not to be restored to it; the archive witnesses their end.
 */
export function planReconcile(tasks: Task[], log: Map<string, LogTask>, now: string, archived: ReadonlySet<string> = new Set()): ReconcilePlan {
  const changes: ReconcileChange[] = [];
  const write: Task[] = [];
  const restore: RestoredOutcome[] = [];
  const kept: ReconcilePlan['kept'] = [];
  const inQueue = new Map(tasks.map((t) => [t.id, t]));
  for (const t of tasks) {
    const entry = log.get(t.id);
    let placed = placeFromLog(entry?.latest ?? null, t.max_attempts);
    if (placed && entry?.latest && progress({ status: t.status === 'in_progress' ? 'pending' : t.status, attempt: t.attempt }) > progress(placed.place)) {
      // The queue file is ahead of the log: never moved back (see the top of this file).
      kept.push({ task: t.id, status: t.status, attempt: t.attempt, log: placed.place });
      // An attempt the log saw start counts from there; one it only saw end, from the next.
      restore.push(...witnessed(t, entry.latest.outcome === null ? entry.latest.attempt : entry.latest.attempt + 1));
      placed = null;
    }
    // The log has nothing: the task never started; one the queue calls in
    // progress did not really start, so it is pending too.
    const after: Placement = placed ? placed.place : { status: t.status === 'in_progress' ? 'pending' : t.status, attempt: t.attempt };
    const rule = placed ? placed.rule : t.status === 'in_progress' ? 'in progress, never recorded as started' : 'pending';
    if (after.status !== t.status || after.attempt !== t.attempt) {
      changes.push({ task: t.id, before: { status: t.status, attempt: t.attempt }, after, rule });
      const reason = after.status === 'failed' || after.status === 'cancelled' ? (entry?.latest?.reason ?? t.reason) : null;
      write.push({ ...t, status: after.status, attempt: after.attempt, updated: now, reason });
    }
  }
  const lost: string[] = [];
  for (const [id, entry] of log) {
    if (inQueue.has(id) || archived.has(id)) continue;
    if (!entry.spec) {
      lost.push(id);
      continue;
    }
    const spec = entry.spec;
    const placed = placeFromLog(entry.latest, spec.max_attempts);
    const after = placed ? placed.place : { status: 'pending' as TaskStatus, attempt: 1 };
    changes.push({ task: id, before: null, after, rule: `restored from the task log (${placed ? placed.rule : 'never started'})` });
    write.push({ ...spec, status: after.status, attempt: after.attempt, updated: now, reason: entry.latest?.reason ?? null });
  }
  changes.sort((a, b) => a.task.localeCompare(b.task));
  return { changes, write, lost, restore, kept };
}
