// The run's memory across tasks (lib/agent/memory.ts): durable appends that
// survive a torn last line, bounded files, bad files set aside without
// stopping anything, a prompt section within its budget that keeps an early
// lesson, and a map of a real git workspace.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  appendNote,
  appendOutcome,
  boundMemory,
  memoryDir,
  memorySection,
  outcomeDetail,
  readMemory,
  repoMap,
} from '../../lib/agent/memory.js';

const count = (s: string): number => Math.ceil(s.length / 4);
const T0 = Date.parse('2026-12-06T21:30:00Z');
const at = (minutes: number): Date => new Date(T0 + minutes * 60_000);

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sw-memory-'));
}

function cleanup(dir: string): void {
  if (process.env.SW_TEST_KEEP === '1') process.stderr.write(`kept test directory ${dir}\n`);
  else fs.rmSync(dir, { recursive: true, force: true });
}

const read = (stateDir: string, name: string): string => fs.readFileSync(path.join(memoryDir(stateDir), name), 'utf8');

test('notes and outcomes are lines a human can read, under a header, and read back', { timeout: 30_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    const line = appendNote(st, { time: at(0), task: '12', text: '  the tests need\n\tPOSTGRES_URL set;   see Makefile  ' });
    assert.equal(line, '- 2026-12-06T21:30Z task 12: the tests need POSTGRES_URL set; see Makefile');
    assert.equal(appendNote(st, { time: at(1), task: '12', text: ' \n\t ' }), null, 'an empty note is not written');
    const long = appendNote(st, { time: at(2), task: '13', text: 'x'.repeat(2000) }) as string;
    assert.equal(long.length - '- 2026-12-06T21:32Z task 13: '.length, 500);
    appendOutcome(st, { time: at(3), task: '12', attempt: 1, outcome: 'failed', reason: 'verify exit 1', detail: 'AssertionError: expected 3, got 4' });
    appendOutcome(st, { time: at(9), task: '12', attempt: 2, outcome: 'done', steps: 7, detail: 'set POSTGRES_URL in the test script' });
    assert.equal(
      read(st, 'outcomes.md'),
      '# How each attempt ended; newest last. Edit freely.\n' +
        '- 2026-12-06T21:33Z task 12 attempt 1: failed (verify exit 1): AssertionError: expected 3, got 4\n' +
        '- 2026-12-06T21:39Z task 12 attempt 2: done in 7 steps: set POSTGRES_URL in the test script\n',
    );
    assert.match(read(st, 'notes.md'), /^# What the agent noted; newest last\. Edit freely\.\n- 2026-12-06T21:30Z task 12: /);

    // A human's line, a comment and a blank line, edited in by hand.
    fs.appendFileSync(path.join(memoryDir(st), 'notes.md'), '\n# mine:\nAlways run `make lint` before finishing.\n');
    appendNote(st, { time: at(20), task: '14', text: 'after the human' });
    const mem = readMemory(st);
    assert.deepEqual(mem.problems, []);
    assert.deepEqual(
      mem.notes.map((e) => [e.time, e.task, e.text.slice(0, 20)]),
      [
        ['2026-12-06T21:30Z', '12', 'the tests need POSTG'],
        ['2026-12-06T21:32Z', '13', 'xxxxxxxxxxxxxxxxxxxx'],
        [null, null, 'Always run `make lin'],
        ['2026-12-06T21:50Z', '14', 'after the human'],
      ],
    );
    assert.deepEqual(
      mem.outcomes.map((e) => [e.task, e.attempt]),
      [
        ['12', 1],
        ['12', 2],
      ],
    );
  } finally {
    cleanup(dir);
  }
});

test('an append after a torn last line is a line of its own; a torn tail that is not text is cut off', { timeout: 30_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    appendNote(st, { time: at(0), task: '1', text: 'first' });
    const file = path.join(memoryDir(st), 'notes.md');
    // A crash mid-write: half a line, no newline.
    fs.appendFileSync(file, '- 2026-12-06T21:31Z task 1: half a li');
    assert.equal(readMemory(st).notes.length, 2, 'the torn line is read as it stands');
    appendNote(st, { time: at(2), task: '2', text: 'second' });
    assert.deepEqual(
      readMemory(st).notes.map((e) => e.text),
      ['first', 'half a li', 'second'],
    );
    // Power loss: a multibyte character cut in two, then the zeros a file system can leave.
    fs.appendFileSync(file, Buffer.concat([Buffer.from('- 2026-12-06T21:33Z task 3: caf'), Buffer.from('é').subarray(0, 1), Buffer.alloc(16)]));
    const before = readMemory(st);
    assert.deepEqual(before.problems, [], 'a torn tail alone does not get the file set aside');
    assert.equal(before.notes.length, 3);
    appendNote(st, { time: at(4), task: '4', text: 'fourth' });
    const after = readMemory(st);
    assert.deepEqual(after.problems, []);
    assert.deepEqual(
      after.notes.map((e) => e.text),
      ['first', 'half a li', 'second', 'fourth'],
    );
    assert.ok(read(st, 'notes.md').endsWith('task 2: second\n- 2026-12-06T21:34Z task 4: fourth\n'));
  } finally {
    cleanup(dir);
  }
});

