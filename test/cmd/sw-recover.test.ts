import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, git, makeEnv, sw, treeSnapshot as fullSnapshot, writeConfig, type TestEnv } from '../helpers.js';
import { addTask, checkpoint, cleanSession, crashedSession, createRun, events, log, paths, readTask, writeTask } from '../fixtures/runs.js';
import { query } from '../fixtures/agent.js';

/** Files under dir, without the lock files (their holder notes change with every lock taken). */
const treeSnapshot = (dir: string) => new Map([...fullSnapshot(dir)].filter(([k]) => !/(^|\/)locks\/.+\.lock$/.test(k)));
const rec = (args: string[], t: TestEnv, opts = {}) => sw('sw-recover', args, t, opts);
const NO_WAIT = 'recovery:\n  backoff_base: 0s\n';

async function recJson(t: TestEnv, args: string[] = []): Promise<Record<string, unknown> & { reconciled: Array<{ task: string; before: unknown; after: unknown; rule: string }>; rejected: Array<{ id: string; reason: string }> }> {
  const r = await rec(['run1', '--json', ...args], t);
  assert.equal(r.exitCode, 0, `sw-recover: ${r.stderr}`);
  return JSON.parse(String(r.stdout));
}

async function recoveries(t: TestEnv): Promise<unknown[][]> {
  const s = await log(t).snapshot();
  try {
    return s.db.exec('SELECT session_id, reason, action, checkpoint_id, ok FROM recoveries ORDER BY pos')[0]?.values ?? [];
  } finally {
    s.db.close();
  }
}

test('usage errors exit 64 and name the value', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const h = await rec(['--help'], t);
    assert.equal(h.exitCode, 0);
    assert.match(String(h.stdout), /^Usage: sw-recover \[options\] <run>/);
    for (const [args, re] of [
      [[], /missing required argument 'run'/],
      [['../x'], /invalid run name '\.\.\/x'/],
      [['a/b'], /invalid run name/],
      [['x'.repeat(200)], /invalid run name/],
      [['run1', '--checkpoint', 'zz!'], /invalid checkpoint id 'zz!'/],
      [['run1', '--record-exit', '--dry-run'], /--record-exit goes alone/],
      [['run1', '--bogus'], /unknown option '--bogus'/],
    ] as Array<[string[], RegExp]>) {
      const r = await rec(args, t);
      assert.equal(r.exitCode, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(String(r.stderr), re);
    }
    assert.deepEqual(fs.readdirSync(t.stateDir), []);
  } finally {
    t.cleanup();
  }
});

test('no run, no session, a clean stop: nothing to do, exit 0', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    // No such run: 66 (a typo never creates one).
    let r = await rec(['run1'], t);
    assert.equal(r.exitCode, 66, String(r.stderr));
    assert.match(String(r.stderr), /no such run 'run1'/);
    // A run with a config and no state yet (its first start is to come): nothing to do.
    writeConfig(t, 'run1', '');
    r = await rec(['run1'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.match(String(r.stdout), /no state yet: nothing to recover/);
    assert.deepEqual(fs.readdirSync(t.stateDir), [], 'recover does not create a run');
    await createRun(t);
    r = await rec(['run1'], t);
    assert.match(String(r.stdout), /no session has run yet/);
    cleanSession(t, 's1', '2026-11-21T08:00:00Z', '2026-11-21T09:00:00Z');
    const before = treeSnapshot(paths(t).runDir);
    const j = await recJson(t);
    assert.equal(j.action, 'none');
    assert.equal(j.detail, 'session s1 ended cleanly: nothing to recover');
    assert.deepEqual(treeSnapshot(paths(t).runDir), before, 'a clean stop changes nothing');
    assert.deepEqual(await recoveries(t), []);
  } finally {
    t.cleanup();
  }
});

