// Retention of the task log: resource samples older than downsample_after are
// folded into one row per downsample_bucket, aligned to the epoch. A folded row
// keeps what the report reads of its samples: the first sample's time (ts) and
// the last's (ts_last), the peaks (the highest VRAM, RAM, swap, load,
// temperature and tier, the lowest free disk), and how many samples it stands
// for. So the report's sample count and peaks for a window that starts and ends
// on bucket boundaries are the same before and after; the ratios (VRAM and RAM
// in per cent) stay exact while the total does not change within a bucket.
// Run again, it changes nothing: a bucket already one row is left alone.

import type { Database } from 'sql.js';
import { queryRows } from './schema.js';

export interface TasklogRetention {
  /** Samples older than this (ms) are folded. */
  downsample_after: number;
  /** The span (ms) one folded row covers. */
  downsample_bucket: number;
  /** Steps and model calls older than this (ms) are folded (foldDetail); none when absent. */
  detail_after?: number;
}

export interface RetentionResult {
  /** Sample rows before and after. */
  rowsBefore: number;
  rowsAfter: number;
}

/** Fold old resource samples in db (in a transaction of its own); `now` in ms. */
export function downsampleSamples(db: Database, now: number, r: TasklogRetention): RetentionResult {
  const count = (): number => Number(queryRows(db, 'SELECT count(*) FROM resource_samples')[0]?.[0] ?? 0);
  const rowsBefore = count();
  const b = Math.max(1, Math.floor(r.downsample_bucket));
  // Only whole buckets that end before the horizon.
  const cutoff = Math.floor((now - r.downsample_after) / b) * b;
  if (rowsBefore === 0 || cutoff <= 0) return { rowsBefore, rowsAfter: rowsBefore };
  const rank = "((tier = 'warning') + 2 * (tier = 'critical'))";
  db.exec('BEGIN');
  try {
    db.run(
      `CREATE TEMP TABLE folded AS
       SELECT min(pos) AS pos, min(ts) AS ts, max(coalesce(ts_last, ts)) AS ts_last, sum(samples) AS samples,
         max(vram_used_mb) AS vram_used_mb, max(vram_total_mb) AS vram_total_mb, max(gpu_util) AS gpu_util,
         max(gpu_temp) AS gpu_temp, max(ram_used_mb) AS ram_used_mb, max(ram_total_mb) AS ram_total_mb,
         max(swap_used_mb) AS swap_used_mb, min(disk_free_pct) AS disk_free_pct, max(cpu_load) AS cpu_load,
         CASE max(${rank}) WHEN 2 THEN 'critical' WHEN 1 THEN 'warning' ELSE max(tier) END AS tier,
         CAST(ts / ? AS INTEGER) AS bucket
       FROM resource_samples WHERE ts < ? GROUP BY bucket HAVING count(*) > 1`,
      [b, cutoff],
    );
    db.run('DELETE FROM resource_samples WHERE ts < ? AND CAST(ts / ? AS INTEGER) IN (SELECT bucket FROM temp.folded)', [cutoff, b]);
    db.run(
      `INSERT INTO resource_samples (pos, ts, ts_last, samples, vram_used_mb, vram_total_mb, gpu_util, gpu_temp, ram_used_mb,
         ram_total_mb, swap_used_mb, disk_free_pct, cpu_load, tier)
       SELECT pos, ts, ts_last, samples, vram_used_mb, vram_total_mb, gpu_util, gpu_temp, ram_used_mb,
         ram_total_mb, swap_used_mb, disk_free_pct, cpu_load, tier FROM temp.folded`,
    );
    db.run('DROP TABLE temp.folded');
    db.exec('COMMIT');
  } catch (e) {
    db.exec('ROLLBACK');
    throw e;
  }
  return { rowsBefore, rowsAfter: count() };
}

/** Step statuses that count as errors (the check's error rate): kept apart in a folded row. */
export const ERROR_STEPS = ['failed', 'invalid', 'llm_error'];

/** A successful model call with a speed of its own (the scripted backend has none): the report's speed and latency. */
export const MODEL_SPEED = "ok = 1 AND tokens_per_s IS NOT NULL AND coalesce(backend, '') <> 'scripted'";

/**
 * Every attempt, each with its task's max_attempts and how many attempts the
 * row stands for (a folded row, many; a folded row has a start or an end).
 */
export const ATTEMPTS = `SELECT a.started_at, a.ended_at, a.outcome, a.reason, a.attempt, t.max_attempts, 1 AS n FROM task_attempts a LEFT JOIN tasks t ON t.id = a.task_id
  UNION ALL SELECT started_at, ended_at, outcome, reason, attempt, max_attempts, attempts FROM attempt_rollups`;

