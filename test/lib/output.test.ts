import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Output, isJournalStream, table } from '../../lib/output.js';
import { makeEnv } from '../helpers.js';

class Sink extends Writable {
  text = '';
  isTTY?: boolean;
  fd?: number;
  constructor(opts: { isTTY?: boolean; fd?: number } = {}) {
    super();
    this.isTTY = opts.isTTY;
    this.fd = opts.fd;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

function make(opts: ConstructorParameters<typeof Output>[1], env: NodeJS.ProcessEnv = {}, tty = false, fd?: number) {
  const stdout = new Sink();
  const stderr = new Sink({ isTTY: tty, fd });
  return { out: new Output('sw-test', opts, { stdout, stderr, env }), stdout, stderr };
}

test('levels: quiet hides info, verbose and debug need their flags', () => {
  const a = make({});
  a.out.info('i');
  a.out.verbose('v');
  a.out.debug('d');
  a.out.warn('w');
  a.out.error('e');
  assert.equal(a.stderr.text, 'sw-test: i\nsw-test: warning: w\nsw-test: e\n');
  const q = make({ quiet: true });
  q.out.info('i');
  q.out.notice('n');
  q.out.error('e');
  assert.equal(q.stderr.text, 'sw-test: n\nsw-test: e\n');
  const v = make({ verbose: true });
  v.out.verbose('v');
  v.out.debug('d');
  assert.equal(v.stderr.text, 'sw-test: v\n');
  const d = make({ debug: true });
  d.out.debug('d');
  assert.equal(d.stderr.text, 'sw-test: debug: d\n');
});

test('data goes to stdout, diagnostics to stderr; --json errors are JSON', () => {
  const j = make({ json: true });
  j.out.json({ a: 1 });
  j.out.error('boom', 66);
  assert.equal(j.stdout.text, '{"a":1}\n');
  assert.deepEqual(JSON.parse(j.stderr.text), { type: 'error', code: 66, message: 'boom' });
});

test('colour only on a TTY, never with NO_COLOR or --json', () => {
  const tty = make({}, {}, true);
  tty.out.error('e');
  assert.match(tty.stderr.text, /\x1b\[31m/);
  const nc = make({}, { NO_COLOR: '1' }, true);
  nc.out.error('e');
  assert.doesNotMatch(nc.stderr.text, /\x1b\[/);
  const js = make({ json: true }, {}, true);
  js.out.warn('w');
  assert.doesNotMatch(js.stderr.text, /\x1b\[/);
  const pipe = make({}, {}, false);
  pipe.out.error('e');
  assert.doesNotMatch(pipe.stderr.text, /\x1b\[/);
});

test('sd-daemon priority prefixes when stderr is the journal stream', () => {
  const t = makeEnv();
  try {
    const f = path.join(t.dir, 'journal');
    const fd = fs.openSync(f, 'w');
    const st = fs.fstatSync(fd);
    const env = { JOURNAL_STREAM: `${st.dev}:${st.ino}` };
    assert.equal(isJournalStream(env, fd), true);
    assert.equal(isJournalStream({ JOURNAL_STREAM: '1:2' }, fd), false);
    assert.equal(isJournalStream({}, fd), false);
    const j = make({ verbose: true, debug: true }, env, true, fd);
    j.out.error('e');
    j.out.warn('w');
    j.out.notice('n');
    j.out.info('i');
    j.out.debug('d');
    assert.equal(j.stderr.text, '<3>sw-test: e\n<4>sw-test: warning: w\n<5>sw-test: n\n<6>sw-test: i\n<7>sw-test: debug: d\n');
    fs.closeSync(fd);
  } finally {
    t.cleanup();
  }
});

test('table aligns columns', () => {
  assert.equal(table([['A', 'BB'], ['ccc', 'd']]), 'A    BB\nccc  d');
});