test('the reconciliation matrix, row by row, through the command', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    // completed in the log (the queue file was not updated before the crash)
    addTask(t, { id: 'done', status: 'in_progress', attempt: 1 });
    events(t, [{ t: 'task_started', task: 'done', attempt: 1, session: 's1' }, { t: 'task_outcome', task: 'done', attempt: 1, outcome: 'completed' }]);
    // in progress: started, no outcome
    addTask(t, { id: 'inprog', status: 'in_progress', attempt: 2 });
    events(t, [{ t: 'task_started', task: 'inprog', attempt: 1, session: 's1' }, { t: 'task_outcome', task: 'inprog', attempt: 1, outcome: 'failed' }, { t: 'task_started', task: 'inprog', attempt: 2, session: 's1' }]);
    fs.writeFileSync(path.join(paths(t).stateDir, 'transcripts', 'inprog.jsonl'), '{"step":1,"attempt":2}\n{"step":2,"attempt":2}\n');
    // failed with attempts left
    addTask(t, { id: 'retry', status: 'in_progress', attempt: 1, max_attempts: 3 });
    events(t, [{ t: 'task_started', task: 'retry', attempt: 1, session: 's1' }, { t: 'task_outcome', task: 'retry', attempt: 1, outcome: 'failed', reason: 'verify failed' }]);
    // failed with attempts exhausted
    addTask(t, { id: 'spent', status: 'in_progress', attempt: 2, max_attempts: 2 });
    events(t, [{ t: 'task_started', task: 'spent', attempt: 2, session: 's1' }, { t: 'task_outcome', task: 'spent', attempt: 2, outcome: 'failed', reason: 'verify failed' }]);
    // pending, never started
    addTask(t, { id: 'waiting', status: 'pending', attempt: 1 });
    // known to the log, missing from the queue (it was in progress)
    addTask(t, { id: 'missing', status: 'in_progress', attempt: 1 });
    events(t, [{ t: 'task_started', task: 'missing', attempt: 1, session: 's1' }]);
    fs.rmSync(path.join(paths(t).stateDir, 'queue', 'missing.yaml'));

    const j = await recJson(t);
    assert.equal(j.action, 'reconcile');
    assert.equal(j.session, 's1');
    assert.equal(j.reason, 'unknown');
    const by = new Map(j.reconciled.map((c) => [c.task, c]));
    assert.deepEqual(by.get('done'), { task: 'done', before: { status: 'in_progress', attempt: 1 }, after: { status: 'completed', attempt: 1 }, rule: 'completed' });
    assert.deepEqual(by.get('inprog'), { task: 'inprog', before: { status: 'in_progress', attempt: 2 }, after: { status: 'pending', attempt: 2 }, rule: 'in progress' });
    assert.deepEqual(by.get('retry'), { task: 'retry', before: { status: 'in_progress', attempt: 1 }, after: { status: 'pending', attempt: 2 }, rule: 'failed, attempts left' });
    assert.deepEqual(by.get('spent'), { task: 'spent', before: { status: 'in_progress', attempt: 2 }, after: { status: 'failed', attempt: 2 }, rule: 'failed, attempts exhausted' });
    assert.equal(by.has('waiting'), false, 'pending: unchanged');
    assert.deepEqual(by.get('missing')?.after, { status: 'pending', attempt: 1 });
    assert.equal(by.get('missing')?.before, null);
    assert.equal(j.requeued, 2);
    // The files say the same.
    assert.equal(readTask(t, 'done')?.status, 'completed');
    assert.equal(readTask(t, 'inprog')?.status, 'pending');
    assert.equal(readTask(t, 'inprog')?.attempt, '2');
    assert.equal(readTask(t, 'retry')?.attempt, '2');
    assert.equal(readTask(t, 'spent')?.status, 'failed');
    assert.equal(readTask(t, 'spent')?.reason, 'verify failed');
    assert.equal(readTask(t, 'waiting')?.status, 'pending');
    assert.equal(readTask(t, 'missing')?.prompt, 'do missing');
    assert.equal(
      fs.readFileSync(path.join(paths(t).stateDir, 'transcripts', 'inprog.jsonl'), 'utf8'),
      '{"step":1,"attempt":2}\n{"step":2,"attempt":2}\n',
      'the transcript is kept so the agent resumes at its next step',
    );
    // Recorded, with a recovery checkpoint, once.
    const recs = await recoveries(t);
    assert.equal(recs.length, 1);
    assert.deepEqual(recs[0]?.slice(0, 3), ['s1', 'unknown', 'reconcile']);
    const list = JSON.parse(String((await sw('sw-checkpoint', ['list', 'run1', '--kind', 'recovery', '--json'], t)).stdout)) as { checkpoints: Array<{ id: string; message: string }> };
    assert.equal(list.checkpoints.length, 1);
    assert.equal(list.checkpoints[0]?.id, j.recovery_checkpoint);
    assert.match(list.checkpoints[0]?.message ?? '', /recovery of session s1/);
    // Run again: nothing to do, nothing changes.
    const before = treeSnapshot(paths(t).stateDir);
    const again = await recJson(t);
    assert.equal(again.action, 'none');
    assert.match(String(again.detail), /already recovered/);
    assert.deepEqual(treeSnapshot(paths(t).stateDir), before);
  } finally {
    t.cleanup();
  }
});

