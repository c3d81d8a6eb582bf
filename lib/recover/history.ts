// What the task log says that recovery needs: the sessions and how they
// ended, each task's definition and newest attempt, earlier recoveries and
// escalations, and how systemd saw the last service end.

import type { TaskSpec } from '../queue/task.js';
import type { Snapshot } from '../tasklog/index.js';
import { queryRows } from '../tasklog/schema.js';
import type { SessionInfo } from './backoff.js';
import type { LogTask } from './reconcile.js';

export interface ServiceExit {
  ts: number;
  result: string | null;
  exitCode: string | null;
  exitStatus: string | null;
}

export interface History {
  /** Newest first. */
  sessions: SessionInfo[];
  /** Sessions a successful recovery already handled. */
  recovered: Set<string>;
  failedRecoveries: number[];
  lastEscalation: number | null;
  /** The newest service exit recorded by ExecStopPost=, if any. */
  serviceExit: ServiceExit | null;
  tasks: Map<string, LogTask>;
}

// Signs of the agent's life (timers' routine checkpoints and a human's are not).
const ACTIVITY = `
  SELECT max(t) FROM (
    SELECT max(ts) AS t FROM llm_calls WHERE ts >= ?1 AND ts < ?2
    UNION ALL SELECT max(ts) FROM task_steps WHERE ts >= ?1 AND ts < ?2
    UNION ALL SELECT max(started_at) FROM task_attempts WHERE started_at >= ?1 AND started_at < ?2
    UNION ALL SELECT max(ended_at) FROM task_attempts WHERE ended_at >= ?1 AND ended_at < ?2
    UNION ALL SELECT max(ts) FROM checkpoints WHERE ts >= ?1 AND ts < ?2 AND kind IN ('task', 'pre-op', 'shutdown')
    UNION ALL SELECT max(ts) FROM events WHERE type = 'heartbeat' AND ts >= ?1 AND ts < ?2
  )`;

/** The history in a task log snapshot; null gives an empty history. */
export function readHistory(snap: Snapshot | null): History {
  if (!snap) return { sessions: [], recovered: new Set(), failedRecoveries: [], lastEscalation: null, serviceExit: null, tasks: new Map() };
  const db = snap.db;
  const rows = queryRows(db, 'SELECT id, started_at, ended_at, end_state, reason FROM sessions ORDER BY started_at DESC, rowid DESC');
  const sessions: SessionInfo[] = [];
  let nextStart = Number.MAX_SAFE_INTEGER;
  for (const [id, started, ended, endState, reason] of rows) {
    const startedAt = Number(started);
    let lastSeen = ended === null ? null : Number(ended);
    if (lastSeen === null) {
      const act = queryRows(db, ACTIVITY, [startedAt, nextStart])[0]?.[0];
      lastSeen = act === null || act === undefined ? startedAt : Number(act);
    }
    sessions.push({ id: String(id), startedAt, lastSeen, endState: ended === null ? null : endState === null ? null : String(endState), ...(reason !== null && reason !== undefined ? { reason: String(reason) } : {}) });
    nextStart = startedAt;
  }
  const recovered = new Set<string>();
  const failedRecoveries: number[] = [];
  for (const [sid, ok, ts] of queryRows(db, 'SELECT session_id, ok, ts FROM recoveries')) {
    if (Number(ok) === 1 && sid !== null) recovered.add(String(sid));
    if (Number(ok) === 0) failedRecoveries.push(Number(ts));
  }
  const esc = queryRows(db, 'SELECT max(ts) FROM escalations')[0]?.[0];
  const ex = queryRows(db, 'SELECT ts, result, exit_code, exit_status FROM service_exits ORDER BY ts DESC, pos DESC LIMIT 1')[0];
  const tasks = new Map<string, LogTask>();
  for (const [id, spec] of queryRows(db, 'SELECT id, spec FROM tasks')) {
    let parsed: TaskSpec | null = null;
    try {
      parsed = spec === null ? null : (JSON.parse(String(spec)) as TaskSpec);
    } catch {
      parsed = null;
    }
    tasks.set(String(id), { spec: parsed, latest: null });
  }
  const latest = queryRows(
    db,
    `SELECT task_id, attempt, outcome, reason, ended_at, steps FROM task_attempts a
     WHERE attempt = (SELECT max(attempt) FROM task_attempts b WHERE b.task_id = a.task_id)`,
  );
  for (const [tid, attempt, outcome, reason, endedAt, steps] of latest) {
    const id = String(tid);
    const entry = tasks.get(id) ?? { spec: null, latest: null };
    entry.latest = {
      attempt: Number(attempt),
      outcome: outcome === null ? null : String(outcome),
      reason: reason === null ? null : String(reason),
      endedAt: endedAt === null || endedAt === undefined ? null : Number(endedAt),
      steps: steps === null || steps === undefined ? null : Number(steps),
    };
    tasks.set(id, entry);
  }
  return {
    sessions,
    recovered,
    failedRecoveries,
    lastEscalation: esc === null || esc === undefined ? null : Number(esc),
    serviceExit: ex ? { ts: Number(ex[0]), result: (ex[1] as string | null) ?? null, exitCode: (ex[2] as string | null) ?? null, exitStatus: (ex[3] as string | null) ?? null } : null,
    tasks,
  };
}

/** crash, hang or unknown: how the last session ended, as far as anyone recorded it. */
export function crashReason(session: SessionInfo, exit: ServiceExit | null): { reason: 'crash' | 'hang' | 'unknown'; detail: string } {
  if (exit && exit.ts >= session.startedAt) {
    const how = [exit.result, exit.exitCode, exit.exitStatus].filter((x) => x).join(', ');
    if (exit.result === 'watchdog' || exit.result === 'timeout') return { reason: 'hang', detail: `systemd: ${how}` };
    if (exit.result && exit.result !== 'success') return { reason: 'crash', detail: `systemd: ${how}` };
  }
  if (session.endState !== null) return { reason: 'crash', detail: `the agent ended with '${session.endState}'` };
  return { reason: 'unknown', detail: 'the session ended without a word (killed, power loss, or a hang)' };
}
