// sw-report through the real commands: a run the scripted agent worked
// (known outcomes, a SIGKILL and a recovery), --check at each threshold,
// Prometheus output through promtool, --all, --output, and the mail's
// failure modes (the real MTA delivery is in test/systemd/units.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, ROOT, makeEnv, sw, writeConfig, type TestEnv } from '../helpers.js';
import { addTask, query, scriptedRun, startAgent, tasks, transcript, waitFor } from '../fixtures/agent.js';
import { createRun, events } from '../fixtures/runs.js';
import type { TaskEvent } from '../../lib/tasklog/index.js';
import type { Report } from '../../lib/report/types.js';

const iso = (ms: number): string => new Date(ms).toISOString();

async function reportJson(t: TestEnv, args: string[]): Promise<Report> {
  const r = await sw('sw-report', [...args, '--json'], t);
  assert.equal(r.exitCode, 0, String(r.stderr));
  return JSON.parse(String(r.stdout)) as Report;
}

test('a run worked by the scripted agent: the report counts exactly what happened', { timeout: 120_000 }, async () => {
  const t = makeEnv('report-real');
  try {
    scriptedRun(t, {
      good: [
        { action: 'write_file', path: 'good.txt', content: 'good\n' },
        { action: 'finish', summary: 'good' },
      ],
      bad: [
        { action: 'shell', command: 'exit 3' },
        { action: 'finish', summary: 'claims done' },
      ],
      slow: [
        { action: 'shell', command: 'echo one >> slow.txt' },
        { action: 'shell', command: 'echo two >> slow.txt', delay_ms: 3000 },
        { action: 'finish', summary: 'slow' },
      ],
    });
    const started = Date.now();
    for (let i = 0; i < 3; i++) await addTask(t, 'good');
    await addTask(t, 'bad', ['--verify', 'false', '--max-attempts', '2']);
    const a = startAgent(t);
    await waitFor('four tasks done', async () => (await tasks(t)).filter((x) => x.status === 'completed' || x.status === 'failed').length === 4, 60_000, a);
    // A task in the middle of its second step when the agent is SIGKILLed; recovered; finished by the next session.
    const slow = await addTask(t, 'slow');
    await waitFor('slow at step 2', () => transcript(t, slow).some((l) => l.type === 'step' && l.step === 1), 20_000, a);
    await a.stop('SIGKILL');
    const rec = await sw('sw-recover', ['run1', '--json'], t);
    assert.equal(rec.exitCode, 0, String(rec.stderr));
    const b = startAgent(t);
    await waitFor('slow completed', async () => (await tasks(t)).find((x) => x.id === slow)?.status === 'completed', 30_000, b);
    assert.equal(await b.stop(), 0);

    const r = await reportJson(t, ['run1', '--since', iso(started - 60_000)]);
    assert.equal(r.run, 'run1');
    // Five tasks: four completed, the bad one failed for good after its two attempts.
    assert.ok(r.tasks.span_s > 0 && r.tasks.span_s < 3600, String(r.tasks.span_s));
    assert.deepEqual(r.tasks, {
      completed: 4,
      failed: 1,
      cancelled: 0,
      success_rate: 0.8,
      span_s: r.tasks.span_s,
      per_hour: null, // the run is minutes old: no rate an hour is made up from them
      failure_reasons: [{ reason: 'verify failed: exit status 1', count: 1 }],
    });
    assert.deepEqual(r.attempts, {
      started: 3 + 2 + 1, // the slow task's attempt 1 was started once and resumed
      completed: 4,
      failed: 2,
      retried: 1,
      cancelled: 0,
      looping: 0,
      failure_reasons: [{ reason: 'verify failed: exit status 1', count: 2 }],
    });
    // Steps: 3 good x 2, bad 2 x 2, slow 1 + (resumed) 2.
    const steps = (await query(t, 'SELECT count(*) FROM task_steps'))[0]?.[0];
    assert.equal(steps, 6 + 4 + 3);
    assert.equal(r.iterations, 13);
    assert.equal(r.llm.calls, 13);
    assert.equal(r.llm.errors, 0);
    // The scripted backend has no model: no speed, no latency.
    assert.deepEqual(r.llm.backends, { scripted: 13 });
    assert.equal(r.llm.tokens_per_s, null);
    assert.equal(r.llm.latency_ms, null);
    const [[tin, tout]] = (await query(t, 'SELECT sum(tokens_in), sum(tokens_out) FROM llm_calls')) as [[number, number]];
    assert.equal(r.llm.tokens_in, tin);
    assert.equal(r.llm.tokens_out, tout);
    assert.deepEqual(r.sessions, { started: 2, clean_ends: 1, unclean_ends: 1 });
    assert.equal(r.restarts, 1);
    assert.equal(r.recoveries.count, 1);
    const recovered = JSON.parse(String(rec.stdout)) as { reason: string; duration_ms: number };
    assert.equal(r.recoveries.list[0]?.reason, recovered.reason);
    assert.equal(r.recoveries.list[0]?.duration_ms, recovered.duration_ms);
    const list = (JSON.parse(String((await sw('sw-checkpoint', ['list', 'run1', '--json'], t)).stdout)) as { checkpoints: Array<{ kind: string }> }).checkpoints;
    assert.equal(r.checkpoints.created, list.length);
    assert.equal(r.checkpoints.kept, list.length);
    assert.deepEqual(
      r.checkpoints.by_kind,
      list.reduce<Record<string, number>>((acc, c) => ({ ...acc, [c.kind]: (acc[c.kind] ?? 0) + 1 }), {}),
    );
    assert.ok((r.checkpoints.by_kind.shutdown ?? 0) >= 1 && r.checkpoints.by_kind.recovery === 1, JSON.stringify(r.checkpoints.by_kind));
    assert.ok(r.checkpoints.disk_bytes > 0);
    assert.deepEqual(r.queue, { pending: 0, in_progress: 0, completed: 4, failed: 1, cancelled: 0, invalid: 0, invalid_files: [], rejected: 0, rejected_files: [] });
    assert.equal(r.agent.running, false);
    // Two of the 13 steps failed (the bad task's `exit 3`): 15% is above the 10% warning.
    assert.equal(r.verdict, 'WARNING');
    assert.deepEqual(
      r.alerts.filter((x) => x.status !== 'OK').map((x) => x.message),
      ['error rate 15.4% over 1h (2 of 13 steps)'],
    );
    assert.equal(r.summary, '5 tasks: 4 completed, 1 failed (6 attempts, 1 retried)');
  } finally {
    t.cleanup();
  }
});

