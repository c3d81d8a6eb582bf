// sw-agent with the scripted backend, through the built command, on a real
// git workspace: tasks complete, verify fails and retries from the pre-task
// snapshot, approvals, deny, path escapes, a tool timeout kills its process
// group, pause and resume, cancel, dropped-in task files, usage errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeEnv, sw, treeSnapshot, type TestEnv } from '../helpers.js';
import { addTask, query, scriptedRun, startAgent, tasks, transcript, waitFor } from '../fixtures/agent.js';
import { notifySocket } from '../fixtures/notify.js';
import { runPaths } from '../../lib/run.js';
import { pidAlive } from '../../lib/fsutil.js';

const agent = (args: string[], t: TestEnv, opts = {}) => sw('sw-agent', args, t, opts);
const ws = (t: TestEnv) => runPaths('run1', t.env).defaultWorkspace;

test('usage errors exit 64; bad config 78; --help for each subcommand', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const h = await agent(['--help'], t);
    assert.equal(h.exitCode, 0);
    for (const sub of ['run', 'add', 'list', 'show', 'cancel', 'pause', 'resume', 'status', 'approvals', 'approve', 'reject']) {
      const r = await agent([sub, '--help'], t);
      assert.equal(r.exitCode, 0, sub);
      assert.match(String(r.stdout), new RegExp(`^Usage: sw-agent ${sub} `), sub);
    }
    for (const [args, re] of [
      [['add', 'run1'], /give a prompt/],
      [['add', '../x', 'p'], /invalid run name/],
      [['add', 'run1', '--priority', 'high', 'p'], /--priority <n>' argument 'high' is invalid/],
      [['add', 'run1', '--max-attempts', '0', 'p'], /expected an integer from 1 to 100, got '0'/],
      [['add', 'run1', '--timeout', '5h', 'p'], /expected a duration up to 4h such as 30m, got '5h'/],
      [['list', 'run1', '--status', 'done'], /argument 'done' is invalid\. expected one of pending, in_progress, completed, failed, cancelled/],
      [['show', 'run1', '../etc'], /invalid task id '\.\.\/etc'/],
      [['frob'], /unknown command 'frob'/],
    ] as Array<[string[], RegExp]>) {
      const r = await agent(args, t);
      assert.equal(r.exitCode, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(String(r.stderr), re, args.join(' '));
    }
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), 'llm:\n  backend: gpt5\n');
    const c = await agent(['run', 'run1'], t);
    assert.equal(c.exitCode, 78);
    assert.match(String(c.stderr), /run1\.yaml:2:12: llm\.backend: expected one of llama, openai, scripted, got "gpt5"/);
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), 'llm:\n  backend: scripted\n');
    const s = await agent(['run', 'run1'], t);
    assert.equal(s.exitCode, 78);
    assert.match(String(s.stderr), /llm\.script: the scripted backend needs a script file/);
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), 'llm:\n  backend: llama\n');
    const l = await agent(['run', 'run1'], t);
    assert.equal(l.exitCode, 78);
    assert.match(String(l.stderr), /llm\.models\.Q4_K_M: no GGUF file/);
    assert.deepEqual(fs.readdirSync(t.stateDir), [], 'a refused start changes nothing');
    const n = await agent(['list', 'nope'], t);
    assert.equal(n.exitCode, 66);
  } finally {
    t.cleanup();
  }
});

