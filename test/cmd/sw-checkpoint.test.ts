import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, git, makeEnv, sw, treeSnapshot, writeConfig, type TestEnv } from '../helpers.js';
import { TaskLog } from '../../lib/tasklog/index.js';
import { RUN_NAME_RE, runPaths } from '../../lib/run.js';

/** sw-checkpoint; a create defines its run first (a config file: runs are made explicitly, never by a typo). */
const cp = (args: string[], t: TestEnv, opts = {}) => {
  const run = args[1];
  if (args[0] === 'create' && run && RUN_NAME_RE.test(run) && run !== 'governor' && !fs.existsSync(path.join(t.configDir, `${run}.yaml`))) writeConfig(t, run, '');
  return sw('sw-checkpoint', args, t, opts);
};
const stateOf = (t: TestEnv, run = 'run1') => path.join(t.stateDir, run, 'state');
const wsOf = (t: TestEnv, run = 'run1') => path.join(t.stateDir, run, 'workspace');

async function created(t: TestEnv, args: string[] = []): Promise<string> {
  const r = await cp(['create', 'run1', ...args], t);
  assert.equal(r.exitCode, 0, String(r.stderr));
  const id = String(r.stdout).trim();
  assert.match(id, /^[0-9a-f]{8}$/);
  return id;
}

test('--help, --version, and usage errors exit 64', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const h = await cp(['--help'], t);
    assert.equal(h.exitCode, 0);
    assert.match(String(h.stdout), /^Usage: sw-checkpoint \[options\] \[command\]/);
    for (const sub of ['create', 'list', 'show', 'diff', 'verify', 'prune']) {
      const s = await cp([sub, '--help'], t);
      assert.equal(s.exitCode, 0, sub);
      assert.match(String(s.stdout), new RegExp(`^Usage: sw-checkpoint ${sub} `), sub);
    }
    const v = await cp(['--version'], t);
    assert.equal(v.exitCode, 0);
    assert.match(String(v.stdout), /^\d+\.\d+\.\d+\n?$/);
    const cases: Array<[string[], RegExp]> = [
      [[], /Usage: sw-checkpoint/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['create'], /missing required argument 'run'/],
      [['create', 'run1', '--kind', 'weekly'], /option '--kind <kind>' argument 'weekly' is invalid\. expected one of routine, task, pre-op, shutdown, recovery, manual, got 'weekly'/],
      [['create', 'run1', '--time', 'yesterday'], /--time <iso8601>': expected a date and time such as 2026-11-21T09:30:00Z, got 'yesterday'/],
      [['prune', 'run1', '--keep-last', 'three'], /--keep-last <n>' argument 'three' is invalid\. expected an integer, got 'three'/],
      [['prune', 'run1', '--keep-daily', '-1'], /expected an integer from 0 to/],
      [['list', 'run1', '--frob'], /unknown option '--frob'/],
      [['show', 'run1', 'zz!'], /invalid checkpoint id 'zz!'/],
    ];
    for (const [args, re] of cases) {
      const r = await cp(args, t);
      assert.equal(r.exitCode, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(String(r.stderr), re, args.join(' '));
      assert.doesNotMatch(String(r.stderr), /at .*\.js:\d+/, 'no stack trace');
    }
    assert.deepEqual(fs.readdirSync(t.stateDir), [], 'usage errors create nothing');
  } finally {
    t.cleanup();
  }
});

test('bad run names exit 64 and touch nothing', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await created(t);
    const before = treeSnapshot(t.dir);
    for (const name of ['../x', 'a/b', '', 'x'.repeat(200), '.hidden', '..']) {
      for (const sub of [['create'], ['list'], ['verify'], ['prune'], ['show'], ['diff']]) {
        const args = [...sub, name];
        if (sub[0] === 'show' || sub[0] === 'diff') args.push('latest');
        const r = await cp(args, t);
        assert.equal(r.exitCode, 64, `${args.join(' ')}: ${r.stderr}`);
        assert.match(String(r.stderr), /^sw-checkpoint: invalid run name '/, args.join(' '));
      }
    }
    assert.deepEqual(treeSnapshot(t.dir), before);
  } finally {
    t.cleanup();
  }
});

