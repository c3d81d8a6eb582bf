import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkEscalation, computeBackoff, type SessionInfo } from '../../lib/recover/backoff.js';
import { placeFromLog, planReconcile, type LogTask } from '../../lib/recover/reconcile.js';
import type { Task } from '../../lib/queue/task.js';

const H = 3_600_000;
const cfg = { backoff_base: 1000, backoff_max: 60_000, stable_after: H, max_failures: 5, window: H };

function s(id: string, startMin: number, upMin: number, endState: string | null): SessionInfo {
  return { id, startedAt: startMin * 60_000, lastSeen: (startMin + upMin) * 60_000, endState };
}

test('the reconciliation matrix, row by row', () => {
  assert.deepEqual(placeFromLog({ attempt: 2, outcome: 'completed', reason: null }, 3)?.place, { status: 'completed', attempt: 2 });
  assert.deepEqual(placeFromLog({ attempt: 2, outcome: null, reason: null }, 3)?.place, { status: 'pending', attempt: 2 });
  assert.deepEqual(placeFromLog({ attempt: 2, outcome: 'failed', reason: 'verify' }, 3)?.place, { status: 'pending', attempt: 3 });
  assert.deepEqual(placeFromLog({ attempt: 3, outcome: 'failed', reason: 'verify' }, 3)?.place, { status: 'failed', attempt: 3 });
  assert.deepEqual(placeFromLog({ attempt: 1, outcome: 'cancelled', reason: null }, 3)?.place, { status: 'cancelled', attempt: 1 });
  assert.equal(placeFromLog(null, 3), null, 'never started: the queue keeps its pending task');
});

function task(id: string, status: Task['status'], attempt: number, max = 3): Task {
  return { id, title: id, prompt: id, verify: null, priority: 0, max_attempts: max, timeout: H, status, attempt, created: '2026-01-01T00:00:00Z', updated: '2026-01-01T00:00:00Z', source: 'cli', reason: null };
}

test('planReconcile follows the log, restores lost tasks, and is idempotent', () => {
  const log = new Map<string, LogTask>([
    ['a', { spec: null, latest: { attempt: 1, outcome: 'completed', reason: null } }],
    ['b', { spec: null, latest: { attempt: 2, outcome: null, reason: null } }],
    ['c', { spec: null, latest: { attempt: 1, outcome: 'failed', reason: 'verify failed' } }],
    ['lost', { spec: { id: 'lost', title: 'L', prompt: 'p', verify: null, priority: 0, max_attempts: 3, timeout: H, created: '2026-01-01T00:00:00Z', source: 'cli' }, latest: null }],
    ['gone', { spec: null, latest: { attempt: 1, outcome: null, reason: null } }],
  ]);
  const queue = [task('a', 'in_progress', 1), task('b', 'in_progress', 2), task('c', 'in_progress', 1), task('d', 'pending', 1), task('e', 'in_progress', 1)];
  const plan = planReconcile(queue, log, '2026-01-02T00:00:00Z');
  const by = new Map(plan.changes.map((c) => [c.task, c]));
  assert.deepEqual(by.get('a')?.after, { status: 'completed', attempt: 1 });
  assert.deepEqual(by.get('b')?.after, { status: 'pending', attempt: 2 });
  assert.deepEqual(by.get('c')?.after, { status: 'pending', attempt: 2 });
  assert.equal(by.has('d'), false, 'pending stays unchanged');
  assert.deepEqual(by.get('e')?.after, { status: 'pending', attempt: 1 }, 'in progress in the queue but never started in the log');
  assert.equal(by.get('lost')?.before, null);
  assert.deepEqual(by.get('lost')?.after, { status: 'pending', attempt: 1 });
  assert.deepEqual(plan.lost, ['gone']);
  // Applying the plan and planning again changes nothing.
  const written = new Map(plan.write.map((t) => [t.id, t]));
  const next = [...queue.map((t) => written.get(t.id) ?? t), ...plan.write.filter((t) => !queue.some((q) => q.id === t.id))];
  assert.deepEqual(planReconcile(next, log, '2026-01-03T00:00:00Z').changes, []);
});

test('backoff doubles with each crash in a row, caps, and resets after a long run', () => {
  assert.deepEqual(computeBackoff([], cfg), { crashes: 0, delayMs: 0 });
  assert.deepEqual(computeBackoff([s('a', 0, 5, 'clean')], cfg), { crashes: 0, delayMs: 0 });
  const crashes = (n: number) => Array.from({ length: n }, (_, i) => s(`c${i}`, 1000 - i * 10, 2, null));
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => computeBackoff(crashes(n), cfg).delayMs), [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
  // A clean stop ends the run of crashes.
  assert.equal(computeBackoff([...crashes(2), s('ok', 500, 5, 'clean'), ...crashes(3)], cfg).crashes, 2);
  // The newest crashed after an hour up: the count starts again.
  assert.deepEqual(computeBackoff([s('long', 1000, 61, null), ...crashes(5)], cfg), { crashes: 1, delayMs: 1000 });
  // An older long session stops the count after itself.
  assert.equal(computeBackoff([s('x', 2000, 1, 'error'), s('long', 1000, 70, null), ...crashes(5)], cfg).crashes, 2);
  // The memory guard's restarts are checkpointed, but they back off like crashes (a run whose memory keeps growing must not restart for ever).
  assert.deepEqual(computeBackoff([s('r', 2000, 1, 'rss')], cfg), { crashes: 1, delayMs: 1000 });
  assert.equal(computeBackoff([s('r', 2000, 1, 'rss'), s('c', 1900, 1, null), s('ok', 1800, 5, 'clean')], cfg).crashes, 2);
});

test('escalation after max_failures crashes or failed recoveries in the window, counted since the last escalation', () => {
  const now = 10_000 * 60_000;
  const recent = (n: number) => Array.from({ length: n }, (_, i) => s(`c${i}`, 10_000 - 5 - i * 5, 1, null));
  assert.equal(checkEscalation(recent(4), [], null, now, cfg).escalate, false);
  const e5 = checkEscalation(recent(5), [], null, now, cfg);
  assert.equal(e5.escalate, true);
  assert.equal(e5.failures, 5);
  assert.match(e5.why, /5 crashes and 0 failed recoveries in the last 60 min \(limit 5\)/);
  // A window of seconds is said in seconds (it said "the last 0 min").
  const short = checkEscalation([s('q', 10_000 - 0.1, 1, null)], [], null, now, { ...cfg, window: 20_000, max_failures: 1 });
  assert.match(short.why, /1 crash and 0 failed recoveries in the last 20s \(limit 1\)/);
  assert.equal(checkEscalation(recent(3), [now - 60_000, now - 120_000], null, now, cfg).escalate, true, 'failed recoveries count');
  const old = Array.from({ length: 10 }, (_, i) => s(`o${i}`, 10_000 - 200 - i, 1, null));
  assert.equal(checkEscalation(old, [], null, now, cfg).escalate, false, 'crashes outside the window do not count');
  assert.equal(checkEscalation(recent(6), [], now - 12 * 60_000, now, cfg).failures, 2, 'only what came after the last escalation');
  // The memory guard's restarts count, and the reason says how many of them there were.
  const guarded = checkEscalation([s('g1', 10_000 - 5, 1, 'rss'), ...recent(3), s('g2', 10_000 - 30, 1, 'rss')], [], null, now, cfg);
  assert.equal(guarded.escalate, true);
  assert.match(guarded.why, /^5 crashes \(2 of them the memory guard's restarts\) and 0 failed recoveries in the last 60 min \(limit 5\)$/);
});