test('tasks complete, in priority order, each checkpointed; SIGTERM ends the session cleanly', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      first: [
        { action: 'write_file', path: 'hello.txt', content: 'hello\n' },
        { action: 'shell', command: 'git add hello.txt && git -c user.name=a -c user.email=a@b commit -qm hello && echo committed' },
        { action: 'finish', summary: 'wrote hello.txt' },
      ],
      second: [
        { action: 'read_file', path: 'hello.txt' },
        { action: 'finish', summary: 'read it' },
      ],
    });
    const low = await addTask(t, 'second', ['--verify', 'test -f hello.txt', '--priority', '1']);
    const high = await addTask(t, 'first', ['--verify', 'grep -q hello hello.txt', '--priority', '5']);
    const a = startAgent(t);
    await waitFor('both tasks completed', async () => (await tasks(t)).every((x) => x.status === 'completed'), 30_000, a);
    const code = await a.stop();
    assert.equal(code, 0, a.output());
    const outcomes = await query(t, 'SELECT task_id, attempt, outcome, steps FROM task_attempts ORDER BY started_at');
    assert.deepEqual(outcomes, [[high, 1, 'completed', 3], [low, 1, 'completed', 2]]);
    const tr = transcript(t, high);
    assert.deepEqual(tr.map((l) => l.type), ['attempt', 'intent', 'step', 'intent', 'step', 'step', 'verify', 'end']);
    const readStep = transcript(t, low).find((l) => l.type === 'step') as { observation: { output: string } };
    assert.equal(readStep.observation.output, 'hello\n');
    const kinds = await query(t, 'SELECT kind, message FROM checkpoints ORDER BY ts');
    assert.ok(kinds.some(([k, m]) => k === 'task' && String(m).includes(`task ${high} completed`)));
    assert.ok(kinds.some(([k, m]) => k === 'task' && String(m).includes(`task ${low} completed`)));
    assert.equal(kinds[kinds.length - 1]?.[0], 'shutdown');
    const sessions = await query(t, 'SELECT end_state, exit_code FROM sessions');
    assert.deepEqual(sessions, [['clean', 0]]);
    const calls = await query(t, 'SELECT count(*), sum(tokens_out) > 0 FROM llm_calls WHERE ok = 1');
    assert.deepEqual(calls, [[5, 1]]);
    // The next start does no recovery work.
    const r = await sw('sw-recover', ['run1', '--json'], t);
    assert.equal(JSON.parse(String(r.stdout)).action, 'none');
    // show and list --json
    const show = JSON.parse(String((await agent(['show', 'run1', high, '--json'], t)).stdout));
    assert.equal(show.status, 'completed');
    assert.equal(show.attempts, 1);
    assert.equal(show.transcript.length, 8);
    const list = JSON.parse(String((await agent(['list', 'run1', '--json'], t)).stdout));
    assert.deepEqual(Object.keys(list.tasks[0]).slice(0, 4), ['id', 'title', 'status', 'attempts']);
  } finally {
    t.cleanup();
  }
});

test('verify fails, the attempt is retried from the pre-task workspace snapshot, then it passes', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const counter = path.join(t.dir, 'verify-count');
    scriptedRun(t, {
      flaky: [
        { action: 'shell', command: 'echo attempt-$(ls marker-* 2>/dev/null | wc -l) > marker-$$' },
        { action: 'finish', summary: 'done?' },
      ],
    });
    // The check fails the first time it runs and passes the second.
    const verify = `n=$(cat ${counter} 2>/dev/null || echo 0); echo $((n+1)) > ${counter}; [ "$n" -ge 1 ]`;
    const id = await addTask(t, 'flaky', ['--verify', verify, '--max-attempts', '3']);
    const a = startAgent(t);
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 30_000, a);
    assert.equal(await a.stop(), 0);
    const attempts = await query(t, `SELECT attempt, outcome, reason FROM task_attempts WHERE task_id = '${id}' ORDER BY attempt`);
    assert.equal(attempts.length, 2);
    assert.equal(attempts[0]?.[1], 'failed');
    assert.match(String(attempts[0]?.[2]), /^verify failed: exit status 1/);
    assert.equal(attempts[1]?.[1], 'completed');
    // Attempt 2 started from the workspace as it was before the task: one marker only, counting none before it.
    const markers = fs.readdirSync(ws(t)).filter((n) => n.startsWith('marker-'));
    assert.equal(markers.length, 1, `markers: ${markers}`);
    assert.equal(fs.readFileSync(path.join(ws(t), markers[0] as string), 'utf8'), 'attempt-0\n');
    const tr = transcript(t, id);
    const second = tr.find((l) => l.type === 'attempt' && l.attempt === 2) as { reset?: string };
    assert.match(String(second.reset), /workspace reset to the pre-task snapshot/);
  } finally {
    t.cleanup();
  }
});

