import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT, SwError, describeError, exitCodeFor } from '../../lib/exit.js';

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
