// From a run's task log (one in-memory snapshot: the database plus the
// journal's tail), its queue, its agent and systemd, to a Report. Every
// figure is one SQL query over an indexed time range, so a week-long log
// costs little more than loading it.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Database } from 'sql.js';
import type { RunConfig } from '../config/index.js';
import { workspaceDir } from '../config/index.js';
import { listRejected } from '../queue/reject.js';
import { checkpointAttempts, escalatedAt, failingFrom, protection, writability, type Protection } from '../health.js';
import { agentProcess, listApprovals, readAgentState, taskCounts } from '../agent/state.js';
import { memoryStatus } from '../agent/memory.js';
import type { TaskStatus } from '../queue/task.js';
import { PLANNED_ENDS } from '../recover/backoff.js';
import { TaskLog, describeCorrupt } from '../tasklog/index.js';
import { queryRows } from '../tasklog/schema.js';
import { ATTEMPTS, CHECKPOINTS, MODEL_SPEED } from '../tasklog/retention.js';
import type { RunPaths } from '../run.js';
import { diskUsage } from '../fsutil.js';
import { noInputError } from '../exit.js';
import { isoUtc } from '../units.js';
import type { Thresholds } from '../governor/config.js';
import { evaluate, verdictOf } from './check.js';
import { summaryOf } from './summary.js';
import type { GovernorChange, RecoveryItem, Report, Tier } from './types.js';

import type { Window } from './window.js';

export interface CollectOptions {
  /** The time the report is made (the agent's uptime, the queue, disk: now). */
  now?: number;
  /** The governor's disk thresholds (% free), for the disk alert. */
  disk?: Thresholds;
  /** Ask systemd about selfware@<run>.service (false in tests of the figures alone). */
  systemd?: boolean;
  /** The config file read and its mistakes (a lenient load went past them): the agent will not start. */
  configFile?: string | null;
  configProblems?: string[];
}

type Val = string | number | null;
type Row = Val[];

const rows = (db: Database, sql: string, params: Val[] = []): Row[] => queryRows<Val>(db, sql, params);

function one(db: Database, sql: string, params: Val[] = []): Row {
  return rows(db, sql, params)[0] ?? [];
}

const n = (v: Val | undefined): number => (v === null || v === undefined ? 0 : Number(v));
const nn = (v: Val | undefined): number | null => (v === null || v === undefined ? null : Number(v));
const s = (v: Val | undefined): string | null => (v === null || v === undefined ? null : String(v));
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

/**
 * The model's latency percentiles in a window: from one sort in SQL, or,
 * where the window holds calls folded past tasklog.detail_after (their
 * latencies kept as a list), from the rows and the lists sorted together.
 */
function latencyQuantiles(db: Database, where: string, W: Val[], qs: number[], count: number): number[] {
  const lists = rows(db, "SELECT latencies FROM llm_rollups WHERE ts >= ? AND ts < ? AND latencies <> ''", W);
  if (lists.length === 0) return quantiles(db, 'llm_calls', 'latency_ms', where, W, qs, count);
  const all = rows(db, `SELECT latency_ms FROM llm_calls WHERE ${where}`, W).map((r) => n(r[0]));
  for (const r of lists) for (const x of String(r[0]).split(',')) all.push(Number(x));
  all.sort((a, b) => a - b);
  return qs.map((q) => all[Math.max(1, Math.ceil(q * count)) - 1] ?? 0);
}

/**
 * The values at quantiles qs of a column, by nearest rank, from one sort in
 * SQLite (a window over the rows that match), count being how many match.
 */
function quantiles(db: Database, table: string, col: string, where: string, params: Val[], qs: number[], count: number): number[] {
  const ranks = qs.map((q) => Math.max(1, Math.ceil(q * count)));
  const got = new Map(
    rows(db, `SELECT rn, v FROM (SELECT ${col} AS v, row_number() OVER (ORDER BY ${col}) AS rn FROM ${table} WHERE ${where}) WHERE rn IN (${ranks.map(() => '?').join(', ')})`, [...params, ...ranks]).map(
      (r) => [n(r[0]), n(r[1])],
    ),
  );
  return ranks.map((k) => got.get(k) ?? 0);
}

const TIERS: Tier[] = ['normal', 'warning', 'critical'];
const asTier = (v: Val | undefined): Tier | null => (v === 'normal' || v === 'warning' || v === 'critical' ? v : null);

/** Round bucket lengths, in seconds, for spans under 18 hours. */
const SHORT_BUCKETS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];

/**
 * The charts' bucket length for a span of spanMs: the shortest round length
 * that cuts it into at most 36 buckets (2 s for a 40-second run, 2 min for an
 * hour), else an hour, or a whole number of hours so that there are at most 336.
 */
