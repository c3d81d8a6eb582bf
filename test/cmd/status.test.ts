// `sw-agent status` says everything a human must know without reading logs:
// a pause and who made it, an escalation, queue files ignored or set aside,
// failing checkpoints; and --json carries each.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ignoreHostDisk, makeEnv, sw, type TestEnv } from '../helpers.js';
import { TaskLog } from '../../lib/tasklog/index.js';
import { runPaths } from '../../lib/run.js';
import { writeDecision } from '../../lib/governor/decision.js';

interface Status {
  paused: { by: string; reason: string | null } | null;
  escalated: { time: string; reason: string | null } | null;
  queue_invalid: Array<{ file: string; error: string }>;
  queue_rejected: Array<{ file: string; reason: string | null }>;
  checkpoints: { failing: { count: number; last: { kind: string; reason: string } } | null };
  problems: Array<{ severity: string; what: string; message: string }>;
}

async function status(t: TestEnv): Promise<{ doc: Status; text: string }> {
  const j = await sw('sw-agent', ['status', 'run1', '--json'], t);
  assert.equal(j.exitCode, 0, String(j.stderr));
  const x = await sw('sw-agent', ['status', 'run1'], t);
  assert.equal(x.exitCode, 0, String(x.stderr));
  return { doc: JSON.parse(String(j.stdout)) as Status, text: String(x.stdout) };
}

/** A run made and checkpointed, with nothing wrong: status says so. */
async function freshRun(t: TestEnv): Promise<ReturnType<typeof runPaths>> {
  ignoreHostDisk(t);
  assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
  assert.equal((await sw('sw-checkpoint', ['create', 'run1'], t)).exitCode, 0);
  const s = await status(t);
  assert.deepEqual(s.doc.problems, []);
  assert.match(s.text, /^problems: +none$/m);
  return runPaths('run1', t.env);
}

test('status says a pause and by whom (a human, with the reason; the governor, with its); --json carries it', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const p = await freshRun(t);
    let s: Awaited<ReturnType<typeof status>>;
    // Paused by a human, with the reason; then by the governor.
    assert.equal((await sw('sw-agent', ['pause', 'run1', '--reason', 'disk maintenance'], t)).exitCode, 0);
    s = await status(t);
    assert.deepEqual(s.doc.paused, { by: 'human', reason: 'disk maintenance' });
    assert.match(s.text, /^paused: +yes \(disk maintenance\)$/m);
    assert.equal((await sw('sw-agent', ['resume', 'run1'], t)).exitCode, 0);
    writeDecision(p.roots.runtimeDir, {
      version: 1, time: new Date().toISOString(), host: 'h', tier: 'critical', quantization: 'Q4_K_M', actions: ['pause'], context_limit: null, reasons: ['disk 4% free (critical)'], readings: {},
    }); // prettier-ignore
    s = await status(t);
    assert.deepEqual(s.doc.paused, { by: 'governor', reason: 'disk 4% free (critical)' });
    assert.match(s.text, /^paused: +by the governor \(disk 4% free \(critical\)\)$/m);
    fs.rmSync(path.join(p.roots.runtimeDir, 'governor.json'));
  } finally {
    t.cleanup();
  }
});

test('status says queue files ignored as no task and those set aside in queue/rejected/; --json carries them', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const p = await freshRun(t);
    // A queue file that is no task, and one set aside earlier.
    fs.writeFileSync(path.join(p.stateDir, 'queue', 'words.yaml'), 'prompt: [fix, the, build]\n');
    fs.mkdirSync(path.join(p.stateDir, 'queue', 'rejected'), { recursive: true });
    fs.writeFileSync(path.join(p.stateDir, 'queue', 'rejected', 'old.yaml'), 'title: [x\n');
    fs.writeFileSync(path.join(p.stateDir, 'queue', 'rejected', 'old.yaml.reason'), '2026-12-01T00:00:00.000Z invalid YAML\n');
    const s = await status(t);
    assert.equal(s.doc.queue_invalid.length, 1);
    assert.match(s.doc.queue_invalid[0]?.error ?? '', /words\.yaml:1:9: prompt: expected a string, got a list/);
    assert.deepEqual(s.doc.queue_rejected.map((r) => [path.basename(r.file), r.reason]), [['old.yaml', 'invalid YAML']]);
    assert.match(s.text, /; 1 file ignored; 1 file set aside$/m);
    assert.match(s.text, /^ {2}WARNING queue: ignored: .*words\.yaml:1:9: prompt: expected a string, got a list$/m);
    assert.match(s.text, /^ {2}WARNING queue: set aside .* ago: .*rejected\/old\.yaml: invalid YAML$/m);
    fs.rmSync(path.join(p.stateDir, 'queue', 'words.yaml'));
    fs.rmSync(path.join(p.stateDir, 'queue', 'rejected'), { recursive: true });
  } finally {
    t.cleanup();
  }
});

test('status says checkpoints fail (and --check is CRITICAL), and an escalation nobody has restarted after; --json carries them', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const p = await freshRun(t);
    let s: Awaited<ReturnType<typeof status>>;
    // Checkpoints that fail (git cannot lock its index: a directory stands where its lock file goes).
    fs.writeFileSync(path.join(p.stateDir, 'memory', 'notes.md'), 'a change\n');
    fs.mkdirSync(path.join(p.runDir, 'state.git', 'index.lock'));
    const failed = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t);
    assert.equal(failed.exitCode, 1, String(failed.stderr));
    s = await status(t);
    assert.equal(s.doc.checkpoints.failing?.count, 1);
    assert.equal(s.doc.checkpoints.failing?.last.kind, 'routine');
    assert.match(s.doc.checkpoints.failing?.last.reason ?? '', /index\.lock/);
    assert.match(s.text, /^ {2}CRITICAL checkpoints: checkpoints failing since .* ago \(1 attempt, the last routine\): git add: .*index\.lock/m);
    assert.match(s.text, /^checkpoints: +last [0-9a-f]{8} \(manual\) .* ago; \d+ changes? since, the oldest .* ago; FAILING$/m);
    const check = await sw('sw-report', ['run1', '--check'], t);
    assert.equal(check.exitCode, 2, String(check.stdout));
    assert.match(String(check.stdout), /^SELFWARE CRITICAL - checkpoints failing since .*index\.lock/);
    fs.rmdirSync(path.join(p.runDir, 'state.git', 'index.lock'));
    assert.equal((await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t)).exitCode, 0);
    assert.equal((await status(t)).doc.checkpoints.failing, null);

    // An escalation nobody has restarted after.
    const log = TaskLog.forRun(p);
    log.append({ t: 'session_start', session: 's1', pid: 1 });
    log.append({ t: 'escalation', reason: '5 crashes and 0 failed recoveries in the last 60 min (limit 5)', failures: 5, session: 's1' });
    s = await status(t);
    assert.equal(s.doc.escalated?.reason, '5 crashes and 0 failed recoveries in the last 60 min (limit 5)');
    assert.match(s.text, /^ {2}CRITICAL escalation: escalated .* ago: 5 crashes .*; systemd does not restart it until a human starts it again$/m);
    log.append({ t: 'session_start', session: 's2', pid: 2 });
    assert.equal((await status(t)).doc.escalated, null, 'a start after it ends the escalation');
  } finally {
    t.cleanup();
  }
});
