import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { collect } from '../../lib/report/collect.js';
import { RUN_SCHEMA, type RunConfig } from '../../lib/config/index.js';
import { defaultsOf } from '../../lib/config/spec.js';
import { runPaths } from '../../lib/run.js';
import { TaskLog, sqljs } from '../../lib/tasklog/index.js';
import { queryRows } from '../../lib/tasklog/schema.js';
import { makeEnv } from '../helpers.js';
import { DAY, T0, T1, truthFor, writeWeekLog } from '../fixtures/weeklog.js';

const config = defaultsOf(RUN_SCHEMA) as RunConfig;

const sampleRows = async (file: string): Promise<{ rows: number; samples: number }> => {
  const SQL = await sqljs();
  const db = new SQL.Database(fs.readFileSync(file));
  try {
    const r = queryRows(db, 'SELECT count(*), sum(samples) FROM resource_samples')[0] as number[];
    return { rows: Number(r[0]), samples: Number(r[1]) };
  } finally {
    db.close();
  }
};

test('old resource samples fold into 5-minute rows: the report says the same, the database shrinks, a second pass changes nothing', { timeout: 120_000 }, async () => {
  const t = makeEnv('tasklog-retention');
  try {
    const facts = await writeWeekLog(t.stateDir, 'week', { tasks: 200 });
    const paths = runPaths('week', t.env);
    const log = TaskLog.forRun(paths);
    // Windows on 5-minute boundaries: the week, a day wholly folded, one across the horizon, the newest day (not folded).
    const windows = [
      { since: T0, until: T1 },
      { since: T0 + DAY, until: T0 + 2 * DAY },
      { since: T0 + 4 * DAY + 3_600_000, until: T0 + 6 * DAY },
      { since: T1 - DAY, until: T1 },
      { since: T0 + 2 * DAY + 3 * 3_600_000, until: T0 + 2 * DAY + 5 * 3_600_000 },
    ];
    const before = [];
    for (const w of windows) before.push(await collect(paths, config, w, { now: T1, systemd: false }));
    const bytesBefore = fs.statSync(paths.tasklogDb).size;
    const rowsBefore = await sampleRows(paths.tasklogDb);
    assert.deepEqual(rowsBefore, { rows: facts.samples.length, samples: facts.samples.length });

    const res = await log.compact({ retention: { downsample_after: 2 * DAY, downsample_bucket: 5 * 60_000 }, now: T1 });
    assert.equal(res.folded, 0, 'nothing new in the journal');
    const after = await sampleRows(paths.tasklogDb);
    // Five days folded to one row per 5 minutes (288 a day), the last two days as they were.
    const raw = facts.samples.filter((s) => s.ts >= T1 - 2 * DAY).length;
    assert.equal(after.rows, 5 * 288 + raw, `${after.rows} rows`);
    assert.equal(after.samples, facts.samples.length, 'every sample counted');
    assert.deepEqual(res.samples, { rowsBefore: rowsBefore.rows, rowsAfter: after.rows });
    const bytesAfter = fs.statSync(paths.tasklogDb).size;
    assert.ok(bytesAfter < bytesBefore * 0.8, `database ${bytesBefore} -> ${bytesAfter} bytes`);
    assert.ok((await log.verify()).ok, 'the task log verifies after the fold');

    for (const [i, w] of windows.entries()) {
      const label = `${new Date(w.since).toISOString()}..${new Date(w.until).toISOString()}`;
      const r = await collect(paths, config, w, { now: T1, systemd: false });
      const b = before[i] as typeof r;
      assert.equal(r.resources.samples, b.resources.samples, `samples, ${label}`);
      assert.equal(r.resources.samples, truthFor(facts, w).peaks.samples, `samples are the truth, ${label}`);
      assert.deepEqual(r.resources.peaks, b.resources.peaks, `peaks, ${label}`);
      assert.deepEqual(r.governor.tier_s, b.governor.tier_s, `tiers, ${label}`);
      assert.deepEqual(r.tasks, b.tasks, `tasks, ${label}`);
    }

    // Again, at the same time: nothing to fold, nothing written.
    const again = await log.compact({ retention: { downsample_after: 2 * DAY, downsample_bucket: 5 * 60_000 }, now: T1 });
    assert.deepEqual(again.samples, { rowsBefore: after.rows, rowsAfter: after.rows });
    assert.equal(fs.statSync(paths.tasklogDb).size, bytesAfter);
    // A day later the next day folds too; the count of samples stays.
    await log.compact({ retention: { downsample_after: 2 * DAY, downsample_bucket: 5 * 60_000 }, now: T1 + DAY });
    const later = await sampleRows(paths.tasklogDb);
    assert.equal(later.rows, 6 * 288 + facts.samples.filter((s) => s.ts >= T1 - DAY).length);
    assert.equal(later.samples, facts.samples.length);
  } finally {
    t.cleanup();
  }
});

