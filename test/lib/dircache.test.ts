import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DirCache } from '../../lib/queue/dircache.js';

const TO = { timeout: 20_000 };

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sw-dircache-'));
}

const list = (dir: string) => async () => ({ value: fs.readdirSync(dir).sort(), again: false });

test('an entry added while the entries are read is seen at the next look', TO, async () => {
  const dir = tmpDir();
  try {
    // The stamp is old enough to trust: only the race under test can hide the new entry.
    const old = new Date(Date.now() - 60_000);
    fs.writeFileSync(path.join(dir, 'a.yaml'), 'a');
    fs.utimesSync(dir, old, old);
    const cache = new DirCache<string[]>(dir);
    // `sw-agent add` lands after the read, before the look ends (the agent then reads the task log).
    const first = await cache.get(async () => {
      const value = fs.readdirSync(dir).sort();
      fs.writeFileSync(path.join(dir, 'b.yaml'), 'b');
      return { value, again: false };
    });
    assert.deepEqual(first, ['a.yaml']);
    assert.deepEqual(await cache.get(list(dir)), ['a.yaml', 'b.yaml']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unchanged directory is not read again; a change is; a missing one is no entries', TO, async () => {
  const dir = tmpDir();
  try {
    fs.writeFileSync(path.join(dir, 'a.yaml'), 'a');
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(dir, old, old);
    const cache = new DirCache<string[]>(dir);
    let reads = 0;
    const counted = async () => {
      reads++;
      return list(dir)();
    };
    assert.deepEqual(await cache.get(counted), ['a.yaml']);
    assert.deepEqual(await cache.get(counted), ['a.yaml']);
    assert.equal(reads, 1);
    fs.rmSync(path.join(dir, 'a.yaml'));
    assert.deepEqual(await cache.get(counted), []);
    assert.equal(reads, 2);
    // compute asks to look again (an entry still settling): not cached.
    const again = async () => ({ value: ['x'], again: true });
    fs.utimesSync(dir, old, old);
    await cache.get(again);
    assert.deepEqual(await cache.get(counted), []);
    assert.equal(reads, 3);
    fs.rmSync(dir, { recursive: true });
    assert.equal(await cache.get(counted), null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a stamp younger than the clock can tell apart is not trusted: two changes in one tick are both seen', TO, async () => {
  const dir = tmpDir();
  try {
    const t = new Date(Math.floor(Date.now() / 1000) * 1000);
    // The looks come half a second after the changes, whatever the machine's load.
    const cache = new DirCache<string[]>(dir, undefined, () => t.getTime() + 500);
    fs.writeFileSync(path.join(dir, 'a.yaml'), 'a');
    fs.utimesSync(dir, t, t);
    assert.deepEqual(await cache.get(list(dir)), ['a.yaml']);
    // A second entry in the same tick: the directory's mtime is what it was.
    fs.writeFileSync(path.join(dir, 'b.yaml'), 'b');
    fs.utimesSync(dir, t, t);
    assert.deepEqual(await cache.get(list(dir)), ['a.yaml', 'b.yaml']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
