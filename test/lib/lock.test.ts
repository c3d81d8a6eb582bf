import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execa } from 'execa';
import { EXIT, SwError } from '../../lib/exit.js';
import { acquireLock, lockHolder, tryLock } from '../../lib/lock.js';
import { run } from '../../lib/proc.js';
import { DIST, makeEnv } from '../helpers.js';

function holder(file: string, mode = 'exclusive') {
  const child = execa(process.execPath, [path.join(DIST, 'test/fixtures/hold-lock.js'), file, mode], { reject: false, buffer: false });
  const ready = new Promise<void>((res, rej) => {
    child.stdout?.once('data', () => res());
    child.once('exit', () => rej(new Error('holder exited')));
  });
  return { child, ready };
}

test('a live holder gives exit 75 naming it; a SIGKILLed one is taken over', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const file = path.join(t.dir, 'locks', 'state.lock');
    const h = holder(file);
    await h.ready;
    const start = Date.now();
    await assert.rejects(acquireLock(file, { waitMs: 200, what: "run 'r'" }), (e: unknown) => {
      assert.ok(e instanceof SwError);
      assert.equal(e.code, EXIT.TEMPFAIL);
      assert.match(e.message, new RegExp(`^run 'r' is locked by hold-lock.js \\(pid ${h.child.pid}\\); try again later$`));
      return true;
    });
    assert.ok(Date.now() - start >= 190, 'waited before giving up');
    assert.equal(lockHolder(file)?.pid, h.child.pid);
    h.child.kill('SIGKILL');
    await h.child;
    const l = await acquireLock(file, { waitMs: 0 });
    assert.equal(lockHolder(file)?.pid, process.pid);
    l.release();
  } finally {
    t.cleanup();
  }
});

test('waiting acquires a lock released within the wait', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const file = path.join(t.dir, 'l');
    const h = holder(file);
    await h.ready;
    setTimeout(() => h.child.kill('SIGKILL'), 150);
    const l = await acquireLock(file, { waitMs: 5000 });
    l.release();
    await h.child;
  } finally {
    t.cleanup();
  }
});

test('shared locks coexist and exclude an exclusive one', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const file = path.join(t.dir, 'l');
    const h = holder(file, 'shared');
    await h.ready;
    const s = tryLock(file, true);
    assert.ok(s, 'second shared lock');
    assert.equal(tryLock(file, false), null, 'exclusive must wait');
    s.release();
    h.child.kill('SIGKILL');
    await h.child;
    const x = tryLock(file, false);
    assert.ok(x);
    x.release();
  } finally {
    t.cleanup();
  }
});

test('programs run while a lock is held inherit it: an orphan of a SIGKILLed holder keeps it until it exits', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const file = path.join(t.dir, 'held.lock');
    const lock = tryLock(file);
    assert.ok(lock);
    const fds = async () => (await run('sh', ['-c', 'ls -l /proc/$$/fd'])).stdout;
    assert.match(await fds(), new RegExp(`-> ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), 'the child holds the lock file open');
    lock.release();
    assert.doesNotMatch(await fds(), /held\.lock/, 'released: no longer passed on');
  } finally {
    t.cleanup();
  }
});