/** Every checkpoint's creation, kind and pruning, with how many checkpoints the row stands for (a folded row, many). */
export const CHECKPOINTS = 'SELECT ts, kind, pruned_at, 1 AS n FROM checkpoints UNION ALL SELECT ts, kind, pruned_at, checkpoints FROM checkpoint_rollups';

export interface DetailResult {
  /** Step and model call rows before and after. */
  steps: [number, number];
  calls: [number, number];
  /** Heartbeat events before and after. */
  heartbeats: [number, number];
}

/**
 * Past tasklog.detail_after, each bucket's steps and model calls fold into
 * rows of step_rollups and llm_rollups (one per bucket, and per backend and
 * quantization for calls) holding what the report reads: counts, errors,
 * tokens, the speed's sum and count, the latencies. Steps of an attempt not
 * yet ended stay (a step record may still change them). Only whole buckets
 * before the horizon; run again, it finds nothing to fold. Heartbeats older
 * than the horizon go (what reads them wants the newest: it stays).
 */
export function foldDetail(db: Database, now: number, r: Required<TasklogRetention>): DetailResult {
  const count = (table: string): number => Number(queryRows(db, `SELECT count(*) FROM ${table}`)[0]?.[0] ?? 0);
  const beats = (): number => Number(queryRows(db, "SELECT count(*) FROM events WHERE type = 'heartbeat'")[0]?.[0] ?? 0);
  const before: [number, number, number] = [count('task_steps'), count('llm_calls'), beats()];
  const b = Math.max(1, Math.floor(r.downsample_bucket));
  const cutoff = Math.floor((now - r.detail_after) / b) * b;
  if (cutoff <= 0 || before[0] + before[1] + before[2] === 0) return { steps: [before[0], before[0]], calls: [before[1], before[1]], heartbeats: [before[2], before[2]] };
  const ended = `EXISTS (SELECT 1 FROM task_attempts a WHERE a.task_id = task_steps.task_id AND a.attempt = task_steps.attempt AND a.ended_at IS NOT NULL)`;
  db.exec('BEGIN');
  try {
    db.run(
      `INSERT INTO step_rollups (ts, ts_last, steps, errors)
       SELECT CAST(ts / ?1 AS INTEGER) * ?1, max(ts), count(*), sum(status IN (${ERROR_STEPS.map((s) => `'${s}'`).join(', ')}))
       FROM task_steps WHERE ts < ?2 AND ${ended} GROUP BY CAST(ts / ?1 AS INTEGER)`,
      [b, cutoff],
    );
    db.run(`DELETE FROM task_steps WHERE ts < ?2 AND ${ended}`, [b, cutoff]);
    const steps = db.getRowsModified();
    // %.17g: a latency read back is the same double.
    db.run(
      `INSERT INTO llm_rollups (ts, ts_last, backend, quantization, calls, errors, tokens_in, tokens_out, speed_n, speed_sum, latency_n, latencies,
         tokens_evaluated, tokens_reused, eval_tokens, eval_ms)
       SELECT CAST(ts / ?1 AS INTEGER) * ?1, max(ts), backend, quantization, count(*), coalesce(sum(ok = 0), 0), sum(tokens_in), sum(tokens_out),
         coalesce(sum(${MODEL_SPEED}), 0), sum(CASE WHEN ${MODEL_SPEED} THEN tokens_per_s END),
         coalesce(sum(${MODEL_SPEED} AND latency_ms IS NOT NULL), 0),
         coalesce(group_concat(CASE WHEN ${MODEL_SPEED} AND latency_ms IS NOT NULL THEN printf('%.17g', latency_ms) END, ','), ''),
         sum(CASE WHEN ok = 1 AND tokens_reused IS NOT NULL THEN tokens_evaluated END), sum(CASE WHEN ok = 1 AND tokens_evaluated IS NOT NULL THEN tokens_reused END),
         sum(CASE WHEN eval_ms > 0 AND tokens_reused IS NOT NULL THEN tokens_evaluated END),
         sum(CASE WHEN eval_ms > 0 AND tokens_evaluated IS NOT NULL AND tokens_reused IS NOT NULL THEN eval_ms END)
       FROM llm_calls WHERE ts < ?2 GROUP BY CAST(ts / ?1 AS INTEGER), backend, quantization`,
      [b, cutoff],
    );
    db.run('DELETE FROM llm_calls WHERE ts < ?2', [b, cutoff]);
    const calls = db.getRowsModified();
    db.run("DELETE FROM events WHERE type = 'heartbeat' AND ts < ? AND pos <> (SELECT max(pos) FROM events WHERE type = 'heartbeat')", [cutoff]);
    const heartbeats = db.getRowsModified();
    db.exec('COMMIT');
    return { steps: [before[0], before[0] - steps], calls: [before[1], before[1] - calls], heartbeats: [before[2], before[2] - heartbeats] };
  } catch (e) {
    db.exec('ROLLBACK');
    throw e;
  }
}