test('--dry-run says what it would do and changes nothing', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    addTask(t, { id: 'x', status: 'in_progress', attempt: 1 });
    events(t, [{ t: 'task_started', task: 'x', attempt: 1, session: 's1' }, { t: 'task_outcome', task: 'x', attempt: 1, outcome: 'completed' }]);
    fs.writeFileSync(path.join(paths(t).stateDir, 'queue', 'junk.yaml'), '\u0000\u0001garbage: [');
    fs.writeFileSync(path.join(paths(t).stateDir, 'agent.json'), '{"status": "runn');
    const before = treeSnapshot(paths(t).runDir);
    const r = await rec(['run1', '--dry-run', '--json'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const j = JSON.parse(String(r.stdout));
    assert.equal(j.dry_run, true);
    assert.equal(j.action, 'restore');
    assert.ok(j.checkpoint);
    assert.ok((j.repairs as string[]).some((x) => /junk\.yaml:1:1: not text: a NUL byte; would move it to .*queue\/rejected\/junk\.yaml$/.test(x)), String(j.repairs));
    assert.deepEqual(treeSnapshot(paths(t).runDir), before);
  } finally {
    t.cleanup();
  }
});

/** Queue entries that are not tasks, and the error that names each. */
function dropBadFiles(t: TestEnv): Array<[string, RegExp]> {
  const q = path.join(paths(t).stateDir, 'queue');
  fs.writeFileSync(path.join(q, 'deep.yaml'), `prompt: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`);
  fs.writeFileSync(path.join(q, 'words.yaml'), 'prompt: [fix, the, build]\nverify: [make, test]\n');
  fs.writeFileSync(path.join(q, 'nul.yaml'), 'prompt: fix\u0000 the build\n');
  fs.writeFileSync(path.join(q, 'big.yaml'), `prompt: ${'x'.repeat(300 * 1024)}\n`);
  fs.mkdirSync(path.join(q, 'dir.yaml'));
  fs.writeFileSync(path.join(t.dir, 'elsewhere.yaml'), 'prompt: not here\n');
  fs.symlinkSync(path.join(t.dir, 'elsewhere.yaml'), path.join(q, 'link.yaml'));
  return [
    ['deep.yaml', /deep\.yaml:1:72: nested deeper than 64 levels$/],
    ['words.yaml', /words\.yaml:1:9: prompt: expected a string, got a list$/],
    ['nul.yaml', /nul\.yaml:1:12: not text: a NUL byte$/],
    ['big.yaml', /big\.yaml: too big \(300 KiB; a task file may hold at most 256 KiB\)$/],
    ['dir.yaml', /dir\.yaml: a directory, not a file$/],
    ['link.yaml', /link\.yaml: a symbolic link, not a file$/],
  ];
}

test('bad queue files (20,000 nested brackets, a list for a string, NUL, too big, a directory, a link): --dry-run reports them; recovery sets them aside and keeps state/', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'good', prompt: 'the good task' });
    await checkpoint(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    events(t, [{ t: 'task_started', task: 'good', attempt: 1, session: 's1' }]);
    writeTask(t, { id: 'good', status: 'in_progress', prompt: 'the good task, edited after the checkpoint' });
    const bad = dropBadFiles(t);
    const before = treeSnapshot(paths(t).runDir);
    // The 20,000 brackets drove the YAML parser out of stack, then V8's regexp compiler out of memory: exit 134.
    const dry = await rec(['run1', '--dry-run', '--json'], t);
    assert.equal(dry.exitCode, 0, String(dry.stderr).slice(0, 2000));
    const dj = JSON.parse(String(dry.stdout));
    assert.equal(dj.action, 'reconcile', 'a bad queue file does not make state/ invalid');
    for (const [name, re] of bad) {
      assert.ok((dj.repairs as string[]).some((x) => x.includes(`/queue/${name}`) && re.test(x.replace(/; would move it to .*$/, ''))), `${name}: ${dj.repairs}`);
      assert.match(String(dry.stderr), new RegExp(`warning: rejected .*/queue/${name.replace('.', '\\.')}`));
    }
    assert.deepEqual(treeSnapshot(paths(t).runDir), before, 'a dry run changes nothing');

    const j = await recJson(t);
    assert.equal(j.action, 'reconcile', 'not restore: good state is not rolled back for bad files');
    assert.deepEqual(j.forensics, []);
    assert.equal(readTask(t, 'good')?.prompt, 'the good task, edited after the checkpoint');
    assert.equal(readTask(t, 'good')?.status, 'pending', 'reconciled: it was in progress, it resumes');
    const rejected = path.join(paths(t).stateDir, 'queue', 'rejected');
    for (const [name, re] of bad) {
      assert.equal(fs.existsSync(path.join(paths(t).stateDir, 'queue', name)), false, `${name} left the queue`);
      assert.ok(fs.lstatSync(path.join(rejected, name)), `${name} is in queue/rejected/`);
      const reason = fs.readFileSync(path.join(rejected, `${name}.reason`), 'utf8');
      assert.match(reason, /^\d{4}-\d\d-\d\dT\S+Z /, 'when');
      assert.match(reason.trim(), re, 'why');
      assert.equal(reason.split('\n').length, 2, 'one line');
    }
    assert.equal(fs.lstatSync(path.join(rejected, 'link.yaml')).isSymbolicLink(), true, 'moved as it is, not followed');
    const s = await log(t).snapshot();
    try {
      const evs = (s.db.exec("SELECT data FROM events WHERE type = 'task_rejected' ORDER BY pos")[0]?.values ?? []).map((v) => JSON.parse(String(v[0])) as { file: string; to: string; reason: string });
      assert.deepEqual(evs.map((e) => e.file).sort(), bad.map(([n]) => `queue/${n}`).sort());
      assert.ok(evs.every((e) => e.to === `queue/rejected/${path.basename(e.file)}` && e.reason.startsWith(path.basename(e.file))), JSON.stringify(evs));
    } finally {
      s.db.close();
    }
    // sw-agent list agrees: one task, nothing invalid left, six set aside.
    const l = await sw('sw-agent', ['list', 'run1', '--json'], t);
    const lj = JSON.parse(String(l.stdout));
    assert.deepEqual(lj.tasks.map((x: { id: string }) => x.id), ['good']);
    assert.deepEqual(lj.invalid, []);
    assert.equal(lj.rejected.length, bad.length);
    assert.match(String(l.stderr), /warning: 6 files set aside in .*queue\/rejected/);
    // Recovered once: run again, nothing to do.
    assert.equal((await recJson(t)).action, 'none');
  } finally {
    t.cleanup();
  }
});

