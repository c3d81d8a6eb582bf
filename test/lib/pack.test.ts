// packLoose (issue 11): between two daily prunes, a run that checkpoints each
// task wrote thousands of loose objects and refs, a 4 KiB block each; the
// soak's disk use swung by megabytes a simulated day. Past a threshold they are
// packed, and what selfware does with its refs afterwards still works.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Git } from '../../lib/git.js';
import { writeLooseObject } from '../../lib/state/objects.js';
import { DB_COPY_REFS } from '../../lib/tasklog/copy.js';
import { PACK_LIMIT, PACK_LOOSE_AFTER, PACK_REFS_AFTER, STATE_REF_PREFIX, objectCounts, packLoose, removeStalePackedRefsLock, workspaceCommitObject, writeRef } from '../../lib/state/checkpoint.js';

test('loose objects and refs past their thresholds are packed; a ref written or deleted after that reads as written; fsck stays clean', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-pack-'));
  try {
    await Git.plain(['init', '-q', dir], dir);
    const g = new Git(dir);
    const tree = await g.out(['write-tree']);
    const commit = async (n: number): Promise<string> => g.out(['hash-object', '-t', 'commit', '-w', '--stdin'], { input: workspaceCommitObject(tree, null, 1_700_000_000 + n, `c${n}\n`) });
    // Below both thresholds: nothing packed.
    const first = await commit(0);
    writeRef(g.gitDir, 'refs/heads/main', first);
    for (let i = 0; i < PACK_REFS_AFTER - 2; i++) writeRef(g.gitDir, `${STATE_REF_PREFIX}${i.toString(16).padStart(8, '0')}`, first);
    await packLoose([{ git: g, store: 'workspace' }]);
    assert.equal(objectCounts(g.gitDir).refs, PACK_REFS_AFTER - 1);
    assert.equal(fs.existsSync(path.join(g.gitDir, 'packed-refs')), false);
    // Past them: objects (blobs and commits) and refs.
    const oids: string[] = [];
    for (let i = 0; i < PACK_LOOSE_AFTER + 10; i++) oids.push(await commit(i + 1));
    for (let i = 0; i < 40; i++) writeRef(g.gitDir, `${STATE_REF_PREFIX}${(1000 + i).toString(16).padStart(8, '0')}`, oids[i] as string);
    const before = objectCounts(g.gitDir);
    assert.ok(before.loose >= PACK_LOOSE_AFTER && before.refs >= PACK_REFS_AFTER, JSON.stringify(before));
    await packLoose([{ git: g, store: 'workspace' }]);
    const after = objectCounts(g.gitDir);
    assert.deepEqual({ loose: after.loose, refs: after.refs }, { loose: 0, refs: 0 }, JSON.stringify(after));
    assert.equal(after.packs, 1);
    // Every ref reads as it was written, from packed-refs.
    const listed = new Map((await g.out(['for-each-ref', '--format=%(refname) %(objectname)'])).split('\n').map((l) => l.split(' ') as [string, string]));
    assert.equal(listed.size, PACK_REFS_AFTER - 1 + 40);
    assert.equal(listed.get('refs/heads/main'), first);
    assert.equal(listed.get(`${STATE_REF_PREFIX}${(1000 + 7).toString(16).padStart(8, '0')}`), oids[7]);
    // A checkpoint moves main (a loose ref over the packed one), a prune deletes a packed ref.
    writeRef(g.gitDir, 'refs/heads/main', oids[3] as string);
    assert.equal(await g.out(['rev-parse', 'refs/heads/main']), oids[3]);
    await g.run(['update-ref', '-d', `${STATE_REF_PREFIX}${(1000 + 1).toString(16).padStart(8, '0')}`, oids[1] as string]);
    assert.equal(await g.resolve(`${STATE_REF_PREFIX}${(1000 + 1).toString(16).padStart(8, '0')}`), null);
    const fsck = await g.run(['fsck', '--strict', '--no-progress'], { allowFail: true });
    assert.equal(fsck.code, 0, fsck.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a packed-refs.lock older than a minute (a killed pack-refs') is removed, a fresh one (a git command at work) is not", { timeout: 10_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-pack-lock-'));
  try {
    const lock = path.join(dir, 'packed-refs.lock');
    fs.writeFileSync(lock, '');
    removeStalePackedRefsLock(dir);
    assert.ok(fs.existsSync(lock), 'a fresh lock stays');
    const old = new Date(Date.now() - 2 * 60_000);
    fs.utimesSync(lock, old, old);
    removeStalePackedRefsLock(dir);
    assert.equal(fs.existsSync(lock), false, 'a stale lock is gone');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("state.git: the task log's database copy stays loose (so the next copy deletes it); past PACK_LIMIT packs, unreachable objects go in state.git but for what the index names, and stay in the workspace's", { timeout: 60_000 }, async () => {
  const dirs: string[] = [];
  try {
    const setUp = async (): Promise<{ g: Git; copy: string; unreachable: string; indexed: string; named: string }> => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-pack-state-'));
      dirs.push(dir);
      await Git.plain(['init', '-q', dir], dir);
      const g = new Git(dir);
      const copy = writeLooseObject(g.gitDir, 'blob', Buffer.alloc(300_000, 7));
      writeRef(g.gitDir, `${DB_COPY_REFS}${'a'.repeat(64)}`, copy);
      const unreachable = writeLooseObject(g.gitDir, 'blob', 'nothing names me\n');
      fs.writeFileSync(path.join(dir, 'staged.txt'), 'in the index only\n');
      await g.run(['add', 'staged.txt']);
      const indexed = await g.out(['rev-parse', ':staged.txt']);
      const named = writeLooseObject(g.gitDir, 'blob', 'a ref names me\n');
      writeRef(g.gitDir, 'refs/keep/one', named);
      for (let i = 0; i < PACK_LOOSE_AFTER; i++) writeLooseObject(g.gitDir, 'blob', `filler ${i}\n`);
      return { g, copy, unreachable, indexed, named };
    };
    const exists = async (g: Git, oid: string): Promise<boolean> => (await g.run(['cat-file', '-e', oid], { allowFail: true })).code === 0;
    const loose = (g: Git, oid: string): boolean => fs.existsSync(path.join(g.gitDir, 'objects', oid.slice(0, 2), oid.slice(2)));
    for (const store of ['state', 'workspace'] as const) {
      const { g, copy, unreachable, indexed, named } = await setUp();
      await packLoose([{ git: g, store }]);
      assert.equal(loose(g, copy), store === 'state', `${store}: the database copy ${store === 'state' ? 'stays loose' : 'is packed'}`);
      assert.equal(loose(g, unreachable), false, `${store}: an unreachable loose object is packed too`);
      assert.equal(objectCounts(g.gitDir).loose, store === 'state' ? 1 : 0);
      // Packs up to the limit, then the consolidation.
      for (let i = objectCounts(g.gitDir).packs; i < PACK_LIMIT; i++) {
        const o = writeLooseObject(g.gitDir, 'blob', `pack ${i}\n`);
        writeRef(g.gitDir, `refs/keep/p${i}`, o);
        await g.run(['pack-objects', '-q', path.join(g.gitDir, 'objects', 'pack', 'pack')], { input: `${o}\n` });
        await g.run(['prune-packed', '-q']);
      }
      assert.equal(objectCounts(g.gitDir).packs, PACK_LIMIT);
      await packLoose([{ git: g, store }]);
      assert.equal(objectCounts(g.gitDir).packs, 1, `${store}: one pack`);
      assert.equal(await exists(g, unreachable), store === 'workspace', `${store}: the unreachable object ${store === 'workspace' ? 'stays' : 'is gone'}`);
      assert.equal(await exists(g, indexed), true, `${store}: what the index names stays`);
      assert.equal(await exists(g, named), true);
      assert.equal(await exists(g, copy), true);
      const fsck = await g.run(['fsck', '--strict', '--no-progress', '--no-dangling'], { allowFail: true });
      assert.equal(fsck.code, 0, fsck.stderr);
    }
  } finally {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }
});
