import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyPolicy, isoWeek } from '../../lib/state/retention.js';
import { makeEnv, rng } from '../helpers.js';
import { makeRepo, resticAvailable, resticKeeps, setSnapshots } from '../fixtures/restic.js';

/** RFC 3339 in the process's local zone, with its offset, as restic writes times. */
function localRfc3339(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const pad = (n: number, w = 2) => String(Math.abs(n)).padStart(w, '0');
  const sign = off >= 0 ? '+' : '-';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

test('isoWeek follows ISO 8601 at year boundaries', () => {
  assert.deepEqual(isoWeek(new Date(2026, 0, 1)), { year: 2026, week: 1 });
  assert.deepEqual(isoWeek(new Date(2027, 0, 1)), { year: 2026, week: 53 });
  assert.deepEqual(isoWeek(new Date(2024, 11, 30)), { year: 2025, week: 1 });
  assert.deepEqual(isoWeek(new Date(2021, 0, 3)), { year: 2020, week: 53 });
});

test('policy basics: empty keeps all, keep-last counts, buckets keep the newest of each', () => {
  const h = 3_600_000;
  const base = new Date(2026, 5, 1, 10, 0, 0).getTime();
  const list = [0, 0.25, 0.5, 1, 1.5, 26, 27].map((x, i) => ({ id: `c${i}`, time: base + x * h }));
  const none = applyPolicy(list, { keep_last: 0, keep_hourly: 0, keep_daily: 0, keep_weekly: 0 });
  assert.equal(none.keep.length, 7);
  const last = applyPolicy(list, { keep_last: 2, keep_hourly: 0, keep_daily: 0, keep_weekly: 0 });
  assert.deepEqual(last.keep.map((c) => c.id), ['c6', 'c5']);
  const hourly = applyPolicy(list, { keep_last: 0, keep_hourly: 3, keep_daily: 0, keep_weekly: 0 });
  assert.deepEqual(hourly.keep.map((c) => c.id), ['c6', 'c5', 'c4']);
  const daily = applyPolicy(list, { keep_last: 0, keep_hourly: 0, keep_daily: 5, keep_weekly: 0 });
  assert.deepEqual(daily.keep.map((c) => c.id), ['c6', 'c4'], 'one per day, the newest of each, no oldest-extra (restic 0.14)');
  assert.deepEqual(daily.reasons.get('c6'), ['daily']);
});

test("retention matches restic's own forget on a few hundred irregular times", { timeout: 60_000 }, async (t) => {
  if (!(await resticAvailable())) {
    assert.fail('restic is not installed (make deps installs it from Debian)');
  }
  const savedTz = process.env.TZ;
  // A zone with a DST change inside the range, so local buckets are exercised.
  process.env.TZ = 'Europe/Berlin';
  const env = makeEnv('restic');
  try {
    const rand = rng(2026);
    const times: number[] = [];
    let ms = new Date(2026, 9, 1, 0, 17, 0).getTime();
    for (let i = 0; i < 320; i++) {
      const r = rand();
      ms += Math.round((r < 0.6 ? 60 + rand() * 3000 : r < 0.9 ? 3600 + rand() * 20000 : 86_400 + rand() * 200_000) * 1000);
      ms -= ms % 1000;
      times.push(ms);
    }
    const repo = await makeRepo(env.dir);
    const ids = setSnapshots(repo, times.map(localRfc3339));
    assert.equal(ids.size, times.length);
    const list = times.map((time, i) => ({ id: `c${i}`, time }));
    const policies = [
      { last: 5, hourly: 0, daily: 0, weekly: 0 },
      { last: 0, hourly: 30, daily: 0, weekly: 0 },
      { last: 0, hourly: 0, daily: 9, weekly: 0 },
      { last: 0, hourly: 0, daily: 0, weekly: 3 },
      { last: 3, hourly: 24, daily: 7, weekly: 4 },
      { last: 0, hourly: 0, daily: 500, weekly: 0 },
      { last: 1, hourly: 2, daily: 0, weekly: 10 },
    ];
    for (const p of policies) {
      await t.test(`keep ${JSON.stringify(p)}`, async () => {
        const expected = (await resticKeeps(repo, p)).map((s) => Date.parse(s)).sort((a, b) => b - a);
        const ours = applyPolicy(list, { keep_last: p.last, keep_hourly: p.hourly, keep_daily: p.daily, keep_weekly: p.weekly });
        const got = ours.keep.map((c) => c.time);
        assert.ok(expected.length > 0 && expected.length < times.length || p.daily === 500, 'the policy removes some');
        assert.deepEqual(got, expected);
      });
    }
  } finally {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
    env.cleanup();
  }
});
