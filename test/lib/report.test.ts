import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collect } from '../../lib/report/collect.js';
import { RUN_SCHEMA, type RunConfig } from '../../lib/config/index.js';
import { defaultsOf } from '../../lib/config/spec.js';
import { runPaths } from '../../lib/run.js';
import { windowOf } from '../../lib/report/window.js';
import { checkLine, perfdata } from '../../lib/report/check.js';
import { subject } from '../../lib/report/mail.js';
import type { Alert } from '../../lib/report/types.js';
import { SwError } from '../../lib/exit.js';
import { makeEnv, sw } from '../helpers.js';
import { DAY, T0, T1, truthFor, writeWeekLog } from '../fixtures/weeklog.js';

const config = defaultsOf(RUN_SCHEMA) as RunConfig;

test('a seven-day task log: every figure matches the known truth, for the week and for windows inside it', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-week');
  try {
    const facts = await writeWeekLog(t.stateDir, 'week');
    assert.ok(facts.events > 200_000, `${facts.events} events`);
    const paths = runPaths('week', t.env);
    for (const w of [
      { since: T0, until: T1 },
      { since: T1 - DAY, until: T1 },
      { since: T0 + DAY + 6 * 3_600_000, until: T0 + 3 * DAY + 3_600_000 },
      { since: T0 - DAY, until: T0 + 3_600_000 },
    ]) {
      const r = await collect(paths, config, w, { now: T1, systemd: false });
      const truth = truthFor(facts, w);
      const label = `${new Date(w.since).toISOString()}..${new Date(w.until).toISOString()}`;
      assert.deepEqual(r.tasks, { ...truth.tasks, failure_reasons: truth.tasks.failure_reasons.slice(0, 5) }, `tasks, ${label}`);
      assert.deepEqual(r.attempts, { ...truth.attempts, failure_reasons: truth.attempts.failure_reasons.slice(0, 5) }, `attempts, ${label}`);
      assert.equal(r.iterations, truth.iterations, `iterations, ${label}`);
      const { by_quantization: _q, ...llm } = r.llm;
      assert.deepEqual(llm, truth.llm, `llm, ${label}`);
      const { disk_bytes: _d, ...ck } = r.checkpoints;
      assert.deepEqual(ck, truth.checkpoints, `checkpoints, ${label}`);
      assert.equal(r.sessions.started, truth.sessions, `sessions, ${label}`);
      assert.equal(r.restarts, truth.restarts, `restarts, ${label}`);
      assert.equal(r.recoveries.count, truth.recoveries.count, `recoveries, ${label}`);
      const d = [...truth.recoveries.durations].sort((a, b) => a - b);
      assert.deepEqual(r.recoveries.duration_ms, d.length ? { p50: d[Math.ceil(d.length / 2) - 1], max: d[d.length - 1], total: d.reduce((a, b) => a + b, 0) } : null);
      assert.deepEqual(r.governor.tier_s, truth.governor.tier_s, `tiers, ${label}`);
      assert.deepEqual(r.governor.quantization_s, truth.governor.quantization_s, `quantization, ${label}`);
      assert.equal(r.governor.changes.length, truth.governor.changes, `governor changes, ${label}`);
      const { samples, ...peaks } = truth.peaks;
      assert.equal(r.resources.samples, samples, `samples, ${label}`);
      if (samples) {
        assert.deepEqual(
          { vram_used_mb: r.resources.peaks.vram_used_mb, vram_pct: r.resources.peaks.vram_pct, ram_used_mb: r.resources.peaks.ram_used_mb, swap_used_mb: r.resources.peaks.swap_used_mb, gpu_temp: r.resources.peaks.gpu_temp, cpu_load: r.resources.peaks.cpu_load, disk_free_pct: r.resources.peaks.disk_free_pct },
          peaks,
          `peaks, ${label}`,
        );
      }
      // The chart series add up to the same totals: tasks, and the attempts retried.
      assert.equal(r.series.buckets.reduce((a, b) => a + b.completed, 0), truth.tasks.completed, `buckets completed, ${label}`);
      assert.equal(r.series.buckets.reduce((a, b) => a + b.failed, 0), truth.tasks.failed, `buckets failed, ${label}`);
      assert.equal(r.series.buckets.reduce((a, b) => a + b.retried, 0), truth.attempts.retried, `buckets retried, ${label}`);
      assert.equal(r.series.buckets.reduce((a, b) => a + b.steps, 0), truth.iterations, `buckets steps, ${label}`);
      assert.equal(r.series.checkpoints.length, truth.checkpoints.created, `checkpoint marks, ${label}`);
      assert.ok(r.series.resources.length <= 401, `${r.series.resources.length} resource points`);
      assert.equal(r.series.tiers.reduce((a, s) => a + (Date.parse(s.end) - Date.parse(s.start)), 0) / 1000, Object.values(truth.governor.tier_s).reduce((a, b) => a + b, 0), `tier stretches, ${label}`);
    }
    // The whole week, spelled out, so a wrong generator cannot hide a wrong report.
    const week = await collect(paths, config, { since: T0, until: T1 }, { now: T1, systemd: false });
    // 2,000 tasks: every 97th cancelled (21), every 50th from 7 failed twice (40), the
    // other 158 of every 10th from 7 failed once and then completed; 2,198 attempts.
    assert.deepEqual({ completed: week.tasks.completed, failed: week.tasks.failed, cancelled: week.tasks.cancelled }, { completed: 1939, failed: 40, cancelled: 21 });
    assert.deepEqual(
      { started: week.attempts.started, completed: week.attempts.completed, failed: week.attempts.failed, retried: week.attempts.retried, cancelled: week.attempts.cancelled, looping: week.attempts.looping },
      { started: 2198, completed: 1939, failed: 238, retried: 198, cancelled: 21, looping: 79 },
    );
    assert.equal(week.tasks.success_rate, 0.9798);
    assert.equal(week.tasks.per_hour, 11.54); // 1939 over the week less the minute before the first session
    assert.equal(week.summary, '2000 tasks: 1939 completed, 40 failed, 21 cancelled (2198 attempts, 198 retried)');
    assert.deepEqual(
      { tasks: [week.totals.tasks_completed, week.totals.tasks_failed, week.totals.tasks_cancelled], attempts: [week.totals.attempts_completed, week.totals.attempts_failed, week.totals.attempts_cancelled] },
      { tasks: [1939, 40, 21], attempts: [1939, 238, 21] },
    );
    // A window that starts a day before the run: the charts start at its first record
    // (a resource sample at T0), cut into 2-minute buckets, and no rate is extrapolated
    // from its 59 minutes since the first session.
    const early = await collect(paths, config, { since: T0 - DAY, until: T0 + 3_600_000 }, { now: T1, systemd: false });
    assert.equal(early.since, new Date(T0 - DAY).toISOString().replace('.000Z', 'Z'));
    assert.equal(early.series.start, new Date(T0).toISOString().replace('.000Z', 'Z'));
    assert.equal(early.series.bucket_s, 120);
    assert.equal(early.series.buckets.length, 30);
    assert.equal(early.series.buckets[0]?.start, early.series.start);
    assert.deepEqual({ span_s: early.tasks.span_s, per_hour: early.tasks.per_hour }, { span_s: 3540, per_hour: null });
    // A week's charts: hourly buckets over the whole window.
    assert.equal(week.series.start, new Date(T0).toISOString().replace('.000Z', 'Z'));
    assert.equal(week.series.bucket_s, 3600);
    assert.equal(week.series.buckets.length, 168);
    assert.equal(week.checkpoints.created, 671);
    assert.equal(week.checkpoints.pruned, 95);
    assert.equal(week.sessions.started, 5);
    assert.equal(week.restarts, 3);
    assert.equal(week.sessions.unclean_ends, 2);
    assert.equal(week.sessions.clean_ends, 2);
    assert.deepEqual(week.governor.tier_s, { normal: 590_370, warning: 9000, critical: 5400 });
    assert.deepEqual(week.recoveries.by_reason, { crash: 1, hang: 1 });
    assert.equal(week.recoveries.restored, 1);
    assert.equal(week.resources.samples, 120_000);
    // A mail of several runs: its subject ranks them as the check does, CRITICAL worst.
    const alert = (status: Alert['status'], message: string): Alert => ({ ...(week.alerts[0] as Alert), status, message });
    const crit = { ...week, run: 'a', verdict: 'CRITICAL' as const, alerts: [alert('CRITICAL', 'success rate 20% over 1h')] };
    const unknown = { ...week, run: 'b', verdict: 'UNKNOWN' as const, alerts: [alert('UNKNOWN', 'cannot read the disk')] };
    const ok = { ...week, run: 'c', verdict: 'OK' as const, alerts: [alert('OK', 'fine')] };
    assert.equal(subject([ok, unknown, crit]), `[selfware ${os.hostname()}] CRITICAL: 3 runs; a CRITICAL: success rate 20% over 1h; b UNKNOWN: cannot read the disk`);
    assert.equal(subject([ok, unknown]), `[selfware ${os.hostname()}] UNKNOWN: 2 runs; b UNKNOWN: cannot read the disk`);
    assert.match(subject([crit]), /^\[selfware a\] CRITICAL: success rate 20% over 1h; 2000 tasks: 1939 completed, 40 failed, 21 cancelled \(2198 attempts, 198 retried\)$/);
  } finally {
    t.cleanup();
  }
});