test('create initialises a new run, prints the id, and records it everywhere', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const r = await cp(['create', 'run1', '--kind', 'manual', '--message', 'first'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const id = String(r.stdout).trim();
    assert.match(id, /^[0-9a-f]{8}$/);
    assert.match(String(r.stderr), /initialised run 'run1'/);
    const state = stateOf(t);
    for (const f of ['run.yaml', 'agent.json', 'queue/.keep', 'memory/.keep', 'transcripts/.keep']) assert.ok(fs.existsSync(path.join(state, f)), f);
    // git log in state/ shows the checkpoints (through state/.git -> ../state.git)
    const log = await git(state, ['log', '--format=%s']);
    assert.equal(log.exitCode, 0, String(log.stderr));
    assert.equal(String(log.stdout).trim(), `checkpoint ${id}: manual: first`);
    const fsck = await git(state, ['fsck', '--strict']);
    assert.equal(fsck.exitCode, 0, String(fsck.stderr));
    // the task log has the checkpoint event
    const snap = await TaskLog.forRun(runPaths('run1', t.env)).snapshot();
    assert.deepEqual(snap.db.exec('SELECT id, kind, message FROM checkpoints')[0]?.values, [[id, 'manual', 'first']]);
    snap.db.close();
  } finally {
    t.cleanup();
  }
});

test('a routine checkpoint with nothing changed is skipped unless --force', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const id = await created(t, ['--kind', 'routine']);
    // A temp file of an atomic write in progress is not a change.
    fs.writeFileSync(path.join(stateOf(t), '.agent.json.4242.0badcafe.tmp'), 'partial');
    const skip = await cp(['create', 'run1', '--kind', 'routine'], t);
    assert.equal(skip.exitCode, 0);
    assert.equal(String(skip.stdout), '');
    assert.match(String(skip.stderr), new RegExp(`nothing changed since checkpoint ${id}; routine checkpoint skipped`));
    const skipJson = await cp(['create', 'run1', '--kind', 'routine', '--json'], t);
    assert.deepEqual(JSON.parse(String(skipJson.stdout)), { skipped: true, latest: id });
    const forced = await created(t, ['--kind', 'routine', '--force']);
    assert.notEqual(forced, id);
    const manual = await created(t, ['--kind', 'manual']);
    assert.notEqual(manual, forced, 'other kinds are never skipped');
    fs.writeFileSync(path.join(stateOf(t), 'memory', 'note.md'), 'learned something\n');
    await created(t, ['--kind', 'routine']);
    fs.writeFileSync(path.join(wsOf(t), 'new.txt'), 'workspace change\n');
    await created(t, ['--kind', 'routine']);
    const list = JSON.parse(String((await cp(['list', 'run1', '--json'], t)).stdout)) as { checkpoints: unknown[] };
    assert.equal(list.checkpoints.length, 5);
  } finally {
    t.cleanup();
  }
});

test('the workspace snapshot leaves branch, index, HEAD and files alone', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const ws = path.join(t.dir, 'ws');
    writeConfig(t, 'run1', `workspace: ${ws}\n`);
    fs.mkdirSync(ws);
    const g = (args: string[]) => execa('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', ...args], { cwd: ws });
    await g(['init', '-q', '-b', 'dev']);
    fs.writeFileSync(path.join(ws, '.gitignore'), 'build/\n');
    fs.writeFileSync(path.join(ws, 'a.txt'), 'a1\n');
    await g(['add', '.']);
    await g(['commit', '-qm', 'one']);
    fs.writeFileSync(path.join(ws, 'a.txt'), 'a2 staged\n');
    await g(['add', 'a.txt']);
    fs.writeFileSync(path.join(ws, 'a.txt'), 'a3 unstaged\n');
    fs.writeFileSync(path.join(ws, 'untracked.txt'), 'u\n');
    fs.mkdirSync(path.join(ws, 'build'));
    fs.writeFileSync(path.join(ws, 'build', 'ignored.o'), 'o\n');
    const before = {
      head: (await g(['rev-parse', 'HEAD'])).stdout,
      branch: (await g(['symbolic-ref', 'HEAD'])).stdout,
      index: (await g(['ls-files', '-s'])).stdout,
      status: (await g(['status', '--porcelain'])).stdout,
      files: treeSnapshot(ws),
    };
    const id = await created(t);
    const after = {
      head: (await g(['rev-parse', 'HEAD'])).stdout,
      branch: (await g(['symbolic-ref', 'HEAD'])).stdout,
      index: (await g(['ls-files', '-s'])).stdout,
      status: (await g(['status', '--porcelain'])).stdout,
      files: treeSnapshot(ws),
    };
    // The checkpoint's temp index must not linger in .git either.
    after.files = new Map([...after.files].filter(([k]) => !k.startsWith('.git/')));
    before.files = new Map([...before.files].filter(([k]) => !k.startsWith('.git/')));
    assert.deepEqual(after, before);
    const snapFiles = (await g(['ls-tree', '-r', '--name-only', `refs/selfware/checkpoints/${id}`])).stdout.split('\n').sort();
    assert.deepEqual(snapFiles, ['.gitignore', 'a.txt', 'untracked.txt']);
    const content = (await g(['show', `refs/selfware/checkpoints/${id}:a.txt`])).stdout;
    assert.equal(content, 'a3 unstaged', 'the snapshot holds the file as it is on disk');
    const parent = (await g(['rev-parse', `refs/selfware/checkpoints/${id}^`])).stdout;
    assert.equal(parent, before.head.trim());
    assert.deepEqual(fs.readdirSync(path.join(ws, '.git')).filter((n) => n.includes('selfware')), []);
    const show = JSON.parse(String((await cp(['show', 'run1', id, '--json'], t)).stdout)) as { workspace: { branch: string; head: string } };
    assert.equal(show.workspace.branch, 'dev');
    assert.equal(show.workspace.head, before.head.trim());
  } finally {
    t.cleanup();
  }
});