test('approvals: an approve-rule action waits (pre-op checkpoint), runs once approved; a rejected one is reported to the model', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      pushy: [
        { action: 'shell', command: 'git push origin main || echo push-attempted > pushed.txt' },
        { action: 'shell', command: 'git push --force' },
        { action: 'finish', summary: 'pushed' },
      ],
    }, 'policy:\n  approve: ["shell:git push*"]\n');
    const id = await addTask(t, 'pushy');
    const a = startAgent(t);
    const first = await waitFor('an approval request', async () => {
      const r = await agent(['approvals', 'run1', '--json'], t);
      return (JSON.parse(String(r.stdout)) as { approvals: Array<{ id: string; status: string; checkpoint: string | null }> }).approvals[0];
    }, 20_000, a);
    assert.equal(first.id, `${id}.1.1`);
    assert.ok(first.checkpoint, 'a pre-op checkpoint was taken');
    const cps = await query(t, `SELECT kind FROM checkpoints WHERE id = '${first.checkpoint}'`);
    assert.deepEqual(cps, [['pre-op']]);
    assert.equal(fs.existsSync(path.join(ws(t), 'pushed.txt')), false, 'nothing ran before the approval');
    const st = JSON.parse(String((await agent(['status', 'run1', '--json'], t)).stdout));
    assert.deepEqual(st.approvals_pending, [first.id]);
    assert.equal((await agent(['approve', 'run1', first.id], t)).exitCode, 0);
    const again = await agent(['approve', 'run1', first.id], t);
    assert.equal(again.exitCode, 1);
    assert.match(String(again.stderr), /already approved/);
    assert.equal((await agent(['approve', 'run1', 'nope.1.1'], t)).exitCode, 66);
    await waitFor('the second approval request', async () => {
      const r = await agent(['approvals', 'run1', '--json'], t);
      return (JSON.parse(String(r.stdout)) as { approvals: Array<{ id: string }> }).approvals.find((x) => x.id === `${id}.1.2`);
    }, 20_000, a);
    assert.equal(fs.readFileSync(path.join(ws(t), 'pushed.txt'), 'utf8'), 'push-attempted\n', 'the approved action ran');
    assert.equal((await agent(['reject', 'run1', `${id}.1.2`, '--reason', 'no force pushes'], t)).exitCode, 0);
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 20_000, a);
    await a.stop();
    const step2 = transcript(t, id).find((l) => l.type === 'step' && l.step === 2) as { decision: string; observation: { error: string } };
    assert.equal(step2.decision, 'rejected');
    assert.match(step2.observation.error, /a human rejected this action: no force pushes/);
    const decided = await query(t, 'SELECT id, decision FROM approvals ORDER BY id');
    assert.deepEqual(decided, [[`${id}.1.1`, 'approved'], [`${id}.1.2`, 'rejected']]);
  } finally {
    t.cleanup();
  }
});

test('an approval that times out is rejected (on_timeout: reject)', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, { waits: [{ action: 'shell', command: 'sudo true' }, { action: 'finish', summary: 'x' }] }, 'policy:\n  approval_timeout: 1s\n');
    const id = await addTask(t, 'waits');
    const a = startAgent(t);
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 20_000, a);
    await a.stop();
    const step1 = transcript(t, id).find((l) => l.type === 'step' && l.step === 1) as { observation: { error: string } };
    assert.match(step1.observation.error, /rejected this action: no answer in time \(no answer in time\)/);
  } finally {
    t.cleanup();
  }
});