function bucketSeconds(spanMs: number): number {
  for (const b of SHORT_BUCKETS) if (Math.ceil(spanMs / (b * 1000)) <= 36) return b;
  return Math.max(1, Math.ceil(spanMs / 3_600_000 / 336)) * 3600;
}

function askSystemd(unit: string): Promise<Report['systemd']> {
  return new Promise((resolve) => {
    execFile('systemctl', ['show', unit, '-p', 'LoadState', '-p', 'ActiveState', '-p', 'NRestarts', '-p', 'Result'], { timeout: 3000 }, (err, out) => {
      if (err) return resolve(null);
      const p = Object.fromEntries(
        String(out)
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      ) as Record<string, string>;
      if (p.LoadState !== 'loaded') return resolve(null);
      const restarts = p.NRestarts !== undefined && /^\d+$/.test(p.NRestarts) ? Number(p.NRestarts) : null;
      resolve({ unit, active_state: p.ActiveState ?? 'unknown', n_restarts: restarts, result: p.Result ?? null });
    });
  });
}

/** The first line of a failure reason, cut to 120 characters, for grouping. */
function reasonKey(r: string | null): string {
  if (!r) return '(no reason recorded)';
  const line = r.split('\n')[0]?.trim() ?? '';
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}

/** Everything a report says about one run over win. */
export async function collect(paths: RunPaths, config: RunConfig, win: Window, opts: CollectOptions = {}): Promise<Report> {
  const log = TaskLog.forRun(paths);
  if (!log.exists()) throw noInputError(`no run '${paths.run}': ${paths.tasklogJournal} does not exist`);
  // systemctl runs while the queries do.
  const systemd = opts.systemd === false ? Promise.resolve(null) : askSystemd(`selfware@${paths.run}.service`);
  // What the newest checkpoint leaves unprotected is known for now only: a window ending in the past is judged on the log alone.
  const now = opts.now ?? Date.now();
  const ws = workspaceDir(config, paths);
  const prot = Math.abs(now - win.until) < 60_000 ? protection(paths, ws) : Promise.resolve(null);
  const snap = await log.snapshot();
  try {
    // Damage: what sw-recover repairs, or what the log has lost. A torn last record (a writer killed mid-append) is not.
    const damage = [...snap.damage, ...snap.corrupt.map((c) => `${describeCorrupt(paths.tasklogJournal, c)}; skipped`), ...snap.warnings];
    const report = await fromSnapshot(snap.db, paths, config, win, opts, systemd, prot, [...damage, ...(snap.torn ? [`${paths.tasklogJournal}: a torn last record was ignored`] : [])], damage);
    return report;
  } finally {
    snap.db.close();
  }
}