test('truncated and garbage queue files are set aside: state/ is kept, the task comes back from the log', { timeout: 60_000 }, async () => {
  for (const damage of ['truncated', 'garbage'] as const) {
    const t = makeEnv();
    try {
      writeConfig(t, 'run1', NO_WAIT);
      await createRun(t);
      addTask(t, { id: 'old', status: 'pending' });
      await checkpoint(t);
      crashedSession(t, 's1', '2026-11-21T08:00:00Z');
      addTask(t, { id: 'newer', status: 'pending', prompt: 'added after the checkpoint' });
      events(t, [{ t: 'task_started', task: 'old', attempt: 1, session: 's1' }]);
      writeTask(t, { id: 'old', status: 'in_progress' });
      const f = path.join(paths(t).stateDir, 'queue', 'old.yaml');
      if (damage === 'truncated') fs.writeFileSync(f, fs.readFileSync(f, 'utf8').slice(0, 25));
      else fs.writeFileSync(f, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x7b, 0x7d, 0x3a]));
      const r = await rec(['run1', '--json'], t);
      assert.equal(r.exitCode, 0, String(r.stderr));
      const j = JSON.parse(String(r.stdout));
      assert.equal(j.action, 'reconcile', damage);
      assert.deepEqual(j.forensics, [], 'nothing restored');
      assert.ok(j.repairs.some((p: string) => p.includes('old.yaml') && p.includes('moved it to')), `${damage}: the repair names the file: ${j.repairs}`);
      assert.match(String(r.stderr), /warning: rejected .*\/queue\/old\.yaml/);
      assert.match(fs.readFileSync(path.join(paths(t).stateDir, 'queue', 'rejected', 'old.yaml.reason'), 'utf8'), damage === 'truncated' ? / old\.yaml:\d+:\d+: / : / old\.yaml:1:5: not text: a NUL byte\n$/);
      const old = j.reconciled.find((c: { task: string }) => c.task === 'old');
      assert.match(old.rule, /^restored from the task log/);
      assert.equal(readTask(t, 'old')?.status, 'pending');
      assert.equal(readTask(t, 'old')?.attempt, '1', 'in progress at attempt 1: resumes at attempt 1');
      assert.equal(readTask(t, 'newer')?.prompt, 'added after the checkpoint', 'state/ kept');
      assert.equal(fs.existsSync(path.join(paths(t).runDir, 'recovery.json')), false, 'the marker is gone');
    } finally {
      t.cleanup();
    }
  }
});

test('flipped bytes in the newest checkpoint: it is rejected by name, the one before is restored', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'a' });
    const older = await checkpoint(t);
    fs.writeFileSync(path.join(paths(t).stateDir, 'memory', 'only-in-newest.md'), 'something only the newest checkpoint has\n');
    const newest = await checkpoint(t);
    const repo = path.join(paths(t).runDir, 'state.git');
    const blob = String((await git(paths(t).stateDir, ['rev-parse', `refs/checkpoints/${newest}:memory/only-in-newest.md`], repo)).stdout).trim();
    const obj = path.join(repo, 'objects', blob.slice(0, 2), blob.slice(2));
    fs.chmodSync(obj, 0o644);
    const b = fs.readFileSync(obj);
    b[Math.floor(b.length / 2)] = (b[Math.floor(b.length / 2)] as number) ^ 0xff;
    fs.writeFileSync(obj, b);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    fs.writeFileSync(path.join(paths(t).stateDir, 'agent.json'), '{"status": "runn');
    const j = await recJson(t);
    assert.equal(j.action, 'restore');
    assert.equal(j.checkpoint, older);
    assert.equal(j.rejected[0]?.id, newest);
    assert.match(j.rejected[0]?.reason ?? '', new RegExp(`state object ${blob.slice(0, 12)}`));
    assert.ok((j.problems as string[]).some((p) => p.includes('agent.json') && p.includes('does not parse')));
    assert.equal(JSON.parse(fs.readFileSync(path.join(paths(t).stateDir, 'agent.json'), 'utf8')).status, 'stopped');
  } finally {
    t.cleanup();
  }
});