test('boundMemory keeps the newest entries (four fifths of the limit, so a full file is not rewritten at every task) and one line counting all it dropped', { timeout: 30_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    for (let i = 1; i <= 25; i++) appendOutcome(st, { time: at(i), task: `t${i}`, attempt: 1, outcome: 'done', steps: i, detail: `task ${i}` });
    appendNote(st, { time: at(0), task: 't1', text: 'one note' });
    const file = path.join(memoryDir(st), 'outcomes.md');

    const ino = fs.statSync(file).ino;
    assert.deepEqual(boundMemory(st, { notes: 5, outcomes: 30 }), { notes: 0, outcomes: 0, problems: [] });
    assert.equal(fs.statSync(file).ino, ino, 'nothing to drop: not rewritten');

    assert.deepEqual(boundMemory(st, { notes: 5, outcomes: 10, now: at(100) }), { notes: 0, outcomes: 17, problems: [] });
    let lines = read(st, 'outcomes.md').split('\n');
    assert.equal(lines[0], '# How each attempt ended; newest last. Edit freely.', 'the header is kept');
    assert.equal(lines[1], '# 17 older outcomes dropped, the last on 2026-12-06T23:10Z (the checkpoints in state.git keep them)');
    assert.deepEqual(
      readMemory(st).outcomes.map((e) => e.task),
      Array.from({ length: 8 }, (_, i) => `t${i + 18}`),
    );

    for (let i = 26; i <= 27; i++) appendOutcome(st, { time: at(i), task: `t${i}`, attempt: 1, outcome: 'failed', reason: 'verify exit 1', detail: `task ${i}` });
    const ino2 = fs.statSync(file).ino;
    assert.equal(boundMemory(st, { outcomes: 10, now: at(150) }).outcomes, 0, 'at its limit, not over it: kept');
    assert.equal(fs.statSync(file).ino, ino2);
    for (let i = 28; i <= 30; i++) appendOutcome(st, { time: at(i), task: `t${i}`, attempt: 1, outcome: 'failed', reason: 'verify exit 1', detail: `task ${i}` });
    assert.equal(boundMemory(st, { outcomes: 10, now: at(200) }).outcomes, 5);
    lines = read(st, 'outcomes.md').split('\n');
    assert.equal(lines.filter((l) => /older outcomes dropped/.test(l)).length, 1, 'a later drop updates the count, it adds no line');
    assert.match(lines[1] as string, /^# 22 older outcomes dropped, the last on 2026-12-07T00:50Z /);
    assert.deepEqual(readMemory(st).outcomes.map((e) => e.task).slice(0, 2), ['t23', 't24']);
    assert.equal(readMemory(st).notes.length, 1);
  } finally {
    cleanup(dir);
  }
});