test('list, show and their JSON', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const a = await created(t, ['--kind', 'task', '--message', 'task a done', '--time', '2026-11-20T08:00:00Z']);
    const b = await created(t, ['--kind', 'routine', '--force', '--time', '2026-11-20T09:00:00Z']);
    const l = await cp(['list', 'run1'], t);
    assert.equal(l.exitCode, 0);
    const lines = String(l.stdout).trim().split('\n');
    assert.match(lines[0] as string, /^ID\s+TIME\s+KIND\s+SIZE\s+MESSAGE$/);
    assert.match(lines[1] as string, new RegExp(`^${b}\\s+2026-11-20T09:00:00Z\\s+routine\\s+`));
    assert.match(lines[2] as string, new RegExp(`^${a}\\s+2026-11-20T08:00:00Z\\s+task\\s+.*task a done$`));
    const j = JSON.parse(String((await cp(['list', 'run1', '--json'], t)).stdout)) as { checkpoints: Array<Record<string, unknown>> };
    assert.deepEqual(
      j.checkpoints.map((c) => [c.id, c.kind, c.time, c.message]),
      [
        [b, 'routine', '2026-11-20T09:00:00Z', ''],
        [a, 'task', '2026-11-20T08:00:00Z', 'task a done'],
      ],
    );
    const first = j.checkpoints[0] as Record<string, unknown>;
    assert.deepEqual(Object.keys(first).sort(), ['checksum', 'id', 'kind', 'message', 'sequence', 'size', 'state', 'tasklog', 'time', 'workspace']);
    assert.equal(typeof first.size, 'number');
    assert.match(String(first.checksum), /^sha256:[0-9a-f]{64}$/);
    const onlyTask = JSON.parse(String((await cp(['list', 'run1', '--kind', 'task', '--json'], t)).stdout)) as { checkpoints: Array<{ id: string }> };
    assert.deepEqual(onlyTask.checkpoints.map((c) => c.id), [a]);
    const s = await cp(['show', 'run1', a.slice(0, 4)], t);
    assert.equal(s.exitCode, 0, String(s.stderr));
    assert.match(String(s.stdout), new RegExp(`id:\\s+${a}`));
    assert.match(String(s.stdout), /kind:\s+task/);
    const latest = JSON.parse(String((await cp(['show', 'run1', 'latest', '--json'], t)).stdout)) as { id: string };
    assert.equal(latest.id, b);
    const missing = await cp(['show', 'run1', 'ffffffff'], t);
    assert.equal(missing.exitCode, 66);
    assert.match(String(missing.stderr), /no such checkpoint 'ffffffff'/);
    const jsonErr = await cp(['show', 'run1', 'ffffffff', '--json'], t);
    assert.deepEqual(JSON.parse(String(jsonErr.stderr)), { type: 'error', code: 66, message: "no such checkpoint 'ffffffff'" });
  } finally {
    t.cleanup();
  }
});

