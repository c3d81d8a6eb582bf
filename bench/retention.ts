// The task log's size and open time as a run goes on, with and without the
// folding of old resource samples (tasklog.downsample_after, 7 days, into
// 5-minute rows) and of old steps and model calls (tasklog.detail_after, 14
// days): a governor sample every 5 s (its default interval, 17,280 a day),
// and a model's step every 30 s (a call and a step each, 2,880 a day; a task
// of 20 steps), for 7, 14, 21 and 28 days. Prints the database's bytes and
// the median time to open it and read the report's sample and call figures,
// each as a ratio to the 7-day log's, in the same process: kept, they grow
// with the days; folded, the samples and the calls past their horizons stop
// growing (what stays is a task's row and its attempt's).
//   node dist/bench/retention.js [days=28]

import { performance } from 'node:perf_hooks';
import { migrate, sqljs } from '../lib/tasklog/index.js';
import { downsampleSamples, foldDetail } from '../lib/tasklog/retention.js';
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
  const task = db.prepare("INSERT INTO tasks (id, title, added_at, priority, max_attempts, spec) VALUES (?, ?, ?, 0, 3, ?)");
  const attempt = db.prepare("INSERT INTO task_attempts (task_id, attempt, session_id, started_at, ended_at, outcome, steps) VALUES (?, 1, 's1', ?, ?, 'completed', 20)");
  const step = db.prepare("INSERT INTO task_steps (task_id, attempt, step, ts, action, status) VALUES (?, 1, ?, ?, 'shell', 'ok')");
  const call = db.prepare(
    `INSERT INTO llm_calls (pos, ts, session_id, task_id, attempt, step, backend, model, quantization, tokens_in, tokens_out, latency_ms, tokens_per_s, ok)
     VALUES (?, ?, 's1', ?, 1, ?, 'llama', 'qwen3-coder-30b', 'Q4_K_M', ?, ?, ?, ?, 1)`,
  );
  const steps = (days * DAY) / 30_000;
  for (let k = 0; k < steps; k++) {
    const id = `task-${String(Math.floor(k / 20)).padStart(6, '0')}`;
    const ts = T0 + k * 30_000;
    if (k % 20 === 0) {
      task.run([id, `task ${k / 20}`, ts, JSON.stringify({ id, title: `task ${k / 20}`, prompt: 'Make the failing test in test/parse.test.ts pass without changing the test.', max_attempts: 3, priority: 0 })]);
      attempt.run([id, ts, ts + 20 * 30_000 - 1]);
    }
    call.run([n * 300 + k, ts + 1000, id, (k % 20) + 1, 2000 + (k % 3000), 100 + (k % 400), 800 + (k % 5000), 20 + (k % 40) / 2]);
    step.run([id, (k % 20) + 1, ts + 2000]);
  }
  for (const x of [task, attempt, step, call]) x.free();
  db.exec('COMMIT');
  if (fold) {
    const r = { downsample_after: 7 * DAY, downsample_bucket: 5 * 60_000, detail_after: 14 * DAY };
    downsampleSamples(db, T0 + days * DAY, r);
    foldDetail(db, T0 + days * DAY, r);
    db.exec('VACUUM');
  }
  const out = db.export();
  db.close();
  return out;
}

/** Open the database and read what the report reads of the samples (count and peaks over the last day) and of the calls (all of them). */
async function openMs(bytes: Uint8Array, days: number): Promise<number> {
  const SQL = await sqljs();
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t = performance.now();
    const db = new SQL.Database(bytes);
    db.exec(`SELECT sum(samples), max(vram_used_mb), min(disk_free_pct) FROM resource_samples WHERE ts >= ${T0 + (days - 1) * DAY}`);
    db.exec('SELECT (SELECT count(*) FROM llm_calls) + (SELECT coalesce(sum(calls), 0) FROM llm_rollups), (SELECT sum(tokens_in) FROM llm_calls) + (SELECT coalesce(sum(tokens_in), 0) FROM llm_rollups)');
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
