// The agent's life under signals and systemd's notify protocol: SIGTERM mid
// task (shutdown checkpoint, resume at the next step), SIGKILL at random
// instants with sw-recover between (every task completed exactly once), and
// the sd_notify messages read from a NOTIFY_SOCKET of the test's own.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeEnv, rng, sleep, sw } from '../helpers.js';
import { addTask, query, scriptedRun, startAgent, tasks, transcript, waitFor } from '../fixtures/agent.js';
import { notifySocket } from '../fixtures/notify.js';

test('SIGTERM mid-task: shutdown checkpoint, clean end; the next start resumes at the next step', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      long: [
        { action: 'shell', command: 'echo one >> steps.txt' },
        { action: 'shell', command: 'echo two >> steps.txt', delay_ms: 4000 },
        { action: 'shell', command: 'echo three >> steps.txt' },
        { action: 'finish', summary: 'three steps' },
      ],
    });
    const id = await addTask(t, 'long', ['--verify', 'test "$(cat steps.txt | tr "\\n" " ")" = "one two three "']);
    const a = startAgent(t);
    await waitFor('step 1 done and step 2 asked', () => transcript(t, id).some((l) => l.type === 'step' && l.step === 1), 20_000, a);
    await sleep(800);
    const code = await a.stop('SIGTERM');
    assert.equal(code, 0, a.output());
    assert.match(a.output(), /SIGTERM: finishing the step in hand, then a shutdown checkpoint/);
    const sessions = await query(t, 'SELECT end_state FROM sessions');
    assert.deepEqual(sessions, [['clean']]);
    const last = await query(t, 'SELECT kind FROM checkpoints ORDER BY ts DESC LIMIT 1');
    assert.deepEqual(last, [['shutdown']]);
    // The shutdown checkpoint holds the state as it stays: a routine one after
    // it (its timer fired as the run stopped) has nothing to add.
    const routine = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine', '--json'], t);
    assert.equal(routine.exitCode, 0, String(routine.stderr));
    assert.equal(JSON.parse(String(routine.stdout)).skipped, true, String(routine.stdout));
    assert.equal((await tasks(t))[0]?.status, 'in_progress');
    assert.equal(transcript(t, id).filter((l) => l.type === 'step').length, 1, 'step 2 was not recorded: it never finished');
    // Start again: nothing to recover, the task resumes at step 2.
    const r = await sw('sw-recover', ['run1', '--json'], t);
    assert.equal(JSON.parse(String(r.stdout)).action, 'none');
    const b = startAgent(t);
    await waitFor('the task completed', async () => (await tasks(t))[0]?.status === 'completed', 30_000, b);
    assert.equal(await b.stop(), 0);
    assert.match(b.output(), new RegExp(`task ${id}: resuming at step 2 of attempt 1`));
    assert.equal(fs.readFileSync(path.join(t.stateDir, 'run1', 'workspace', 'steps.txt'), 'utf8'), 'one\ntwo\nthree\n');
    const steps = transcript(t, id).filter((l) => l.type === 'step').map((l) => l.step);
    assert.deepEqual(steps, [1, 2, 3, 4]);
  } finally {
    t.cleanup();
  }
});

test('SIGTERM while a shell action runs: it is killed, its effect unknown as after a crash; the next start tells the model to check, never records it as a plain failure', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      cut: [
        { action: 'shell', command: 'echo started >> half.txt; sleep 20; echo done >> half.txt' },
        { action: 'shell', command: 'cat half.txt' },
        { action: 'finish', summary: 'checked' },
      ],
    });
    const id = await addTask(t, 'cut');
    const a = startAgent(t);
    await waitFor('the action half done', () => fs.existsSync(path.join(t.stateDir, 'run1', 'workspace', 'half.txt')), 20_000, a);
    assert.equal(await a.stop('SIGTERM'), 0, a.output());
    assert.match(a.output(), new RegExp(`task ${id} step 1: .* killed as the agent stops; its effect is unknown, and the next start tells the model so`));
    // As a crash leaves it: the intent, no step.
    let tr = transcript(t, id);
    assert.deepEqual(tr.filter((l) => l.type === 'intent').map((l) => l.step), [1]);
    assert.deepEqual(tr.filter((l) => l.type === 'step').length, 0, 'no step recorded for the killed action');
    assert.equal(fs.readFileSync(path.join(t.stateDir, 'run1', 'workspace', 'half.txt'), 'utf8'), 'started\n');
    const b = startAgent(t);
    await waitFor('the task completed', async () => (await tasks(t))[0]?.status === 'completed', 30_000, b);
    assert.equal(await b.stop(), 0);
    assert.match(b.output(), new RegExp(`task ${id}: resuming after step 1, whose effect is unknown`));
    tr = transcript(t, id);
    const first = tr.find((l) => l.type === 'step' && l.step === 1) as { observation: { ok: boolean; error: string } };
    assert.equal(first.observation.ok, false);
    assert.match(first.observation.error, /its effect is unknown\. Check what it did before relying on it/);
  } finally {
    t.cleanup();
  }
});