test('deny rules refuse, and paths outside the workspace are refused', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const outside = path.join(t.dir, 'outside.txt');
    fs.writeFileSync(outside, 'secret\n');
    scriptedRun(t, {
      naughty: [
        { action: 'shell', command: 'rm -rf /' },
        { action: 'shell', command: 'cd /tmp && rm -rf /*' },
        { action: 'read_file', path: '../../../../../../etc/passwd' },
        { action: 'read_file', path: outside },
        { action: 'write_file', path: '/etc/selfware-test-escape', content: 'x' },
        { action: 'shell', command: `ln -s ${t.dir} link` },
        { action: 'read_file', path: 'link/outside.txt' },
        { action: 'write_file', path: '.git/config', content: 'x' },
        { action: 'finish', summary: 'tried' },
      ],
    });
    const id = await addTask(t, 'naughty');
    const a = startAgent(t);
    await waitFor('the task ended', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 30_000, a);
    await a.stop();
    const steps = transcript(t, id).filter((l) => l.type === 'step') as Array<{ step: number; decision?: string; observation: { ok: boolean; error?: string; output: string } }>;
    const err = (n: number) => steps.find((s) => s.step === n)?.observation.error ?? '';
    assert.match(err(1), /refused by the policy \(deny rule 'shell:rm -rf \/'\)/);
    assert.match(err(2), /refused by the policy \(deny rule 'shell:rm -rf \/\*'\)/);
    assert.match(err(3), /is outside the workspace/);
    assert.match(err(4), /is outside the workspace/);
    assert.match(err(5), /is outside the workspace/);
    assert.equal(fs.existsSync('/etc/selfware-test-escape'), false);
    assert.match(err(7), /leads outside the workspace through a symbolic link/);
    assert.match(err(8), /inside \.git/);
    assert.equal(steps.some((s) => s.observation.output.includes('secret')), false);
  } finally {
    t.cleanup();
  }
});

