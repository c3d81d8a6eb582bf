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