async function fromSnapshot(
  db: Database,
  paths: RunPaths,
  config: RunConfig,
  win: Window,
  opts: CollectOptions,
  systemd: Promise<Report['systemd']>,
  prot: Promise<Protection | null>,
  warnings: string[],
  damage: string[] = [],
): Promise<Report> {
  const now = opts.now ?? Date.now();
  const { since: S, until: U } = win;
  const W = [S, U];
  const inWin = (col: string): string => `${col} >= ? AND ${col} < ?`;

  // Sessions, restarts, the agent.
  const sessions = rows(db, 'SELECT id, started_at, ended_at, end_state FROM sessions WHERE started_at < ? ORDER BY started_at, rowid', [U]);
  const runStarted = sessions.length ? n(sessions[0]?.[1]) : null;
  let started = 0;
  let restarts = 0;
  let cleanEnds = 0;
  let uncleanEnds = 0;
  sessions.forEach((row, i) => {
    const st = n(row[1]);
    const prev = i > 0 ? sessions[i - 1] : undefined;
    if (st >= S) {
      started++;
      // A start after a session that did not end with a clean stop is a restart.
      if (prev && (prev[2] === null || prev[3] !== 'clean')) restarts++;
    }
    const ended = nn(row[2]);
    const next = sessions[i + 1];
    // A session without an end ended when the next began (crash, kill, power loss).
    const end = ended ?? (next ? n(next[1]) : null);
    if (end !== null && end >= S && end < U) {
      if (ended !== null && PLANNED_ENDS.has(String(row[3]))) cleanEnds++;
      else uncleanEnds++;
    }
  });
  const last = sessions[sessions.length - 1];
  const proc = agentProcess(paths);
  const agentState = readAgentState(paths);
  const running = proc !== null;
  const lastSeen = nn(
    one(
      db,
      `SELECT max(t) FROM (
         SELECT max(ts) AS t FROM llm_calls WHERE ts < ?1 UNION ALL SELECT max(ts) FROM task_steps WHERE ts < ?1
         UNION ALL SELECT max(ts_last) FROM llm_rollups WHERE ts_last < ?1 UNION ALL SELECT max(ts_last) FROM step_rollups WHERE ts_last < ?1
         UNION ALL SELECT max(ts) FROM events WHERE type = 'heartbeat' AND ts < ?1
         UNION ALL SELECT max(started_at) FROM sessions WHERE started_at < ?1 UNION ALL SELECT max(ended_at) FROM sessions WHERE ended_at < ?1)`,
      [U],
    )[0],
  );
  const sessionStarted = last ? n(last[1]) : null;

  // Recoveries and escalations.
  const recList: RecoveryItem[] = rows(db, `SELECT ts, reason, action, checkpoint_id, duration_ms, requeued, ok FROM recoveries WHERE ${inWin('ts')} ORDER BY ts, pos`, W).map((r) => ({
    time: isoUtc(n(r[0])),
    reason: s(r[1]),
    action: s(r[2]),
    checkpoint: s(r[3]),
    duration_ms: nn(r[4]),
    requeued: nn(r[5]),
    ok: n(r[6]) === 1,
  }));
  const byReason: Record<string, number> = {};
  for (const r of recList) byReason[r.reason ?? 'unknown'] = (byReason[r.reason ?? 'unknown'] ?? 0) + 1;
  const durations = recList.map((r) => r.duration_ms).filter((d): d is number => d !== null).sort((a, b) => a - b);
  const escalations = rows(db, `SELECT ts, reason, failures FROM escalations WHERE ${inWin('ts')} ORDER BY ts, pos`, W).map((r) => ({ time: isoUtc(n(r[0])), reason: s(r[1]), failures: nn(r[2]) }));

  // Tasks and attempts. Every outcome is an attempt's; a task ends with its
  // last: completed, cancelled, or failed when the attempt was its last by the
  // max_attempts it was queued with (the run's default when the log has none).
  // Attempts folded past tasklog.detail_after (attempt_rollups) count as the rows they were.
  const maxA = config.agent.max_attempts;
  const final = 'a.attempt >= coalesce(a.max_attempts, ?)';
  const [aCompleted, aFailed, aCancelled, tFailed, aLooping] = one(
    db,
    `SELECT sum(a.n * (a.outcome = 'completed')), sum(a.n * (a.outcome = 'failed')), sum(a.n * (a.outcome = 'cancelled')), sum(a.n * (a.outcome = 'failed' AND ${final})),
       sum(a.n * (a.outcome = 'failed' AND a.reason LIKE 'looping:%'))
     FROM (${ATTEMPTS}) a WHERE ${inWin('a.ended_at')}`,
    [maxA, ...W],
  ).map(n);
  const completed = aCompleted ?? 0;
  const failed = tFailed ?? 0;
  const reasonsOf = (onlyFinal: boolean): Array<{ reason: string; count: number }> => {
    const reasons = new Map<string, number>();
    const sql = `SELECT a.reason, sum(a.n) FROM (${ATTEMPTS}) a
                 WHERE a.outcome = 'failed' AND ${inWin('a.ended_at')}${onlyFinal ? ` AND ${final}` : ''} GROUP BY a.reason`;
    for (const [r, c] of rows(db, sql, onlyFinal ? [...W, maxA] : W)) {
      const k = reasonKey(s(r));
      reasons.set(k, (reasons.get(k) ?? 0) + n(c));
    }
    return [...reasons.entries()]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .slice(0, 5)
      .map(([reason, count]) => ({ reason, count }));
  };
  // A rate is over the part of the window the run existed in, and only once that is an hour long.
  const existedFrom = runStarted === null ? U : Math.max(S, Math.min(runStarted, U));
  const spanMs = U - existedFrom;

  // LLM calls.
  // One pass for the sums; the latency percentiles from one sort. Speed and
  // latency are a model's: calls that recorded no speed are left out, and so
  // is the scripted backend, whose figures older logs hold but no model made.
  // Calls folded past tasklog.detail_after (llm_rollups) count as the rows they were.
  const LLM = `SELECT backend, quantization, ts, 1 AS calls, ok = 0 AS errors, tokens_in, tokens_out, ${MODEL_SPEED} AS speed_n,
      CASE WHEN ${MODEL_SPEED} THEN tokens_per_s END AS speed_sum, ${MODEL_SPEED} AND latency_ms IS NOT NULL AS latency_n FROM llm_calls WHERE ${inWin('ts')}
    UNION ALL SELECT backend, quantization, ts, calls, errors, tokens_in, tokens_out, speed_n, speed_sum, latency_n FROM llm_rollups WHERE ${inWin('ts')}`;
  // What the prompts cost: evaluated and reused tokens of the calls that said (both known), and the evaluation's speed.
  const [pEval, pReused, eTokens, eMs] = one(
    db,
    `SELECT sum(ev), sum(re), sum(et), sum(em) FROM (
       SELECT tokens_evaluated AS ev, tokens_reused AS re, CASE WHEN eval_ms > 0 THEN tokens_evaluated END AS et, CASE WHEN eval_ms > 0 THEN eval_ms END AS em
         FROM llm_calls WHERE ok = 1 AND tokens_evaluated IS NOT NULL AND tokens_reused IS NOT NULL AND ${inWin('ts')}
       UNION ALL SELECT tokens_evaluated, tokens_reused, eval_tokens, eval_ms FROM llm_rollups WHERE ${inWin('ts')})`,
    [...W, ...W],
  );
  const promptKnown = n(pEval) + n(pReused);
  const [calls, errors, tin, tout, okCountV, tpsV] = one(
    db,
    `SELECT coalesce(sum(calls), 0), sum(errors), sum(tokens_in), sum(tokens_out), sum(latency_n), sum(speed_sum) / nullif(sum(CASE WHEN speed_sum IS NOT NULL THEN speed_n END), 0) FROM (${LLM})`,
    [...W, ...W],
  );
  const okWhere = `${MODEL_SPEED} AND ${inWin('ts')} AND latency_ms IS NOT NULL`;
  const okCount = n(okCountV);
  const tps = nn(tpsV);
  const [p50, p99] = okCount ? latencyQuantiles(db, okWhere, W, [0.5, 0.99], okCount) : [0, 0];
  const backends = Object.fromEntries(rows(db, `SELECT coalesce(backend, 'unrecorded'), sum(calls) FROM (${LLM}) GROUP BY 1 ORDER BY 1`, [...W, ...W]).map((r) => [String(r[0]), n(r[1])]));
  const byQuant = rows(
    db,
    `SELECT coalesce(quantization, 'unrecorded'), sum(calls), sum(speed_sum) / nullif(sum(CASE WHEN speed_sum IS NOT NULL THEN speed_n END), 0) FROM (${LLM}) GROUP BY 1 ORDER BY 2 DESC, 1`,
    [...W, ...W],
  ).map((r) => ({
    quantization: String(r[0]),
    calls: n(r[1]),
    tokens_per_s: r[2] === null ? null : round(n(r[2])),
  }));

  // Checkpoints.
  // Pruned checkpoints folded past tasklog.detail_after (checkpoint_rollups) count as the rows they were.
  const ckByKind = Object.fromEntries(rows(db, `SELECT kind, sum(n) FROM (${CHECKPOINTS}) WHERE ${inWin('ts')} GROUP BY kind ORDER BY kind`, W).map((r) => [String(r[0]), n(r[1])]));
  const lastCk = one(
    db,
    `SELECT id, ts, kind FROM (SELECT id, ts, kind, pruned_at, rowid AS o FROM checkpoints UNION ALL SELECT last_id, ts_last, kind, pruned_at, 0 FROM checkpoint_rollups)
     WHERE ts < ? AND (pruned_at IS NULL OR pruned_at >= ?) ORDER BY ts DESC, o DESC LIMIT 1`,
    [U, U],
  );
  const kept = n(one(db, `SELECT sum(n) FROM (${CHECKPOINTS}) WHERE ts < ? AND (pruned_at IS NULL OR pruned_at >= ?)`, [U, U])[0]);
  const pruned = n(one(db, `SELECT sum(n) FROM (${CHECKPOINTS}) WHERE ${inWin('pruned_at')}`, W)[0]);
  let diskBytes = diskUsage(path.join(paths.runDir, 'state.git'));
  const wsGit = path.join(workspaceDir(config, paths), '.git');
  if (fs.existsSync(wsGit)) diskBytes += diskUsage(wsGit);

  // Governor: the decision in force at S, then each change.
  const decided = rows(
    db,
    `SELECT ts, tier, quantization, actions, reason FROM (
       SELECT * FROM (SELECT pos, ts, tier, quantization, actions, reason FROM governor_decisions WHERE ts < ? ORDER BY ts DESC, pos DESC LIMIT 1)
       UNION ALL SELECT pos, ts, tier, quantization, actions, reason FROM governor_decisions WHERE ${inWin('ts')}) ORDER BY ts, pos`,
    [S, ...W],
  );
  const toChange = (r: Row): GovernorChange => {
    let actions: string[] = [];
    try {
      actions = JSON.parse(String(r[3] ?? '[]')) as string[];
    } catch {
      actions = [];
    }
    return { time: isoUtc(n(r[0])), tier: asTier(r[1]) ?? 'normal', quantization: s(r[2]), actions, reason: s(r[4]) };
  };
  const tierS: Record<Tier, number> = { normal: 0, warning: 0, critical: 0 };
  const quantS: Record<string, number> = {};
  const tierStretches: Array<{ start: string; end: string; tier: Tier }> = [];
  // The last decision holds until U, or until 5 minutes (when a published
  // decision goes stale) after the governor's last sign of life before U.
  const govSeen = n(one(db, 'SELECT max(t) FROM (SELECT max(coalesce(ts_last, ts)) AS t FROM resource_samples WHERE ts < ?1 UNION ALL SELECT max(ts) FROM governor_decisions WHERE ts < ?1)', [U])[0]);
  const govEnd = Math.min(U, govSeen + 5 * 60_000);
  decided.forEach((r, i) => {
    const from = Math.max(S, n(r[0]));
    const to = i + 1 < decided.length ? Math.max(S, n(decided[i + 1]?.[0])) : Math.max(from, govEnd);
    if (to <= from) return;
    const tier = asTier(r[1]) ?? 'normal';
    tierS[tier] += (to - from) / 1000;
    const q = s(r[2]) ?? '-';
    quantS[q] = (quantS[q] ?? 0) + (to - from) / 1000;
    const prev = tierStretches[tierStretches.length - 1];
    if (prev && prev.tier === tier && prev.end === isoUtc(from)) prev.end = isoUtc(to);
    else tierStretches.push({ start: isoUtc(from), end: isoUtc(to), tier });
  });
  for (const k of TIERS) tierS[k] = round(tierS[k], 0);
  for (const k of Object.keys(quantS)) quantS[k] = round(quantS[k] as number, 0);
  const changes = decided.filter((r) => n(r[0]) >= S).map(toChange);
  const current = decided.length ? toChange(decided[decided.length - 1] as Row) : null;

  // The charts span the window, or from the run's first record when the run is
  // younger: a 40-second run fills the axis instead of a sliver at its right end.
  const firstV = one(
    db,
    `SELECT min(t) FROM (
       SELECT min(started_at) AS t FROM sessions UNION ALL SELECT min(added_at) FROM tasks UNION ALL SELECT min(started_at) FROM task_attempts
       UNION ALL SELECT min(ts) FROM task_steps UNION ALL SELECT min(ts) FROM llm_calls UNION ALL SELECT min(ts) FROM checkpoints
       UNION ALL SELECT min(ts) FROM recoveries UNION ALL SELECT min(ts) FROM escalations UNION ALL SELECT min(ts) FROM governor_decisions
       UNION ALL SELECT min(ts) FROM resource_samples UNION ALL SELECT min(ts) FROM events
       UNION ALL SELECT min(ts) FROM step_rollups UNION ALL SELECT min(ts) FROM llm_rollups
       UNION ALL SELECT min(added_at) FROM attempt_rollups UNION ALL SELECT min(started_at) FROM attempt_rollups UNION ALL SELECT min(ts) FROM checkpoint_rollups)`,
  )[0];
  const C = firstV !== null && firstV !== undefined && n(firstV) > S && n(firstV) < U ? n(firstV) : S;

  // Resources.
  // Plain arithmetic (x / 0 is NULL in SQLite): CASE costs a third more over 120,000 rows.
  const vramPct = 'vram_used_mb * 100.0 / vram_total_mb';
  const ramPct = 'ram_used_mb * 100.0 / ram_total_mb';
  const tierRank = "(tier = 'warning') + 2 * (tier = 'critical')";
  // One pass over the samples: the chart's bins (at most 400), and the peaks folded from them.
  // A window over most of the log reads the table in order rather than through the ts index.
  const [firstTs, lastTs] = one(db, 'SELECT min(ts), max(ts) FROM resource_samples');
  const most = firstTs !== null && firstTs !== undefined && Math.min(U, n(lastTs) + 1) - Math.max(S, n(firstTs)) > (n(lastTs) - n(firstTs)) / 2;
  const span = Math.max(1, U - C);
  const binMs = Math.max(1, Math.ceil(span / 400));
  const bins = rows(
    db,
    `SELECT min(ts), max(${vramPct}), max(${ramPct}), max(cpu_load), max(${tierRank}),
       sum(samples), max(vram_used_mb), max(vram_total_mb), max(ram_used_mb), max(ram_total_mb), max(swap_used_mb), max(gpu_temp), min(disk_free_pct)
     FROM resource_samples${most ? ' NOT INDEXED' : ''} WHERE ${inWin('ts')} GROUP BY CAST((ts - ?) / ? AS INTEGER) ORDER BY 1`,
    [...W, C, binMs],
  );
  const fold = (i: number, pick: (a: number, b: number) => number): number | null =>
    bins.reduce<number | null>((acc, r) => (r[i] === null || r[i] === undefined ? acc : acc === null ? n(r[i]) : pick(acc, n(r[i]))), null);
  const peak = {
    samples: bins.reduce((acc, r) => acc + n(r[5]), 0),
    vram_used_mb: fold(6, Math.max),
    vram_total_mb: fold(7, Math.max),
    vram_pct: fold(1, Math.max),
    ram_used_mb: fold(8, Math.max),
    ram_total_mb: fold(9, Math.max),
    ram_pct: fold(2, Math.max),
    swap_used_mb: fold(10, Math.max),
    gpu_temp: fold(11, Math.max),
    cpu_load: fold(3, Math.max),
    disk_free_pct: fold(12, Math.min),
  };
  const resSeries = bins.map((r) => ({ time: isoUtc(n(r[0])), vram_pct: r[1] === null ? null : round(n(r[1])), ram_pct: r[2] === null ? null : round(n(r[2])), cpu_load: nn(r[3]), tier: r[4] === null ? null : (TIERS[n(r[4])] ?? null) }));

  // Buckets for the charts, from C.
  const bucketS = bucketSeconds(U - C);
  const bMs = bucketS * 1000;
  const nb = Math.max(1, Math.ceil((U - C) / bMs));
  const buckets = Array.from({ length: nb }, (_, i) => ({ start: isoUtc(C + i * bMs), completed: 0, failed: 0, retried: 0, steps: 0, tokens_per_s: null as number | null }));
  const at = (b: Val | undefined): (typeof buckets)[number] | undefined => (n(b) >= 0 ? buckets[n(b)] : undefined);
  for (const [b, c, f, r] of rows(
    db,
    `SELECT CAST((a.ended_at - ?) / ? AS INTEGER), sum(a.n * (a.outcome = 'completed')), sum(a.n * (a.outcome = 'failed' AND ${final})), sum(a.n * (a.outcome = 'failed' AND NOT ${final}))
     FROM (${ATTEMPTS}) a WHERE ${inWin('a.ended_at')} AND a.outcome IN ('completed', 'failed') GROUP BY 1`,
    [C, bMs, maxA, maxA, ...W],
  )) {
    const x = at(b);
    if (x) Object.assign(x, { completed: n(c), failed: n(f), retried: n(r) });
  }
  for (const [b, c] of rows(
    db,
    `SELECT CAST((ts - ?) / ? AS INTEGER), sum(k) FROM (SELECT ts, 1 AS k FROM task_steps WHERE ${inWin('ts')} UNION ALL SELECT ts, steps FROM step_rollups WHERE ${inWin('ts')}) GROUP BY 1`,
    [C, bMs, ...W, ...W],
  )) {
    const x = at(b);
    if (x) x.steps = n(c);
  }
  for (const [b, v] of rows(
    db,
    `SELECT CAST((ts - ?) / ? AS INTEGER), sum(s) / sum(k) FROM (SELECT ts, tokens_per_s AS s, 1 AS k FROM llm_calls WHERE ${MODEL_SPEED} AND ${inWin('ts')}
       UNION ALL SELECT ts, speed_sum, speed_n FROM llm_rollups WHERE speed_n > 0 AND ${inWin('ts')}) GROUP BY 1`,
    [C, bMs, ...W, ...W],
  )) {
    const x = at(b);
    if (x) x.tokens_per_s = round(n(v));
  }
  // A folded bucket is one mark per kind, at its first checkpoint's time.
  const ckSeries = rows(db, `SELECT ts, kind FROM (SELECT ts, kind, rowid AS o FROM checkpoints UNION ALL SELECT ts, kind, 0 FROM checkpoint_rollups) WHERE ${inWin('ts')} ORDER BY ts, o`, W).map((r) => ({
    time: isoUtc(n(r[0])),
    kind: String(r[1]),
  }));

  // The queue and approvals now.
  const { tasks, counts, invalid } = await taskCounts(paths, config);
  const rejected = listRejected(paths.stateDir);
  const count = (st: TaskStatus): number => counts[st];
  const queue = { pending: count('pending'), in_progress: count('in_progress'), completed: count('completed'), failed: count('failed'), cancelled: count('cancelled'), invalid: invalid.length, invalid_files: invalid.slice(0, 5).map((b) => (b.error.startsWith(b.file) ? b.error : `${b.file}: ${b.error}`)), rejected: rejected.length, rejected_files: rejected.slice(0, 5).map((r) => `${r.file}${r.reason ? `: ${r.reason}` : ''}`) };
  const memory = memoryStatus(paths.stateDir);
  const approvals = listApprovals(paths)
    .filter((a) => a.status === 'pending')
    .map((a) => ({ id: a.id, task: a.task, action: typeof a.action === 'object' ? JSON.stringify(a.action) : String(a.action), requested: a.requested }));

  const tot = one(
    db,
    `SELECT (SELECT count(*) FROM sessions WHERE started_at < ?1),
       (SELECT coalesce(sum(n), 0) FROM (${ATTEMPTS}) WHERE outcome = 'completed' AND ended_at < ?1),
       (SELECT coalesce(sum(n), 0) FROM (${ATTEMPTS}) WHERE outcome = 'failed' AND ended_at < ?1),
       (SELECT coalesce(sum(n), 0) FROM (${ATTEMPTS}) WHERE outcome = 'cancelled' AND ended_at < ?1),
       (SELECT count(*) FROM task_steps WHERE ts < ?1) + (SELECT coalesce(sum(steps), 0) FROM step_rollups WHERE ts < ?1),
       (SELECT count(*) FROM llm_calls WHERE ts < ?1) + (SELECT coalesce(sum(calls), 0) FROM llm_rollups WHERE ts < ?1),
       (SELECT count(*) FROM llm_calls WHERE ok = 0 AND ts < ?1) + (SELECT coalesce(sum(errors), 0) FROM llm_rollups WHERE ts < ?1),
       (SELECT coalesce(sum(tokens_in), 0) FROM llm_calls WHERE ts < ?1) + (SELECT coalesce(sum(tokens_in), 0) FROM llm_rollups WHERE ts < ?1),
       (SELECT coalesce(sum(tokens_out), 0) FROM llm_calls WHERE ts < ?1) + (SELECT coalesce(sum(tokens_out), 0) FROM llm_rollups WHERE ts < ?1),
       (SELECT coalesce(sum(n), 0) FROM (${CHECKPOINTS}) WHERE ts < ?1), (SELECT count(*) FROM recoveries WHERE ts < ?1), (SELECT count(*) FROM escalations WHERE ts < ?1),
       (SELECT coalesce(sum(a.n), 0) FROM (${ATTEMPTS}) a WHERE a.outcome = 'failed' AND a.ended_at < ?1 AND a.attempt >= coalesce(a.max_attempts, ?2))`,
    [U, maxA],
  ).map(n);
  const totals = {
    sessions: tot[0] ?? 0,
    // Each completed or cancelled attempt ends its task; a failed one only when it was the last.
    tasks_completed: tot[1] ?? 0,
    tasks_failed: tot[12] ?? 0,
    tasks_cancelled: tot[3] ?? 0,
    attempts_completed: tot[1] ?? 0,
    attempts_failed: tot[2] ?? 0,
    attempts_cancelled: tot[3] ?? 0,
    steps: tot[4] ?? 0,
    llm_calls: tot[5] ?? 0,
    llm_errors: tot[6] ?? 0,
    tokens_in: tot[7] ?? 0,
    tokens_out: tot[8] ?? 0,
    checkpoints: tot[9] ?? 0,
    recoveries: tot[10] ?? 0,
    escalations: tot[11] ?? 0,
  };
  const report: Report = {
    version: 1,
    run: paths.run,
    host: os.hostname(),
    generated_at: isoUtc(now),
    since: isoUtc(S),
    until: isoUtc(U),
    hours: round((U - S) / 3_600_000, 2),
    verdict: 'OK',
    summary: '',
    run_started: runStarted === null ? null : isoUtc(runStarted),
    agent: {
      running,
      pid: proc?.pid ?? null,
      status: running ? (agentState.status ?? null) : 'stopped',
      task: running ? (agentState.task ?? null) : null,
      paused: agentState.paused === true,
      session_started: sessionStarted === null ? null : isoUtc(sessionStarted),
      uptime_s: running && sessionStarted !== null ? round((now - sessionStarted) / 1000, 0) : null,
      last_seen: lastSeen === null ? null : isoUtc(lastSeen),
    },
    sessions: { started, clean_ends: cleanEnds, unclean_ends: uncleanEnds },
    restarts,
    systemd: await systemd,
    recoveries: {
      count: recList.length,
      by_reason: byReason,
      restored: recList.filter((r) => r.action === 'restore' || r.action === 'rollback').length,
      duration_ms: durations.length ? { p50: durations[Math.ceil(0.5 * durations.length) - 1] as number, max: durations[durations.length - 1] as number, total: durations.reduce((a, b) => a + b, 0) } : null,
      list: recList,
    },
    escalations,
    iterations: n(one(db, `SELECT (SELECT count(*) FROM task_steps WHERE ${inWin('ts')}) + (SELECT coalesce(sum(steps), 0) FROM step_rollups WHERE ${inWin('ts')})`, [...W, ...W])[0]),
    tasks: {
      completed,
      failed,
      cancelled: aCancelled ?? 0,
      success_rate: completed + failed > 0 ? round(completed / (completed + failed), 4) : null,
      span_s: round(spanMs / 1000, 0),
      per_hour: spanMs >= 3_600_000 ? round(completed / (spanMs / 3_600_000), 2) : null,
      failure_reasons: reasonsOf(true),
    },
    attempts: {
      started: n(one(db, `SELECT sum(n) FROM (${ATTEMPTS}) WHERE ${inWin('started_at')}`, W)[0]),
      completed,
      failed: aFailed ?? 0,
      retried: (aFailed ?? 0) - failed,
      cancelled: aCancelled ?? 0,
      looping: aLooping ?? 0,
      failure_reasons: reasonsOf(false),
    },
    llm: {
      calls: n(calls),
      errors: n(errors),
      tokens_in: n(tin),
      tokens_out: n(tout),
      backends,
      tokens_per_s: tps === null ? null : round(tps),
      latency_ms: okCount ? { p50: round(p50 ?? 0), p99: round(p99 ?? 0) } : null,
      by_quantization: byQuant,
      prompt: { evaluated: n(pEval), reused: n(pReused), reuse_ratio: promptKnown > 0 ? round(n(pReused) / promptKnown, 3) : null },
      prompt_tokens_per_s: n(eMs) > 0 ? round((n(eTokens) * 1000) / n(eMs)) : null,
    },
    checkpoints: {
      created: Object.values(ckByKind).reduce((a, b) => a + b, 0),
      pruned,
      by_kind: ckByKind,
      last: lastCk.length ? { id: String(lastCk[0]), time: isoUtc(n(lastCk[1])), kind: String(lastCk[2]) } : null,
      age_s: lastCk.length ? round((U - n(lastCk[1])) / 1000, 0) : null,
      kept,
      disk_bytes: diskBytes,
      failing: null,
      unprotected: null,
    },
    config: { file: null, problems: [] },
    writable: { ok: true, owner: null, count: 0, problems: [], message: null },
    escalated: null,
    governor: { decisions: changes.length, tier_s: tierS, quantization_s: quantS, current, changes },
    resources: {
      samples: peak.samples,
      peaks: {
        vram_used_mb: peak.vram_used_mb,
        vram_total_mb: peak.vram_total_mb,
        vram_pct: peak.vram_pct === null ? null : round(peak.vram_pct),
        ram_used_mb: peak.ram_used_mb,
        ram_total_mb: peak.ram_total_mb,
        ram_pct: peak.ram_pct === null ? null : round(peak.ram_pct),
        swap_used_mb: peak.swap_used_mb,
        gpu_temp: peak.gpu_temp,
        cpu_load: peak.cpu_load,
        disk_free_pct: peak.disk_free_pct,
      },
    },
    queue,
    approvals: { pending: approvals },
    memory,
    alerts: [],
    totals,
    series: { start: isoUtc(C), bucket_s: bucketS, buckets, resources: resSeries, tiers: tierStretches, checkpoints: ckSeries },
    warnings,
    tasklog_damage: damage,
  };
  const waitingSince = tasks.filter((t) => t.status === 'pending' || t.status === 'in_progress').map((t) => Date.parse(t.created)).filter((x) => !Number.isNaN(x));
  const protNow = await prot;
  const { w, problem: unwritable } = writability(paths, workspaceDir(config, paths));
  report.config = { file: opts.configFile ?? null, problems: opts.configProblems ?? [] };
  report.writable = { ok: !unwritable, owner: w?.owner.name ?? null, count: w?.count ?? 0, problems: w?.problems ?? [], message: unwritable };
  const failing = failingFrom(checkpointAttempts(db, U));
  report.checkpoints.failing = failing ? { since: isoUtc(failing.since), count: failing.count, kind: failing.last.kind, reason: failing.last.reason } : null;
  const pend = protNow?.pending ?? null;
  report.checkpoints.unprotected = pend
    ? { paths: pend.paths.length, since: pend.since === null ? null : isoUtc(pend.since), sample: pend.paths.slice(0, 5), checkpoint: pend.checkpoint }
    : null;
  const esc = escalatedAt(db, U);
  report.escalated = esc ? { time: isoUtc(esc.time), reason: esc.reason } : null;
  report.alerts = evaluate(db, report, {
    protectionError: protNow?.error ?? null,
    config: config.report.check,
    until: U,
    runDir: paths.runDir,
    disk: opts.disk ?? { warning: 20, critical: 10 },
    sessionOpen: running,
    maxAttempts: maxA,
    oldestWaiting: waitingSince.length ? Math.min(...waitingSince) : null,
  });
  report.verdict = verdictOf(report.alerts);
  report.summary = summaryOf(report);
  return report;
}