test('a file that is not text, holds a NUL or is too big is set aside and said; the rest goes on', { timeout: 30_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    const mdir = memoryDir(st);
    appendOutcome(st, { time: at(0), task: '1', attempt: 1, outcome: 'done', steps: 3, detail: 'fine' });
    const notes = path.join(mdir, 'notes.md');
    for (const [content, why] of [
      [Buffer.from('- 2026-12-06T21:30Z task 1: caf\xe9 latin-1\n', 'latin1'), /notes\.md: not text: invalid UTF-8; set aside as notes\.md\.bad-\d+$/],
      [Buffer.from('- a line\n\0\0\0\n- and one after\n'), /notes\.md: not text: a NUL byte at line 2; set aside as notes\.md\.bad-\d+$/],
      [Buffer.alloc(1024 * 1024 + 1, 'a\n'), /notes\.md: too big \(1\.00 MiB; a memory file may hold at most 1\.00 MiB\); set aside as notes\.md\.bad-\d+$/],
    ] as const) {
      fs.writeFileSync(notes, content);
      const mem = readMemory(st);
      assert.equal(mem.problems.length, 1, String(mem.problems));
      assert.match(mem.problems[0] as string, why);
      assert.ok((mem.problems[0] as string).startsWith(notes), 'the problem names the file');
      assert.deepEqual(mem.notes, []);
      assert.equal(mem.outcomes.length, 1, 'the other file is read as usual');
      assert.ok(!fs.existsSync(notes), 'set aside');
      // The next note starts a fresh file.
      appendNote(st, { time: at(5), task: '2', text: 'a fresh start' });
      const again = readMemory(st);
      assert.deepEqual(again.problems, []);
      assert.deepEqual(again.notes.map((e) => e.text), ['a fresh start']);
      fs.rmSync(notes);
      for (const n of fs.readdirSync(mdir).filter((n) => n.includes('.bad-'))) fs.rmSync(path.join(mdir, n));
    }
    // memorySection and boundMemory meet a bad file the same way, and go on.
    fs.writeFileSync(path.join(mdir, 'outcomes.md'), Buffer.from([0x2d, 0x20, 0xff, 0x0a]));
    appendNote(st, { time: at(6), task: '3', text: 'still here' });
    const s = memorySection(st, 600, count);
    assert.match(s.problems.join('\n'), /outcomes\.md: not text: invalid UTF-8; set aside as outcomes\.md\.bad-\d+/);
    assert.match(s.text, /still here/);
    fs.writeFileSync(path.join(mdir, 'outcomes.md'), `${'- a line\n'.repeat(20)}\0\n`);
    const b = boundMemory(st, { outcomes: 10 });
    assert.match(b.problems.join('\n'), /outcomes\.md: not text: a NUL byte at line 21; set aside/);
    assert.equal(readMemory(st).notes.length, 1);
  } finally {
    cleanup(dir);
  }
});

test('outcomeDetail gives the most telling line of a verify command, cut to 160 characters', { timeout: 30_000 }, () => {
  const pytest = [
    '============ test session starts ============',
    'collected 3 items',
    'tests/test_calc.py ..F',
    'FAILED tests/test_calc.py::test_div - AssertionError: assert 0.5 == 2',
    '========== 1 failed, 2 passed in 0.12s ==========',
  ].join('\n');
  assert.equal(outcomeDetail(pytest), 'FAILED tests/test_calc.py::test_div - AssertionError: assert 0.5 == 2');
  const make = "src/a.c:3:5: error: 'x' undeclared (first use in this function)\nmake: *** [Makefile:4: all] Error 1\n";
  assert.equal(outcomeDetail(make), "src/a.c:3:5: error: 'x' undeclared (first use in this function)");
  assert.equal(outcomeDetail('\x1b[31mnot ok 2 - adds\x1b[0m\n# tests 2\n# pass 1\n# fail 1\n'), 'not ok 2 - adds');
  assert.equal(outcomeDetail('building...\nall done\n\n'), 'all done');
  assert.equal(outcomeDetail('not ok 2 - migrates\n  expected: 49\n  actual: 50\n# fail 1\n'), 'expected: 49; actual: 50');
  assert.equal(outcomeDetail(''), '');
  const long = outcomeDetail(`Error: ${'y'.repeat(400)}`);
  assert.equal(long.length, 160);
});