test('a tool that runs too long is killed with its whole process group', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const pidFile = path.join(t.dir, 'child.pid');
    scriptedRun(t, {
      slow: [
        { action: 'shell', command: `sleep 300 & echo $! > ${pidFile}; echo started; sleep 300` },
        { action: 'finish', summary: 'x' },
      ],
    }, 'agent:\n  tool_timeout: 1s\n');
    const id = await addTask(t, 'slow');
    const a = startAgent(t);
    await waitFor('the task ended', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 30_000, a);
    await a.stop();
    const step1 = transcript(t, id).find((l) => l.type === 'step' && l.step === 1) as { observation: { timed_out: boolean; error: string; output: string; duration_ms: number } };
    assert.equal(step1.observation.timed_out, true);
    assert.match(step1.observation.error, /timed out after 1000 ms; its process group was killed/);
    assert.match(step1.observation.output, /started/);
    assert.ok(step1.observation.duration_ms < 10_000);
    const bgPid = Number(fs.readFileSync(pidFile, 'utf8'));
    // Killed: gone, or a zombie waiting for init to reap it.
    const state = fs.existsSync(`/proc/${bgPid}/status`) ? /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${bgPid}/status`, 'utf8'))?.[1] : null;
    assert.ok(!pidAlive(bgPid) || state === 'Z', `the background child of the command was killed too (state ${state})`);
  } finally {
    t.cleanup();
  }
});

test('pause and resume: no step while paused', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, { later: [{ action: 'write_file', path: 'x.txt', content: 'x' }, { action: 'finish', summary: 'x' }] });
    await agent(['add', 'run1', '--title', 'later', 'do later'], t);
    assert.equal((await agent(['pause', 'run1', '--reason', 'maintenance'], t)).exitCode, 0);
    const a = startAgent(t);
    await waitFor('the agent reports paused', async () => {
      const s = JSON.parse(String((await agent(['status', 'run1', '--json'], t)).stdout));
      return s.agent.running && s.agent.status === 'paused' && s.agent.pause_reason === 'maintenance';
    }, 20_000, a);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await tasks(t))[0]?.status, 'pending', 'nothing ran while paused');
    assert.equal((await agent(['resume', 'run1'], t)).exitCode, 0);
    await waitFor('the task completed', async () => (await tasks(t))[0]?.status === 'completed', 20_000, a);
    await waitFor('the agent reports idle again', async () => JSON.parse(String((await agent(['status', 'run1', '--json'], t)).stdout)).agent.status === 'idle', 10_000, a);
    await a.stop();
    const ev = await query(t, "SELECT type FROM events WHERE type IN ('paused', 'resumed') ORDER BY pos");
    assert.deepEqual(ev, [['paused'], ['resumed']]);
  } finally {
    t.cleanup();
  }
});

test('cancel, add from stdin, and a dropped-in task file', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      'from a file': [{ action: 'finish', summary: 'ok' }],
      piped: [{ action: 'finish', summary: 'ok' }],
    });
    const c = await agent(['add', 'run1', '--title', 'to cancel', 'never'], t);
    const cid = String(c.stdout).trim();
    assert.equal((await agent(['cancel', 'run1', cid], t)).exitCode, 0);
    const again = await agent(['cancel', 'run1', cid], t);
    assert.equal(again.exitCode, 1);
    assert.match(String(again.stderr), /already cancelled/);
    assert.equal((await agent(['cancel', 'run1', 'missing-task'], t)).exitCode, 66);
    const p = await agent(['add', 'run1', '--title', 'piped', '-'], t, { input: 'a prompt\nfrom stdin\n' });
    assert.equal(p.exitCode, 0, String(p.stderr));
    const pid = String(p.stdout).trim();
    fs.writeFileSync(path.join(runPaths('run1', t.env).stateDir, 'queue', 'dropped.yaml'), 'title: from a file\nprompt: dropped in by hand\n');
    fs.writeFileSync(path.join(runPaths('run1', t.env).stateDir, 'queue', 'broken.yaml'), 'title: [unclosed\n');
    fs.writeFileSync(path.join(runPaths('run1', t.env).stateDir, 'queue', 'other.yml'), 'title: from a file\nprompt: a .yml file\n');
    const a = startAgent(t);
    await waitFor('both runnable tasks completed', async () => {
      const l = await tasks(t);
      return ['dropped', 'other', pid].every((id) => l.find((x) => x.id === id)?.status === 'completed');
    }, 20_000, a);
    await a.stop();
    const queueFiles = fs.readdirSync(path.join(runPaths('run1', t.env).stateDir, 'queue')).filter((n) => n.startsWith('other'));
    assert.deepEqual(queueFiles, ['other.yaml'], 'a .yml file lives on as .yaml');
    assert.deepEqual(await query(t, "SELECT count(*) FROM task_attempts WHERE task_id = 'other'"), [[1]], 'done once, not again and again');
    assert.match(a.output(), /warning: rejected .*broken\.yaml:\d+:\d+: invalid YAML.*; moved to .*\/queue\/rejected\/broken\.yaml$/m);
    const l = await tasks(t);
    assert.equal(l.find((x) => x.id === cid)?.status, 'cancelled');
    const show = JSON.parse(String((await agent(['show', 'run1', pid, '--json'], t)).stdout));
    assert.equal(show.prompt, 'a prompt\nfrom stdin');
    const known = await query(t, "SELECT id, source FROM tasks WHERE id = 'dropped'");
    assert.deepEqual(known, [['dropped', 'file']]);
  } finally {
    t.cleanup();
  }
});

test("the endpoint's API key is not in the actions' environment", { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, { env: [{ action: 'shell', command: 'env > env.txt' }, { action: 'finish', summary: 'x' }] });
    // api_key_env sits under llm:, which scriptedRun wrote.
    const cfg = path.join(t.configDir, 'run1.yaml');
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('llm:\n', 'llm:\n  api_key_env: SW_SECRET_KEY\n'));
    const id = await addTask(t, 'env');
    // The agent has a NOTIFY_SOCKET (as under systemd); its actions must not.
    const n = notifySocket(t);
    await n.ready;
    const a = startAgent(t, 'run1', { SW_SECRET_KEY: 'hunter2', SW_OTHER: 'visible', NOTIFY_SOCKET: n.sock });
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 20_000, a);
    await a.stop();
    assert.ok(n.messages().some((m) => m.msg === 'READY=1'), 'the agent itself had the socket');
    n.stop();
    const env = fs.readFileSync(path.join(ws(t), 'env.txt'), 'utf8');
    assert.match(env, /^SW_OTHER=visible$/m);
    assert.doesNotMatch(env, /hunter2/);
    assert.doesNotMatch(env, /NOTIFY_SOCKET/);
  } finally {
    t.cleanup();
  }
});

test('a second agent on the same run exits 75', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {});
    const a = startAgent(t);
    await waitFor('the first agent is idle', async () => {
      const s = JSON.parse(String((await agent(['status', 'run1', '--json'], t)).stdout || '{}'));
      return s.agent?.running && s.agent.status === 'idle';
    }, 20_000, a);
    const before = treeSnapshot(runPaths('run1', t.env).stateDir);
    const b = await agent(['run', 'run1'], t);
    assert.equal(b.exitCode, 75);
    assert.match(String(b.stderr), /already has an agent running \(pid \d+\)/);
    assert.deepEqual(treeSnapshot(runPaths('run1', t.env).stateDir), before, 'the refused agent changed nothing');
    await a.stop();
  } finally {
    t.cleanup();
  }
});

/** Queue entries that are not tasks, and the error that names each (after the path). */
function dropBadFiles(t: TestEnv): Array<[string, RegExp]> {
  const q = path.join(runPaths('run1', t.env).stateDir, 'queue');
  fs.writeFileSync(path.join(q, 'words.yaml'), 'prompt: [fix, the, build]\nverify: [make, test]\n');
  fs.writeFileSync(path.join(q, 'nul.yaml'), 'prompt: fix\u0000 the build\n');
  fs.writeFileSync(path.join(q, 'deep.yaml'), `prompt: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`);
  fs.writeFileSync(path.join(q, 'big.yaml'), `prompt: ${'x'.repeat(300 * 1024)}\n`);
  fs.mkdirSync(path.join(q, 'dir.yaml'));
  fs.writeFileSync(path.join(t.dir, 'elsewhere.yaml'), 'prompt: not here\n');
  fs.symlinkSync(path.join(t.dir, 'elsewhere.yaml'), path.join(q, 'link.yaml'));
  return [
    ['words', /^:1:9: prompt: expected a string, got a list$/],
    ['nul', /^:1:12: not text: a NUL byte$/],
    ['deep', /^:1:72: nested deeper than 64 levels$/],
    ['big', /^: too big \(300 KiB; a task file may hold at most 256 KiB\)$/],
    ['dir', /^: a directory, not a file$/],
    ['link', /^: a symbolic link, not a file$/],
  ];
}

test('show of a malformed queue file exits 65 with its one-line error; list reports each by name and agrees', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    assert.equal((await agent(['init', 'run1', '-q'], t)).exitCode, 0);
    const good = String((await agent(['add', 'run1', '--title', 'good', 'do good'], t)).stdout).trim();
    const bad = dropBadFiles(t);
    const q = path.join(runPaths('run1', t.env).stateDir, 'queue');
    const l = await agent(['list', 'run1', '--json'], t);
    assert.equal(l.exitCode, 0, String(l.stderr));
    const lj = JSON.parse(String(l.stdout)) as { tasks: Array<{ id: string }>; invalid: Array<{ file: string; error: string }>; rejected: unknown[] };
    assert.deepEqual(lj.tasks.map((x) => x.id), [good], 'only the good task is a task');
    assert.deepEqual(lj.invalid.map((x) => path.basename(x.file)).sort(), bad.map(([id]) => `${id}.yaml`).sort());
    assert.deepEqual(lj.rejected, [], 'list moves nothing');
    for (const [id, re] of bad) {
      const file = path.join(q, `${id}.yaml`);
      const entry = lj.invalid.find((x) => x.file === file);
      assert.ok(entry && entry.error.startsWith(file), `${id}: the error names the file`);
      assert.match(entry.error.slice(file.length), re, id);
      assert.match(String(l.stderr), new RegExp(`^sw-agent: warning: not a task: ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`, 'm'));
      const s = await agent(['show', 'run1', id], t);
      assert.equal(s.exitCode, 65, `${id}: ${s.stderr}`);
      assert.equal(String(s.stdout), '', id);
      assert.equal(String(s.stderr), `sw-agent: ${entry.error}`, `${id}: show says what list says, in one line`);
    }
    assert.doesNotMatch(String(l.stderr), /EISDIR|\[non-scalar\]/);
    assert.equal((await agent(['show', 'run1', good], t)).exitCode, 0);
    assert.equal((await agent(['show', 'run1', 'absent'], t)).exitCode, 66);
    const text = await agent(['list', 'run1'], t);
    assert.equal(text.exitCode, 0);
    assert.equal(String(text.stdout).trim().split('\n').length, 2, 'a header and the good task');
  } finally {
    t.cleanup();
  }
});

test('the agent sets bad queue files aside in queue/rejected/ with their reason, once, and works on; a file still being written is not rejected', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      'from a file': [{ action: 'finish', summary: 'ok' }],
      late: [{ action: 'finish', summary: 'ok' }],
    });
    assert.equal((await agent(['add', 'run1', '--title', 'from a file', 'first'], t)).exitCode, 0);
    const st = runPaths('run1', t.env).stateDir;
    const q = path.join(st, 'queue');
    const rejected = path.join(q, 'rejected');
    const bad = dropBadFiles(t);
    const a = startAgent(t);
    try {
      await waitFor('the agent is working', () => /agent ready/.test(a.output()), 20_000, a);
      // A file written in several goes: invalid until the last, which must not be rejected half-way.
      const late = path.join(q, 'late.yaml');
      fs.writeFileSync(late, 'title: late\nprompt: [unfinished');
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        fs.writeFileSync(late, `title: late\nprompt: [unfinished ${Date.now()}`);
      }
      fs.writeFileSync(late, 'title: late\nprompt: written at last\n');
      await waitFor('every bad file set aside', () => bad.every(([id]) => fs.existsSync(path.join(rejected, `${id}.yaml.reason`))), 20_000, a);
      await waitFor('the late task completed', async () => (await tasks(t)).find((x) => x.id === 'late')?.status === 'completed', 20_000, a);
    } finally {
      await a.stop();
    }
    assert.equal(fs.existsSync(path.join(rejected, 'late.yaml')), false, 'the file being written was left alone');
    for (const [id, re] of bad) {
      const file = path.join(q, `${id}.yaml`);
      assert.equal(fs.existsSync(file), false, `${id}.yaml left the queue`);
      const reason = fs.readFileSync(path.join(rejected, `${id}.yaml.reason`), 'utf8');
      assert.match(reason, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z ${id}\\.yaml`));
      assert.match(reason.trim().replace(/^\S+ [^:]+/, ''), re);
      const said = a.output().split('\n').filter((line) => line.includes(`warning: rejected ${file}`));
      assert.equal(said.length, 1, `${id}: said once: ${said.join('\n')}`);
      assert.match(said[0] as string, new RegExp(`; moved to ${path.join(rejected, `${id}.yaml`).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`));
    }
    const evs = (await query(t, "SELECT data FROM events WHERE type = 'task_rejected'")).map((r) => JSON.parse(String(r[0])) as { file: string });
    assert.deepEqual(evs.map((e) => e.file).sort(), bad.map(([id]) => `queue/${id}.yaml`).sort());
    // The words of a task with a list for its prompt are not lost, and no list ran as its verify command.
    assert.equal(fs.readFileSync(path.join(rejected, 'words.yaml'), 'utf8'), 'prompt: [fix, the, build]\nverify: [make, test]\n');
    assert.deepEqual(await query(t, "SELECT id FROM tasks WHERE id IN ('words', 'nul', 'deep', 'big', 'dir', 'link')"), []);
    const all: string[] = [];
    (function walk(d: string): void {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.name === '.git') continue;
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.isFile()) all.push(fs.readFileSync(path.join(d, e.name), 'utf8'));
      }
    })(st);
    assert.equal(all.some((c) => c.includes('[non-scalar]')), false);
    const l = await tasks(t);
    assert.deepEqual(l.map((x) => x.status), ['completed', 'completed']);
  } finally {
    t.cleanup();
  }
});