/** The counts one query of the database file gives, as numbers. */
const counts = async (file: string, sql: string): Promise<number[]> => {
  const SQL = await sqljs();
  const db = new SQL.Database(fs.readFileSync(file));
  try {
    return (queryRows(db, sql)[0] as number[]).map(Number);
  } finally {
    db.close();
  }
};

const detailRows = (file: string): Promise<number[]> =>
  counts(file, 'SELECT (SELECT count(*) FROM task_steps), (SELECT count(*) FROM llm_calls), (SELECT count(*) FROM step_rollups), (SELECT count(*) FROM llm_rollups)');

test('steps and model calls past detail_after fold into rollups: every figure of the report and the check stays, the database shrinks, a second pass changes nothing', { timeout: 180_000 }, async () => {
  const t = makeEnv('tasklog-detail');
  try {
    const facts = await writeWeekLog(t.stateDir, 'week', { tasks: 600, samples: 2000 });
    const paths = runPaths('week', t.env);
    const log = TaskLog.forRun(paths);
    // Heartbeats, all before the horizon: the newest stays.
    log.appendMany([1, 2, 3].map((h) => ({ t: 'heartbeat', ts: new Date(T0 + h * 3_600_000).toISOString(), session: 'sX', rss: 1000 })));
    // The horizon at T0 + 1 day: the first day's steps and calls fold. Windows on 5-minute
    // boundaries: the week, the folded day, one across the horizon, one after it.
    const windows = [
      { since: T0, until: T1 },
      { since: T0, until: T0 + DAY },
      { since: T0 + 20 * 3_600_000, until: T0 + 28 * 3_600_000 },
      { since: T0 + DAY + 3_600_000, until: T0 + 2 * DAY },
      { since: T0 + 2 * 3_600_000 + 5 * 60_000, until: T0 + 3 * 3_600_000 },
    ];
    const strip = (r: Record<string, unknown>): Record<string, unknown> => ({ ...r, generated_at: null, disk: null, stores: null });
    const before = [];
    for (const w of windows) before.push(strip((await collect(paths, config, w, { now: T1, systemd: false })) as unknown as Record<string, unknown>));
    const bytesBefore = fs.statSync(paths.tasklogDb).size;
    const [steps0, calls0] = (await detailRows(paths.tasklogDb)) as [number, number];
    assert.equal(steps0, facts.steps.length);
    assert.equal(calls0, facts.calls.length);

    const retention = { downsample_after: 3 * 7 * DAY, downsample_bucket: 5 * 60_000, detail_after: 6 * DAY };
    const res = await log.compact({ retention, now: T1 });
    const [steps1, calls1, stepRolls, llmRolls] = (await detailRows(paths.tasklogDb)) as [number, number, number, number];
    const fresh = facts.steps.filter((s) => s.ts >= T0 + DAY).length;
    assert.ok(fresh > 0 && fresh < facts.steps.length, `${fresh} of ${facts.steps.length} steps after the horizon`);
    assert.equal(steps1, fresh, 'the steps of the first day folded, the rest kept');
    assert.equal(calls1, facts.calls.filter((c) => c.ts >= T0 + DAY).length);
    assert.ok(stepRolls > 0 && stepRolls <= 288, `${stepRolls} step rows for a day of 5-minute buckets`);
    assert.ok(llmRolls > 0, `${llmRolls} call rows`);
    assert.deepEqual(res.detail, { steps: [steps0, steps1], calls: [calls0, calls1], heartbeats: [3, 1] });
    const bytesAfter = fs.statSync(paths.tasklogDb).size;
    assert.ok(bytesAfter < bytesBefore * 0.8, `database ${bytesBefore} -> ${bytesAfter} bytes`);
    assert.ok((await log.verify()).ok, 'the task log verifies after the fold');

    for (const [i, w] of windows.entries()) {
      const label = `${new Date(w.since).toISOString()}..${new Date(w.until).toISOString()}`;
      const r = strip((await collect(paths, config, w, { now: T1, systemd: false })) as unknown as Record<string, unknown>);
      const b = before[i] as typeof r;
      type Series = { bucket_s: number; buckets: Array<{ steps: number; tokens_per_s: number | null }> };
      const series = (x: typeof r): Series => x.series as Series;
      if (series(b).bucket_s % 300 === 0) {
        assert.deepEqual(r, b, `the whole report, ${label}`);
        continue;
      }
      // Chart buckets finer than the fold's 5 minutes: a folded bucket's steps and speed land in
      // the chart bucket its start falls in; every figure, and the steps in all, stay.
      assert.ok(series(b).buckets.length > 0);
      const sum = (x: typeof r): number => series(x).buckets.reduce((acc, k) => acc + k.steps, 0);
      assert.equal(sum(r), sum(b), `the chart's steps in all, ${label}`);
      const coarse = (x: typeof r): typeof r => ({ ...x, series: { ...series(x), buckets: series(x).buckets.map((k) => ({ ...k, steps: null, tokens_per_s: null })) } });
      assert.deepEqual(coarse(r), coarse(b), `the report but the chart's steps and speed, ${label}`);
    }
    const truth = truthFor(facts, windows[1] as { since: number; until: number });
    const folded = (await collect(paths, config, windows[1] as { since: number; until: number }, { now: T1, systemd: false })).llm;
    assert.deepEqual([folded.calls, folded.errors, folded.tokens_in, folded.tokens_out], [truth.llm.calls, truth.llm.errors, truth.llm.tokens_in, truth.llm.tokens_out], 'the folded day is the truth');

    // Again: nothing to fold, nothing written.
    const again = await log.compact({ retention, now: T1 });
    assert.deepEqual(again.detail, { steps: [steps1, steps1], calls: [calls1, calls1], heartbeats: [1, 1] });
    assert.equal(fs.statSync(paths.tasklogDb).size, bytesAfter);
  } finally {
    t.cleanup();
  }
});