export interface TasksResult {
  /** Task and checkpoint rows before and after. */
  tasks: [number, number];
  checkpoints: [number, number];
}

/**
 * Past tasklog.detail_after, the rows of finished tasks that nothing reads by
 * id any more fold into attempt_rollups (a row per bucket of their starts,
 * and one per bucket of their ends and what the report groups them by), and
 * pruned checkpoints into checkpoint_rollups (a row per bucket and kind).
 * A task folds when its id is in `gone` (its archive has left state/, and
 * dropped.ids keeps the id from being queued or restored again), it has an
 * attempt, every attempt ended before the horizon, and no step of it is left
 * unfolded. A checkpoint folds when it was pruned before the horizon and no
 * recovery used it. Run again, it finds nothing to fold.
 */
export function foldTasks(db: Database, now: number, r: Required<TasklogRetention>, gone: ReadonlySet<string>): TasksResult {
  const count = (table: string): number => Number(queryRows(db, `SELECT count(*) FROM ${table}`)[0]?.[0] ?? 0);
  const before: [number, number] = [count('tasks'), count('checkpoints')];
  const b = Math.max(1, Math.floor(r.downsample_bucket));
  const cutoff = Math.floor((now - r.detail_after) / b) * b;
  if (cutoff <= 0) return { tasks: [before[0], before[0]], checkpoints: [before[1], before[1]] };
  db.exec('BEGIN');
  try {
    db.run('CREATE TEMP TABLE gone (id TEXT PRIMARY KEY)');
    if (gone.size > 0) {
      const add = db.prepare('INSERT OR IGNORE INTO temp.gone (id) VALUES (?)');
      try {
        for (const id of gone) add.run([id]);
      } finally {
        add.free();
      }
    }
    db.run(
      `CREATE TEMP TABLE fold AS SELECT t.id AS id FROM tasks t JOIN temp.gone g ON g.id = t.id
       WHERE EXISTS (SELECT 1 FROM task_attempts a WHERE a.task_id = t.id)
         AND NOT EXISTS (SELECT 1 FROM task_attempts a WHERE a.task_id = t.id AND (a.ended_at IS NULL OR a.ended_at >= ?1))
         AND NOT EXISTS (SELECT 1 FROM task_steps s WHERE s.task_id = t.id)`,
      [cutoff],
    );
    const folded = 'FROM task_attempts a JOIN tasks t ON t.id = a.task_id WHERE a.task_id IN (SELECT id FROM temp.fold)';
    db.run(
      `INSERT INTO attempt_rollups (started_at, ts_last, added_at, attempts)
       SELECT min(a.started_at), max(a.started_at), min(t.added_at), count(*) ${folded} GROUP BY CAST(a.started_at / ?1 AS INTEGER)`,
      [b],
    );
    db.run(
      `INSERT INTO attempt_rollups (ended_at, ts_last, outcome, reason, attempt, max_attempts, attempts)
       SELECT min(a.ended_at), max(a.ended_at), a.outcome, a.reason, a.attempt, t.max_attempts, count(*) ${folded}
       GROUP BY CAST(a.ended_at / ?1 AS INTEGER), a.outcome, a.reason, a.attempt, t.max_attempts`,
      [b],
    );
    db.run('DELETE FROM task_attempts WHERE task_id IN (SELECT id FROM temp.fold)');
    db.run('DELETE FROM tasks WHERE id IN (SELECT id FROM temp.fold)');
    const tasks = db.getRowsModified();
    const pruned = `pruned_at IS NOT NULL AND pruned_at < ?2 AND id NOT IN (SELECT checkpoint_id FROM recoveries WHERE checkpoint_id IS NOT NULL)`;
    db.run(
      `INSERT INTO checkpoint_rollups (ts, ts_last, last_id, kind, pruned_at, pruned_last, checkpoints)
       SELECT min(ts), max(ts), substr(max(printf('%020d', ts) || id), 21), kind, min(pruned_at), max(pruned_at), count(*) FROM checkpoints WHERE ${pruned}
       GROUP BY CAST(ts / ?1 AS INTEGER), kind, CAST(pruned_at / ?1 AS INTEGER)`,
      [b, cutoff],
    );
    db.run(`DELETE FROM checkpoints WHERE ${pruned}`, [b, cutoff]);
    const checkpoints = db.getRowsModified();
    db.run('DROP TABLE temp.fold');
    db.run('DROP TABLE temp.gone');
    db.exec('COMMIT');
    return { tasks: [before[0], before[0] - tasks], checkpoints: [before[1], before[1] - checkpoints] };
  } catch (e) {
    db.exec('ROLLBACK');
    throw e;
  }
}
