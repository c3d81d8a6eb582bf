// A full disk is an I/O error (exit 74) whatever git says about it, and a
// checkpoint that fails on one makes no checkpoint and leaves no temporary
// object behind: on a real, small tmpfs (mounted as root, as CI runs), at
// every amount of space left, page by page.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { git, makeEnv, sw } from '../helpers.js';
import { GitError } from '../../lib/git.js';
import { EXIT } from '../../lib/exit.js';
import { runPaths } from '../../lib/run.js';

const res = (stderr: string) => ({ code: 128, signal: null, stdout: '', stderr, timedOut: false });

test("git's ways of saying the disk is full (or a write failed) are exit 74, with the line that says so", () => {
  for (const [stderr, message] of [
    ["fatal: sha1 file '/r/state.git/index.lock' write error. Out of diskspace\n", "git add: sha1 file '/r/state.git/index.lock' write error. Out of diskspace"],
    ['error: unable to write loose object file: No space left on device\nfatal: unable to write new index file\n', 'git add: unable to write loose object file: No space left on device'],
    ['error: insufficient permission\nfatal: cannot write: Disk quota exceeded\n', 'git add: cannot write: Disk quota exceeded'],
    ['fatal: unable to write new index file\n', 'git add: unable to write new index file'],
    ['fatal: short write\n', 'git add: short write'],
    ['error: could not write index\n', 'git add: could not write index'],
  ] as const) {
    const e = new GitError(['add', '--all'], res(stderr));
    assert.equal(e.code, EXIT.IOERR, stderr);
    assert.equal(e.message, message);
  }
  const other = new GitError(['rev-parse'], res("fatal: ambiguous argument 'x': unknown revision\n"));
  assert.equal(other.code, EXIT.FAIL, 'any other failure stays 1');
});

test('sw-checkpoint create on a full disk: exit 74 at every point it can fail, nothing changed, no temporary objects left', { timeout: 120_000, skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root (CI runs as root)' : false }, async () => {
  const t = makeEnv();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0755', 'tmpfs', t.stateDir]);
  try {
    assert.equal((await sw('sw-agent', ['init', 'run1', '-q'], t)).exitCode, 0);
    assert.equal((await sw('sw-checkpoint', ['create', 'run1', '-q'], t)).exitCode, 0);
    const p = runPaths('run1', t.env);
    for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(p.stateDir, 'memory', `note${i}.md`), `${'y'.repeat(3000)} ${i}\n`);
    const fill = path.join(t.stateDir, 'fill');
    const refs = async () => String((await git(p.stateDir, ['for-each-ref'], path.join(p.runDir, 'state.git'))).stdout);
    const tmpObjects = (): string[] => {
      const out: string[] = [];
      for (const repo of [path.join(p.runDir, 'state.git'), path.join(p.defaultWorkspace, '.git')]) {
        const objects = path.join(repo, 'objects');
        for (const d of fs.readdirSync(objects)) {
          if (!fs.statSync(path.join(objects, d)).isDirectory()) continue;
          for (const n of fs.readdirSync(path.join(objects, d))) if (n.startsWith('tmp_')) out.push(path.join(objects, d, n));
        }
      }
      return out;
    };
    /** Checkpoints the task log's journal records (not checkpoint_failed, which a failure adds by design). */
    const checkpointEvents = (): number => fs.readFileSync(p.tasklogJournal, 'utf8').split('\n').filter((l) => l.includes('"t":"checkpoint"')).length;
    const seen = new Set<string>();
    let created = false;
    // Leave 0, 1, 2 ... pages free: each step fails somewhere else (git add, write-tree, commit-tree, the refs, the task log) until it fits.
    for (let pages = 0; pages < 64 && !created; pages++) {
      fs.rmSync(fill, { force: true });
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${fill}`, 'bs=4096'], { stdio: 'ignore' });
      } catch {
        /* dd stops at the full disk */
      }
      if (pages > 0) fs.truncateSync(fill, Math.max(0, fs.statSync(fill).size - pages * 4096));
      const before = { refs: await refs(), checkpoints: checkpointEvents(), notes: fs.readdirSync(path.join(p.stateDir, 'memory')) };
      const r = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'manual'], t);
      if (r.exitCode === 0) {
        created = true;
        break;
      }
      assert.equal(r.exitCode, 74, `${pages} pages free: ${r.stderr}`);
      seen.add(String(r.stderr).replace(/'[^']*'/g, "'...'").replace(/\/\S+/g, '...'));
      assert.equal(await refs(), before.refs, `${pages} pages free: no checkpoint ref`);
      assert.equal(checkpointEvents(), before.checkpoints, `${pages} pages free: no checkpoint recorded (its failure may be)`);
      assert.deepEqual(fs.readdirSync(path.join(p.stateDir, 'memory')), before.notes);
      assert.deepEqual(tmpObjects(), [], `${pages} pages free: git's temporary objects are removed`);
    }
    assert.ok(created, `the checkpoint was made once there was room; failures seen: ${[...seen].join(' | ')}`);
    fs.rmSync(fill, { force: true });
    const v = await sw('sw-checkpoint', ['verify', 'run1'], t);
    assert.equal(v.exitCode, 0, String(v.stdout) + String(v.stderr));
  } finally {
    execFileSync('umount', [t.stateDir]);
    t.cleanup();
  }
});
