// The agent's hands, its loop guard and its memory, through the built
// sw-agent with the scripted backend on a real git workspace: every action
// runs and says what it did, a command failing again on an unchanged
// workspace is noted then ends the attempt as looping (counted by sw-report),
// and a note survives a SIGKILL and a recovery into a later task's prompt.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeEnv, sw } from '../helpers.js';
import { addTask, scriptedRun, startAgent, tasks, transcript, waitFor } from '../fixtures/agent.js';
import { runPaths } from '../../lib/run.js';

type Step = { type: string; step?: number; action?: { action: string } | null; observation?: { ok: boolean; output: string; error?: string }; guard?: string; workspace?: string };

const APP = Array.from({ length: 30 }, (_, i) => `export const value_${i + 1} = ${i + 1};`).join('\n') + '\n';

test('view, search, edit, apply_patch and note run through the agent, each answering what it did', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const patch = ['--- a/src/app.js', '+++ b/src/app.js', '@@ -20,1 +20,1 @@', '-export const value_20 = 20;', '+export const value_20 = 2000;', ''].join('\n');
  try {
    scriptedRun(t, {
      hands: [
        { action: 'write_file', path: 'src/app.js', content: APP },
        { action: 'view', path: 'src/app.js', start: 14, end: 16 },
        { action: 'search', pattern: 'value_1[5]', path: 'src' },
        { action: 'edit', path: 'src/app.js', old: 'export const value_15 = 15;', new: 'export const value_15 = 1500;' },
        { action: 'apply_patch', patch },
        { action: 'view', path: '.' },
        { action: 'note', text: 'app.js holds the values; edit them in place' },
        { action: 'finish', summary: 'values changed' },
      ],
    });
    const id = await addTask(t, 'hands', ['--verify', "grep -q 'value_15 = 1500;' src/app.js && grep -q 'value_20 = 2000;' src/app.js"]);
    const a = startAgent(t);
    try {
      await waitFor('the task to end', async () => (await tasks(t)).find((x) => x.id === id && ['completed', 'failed'].includes(x.status)), 40_000, a);
      assert.equal((await tasks(t)).find((x) => x.id === id)?.status, 'completed', `${a.output()}\n${JSON.stringify(transcript(t, id), null, 1)}`);
      const steps = transcript(t, id).filter((l) => l.type === 'step') as Step[];
      const out = (n: number): string => steps.find((s) => s.step === n)?.observation?.output ?? '';
      for (const s of steps) assert.equal(s.observation?.ok, true, JSON.stringify(s));
      assert.equal(out(2), '14  export const value_14 = 14;\n15  export const value_15 = 15;\n16  export const value_16 = 16;\n(lines 14-16 of 30; view from 17 for more)');
      assert.equal(out(3), 'src/app.js:15: export const value_15 = 15;\n(1 match in 1 file)');
      assert.match(out(4), /^edited src\/app\.js: lines 15-15 now \(1 line replaced by 1\); it has 30 lines\n12 {2}export const value_12 = 12;/);
      assert.equal(out(5), 'applied to 1 file:\n  src/app.js: +1 -1');
      assert.match(out(6), /^\.\/: 1 file \(git-ignored ones left out\)\nsrc\/\n {2}app\.js$/);
      assert.match(out(7), /^noted in state\/memory\/notes\.md; later tasks of this run are given it:\n- \d{4}-\d\d-\d\dT\d\d:\d\dZ task \S+: app\.js holds the values; edit them in place$/);
      const notes = fs.readFileSync(path.join(runPaths('run1', t.env).stateDir, 'memory', 'notes.md'), 'utf8');
      assert.match(notes, /: app\.js holds the values; edit them in place\n$/);
      // Every step recorded the workspace as it left it; the edit and the patch changed it, the views did not.
      const fp = steps.filter((s) => s.action?.action !== 'finish').map((s) => s.workspace);
      assert.ok(fp.length === 7 && fp.every((x) => typeof x === 'string'), JSON.stringify(fp));
      assert.equal(fp[1], fp[0]);
      assert.equal(fp[2], fp[1]);
      assert.notEqual(fp[3], fp[2]);
      assert.notEqual(fp[4], fp[3]);
      assert.equal(fp[5], fp[4]);
      assert.equal(fp[6], fp[5], 'a note is not a change to the workspace');
    } finally {
      await a.stop();
    }
  } finally {
    t.cleanup();
  }
});

test('a command failing again on an unchanged workspace: noted at the third time, the attempt ended as looping at the fifth, counted in the report', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const spin = [];
    for (let i = 0; i < 6; i++) spin.push({ action: 'shell', command: 'test -f missing.txt' }, { action: 'view', path: `f${i}.txt` });
    scriptedRun(t, { spin });
    const id = await addTask(t, 'spin', ['--max-attempts', '1']);
    const a = startAgent(t);
    try {
      await waitFor('the task to fail', async () => (await tasks(t)).find((x) => x.id === id && x.status === 'failed'), 40_000, a);
      const lines = transcript(t, id);
      const steps = lines.filter((l) => l.type === 'step') as Step[];
      assert.equal(steps.length, 9, 'the fifth failure ends the attempt');
      const noted = steps.filter((s) => s.guard);
      assert.deepEqual(
        noted.map((s) => s.step),
        [5],
      );
      assert.match(noted[0]?.guard ?? '', /^This command has failed on this same workspace 3 times\. Read its error and change something first; after 5 the attempt ends as looping\.$/);
      const end = lines.find((l) => l.type === 'end') as { outcome: string; reason: string };
      assert.equal(end.outcome, 'failed');
      assert.equal(end.reason, 'looping: the same command failed 5 times on an unchanged workspace (shell: test -f missing.txt)');
      assert.match(a.output(), /told the model: This command has failed on this same workspace 3 times/);
    } finally {
      await a.stop();
    }
    const j = JSON.parse(String((await sw('sw-report', ['run1', '--json'], t)).stdout)) as { attempts: { failed: number; looping: number } };
    assert.equal(j.attempts.failed, 1);
    assert.equal(j.attempts.looping, 1);
    const text = String((await sw('sw-report', ['run1'], t)).stdout);
    assert.match(text, /1 failed \(1 of them looping\)/);
    assert.match(text, /looping: the same command failed 5 times on an unchanged workspace/);
  } finally {
    t.cleanup();
  }
});