test('diff shows what changed in state/', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const a = await created(t);
    const st = stateOf(t);
    fs.writeFileSync(path.join(st, 'queue', 't1.yaml'), 'title: one\n');
    fs.writeFileSync(path.join(st, 'agent.json'), '{"status":"running"}\n');
    const b = await created(t);
    fs.rmSync(path.join(st, 'queue', 't1.yaml'));
    fs.writeFileSync(path.join(st, 'memory', 'm.md'), 'x\n');
    const d = await cp(['diff', 'run1', a, b], t);
    assert.equal(d.exitCode, 0, String(d.stderr));
    assert.equal(String(d.stdout), `M    agent.json (+1 -7)\n+    queue/t1.yaml`);
    const now = JSON.parse(String((await cp(['diff', 'run1', b, '--json'], t)).stdout)) as { from: string; to: null; files: Array<{ path: string; status: string }> };
    assert.equal(now.from, b);
    assert.equal(now.to, null);
    assert.deepEqual(now.files.map((f) => [f.path, f.status]), [['memory/m.md', 'added'], ['queue/t1.yaml', 'removed']]);
  } finally {
    t.cleanup();
  }
});

test('commands on a run that does not exist exit 66 and create nothing', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    for (const args of [['list', 'nope'], ['show', 'nope', 'latest'], ['diff', 'nope', 'latest'], ['verify', 'nope'], ['prune', 'nope']]) {
      const r = await cp(args, t);
      assert.equal(r.exitCode, 66, args.join(' '));
      assert.match(String(r.stderr), /no such run 'nope'/);
    }
    assert.deepEqual(fs.readdirSync(t.stateDir), []);
  } finally {
    t.cleanup();
  }
});

test('a config mistake in a key the command needs exits 78 naming file:line:col and changes nothing; elsewhere, one warning', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await created(t);
    const f = writeConfig(t, 'run1', 'checkpoint:\n  retention:\n    keep_lats: 3\n');
    const before = treeSnapshot(t.stateDir);
    const where = `${f}:3:5: checkpoint.retention.keep_lats: unknown key (did you mean 'keep_last'?)`;
    // prune cannot guess the retention the human meant.
    const p = await cp(['prune', 'run1'], t);
    assert.equal(p.exitCode, 78);
    assert.equal(String(p.stderr), `sw-checkpoint: ${where}`);
    // list needs no key of the config: it goes on, saying so once.
    const l = await cp(['list', 'run1'], t);
    assert.equal(l.exitCode, 0, String(l.stderr));
    assert.equal(String(l.stderr).split('\n').filter((x) => x.includes(where)).length, 1);
    writeConfig(t, 'run1', 'workspace: [unclosed\n');
    const y = await cp(['create', 'run1'], t);
    assert.equal(y.exitCode, 78);
    assert.match(String(y.stderr), new RegExp(`^sw-checkpoint: ${f}:\\d+:\\d+: invalid YAML: .* \\(so 'workspace' cannot be read\\)`));
    assert.deepEqual(treeSnapshot(t.stateDir), before);
  } finally {
    t.cleanup();
  }
});

test('a live lock holder gives exit 75 and nothing changes', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await created(t);
    const lockFile = path.join(t.stateDir, 'run1', 'locks', 'state.lock');
    const holder = execa(process.execPath, [path.join(DIST, 'test/fixtures/hold-lock.js'), lockFile], { reject: false, buffer: false });
    await new Promise<void>((res) => holder.stdout?.once('data', () => res()));
    fs.writeFileSync(path.join(stateOf(t), 'memory', 'x'), 'x');
    const before = treeSnapshot(path.join(t.stateDir, 'run1', 'state.git'));
    for (const args of [['create', 'run1'], ['prune', 'run1', '--keep-last', '1']]) {
      const r = await cp(args, t);
      assert.equal(r.exitCode, 75, args.join(' '));
      assert.match(String(r.stderr), new RegExp(`run 'run1' is locked by hold-lock.js \\(pid ${holder.pid}\\); try again later`));
    }
    assert.deepEqual(treeSnapshot(path.join(t.stateDir, 'run1', 'state.git')), before);
    holder.kill('SIGKILL');
    await holder;
    await created(t);
  } finally {
    t.cleanup();
  }
});

