// A run belongs to the user its units run as. Commands from a root shell act
// as that user, so nothing they leave is unwritable to it; another user may
// read a run but not change it (77); and a run its owner can no longer write
// (what root used to leave behind) is reported by verify, status and the
// report, with every failed checkpoint recorded and its reason.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ignoreHostDisk, makeEnv, sw, walkOwners, type TestEnv } from '../helpers.js';
import { scriptedRun, startAgent, tasks, waitFor } from '../fixtures/agent.js';

const OWNER = 65534; // nobody
const OTHER = 65533;
const asUser = (uid: number) => ({ uid, gid: uid === OWNER ? 65534 : uid });

/** A run owned by nobody, made as root (the state root belongs to nobody, as make install makes /var/lib/selfware the service user's). */
async function nobodysRun(t: TestEnv): Promise<string> {
  fs.chmodSync(t.dir, 0o755);
  ignoreHostDisk(t);
  scriptedRun(t, { quick: [{ action: 'write_file', path: 'quick.txt', content: 'quick\n' }, { action: 'finish', summary: 'done' }] });
  fs.chownSync(t.stateDir, OWNER, 65534);
  const init = await sw('sw-agent', ['init', 'run1'], t);
  assert.equal(init.exitCode, 0, String(init.stderr));
  return path.join(t.stateDir, 'run1');
}

test('as root, every command acts as the run owner: nothing is left that the owner cannot write', { timeout: 120_000 }, async (tc) => {
  if (process.getuid?.() !== 0) return tc.skip('switching to the owner needs root');
  const t = makeEnv();
  try {
    const runDir = await nobodysRun(t);
    assert.deepEqual(walkOwners(runDir, OWNER), [], 'sw-agent init as root');
    const id = String((await sw('sw-agent', ['add', 'run1', '--title', 'quick', 'write quick.txt'], t)).stdout).trim();
    const other = String((await sw('sw-agent', ['add', 'run1', '--title', 'later', 'something later'], t)).stdout).trim();
    const runs: Array<[string, string[]]> = [
      ['sw-agent', ['list', 'run1']],
      ['sw-agent', ['show', 'run1', id]],
      ['sw-agent', ['status', 'run1']],
      ['sw-agent', ['status', 'run1', '--json']],
      ['sw-agent', ['config', 'run1']],
      ['sw-agent', ['pause', 'run1']],
      ['sw-agent', ['resume', 'run1']],
      ['sw-agent', ['approvals', 'run1']],
      ['sw-agent', ['cancel', 'run1', other]],
      ['sw-checkpoint', ['create', 'run1', '-m', 'by root']],
      ['sw-checkpoint', ['create', 'run1', '--kind', 'routine']],
      ['sw-checkpoint', ['list', 'run1']],
      ['sw-checkpoint', ['show', 'run1', 'latest']],
      ['sw-checkpoint', ['diff', 'run1', 'latest']],
      ['sw-checkpoint', ['verify', 'run1']],
      ['sw-checkpoint', ['prune', 'run1', '--keep-last', '5']],
      ['sw-recover', ['run1', '--dry-run']],
      ['sw-recover', ['run1']],
      ['sw-report', ['run1']],
      ['sw-report', ['run1', '--check']],
    ];
    for (const [cmd, args] of runs) {
      const r = await sw(cmd, args, t);
      assert.ok(r.exitCode === 0 || (cmd === 'sw-report' && args.includes('--check')), `${cmd} ${args.join(' ')}: exit ${r.exitCode}\n${r.stderr}`);
      assert.deepEqual(walkOwners(runDir, OWNER), [], `after ${cmd} ${args.join(' ')} as root`);
    }
    // The agent itself, started by hand as root, works as the owner: its files, the workspace's, the tools it runs.
    const a = startAgent(t);
    await waitFor('the task completed', async () => (await tasks(t)).find((x) => x.id === id)?.status === 'completed', 30_000, a);
    assert.equal(await a.stop(), 0, a.output());
    assert.equal(fs.statSync(path.join(runDir, 'workspace', 'quick.txt')).uid, OWNER);
    assert.deepEqual(walkOwners(runDir, OWNER), [], 'after sw-agent run as root');
  } finally {
    t.cleanup();
  }
});

