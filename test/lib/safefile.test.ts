// The safe reader every parsed file goes through: what a file is, how big,
// whether it is text, how deep it nests, each refused with where and why.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { BadFileError, FILE_LIMITS, decodeText, jsonTooDeep, readTextFile, yamlTooDeep } from '../../lib/safefile.js';
import { EXIT } from '../../lib/exit.js';
import { makeEnv } from '../helpers.js';

const depth = (v: unknown): number =>
  Array.isArray(v) ? 1 + Math.max(0, ...v.map(depth)) : v && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0;

test('YAML nesting is measured without the parser: flow, block, compact and mixed, exactly at 64', { timeout: 60_000 }, async () => {
  const cases: Array<[string, string]> = [
    ['flow', `p: ${'['.repeat(63)}${']'.repeat(63)}\n`],
    ['block sequences', `${'- '.repeat(64)}x\n`],
    ['block mappings', `${Array.from({ length: 64 }, (_, i) => `${' '.repeat(i)}a:`).join('\n')} x\n`],
    ['a sequence at its key\'s column', `a:\n${Array.from({ length: 31 }, (_, i) => `${' '.repeat(2 * i)}- k:`).join('\n')} x\n`],
  ];
  for (const [what, text] of cases) {
    assert.ok(depth(parse(text)) >= 63 && depth(parse(text)) <= 64, `${what}: the case is 63 or 64 deep`);
    assert.equal(await yamlTooDeep(text), null, `${what}: 64 levels are fine`);
  }
  assert.deepEqual(await yamlTooDeep(`p: ${'['.repeat(64)}${']'.repeat(64)}\n`), { line: 1, col: 67 });
  assert.deepEqual(await yamlTooDeep(`${'- '.repeat(65)}x\n`), { line: 1, col: 129 });
  assert.deepEqual(await yamlTooDeep(`a:\n${Array.from({ length: 32 }, (_, i) => `${' '.repeat(2 * i)}- k:`).join('\n')} x\n`), { line: 33, col: 66 });
  // Brackets in quotes, comments and block scalars, and deep indentation inside a block scalar, are text.
  const text = `p: "${'['.repeat(100)}"\nq: '${'{'.repeat(100)}'\n# ${'['.repeat(100)}\nr: |\n  ${'['.repeat(100)}\n${' '.repeat(200)}code\n`;
  assert.equal(await yamlTooDeep(text), null);
  // 20,000 brackets (what crashed sw-recover) are refused at the 64th, quickly.
  const t0 = Date.now();
  assert.deepEqual(await yamlTooDeep(`prompt: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`), { line: 1, col: 72 });
  assert.ok(Date.now() - t0 < 5000);
});

test('JSON nesting is measured outside strings', () => {
  assert.equal(jsonTooDeep('{"a":"[[[[","b":[1,[2]]}', 3), null);
  assert.equal(jsonTooDeep('[[[1]]]', 2), 2);
  assert.equal(jsonTooDeep('"\\"[[[" ', 0), null);
});

test('text is UTF-8 without NUL; where it is not is named', () => {
  assert.equal(decodeText('f', Buffer.from('\ufeffa: é\n')), 'a: é\n', 'a byte-order mark is dropped');
  const nul = (): string => decodeText('f', Buffer.from('a: 1\nb: x\u0000y\n'));
  assert.throws(nul, (e: unknown) => e instanceof BadFileError && e.message === 'f:2:5: not text: a NUL byte' && e.code === EXIT.DATAERR);
  assert.throws(() => decodeText('f', Buffer.from([0x61, 0x0a, 0x62, 0xc3, 0x28]), EXIT.CONFIG), (e: unknown) => e instanceof BadFileError && e.message === 'f:2:2: not text: invalid UTF-8' && e.code === EXIT.CONFIG);
  assert.throws(() => decodeText('f', Buffer.from([0xed, 0xa0, 0x80])), /f:1:1: not text: invalid UTF-8/, 'a surrogate');
});

test('a file is read only if it is a regular file within its limit; a FIFO is refused, never waited on', { timeout: 30_000 }, () => {
  const t = makeEnv();
  try {
    const f = path.join(t.dir, 'task.yaml');
    fs.writeFileSync(f, 'prompt: x\n');
    assert.equal(readTextFile(f, 'task'), 'prompt: x\n');
    const link = path.join(t.dir, 'link.yaml');
    fs.symlinkSync(f, link);
    assert.throws(() => readTextFile(link, 'task'), (e: unknown) => e instanceof BadFileError && e.message === `${link}: a symbolic link, not a file`);
    assert.equal(readTextFile(link, 'script', { follow: true }), 'prompt: x\n', 'followed when asked');
    assert.throws(() => readTextFile(t.dir, 'task'), /: a directory, not a file$/);
    assert.throws(() => readTextFile('/dev/zero', 'script', { follow: true }), /\/dev\/zero: a character device, not a file$/);
    const fifo = path.join(t.dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => readTextFile(fifo, 'script', { follow: true }), /fifo: a FIFO, not a file$/);
    const big = path.join(t.dir, 'big.yaml');
    fs.writeFileSync(big, '');
    fs.truncateSync(big, FILE_LIMITS.task + 1);
    assert.throws(() => readTextFile(big, 'task'), /big\.yaml: too big \(256 KiB; a task file may hold at most 256 KiB\)$/);
    fs.truncateSync(big, FILE_LIMITS.task);
    assert.throws(() => readTextFile(big, 'task'), /big\.yaml:1:1: not text: a NUL byte$/, 'at the limit it is read (and its zeros are not text)');
    assert.throws(() => readTextFile(path.join(t.dir, 'none'), 'task'), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT');
  } finally {
    t.cleanup();
  }
});
