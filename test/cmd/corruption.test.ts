// One damaged byte in a run's files: what an outside test found (issue 11).
// Each case damages one byte of a crashed run the way a disk or a stray write
// would, then checks that the damage is named, that no task moves backwards,
// that every command still works, and that after sw-recover the run verifies.

import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { git, makeEnv, sw, writeConfig, type TestEnv } from '../helpers.js';
import { addTask, checkpoint, crashedSession, createRun, events, log, paths, readTask } from '../fixtures/runs.js';

// Every checkpoint folds the journal into the database (and keeps its copy).
const CONFIG = 'recovery:\n  backoff_base: 0s\ntasklog:\n  compact_bytes: 1\n';

async function recJson(t: TestEnv): Promise<{ action: string; problems: string[]; repairs: string[]; forensics: string[]; reconciled: unknown[]; recovery_checkpoint: string | null }> {
  const r = await sw('sw-recover', ['run1', '--json'], t);
  assert.equal(r.exitCode, 0, `sw-recover: ${r.stderr}`);
  return JSON.parse(String(r.stdout));
}

async function verify(t: TestEnv): Promise<{ code: number; out: string }> {
  const r = await sw('sw-checkpoint', ['verify', 'run1'], t);
  return { code: r.exitCode ?? -1, out: `${r.stdout}\n${r.stderr}` };
}

/** Flip one byte of a file at offset (a letter's case: never a newline, always a different byte). */
function flip(file: string, offset: number): void {
  fs.chmodSync(file, 0o644);
  const b = fs.readFileSync(file);
  const c = b[offset] as number;
  b[offset] = /[A-Za-z]/.test(String.fromCharCode(c)) ? c ^ 0x20 : c ^ 0x01;
  assert.notEqual(b[offset], 0x0a);
  fs.writeFileSync(file, b);
}

/** Offset of `needle` inside the line of the file that contains `lineHas`. */
function offsetIn(file: string, lineHas: string, needle: string): number {
  const text = fs.readFileSync(file, 'latin1');
  const line = text.indexOf(lineHas);
  assert.ok(line >= 0, `${lineHas} in ${file}`);
  const start = text.lastIndexOf('\n', line) + 1;
  const at = text.indexOf(needle, start);
  assert.ok(at >= 0 && at < text.indexOf('\n', line));
  return at;
}

/** What status and --check say of the task log: status's tasklog problems, and the check's line. */
async function signals(t: TestEnv): Promise<{ status: string[]; check: string; code: number }> {
  const st = await sw('sw-agent', ['status', 'run1', '--json'], t);
  assert.equal(st.exitCode, 0, String(st.stderr));
  const problems = (JSON.parse(String(st.stdout)).problems as Array<{ what: string; message: string }>).filter((p) => p.what === 'tasklog').map((p) => p.message);
  const c = await sw('sw-report', ['run1', '--check'], t);
  return { status: problems, check: String(c.stdout).split(' | ')[0] ?? '', code: c.exitCode ?? -1 };
}

async function outcomes(t: TestEnv): Promise<string[]> {
  const s = await log(t).snapshot();
  try {
    return (s.db.exec("SELECT task_id || ':' || attempt || ':' || coalesce(outcome, 'running') FROM task_attempts ORDER BY task_id, attempt")[0]?.values ?? []).map((r) => String(r[0]));
  } finally {
    s.db.close();
  }
}

/** A run with a task done, one failed once (now at attempt 2), and a crashed session. */
async function crashedRun(t: TestEnv): Promise<void> {
  writeConfig(t, 'run1', CONFIG);
  await createRun(t);
  addTask(t, { id: 'done', status: 'completed' });
  addTask(t, { id: 'again', status: 'pending', attempt: 2 });
  crashedSession(t, 's1', '2026-11-21T08:00:00Z');
  events(t, [
    { t: 'task_started', task: 'done', attempt: 1, session: 's1', ts: '2026-11-21T08:01:00Z' },
    { t: 'task_outcome', task: 'done', attempt: 1, outcome: 'completed', steps: 3, session: 's1', ts: '2026-11-21T08:02:00Z' },
    { t: 'task_started', task: 'again', attempt: 1, session: 's1', ts: '2026-11-21T08:03:00Z' },
    { t: 'task_outcome', task: 'again', attempt: 1, outcome: 'failed', reason: 'verify failed', steps: 2, session: 's1', ts: '2026-11-21T08:04:00Z' },
    { t: 'heartbeat', session: 's1', ts: '2026-11-21T08:05:00Z' },
  ]);
}

