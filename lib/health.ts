// What a human must be told about a run, whatever the agent is doing: a
// config the agent will not start with, files its owner cannot write,
// checkpoints that fail or changes left unprotected, an escalation, a pause.
// `sw-agent status` and the report (its alerts, `--check`) both ask here, so
// they never disagree.

import type { Database } from 'sql.js';
import { queryRows } from './tasklog/schema.js';
import { describeError } from './exit.js';
import type { RunPaths } from './run.js';
import { pendingChanges, readFailing, type CheckpointFailing, type PendingChanges } from './state/index.js';
import { checkWritable, writableProblem, type Writability } from './state/writable.js';

export interface Protection {
  /** The newest attempts failed: since when, how many, why (from the marker the checkpoint code keeps). */
  failing: CheckpointFailing | null;
  /** What differs from the newest checkpoint now; null when it could not be worked out (`error` says why). */
  pending: PendingChanges | null;
  error: string | null;
}

/** Is the run's state protected by its newest checkpoint? */
export async function protection(paths: RunPaths, wsDir: string): Promise<Protection> {
  const failing = readFailing(paths);
  try {
    return { failing, pending: await pendingChanges(paths, wsDir), error: null };
  } catch (e) {
    return { failing, pending: null, error: describeError(e) };
  }
}

/** The run's owner can write what selfware writes: null when it can (or the run has no directory yet), else one line. */
export function writability(paths: RunPaths, wsDir: string): { w: Writability | null; problem: string | null } {
  const w = checkWritable(paths, wsDir);
  return { w, problem: writableProblem(w, paths.runDir) };
}

export interface Escalated {
  time: number;
  reason: string | null;
}

/** The newest escalation, if no session has started since (systemd stopped restarting the run, and nobody has started it again). */
export function escalatedAt(db: Database, until = Number.MAX_SAFE_INTEGER): Escalated | null {
  const row = queryRows<string | number | null>(
    db,
    `SELECT e.ts, e.reason FROM escalations e WHERE e.ts < ?1
       AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.started_at > e.ts AND s.started_at < ?1)
     ORDER BY e.ts DESC, e.pos DESC LIMIT 1`,
    [until],
  )[0];
  return row ? { time: Number(row[0]), reason: row[1] === null ? null : String(row[1]) } : null;
}

export interface AttemptRecord {
  time: number;
  ok: boolean;
  kind: string | null;
  reason: string | null;
}

/**
 * The checkpoint attempts the task log records before `until`, newest first
 * (made, found unchanged after failures, failed), at most `limit`: whether
 * the newest failed, and how many in a row.
 */
export function checkpointAttempts(db: Database, until: number, limit = 50): AttemptRecord[] {
  return queryRows<string | number | null>(
    db,
    `SELECT ts, ok, kind, reason FROM (
       SELECT ts, 1 AS ok, kind, NULL AS reason, 0 AS pos FROM checkpoints WHERE ts < ?1
       UNION ALL SELECT ts, type = 'checkpoint_skipped', json_extract(data, '$.kind'), json_extract(data, '$.reason'), pos
         FROM events WHERE type IN ('checkpoint_failed', 'checkpoint_skipped') AND ts < ?1)
     ORDER BY ts DESC, pos DESC LIMIT ?2`,
    [until, limit],
  ).map((r) => ({ time: Number(r[0]), ok: Number(r[1]) === 1, kind: r[2] === null ? null : String(r[2]), reason: r[3] === null ? null : String(r[3]) }));
}

/** The failures at the head of `attempts` (newest first): how many, since when, the newest reason; null when the newest attempt did not fail. */
export function failingFrom(attempts: AttemptRecord[]): { count: number; since: number; last: AttemptRecord } | null {
  let n = 0;
  while (n < attempts.length && !(attempts[n] as AttemptRecord).ok) n++;
  if (n === 0) return null;
  return { count: n, since: (attempts[n - 1] as AttemptRecord).time, last: attempts[0] as AttemptRecord };
}