test('the window: durations back from --until, ISO times, and bad values named', () => {
  const now = Date.parse('2026-11-21T12:00:00Z');
  assert.deepEqual(windowOf({ since: '24h' }, now), { since: now - DAY, until: now });
  assert.deepEqual(windowOf({ since: '7d', until: '2026-11-20T00:00:00Z' }, now), { since: Date.parse('2026-11-13T00:00:00Z'), until: Date.parse('2026-11-20T00:00:00Z') });
  assert.deepEqual(windowOf({ since: '2026-11-21T08:00:00Z', until: '30m' }, now), { since: Date.parse('2026-11-21T08:00:00Z'), until: now - 1_800_000 });
  for (const [o, re] of [
    [{ since: 'yesterday' }, /^invalid --since 'yesterday': expected a duration such as 30m, 24h or 7d, or an ISO 8601 time/],
    [{ since: '24h', until: '2026-13-01' }, /^invalid --until '2026-13-01'/],
    [{ since: '2026-11-22T00:00:00Z' }, /^--since 2026-11-22T00:00:00Z \(2026-11-22T00:00:00Z\) is not before --until now/],
    [{ since: '2026-02-31T00:00:00Z' }, /^invalid --since '2026-02-31T00:00:00Z'/],
    [{ since: '999999999d' }, /^invalid --since '999999999d': it reaches back before 1970$/],
    [{ since: '24h', until: '99999d' }, /^invalid --until '99999d': it reaches back before 1970$/],
  ] as const) {
    assert.throws(
      () => windowOf(o, now),
      (e: unknown) => e instanceof SwError && e.code === 64 && re.test(e.message),
    );
  }
});