test("the demo's run: 3 tasks queued, one failing its check twice, under a minute on the scripted backend: 3 tasks, 4 attempts, no rate an hour, no model speed", { timeout: 60_000 }, async () => {
  const t = makeEnv('report-demo');
  try {
    scriptedRun(t, {
      greet: [
        { action: 'write_file', path: 'hello.txt', content: 'hello\n' },
        { action: 'finish', summary: 'greeted' },
      ],
      nope: [{ action: 'finish', summary: 'claims done' }],
      list: [
        { action: 'shell', command: 'ls' },
        { action: 'finish', summary: 'listed' },
      ],
    });
    // The disk alert judges this machine's disk: thresholds it cannot reach, so only the run is judged.
    fs.writeFileSync(path.join(t.configDir, 'governor.yaml'), 'disk:\n  warning: 0.2\n  critical: 0.1\n');
    const queued = Date.now();
    await addTask(t, 'greet', ['--verify', 'true']);
    await addTask(t, 'nope', ['--verify', 'false', '--max-attempts', '2']);
    await addTask(t, 'list');
    const a = startAgent(t);
    try {
      await waitFor('three tasks ended', async () => (await tasks(t)).filter((x) => x.status === 'completed' || x.status === 'failed').length === 3, 40_000, a);
    } finally {
      assert.equal(await a.stop(), 0, a.output());
    }
    assert.ok(Date.now() - queued < 60_000, 'the run took under a minute');

    const r = await reportJson(t, ['run1']);
    assert.deepEqual({ ...r.tasks, span_s: 0 }, { completed: 2, failed: 1, cancelled: 0, success_rate: 0.6667, span_s: 0, per_hour: null, failure_reasons: [{ reason: 'verify failed: exit status 1', count: 1 }] });
    assert.deepEqual(r.attempts, { started: 4, completed: 2, failed: 2, retried: 1, cancelled: 0, looping: 0, failure_reasons: [{ reason: 'verify failed: exit status 1', count: 2 }] });
    assert.equal(r.summary, '3 tasks: 2 completed, 1 failed (4 attempts, 1 retried)');
    // No model speed: none recorded by the agent, none in the report or its charts.
    assert.deepEqual(await query(t, 'SELECT count(*), count(tokens_per_s) FROM llm_calls'), [[6, 0]]);
    assert.deepEqual({ tps: r.llm.tokens_per_s, latency: r.llm.latency_ms, by: r.llm.by_quantization.map((q) => q.tokens_per_s) }, { tps: null, latency: null, by: [null] });
    assert.ok(r.series.buckets.every((b) => b.tokens_per_s === null));
    // The charts span the run's own seconds, from its first record (the first task queued), in round buckets.
    const first = (await query(t, 'SELECT min(added_at) FROM tasks'))[0]?.[0] as number;
    assert.equal(Date.parse(r.series.start), first);
    const span = Date.parse(r.until) - first;
    assert.ok(r.series.bucket_s >= 1 && r.series.bucket_s <= 5 && r.series.buckets.length === Math.ceil(span / (r.series.bucket_s * 1000)), `${r.series.bucket_s} s x ${r.series.buckets.length} for ${span} ms`);
    assert.deepEqual(
      ['completed', 'failed', 'retried'].map((k) => r.series.buckets.reduce((acc, b) => acc + (b[k as 'completed'] as number), 0)),
      [2, 1, 1],
    );

    const text = await sw('sw-report', ['run1'], t);
    assert.equal(text.exitCode, 0, String(text.stderr));
    const out = String(text.stdout);
    assert.match(out, /^OK: 3 tasks: 2 completed, 1 failed \(4 attempts, 1 retried\)$/m);
    assert.match(out, /^ {2}completed: +2 \(in \d+s\)$/m);
    assert.match(out, /^ {2}failed: +1; success rate 66\.7%$/m);
    assert.match(out, /^ {2}attempts: +4 ended: 2 completed, 2 failed \(1 retried\); 4 started$/m);
    assert.match(out, /^ {2}speed: +- \(scripted backend\)$/m);
    assert.match(out, /^ {2}latency: +- \(scripted backend\)$/m);
    assert.doesNotMatch(out, /an hour|tokens\/s/);
    // An OK alert is not an alert: the section says all is well in one line.
    assert.match(out, /\nAlerts\n {2}none: all 11 checks OK$/);
    assert.doesNotMatch(out, /^ {2}OK/m);
  } finally {
    t.cleanup();
  }
});

