// The task log's size and open time as a run goes on, with and without the
// folding of old resource samples (tasklog.downsample_after, 7 days, into
// 5-minute rows): a governor sample every 5 s (its default interval, 17,280 a
// day) for 7, 14, 21 and 28 days. Prints the database's bytes and the median
// time to open it and read the report's sample figures, each as a ratio to
// the 7-day log's, in the same process: kept, they grow with the days; folded,
// they plateau.
//   node dist/bench/retention.js [days=28]

import { performance } from 'node:perf_hooks';
import { migrate, sqljs } from '../lib/tasklog/index.js';
import { downsampleSamples } from '../lib/tasklog/retention.js';
import { median } from './stats.js';

const DAY = 86_400_000;
const maxDays = Number(process.argv[2] ?? 28);
const T0 = Date.parse('2026-11-01T00:00:00Z');

async function logOf(days: number, fold: boolean): Promise<Uint8Array> {
  const SQL = await sqljs();
  const db = new SQL.Database();
  migrate(db, 'bench');
  db.exec('BEGIN');
  const stmt = db.prepare(
    `INSERT INTO resource_samples (pos, ts, vram_used_mb, vram_total_mb, gpu_util, gpu_temp, ram_used_mb, ram_total_mb, swap_used_mb, disk_free_pct, cpu_load, tier)
     VALUES (?, ?, ?, 24576, ?, ?, ?, 32000, 0, ?, ?, 'normal')`,
  );
  const n = (days * DAY) / 5000;
  for (let k = 0; k < n; k++) stmt.run([k * 300, T0 + k * 5000, 12_000 + (k % 3000), 90, 50 + (k % 31), 8000 + (k % 4000), 60 - (k % 400) / 10, 20 + (k % 70)]);
  stmt.free();
  db.exec('COMMIT');
  if (fold) {
    downsampleSamples(db, T0 + days * DAY, { downsample_after: 7 * DAY, downsample_bucket: 5 * 60_000 });
    db.exec('VACUUM');
  }
  const out = db.export();
  db.close();
  return out;
}

/** Open the database and read what the report reads of the samples (count and peaks over the last day). */
async function openMs(bytes: Uint8Array, days: number): Promise<number> {
  const SQL = await sqljs();
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t = performance.now();
    const db = new SQL.Database(bytes);
    db.exec(`SELECT sum(samples), max(vram_used_mb), min(disk_free_pct) FROM resource_samples WHERE ts >= ${T0 + (days - 1) * DAY}`);
    db.close();
    times.push(performance.now() - t);
  }
  return median(times);
}

const rows: Array<{ days: number; kept: number; folded: number; keptMs: number; foldedMs: number }> = [];
for (let days = 7; days <= maxDays; days += 7) {
  const kept = await logOf(days, false);
  const folded = await logOf(days, true);
  rows.push({ days, kept: kept.length, folded: folded.length, keptMs: await openMs(kept, days), foldedMs: await openMs(folded, days) });
}
const base = rows[0] as (typeof rows)[number];
const mib = (b: number): string => (b / 1048576).toFixed(1);
console.log('days   kept MiB  (x 7d)   folded MiB  (x 7d)   kept open ms (x 7d)   folded open ms (x 7d)');
for (const r of rows) {
  console.log(
    `${String(r.days).padStart(4)}   ${mib(r.kept).padStart(8)}  ${(r.kept / base.kept).toFixed(2).padStart(6)}   ${mib(r.folded).padStart(10)}  ${(r.folded / base.folded).toFixed(2).padStart(6)}   ${r.keptMs.toFixed(0).padStart(12)} ${(r.keptMs / base.keptMs).toFixed(2).padStart(6)}   ${r.foldedMs.toFixed(0).padStart(14)} ${(r.foldedMs / base.foldedMs).toFixed(2).padStart(6)}`,
  );
}
const last = rows[rows.length - 1] as (typeof rows)[number];
console.log(`retention: at ${last.days} days the folded log is ${(last.folded / base.folded).toFixed(2)}x its 7-day size (kept: ${(last.kept / base.kept).toFixed(2)}x), opened in ${(last.foldedMs / base.foldedMs).toFixed(2)}x the time (kept: ${(last.keptMs / base.keptMs).toFixed(2)}x)`);
