import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT, SwError, describeError, exitCodeFor, isDiskFull } from '../../lib/exit.js';
import { GitError } from '../../lib/git.js';

test('the exit-code table is the one in DESIGN.md, with 77 for a run of another user (issue 10: a documented code)', () => {
  assert.deepEqual(EXIT, { OK: 0, FAIL: 1, USAGE: 64, DATAERR: 65, NOINPUT: 66, UNAVAILABLE: 69, IOERR: 74, TEMPFAIL: 75, NOPERM: 77, CONFIG: 78 });
});

test('errors map to codes', () => {
  assert.equal(exitCodeFor(new SwError('x', 66)), 66);
  const enospc = Object.assign(new Error('write'), { code: 'ENOSPC', syscall: 'write' });
  assert.equal(exitCodeFor(enospc), 74);
  assert.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'EAGAIN' })), 75);
  assert.equal(exitCodeFor(new Error('plain')), 1);
  assert.equal(exitCodeFor('string'), 1);
});

test('system errors read as one line without Node noise', () => {
  const e = Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: 'ENOENT', syscall: 'open', path: '/x' });
  assert.equal(describeError(e), "cannot open '/x': no such file or directory");
  assert.equal(describeError(new Error('first\nsecond')), 'first');
});

test('a write that failed on a filesystem with no room left is a full disk, also when the writer does not say so (git: "Unable to write new index file")', { timeout: 30_000, skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root (CI runs as root)' : false }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-full-'));
  const roomy = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-roomy-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', dir]);
  try {
    // What the soak saw an agent die of on a full disk (exit 74, counted as a crash).
    const indexFailed = new GitError(['add', '--all', '--', '.'], { code: 128, signal: null, stdout: '', stderr: 'fatal: Unable to write new index file\n', timedOut: false });
    const other = new GitError(['rev-parse', 'x'], { code: 128, signal: null, stdout: '', stderr: "fatal: ambiguous argument 'x'\n", timedOut: false });
    const named = Object.assign(new Error('write'), { code: 'ENOSPC', syscall: 'write' });
    // Room left (24 MiB, past DISK_LOW_BYTES): a failed write is only a failed write; ENOSPC is a full disk wherever.
    assert.equal(isDiskFull(indexFailed), false);
    assert.equal(isDiskFull(indexFailed, [dir, roomy]), false);
    assert.equal(isDiskFull(named), true);
    fs.writeFileSync(path.join(dir, 'fill'), Buffer.alloc(0));
    assert.throws(() => {
      for (;;) fs.appendFileSync(path.join(dir, 'fill'), Buffer.alloc(64 * 1024));
    }, /ENOSPC/);
    assert.equal(isDiskFull(indexFailed, [roomy]), false, 'the full filesystem is not one written to');
    assert.equal(isDiskFull(indexFailed, [roomy, dir]), true);
    assert.equal(isDiskFull(new Error('checkpoint failed', { cause: indexFailed }), [dir]), true, 'through the cause');
    assert.equal(isDiskFull(other, [dir]), false, 'an error that is no failed write, on a full disk');
    assert.equal(isDiskFull(new Error('plain'), [dir]), false);
  } finally {
    execFileSync('umount', ['-l', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(roomy, { recursive: true, force: true });
  }
});