/** A run with a task log and, when pending, a task waiting in the queue. */
async function checkRun(t: TestEnv, evs: TaskEvent[], opts: { pending?: boolean } = {}): Promise<void> {
  await createRun(t);
  if (opts.pending) await addTask(t, 'waiting');
  events(t, evs);
}

async function check(t: TestEnv, until: number, extra: string[] = []): Promise<{ code: number; line: string }> {
  const r = await sw('sw-report', ['run1', '--check', '--until', iso(until), ...extra], t);
  assert.equal(String(r.stderr), '', 'nothing on stderr');
  const line = String(r.stdout);
  assert.match(line, /^SELFWARE (OK|WARNING|CRITICAL|UNKNOWN) - [^\n|]+( \| [^\n]+)?$/, line);
  return { code: r.exitCode as number, line: line.trim() };
}

test('--check: the success rate over the last hour, at and around each threshold', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-check');
  try {
    const now = Date.now();
    const U = now + 10 * 60_000;
    // A failure is a task's end at its last attempt: the run's default max_attempts (3) for tasks the log has none for.
    const outcome = (i: number, ok: boolean, ts: number, attempt = ok ? 1 : 3): TaskEvent => ({ t: 'task_outcome', task: `t${i}`, attempt, outcome: ok ? 'completed' : 'failed', reason: ok ? null : 'verify failed', ts: iso(ts) });
    // An hour before U: 9 tasks failed that must not count.
    const old = Array.from({ length: 9 }, (_, i) => outcome(100 + i, false, U - 3_600_000 - 60_000 - i));
    await checkRun(t, old);
    let c = await check(t, U);
    assert.equal(c.code, 0);
    assert.match(c.line, /^SELFWARE OK - 9 tasks: 0 completed, 9 failed in 1d \| success=U;0\.5:;0\.25:;0;1 /);
    events(t, [outcome(1, true, U - 50 * 60_000), outcome(2, false, U - 40 * 60_000)]); // 1 of 2 = 50%: not below 50%
    c = await check(t, U);
    assert.equal(c.code, 0, c.line);
    assert.match(c.line, / success=0\.5;0\.5:;0\.25:;0;1 /);
    // Attempts that failed and will be retried are no task's end: still 1 of 2.
    events(t, [outcome(6, false, U - 35 * 60_000, 1), outcome(6, false, U - 34 * 60_000, 2), outcome(7, false, U - 33 * 60_000, 1)]);
    c = await check(t, U);
    assert.equal(c.code, 0, c.line);
    // The summary is the report's day: the 9 older tasks too.
    assert.match(c.line, /^SELFWARE OK - 11 tasks: 1 completed, 10 failed \(14 attempts, 3 retried\) in 1d \| success=0\.5;0\.5:;0\.25:;0;1 /);
    events(t, [outcome(3, false, U - 30 * 60_000)]); // 1 of 3
    c = await check(t, U);
    assert.equal(c.code, 1, c.line);
    assert.match(c.line, /^SELFWARE WARNING - success rate 33\.3% over 1h \(1 of 3 tasks\) \| success=0\.3333;0\.5:;0\.25:;0;1 /);
    events(t, [outcome(4, false, U - 20 * 60_000)]); // 1 of 4 = 25%: not below 25%
    assert.equal((await check(t, U)).code, 1);
    events(t, [outcome(5, false, U - 10 * 60_000)]); // 1 of 5
    c = await check(t, U);
    assert.equal(c.code, 2, c.line);
    assert.match(c.line, /^SELFWARE CRITICAL - success rate 20% over 1h \(1 of 5 tasks\) \| success=0\.2;0\.5:;0\.25:;0;1 /);
    // A task queued with max_attempts 2 ends at its second failed attempt: 1 of 6.
    events(t, [
      { t: 'task_added', task: 't8', title: 'two tries', max_attempts: 2, ts: iso(U - 9 * 60_000) },
      outcome(8, false, U - 8 * 60_000, 1),
      outcome(8, false, U - 7 * 60_000, 2),
    ]);
    c = await check(t, U);
    assert.match(c.line, /^SELFWARE CRITICAL - success rate 16\.7% over 1h \(1 of 6 tasks\) \| /);
    // Thresholds come from the config.
    writeConfig(t, 'run1', 'report:\n  check:\n    success_rate:\n      warning: 0.3\n      critical: 0.1\n');
    assert.equal((await check(t, U)).code, 1);
    // The window moves with --until: an hour later, nothing finished.
    assert.equal((await check(t, U + 3_600_000)).code, 0);
  } finally {
    t.cleanup();
  }
});

