// The loop guard (lib/agent/loopguard.ts): the same action again and again,
// the same failing command, steps without a change to the workspace: a note
// first, then the end of the attempt as looping; healthy work left alone.
// The fingerprint on a real git workspace.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { judge, workspaceFingerprint, type GuardStep } from '../../lib/agent/loopguard.js';
import type { Action } from '../../lib/agent/schema.js';

const okObs = { ok: true, exit_code: 0, signal: null, output: '', cut: 0, timed_out: false, duration_ms: 1 };
const failObs = { ...okObs, ok: false, exit_code: 1 };

/** Run the steps through the guard as the agent does, one at a time, keeping its notes; the verdicts. */
function walk(steps: Array<{ action: Action; ok?: boolean; ws?: string }>, limits = { repeat: 3, failing: 3, unchanged: 12 }): string[] {
  const done: GuardStep[] = [];
  const out: string[] = [];
  for (const s of steps) {
    const step: GuardStep = { action: s.action, observation: s.ok === false ? failObs : okObs, workspace: s.ws ?? 'w0' };
    const v = judge([...done, step], limits);
    if (v.kind === 'note') step.guard = v.note;
    done.push(step);
    out.push(v.kind === 'ok' ? 'ok' : v.kind === 'note' ? `note: ${v.note}` : `end: ${v.reason}`);
    if (v.kind === 'end') break;
  }
  return out;
}

test('the same action five times in a row: a note at the third, the end at the fifth', { timeout: 10_000 }, () => {
  const a: Action = { action: 'view', path: 'src/a.ts', start: 1, end: 50 };
  const v = walk(Array.from({ length: 8 }, (_, i) => ({ action: a, ws: `w${i}` })));
  assert.equal(v.length, 5);
  assert.deepEqual(v.slice(0, 2), ['ok', 'ok']);
  assert.match(v[2] as string, /^note: You have sent this same action 3 times in a row/);
  assert.equal(v[3], 'ok', 'the note is not given again while the same trouble goes on');
  assert.equal(v[4], 'end: looping: the same action 5 times in a row (view src/a.ts)');
  // Keys in another order are the same action.
  const b = JSON.parse('{"end":50,"path":"src/a.ts","start":1,"action":"view"}') as Action;
  assert.match(walk([{ action: a }, { action: b }, { action: a }])[2] as string, /^note: /);
});

test('the same command failing on an unchanged workspace: a note at the third failure, the end at the fifth; after changes it is a test run', { timeout: 10_000 }, () => {
  const fail: Action = { action: 'shell', command: 'npm test' };
  // Failures with only looks in between (the workspace unchanged).
  const steps = [];
  for (let i = 0; i < 6; i++) {
    steps.push({ action: fail, ok: false, ws: 'w0' });
    steps.push({ action: { action: 'view', path: `a${i}.js` } as Action, ws: 'w0' });
  }
  const v = walk(steps);
  assert.match(v[4] as string, /^note: This command has failed on this same workspace 3 times/);
  assert.equal(v[v.length - 1], 'end: looping: the same command failed 5 times on an unchanged workspace (shell: npm test)');
  assert.equal(v.length, 9);
  // An edit before each run: fixing a test over several tries is not a loop.
  const fixing = [];
  for (let i = 0; i < 8; i++) {
    fixing.push({ action: { action: 'edit', path: 'a.js', old: `x${i}`, new: `y${i}` } as Action, ws: `w${i}` });
    fixing.push({ action: fail, ok: false, ws: `w${i}` });
  }
  assert.ok(walk(fixing).every((x) => x === 'ok'), walk(fixing).join('\n'));
});

test('steps without a change to the workspace: a note at the limit, the end at half as many more', { timeout: 10_000 }, () => {
  const steps = Array.from({ length: 30 }, (_, i) => ({ action: { action: 'view', path: `f${i}.ts` } as Action, ws: 'same' }));
  const v = walk(steps, { repeat: 3, failing: 3, unchanged: 8 });
  assert.match(v[7] as string, /^note: The workspace has not changed in 8 steps/);
  assert.equal(v[11], 'end: looping: 12 steps without a change to the workspace');
  // A change restarts the count.
  const changing = Array.from({ length: 30 }, (_, i) => ({ action: { action: 'view', path: `f${i}.ts` } as Action, ws: `w${Math.floor(i / 7)}` }));
  assert.ok(walk(changing, { repeat: 3, failing: 3, unchanged: 8 }).every((x) => x === 'ok'));
  // 0: not checked.
  assert.ok(walk(steps, { repeat: 0, failing: 0, unchanged: 0 }).every((x) => x === 'ok'));
});

test('healthy work is left alone: varied actions that change the workspace, and finish', { timeout: 10_000 }, () => {
  const steps = [
    { action: { action: 'search', pattern: 'total' } as Action },
    { action: { action: 'view', path: 'a.js', start: 1, end: 40 } as Action },
    { action: { action: 'edit', path: 'a.js', old: 'x', new: 'y' } as Action, ws: 'w1' },
    { action: { action: 'shell', command: 'npm test' } as Action, ok: false, ws: 'w1' },
    { action: { action: 'edit', path: 'a.js', old: 'y', new: 'z' } as Action, ws: 'w2' },
    { action: { action: 'shell', command: 'npm test' } as Action, ws: 'w2' },
    { action: { action: 'finish', summary: 'done' } as Action, ws: 'w2' },
  ];
  assert.deepEqual(walk(steps), steps.map(() => 'ok'));
});

test('the fingerprint changes with the workspace (an edit, a new file, a commit) and not otherwise, and writes nothing to .git', { timeout: 30_000 }, async () => {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-guard-'));
  try {
    const git = (...a: string[]): string => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...a], { cwd: ws, encoding: 'utf8' });
    git('init', '-q', '-b', 'main');
    fs.writeFileSync(path.join(ws, 'a.txt'), 'a\n');
    git('add', '-A');
    git('commit', '-qm', 'a');
    const objects = (): number => Number(git('count-objects').split(' ')[0]);
    const n0 = objects();
    const f0 = await workspaceFingerprint(ws);
    assert.ok(f0);
    assert.equal(await workspaceFingerprint(ws), f0);
    fs.writeFileSync(path.join(ws, 'a.txt'), 'b\n');
    const f1 = await workspaceFingerprint(ws);
    assert.notEqual(f1, f0);
    // The same file changed again (status alone would not see it): its size or time does.
    fs.writeFileSync(path.join(ws, 'a.txt'), 'cc\n');
    const f2 = await workspaceFingerprint(ws);
    assert.notEqual(f2, f1);
    fs.writeFileSync(path.join(ws, 'new.txt'), 'n\n');
    const f3 = await workspaceFingerprint(ws);
    assert.notEqual(f3, f2);
    git('add', '-A');
    git('commit', '-qm', 'b');
    const f4 = await workspaceFingerprint(ws);
    assert.notEqual(f4, f3);
    assert.equal(await workspaceFingerprint(ws), f4);
    // Ignored files are not the workspace's content.
    fs.writeFileSync(path.join(ws, '.git', 'info', 'exclude'), 'tmp/\n');
    fs.mkdirSync(path.join(ws, 'tmp'));
    fs.writeFileSync(path.join(ws, 'tmp', 'x'), 'x');
    assert.equal(await workspaceFingerprint(ws), f4);
    assert.equal(objects(), n0 + 4, 'only the second commit wrote objects (two blobs, a tree, a commit)');
    assert.equal(await workspaceFingerprint(path.join(os.tmpdir())), null, 'not a repository: null');
  } finally {
    fs.rmSync(ws, { recursive: true, force: true });
  }
});