test("a note kept in one task survives a SIGKILL and a recovery, and is in a later task's prompt with the outcomes", { timeout: 90_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, {
      learn: [
        { action: 'write_file', path: 'docs/README.md', content: 'how to build\n' },
        { action: 'note', text: 'LESSON-7Q: the tests need `make build` first' },
        { action: 'shell', command: 'sleep 30' },
        { action: 'finish', summary: 'learned it' },
      ],
      later: [{ action: 'finish', summary: 'used it' }],
    });
    const learn = await addTask(t, 'learn', ['--priority', '5']);
    const a = startAgent(t);
    const stateDir = runPaths('run1', t.env).stateDir;
    try {
      await waitFor('the sleep step', () => transcript(t, learn).some((l) => l.type === 'intent' && (l as { step: number }).step === 3), 30_000, a);
      process.kill(a.child.pid as number, 'SIGKILL');
      await a.child;
    } finally {
      await a.stop('SIGKILL').catch(() => undefined);
    }
    const r = await sw('sw-recover', ['run1'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.match(fs.readFileSync(path.join(stateDir, 'memory', 'notes.md'), 'utf8'), /LESSON-7Q/);
    const later = await addTask(t, 'later', ['--priority', '1']);
    const b = startAgent(t);
    try {
      await waitFor('both tasks done', async () => (await tasks(t)).filter((x) => x.status === 'completed').length === 2, 40_000, b);
    } finally {
      await b.stop();
    }
    const start = transcript(t, later).find((l) => l.type === 'attempt') as { context?: string };
    assert.match(start.context ?? '', /^What this run has learned \(newest first\):\nNotes:\n- .*LESSON-7Q: the tests need `make build` first/m);
    assert.match(start.context ?? '', /Outcomes of earlier attempts:\n- .*task \S+ attempt 1: done in 4 steps: learned it/);
    assert.match(start.context ?? '', /\n\nThe repository:\nFiles of the workspace \(top level\):\n  docs\/ \(1 file\)\nRecently changed files \(newest first\):\n  docs\/README\.md$/);
    // The memory is plain files in state/, so a checkpoint holds it.
    const ls = await sw('sw-checkpoint', ['list', 'run1', '--json'], t);
    assert.equal(ls.exitCode, 0);
    const outcomes = fs.readFileSync(path.join(stateDir, 'memory', 'outcomes.md'), 'utf8');
    assert.match(outcomes, /^# /);
    assert.equal(outcomes.split('\n').filter((l) => l.startsWith('- ')).length, 2, outcomes);
  } finally {
    t.cleanup();
  }
});

test('a memory file that is not text is set aside at the next task, said, and shown by sw-report and --check until a human deals with it', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    scriptedRun(t, { one: [{ action: 'finish', summary: 'ok' }] });
    const stateDir = runPaths('run1', t.env).stateDir;
    const id = await addTask(t, 'one');
    fs.mkdirSync(path.join(stateDir, 'memory'), { recursive: true });
    fs.writeFileSync(path.join(stateDir, 'memory', 'notes.md'), '- 2026-12-01T10:00Z task x: fine\n\0\0\0 torn\n');
    // Before the agent has looked: unreadable, said as such.
    const before = await sw('sw-report', ['run1', '--check'], t);
    assert.match(String(before.stdout), /state\/memory\/notes\.md cannot be read as text/);
    const a = startAgent(t);
    try {
      await waitFor('the task done', async () => (await tasks(t)).find((x) => x.id === id && x.status === 'completed'), 30_000, a);
    } finally {
      await a.stop();
    }
    assert.match(a.output(), /warning: memory: .*notes\.md: .*NUL.*set aside as notes\.md\.bad-\d+/);
    const aside = fs.readdirSync(path.join(stateDir, 'memory')).filter((n) => n.startsWith('notes.md.bad-'));
    assert.equal(aside.length, 1);
    const check = await sw('sw-report', ['run1', '--check'], t);
    assert.equal(check.exitCode, 1, String(check.stdout));
    assert.match(String(check.stdout), new RegExp(`1 memory file set aside in state/memory/: ${aside[0]}; read it, fix and move it back, or delete it`));
    const text = String((await sw('sw-report', ['run1'], t)).stdout);
    assert.match(text, new RegExp(`memory: +0 notes, 1 outcome; 1 file set aside: ${aside[0]}`));
    const status = await sw('sw-agent', ['status', 'run1'], t);
    assert.match(String(status.stdout) + String(status.stderr), new RegExp(`set aside: state/memory/${aside[0]}; read it, fix and move it back, or delete it`));
    const sj = JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout)) as { memory: { notes: number; outcomes: number; set_aside: string[] } };
    assert.deepEqual(sj.memory, { notes: 0, outcomes: 1, set_aside: aside });
    // Dealt with (deleted): the warning goes.
    fs.rmSync(path.join(stateDir, 'memory', aside[0] as string));
    const after = await sw('sw-report', ['run1', '--check'], t);
    assert.equal(after.exitCode, 0, String(after.stdout));
    assert.match(String(after.stdout), /^SELFWARE OK - .* memory_bad=0;0;;0 /);
  } finally {
    t.cleanup();
  }
});