const taskRows = (file: string): Promise<number[]> =>
  counts(
    file,
    `SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM task_attempts), (SELECT count(*) FROM checkpoints),
       (SELECT coalesce(sum(attempts), 0) FROM attempt_rollups WHERE ended_at IS NOT NULL), (SELECT coalesce(sum(checkpoints), 0) FROM checkpoint_rollups), (SELECT count(*) FROM attempt_rollups)`,
  );

test('finished tasks whose archives left state/ and pruned checkpoints fold past detail_after: the whole report and the check stay (the chart marks a bucket of checkpoints once), the rest is kept, a second pass changes nothing', { timeout: 180_000 }, async () => {
  const t = makeEnv('tasklog-tasks');
  try {
    const facts = await writeWeekLog(t.stateDir, 'week', { tasks: 600, samples: 2000 });
    const paths = runPaths('week', t.env);
    const log = TaskLog.forRun(paths);
    // A recovery that used a pruned checkpoint: its row must stay.
    const iso = (ms: number): string => new Date(ms).toISOString();
    log.appendMany([{ t: 'recovery', ts: iso(T0 + 3 * 3_600_000), reason: 'crash', action: 'restore', ok: true, checkpoint: 'c000003', duration_ms: 100 }]);
    // Two task checkpoints in one 5-minute bucket, the newest of the first day, both pruned: the
    // first day's report names the newer as its last.
    for (const [id, ts] of [['cz1', T0 + DAY - 120_000], ['cz2', T0 + DAY - 60_000]] as const) {
      log.appendMany([
        { t: 'checkpoint', id, kind: 'task', time: iso(ts), ts: iso(ts), size: 1000 },
        { t: 'checkpoint_pruned', id, ts: iso(T0 + 4 * DAY) },
      ]);
      facts.checkpoints.push({ id, ts, kind: 'task', pruned: T0 + 4 * DAY });
    }
    await log.compact();
    const windows = [
      { since: T0, until: T1 },
      { since: T0, until: T0 + DAY },
      { since: T0 + 20 * 3_600_000, until: T0 + 28 * 3_600_000 },
      { since: T0 + DAY + 3_600_000, until: T0 + 2 * DAY },
      { since: T0 + 2 * 3_600_000 + 5 * 60_000, until: T0 + 3 * 3_600_000 },
      { since: T0 + 3 * DAY, until: T0 + 5 * DAY },
    ];
    const strip = (r: Record<string, unknown>): Record<string, unknown> => ({ ...r, generated_at: null, disk: null, stores: null });
    const before = [];
    for (const w of windows) before.push(strip((await collect(paths, config, w, { now: T1, systemd: false })) as unknown as Record<string, unknown>));
    const [tasks0, attempts0, cks0] = (await taskRows(paths.tasklogDb)) as [number, number, number];
    assert.equal(tasks0, 600);
    assert.equal(attempts0, facts.attempts.length);
    assert.equal(cks0, facts.checkpoints.length);

    // The first 400 tasks' archives have left state/ (and one id the log never had); the other 200 have not.
    const gone = new Set([...Array.from({ length: 400 }, (_, i) => `task-${String(i).padStart(4, '0')}`), 'task-unknown']);
    // The horizon at T0 + 4.5 days: every task ended before it, and the checkpoints pruned at T0 + 4 days.
    const retention = { downsample_after: 3 * 7 * DAY, downsample_bucket: 5 * 60_000, detail_after: 2.5 * DAY };
    const bytesBefore = fs.statSync(paths.tasklogDb).size;
    const res = await log.compact({ retention, now: T1, gone });
    const [tasks1, attempts1, cks1, attemptsFolded, cksFolded, attemptRows] = (await taskRows(paths.tasklogDb)) as number[];
    const prunedN = facts.checkpoints.filter((c) => c.pruned !== null).length;
    assert.ok(prunedN > 50, `${prunedN} pruned checkpoints`);
    assert.equal(tasks1, 200, 'the tasks whose archives are still in state/ stay');
    const keptAttempts = facts.attempts.filter((a) => Number(a.task.slice(5)) >= 400).length;
    assert.equal(attempts1, keptAttempts);
    assert.equal(attemptsFolded, facts.attempts.length - keptAttempts, 'every folded attempt counted once');
    // A row per 5-minute bucket of starts, and one per bucket of ends, outcome, reason and attempt: a
    // rate of rows bounded by the clock, whatever the rate of tasks.
    const folded = facts.attempts.filter((a) => Number(a.task.slice(5)) < 400);
    const startRows = new Set(folded.map((a) => Math.floor(a.start / 300_000))).size;
    const endRows = new Set(folded.map((a) => `${Math.floor(a.end / 300_000)} ${a.outcome} ${a.reason} ${a.attempt}`)).size;
    assert.equal(attemptRows, startRows + endRows, `${attemptRows} rows for ${attemptsFolded} attempts`);
    assert.equal(cks1, facts.checkpoints.length - prunedN + 1, 'the unpruned checkpoints and the one a recovery used stay');
    assert.equal(cksFolded, prunedN - 1);
    assert.deepEqual(res.tasks, { tasks: [600, 200], checkpoints: [cks0, cks1] });
    assert.ok(fs.statSync(paths.tasklogDb).size < bytesBefore, `database ${bytesBefore} -> ${fs.statSync(paths.tasklogDb).size} bytes`);
    assert.ok((await log.verify()).ok, 'the task log verifies after the fold');

    for (const [i, w] of windows.entries()) {
      const label = `${new Date(w.since).toISOString()}..${new Date(w.until).toISOString()}`;
      const r = strip((await collect(paths, config, w, { now: T1, systemd: false })) as unknown as Record<string, unknown>);
      const b = before[i] as typeof r;
      type Bucket = { steps: number; completed: number; failed: number; retried: number; tokens_per_s: number | null };
      type Series = { bucket_s: number; buckets: Bucket[] };
      const series = (x: typeof r): Series => x.series as Series;
      // The chart's checkpoint marks: a folded bucket is one mark per kind, at its first's time (cz2 goes).
      type Marks = { checkpoints: Array<{ time: string; kind: string }> };
      const marks = (x: typeof r): Marks['checkpoints'] => (x.series as Marks).checkpoints;
      assert.deepEqual(marks(r), marks(b).filter((m) => m.time !== '2026-11-01T23:59:00Z'), `the chart's checkpoint marks, ${label}`);
      assert.ok(marks(b).length > 0 || i === 4);
      for (const x of [r, b]) x.series = { ...(x.series as object), checkpoints: null };
      if (series(b).bucket_s % 300 === 0) {
        assert.deepEqual(r, b, `the whole report but the marks, ${label}`);
        continue;
      }
      // Chart buckets finer than the fold's 5 minutes: a folded bucket's attempts (and steps, and
      // speed) land in the chart bucket of its first; every figure, and the chart's sums, stay.
      assert.ok(series(b).buckets.length > 0);
      for (const k of ['completed', 'failed', 'retried', 'steps'] as const) {
        const sum = (x: typeof r): number => series(x).buckets.reduce((acc, q) => acc + q[k], 0);
        assert.equal(sum(r), sum(b), `the chart's ${k} in all, ${label}`);
      }
      const coarse = (x: typeof r): typeof r => ({ ...x, series: { ...series(x), buckets: series(x).buckets.map((q) => ({ ...q, completed: null, failed: null, retried: null, steps: null, tokens_per_s: null })) } });
      assert.deepEqual(coarse(r), coarse(b), `the report but the chart's tasks, steps and speed, ${label}`);
    }
    const truth = truthFor(facts, windows[1] as { since: number; until: number });
    const day1 = await collect(paths, config, windows[1] as { since: number; until: number }, { now: T1, systemd: false });
    assert.deepEqual(
      [day1.tasks.completed, day1.tasks.failed, day1.checkpoints.created, day1.checkpoints.kept, day1.checkpoints.last?.id],
      [truth.tasks.completed, truth.tasks.failed, truth.checkpoints.created, truth.checkpoints.kept, 'cz2'],
      'the folded day is the truth',
    );

    // Again: nothing to fold, nothing written.
    const bytes = fs.statSync(paths.tasklogDb).size;
    const again = await log.compact({ retention, now: T1, gone });
    assert.deepEqual(again.tasks, { tasks: [200, 200], checkpoints: [cks1, cks1] });
    assert.equal(fs.statSync(paths.tasklogDb).size, bytes);
  } finally {
    t.cleanup();
  }
});