test('stopped while the check runs: the next start runs the check, not another model step', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, { checked: [{ action: 'finish', summary: 'done' }, { action: 'shell', command: 'echo extra >> extra.txt' }] });
    const id = await addTask(t, 'checked', ['--verify', 'sleep 3; true']);
    const a = startAgent(t);
    await waitFor('the check runs', () => /checked-[0-9a-f]+: verifying/.test(a.output()), 20_000, a);
    assert.equal(await a.stop(), 0);
    assert.equal((await tasks(t))[0]?.status, 'in_progress');
    const b = startAgent(t);
    await waitFor('the task completed', async () => (await tasks(t))[0]?.status === 'completed', 30_000, b);
    await b.stop();
    const tr = transcript(t, id);
    assert.equal(tr.filter((l) => l.type === 'step').length, 1, 'no model step after finish');
    assert.equal(tr.filter((l) => l.type === 'verify').length, 1);
    assert.equal(fs.existsSync(path.join(t.stateDir, 'run1', 'workspace', 'extra.txt')), false);
  } finally {
    t.cleanup();
  }
});

test('SIGKILL at random instants, sw-recover between: every task completed exactly once, none lost', { timeout: 300_000 }, async () => {
  const t = makeEnv();
  try {
    const script: Record<string, Array<Record<string, unknown>>> = {};
    const ids: string[] = [];
    // Four tasks of five steps, killed at up to twelve random instants: most kills land mid-task.
    for (let i = 0; i < 4; i++) {
      script[`task${i}`] = [
        { action: 'shell', command: `echo t${i}-a >> log-${i}.txt`, delay_ms: 300 },
        { action: 'write_file', path: `out-${i}.txt`, content: `task ${i}\n`, delay_ms: 200 },
        { action: 'shell', command: `echo t${i}-b >> log-${i}.txt`, delay_ms: 300 },
        { action: 'read_file', path: `out-${i}.txt`, delay_ms: 200 },
        { action: 'finish', summary: `task ${i}` },
      ];
    }
    scriptedRun(t, script);
    for (let i = 0; i < 4; i++) ids.push(await addTask(t, `task${i}`, ['--verify', `test -f out-${i}.txt`]));
    const rand = rng(31337);
    let kills = 0;
    for (let round = 0; round < 12; round++) {
      const done = (await tasks(t)).filter((x) => x.status === 'completed').length;
      if (done === ids.length) break;
      const rec = await sw('sw-recover', ['run1', '-q'], t);
      assert.equal(rec.exitCode, 0, `round ${round}: sw-recover: ${rec.stderr}`);
      const a = startAgent(t);
      // The random instant counts from when the agent works (on a loaded machine its start alone
      // can take longer than the whole draw): every round kills it somewhere in its work.
      await waitFor('the agent ready', () => /agent ready/.test(a.output()) || a.child.exitCode !== null, 30_000, a);
      await sleep(100 + rand() * 1500);
      a.child.kill('SIGKILL');
      await a.child;
      kills++;
    }
    // Let it finish.
    await sw('sw-recover', ['run1', '-q'], t);
    const a = startAgent(t);
    await waitFor('all tasks completed', async () => (await tasks(t)).every((x) => x.status === 'completed'), 60_000, a);
    assert.equal(await a.stop(), 0);
    assert.ok(kills >= 5, `${kills} kills`);
    const completed = await query(t, "SELECT task_id, count(*) FROM task_attempts WHERE outcome = 'completed' GROUP BY task_id ORDER BY task_id");
    assert.deepEqual(completed, [...ids].sort().map((id) => [id, 1]));
    // Nothing ran after a task completed: its transcript ends with its one "end" line.
    for (const id of ids) {
      const tr = transcript(t, id);
      const ends = tr.filter((l) => l.type === 'end' && l.outcome === 'completed');
      assert.equal(ends.length, 1, `${id}: one completed end`);
      assert.equal(tr[tr.length - 1]?.type, 'end', `${id}: nothing after the end`);
    }
    const v = await sw('sw-checkpoint', ['verify', 'run1'], t);
    assert.equal(v.exitCode, 0, String(v.stdout));
  } finally {
    t.cleanup();
  }
});