test('a deleted state/.git is repaired; the checkpoints were never in it', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'a' });
    await checkpoint(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    fs.rmSync(path.join(paths(t).stateDir, '.git'), { recursive: true, force: true });
    const j = await recJson(t);
    assert.equal(j.action, 'reconcile');
    assert.match((j.repairs as string[]).join('\n'), /state\/\.git: missing or wrong; pointed at \.\.\/state\.git again/);
    const l = await git(paths(t).stateDir, ['log', '--oneline']);
    assert.equal(l.exitCode, 0, String(l.stderr));
    assert.equal(String(l.stdout).trim().split('\n').length, 3, 'git log in state/ shows the checkpoints again');
  } finally {
    t.cleanup();
  }
});

test('a torn last task-log record is dropped and recovery goes on', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'a', status: 'in_progress' });
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    events(t, [{ t: 'task_started', task: 'a', attempt: 1, session: 's1' }]);
    fs.appendFileSync(paths(t).tasklogJournal, '0badc0de {"t":"task_outcome","task":"a","outc');
    const j = await recJson(t);
    assert.equal(j.action, 'reconcile');
    assert.ok((j.notes as string[]).some((n) => /torn last record/.test(n)));
    assert.equal(readTask(t, 'a')?.status, 'pending', 'the torn outcome was never read as data');
    const v = await sw('sw-checkpoint', ['verify', 'run1'], t);
    assert.equal(v.exitCode, 0, String(v.stdout));
  } finally {
    t.cleanup();
  }
});

test('a torn transcript line is dropped, a garbled one is a problem', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    const tr = path.join(paths(t).stateDir, 'transcripts', 'a.jsonl');
    fs.writeFileSync(tr, '{"step":1}\n{"step":2}\n{"step":3,"out');
    await checkpoint(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    const j = await recJson(t);
    assert.equal(j.action, 'reconcile');
    assert.equal(fs.readFileSync(tr, 'utf8'), '{"step":1}\n{"step":2}\n');
    crashedSession(t, 's2', '2026-11-21T09:00:00Z');
    fs.writeFileSync(tr, '{"step":1}\nnot json\n{"step":3}\n');
    const j2 = await recJson(t);
    assert.equal(j2.action, 'restore');
    assert.ok((j2.problems as string[]).some((p) => p.endsWith('a.jsonl:2: not JSON')), String(j2.problems));
  } finally {
    t.cleanup();
  }
});

test('killed between recording an outcome and ending the transcript: the task is placed by the log and its transcript ended from it', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'a', status: 'in_progress' });
    const tr = path.join(paths(t).stateDir, 'transcripts', 'a.jsonl');
    fs.writeFileSync(tr, `${JSON.stringify({ type: 'attempt', attempt: 1, ts: '2026-11-21T08:01:00Z', session: 's1' })}\n`);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    events(t, [
      { t: 'task_started', task: 'a', attempt: 1, session: 's1' },
      { t: 'task_outcome', task: 'a', attempt: 1, outcome: 'completed', steps: 1, session: 's1' },
    ]);
    const j = await recJson(t);
    assert.equal(readTask(t, 'a')?.status, 'completed');
    assert.ok((j.repairs as string[]).includes('transcript of task a: the end of attempt 1 (completed) written from the task log'), JSON.stringify(j.repairs));
    const lines = fs.readFileSync(tr, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual([lines.length, lines[1]?.type, lines[1]?.outcome, lines[1]?.restored], [2, 'end', 'completed', 'from the task log']);
    // The run's memory lacked the outcome too (it is written right after the log's record): written from it.
    assert.ok((j.repairs as string[]).includes('memory: the outcome of task a attempt 1 (completed) written from the task log'), JSON.stringify(j.repairs));
    const outcomes = fs.readFileSync(path.join(paths(t).stateDir, 'memory', 'outcomes.md'), 'utf8');
    // When the log says it ended, not when the recovery ran.
    const ended = (await query(t, "SELECT ended_at FROM task_attempts WHERE task_id = 'a'"))[0]?.[0] as number;
    assert.ok(outcomes.endsWith(`\n- ${new Date(ended).toISOString().slice(0, 16)}Z task a attempt 1: done in 1 step: written by sw-recover from the task log\n`), outcomes);
  } finally {
    t.cleanup();
  }
});

