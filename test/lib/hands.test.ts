// The agent's hands (lib/agent/hands.ts) on real files in a real git
// workspace: view windows and trees, search by ripgrep and by git grep, edit
// by exact replacement with its errors, apply_patch checked before it applies.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyPatchAction, editAction, haveRipgrep, searchAction, viewAction } from '../../lib/agent/hands.js';
import { parseAction, patchPaths } from '../../lib/agent/schema.js';

const BUDGET = 16 * 1024;

function repo(): { ws: string; done: () => void; git: (...a: string[]) => string } {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-hands-'));
  const git = (...a: string[]): string => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...a], { cwd: ws, encoding: 'utf8' });
  git('init', '-q', '-b', 'main');
  fs.mkdirSync(path.join(ws, 'src', 'deep', 'er', 'est'), { recursive: true });
  const big = Array.from({ length: 2000 }, (_, i) => `line ${i + 1} of the big file`).join('\n') + '\n';
  fs.writeFileSync(path.join(ws, 'src', 'big.txt'), big);
  fs.writeFileSync(path.join(ws, 'src', 'util.js'), 'export function total(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n');
  fs.writeFileSync(path.join(ws, 'src', 'main.js'), "import { total } from './util.js';\nconsole.log(total([1, 2]));\nconsole.log(total([3]));\n");
  fs.writeFileSync(path.join(ws, 'src', 'deep', 'er', 'est', 'x.js'), 'const x = total([]);\n');
  fs.writeFileSync(path.join(ws, '.gitignore'), 'build/\n');
  fs.mkdirSync(path.join(ws, 'build'));
  fs.writeFileSync(path.join(ws, 'build', 'out.js'), 'total(1)\n');
  fs.writeFileSync(path.join(ws, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  git('add', '-A');
  git('commit', '-qm', 'start');
  return { ws, git, done: () => fs.rmSync(ws, { recursive: true, force: true }) };
}

test('view: a window of a long file, numbered, with where it stands; bounded; errors that say where the file ends', { timeout: 30_000 }, async () => {
  const r = repo();
  try {
    const v = await viewAction(r.ws, 'src/big.txt', { start: 995, end: 1005 }, BUDGET);
    assert.equal(v.ok, true);
    const rows = v.output.split('\n');
    assert.equal(rows[0], ' 995  line 995 of the big file');
    assert.equal(rows[10], '1005  line 1005 of the big file');
    assert.equal(rows[11], '(lines 995-1005 of 2000; view from 1006 for more)');
    // Without a range: the first window, and how to go on.
    const first = await viewAction(r.ws, 'src/big.txt', {}, BUDGET);
    assert.match(first.output, /^  1  line 1 of/);
    assert.match(first.output, /\(lines 1-200 of 2000; view from 201 for more\)$/);
    // The output budget cuts at a whole line and says where to go on.
    const small = await viewAction(r.ws, 'src/big.txt', { start: 1, end: 0 }, 400);
    assert.ok(small.output.length <= 400 + 120, `${small.output.length}`);
    assert.match(small.output, /\(lines 1-\d+ of 2000 shown: the output budget; view from \d+ for more\)$/);
    const past = await viewAction(r.ws, 'src/big.txt', { start: 2500, end: 2600 }, BUDGET);
    assert.equal(past.ok, false);
    assert.equal(past.error, "'src/big.txt' has 2000 lines; start 2500 is past its end");
    assert.match((await viewAction(r.ws, 'nope.txt', {}, BUDGET)).error ?? '', /'nope.txt' does not exist/);
    assert.match((await viewAction(r.ws, '../etc/passwd', {}, BUDGET)).error ?? '', /outside the workspace/);
    fs.writeFileSync(path.join(r.ws, 'bin.dat'), Buffer.from([1, 0, 2, 3]));
    assert.match((await viewAction(r.ws, 'bin.dat', {}, BUDGET)).error ?? '', /binary file/);
  } finally {
    r.done();
  }
});

test('view: a directory as a tree, git-ignored files left out, deep directories as counts', { timeout: 30_000 }, async () => {
  const r = repo();
  try {
    fs.writeFileSync(path.join(r.ws, 'untracked.md'), 'new\n');
    const v = await viewAction(r.ws, '.', {}, BUDGET);
    assert.equal(v.ok, true, v.error);
    const rows = v.output.split('\n');
    assert.equal(rows[0], './: 7 files (git-ignored ones left out)');
    assert.ok(rows.includes('src/'), v.output);
    assert.ok(rows.includes('  deep/'), v.output);
    assert.ok(rows.includes('    er/ (1 file)'), v.output);
    assert.ok(rows.includes('untracked.md'), v.output);
    assert.ok(!v.output.includes('build'), v.output);
    const sub = await viewAction(r.ws, 'src', {}, BUDGET);
    assert.match(sub.output, /^src\/: 4 files/);
  } finally {
    r.done();
  }
});

for (const tool of ['rg', 'git'] as const) {
  test(`search (${tool}): file and line of each match, ignored files left out, capped, bad patterns said`, { timeout: 30_000 }, async (t) => {
    if (tool === 'rg' && !haveRipgrep()) {
      // The project installs ripgrep (Makefile APT_TEST): its absence here is a broken set-up.
      assert.fail('ripgrep is not installed: run make deps');
    }
    const r = repo();
    try {
      const s = await searchAction(r.ws, 'total\\(', undefined, { budget: BUDGET, timeoutMs: 20_000, tool });
      assert.equal(s.ok, true, s.error);
      const rows = s.output.split('\n');
      assert.deepEqual(rows.slice(0, -1).sort(), ['src/deep/er/est/x.js:1: const x = total([]);', 'src/main.js:2: console.log(total([1, 2]));', 'src/main.js:3: console.log(total([3]));', 'src/util.js:1: export function total(xs) {'].sort());
      assert.equal(rows[rows.length - 1], '(4 matches in 3 files)');
      const under = await searchAction(r.ws, 'total', 'src/deep', { budget: BUDGET, timeoutMs: 20_000, tool });
      assert.match(under.output, /^src\/deep\/er\/est\/x\.js:1: /);
      const none = await searchAction(r.ws, 'no such thing here', undefined, { budget: BUDGET, timeoutMs: 20_000, tool });
      assert.equal(none.ok, true);
      assert.equal(none.output, 'no match for "no such thing here" in the workspace');
      const many = await searchAction(r.ws, 'line', 'src/big.txt', { budget: BUDGET, timeoutMs: 20_000, tool });
      assert.match(many.output, /\(2000 matches in 1 file; the first 100 shown: narrow the pattern or the path\)$/);
      const bad = await searchAction(r.ws, '(unclosed', undefined, { budget: BUDGET, timeoutMs: 20_000, tool });
      assert.equal(bad.ok, false);
      assert.match(bad.error ?? '', /the search failed/);
      t.diagnostic(`${tool}: ${bad.error?.split('\n')[0]}`);
    } finally {
      r.done();
    }
  });
}

test('edit: one exact place replaced, the lines shown in context, mode kept; none or several is an error saying where', { timeout: 30_000 }, async () => {
  const r = repo();
  try {
    const e = await editAction(r.ws, 'src/big.txt', 'line 1000 of the big file\nline 1001 of the big file\n', 'line 1000 changed\nline 1000.5 added\nline 1001 changed\n', BUDGET);
    assert.equal(e.ok, true, e.error);
    const rows = e.output.split('\n');
    assert.equal(rows[0], 'edited src/big.txt: lines 1000-1002 now (2 lines replaced by 3); it has 2001 lines');
    assert.deepEqual(rows.slice(1), [' 997  line 997 of the big file', ' 998  line 998 of the big file', ' 999  line 999 of the big file', '1000  line 1000 changed', '1001  line 1000.5 added', '1002  line 1001 changed', '1003  line 1002 of the big file', '1004  line 1003 of the big file', '1005  line 1004 of the big file']);
    assert.equal(r.git('diff', '--numstat').trim(), '3\t2\tsrc/big.txt');
    // Several: where they are.
    const several = await editAction(r.ws, 'src/main.js', 'console.log(total(', 'x(', BUDGET);
    assert.equal(several.ok, false);
    assert.equal(several.error, "the old text occurs 2 times in 'src/main.js', at lines 2, 3: include lines around it so it occurs once");
    // None, but the same lines with other indentation.
    const indent = await editAction(r.ws, 'src/util.js', '    return xs.reduce((a, b) => a + b, 0);\n  }', 'x', BUDGET);
    assert.equal(indent.ok, false);
    assert.match(indent.error ?? '', /it is there with other white space at lines 2-3/);
    // None, and lines like its first.
    const like = await editAction(r.ws, 'src/util.js', 'export function total(ys) {', 'x', BUDGET);
    assert.match(like.error ?? '', /lines like its first line:\n {2}line 1: export function total\(xs\) \{/);
    // Mode kept; a missing file said.
    const sh = await editAction(r.ws, 'run.sh', 'echo hi', 'echo hello', BUDGET);
    assert.equal(sh.ok, true, sh.error);
    assert.equal(fs.statSync(path.join(r.ws, 'run.sh')).mode & 0o777, 0o755);
    assert.match((await editAction(r.ws, 'missing.js', 'a', 'b', BUDGET)).error ?? '', /does not exist; write_file creates a file/);
    assert.match((await editAction(r.ws, '.git/config', 'a', 'b', BUDGET)).error ?? '', /inside \.git/);
    // A CRLF file edited with LF text.
    fs.writeFileSync(path.join(r.ws, 'crlf.txt'), 'a\r\nb\r\nc\r\n');
    assert.equal((await editAction(r.ws, 'crlf.txt', 'a\nb', 'A\nB', BUDGET)).ok, true);
    assert.equal(fs.readFileSync(path.join(r.ws, 'crlf.txt'), 'utf8'), 'A\r\nB\r\nc\r\n');
  } finally {
    r.done();
  }
});

test('apply_patch: checked first (nothing changed when any hunk fails), miscounted hunks recounted, paths confined', { timeout: 30_000 }, async () => {
  const r = repo();
  try {
    const before = fs.readFileSync(path.join(r.ws, 'src/main.js'), 'utf8');
    // A good hunk in util.js and a bad one in main.js: nothing at all applies.
    const bad = ['--- a/src/util.js', '+++ b/src/util.js', '@@ -1,3 +1,3 @@', '-export function total(xs) {', '+export function sum(xs) {', '   return xs.reduce((a, b) => a + b, 0);', ' }', '--- a/src/main.js', '+++ b/src/main.js', '@@ -1,1 +1,1 @@', '-import { nothing } from "./x.js";', '+import { sum } from "./util.js";', ''].join('\n');
    const no = await applyPatchAction(r.ws, bad, { budget: BUDGET, timeoutMs: 20_000 });
    assert.equal(no.ok, false);
    assert.match(no.error ?? '', /^the patch does not apply, nothing was changed:\n/);
    assert.match(no.error ?? '', /src\/main\.js/);
    assert.equal(r.git('status', '--porcelain'), '');
    // Hunk counts wrong (as models write them): recounted and applied.
    const good = ['--- a/src/main.js', '+++ b/src/main.js', '@@ -1,9 +1,9 @@', "-import { total } from './util.js';", "+import { total as sum } from './util.js';", ' console.log(total([1, 2]));', ''].join('\n');
    const yes = await applyPatchAction(r.ws, good, { budget: BUDGET, timeoutMs: 20_000 });
    assert.equal(yes.ok, true, yes.error);
    assert.equal(yes.output, 'applied to 1 file:\n  src/main.js: +1 -1');
    assert.notEqual(fs.readFileSync(path.join(r.ws, 'src/main.js'), 'utf8'), before);
    // Out of the workspace, or into .git: refused before git sees it.
    const out = await applyPatchAction(r.ws, '--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n', { budget: BUDGET, timeoutMs: 20_000 });
    assert.match(out.error ?? '', /outside the workspace/);
    const intoGit = await applyPatchAction(r.ws, '--- /dev/null\n+++ b/.git/hooks/post-commit\n@@ -0,0 +1 @@\n+x\n', { budget: BUDGET, timeoutMs: 20_000 });
    assert.match(intoGit.error ?? '', /inside \.git/);
    assert.match((await applyPatchAction(r.ws, 'just some text', { budget: BUDGET, timeoutMs: 20_000 })).error ?? '', /no file is named in the patch/);
    // Several files, hunks without context (as diff -U0 writes them), paths without a/ and b/: git's
    // headers are added, so the recount stops at each file's end and no directory is lost.
    const zero = [
      '--- src/util.js',
      '+++ src/util.js',
      '@@ -1 +1 @@',
      '-export function total(xs) {',
      '+export function sum(xs) {',
      '--- src/deep/er/est/x.js',
      '+++ src/deep/er/est/x.js',
      '@@ -1 +1 @@',
      '-const x = total([]);',
      '+const x = sum([]);',
    ].join('\n');
    const z = await applyPatchAction(r.ws, zero, { budget: BUDGET, timeoutMs: 20_000 });
    assert.equal(z.ok, true, z.error);
    assert.equal(z.output, 'applied to 2 files:\n  src/util.js: +1 -1\n  src/deep/er/est/x.js: +1 -1');
    assert.equal(fs.readFileSync(path.join(r.ws, 'src/deep/er/est/x.js'), 'utf8'), 'const x = sum([]);\n');
    // A new file through /dev/null.
    const add = await applyPatchAction(r.ws, '--- /dev/null\n+++ b/docs/new.md\n@@ -0,0 +1,2 @@\n+# New\n+text\n', { budget: BUDGET, timeoutMs: 20_000 });
    assert.equal(add.ok, true, add.error);
    assert.equal(fs.readFileSync(path.join(r.ws, 'docs/new.md'), 'utf8'), '# New\ntext\n');
  } finally {
    r.done();
  }
});

test('the actions parse from JSON as the grammar shapes them, and bad ones are told how to be written', { timeout: 10_000 }, () => {
  assert.deepEqual(parseAction('{"action":"view","path":"a","start":3,"end":9}'), { action: { action: 'view', path: 'a', start: 3, end: 9 } });
  assert.deepEqual(parseAction('{"action":"view","path":"a"}'), { action: { action: 'view', path: 'a' } });
  assert.deepEqual(parseAction('{"action":"view","path":"a","start":3}'), { error: 'view takes both start and end, or neither' });
  assert.deepEqual(parseAction('{"action":"search","pattern":"x"}'), { action: { action: 'search', pattern: 'x' } });
  assert.deepEqual(parseAction('{"action":"edit","path":"a","old":"x","new":""}'), { action: { action: 'edit', path: 'a', old: 'x', new: '' } });
  assert.deepEqual(parseAction('{"action":"note","text":"the tests need make build first"}'), { action: { action: 'note', text: 'the tests need make build first' } });
  assert.match((parseAction('{"action":"edit","path":"a","old":""}') as { error: string }).error, /^edit needs exactly \{"action":"edit","path":"...","old":"...","new":"..."\}$/);
  assert.match((parseAction('{"action":"view","path":"a","start":1.5,"end":2}') as { error: string }).error, /^view needs exactly/);
  assert.deepEqual(patchPaths('diff --git a/x.js b/y.js\nrename from x.js\nrename to y.js\n--- a/x.js\n+++ b/y.js\n'), ['x.js', 'y.js']);
  assert.deepEqual(patchPaths('--- /dev/null\n+++ b/new file.txt\t2026-01-01\n'), ['new file.txt']);
});