test('a damaged record in the middle of the journal: no task moves backwards, the outcomes are written again, the run verifies after', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await crashedRun(t);
    const j0 = paths(t).tasklogJournal;
    flip(j0, offsetIn(j0, '"outcome":"completed"', 'completed'));
    flip(j0, offsetIn(j0, '"outcome":"failed"', 'failed'));
    // Before recovery: named, never used as data.
    const v0 = await verify(t);
    assert.equal(v0.code, 1);
    assert.match(v0.out, /tasklog\.journal:\d+: record at position \d+: CRC mismatch/);
    const list = await sw('sw-agent', ['list', 'run1'], t);
    assert.equal(list.exitCode, 0, String(list.stderr));
    const s0 = await signals(t);
    assert.equal(s0.status.length, 2, s0.status.join('\n'));
    assert.match(s0.status[0] as string, /^task log damaged: .*tasklog\.journal:\d+: record at position \d+: CRC mismatch; skipped; sw-recover repairs/);
    assert.match(s0.check, /task log damaged/);

    const j = await recJson(t);
    assert.equal(j.action, 'reconcile');
    assert.equal(readTask(t, 'done')?.status, 'completed', 'a completed task is never set back to pending');
    assert.deepEqual([readTask(t, 'again')?.status, readTask(t, 'again')?.attempt], ['pending', '2']);
    assert.ok(j.problems.some((p) => /task done: its queue file says completed at attempt 1, ahead of the task log \(pending at attempt 1\)/.test(p)), j.problems.join('\n'));
    assert.ok(j.problems.some((p) => /CRC mismatch; skipped/.test(p)));
    assert.deepEqual(await outcomes(t), ['again:1:failed', 'done:1:completed'], 'the lost outcomes are in the log again');
    assert.ok(j.forensics.some((f) => /tasklog\.journal\.damaged-\d+$/.test(f) && fs.existsSync(f)), 'the damaged journal is kept');
    const v1 = await verify(t);
    assert.equal(v1.code, 0, v1.out);
    const s1 = await signals(t);
    assert.deepEqual(s1.status, [], 'repaired: status has nothing more to say of the log');
    assert.doesNotMatch(s1.check, /task log/);
    // Run again: nothing more to do, nothing written twice.
    const again = await recJson(t);
    assert.deepEqual(again.reconciled, []);
    assert.deepEqual(await outcomes(t), ['again:1:failed', 'done:1:completed']);
  } finally {
    t.cleanup();
  }
});

for (const line of [1, 2]) {
  test(`a damaged byte in the journal's header (line ${line}${line === 2 ? ', its copy' : ''}): it is read from the other, every command works, recovery rewrites it`, { timeout: 60_000 }, async () => {
    const t = makeEnv();
    try {
      await crashedRun(t);
      const file = paths(t).tasklogJournal;
      const text = fs.readFileSync(file, 'latin1');
      const first = text.indexOf('\n') + 1;
      // Inside the log id: a damaged header that still parses would be the worst kind.
      const at = (line === 1 ? 0 : first) + text.indexOf('"log":"') + 8;
      flip(file, at);
      for (const [cmd, args] of [
        ['sw-agent', ['list', 'run1']],
        ['sw-agent', ['status', 'run1']],
        ['sw-report', ['run1', '--json']],
        ['sw-checkpoint', ['list', 'run1']],
      ] as Array<[string, string[]]>) {
        const r = await sw(cmd, args, t);
        assert.equal(r.exitCode, 0, `${cmd} ${args.join(' ')} with line ${line} damaged: ${r.stderr}`);
      }
      const add = await sw('sw-agent', ['add', 'run1', 'one more'], t);
      assert.equal(add.exitCode, 0, String(add.stderr));
      const v0 = await verify(t);
      assert.equal(v0.code, 1);
      assert.match(v0.out, line === 1 ? /tasklog\.journal:1: journal header: CRC mismatch; read from its copy/ : /tasklog\.journal:2: the copy of the journal header is damaged/);
      // Said where a human reads it (the journal, through standard error), not only in --json.
      const r = await sw('sw-recover', ['run1'], t);
      assert.equal(r.exitCode, 0, String(r.stderr));
      assert.match(String(r.stderr), line === 1 ? /sw-recover: warning: .*tasklog\.journal:1: journal header: CRC mismatch/ : /sw-recover: warning: .*tasklog\.journal:2: the copy of the journal header is damaged/);
      assert.match(String(r.stderr), /sw-recover: task log: rewritten from what was intact/);
      assert.match(String(r.stdout), /^recovered after .*, 1 problem found \(said above\), checkpoint [0-9a-f]{8}$/m);
      const v1 = await verify(t);
      assert.equal(v1.code, 0, v1.out);
      assert.deepEqual(await outcomes(t), ['again:1:failed', 'done:1:completed']);
    } finally {
      t.cleanup();
    }
  });
}