test('verify: valid checkpoints exit 0; flipped bytes in objects and task log are named, exit 1', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const st = stateOf(t);
    const initial = await created(t);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(path.join(st, 'memory', `m${i}.md`), `memory ${i}\n`.repeat(50));
      ids.push(await created(t));
    }
    const ok = await cp(['verify', 'run1'], t);
    assert.equal(ok.exitCode, 0, String(ok.stdout) + String(ok.stderr));
    for (const id of [initial, ...ids]) assert.match(String(ok.stdout), new RegExp(`^${id}  valid$`, 'm'));
    assert.match(String(ok.stdout), /^tasklog   valid/m);

    // Corrupt the blob only the newest checkpoint has: m2.md.
    const repo = path.join(t.stateDir, 'run1', 'state.git');
    const blob = String((await git(st, ['rev-parse', `refs/checkpoints/${ids[2]}:memory/m2.md`], repo)).stdout).trim();
    const objFile = path.join(repo, 'objects', blob.slice(0, 2), blob.slice(2));
    fs.chmodSync(objFile, 0o644);
    const buf = fs.readFileSync(objFile);
    buf[Math.floor(buf.length / 2)] = (buf[Math.floor(buf.length / 2)] as number) ^ 0xff;
    fs.writeFileSync(objFile, buf);
    const bad = await cp(['verify', 'run1', '--json'], t);
    assert.equal(bad.exitCode, 1);
    const rep = JSON.parse(String(bad.stdout)) as { valid: boolean; checkpoints: Array<{ id: string; valid: boolean; errors: string[] }> };
    assert.equal(rep.valid, false);
    const byId = new Map(rep.checkpoints.map((c) => [c.id, c]));
    assert.equal(byId.get(ids[0] as string)?.valid, true);
    assert.equal(byId.get(ids[1] as string)?.valid, true);
    assert.equal(byId.get(ids[2] as string)?.valid, false);
    assert.match(byId.get(ids[2] as string)?.errors.join('\n') ?? '', new RegExp(`state object ${blob.slice(0, 12)}`));
    assert.match(String(bad.stderr), new RegExp(`1 invalid: ${ids[2]}`));
    // Only the named ones are checked when ids are given.
    const one = await cp(['verify', 'run1', ids[0] as string], t);
    assert.equal(one.exitCode, 0, String(one.stdout));

    // A flipped byte in a task-log record.
    const journal = path.join(t.stateDir, 'run1', 'tasklog.journal');
    const jb = fs.readFileSync(journal);
    const at = jb.lastIndexOf(Buffer.from('"kind"'));
    jb[at + 2] = (jb[at + 2] as number) ^ 0x01;
    fs.writeFileSync(journal, jb);
    const v2 = await cp(['verify', 'run1', ids[0] as string], t);
    assert.equal(v2.exitCode, 1);
    assert.match(String(v2.stdout), /tasklog   invalid: .*tasklog\.journal:\d+: record at position \d+: CRC mismatch/);
    assert.match(String(v2.stderr), /1 invalid: the task log/);
  } finally {
    t.cleanup();
  }
});

