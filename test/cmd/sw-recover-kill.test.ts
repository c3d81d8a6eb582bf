// Recovery is idempotent: SIGKILL sw-recover at random instants over many
// rounds, run it again, and the run ends up exactly as after one
// uninterrupted recovery: same queue, same files, one recovery recorded, one
// recovery checkpoint.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, git, makeEnv, rng, sleep, sw, type TestEnv } from '../helpers.js';
import { addTask, checkpoint, crashedSession, createRun, events, writeTask } from '../fixtures/runs.js';
import { TaskLog } from '../../lib/tasklog/index.js';
import { runPaths } from '../../lib/run.js';

const CMD = path.join(DIST, 'bin', 'sw-recover.cjs');

/**
 * A crashed run: tasks in every state, a garbled queue file (set aside, the
 * task back from the log), and (for 'restore') a garbled agent.json so a
 * checkpoint must be restored.
 */
async function template(t: TestEnv, kind: 'reconcile' | 'restore'): Promise<void> {
  fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), 'recovery:\n  backoff_base: 0s\n');
  await createRun(t);
  for (let i = 0; i < 12; i++) addTask(t, { id: `t${i}`, status: 'pending', max_attempts: 2 });
  fs.writeFileSync(path.join(runPaths('run1', t.env).stateDir, 'memory', 'notes.md'), 'notes\n'.repeat(1000));
  await checkpoint(t);
  crashedSession(t, 'sX', '2026-11-21T08:00:00Z');
  for (let i = 0; i < 12; i++) {
    const id = `t${i}`;
    const evs = [{ t: 'task_started', task: id, attempt: 1, session: 'sX' }];
    if (i % 4 === 0) evs.push({ t: 'task_outcome', task: id, attempt: 1, outcome: 'completed' } as never);
    if (i % 4 === 1) evs.push({ t: 'task_outcome', task: id, attempt: 1, outcome: 'failed' } as never);
    if (i % 4 !== 3) events(t, evs);
    if (i % 4 !== 3) writeTask(t, { id, status: 'in_progress', max_attempts: 2 });
  }
  addTask(t, { id: 'late', status: 'pending' });
  fs.rmSync(path.join(runPaths('run1', t.env).stateDir, 'queue', 'late.yaml'));
  fs.writeFileSync(path.join(runPaths('run1', t.env).stateDir, 'queue', 't5.yaml'), 'status: [in_prog');
  if (kind === 'restore') fs.writeFileSync(path.join(runPaths('run1', t.env).stateDir, 'agent.json'), '{"status": "runn');
}

/** The run's outcome, without what legitimately differs between two recoveries (times, lock notes, forensics names, when a file was set aside). */
async function outcome(t: TestEnv): Promise<Record<string, unknown>> {
  const p = runPaths('run1', t.env);
  const files: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const n of fs.readdirSync(dir).sort()) {
      const f = path.join(dir, n);
      if (fs.statSync(f).isDirectory()) walk(f);
      else if (n !== '.git') files[path.relative(p.stateDir, f)] = fs.readFileSync(f, 'utf8').replace(/^updated: .*$/m, 'updated: -').replace(/^\d{4}-\d\d-\d\dT\S+Z (?=t5\.yaml)/, '- ');
    }
  };
  walk(p.stateDir);
  const snap = await TaskLog.forRun(p).snapshot();
  const recs = snap.db.exec("SELECT session_id, reason, action, ok, reconciled, requeued FROM recoveries WHERE session_id = 'sX' AND ok = 1")[0]?.values ?? [];
  snap.db.close();
  const list = JSON.parse(String((await sw('sw-checkpoint', ['list', 'run1', '--kind', 'recovery', '--json'], t)).stdout)) as { checkpoints: Array<{ message: string }> };
  return { files, recoveries: recs, recoveryCheckpoints: list.checkpoints.map((c) => c.message), marker: fs.existsSync(path.join(p.runDir, 'recovery.json')) };
}

for (const kind of ['reconcile', 'restore'] as const) {
  test(`SIGKILL sw-recover at random instants (${kind}), then again: the same as one uninterrupted run`, { timeout: 240_000 }, async () => {
    const tpl = makeEnv(`tpl-${kind}`);
    const ref = makeEnv(`ref-${kind}`);
    try {
      await template(tpl, kind);
      fs.cpSync(tpl.dir, ref.dir, { recursive: true });
      const r = await sw('sw-recover', ['run1', '--json'], ref);
      assert.equal(r.exitCode, 0, String(r.stderr));
      assert.equal(JSON.parse(String(r.stdout)).action, kind);
      const expected = await outcome(ref);
      assert.equal((expected.recoveries as unknown[]).length, 1);
      const rand = rng(kind === 'restore' ? 99 : 17);
      let killedMidway = 0;
      // Five rounds here, each at a new random instant.
      for (let round = 0; round < 5; round++) {
        const w = makeEnv(`round-${kind}`);
        try {
          fs.cpSync(tpl.dir, w.dir, { recursive: true });
          // Kill once or twice before letting it finish.
          for (let k = 0; k < 1 + (round % 2); k++) {
            const child = execa(process.execPath, [CMD, 'run1'], { reject: false, env: { ...process.env, ...w.env } });
            await sleep(rand() * 700);
            child.kill('SIGKILL');
            const res = await child;
            if (res.exitCode !== 0) killedMidway++;
          }
          const fin = await sw('sw-recover', ['run1', '--json'], w);
          assert.equal(fin.exitCode, 0, `round ${round}: ${fin.stderr}`);
          assert.deepEqual(await outcome(w), expected, `round ${round}`);
          const p = runPaths('run1', w.env);
          const fsck = await git(p.stateDir, ['fsck', '--no-dangling'], path.join(p.runDir, 'state.git'));
          assert.equal(fsck.exitCode, 0, `round ${round}: ${fsck.stderr}`);
          const v = await sw('sw-checkpoint', ['verify', 'run1'], w);
          assert.equal(v.exitCode, 0, `round ${round}: ${v.stdout}`);
        } finally {
          w.cleanup();
        }
      }
      assert.ok(killedMidway >= 6, `only ${killedMidway} kills landed mid-recovery`);
    } finally {
      tpl.cleanup();
      ref.cleanup();
    }
  });
}