test('sd_notify: READY after the model loads, WATCHDOG while working (not while the model stalls), STATUS, STOPPING', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const n = notifySocket(t);
  try {
    await n.ready;
    scriptedRun(t, {
      watched: [
        { action: 'shell', command: 'true', delay_ms: 1500 },
        { action: 'shell', command: 'true', stall_ms: 3500 },
        { action: 'finish', summary: 'ok' },
      ],
    });
    const id = await addTask(t, 'watched');
    const a = startAgent(t, 'run1', { NOTIFY_SOCKET: n.sock, WATCHDOG_USEC: '2000000' });
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 30_000, a);
    const stopAt = Date.now();
    assert.equal(await a.stop(), 0, a.output());
    await sleep(200);
    const msgs = n.messages();
    const ready = msgs.findIndex((m) => m.msg === 'READY=1');
    const loading = msgs.findIndex((m) => /^STATUS=loading the Q4_K_M model/.test(m.msg));
    assert.ok(loading >= 0 && ready > loading, `READY after loading: ${JSON.stringify(msgs.slice(0, 5))}`);
    assert.ok(msgs.some((m) => m.msg.startsWith(`STATUS=${id} step 1 (attempt 1)`)), 'STATUS names the task and step');
    assert.ok(msgs.some((m) => /^STATUS=.*Q4_K_M/.test(m.msg)), 'STATUS carries the quantization');
    // The scripted backend has no model, so no speed: STATUS shows none rather than the script's.
    assert.ok(!msgs.some((m) => /^STATUS=.*tok\/s/.test(m.msg)), 'STATUS carries no tokens/s for the scripted backend');
    const stoppingMsg = msgs.find((m) => m.msg === 'STOPPING=1');
    assert.ok(stoppingMsg && stoppingMsg.at >= stopAt - 50, 'STOPPING after SIGTERM');
    const pings = msgs.filter((m) => m.msg === 'WATCHDOG=1').map((m) => m.at);
    assert.ok(pings.length >= 5, `${pings.length} pings`);
    const gaps = pings.slice(1).map((p, i) => p - (pings[i] as number));
    // Cadence: every quarter of the 2 s interval while healthy...
    const normal = gaps.filter((g) => g < 1000).length;
    assert.ok(normal >= 3, `gaps ${gaps.map((g) => Math.round(g))}`);
    // ...and a gap longer than the interval while the model stalled (systemd would kill it).
    assert.ok(Math.max(...gaps) > 2000, `no stall gap in ${gaps.map((g) => Math.round(g))}`);
  } finally {
    n.stop();
    t.cleanup();
  }
});

test('the watchdog is fed only while the model makes progress: a hang before the first token stops the pings', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const n = notifySocket(t);
  try {
    await n.ready;
    scriptedRun(t, {
      hung: [
        { action: 'shell', command: 'true', hang_ms: 3500 },
        { action: 'finish', summary: 'ok' },
      ],
    });
    const id = await addTask(t, 'hung');
    const a = startAgent(t, 'run1', { NOTIFY_SOCKET: n.sock, WATCHDOG_USEC: '2000000' });
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 30_000, a);
    assert.equal(await a.stop(), 0, a.output());
    const msgs = n.messages();
    const stepAt = msgs.find((m) => m.msg.startsWith(`STATUS=${id} step 1 (attempt 1)`))?.at;
    assert.ok(stepAt !== undefined, 'STATUS named step 1');
    const pings = msgs.filter((m) => m.msg === 'WATCHDOG=1').map((m) => m.at);
    const gaps = pings.slice(1).map((p, i) => ({ from: pings[i] as number, ms: p - (pings[i] as number) }));
    // No token and no evaluation for 3.5 s: the pings stop for longer than the 2 s interval (systemd would kill it) ...
    const stall = gaps.find((g) => g.ms > 2000);
    assert.ok(stall, `no gap while the model hung before its first token: ${gaps.map((g) => Math.round(g.ms))}`);
    assert.ok(stall.from >= stepAt - 600, 'the gap is the hang of step 1');
    // ... and otherwise go on every quarter of the interval.
    assert.ok(gaps.filter((g) => g.ms < 1000).length >= 3, `gaps ${gaps.map((g) => Math.round(g.ms))}`);
  } finally {
    n.stop();
    t.cleanup();
  }
});