test('prune: policy, the two protections, dry run, JSON, and measured space freed', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const st = stateOf(t);
    const initial = await created(t, ['--time', '2026-11-19T00:00:00Z']);
    const ids: string[] = [];
    // Eight checkpoints an hour apart, each with 200 KiB of new, incompressible state.
    for (let i = 0; i < 8; i++) {
      fs.writeFileSync(path.join(st, 'memory', `blob${i}.bin`), crypto.randomBytes(200 * 1024));
      fs.rmSync(path.join(st, 'memory', `blob${i - 1}.bin`), { force: true });
      ids.push(await created(t, ['--time', `2026-11-20T${String(10 + i).padStart(2, '0')}:30:00Z`]));
    }
    // A recovery that used the second checkpoint.
    TaskLog.forRun(runPaths('run1', t.env)).append({ t: 'recovery', reason: 'crash', action: 'restore', checkpoint: ids[1] });
    // One that used the first, 8 days ago: past checkpoint.forensics_keep (7d), it protects no more.
    TaskLog.forRun(runPaths('run1', t.env)).append({ t: 'recovery', ts: new Date(Date.now() - 8 * 86_400_000).toISOString(), reason: 'crash', action: 'restore', checkpoint: ids[0] });

    const dry = await cp(['prune', 'run1', '--keep-last', '3', '--dry-run', '--json'], t);
    assert.equal(dry.exitCode, 0, String(dry.stderr));
    const plan = JSON.parse(String(dry.stdout)) as { dry_run: boolean; keep: Array<{ id: string; reasons: string[] }>; remove: Array<{ id: string }>; bytes_freed: null };
    assert.equal(plan.dry_run, true);
    assert.equal(plan.bytes_freed, null);
    const keepIds = plan.keep.map((k) => k.id).sort();
    assert.equal(new Set(plan.keep.map((k) => k.id)).size, plan.keep.length, JSON.stringify(plan.keep));
    assert.deepEqual(keepIds, [ids[1], ids[5], ids[6], ids[7]].sort(), JSON.stringify(plan.keep.map((k) => [k.id, k.reasons])) + JSON.stringify(ids));
    assert.deepEqual(plan.keep.find((k) => k.id === ids[1])?.reasons, ['used by a recovery']);
    assert.deepEqual(plan.keep.find((k) => k.id === ids[7])?.reasons, ['last', 'newest valid']);
    assert.deepEqual(plan.remove.map((r) => r.id).sort(), [initial, ids[0], ids[2], ids[3], ids[4]].sort());
    const listAfterDry = JSON.parse(String((await cp(['list', 'run1', '--json'], t)).stdout)) as { checkpoints: unknown[] };
    assert.equal(listAfterDry.checkpoints.length, 9, 'dry run changed nothing');

    const repo = path.join(t.stateDir, 'run1', 'state.git');
    const blobOf = async (id: string, n: number): Promise<string> => String((await git(st, ['rev-parse', `refs/checkpoints/${id}:memory/blob${n}.bin`], repo)).stdout).trim();
    const removedBlob = await blobOf(ids[2] as string, 2);
    const real = await cp(['prune', 'run1', '--keep-last', '3', '--json'], t);
    assert.equal(real.exitCode, 0, String(real.stderr));
    const res = JSON.parse(String(real.stdout)) as { bytes_before: number; bytes_after: number; bytes_freed: number; remove: unknown[] };
    assert.equal(res.remove.length, 5);
    assert.equal(res.bytes_freed, res.bytes_before - res.bytes_after);
    assert.ok(res.bytes_freed >= 4 * 195 * 1024, `freed ${res.bytes_freed} bytes, expected the 4 removed blobs' worth`);
    const list = JSON.parse(String((await cp(['list', 'run1', '--json'], t)).stdout)) as { checkpoints: Array<{ id: string }> };
    assert.deepEqual(list.checkpoints.map((c) => c.id), [ids[7], ids[6], ids[5], ids[1]]);
    const log = String((await git(st, ['log', '--format=%s'])).stdout).trim().split('\n');
    assert.deepEqual(log.map((s) => s.slice(11, 19)), [ids[7], ids[6], ids[5], ids[1]], 'main shows only the kept checkpoints');
    const fsck = await git(st, ['fsck', '--strict']);
    assert.equal(fsck.exitCode, 0, String(fsck.stderr));
    const v = await cp(['verify', 'run1'], t);
    assert.equal(v.exitCode, 0, String(v.stdout));
    // The removed blobs are gone from disk; the kept ones are still there.
    assert.notEqual((await git(st, ['cat-file', '-e', removedBlob], repo)).exitCode, 0, `blob2 (only in a removed checkpoint) is gone`);
    assert.equal((await git(st, ['cat-file', '-e', await blobOf(ids[5] as string, 5)], repo)).exitCode, 0);
    // keep-last 0 with nothing else: the newest valid one still stays.
    const all = await cp(['prune', 'run1', '--keep-hourly', '1', '--json'], t);
    const r2 = JSON.parse(String(all.stdout)) as { keep: Array<{ id: string; reasons: string[] }> };
    assert.deepEqual(r2.keep.map((k) => k.id).sort(), [ids[7], ids[1]].sort());
    // Text output.
    const text = await cp(['prune', 'run1', '--keep-last', '1', '--dry-run'], t);
    assert.match(String(text.stdout), /^ID\s+TIME\s+KIND\s+ACTION\s+REASONS$/m);
  } finally {
    t.cleanup();
  }
});