test('perfdata and the check line follow the Monitoring Plugins format', () => {
  const a = { name: 'success_rate', status: 'CRITICAL' as const, message: 'success rate 20% over 1h (1 of 5)', value: 0.2, warning: 0.5, critical: 0.25, worse: 'below' as const, uom: '', label: 'success', min: 0, max: 1 };
  assert.equal(perfdata(a), 'success=0.2;0.5:;0.25:;0;1');
  assert.equal(perfdata({ ...a, value: null }), 'success=U;0.5:;0.25:;0;1');
  const b = { ...a, name: 'checkpoint_age', status: 'OK' as const, message: 'last checkpoint 4m ago', value: 240, warning: 900, critical: 3600, worse: 'above' as const, uom: 's', label: 'checkpoint_age', max: null };
  assert.equal(perfdata(b), 'checkpoint_age=240s;900;3600;0');
  const report = { run: 'run1', verdict: 'CRITICAL', summary: '5 tasks, 20% success', alerts: [b, a] } as unknown as Parameters<typeof checkLine>[0][number];
  assert.deepEqual(checkLine([report]), { status: 'CRITICAL', line: 'SELFWARE CRITICAL - success rate 20% over 1h (1 of 5) | checkpoint_age=240s;900;3600;0 success=0.2;0.5:;0.25:;0;1' });
});

