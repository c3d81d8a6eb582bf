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

import type { Task, TaskSpec, TaskStatus } from '../queue/task.js';

export interface LogAttempt {
  attempt: number;
  outcome: string | null;
  reason: string | null;
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

export interface ReconcilePlan {
  changes: ReconcileChange[];
  /** Tasks to write: changed ones and ones restored from the log. */
  write: Task[];
  /** Tasks the log knows without a definition, that the queue lacks: cannot be restored. */
  lost: string[];
}

export function planReconcile(tasks: Task[], log: Map<string, LogTask>, now: string): ReconcilePlan {
  const changes: ReconcileChange[] = [];
  const write: Task[] = [];
  const inQueue = new Map(tasks.map((t) => [t.id, t]));
  for (const t of tasks) {
    const entry = log.get(t.id);
    const placed = placeFromLog(entry?.latest ?? null, t.max_attempts);
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
    if (inQueue.has(id)) continue;
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
  return { changes, write, lost };
}
