// What the newest checkpoint leaves unprotected is worked out the way a
// checkpoint stages (so "nothing changed" means a checkpoint now would be
// skipped), for every kind of file a workspace holds, without writing into it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { git, makeEnv, sw } from '../helpers.js';
import { runPaths } from '../../lib/run.js';
import { pendingChanges } from '../../lib/state/index.js';

test('pending changes agree with what a routine checkpoint would make, for every kind of file', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const p = runPaths('run1', t.env);
    assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
    const ws = p.defaultWorkspace;
    const w = (f: string, s: string): void => {
      fs.mkdirSync(path.dirname(path.join(ws, f)), { recursive: true });
      fs.writeFileSync(path.join(ws, f), s);
    };
    // Tracked, untracked, ignored, a symlink, an executable, a nested directory.
    w('tracked.txt', 'one\n');
    w('gone.txt', 'soon gone\n');
    w('.gitignore', 'build/\n');
    for (const args of [['add', '-A'], ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'first']]) assert.equal((await git(ws, args)).exitCode, 0);
    w('untracked.txt', 'new\n');
    w('deep/dir/file.txt', 'deep\n');
    w('build/out.o', 'ignored\n');
    fs.symlinkSync('tracked.txt', path.join(ws, 'link'));
    w('run.sh', '#!/bin/sh\n');
    fs.chmodSync(path.join(ws, 'run.sh'), 0o755);
    assert.equal((await sw('sw-checkpoint', ['create', 'run1'], t)).exitCode, 0);
    const none = await pendingChanges(p, ws);
    assert.deepEqual(none.paths, [], 'right after a checkpoint, nothing is unprotected');
    const skip = JSON.parse(String((await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine', '--json'], t)).stdout)) as { skipped: boolean };
    assert.equal(skip.skipped, true, 'and a routine checkpoint agrees: it is skipped');
    // Times changed, contents not: still nothing.
    const later = new Date(Date.now() + 10_000);
    for (const f of ['tracked.txt', 'untracked.txt', 'deep/dir/file.txt']) fs.utimesSync(path.join(ws, f), later, later);
    assert.deepEqual((await pendingChanges(p, ws)).paths, []);
    // Every kind of change.
    w('tracked.txt', 'two\n');
    fs.rmSync(path.join(ws, 'gone.txt'));
    w('deep/dir/new.txt', 'added\n');
    fs.chmodSync(path.join(ws, 'run.sh'), 0o644);
    w('build/more.o', 'still ignored\n');
    fs.writeFileSync(path.join(p.stateDir, 'memory', 'lesson.md'), 'a lesson\n');
    const some = await pendingChanges(p, ws);
    assert.deepEqual(some.paths.sort(), ['state/memory/lesson.md', 'workspace/deep/dir/new.txt', 'workspace/gone.txt', 'workspace/run.sh', 'workspace/tracked.txt']);
    assert.ok(some.since !== null && some.checkpoint !== null);
    // A repository inside the workspace (what only `git add` handles): still worked out.
    fs.mkdirSync(path.join(ws, 'vendored'));
    assert.equal((await git(path.join(ws, 'vendored'), ['init', '-q'])).exitCode, 0);
    fs.writeFileSync(path.join(ws, 'vendored', 'x'), 'x\n');
    for (const args of [['add', 'x'], ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'x']]) assert.equal((await git(path.join(ws, 'vendored'), args)).exitCode, 0);
    const nested = await pendingChanges(p, ws);
    assert.ok(nested.paths.includes('workspace/vendored'), nested.paths.join(' '));
    assert.equal((await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t)).exitCode, 0);
    assert.deepEqual((await pendingChanges(p, ws)).paths, [], 'after the checkpoint that holds them all');
  } finally {
    t.cleanup();
  }
});