test('prune removes forensics copies older than a week, and keeps younger ones', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await created(t);
    const st = stateOf(t);
    const repo = path.join(t.stateDir, 'run1', 'state.git');
    const tree = String((await git(st, ['write-tree'], repo)).stdout).trim();
    const old = Math.floor(Date.now() / 1000) - 8 * 86400;
    for (const [name, when] of [['recovery-old', old], ['recovery-new', Math.floor(Date.now() / 1000)]] as const) {
      const c = await execa('git', ['commit-tree', tree, '-m', 'forensics'], { cwd: st, env: { GIT_DIR: repo, GIT_AUTHOR_NAME: 'a', GIT_AUTHOR_EMAIL: 'a@b', GIT_COMMITTER_NAME: 'a', GIT_COMMITTER_EMAIL: 'a@b', GIT_COMMITTER_DATE: `@${when} +0000`, GIT_AUTHOR_DATE: `@${when} +0000` } });
      await git(st, ['update-ref', `refs/forensics/${name}`, c.stdout.trim()], repo);
    }
    const dir = path.join(t.stateDir, 'run1', 'forensics', 'copy-old');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'x'), 'x');
    fs.utimesSync(dir, new Date(old * 1000), new Date(old * 1000));
    const dry = JSON.parse(String((await cp(['prune', 'run1', '--dry-run', '--json'], t)).stdout)) as { forensics_removed: string[] };
    assert.equal(dry.forensics_removed.length, 2, JSON.stringify(dry.forensics_removed));
    assert.ok(dry.forensics_removed.some((f) => f.startsWith('refs/forensics/recovery-old in ')));
    assert.ok(dry.forensics_removed.includes(dir));
    const r = await cp(['prune', 'run1', '--json'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const refs = String((await git(st, ['for-each-ref', '--format=%(refname)', 'refs/forensics/'], repo)).stdout).trim();
    assert.equal(refs, 'refs/forensics/recovery-new');
    assert.equal(fs.existsSync(dir), false);
  } finally {
    t.cleanup();
  }
});

test('checkpoint.forensics_keep and checkpoint.workspace_grace set how long prune keeps forensics and the workspace\'s unreferenced objects', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await created(t);
    const now = Date.now() / 1000;
    const aged = (p: string, secondsAgo: number): void => fs.utimesSync(p, new Date((now - secondsAgo) * 1000), new Date((now - secondsAgo) * 1000));
    // Forensics copies 3 h and 1 h old; unreferenced workspace objects 20 min old and new.
    const forensics = path.join(t.stateDir, 'run1', 'forensics');
    for (const [name, ago] of [['copy-3h', 3 * 3600], ['copy-1h', 3600]] as const) {
      fs.mkdirSync(path.join(forensics, name), { recursive: true });
      aged(path.join(forensics, name), ago);
    }
    const ws = wsOf(t);
    const blob = async (text: string, ago: number): Promise<string> => {
      const oid = String((await execa('git', ['hash-object', '-w', '--stdin'], { cwd: ws, input: text })).stdout).trim();
      aged(path.join(ws, '.git', 'objects', oid.slice(0, 2), oid.slice(2)), ago);
      return oid;
    };
    const old = await blob('unreferenced, 20 min old\n', 20 * 60);
    const young = await blob('unreferenced, new\n', 0);
    const exists = async (oid: string): Promise<boolean> => (await git(ws, ['cat-file', '-e', oid])).exitCode === 0;
    // The defaults (a week, an hour) keep all four.
    assert.equal((await cp(['prune', 'run1'], t)).exitCode, 0);
    assert.deepEqual(fs.readdirSync(forensics).sort(), ['copy-1h', 'copy-3h']);
    assert.deepEqual([await exists(old), await exists(young)], [true, true]);
    // 2 h and 10 min: the older of each goes.
    writeConfig(t, 'run1', 'checkpoint:\n  forensics_keep: 2h\n  workspace_grace: 10m\n');
    const dry = JSON.parse(String((await cp(['prune', 'run1', '--dry-run', '--json'], t)).stdout)) as { forensics_removed: string[] };
    assert.deepEqual(dry.forensics_removed, [path.join(forensics, 'copy-3h')]);
    const r = await cp(['prune', 'run1'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.deepEqual(fs.readdirSync(forensics), ['copy-1h']);
    assert.deepEqual([await exists(old), await exists(young)], [false, true]);
    assert.equal((await git(ws, ['fsck', '--no-dangling'])).exitCode, 0);
  } finally {
    t.cleanup();
  }
});