test('memorySection: empty memory gives nothing; notes before outcomes, newest first, condensed then counted, within the budget', { timeout: 30_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    assert.deepEqual(memorySection(st, 600, count), { text: '', problems: [], shown: { notes: 0, outcomes: 0 }, condensed: 0, omitted: 0 });
    for (let i = 1; i <= 40; i++) {
      appendNote(st, { time: at(i), task: `${i}`, text: `lesson ${i}: ${'the build needs a clean cache after changing the schema '.repeat(2)}` });
      appendOutcome(st, { time: at(i), task: `${i}`, attempt: 1, outcome: 'failed', reason: 'verify exit 1', detail: `AssertionError: expected ${i}, got ${i + 1} in test/db.test.ts` });
    }
    for (const budget of [60, 150, 300, 600, 1200, 5000]) {
      const s = memorySection(st, budget, count);
      assert.ok(count(s.text) <= budget, `budget ${budget}: ${count(s.text)} tokens`);
      assert.equal(s.shown.notes + s.shown.outcomes + s.omitted, 80, `budget ${budget}: every entry given or counted`);
      if (budget >= 300) {
        assert.ok(s.text.startsWith('What this run has learned (newest first):\nNotes:\n- 2026-12-06T22:10Z task 40: lesson 40'), s.text.slice(0, 200));
        assert.match(s.text, /\nOutcomes of earlier attempts:\n- 2026-12-06T22:10Z task 40 attempt 1: failed \(verify exit 1\)/);
        assert.ok(s.shown.notes > s.shown.outcomes || s.omitted === 0, `budget ${budget}: notes come first (${JSON.stringify(s.shown)})`);
      }
      if (budget === 600) {
        assert.ok(s.condensed > 0, 'older entries condensed');
        assert.match(s.text, /\n- task \d+: lesson \d+: .{20,}…\n/, 'a condensed note: no date, cut');
        assert.match(s.text, /\(and \d+ older notes: in state\/memory\/notes\.md\)/);
        assert.match(s.text, /\(and \d+ older outcomes: in state\/memory\/outcomes\.md\)$/);
      }
      if (budget === 5000) assert.equal(s.omitted, 0);
    }
    // A share not needed goes to the other: one short note leaves the outcomes nearly all the budget.
    const st2 = path.join(dir, 'state2');
    appendNote(st2, { time: at(0), task: '1', text: 'short' });
    for (let i = 1; i <= 40; i++) appendOutcome(st2, { time: at(i), task: `${i}`, attempt: 1, outcome: 'done', steps: 4, detail: 'x'.repeat(60) });
    const s2 = memorySection(st2, 600, count);
    assert.ok(count(s2.text) > 540 && count(s2.text) <= 600, `${count(s2.text)} tokens used of 600`);
  } finally {
    cleanup(dir);
  }
});

function sh(cwd: string, cmd: string, args: string[]): void {
  execFileSync(cmd, args, {
    cwd,
    stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
  });
}

test('repoMap: the top level without ignored files, directories counted, recent files that still exist; no commits or no git still gives a map', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  try {
    const ws = path.join(dir, 'ws');
    const write = (rel: string, text = 'x\n'): void => {
      fs.mkdirSync(path.dirname(path.join(ws, rel)), { recursive: true });
      fs.writeFileSync(path.join(ws, rel), text);
    };
    // Not a git repository: the directory as it lists.
    write('src/a.ts');
    write('README.md');
    assert.equal(await repoMap(ws, 500, count), 'Files of the workspace (top level):\n  src/\n  README.md');

    sh(ws, 'git', ['init', '-q']);
    write('.gitignore', 'node_modules/\n*.log\n');
    for (let i = 0; i < 5; i++) write(`node_modules/dep${i}/index.js`);
    write('debug.log');
    write('src/b.ts');
    write('test/a.test.ts');
    // No commits yet: the tree, untracked files included; the files not committed are the recent ones, newest first.
    const t0 = Date.now() / 1000;
    ['src/a.ts', 'README.md', '.gitignore', 'src/b.ts', 'test/a.test.ts'].forEach((f, i) => fs.utimesSync(path.join(ws, f), t0 - 100 + i, t0 - 100 + i));
    assert.equal(
      await repoMap(ws, 500, count),
      'Files of the workspace (top level):\n  src/ (2 files)\n  test/ (1 file)\n  .gitignore\n  README.md\nRecently changed files (newest first):\n  test/a.test.ts\n  src/b.ts\n  .gitignore\n  README.md\n  src/a.ts',
    );

    sh(ws, 'git', ['add', '-A']);
    sh(ws, 'git', ['commit', '-q', '-m', 'one']);
    write('src/c.ts');
    write('old.txt');
    sh(ws, 'git', ['add', '-A']);
    sh(ws, 'git', ['commit', '-q', '-m', 'two']);
    sh(ws, 'git', ['rm', '-q', 'old.txt']);
    write('src/a.ts', 'changed\n');
    sh(ws, 'git', ['commit', '-q', '-am', 'three']);
    // A change not committed comes before the commits'.
    write('test/b.test.ts');
    const map = await repoMap(ws, 500, count);
    assert.equal(
      map,
      [
        'Files of the workspace (top level):',
        '  src/ (3 files)',
        '  test/ (2 files)',
        '  .gitignore',
        '  README.md',
        'Recently changed files (newest first):',
        '  test/b.test.ts',
        '  src/a.ts',
        '  src/c.ts',
        '  .gitignore',
        '  README.md',
        '  src/b.ts',
        '  test/a.test.ts',
      ].join('\n'),
    );
    assert.doesNotMatch(map, /node_modules|debug\.log|old\.txt/);

    // A small budget: fewer lines, the rest counted, never over.
    for (let i = 0; i < 30; i++) write(`top${String(i).padStart(2, '0')}.txt`);
    for (const budget of [20, 40, 80]) {
      const small = await repoMap(ws, budget, count);
      assert.ok(count(small) <= budget, `budget ${budget}: ${count(small)} tokens:\n${small}`);
    }
    assert.match(await repoMap(ws, 80, count), /\(and \d+ more entries\)/);
    assert.equal(await repoMap(path.join(dir, 'missing'), 100, count), '');
  } finally {
    cleanup(dir);
  }
});