test('sw-report on the week log through the command: JSON as collected, text, and --since bad input exits 64 changing nothing', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-cmd');
  try {
    const facts = await writeWeekLog(t.stateDir, 'week', { tasks: 200, samples: 5000 });
    const since = new Date(T0).toISOString();
    const until = new Date(T1).toISOString();
    const r = await sw('sw-report', ['week', '--since', since, '--until', until, '--json'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const doc = JSON.parse(String(r.stdout)) as { run: string; since: string; until: string; tasks: Record<string, unknown>; attempts: Record<string, unknown>; llm: Record<string, unknown>; checkpoints: Record<string, unknown>; restarts: number; recoveries: Record<string, unknown>; alerts: unknown[] };
    const truth = truthFor(facts, { since: T0, until: T1 });
    assert.equal(doc.run, 'week');
    assert.equal(doc.since, since.replace('.000Z', 'Z'));
    assert.deepEqual(doc.tasks, { ...truth.tasks, failure_reasons: truth.tasks.failure_reasons.slice(0, 5) });
    assert.deepEqual(doc.attempts, { ...truth.attempts, failure_reasons: truth.attempts.failure_reasons.slice(0, 5) });
    assert.equal(doc.llm.calls, truth.llm.calls);
    assert.equal(doc.checkpoints.created, truth.checkpoints.created);
    assert.equal(doc.restarts, truth.restarts);
    assert.equal(doc.alerts.length, 11);
    const text = await sw('sw-report', ['week', '--since', since, '--until', until], t);
    assert.equal(text.exitCode, 0, String(text.stderr));
    assert.match(String(text.stdout), new RegExp(`^selfware week on .*, 2026-11-01 00:00 UTC to 2026-11-08 00:00 UTC \\(7d\\)\\n`));
    assert.match(String(text.stdout), new RegExp(`\\n  completed:\\s+${truth.tasks.completed} \\(`));
    // Markdown, for chat tools: the same sections, escaped, lists nested under their key.
    const md = await sw('sw-report', ['week', '--since', since, '--until', until, '--format', 'markdown'], t);
    assert.equal(md.exitCode, 0, String(md.stderr));
    const mdOut = String(md.stdout);
    assert.match(mdOut, /^## selfware week: (OK|WARNING|CRITICAL|UNKNOWN)\n\n/);
    assert.match(mdOut, new RegExp(`\\n\\*\\*Tasks\\*\\*\\n\\n- completed: ${truth.tasks.completed} \\(`));
    assert.match(mdOut, /\n- changes:\n(  - 2026-11-\d\d \d\d:\d\d UTC (normal|warning|critical), Q\d\\_K\\_[A-Z]\b.*\n)+/, 'governor changes: a nested list, _ escaped');
    assert.doesNotMatch(mdOut, /[^\\]_K_/, 'no unescaped _');
    for (const [args, re] of [
      [['week', '--since', 'last week'], /sw-report: invalid --since 'last week': expected a duration/],
      [['week', '--format', 'pdf'], /sw-report: option '--format <format>' argument 'pdf' is invalid\. expected one of text, markdown, json, html, prometheus, got 'pdf'/],
      [['../week'], /sw-report: invalid run name '\.\.\/week'/],
      [['week', '--all'], /sw-report: give a run name or --all, not both/],
      [[], /sw-report: missing run name \(or --all for every run\)/],
      [['--mail', 'week'], /sw-report: invalid --mail address 'week': expected a mail address such as ops@example.com \(the run name goes before --mail\)/],
    ] as Array<[string[], RegExp]>) {
      const bad = await sw('sw-report', args, t);
      assert.equal(bad.exitCode, 64, `${args.join(' ')}: ${bad.stderr}`);
      assert.match(String(bad.stderr), re);
      assert.equal(String(bad.stderr).trim().split('\n').length <= 2, true, String(bad.stderr));
    }
    // A corrupt record: skipped, and the warning names the journal's file and line.
    const journal = path.join(t.stateDir, 'week', 'tasklog.journal');
    const lines = fs.readFileSync(journal, 'utf8').split('\n').length - 1;
    fs.appendFileSync(journal, '0badc0de {"t":"task_outcome"}\n');
    const warned = await sw('sw-report', ['week', '--since', since, '--until', until, '--json'], t);
    assert.equal(warned.exitCode, 0, String(warned.stderr));
    assert.match(String(warned.stderr), new RegExp(`^sw-report: warning: week: .*tasklog\\.journal:${lines + 1}: record at position \\d+: CRC mismatch; skipped$`, 'm'));
    const none = await sw('sw-report', ['nosuch'], t);
    assert.equal(none.exitCode, 66);
    assert.match(String(none.stderr), /^sw-report: no such run 'nosuch' \(neither .*nosuch\.yaml nor .*nosuch exists; sw-agent init nosuch creates it\)$/);
  } finally {
    t.cleanup();
  }
});
