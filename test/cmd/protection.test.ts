// Is the run protected? Judged on what a checkpoint now would add, not on the
// age of the newest one: an idle run whose state has not changed since its
// newest checkpoint is OK however long ago that was (every night), and only
// changes left unprotected count, from when they were made.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { git, ignoreHostDisk, makeEnv, sw, type TestEnv } from '../helpers.js';
import { scriptedRun, startAgent, waitFor } from '../fixtures/agent.js';
import { isoUtc } from '../../lib/units.js';
import { walk } from '../../lib/fsutil.js';

/** Every path under dir with its modification time and size. */
function mtimes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  walk(dir, (p, st) => out.set(p, `${st.mtimeMs} ${st.size}`));
  return out;
}

/** --check's exit status and line; with json, also the checkpoints alert of the report (an OK alert is not in the line). */
async function check(t: TestEnv, json = false): Promise<{ code: number; line: string; alert: { status: string; message: string } | undefined }> {
  const r = await sw('sw-report', ['run1', '--check'], t);
  const rep = json ? (JSON.parse(String((await sw('sw-report', ['run1', '--json'], t)).stdout)) as { alerts: Array<{ name: string; status: string; message: string }> }) : null;
  return { code: r.exitCode ?? -1, line: String(r.stdout), alert: rep?.alerts.find((a) => a.name === 'checkpoints') };
}

/** A new run whose workspace's own history holds one file, kept.txt. */
async function runWithKeptFile(t: TestEnv): Promise<void> {
  ignoreHostDisk(t);
  scriptedRun(t, {});
  assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
  const ws = path.join(t.stateDir, 'run1', 'workspace');
  fs.writeFileSync(path.join(ws, 'kept.txt'), 'kept\n');
  for (const args of [['add', 'kept.txt'], ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'kept']]) assert.equal((await git(ws, args)).exitCode, 0);
}

test('an idle run unchanged since a checkpoint of two hours ago is OK; changes left unprotected count from when they were made', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await runWithKeptFile(t);
    const a = startAgent(t);
    await waitFor('the agent idle', async () => JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout)).agent.status === 'idle', 20_000, a);
    // Idle, it protects its state itself (no timer runs here): nothing is left unprotected.
    await waitFor('the idle state checkpointed', async () => JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout)).checkpoints.unprotected?.paths === 0, 20_000, a);
    // The routine checkpoint of the timer, made (as far as its clock says) two hours ago: nothing has changed since.
    const twoHours = isoUtc(Date.now() - 2 * 3_600_000);
    const ck = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine', '--force', '--time', twoHours, '--json'], t);
    assert.equal(ck.exitCode, 0, String(ck.stderr));
    const idle = await check(t, true);
    assert.equal(idle.code, 0, idle.line);
    assert.equal(idle.alert?.status, 'OK');
    assert.match(idle.alert?.message ?? '', /^nothing changed since checkpoint [0-9a-f]{8} \(routine, 2h(\d+s)? ago\)$/);
    const st = JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout));
    assert.equal(st.checkpoints.unprotected.paths, 0);
    assert.deepEqual(st.problems, []);

    // A change made 20 minutes ago and not checkpointed: a warning; 90 minutes: critical.
    const note = path.join(t.stateDir, 'run1', 'state', 'memory', 'note.md');
    fs.writeFileSync(note, 'a lesson\n');
    const at = (min: number): void => fs.utimesSync(note, new Date(Date.now() - min * 60_000), new Date(Date.now() - min * 60_000));
    at(20);
    const warn = await check(t);
    assert.equal(warn.code, 1, warn.line);
    assert.match(warn.line, /^SELFWARE WARNING - 1 change left unprotected for 20m(\d+s)? \(state\/memory\/note\.md\), the newest checkpoint [0-9a-f]{8} is 2h(\d+s)? old \| /);
    at(90);
    const crit = await check(t);
    assert.equal(crit.code, 2, crit.line);
    assert.match(crit.line, /^SELFWARE CRITICAL - 1 change left unprotected for 1h30m(\d+s)? /);
    // The next routine checkpoint protects it: OK again.
    assert.equal((await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t)).exitCode, 0);
    assert.equal((await check(t)).code, 0);
    assert.equal(await a.stop(), 0);
    // Stopped after its shutdown checkpoint: OK.
    const stopped = await check(t);
    assert.equal(stopped.code, 0, stopped.line);
  } finally {
    t.cleanup();
  }
});

test('asking what is unprotected writes nothing into the run, not even a modification time', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await runWithKeptFile(t);
    const note = path.join(t.stateDir, 'run1', 'state', 'memory', 'note.md');
    fs.writeFileSync(note, 'a lesson\n');
    assert.equal((await sw('sw-checkpoint', ['create', 'run1'], t)).exitCode, 0);
    // Changes not checkpointed (git would "freshen" objects it finds, and write new ones).
    fs.writeFileSync(note, 'a changed lesson\n');
    fs.writeFileSync(path.join(t.stateDir, 'run1', 'workspace', 'new.txt'), 'new\n');
    // Files whose content is stored already but whose times changed: git hashes them again and finds their objects.
    const later = new Date(Date.now() + 5000);
    for (const f of ['state/run.yaml', 'workspace/kept.txt']) fs.utimesSync(path.join(t.stateDir, 'run1', f), later, later);
    const before = mtimes(path.join(t.stateDir, 'run1'));
    for (const args of [['sw-agent', 'status', 'run1'], ['sw-report', 'run1'], ['sw-report', 'run1', '--check'], ['sw-checkpoint', 'diff', 'run1', 'latest']]) {
      const r = await sw(args[0] as string, args.slice(1), t);
      assert.ok(r.exitCode === 0 || r.exitCode === 1, `${args.join(' ')}: ${r.stderr}`);
      assert.deepEqual(mtimes(path.join(t.stateDir, 'run1')), before, `${args.join(' ')} wrote into the run`);
    }
  } finally {
    t.cleanup();
  }
});