test('--check: progress while tasks wait, and the error rate', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-check2');
  try {
    const now = Date.now();
    let n = 0;
    // Each a step of its own (the task log keys steps by task, attempt and number).
    const step = (ts: number, status = 'ok'): TaskEvent => ({ t: 'task_step', task: 'x', attempt: 1, step: ++n, action: 'shell', status, ts: iso(ts) });
    await checkRun(t, [step(now - 1000)], { pending: true });
    assert.equal((await check(t, now + 59 * 60_000)).code, 0);
    let c = await check(t, now + 61 * 60_000);
    assert.equal(c.code, 1, c.line);
    assert.match(c.line, /^SELFWARE WARNING - last progress 1h1m ago with 1 task waiting \| /);
    assert.match(c.line, / progress_age=3661s;3600;10800;0 /);
    c = await check(t, now + 3 * 3_600_000 + 60_000);
    assert.equal(c.code, 2, c.line);

    // Error rate: 20 steps in the hour before U.
    const U = now + 2 * 3_600_000;
    const steps = (bad: number): TaskEvent[] => Array.from({ length: 20 }, (_, i) => step(U - 50 * 60_000 + i * 1000, i < bad ? (i % 2 ? 'invalid' : 'failed') : 'ok'));
    events(t, steps(2)); // 10%: not above
    c = await check(t, U);
    assert.equal(c.code, 0, c.line);
    assert.match(c.line, / errors=0\.1;0\.1;0\.25;0;1 /);
    events(t, [step(U - 1000, 'llm_error')]); // 3 of 21
    c = await check(t, U);
    assert.equal(c.code, 1, c.line);
    assert.match(c.line, /error rate 14\.3% over 1h \(3 of 21 steps\)/);
    events(t, Array.from({ length: 4 }, (_, i) => step(U - 2000 - i, 'failed'))); // 7 of 25
    c = await check(t, U);
    assert.equal(c.code, 2, c.line);
    assert.match(c.line, /^SELFWARE CRITICAL - error rate 28% over 1h \(7 of 25 steps\)/);
  } finally {
    t.cleanup();
  }
});

test('--check: an escalation that no start has followed is CRITICAL; a session started after it (a human\'s restart) clears it', { timeout: 60_000 }, async () => {
  const t2 = makeEnv('report-esc');
  try {
    const now = Date.now();
    const step = (ts: number): TaskEvent => ({ t: 'task_step', task: 'x', attempt: 1, step: 1, action: 'shell', status: 'ok', ts: iso(ts) });
    await checkRun(t2, [{ t: 'escalation', reason: '5 crashes in 1h', failures: 5, ts: iso(now - 300_000) }]);
    const c = await check(t2, now);
    assert.equal(c.code, 2, c.line);
    assert.match(c.line, /^SELFWARE CRITICAL - escalated 5m ago \(.*\): systemd stopped restarting the run \| .* escalations=1;;0;0 /);
    events(t2, [step(now - 1000)]);
    assert.equal((await check(t2, now)).code, 2, 'a step is no restart');
    events(t2, [{ t: 'session_start', session: 's2', pid: 1, ts: iso(now - 500) }]);
    const after = await check(t2, now);
    assert.equal(after.code, 0, after.line);
  } finally {
    t2.cleanup();
  }
});