test('another user may read a run but not change it: exit 77 naming the owner', { timeout: 60_000 }, async (tc) => {
  if (process.getuid?.() !== 0) return tc.skip('needs root to make a run of another user');
  const t = makeEnv();
  try {
    const runDir = await nobodysRun(t);
    const before = walkOwners(runDir, -1).length;
    const add = await sw('sw-agent', ['add', 'run1', 'do it'], t, asUser(OTHER));
    assert.equal(add.exitCode, 77, String(add.stderr));
    assert.match(String(add.stderr), /^sw-agent: run 'run1' belongs to nobody, not to uid 65533: change it as nobody or as root \(sudo -u nobody sw-agent add run1 \.\.\.\)$/m);
    const ck = await sw('sw-checkpoint', ['create', 'run1'], t, asUser(OTHER));
    assert.equal(ck.exitCode, 77, String(ck.stderr));
    assert.equal(walkOwners(runDir, -1).length, before, 'nothing was created');
    const list = await sw('sw-agent', ['list', 'run1'], t, asUser(OTHER));
    assert.equal(list.exitCode, 0, String(list.stderr));
  } finally {
    t.cleanup();
  }
});

test('a run its owner cannot write: verify, status and the report say so; every failed checkpoint is recorded with its reason', { timeout: 90_000 }, async (tc) => {
  if (process.getuid?.() !== 0) return tc.skip('needs root to leave root-owned files in a run');
  const t = makeEnv();
  try {
    const runDir = await nobodysRun(t);
    assert.equal((await sw('sw-checkpoint', ['create', 'run1', '-m', 'first'], t)).exitCode, 0);
    // What a root shell used to leave: the object store's directories owned by root.
    const objects = path.join(runDir, 'state.git', 'objects');
    for (const d of [objects, ...fs.readdirSync(objects).map((n) => path.join(objects, n))]) fs.chownSync(d, 0, 0);
    // The owner's own routine checkpoint (the timer's) after a change now fails.
    assert.equal((await sw('sw-agent', ['add', 'run1', 'new work'], t, asUser(OWNER))).exitCode, 0);
    const failed = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t, asUser(OWNER));
    assert.notEqual(failed.exitCode, 0);
    assert.match(String(failed.stderr), /insufficient permission/);
    const again = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t, asUser(OWNER));
    assert.notEqual(again.exitCode, 0);

    const verify = await sw('sw-checkpoint', ['verify', 'run1'], t);
    assert.equal(verify.exitCode, 1, String(verify.stdout));
    assert.match(String(verify.stdout), new RegExp(`run {7}unwritable: '${objects}' is owned by root:0, mode 0755: nobody cannot write it`));
    assert.match(String(verify.stderr), /chown -R nobody: /);

    const st = await sw('sw-agent', ['status', 'run1', '--json'], t);
    const doc = JSON.parse(String(st.stdout));
    assert.equal(doc.writable.ok, false);
    assert.equal(doc.checkpoints.failing.count, 2);
    assert.equal(doc.checkpoints.failing.last.kind, 'routine');
    assert.match(doc.checkpoints.failing.last.reason, /insufficient permission/);
    const whats = (doc.problems as Array<{ severity: string; what: string }>).map((p) => `${p.severity} ${p.what}`);
    assert.deepEqual(whats, ['CRITICAL writable', 'CRITICAL checkpoints']);
    const text = String((await sw('sw-agent', ['status', 'run1'], t)).stdout);
    assert.match(text, /^ {2}CRITICAL checkpoints: checkpoints failing since .* ago \(2 attempts, the last routine\): git add: .*insufficient permission/m);

    const check = await sw('sw-report', ['run1', '--check'], t);
    assert.equal(check.exitCode, 2, String(check.stdout));
    assert.match(String(check.stdout), /^SELFWARE CRITICAL - .*checkpoints failing .*insufficient permission/);
    const report = JSON.parse(String((await sw('sw-report', ['run1', '--json'], t)).stdout));
    const alerts = Object.fromEntries((report.alerts as Array<{ name: string; status: string }>).map((a) => [a.name, a.status]));
    assert.equal(alerts.checkpoints, 'CRITICAL');
    assert.equal(alerts.writable, 'CRITICAL');

    // Mended (chown back), the next checkpoint works and every signal is clear again.
    for (const d of [objects, ...fs.readdirSync(objects).map((n) => path.join(objects, n))]) fs.chownSync(d, OWNER, 65534);
    assert.equal((await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t, asUser(OWNER))).exitCode, 0);
    const ok = JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout));
    assert.deepEqual(ok.problems, []);
    assert.equal((await sw('sw-checkpoint', ['verify', 'run1'], t)).exitCode, 0);
  } finally {
    t.cleanup();
  }
});