test('a damaged byte in tasklog.db: read from its copy in state.git, named, and repaired; no event is lost', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    await crashedRun(t);
    // A checkpoint folds the journal (compact_bytes: 1): the database now holds the events, state.git its copy.
    await checkpoint(t);
    const db = paths(t).tasklogDb;
    const before = await outcomes(t);
    assert.deepEqual(before, ['again:1:failed', 'done:1:completed']);
    const refs = await git(paths(t).stateDir, ['for-each-ref', '--format=%(refname)', 'refs/selfware/tasklog-db/'], path.join(paths(t).runDir, 'state.git'));
    assert.equal(String(refs.stdout).trim().split('\n').length, 1, 'one copy, of the database the journal continues');
    // The schema page: "malformed database schema" on the first read.
    const bytes = fs.readFileSync(db);
    const at = bytes.indexOf('CREATE TABLE sessions');
    assert.ok(at > 0);
    flip(db, at + 2);
    const list = await sw('sw-agent', ['list', 'run1'], t);
    assert.equal(list.exitCode, 0, String(list.stderr));
    // (status and sw-report work on it too: signals asks both.)
    const s0 = await signals(t);
    assert.match(s0.status.join('\n'), /tasklog\.db: not the database the journal continues/);
    // (CRITICAL for the old fixture's stalled progress; the damage is one of the alerts named.)
    assert.match(s0.check, /task log damaged: .*tasklog\.db: not the database the journal continues/);
    const v0 = await verify(t);
    assert.equal(v0.code, 1);
    assert.match(v0.out, /tasklog\.db: checksum does not match the one the journal recorded for it \(an intact copy is in state\.git; sw-recover repairs it\)/);
    const j = await recJson(t);
    assert.ok(j.problems.some((p) => /tasklog\.db: not the database the journal continues \(checksum differs\); read from its copy in state\.git/.test(p)), j.problems.join('\n'));
    assert.ok(j.forensics.some((f) => /tasklog\.db\.corrupt-\d+$/.test(f)));
    assert.deepEqual(await outcomes(t), before, 'no event lost');
    const v1 = await verify(t);
    assert.equal(v1.code, 0, v1.out);
  } finally {
    t.cleanup();
  }
});