test('--check: failed checkpoints by the task log at any --until, and disk free by the governor thresholds', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-check3');
  try {
    scriptedRun(t, {});
    const a = startAgent(t);
    try {
      await waitFor('the agent ready', () => /agent ready/.test(a.output()), 20_000, a);
      const C = Date.now();
      events(t, [{ t: 'checkpoint', id: 'ffff0001', kind: 'routine', time: iso(C), ts: iso(C) }]);
      // A window that does not end now is judged on what the log says: an old checkpoint alone is no alarm.
      let c = await check(t, C + 61 * 60_000);
      assert.equal(c.code, 0, c.line);
      assert.match(c.line, /unprotected_age=U;900;3600;0/);
      // The newest attempts failed: CRITICAL, naming why, whatever the age.
      events(t, [
        { t: 'checkpoint_failed', kind: 'routine', reason: 'git add: insufficient permission for adding an object', code: 1, ts: iso(C + 5 * 60_000) },
        { t: 'checkpoint_failed', kind: 'task', reason: 'git add: insufficient permission for adding an object', code: 1, ts: iso(C + 10 * 60_000) },
      ]);
      c = await check(t, C + 11 * 60_000);
      assert.equal(c.code, 2, c.line);
      assert.match(c.line, /^SELFWARE CRITICAL - checkpoints failing since 6m ago \(2 attempts, the last task\): git add: insufficient permission for adding an object \| /);
      // Before the failures, all was well; after one that worked, all is well again.
      assert.equal((await check(t, C + 4 * 60_000)).code, 0);
      events(t, [{ t: 'checkpoint', id: 'ffff0002', kind: 'routine', time: iso(C + 15 * 60_000), ts: iso(C + 15 * 60_000) }]);
      assert.equal((await check(t, C + 16 * 60_000)).code, 0);
      // A routine attempt that found nothing changed after failures protects the run again too.
      events(t, [
        { t: 'checkpoint_failed', kind: 'routine', reason: "run 'run1' is locked by sw-recover (pid 7); try again later", code: 75, ts: iso(C + 20 * 60_000) },
        { t: 'checkpoint_skipped', kind: 'routine', latest: 'ffff0002', after_failures: 1, ts: iso(C + 25 * 60_000) },
      ]);
      assert.equal((await check(t, C + 21 * 60_000)).code, 2);
      assert.equal((await check(t, C + 26 * 60_000)).code, 0);
    } finally {
      await a.stop();
    }

    // Disk: thresholds around the free space the test directory really has.
    const st = fs.statfsSync(t.stateDir);
    const free = Math.round((st.bavail / st.blocks) * 1000) / 10;
    fs.writeFileSync(path.join(t.configDir, 'governor.yaml'), `disk:\n  warning: ${Math.min(100, free + 5)}\n  critical: ${Math.max(0, free - 5)}\n`);
    let c = await check(t, Date.now());
    assert.equal(c.code, 1, c.line);
    assert.match(c.line, new RegExp(`WARNING - [\\d.]+% disk free \\| .*disk_free=[\\d.]+%;${Math.min(100, free + 5)}:;${Math.max(0, free - 5)}:;0;100`));
    fs.writeFileSync(path.join(t.configDir, 'governor.yaml'), `disk:\n  warning: ${Math.min(100, free + 10)}\n  critical: ${Math.min(99, free + 5)}\n`);
    c = await check(t, Date.now());
    assert.equal(c.code, 2, c.line);
  } finally {
    t.cleanup();
  }
});

test('--check: UNKNOWN (3) with one line for a missing run, a broken config, no runs at all', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-unknown');
  try {
    let r = await sw('sw-report', ['nosuch', '--check'], t);
    assert.equal(r.exitCode, 3);
    assert.match(String(r.stdout), /^SELFWARE UNKNOWN - no such run 'nosuch' \(neither .*nosuch\.yaml nor .*nosuch exists; sw-agent init nosuch creates it\) \(exit 66\)$/);
    // Usage mistakes too, under --check.
    r = await sw('sw-report', ['../x', '--check'], t);
    assert.equal(r.exitCode, 3);
    assert.match(String(r.stdout), /^SELFWARE UNKNOWN - invalid run name '\.\.\/x': .* \(exit 64\)$/);
    r = await sw('sw-report', ['x', '--check', '--json'], t);
    assert.equal(r.exitCode, 3);
    assert.match(String(r.stdout), /^SELFWARE UNKNOWN - --check prints one line: it does not take --mail, --format, --json or --output \(exit 64\)$/);
    // Even what commander finds (an unknown option, a missing value, two runs): UNKNOWN, one line on stdout.
    for (const [args, re] of [
      [['x', '--check', '--bogus'], /^SELFWARE UNKNOWN - unknown option '--bogus' \(exit 64\)$/],
      [['x', '--check', '--since'], /^SELFWARE UNKNOWN - option '--since <when>' argument missing \(exit 64\)$/],
      [['x', 'y', '--check'], /^SELFWARE UNKNOWN - too many arguments\. Expected 1 argument but got 2\. \(exit 64\)$/],
    ] as Array<[string[], RegExp]>) {
      r = await sw('sw-report', args, t);
      assert.equal(r.exitCode, 3, args.join(' '));
      assert.match(String(r.stdout), re);
      assert.equal(String(r.stderr), '', 'nothing on stderr');
    }
    // A | would start the performance data: it is shown as ¦.
    r = await sw('sw-report', ['a|b', '--check'], t);
    assert.equal(r.exitCode, 3);
    assert.match(String(r.stdout), /^SELFWARE UNKNOWN - invalid run name 'a¦b': [^|]*\(exit 64\)$/);
    // Without --check, the usual usage error.
    r = await sw('sw-report', ['x', '--bogus'], t);
    assert.equal(r.exitCode, 64);
    assert.match(String(r.stderr), /^sw-report: unknown option '--bogus'$/m);
    r = await sw('sw-report', ['--all', '--check'], t);
    assert.equal(r.exitCode, 3);
    assert.match(String(r.stdout), /^SELFWARE UNKNOWN - no runs under .*\(exit 66\)$/);
    await createRun(t);
    writeConfig(t, 'run1', 'report:\n  check:\n    success_rate:\n      warning: 2\n');
    // A config mistake is no reason to say nothing: CRITICAL, naming file, line and value (the agent will not start).
    r = await sw('sw-report', ['run1', '--check'], t);
    assert.equal(r.exitCode, 2, String(r.stdout));
    assert.match(String(r.stdout), /^SELFWARE CRITICAL - config .*run1\.yaml:4:16: report\.check\.success_rate\.warning: expected a number from 0 to 1, got 2: the agent will not start until it is fixed \| /);
    assert.equal(String(r.stderr), '', 'nothing on stderr under --check');
    // Without --check, the report is written, CRITICAL, with one warning line.
    r = await sw('sw-report', ['run1', '-o', path.join(t.dir, 'out.txt')], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.match(String(r.stderr), /^sw-report: warning: .*run1\.yaml:4:16: report\.check\.success_rate\.warning: expected a number from 0 to 1, got 2; going on/);
    assert.match(fs.readFileSync(path.join(t.dir, 'out.txt'), 'utf8'), /CRITICAL/);
  } finally {
    t.cleanup();
  }
});

