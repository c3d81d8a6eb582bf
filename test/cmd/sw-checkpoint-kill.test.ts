// Kill safety: SIGKILL sw-checkpoint at random instants during create and
// prune, many rounds. After each kill the task log opens, git fsck passes,
// verify tells valid from invalid, the next create works, and no acknowledged
// checkpoint is missing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, git, makeEnv, rng, sleep, sw, type TestEnv } from '../helpers.js';
import { TaskLog } from '../../lib/tasklog/index.js';
import { runPaths } from '../../lib/run.js';
import { lockState } from '../../lib/state/layout.js';

const CMD = path.join(DIST, 'bin', 'sw-checkpoint.cjs');

async function healthy(t: TestEnv, round: string): Promise<string[]> {
  // As the next selfware command would: wait for the run's lock, which a killed
  // create's git children hold until they have exited.
  (await lockState(runPaths('run1', t.env), 30_000)).release();
  const repo = path.join(t.stateDir, 'run1', 'state.git');
  const st = path.join(t.stateDir, 'run1', 'state');
  const fsck = await git(st, ['fsck', '--strict', '--no-dangling'], repo);
  assert.equal(fsck.exitCode, 0, `${round}: git fsck state: ${fsck.stdout}${fsck.stderr}`);
  const wfsck = await git(path.join(t.stateDir, 'run1', 'workspace'), ['fsck', '--no-dangling']);
  assert.equal(wfsck.exitCode, 0, `${round}: git fsck workspace: ${wfsck.stderr}`);
  const snap = await TaskLog.forRun(runPaths('run1', t.env)).snapshot();
  const logged = (snap.db.exec('SELECT id FROM checkpoints')[0]?.values ?? []).map((v) => String(v[0]));
  snap.db.close();
  const v = await sw('sw-checkpoint', ['verify', 'run1', '--json'], t);
  assert.ok(v.exitCode === 0 || v.exitCode === 1, `${round}: verify exit ${v.exitCode}: ${v.stderr}`);
  const rep = JSON.parse(String(v.stdout)) as { valid: boolean; checkpoints: Array<{ id: string; valid: boolean; errors: string[] }> };
  assert.equal(rep.valid, true, `${round}: a kill must not leave an invalid checkpoint: ${JSON.stringify(rep.checkpoints.filter((c) => !c.valid))}`);
  return logged;
}

function spawnKilled(t: TestEnv, args: string[]) {
  return execa(process.execPath, [CMD, ...args], { reject: false, env: { ...process.env, ...t.env } });
}

test('SIGKILL during create at random instants, many rounds', { timeout: 180_000 }, async () => {
  const t = makeEnv('kill-create');
  try {
    assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
    const first = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(first.exitCode, 0, String(first.stderr));
    const acknowledged = [String(first.stdout).trim()];
    const rand = rng(11);
    let killed = 0;
    let completed = 0;
    const st = path.join(t.stateDir, 'run1', 'state');
    const ws = path.join(t.stateDir, 'run1', 'workspace');
    for (let round = 0; round < 16; round++) {
      fs.writeFileSync(path.join(st, 'memory', `r${round % 5}.bin`), crypto.randomBytes(20_000 + Math.floor(rand() * 200_000)));
      fs.writeFileSync(path.join(ws, `w${round % 3}.txt`), `round ${round}\n`);
      const child = spawnKilled(t, ['create', 'run1', '--kind', 'routine', '--force']);
      await sleep(rand() * 260);
      child.kill('SIGKILL');
      const r = await child;
      if (r.exitCode === 0) {
        completed++;
        acknowledged.push(String(r.stdout).trim());
      } else killed++;
      const logged = await healthy(t, `round ${round}`);
      for (const id of acknowledged) assert.ok(logged.includes(id), `round ${round}: acknowledged checkpoint ${id} missing from the task log`);
      const list = JSON.parse(String((await sw('sw-checkpoint', ['list', 'run1', '--json'], t)).stdout)) as { checkpoints: Array<{ id: string }> };
      for (const id of acknowledged) assert.ok(list.checkpoints.some((c) => c.id === id), `round ${round}: acknowledged checkpoint ${id} not listed`);
    }
    const next = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(next.exitCode, 0, `the next create works: ${next.stderr}`);
    assert.ok(killed >= 4, `only ${killed} of 16 rounds were killed mid-way (${completed} completed)`);
  } finally {
    t.cleanup();
  }
});

test('SIGKILL during prune at random instants, then prune finishes the same', { timeout: 180_000 }, async () => {
  const t = makeEnv('kill-prune');
  try {
    assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
    const st = path.join(t.stateDir, 'run1', 'state');
    const ids: string[] = [];
    for (let i = 0; i < 14; i++) {
      if (i > 0) fs.writeFileSync(path.join(st, 'memory', `m${i % 4}.bin`), crypto.randomBytes(50_000));
      const r = await sw('sw-checkpoint', ['create', 'run1', '--time', `2026-11-${String(1 + i).padStart(2, '0')}T12:00:00Z`], t);
      assert.equal(r.exitCode, 0, String(r.stderr));
      ids.push(String(r.stdout).trim());
    }
    const policy = ['--keep-last', '2', '--keep-weekly', '2'];
    const plan = JSON.parse(String((await sw('sw-checkpoint', ['prune', 'run1', ...policy, '--dry-run', '--json'], t)).stdout)) as { keep: Array<{ id: string }> };
    const expectKeep = plan.keep.map((k) => k.id).sort();
    assert.ok(expectKeep.length >= 3 && expectKeep.length < ids.length);
    const rand = rng(5);
    let killed = 0;
    for (let round = 0; round < 6; round++) {
      const child = spawnKilled(t, ['prune', 'run1', ...policy]);
      await sleep(100 + rand() * 500);
      child.kill('SIGKILL');
      const r = await child;
      if (r.exitCode !== 0) killed++;
      await healthy(t, `prune round ${round}`);
      const c = await sw('sw-checkpoint', ['create', 'run1', '--force', '--kind', 'routine', '--time', '2026-10-01T00:00:00Z'], t);
      assert.equal(c.exitCode, 0, `round ${round}: the next create works: ${c.stderr}`);
    }
    assert.ok(killed >= 3, `only ${killed} prunes were killed mid-way`);
    const done = await sw('sw-checkpoint', ['prune', 'run1', ...policy, '--json'], t);
    assert.equal(done.exitCode, 0, String(done.stderr));
    const list = JSON.parse(String((await sw('sw-checkpoint', ['list', 'run1', '--json'], t)).stdout)) as { checkpoints: Array<{ id: string }> };
    assert.deepEqual(list.checkpoints.map((c) => c.id).sort(), expectKeep);
    await healthy(t, 'final');
    const log = String((await git(st, ['log', '--format=%s'])).stdout).trim().split('\n');
    assert.equal(log.length, expectKeep.length, 'main holds exactly the kept checkpoints');
  } finally {
    t.cleanup();
  }
});
