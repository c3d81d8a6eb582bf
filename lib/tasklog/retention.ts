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