test('killed after the memory had the outcome but before the transcript did: the transcript is ended, the memory left as it is', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'a', status: 'in_progress' });
    const tr = path.join(paths(t).stateDir, 'transcripts', 'a.jsonl');
    fs.writeFileSync(tr, `${JSON.stringify({ type: 'attempt', attempt: 1, ts: '2026-11-21T08:01:00Z', session: 's1' })}\n`);
    const mem = path.join(paths(t).stateDir, 'memory', 'outcomes.md');
    fs.mkdirSync(path.dirname(mem), { recursive: true });
    fs.writeFileSync(mem, '# How each attempt ended; newest last. Edit freely.\n- 2026-11-21T08:02Z task a attempt 1: failed in 3 steps (verify exit 1): expected 6, got 5\n');
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    events(t, [
      { t: 'task_started', task: 'a', attempt: 1, session: 's1' },
      { t: 'task_outcome', task: 'a', attempt: 1, outcome: 'failed', reason: 'verify failed: exit status 1', steps: 3, session: 's1' },
    ]);
    const j = await recJson(t);
    assert.ok((j.repairs as string[]).some((r) => r.startsWith('transcript of task a: the end of attempt 1 (failed)')), JSON.stringify(j.repairs));
    assert.ok(!(j.repairs as string[]).some((r) => r.startsWith('memory:')), JSON.stringify(j.repairs));
    assert.equal(fs.readFileSync(mem, 'utf8').split('\n').filter((l) => l.startsWith('- ')).length, 1);
  } finally {
    t.cleanup();
  }
});

test('no checkpoint at all and broken state: a fresh start, said loudly, tasks back from the log', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    addTask(t, { id: 'keepme', prompt: 'survives' });
    // Remove every checkpoint, then break state/.
    const repo = path.join(paths(t).runDir, 'state.git');
    fs.rmSync(repo, { recursive: true, force: true });
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    fs.writeFileSync(path.join(paths(t).stateDir, 'run.yaml'), 'run: someone-else\n');
    const r = await rec(['run1', '--json'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const j = JSON.parse(String(r.stdout));
    assert.equal(j.action, 'fresh');
    assert.match(String(r.stderr), /warning: No checkpoint can be used: starting state\/ afresh from the config/);
    assert.equal(readTask(t, 'keepme')?.prompt, 'survives');
    assert.match(fs.readFileSync(path.join(paths(t).stateDir, 'run.yaml'), 'utf8'), /^run: run1$/m);
    const text = await rec(['run1'], t);
    assert.equal(text.exitCode, 0);
    const l = await sw('sw-checkpoint', ['list', 'run1', '--json'], t);
    assert.equal(JSON.parse(String(l.stdout)).checkpoints.length, 1, 'a recovery checkpoint in the new state.git');
  } finally {
    t.cleanup();
  }
});

test('a config that no longer parses: exit 78, nothing changed', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await createRun(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    const f = writeConfig(t, 'run1', 'recovery:\n  max_failures: lots\n');
    const before = treeSnapshot(paths(t).runDir);
    const r = await rec(['run1'], t);
    assert.equal(r.exitCode, 78);
    assert.equal(String(r.stderr), `sw-recover: ${f}:2:17: recovery.max_failures: expected an integer from 1 to 1000, got "lots"`);
    writeConfig(t, 'run1', 'recovery:\n  backoff_base: 2m\n  backoff_max: 1m\n');
    const r2 = await rec(['run1'], t);
    assert.equal(r2.exitCode, 78);
    assert.match(String(r2.stderr), /:2:17: recovery\.backoff_base: must not be more than recovery\.backoff_max/);
    assert.deepEqual(treeSnapshot(paths(t).runDir), before);
  } finally {
    t.cleanup();
  }
});

test('a running agent: exit 75, nothing changed', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await createRun(t);
    crashedSession(t, 's1', '2026-11-21T08:00:00Z');
    const lockFile = path.join(paths(t).runDir, 'locks', 'agent.lock');
    const holder = execa(process.execPath, [path.join(DIST, 'test/fixtures/hold-lock.js'), lockFile], { reject: false, buffer: false });
    await new Promise<void>((res) => holder.stdout?.once('data', () => res()));
    const before = treeSnapshot(paths(t).stateDir);
    for (const args of [['run1'], ['run1', '--checkpoint', 'latest']]) {
      const r = await rec(args, t);
      assert.equal(r.exitCode, 75, args.join(' '));
      assert.match(String(r.stderr), new RegExp(`run 'run1' has its agent running \\(pid ${holder.pid}\\); stop it first`));
    }
    assert.deepEqual(treeSnapshot(paths(t).stateDir), before);
    holder.kill('SIGKILL');
    await holder;
  } finally {
    t.cleanup();
  }
});

