// A full disk under a working agent (issue 11): a pause, not a crash. On a
// real small tmpfs holding the run (mounted as root, as CI runs), the disk is
// filled mid-task and freed again: the agent stays up (the watchdog timer
// goes on), waits, records the wait once space is back, and finishes every
// task once, in the one session, with nothing for recovery to do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeEnv, sw } from '../helpers.js';
import { addTask, query, scriptedRun, startAgent, tasks, waitFor } from '../fixtures/agent.js';

/** Fill the filesystem at dir to the last byte; returns the file that holds it. */
function fill(dir: string): string {
  const file = path.join(dir, 'fill');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(256 * 1024, 1);
  try {
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 2)) {
      for (;;) {
        try {
          fs.writeSync(fd, chunk, 0, size);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

test('a full disk mid-task: the agent waits for space (no crash, no restart), then finishes every task once', { timeout: 90_000, skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root (CI runs as root)' : false }, async () => {
  const t = makeEnv();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0755', 'tmpfs', t.stateDir]);
  let agent: ReturnType<typeof startAgent> | null = null;
  try {
    const steps = (name: string) => [
      { action: 'shell', command: `echo ${name}-1 >> ${name}.txt`, delay_ms: 150 },
      { action: 'shell', command: `echo ${name}-2 >> ${name}.txt`, delay_ms: 150 },
      { action: 'shell', command: `echo ${name}-3 >> ${name}.txt`, delay_ms: 150 },
      { action: 'finish', summary: `${name} done` },
    ];
    scriptedRun(t, { a: steps('a'), b: steps('b'), c: steps('c'), d: steps('d') });
    for (const n of ['a', 'b', 'c', 'd']) await addTask(t, n, ['--verify', `test -s ${n}.txt`]);
    agent = startAgent(t, 'run1', { SELFWARE_DISK_POLL_MS: '200' });
    const a = agent;
    await waitFor('task a completed', async () => (await tasks(t)).find((x) => x.title === 'a')?.status === 'completed', 30_000, a);
    const filler = fill(t.stateDir);
    await waitFor('the agent to say it waits for space', () => /disk full \(.*\): waiting for space on .*; a pause, not a crash/.test(a.output()), 30_000, a);
    // Still alive while the disk stays full, and writing nothing.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.child.exitCode, null, `the agent is still running\n${a.output()}`);
    fs.rmSync(filler);
    await waitFor('every task completed', async () => (await tasks(t)).every((x) => x.status === 'completed'), 40_000, a);
    assert.match(a.output(), /disk space is back after \S+: going on/);
    assert.equal(await a.stop('SIGTERM'), 0, a.output());
    agent = null;
    // One session, ended cleanly: the full disk was no crash.
    assert.deepEqual(await query(t, 'SELECT end_state FROM sessions'), [['clean']]);
    const waits = await query(t, "SELECT json_extract(data, '$.duration_ms') FROM events WHERE type = 'disk_full'");
    assert.equal(waits.length, 1, 'the wait is recorded once');
    assert.ok((waits[0]?.[0] as number) >= 1000);
    // Each task completed once.
    assert.deepEqual(await query(t, "SELECT count(*), count(DISTINCT task_id) FROM task_attempts WHERE outcome = 'completed'"), [[4, 4]]);
    const rec = await sw('sw-recover', ['run1', '--json'], t);
    assert.equal(JSON.parse(String(rec.stdout)).action, 'none', 'nothing for recovery to do');
  } finally {
    if (agent) await agent.stop('SIGKILL').catch(() => {});
    try {
      execFileSync('umount', ['-l', t.stateDir]);
    } catch {
      /* cleanup removes what is left */
    }
    t.cleanup();
  }
});