test('50 tasks: memory stays bounded, the section within 600 tokens at every task, and task 3 lesson still given at task 40', { timeout: 60_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    const budget = 600;
    const lesson = 'run the tests with `make check`, never `npm test`: npm test skips the database suite';
    let most = 0;
    let atTask40 = '';
    let boundMs = 0;
    for (let task = 1; task <= 50; task++) {
      const section = memorySection(st, budget, count);
      const tokens = count(section.text);
      assert.ok(tokens <= budget, `task ${task}: section of ${tokens} tokens, budget ${budget}`);
      most = Math.max(most, tokens);
      if (task === 40) atTask40 = section.text;
      const time = at(task * 20);
      if (task === 3) appendNote(st, { time, task: `${task}`, text: lesson });
      else if (task % 6 === 0) appendNote(st, { time, task: `${task}`, text: `the fixture in test/fixtures/db${task}.sql must be regenerated after a migration` });
      const failed = task % 4 === 1;
      if (failed) {
        const out = `> make check\nok 1 - parses\nnot ok 2 - migrates table t${task}\n  expected: ${task}\n  actual: ${task + 1}\n# fail 1\nmake: *** [Makefile:9: check] Error 1`;
        appendOutcome(st, { time, task: `${task}`, attempt: 1, outcome: 'failed', reason: 'verify exit 1', steps: 9 + (task % 5), detail: outcomeDetail(out) });
      }
      appendOutcome(st, { time, task: `${task}`, attempt: failed ? 2 : 1, outcome: 'done', steps: 5 + (task % 7), detail: `migrated table t${task} and updated its fixture; all ${100 + task} tests pass` });
      const t0 = process.hrtime.bigint();
      const b = boundMemory(st);
      boundMs += Number(process.hrtime.bigint() - t0) / 1e6;
      assert.deepEqual(b.problems, []);
    }
    assert.ok(atTask40.includes(lesson.slice(0, 50)), `task 3's lesson is not in the section given to task 40:\n${atTask40}`);
    const final = memorySection(st, budget, count);
    const lines = (name: string): number => read(st, name).split('\n').length - 1;
    console.log(
      `memory after 50 tasks: notes ${lines('notes.md')} lines, outcomes ${lines('outcomes.md')} lines; ` +
        `section at task 40 ${count(atTask40)} tokens of ${budget} (at most ${most} over the 50 tasks; after task 50: ` +
        `${final.shown.notes} notes and ${final.shown.outcomes} outcomes shown, ${final.condensed} condensed, ${final.omitted} counted); ` +
        `task 3's lesson present; boundMemory ${(boundMs / 50).toFixed(2)} ms a call`,
    );
  } finally {
    cleanup(dir);
  }
});

test('the same note of the same task again (a model noting anew after a restart) is kept once; another task or text is a new line', { timeout: 10_000 }, () => {
  const dir = tempDir();
  try {
    const st = path.join(dir, 'state');
    const first = appendNote(st, { time: at(0), task: 't1', text: 'run  make build\nfirst' });
    assert.equal(appendNote(st, { time: at(5), task: 't1', text: 'run make build first' }), first, 'the line already there is given back');
    appendNote(st, { time: at(6), task: 't2', text: 'run make build first' });
    appendNote(st, { time: at(7), task: 't2', text: 'and then the tests' });
    appendNote(st, { time: at(8), task: 't2', text: 'run make build first' });
    assert.deepEqual(
      readMemory(st).notes.map((e) => `${e.task}: ${e.text}`),
      ['t1: run make build first', 't2: run make build first', 't2: and then the tests', 't2: run make build first'],
    );
  } finally {
    cleanup(dir);
  }
});