test('--format prometheus passes promtool check metrics; --all gives each family once; --output replaces the file atomically', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-prom');
  try {
    for (const run of ['alpha', 'beta']) {
      await createRun(t, run);
      events(
        t,
        [
          { t: 'task_added', task: 'b', title: 'b', max_attempts: 2, ts: iso(Date.now() - 5000) },
          { t: 'task_outcome', task: 'b', attempt: 1, outcome: 'failed', reason: 'verify failed', ts: iso(Date.now() - 4000) },
          { t: 'task_outcome', task: 'a', attempt: 1, outcome: 'completed', ts: iso(Date.now() - 1000) },
          { t: 'llm_call', task: 'a', tokens_in: 10, tokens_out: 5, latency_ms: 100, tokens_per_s: 50, ts: iso(Date.now() - 2000) },
        ],
        run,
      );
    }
    // A stray directory holding a journal is not a run, and does not spoil --all.
    fs.mkdirSync(path.join(t.stateDir, 'x y'));
    fs.copyFileSync(path.join(t.stateDir, 'alpha', 'tasklog.journal'), path.join(t.stateDir, 'x y', 'tasklog.journal'));
    const out = path.join(t.dir, 'selfware.prom');
    const r = await sw('sw-report', ['--all', '--format', 'prometheus', '-o', out], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.equal(String(r.stdout), '');
    const text = fs.readFileSync(out, 'utf8');
    const promtool = await execa('promtool', ['check', 'metrics'], { input: text, reject: false });
    assert.equal(promtool.exitCode, 0, `promtool: ${promtool.stdout}${promtool.stderr}\n${text}`);
    assert.equal(`${promtool.stdout}${promtool.stderr}`.trim(), '', 'no lint warnings');
    const types = text.split('\n').filter((l) => l.startsWith('# TYPE '));
    assert.equal(new Set(types).size, types.length, 'each family typed once');
    assert.match(text, /^selfware_tasks_total\{run="alpha",outcome="completed"\} 1$/m);
    assert.match(text, /^selfware_tasks_total\{run="beta",outcome="completed"\} 1$/m);
    // Tasks and attempts apart: b's failed attempt is retried, no task failed.
    assert.match(text, /^selfware_tasks_total\{run="alpha",outcome="failed"\} 0$/m);
    assert.match(text, /^selfware_attempts_total\{run="alpha",outcome="failed"\} 1$/m);
    assert.match(text, /^selfware_attempts_total\{run="alpha",outcome="completed"\} 1$/m);
    assert.match(text, /^# TYPE selfware_attempts_total counter$/m);
    // A run without a session existed no hour: no rate an hour.
    assert.doesNotMatch(text, /selfware_tasks_completed_per_hour/);
    assert.match(text, /^selfware_llm_tokens_total\{run="alpha",direction="out"\} 5$/m);
    assert.match(text, /^selfware_check_status\{run="beta",check="success_rate"\} 0$/m);
    assert.deepEqual([...new Set([...text.matchAll(/run="([^"]*)"/g)].map((m) => m[1]))].sort(), ['alpha', 'beta'], 'only the runs');
    // promtool does catch a broken exposition: the check above can fail.
    const broken = await execa('promtool', ['check', 'metrics'], { input: text.replace('# TYPE selfware_tasks_total counter', '# TYPE selfware_tasks_total counter\n# TYPE selfware_tasks_total gauge'), reject: false });
    assert.notEqual(broken.exitCode, 0);
    assert.deepEqual(fs.readdirSync(t.dir).filter((n) => n.startsWith('selfware.prom')), ['selfware.prom'], 'no temp file left');
    // An output that cannot be written: exit 74, one line naming it, and the old file untouched.
    const missing = path.join(t.dir, 'no-such-dir', 'selfware.prom');
    const w = await sw('sw-report', ['alpha', '--format', 'prometheus', '-o', missing], t);
    assert.equal(w.exitCode, 74, String(w.stderr));
    assert.equal(String(w.stderr), `sw-report: cannot write '${missing}': no such file or directory`);
    assert.equal(fs.readFileSync(out, 'utf8'), text);
  } finally {
    t.cleanup();
  }
});

test('--mail: no sendmail exits 69, no address exits 78, and the message is multipart text and HTML with the verdict in the subject', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-mail');
  try {
    await createRun(t);
    writeConfig(t, 'run1', 'report:\n  sendmail: /nonexistent/sendmail\n');
    let r = await sw('sw-report', ['run1', '--mail', 'ops@example.com'], t);
    assert.equal(r.exitCode, 69);
    assert.match(String(r.stderr), /^sw-report: cannot mail the report: \/nonexistent\/sendmail is missing or not executable/);
    r = await sw('sw-report', ['run1', '--mail'], t);
    assert.equal(r.exitCode, 78);
    assert.match(String(r.stderr), /no address to mail to: give --mail ADDRESS or set report\.mail in .*run1\.yaml/);
    // A sendmail that keeps what it is given (the real MTA is exercised under systemd).
    const fake = path.join(t.dir, 'sendmail');
    fs.writeFileSync(fake, `#!/bin/sh\necho "$@" > ${t.dir}/argv\ncat > ${t.dir}/message\n`, { mode: 0o755 });
    writeConfig(t, 'run1', `report:\n  sendmail: ${fake}\n  mail: ops@example.com\n  from: selfware@gpu-box.example\n`);
    r = await sw('sw-report', ['run1', '--mail', '-v'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.match(String(r.stderr), /mailed to ops@example\.com: \[selfware run1\] OK: no task finished/);
    // -t: the recipient is the message's To:.
    assert.equal(fs.readFileSync(path.join(t.dir, 'argv'), 'utf8').trim(), '-t -oi -odi -f selfware@gpu-box.example');
    const msg = fs.readFileSync(path.join(t.dir, 'message'), 'utf8');
    assert.match(msg, /^To: ops@example\.com$/m);
    assert.match(msg, /^Subject: \[selfware run1\] OK: no task finished$/m);
    assert.match(msg, /^From: selfware <selfware@gpu-box\.example>$/m);
    assert.match(msg, /^X-Selfware-Verdict: OK$/m);
    assert.match(msg, /^Content-Type: multipart\/alternative;/m);
    assert.match(msg, /^Content-Type: text\/plain; charset=utf-8$/m);
    assert.match(msg, /^Content-Type: text\/html; charset=utf-8$/m);
  } finally {
    t.cleanup();
  }
});

/** What Debian's exim says, on standard error, when its user is missing: the line the error must carry. */
const EXIM_SAYS = '2026-12-05 13:41:01 failed to find uid for user name "Debian-exim"';

/** A sendmail that refuses as exim did: a blank line, its own line of error, more, exit 1 (without reading the message). */
function refusingSendmail(file: string): void {
  fs.writeFileSync(file, `#!/bin/sh\nprintf '\\n  %s\\nexim: more detail\\n' '${EXIM_SAYS}' >&2\necho 'on stdout' \nexit 1\n`, { mode: 0o755 });
}

test("--mail: a sendmail that refuses exits 69 with the MTA's own first line of error, or with how it ended when it said nothing", { timeout: 60_000 }, async () => {
  const t = makeEnv('report-mail-fail');
  try {
    await createRun(t);
    const fake = path.join(t.dir, 'sendmail');
    writeConfig(t, 'run1', `report:\n  sendmail: ${fake}\n`);
    refusingSendmail(fake);
    let r = await sw('sw-report', ['run1', '--mail', 'ops@example.com'], t);
    assert.equal(r.exitCode, 69);
    assert.equal(String(r.stderr), `sw-report: cannot mail the report to ops@example.com: ${fake}: ${EXIM_SAYS}`);
    // Nothing on standard error: what it said on standard output, else its status or signal.
    fs.writeFileSync(fake, '#!/bin/sh\ncat >/dev/null\necho "relay refused: 550 no such user"\nexit 67\n', { mode: 0o755 });
    r = await sw('sw-report', ['run1', '--mail', 'ops@example.com'], t);
    assert.equal(r.exitCode, 69);
    assert.equal(String(r.stderr), `sw-report: cannot mail the report to ops@example.com: ${fake}: relay refused: 550 no such user`);
    fs.writeFileSync(fake, '#!/bin/sh\ncat >/dev/null\nexit 75\n', { mode: 0o755 });
    r = await sw('sw-report', ['run1', '--mail', 'ops@example.com'], t);
    assert.equal(r.exitCode, 69);
    assert.equal(String(r.stderr), `sw-report: cannot mail the report to ops@example.com: ${fake}: exited with status 75`);
    fs.writeFileSync(fake, '#!/bin/sh\nkill -9 $$\n', { mode: 0o755 });
    r = await sw('sw-report', ['run1', '--mail', 'ops@example.com'], t);
    assert.equal(r.exitCode, 69);
    assert.equal(String(r.stderr), `sw-report: cannot mail the report to ops@example.com: ${fake}: killed by SIGKILL`);
  } finally {
    t.cleanup();
  }
});

test('selfware-alert: mails the failed unit through report.sendmail; when sendmail refuses, it logs the MTA\'s own first line and exits 69', { timeout: 60_000 }, async () => {
  const t = makeEnv('report-alert');
  try {
    // systemctl and journalctl stand-ins: the unit failed on a signal after 5 restarts.
    const bin = path.join(t.dir, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'systemctl'), '#!/bin/sh\ncase "$*" in\n  *Result*) echo signal ;;\n  *NRestarts*) echo 5 ;;\n  *) echo "x selfware@run1.service - selfware run1" ;;\nesac\n', { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'journalctl'), '#!/bin/sh\necho "the last journal line"\n', { mode: 0o755 });
    const fake = path.join(t.dir, 'sendmail');
    fs.writeFileSync(fake, `#!/bin/sh\necho "$@" > ${t.dir}/argv\ncat > ${t.dir}/message\n`, { mode: 0o755 });
    writeConfig(t, 'run1', `report:\n  mail: ops@example.com\n  sendmail: ${fake}\n`);
    const alert = () =>
      execa('sh', [path.join(ROOT, 'units', 'selfware-alert'), 'selfware@run1.service'], {
        reject: false,
        env: { ...process.env, ...t.env, PATH: `${bin}:${path.join(DIST, 'bin')}:${process.env.PATH ?? ''}` },
      });
    let r = await alert();
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stderr, '<3>selfware-alert: selfware@run1.service failed (result: signal); alert mailed to ops@example.com');
    assert.equal(fs.readFileSync(path.join(t.dir, 'argv'), 'utf8').trim(), '-t -oi -odi');
    const msg = fs.readFileSync(path.join(t.dir, 'message'), 'utf8');
    assert.match(msg, /^To: ops@example\.com\nSubject: \[selfware run1\] FAILED: selfware@run1\.service \(signal\)\n/);
    assert.match(msg, /restarts: 5\)[\s\S]*the last journal line/);
    // An escalation (the agent's exit 79) says so in the subject, with sw-recover's reason.
    const stubs = (status: number) => {
      fs.writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\ncase "$*" in\n  *ExecMainStatus*) echo ${status} ;;\n  *Result*) echo exit-code ;;\n  *NRestarts*) echo 5 ;;\n  *) echo "x selfware@run1.service - selfware run1" ;;\nesac\n`, { mode: 0o755 });
      fs.writeFileSync(path.join(bin, 'journalctl'), "#!/bin/sh\necho \"sw-recover: escalating: 5 crashes and 0 failed recoveries in the last 20s (limit 5); run 'run1' will not be restarted until someone starts it again\"\necho \"sw-agent: run 'run1' escalated\"\n", { mode: 0o755 });
    };
    stubs(79);
    r = await alert();
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stderr, '<3>selfware-alert: selfware@run1.service failed (result: exit-code; 5 crashes and 0 failed recoveries in the last 20s (limit 5)); alert mailed to ops@example.com');
    const esc = fs.readFileSync(path.join(t.dir, 'message'), 'utf8');
    assert.match(esc, /^To: ops@example\.com\nSubject: \[selfware run1\] ESCALATED: selfware@run1\.service \(5 crashes and 0 failed recoveries in the last 20s \(limit 5\)\)\n/);
    assert.match(esc, /\n\nRun run1 escalated on [^:]+: 5 crashes and 0 failed recoveries in the last 20s \(limit 5\)\.\n/);
    stubs(78);
    r = await alert();
    assert.match(fs.readFileSync(path.join(t.dir, 'message'), 'utf8'), /\nSubject: \[selfware run1\] CONFIG ERROR: selfware@run1\.service \(exit-code\)\n/);
    // Refused: the MTA's own first line, not only its status.
    refusingSendmail(fake);
    r = await alert();
    assert.equal(r.exitCode, 69);
    assert.equal(r.stderr, `<3>selfware-alert: selfware@run1.service failed; cannot mail the alert to ops@example.com: ${fake}: ${EXIM_SAYS}`);
    fs.writeFileSync(fake, '#!/bin/sh\ncat >/dev/null\nexit 75\n', { mode: 0o755 });
    r = await alert();
    assert.equal(r.exitCode, 69);
    assert.equal(r.stderr, `<3>selfware-alert: selfware@run1.service failed; cannot mail the alert to ops@example.com: ${fake}: exited with status 75`);
    // An address that cannot be read is said so, not taken for none configured.
    writeConfig(t, 'run1', 'report:\n  mail: [ops@example.com\n');
    r = await alert();
    assert.equal(r.exitCode, 78);
    assert.match(r.stderr, /^<3>selfware-alert: selfware@run1\.service failed; cannot read run 'run1''s report\.mail \(sw-agent: .*run1\.yaml:\d+:\d+: invalid YAML: .*\), so no mail was sent$/);
  } finally {
    t.cleanup();
  }
});