for (const packed of [false, true]) {
  test(`a damaged object in state.git, ${packed ? 'packed' : 'loose'}: recovery names it, writes it again from state/, and its checkpoint verifies`, { timeout: 60_000 }, async () => {
    const t = makeEnv();
    try {
      await crashedRun(t);
      fs.writeFileSync(path.join(paths(t).stateDir, 'memory', 'notes.md'), 'a note the run keeps\n'.repeat(40));
      await checkpoint(t);
      const repo = path.join(paths(t).runDir, 'state.git');
      const old: string[] = [];
      if (packed) {
        // An older checkpoint whose files are gone from state/: only the pack holds their objects.
        // (One checkpoint, not one per file: each is a command started, and this test keeps to its
        // minute on a loaded machine.)
        for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(paths(t).stateDir, 'memory', `old-${i}.md`), crypto.randomBytes(2000).toString('hex'));
        await checkpoint(t);
        for (let i = 0; i < 6; i++) old.push(String((await git(paths(t).stateDir, ['rev-parse', `HEAD:memory/old-${i}.md`], repo)).stdout).trim());
        for (let i = 0; i < 6; i++) fs.rmSync(path.join(paths(t).stateDir, 'memory', `old-${i}.md`));
        await checkpoint(t);
        assert.equal((await git(paths(t).stateDir, ['gc', '--quiet'], repo)).exitCode, 0);
      }
      let blob = String((await git(paths(t).stateDir, ['rev-parse', 'HEAD:memory/notes.md'], repo)).stdout).trim();
      if (packed) {
        // The damaged one: the live file's object that comes first in the pack, so that objects only
        // older checkpoints hold come after it (reading the pack as a stream lost them all).
        const pack = fs.readdirSync(path.join(repo, 'objects', 'pack')).find((f) => f.endsWith('.pack')) as string;
        const at = new Map(execFileSync('git', ['show-index'], { input: fs.readFileSync(path.join(repo, 'objects', 'pack', pack.replace(/\.pack$/, '.idx'))) }).toString().trim().split('\n').map((l) => [l.split(' ')[1] as string, Number(l.split(' ')[0])]));
        const live = String((await git(paths(t).stateDir, ['ls-tree', '-r', 'HEAD'], repo)).stdout).trim().split('\n').map((l) => l.split(/\s+/)[2] as string).filter((o) => at.has(o));
        blob = live.sort((a, b) => (at.get(a) as number) - (at.get(b) as number))[0] as string;
        assert.ok(old.some((o) => (at.get(o) ?? 0) > (at.get(blob) as number)), 'an older checkpoint\'s object comes after the damaged one in the pack');
      }
      if (!packed) {
        const obj = path.join(repo, 'objects', blob.slice(0, 2), blob.slice(2));
        flip(obj, Math.floor(fs.statSync(obj).size / 2));
      } else {
        const pack = fs.readdirSync(path.join(repo, 'objects', 'pack')).find((f) => f.endsWith('.pack')) as string;
        const listing = execFileSync('git', ['show-index'], { input: fs.readFileSync(path.join(repo, 'objects', 'pack', pack.replace(/\.pack$/, '.idx'))) }).toString();
        const off = Number(listing.split('\n').find((l) => l.includes(blob))?.split(' ')[0]);
        assert.ok(off > 0, 'the blob is in the pack');
        // The second byte of its zlib stream's header: git cannot inflate it, nor tell where it ends.
        flip(path.join(repo, 'objects', 'pack', pack), off + 3);
      }
      const v0 = await verify(t);
      assert.equal(v0.code, 1);
      assert.match(v0.out, new RegExp(`state object ${blob.slice(0, 12)}`));
      assert.doesNotMatch(v0.out, new RegExp(`${blob.slice(0, 12)}: missing`), 'a damaged object is not called missing');
      const j = await recJson(t);
      assert.ok(j.problems.some((p) => p.includes(`state.git: object ${blob.slice(0, 12)}`) && /written again from state\//.test(p)), `${packed ? 'packed' : 'loose'}: ${j.problems.join('\n')}`);
      assert.ok(j.forensics.some((f) => /state\.git\.damaged-\d+$/.test(f) && fs.existsSync(f)), j.forensics.join('\n'));
      assert.ok(j.recovery_checkpoint);
      // The content was still in state/: written again under the same id, so every checkpoint naming it is whole again.
      const v1 = await verify(t);
      assert.equal(v1.code, 0, v1.out);
      const fsck = await git(paths(t).stateDir, ['fsck', '--no-dangling'], repo);
      assert.equal(fsck.exitCode, 0, String(fsck.stderr));
      const later = await checkpoint(t);
      const v2 = await sw('sw-checkpoint', ['verify', 'run1', later], t);
      assert.equal(v2.exitCode, 0, String(v2.stdout));
    } finally {
      t.cleanup();
    }
  });
}