test('prune never removes the newest valid checkpoint when newer ones are corrupt', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const st = stateOf(t);
    await cp(['create', 'run1', '--time', '2026-11-10T00:00:00Z'], t);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(path.join(st, 'memory', `m${i}`), `unique ${i}\n`);
      ids.push(await created(t, ['--time', `2026-11-2${i}T10:00:00Z`]));
    }
    const repo = path.join(t.stateDir, 'run1', 'state.git');
    const commit = String((await git(st, ['rev-parse', `refs/checkpoints/${ids[2]}`], repo)).stdout).trim();
    const f = path.join(repo, 'objects', commit.slice(0, 2), commit.slice(2));
    fs.chmodSync(f, 0o644);
    const b = fs.readFileSync(f);
    b[b.length - 5] = (b[b.length - 5] as number) ^ 0xff;
    fs.writeFileSync(f, b);
    const r = await cp(['prune', 'run1', '--keep-last', '1', '--dry-run', '--json'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const plan = JSON.parse(String(r.stdout)) as { keep: Array<{ id: string; reasons: string[] }> };
    assert.ok(plan.keep.some((k) => k.id === ids[1] && k.reasons.includes('newest valid')), JSON.stringify(plan.keep));
  } finally {
    t.cleanup();
  }
});

test('loose objects are packed once there are a few hundred: a file each no longer, and every checkpoint still verifies; a prune does not write them out again', { timeout: 120_000 }, async () => {
  const t = makeEnv();
  try {
    await created(t);
    const loose = async (dir: string): Promise<{ count: number; inPack: number }> => {
      const out = String((await git(dir, ['count-objects', '-v'])).stdout);
      return { count: Number(/^count: (\d+)/m.exec(out)?.[1]), inPack: Number(/^in-pack: (\d+)/m.exec(out)?.[1]) };
    };
    const wsGit = path.join(wsOf(t), '.git');
    const stateGitDir = path.join(t.stateDir, 'run1', 'state.git');
    // Checkpoints of a working agent: a few new files in the workspace and the state each time.
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(wsOf(t), `r${round}-f${i}.txt`), `round ${round} file ${i} ${crypto.randomUUID()}\n`);
      fs.writeFileSync(path.join(stateOf(t), 'memory', `note${round}.md`), `round ${round} ${crypto.randomUUID()}\n`);
      await created(t, ['--kind', 'task']);
    }
    // 12 x (60 blobs, a tree, a commit) in the workspace, over 700 objects: packed once past the threshold.
    const ws = await loose(wsGit);
    assert.ok(ws.count + ws.inPack >= 12 * 62, `workspace: ${ws.count} + ${ws.inPack} objects`);
    assert.ok(ws.count < 512, `workspace: ${ws.count} loose objects`);
    assert.ok(ws.inPack > 0, `workspace: ${ws.inPack} packed objects`);
    const st = await loose(stateGitDir);
    assert.ok(st.count + st.inPack > 0);
    const v = await cp(['verify', 'run1'], t);
    assert.equal(v.exitCode, 0, String(v.stdout) + String(v.stderr));
    const fsck = await git(stateOf(t), ['fsck', '--strict']);
    assert.equal(fsck.exitCode, 0, String(fsck.stderr));
    const wfsck = await git(wsOf(t), ['fsck', '--strict']);
    assert.equal(wfsck.exitCode, 0, String(wfsck.stderr));
    // A prune leaves the pruned checkpoints' workspace objects unreachable but within the hour the
    // workspace keeps for the agent's git commands in flight: kept in a pack (a cruft pack), not
    // written out again as a loose file each (git gc's way without --cruft), which the next checkpoints
    // could never pack (an incremental repack takes reachable objects only) and which stayed a day.
    for (const f of fs.readdirSync(wsOf(t)).filter((n) => /^r\d+-f\d+\.txt$/.test(n))) fs.rmSync(path.join(wsOf(t), f));
    await created(t, ['--kind', 'task']);
    const p = await cp(['prune', 'run1', '--keep-last', '1'], t);
    assert.equal(p.exitCode, 0, String(p.stderr));
    const after = await loose(wsGit);
    assert.ok(after.count < 50, `workspace after the prune: ${after.count} loose objects`);
    const unreachable = String((await git(wsOf(t), ['fsck', '--unreachable', '--no-reflogs'])).stdout).split('\n').filter((l) => l.startsWith('unreachable')).length;
    assert.ok(unreachable >= 12 * 60, `the pruned snapshots' objects are kept for the hour: ${unreachable} unreachable`);
    const v2 = await cp(['verify', 'run1'], t);
    assert.equal(v2.exitCode, 0, String(v2.stdout) + String(v2.stderr));
  } finally {
    t.cleanup();
  }
});
