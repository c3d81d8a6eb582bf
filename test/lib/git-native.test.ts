// What the agent does without a git process (issue 11: each spawn from its
// big process blocked it ~13 ms, 15 of them a task): loose objects written,
// refs read, several git commands in one spawn. Each checked against git.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Git, GitError } from '../../lib/git.js';
import { writeLooseObject } from '../../lib/state/objects.js';
import { workspaceCommitObject, writeRef } from '../../lib/state/checkpoint.js';

async function repo(): Promise<{ dir: string; g: Git }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-gitnative-'));
  await Git.plain(['init', '-q', dir], dir);
  return { dir, g: new Git(dir) };
}

test('a loose object written without git is the one git would write: same id, readable, fsck clean; written again, it is left and its time refreshed', { timeout: 30_000 }, async () => {
  const { dir, g } = await repo();
  try {
    fs.writeFileSync(path.join(dir, 'a.txt'), 'hello\n');
    const [, tree] = await g.sequence([['add', '--all', '--', '.'], ['write-tree']]);
    const body = workspaceCommitObject(tree as string, null, 1_700_000_000, 'a commit\n\nwith a body\n');
    const oid = writeLooseObject(g.gitDir, 'commit', body);
    assert.equal(oid, await g.out(['hash-object', '-t', 'commit', '--stdin'], { input: body }));
    assert.equal(await g.out(['cat-file', 'commit', oid]), body.replace(/\n$/, ''));
    const blob = writeLooseObject(g.gitDir, 'blob', Buffer.from([0, 1, 2, 255]));
    assert.equal(blob, await g.out(['hash-object', '--stdin'], { input: Buffer.from([0, 1, 2, 255]) }));
    const file = path.join(g.gitDir, 'objects', oid.slice(0, 2), oid.slice(2));
    assert.equal(fs.statSync(file).mode & 0o777, 0o444);
    const old = new Date(Date.now() - 3600_000);
    fs.utimesSync(file, old, old);
    const bytes = fs.readFileSync(file);
    assert.equal(writeLooseObject(g.gitDir, 'commit', body), oid);
    assert.deepEqual(fs.readFileSync(file), bytes);
    assert.ok(fs.statSync(file).mtimeMs > Date.now() - 60_000, 'its time is now');
    writeRef(g.gitDir, 'refs/heads/main', oid);
    const fsck = await g.run(['fsck', '--strict', '--no-progress'], { allowFail: true });
    assert.equal(fsck.code, 0, fsck.stderr);
    assert.deepEqual(fs.readdirSync(path.join(g.gitDir, 'objects', oid.slice(0, 2))).filter((n) => n.startsWith('tmp_')), [], 'no temporary file left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('git commands in one spawn: each one its stdout; the first that fails throws its own GitError, and those after it never run; one allowed to fail says so by an empty stdout', { timeout: 30_000 }, async () => {
  const { dir, g } = await repo();
  try {
    fs.writeFileSync(path.join(dir, "it's a file.txt"), 'x\n');
    const [add, tree, head] = await g.sequence([['add', '--all', '--', '.'], ['write-tree'], { args: ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], allowFail: true }]);
    assert.equal(add, '');
    assert.match(tree as string, /^[0-9a-f]{40}$/);
    assert.equal(head, '', 'an unborn HEAD');
    assert.match(await g.out(['ls-tree', '--name-only', tree as string]), /it's a file\.txt/, 'a quote in an argument survives');
    await assert.rejects(
      g.sequence([['rev-parse', '--verify', 'no-such-rev'], ['update-ref', 'refs/heads/never', tree as string]]),
      (e: unknown) => e instanceof GitError && e.args[0] === 'rev-parse' && /no-such-rev|Needed a single revision/.test(e.message) && !/selfware-step/.test(e.stderr),
    );
    assert.equal(fs.existsSync(path.join(g.gitDir, 'refs', 'heads', 'never')), false, 'the command after the failed one did not run');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a ref read from the files is what git reads: loose, packed, loose over packed, absent', { timeout: 30_000 }, async () => {
  const { dir, g } = await repo();
  try {
    const c = (n: number): string => writeLooseObject(g.gitDir, 'commit', workspaceCommitObject('4b825dc642cb6eb9a060e54bf8d69288fbee4904', null, 1_700_000_000 + n, `c${n}\n`));
    writeLooseObject(g.gitDir, 'tree', Buffer.alloc(0));
    const [a, b] = [c(1), c(2)];
    writeRef(g.gitDir, 'refs/selfware/pretask/t1', a);
    assert.equal(await g.readRef('refs/selfware/pretask/t1'), a);
    await g.run(['pack-refs', '--all', '--prune']);
    assert.equal(fs.existsSync(path.join(g.gitDir, 'refs/selfware/pretask/t1')), false);
    assert.equal(await g.readRef('refs/selfware/pretask/t1'), a, 'packed');
    writeRef(g.gitDir, 'refs/selfware/pretask/t1', b);
    assert.equal(await g.readRef('refs/selfware/pretask/t1'), b, 'loose over packed');
    assert.equal(await g.readRef('refs/selfware/pretask/t2'), null);
    assert.equal(await g.readRef('refs/selfware/pretask/t'), null, 'a prefix of a packed ref is no ref');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