test('a bad scripted-backend file: run exits 78 naming the file (and line), never hangs', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const f = (name: string, text: string): string => {
      const p = path.join(t.dir, name);
      fs.writeFileSync(p, text);
      return p;
    };
    const fifo = path.join(t.dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    const big = path.join(t.dir, 'big.yaml');
    fs.writeFileSync(big, 'tasks: {}\n');
    fs.truncateSync(big, 17 * 1024 * 1024);
    const good = f('good.yaml', 'tasks:\n  x:\n    - {action: finish, summary: ok}\n');
    const link = path.join(t.dir, 'link.yaml');
    fs.symlinkSync(good, link);
    const cases: Array<[string, RegExp]> = [
      [fifo, /fifo\.yaml: a FIFO, not a file$/],
      ['/dev/null', /\/dev\/null: a character device, not a file$/],
      [t.dir, /: a directory, not a file$/],
      [big, /big\.yaml: too big \(17\.0 MiB; a script may hold at most 16\.0 MiB\)$/],
      [f('deep.yaml', `tasks:\n  x: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`), /deep\.yaml:2:68: nested deeper than 64 levels$/],
      [f('nul.yaml', 'tasks:\n  x: []\n\u0000'), /nul\.yaml:3:1: not text: a NUL byte$/],
      [f('bad.yaml', 'tasks:\n  x: [\n'), /bad\.yaml:3:1: invalid YAML: /],
      [f('shape.yaml', 'tasks: [a, b]\n'), /shape\.yaml:1:1: a script is \{tasks: \{<task title>: \[action, \.\.\.\]\}\}$/],
      [f('entry.yaml', 'tasks:\n  x:\n    - shell\n'), /entry\.yaml:3:7: x: expected an action such as \{action: shell, command: \.\.\.\}$/],
      [f('wait.yaml', 'tasks:\n  x:\n    - {action: shell, command: "true", delay_ms: 99999999999999}\n'), /wait\.yaml:3:50: x: delay_ms: expected an integer from 0 to 2147483647, got 99999999999999$/],
      [f('stall.yaml', 'tasks:\n  x:\n    - action: shell\n      stall_ms: soon\n'), /stall\.yaml:4:17: x: stall_ms: expected an integer from 0 to 2147483647, got "soon"$/],
    ];
    for (const [script, re] of cases) {
      fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), `llm:\n  backend: scripted\n  script: ${script}\n`);
      const r = await agent(['run', 'run1'], t, { timeout: 15_000 });
      assert.equal(r.timedOut, false, `${script}: it hung`);
      assert.equal(r.exitCode, 78, `${script}: ${r.stderr}`);
      assert.match(String(r.stderr).trim(), re, script);
      assert.equal(String(r.stderr).trim().split('\n').length, 1, `${script}: one line`);
    }
    assert.deepEqual(fs.readdirSync(t.stateDir), [], 'a refused start changes nothing');
    // A link to a good script is followed: scripts are named by a human, often through links.
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), `llm:\n  backend: scripted\n  script: ${link}\n`);
    const ok = startAgent(t);
    try {
      await waitFor('the agent is ready', () => /agent ready/.test(ok.output()), 20_000, ok);
    } finally {
      assert.equal(await ok.stop(), 0);
    }
  } finally {
    t.cleanup();
  }
});

