import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { diskUsage, mkdirDurable, pidAlive, removeStaleTemps, writeFileAtomic } from '../../lib/fsutil.js';
import { DIST, makeEnv, rng, sleep } from '../helpers.js';

test('writeFileAtomic replaces content and leaves no temp file', () => {
  const t = makeEnv();
  try {
    const f = path.join(t.dir, 'x.json');
    writeFileAtomic(f, 'one');
    writeFileAtomic(f, Buffer.from('two'));
    assert.equal(fs.readFileSync(f, 'utf8'), 'two');
    assert.deepEqual(fs.readdirSync(t.dir).sort(), ['etc', 'run', 'state', 'x.json']);
  } finally {
    t.cleanup();
  }
});

test('SIGKILL during writeFileAtomic leaves the old or the new content, never a mix', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const f = path.join(t.dir, 'target');
    writeFileAtomic(f, Buffer.alloc(256 * 1024, 'a'));
    const rand = rng(7);
    for (let round = 0; round < 12; round++) {
      const child = execa(process.execPath, [path.join(DIST, 'test/fixtures/atomic-writer.js'), f], { reject: false, buffer: false });
      await new Promise<void>((res) => child.stdout?.once('data', () => res()));
      await sleep(5 + rand() * 60);
      child.kill('SIGKILL');
      await child;
      const content = fs.readFileSync(f);
      assert.equal(content.length, 256 * 1024, `round ${round}`);
      const first = content[0];
      assert.ok(content.every((b) => b === first), `round ${round}: torn file`);
      removeStaleTemps(t.dir);
      assert.deepEqual(fs.readdirSync(t.dir).filter((n) => n.endsWith('.tmp')), [], `round ${round}: temp left after cleanup`);
    }
  } finally {
    t.cleanup();
  }
});

test('mkdirDurable, pidAlive, diskUsage', () => {
  const t = makeEnv();
  try {
    const d = path.join(t.dir, 'a/b/c');
    mkdirDurable(d);
    assert.ok(fs.statSync(d).isDirectory());
    mkdirDurable(d);
    fs.writeFileSync(path.join(d, 'f'), Buffer.alloc(10000));
    assert.ok(diskUsage(path.join(t.dir, 'a')) >= 10000);
    assert.equal(pidAlive(process.pid), true);
    assert.equal(pidAlive(0), false);
    assert.equal(pidAlive(2 ** 30), false);
  } finally {
    t.cleanup();
  }
});