test('backoff: 1 s, 2 s, 4 s ... from the crash history, and it really waits', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', 'recovery:\n  backoff_base: 150ms\n  backoff_max: 600ms\n  max_failures: 50\n');
    await createRun(t);
    const delays: number[] = [];
    // Doubling, then held at backoff_max.
    for (let i = 0; i < 4; i++) {
      crashedSession(t, `s${i}`, new Date(Date.now() - (200 - i) * 60_000).toISOString());
      const start = Date.now();
      const r = await rec(['run1', '--json'], t);
      const took = Date.now() - start;
      assert.equal(r.exitCode, 0, String(r.stderr));
      const j = JSON.parse(String(r.stdout));
      delays.push(j.backoff_ms);
      assert.equal(j.crashes, i + 1);
      assert.ok(took >= j.backoff_ms, `waited ${took} ms for a ${j.backoff_ms} ms backoff`);
    }
    assert.deepEqual(delays, [150, 300, 600, 600]);
    // A session that stayed up an hour resets the count.
    crashedSession(t, 'long', new Date(Date.now() - 65 * 60_000).toISOString(), new Date(Date.now() - 1000).toISOString());
    const j = JSON.parse(String((await rec(['run1', '--json', '--dry-run'], t)).stdout));
    assert.equal(j.crashes, 1);
    assert.equal(j.backoff_ms, 150);
  } finally {
    t.cleanup();
  }
});

test('backoff under systemd 254+ (SELFWARE_BACKOFF=systemd from restart-steps.conf): systemd spaces the restarts, sw-recover does not sleep too', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', 'recovery:\n  backoff_base: 20s\n  max_failures: 50\n');
    await createRun(t);
    crashedSession(t, 's1', new Date(Date.now() - 60_000).toISOString());
    const start = Date.now();
    const r = await sw('sw-recover', ['run1'], t, { env: { SELFWARE_BACKOFF: 'systemd' } });
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.ok(Date.now() - start < 10_000, `took ${Date.now() - start} ms`);
    assert.match(String(r.stderr), /sw-recover: not waiting 20s \(1 crash in a row\): systemd spaces the restarts \(RestartSteps=\)/);
  } finally {
    t.cleanup();
  }
});

test('escalation after N crashes in the window: exit 79, recorded, and a fresh count after it', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', 'recovery:\n  backoff_base: 0s\n  max_failures: 3\n');
    await createRun(t);
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      crashedSession(t, `s${i}`, new Date(Date.now() - (5 - i) * 60_000).toISOString());
      const r = await rec(['run1'], t);
      codes.push(r.exitCode ?? -1);
      if (i === 2) assert.match(String(r.stderr), /escalating: 3 crashes and 0 failed recoveries in the last 60 min \(limit 3\); run 'run1' will not be restarted until someone starts it again/);
    }
    assert.deepEqual(codes, [0, 0, 79]);
    const s = await log(t).snapshot();
    assert.equal(s.db.exec('SELECT count(*) FROM escalations')[0]?.values[0]?.[0], 1);
    s.db.close();
    crashedSession(t, 's3', new Date(Date.now() - 60_000).toISOString());
    const after = await rec(['run1'], t);
    assert.equal(after.exitCode, 0, 'a human started it again: the count starts over');
  } finally {
    t.cleanup();
  }
});

test('a recovery killed before it finished is a failed recovery: a run whose agent dies in its own recovery escalates', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', 'recovery:\n  backoff_base: 0s\n  max_failures: 3\n');
    await createRun(t);
    addTask(t, { id: 'a', status: 'in_progress' });
    crashedSession(t, 's1', new Date(Date.now() - 120_000).toISOString());
    // Two starts, each killed in its recovery of s1: the first left the marker (written before it
    // changed anything); the second found it, recorded the first as failed, and was killed too.
    fs.writeFileSync(path.join(paths(t).runDir, 'recovery.json'), JSON.stringify({ session: 's1', checkpoint: null, rejected: [], forensics: [], reconciled: [] }));
    events(t, [{ t: 'recovery', session: 's1', reason: 'unknown', action: 'reconcile', ok: false, detail: 'interrupted: the recovery was killed before it finished' }]);
    // The third start: the second did not finish either, so that is one crash and two failed recoveries.
    const r = await rec(['run1'], t);
    assert.equal(r.exitCode, 79, String(r.stderr));
    assert.match(String(r.stderr), /escalating: 1 crash and 2 failed recoveries in the last 60 min \(limit 3\)/);
    const failed = (await recoveries(t)).filter((x) => x[4] === 0);
    assert.deepEqual(failed.map((x) => x[0]), ['s1', 's1']);
    // Recorded with the session's own reason (it ended without a word: unknown), not a made-up one.
    assert.deepEqual(failed.map((x) => x[1]), ['unknown', 'unknown']);
    assert.equal(readTask(t, 'a')?.status, 'pending', 'and the recovery itself was done');
  } finally {
    t.cleanup();
  }
});