test('the memory guard: above rss_limit the agent checkpoints and exits 3; the restarts back off and escalate like crashes, with their reason', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, { small: [{ action: 'finish', summary: 'x' }] }, 'agent:\n  rss_limit: 1MiB\n');
    const cfg = path.join(t.configDir, 'run1.yaml');
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('backoff_base: 0s\n  max_failures: 1000', 'backoff_base: 100ms\n  max_failures: 2'));
    await addTask(t, 'small');
    const a = startAgent(t);
    const r = await a.child;
    assert.equal(r.exitCode, 3, a.output());
    assert.match(a.output(), /the agent's own memory .* is above the limit 1\.00 MiB \(resident .*\): checkpointing and exiting to be restarted; this counts like a crash/);
    assert.deepEqual(await query(t, 'SELECT end_state, exit_code FROM sessions'), [['rss', 3]]);
    assert.match(String((await query(t, 'SELECT reason FROM sessions'))[0]?.[0]), /^the agent's own memory .* is above the limit 1\.00 MiB/);
    assert.deepEqual(await query(t, 'SELECT kind, message FROM checkpoints ORDER BY ts DESC LIMIT 1'), [['shutdown', 'memory above the limit']]);
    // Nothing to recover (the end was checkpointed), but a failure: a backoff, counted towards escalation.
    const rec = await sw('sw-recover', ['run1', '--json'], t);
    const j = JSON.parse(String(rec.stdout)) as { action: string; reason: string; crashes: number; backoff_ms: number; escalated: boolean; detail: string };
    assert.equal(j.action, 'none');
    assert.equal(j.reason, 'memory');
    assert.equal(j.crashes, 1);
    assert.ok(j.backoff_ms > 0, JSON.stringify(j));
    assert.equal(j.escalated, false);
    assert.match(j.detail, /was stopped by the memory guard \(the agent's own memory .*\): nothing to recover, but it counts like a crash/);
    // Again: the second guard restart in the window reaches max_failures (2): the next start escalates.
    const b = startAgent(t);
    assert.equal((await b.child).exitCode, 3, b.output());
    const c = startAgent(t);
    assert.equal((await c.child).exitCode, 79, c.output());
    assert.match(c.output(), /escalat.*2 crashes \(2 of them the memory guard's restarts\) and 0 failed recoveries in the last 60 min \(limit 2\)/);
    assert.deepEqual(await query(t, "SELECT reason, count(*) FROM recoveries GROUP BY reason"), [['memory', 2]]);
  } finally {
    t.cleanup();
  }
});

test("the governor's decision is obeyed before each model call: pause, a level switch, and back", { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const n = notifySocket(t);
  try {
    await n.ready;
    const { writeDecision } = await import('../../lib/governor/decision.js');
    const decide = (over: Record<string, unknown>) =>
      writeDecision(t.runtimeDir, { version: 1, time: new Date().toISOString(), host: 'test', tier: 'normal', quantization: 'Q4_K_M', actions: [], context_limit: null, reasons: [], readings: {}, ...over } as never);
    const steps = Array.from({ length: 30 }, (_, i) => ({ action: 'shell', command: `echo ${i} >> steps.txt`, delay_ms: 100 }));
    scriptedRun(t, { governed: [...steps, { action: 'finish', summary: 'ok' }] });
    decide({ tier: 'critical', actions: ['pause'], reasons: ['disk /var/lib: 4% free'] });
    const id = await addTask(t, 'governed');
    const a = startAgent(t, 'run1', { NOTIFY_SOCKET: n.sock, WATCHDOG_USEC: '5000000' });
    await waitFor('the agent says the governor paused it', async () => {
      const s = JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout || '{}'));
      return s.agent?.status === 'paused';
    }, 20_000, a);
    await sleep(1200);
    assert.equal(transcript(t, id).filter((l) => l.type === 'step').length, 0, 'no step under a pause');
    assert.match(a.output(), /paused by the governor: disk \/var\/lib: 4% free/);
    decide({ tier: 'warning', quantization: 'Q3_K_L' });
    await waitFor('steps at Q3_K_L', async () => (await query(t, "SELECT count(*) FROM llm_calls WHERE quantization = 'Q3_K_L'"))[0]?.[0] as number > 2, 20_000, a);
    decide({ tier: 'normal', quantization: 'Q4_K_M' });
    await waitFor('the task completed', async () => (await tasks(t))[0]?.status === 'completed', 30_000, a);
    await a.stop();
    const switches = await query(t, "SELECT json_extract(data, '$.from'), json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos");
    assert.deepEqual(switches, [['Q4_K_M', 'Q3_K_L'], ['Q3_K_L', 'Q4_K_M']]);
    const levels = await query(t, 'SELECT DISTINCT quantization FROM llm_calls ORDER BY quantization');
    assert.deepEqual(levels, [['Q3_K_L'], ['Q4_K_M']]);
    // A switch while running does not ask systemd for time: that would put off the watchdog.
    const msgs = n.messages().map((m) => m.msg);
    const ready = msgs.indexOf('READY=1');
    assert.ok(ready > 0, msgs.slice(0, 5).join(' | '));
    assert.ok(msgs.slice(0, ready).some((m) => m.startsWith('EXTEND_TIMEOUT_USEC=')), 'the first load, before READY, does');
    assert.deepEqual(msgs.slice(ready).filter((m) => m.startsWith('EXTEND_TIMEOUT_USEC=')), []);
  } finally {
    n.stop();
    t.cleanup();
  }
});

test("disk pressure on the run's filesystem: the agent prunes by retention and folds the task log at once, once per checkpoint.pressure_every; another filesystem's pressure is not its", { timeout: 90_000 }, async () => {
  const t = makeEnv();
  try {
    const { writeDecision } = await import('../../lib/governor/decision.js');
    const disk = (mine: number, other: number) => {
      const worst = Math.min(mine, other);
      writeDecision(t.runtimeDir, {
        version: 1, time: new Date().toISOString(), host: 'test', tier: 'warning', quantization: 'Q4_K_M', actions: [], context_limit: null,
        reasons: [`${worst}% disk free (warning)`],
        readings: {
          disk: { value: worst, tier: 'warning' },
          disks: [
            { runs: ['other'], path: '/srv/other', free_pct: other, free_bytes: 1, total_bytes: 100 },
            { runs: ['run1'], path: t.stateDir, free_pct: mine, free_bytes: 1, total_bytes: 100 },
          ],
        },
      } as never); // prettier-ignore
    };
    const task = (n: number) => [{ action: 'shell' as const, command: `echo ${n} > f${n}.txt` }, { action: 'finish' as const, summary: `f${n}` }];
    scriptedRun(t, { t1: task(1), t2: task(2), t3: task(3), t4: task(4) }, 'checkpoint:\n  retention:\n    keep_last: 1\n    keep_hourly: 0\n    keep_daily: 0\n    keep_weekly: 0\n');
    const retentions = async () => (await query(t, "SELECT json_extract(data, '$.pruned'), json_extract(data, '$.tier') FROM events WHERE type = 'retention'")) as Array<[number, string]>;
    // Another run's filesystem is short of space: not this run's business.
    disk(40, 8);
    await addTask(t, 't1');
    await addTask(t, 't2');
    const a = startAgent(t);
    await waitFor('two tasks completed', async () => (await tasks(t)).filter((x) => x.status === 'completed').length === 2, 30_000, a);
    assert.deepEqual(await retentions(), []);
    const live = async () => Number((await query(t, 'SELECT count(*) FROM checkpoints WHERE pruned_at IS NULL'))[0]?.[0]);
    const before = await live();
    assert.ok(before >= 3, `${before} checkpoints`);
    // Now its own: pruned at once (keep_last 1, the newest valid kept), said, recorded, not repeated.
    disk(8, 40);
    await waitFor('a retention under disk pressure', async () => (await retentions()).length > 0, 20_000, a);
    await addTask(t, 't3');
    await addTask(t, 't4');
    await waitFor('four tasks completed', async () => (await tasks(t)).filter((x) => x.status === 'completed').length === 4, 30_000, a);
    assert.equal(await a.stop(), 0);
    const r = await retentions();
    assert.equal(r.length, 1, JSON.stringify(r));
    assert.equal(r[0]?.[1], 'warning');
    assert.ok((r[0]?.[0] ?? 0) >= before - 1, `pruned ${r[0]?.[0]} of ${before}`);
    assert.match(a.output(), new RegExp(`disk 8% free on ${t.stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(warning\\): pruned \\d+ checkpoints by checkpoint.retention, freed `));
    const list = await sw('sw-checkpoint', ['verify', 'run1'], t);
    assert.equal(list.exitCode, 0, String(list.stdout) + String(list.stderr));
  } finally {
    t.cleanup();
  }
});