test('show writes what a model or a task file holds with its control characters escaped, never raw to the terminal', { timeout: 30_000 }, async () => {
  const t = makeEnv();
  try {
    assert.equal((await agent(['init', 'run1'], t)).exitCode, 0);
    const id = String((await agent(['add', 'run1', '--title', 'esc', 'clear the screen: \u001b[2J and ring \u0007\ttab'], t)).stdout).trim();
    const file = path.join(runPaths('run1', t.env).stateDir, 'transcripts', `${id}.jsonl`);
    const ts = new Date().toISOString();
    const lines = [
      { type: 'attempt', attempt: 1, ts },
      { type: 'step', attempt: 1, step: 1, ts, action: { action: 'shell', command: 'printf "\u001b]0;pwned\u0007"' }, observation: { ok: false, exit_code: 1, signal: null, output: '', cut: 0, timed_out: false, duration_ms: 1, error: 'bad\u001b[31mred' } },
    ];
    fs.writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const r = await agent(['show', 'run1', id], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const out = String(r.stdout);
    assert.doesNotMatch(out, /[\u0000-\u0008\u000b-\u001f\u007f]/, 'no raw control character');
    assert.match(out, /clear the screen: \\x1b\[2J and ring \\x07\ttab/);
    assert.match(out, /step 1: .*\\x1b\]0;pwned\\x07.* -> error: bad\\x1b\[31mred/);
  } finally {
    t.cleanup();
  }
});