test('--record-exit notes how systemd saw the end; a watchdog kill is a hang', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    crashedSession(t, 's1', new Date(Date.now() - 60_000).toISOString());
    const r = await rec(['run1', '--record-exit'], t, { env: { SERVICE_RESULT: 'watchdog', EXIT_CODE: 'killed', EXIT_STATUS: 'ABRT' } });
    assert.equal(r.exitCode, 0, String(r.stderr));
    const j = await recJson(t);
    assert.equal(j.reason, 'hang');
    assert.match(String(j.detail), /systemd: watchdog, killed, ABRT/);
    crashedSession(t, 's2', new Date().toISOString());
    await rec(['run1', '--record-exit'], t, { env: { SERVICE_RESULT: 'signal', EXIT_CODE: 'killed', EXIT_STATUS: 'KILL' } });
    assert.equal((await recJson(t)).reason, 'crash');
  } finally {
    t.cleanup();
  }
});

test('--checkpoint ID rolls back state/ and the workspace (branch, index, files), then reconciles', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', NO_WAIT);
    await createRun(t);
    const ws = paths(t).defaultWorkspace;
    const g = (args: string[]) => execa('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', ...args], { cwd: ws });
    fs.writeFileSync(path.join(ws, '.gitignore'), 'cache/\n');
    fs.writeFileSync(path.join(ws, 'a.txt'), 'v1\n');
    await g(['add', '.']);
    await g(['commit', '-qm', 'one']);
    const head1 = (await g(['rev-parse', 'HEAD'])).stdout;
    fs.writeFileSync(path.join(ws, 'a.txt'), 'v1 edited\n');
    fs.writeFileSync(path.join(ws, 'notes.txt'), 'untracked then\n');
    addTask(t, { id: 'a' });
    const cp = await checkpoint(t);
    // Work goes on: a commit, new files, a task completes.
    fs.writeFileSync(path.join(ws, 'a.txt'), 'v2\n');
    fs.writeFileSync(path.join(ws, 'b.txt'), 'b\n');
    await g(['add', '.']);
    await g(['commit', '-qm', 'two']);
    fs.writeFileSync(path.join(ws, 'later.txt'), 'untracked later\n');
    fs.mkdirSync(path.join(ws, 'cache'));
    fs.writeFileSync(path.join(ws, 'cache', 'x'), 'ignored\n');
    events(t, [{ t: 'task_started', task: 'a', attempt: 1 }, { t: 'task_outcome', task: 'a', attempt: 1, outcome: 'completed' }]);
    writeTask(t, { id: 'a', status: 'completed' });
    fs.writeFileSync(path.join(paths(t).stateDir, 'memory', 'later.md'), 'x');

    const j = await recJson(t, ['--checkpoint', cp.slice(0, 5)]);
    assert.equal(j.action, 'rollback');
    assert.equal(j.checkpoint, cp);
    assert.equal((await g(['rev-parse', 'HEAD'])).stdout, head1, 'the branch is back at its commit');
    assert.equal((await g(['symbolic-ref', 'HEAD'])).stdout, 'refs/heads/main');
    assert.equal(fs.readFileSync(path.join(ws, 'a.txt'), 'utf8'), 'v1 edited\n');
    assert.equal(fs.readFileSync(path.join(ws, 'notes.txt'), 'utf8'), 'untracked then\n');
    assert.equal(fs.existsSync(path.join(ws, 'b.txt')), false);
    assert.equal(fs.existsSync(path.join(ws, 'later.txt')), false);
    assert.equal(fs.readFileSync(path.join(ws, 'cache', 'x'), 'utf8'), 'ignored\n', 'ignored files are left alone');
    assert.equal((await g(['status', '--porcelain'])).stdout, ' M a.txt\n?? notes.txt'.replace(/^ /, ' '));
    assert.equal(fs.existsSync(path.join(paths(t).stateDir, 'memory', 'later.md')), false);
    assert.equal(readTask(t, 'a')?.status, 'completed', 'the log says it completed: it is never done twice');
    const fr = (await g(['for-each-ref', '--format=%(refname)', 'refs/selfware/forensics/'])).stdout;
    assert.match(fr, /^refs\/selfware\/forensics\//);
    assert.equal((await g(['show', `${fr.trim()}:later.txt`])).stdout, 'untracked later');
    const missing = await rec(['run1', '--checkpoint', 'ffffffff'], t);
    assert.equal(missing.exitCode, 66);
    assert.match(String(missing.stderr), /no such checkpoint 'ffffffff'/);
  } finally {
    t.cleanup();
  }
});
