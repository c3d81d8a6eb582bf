// Recovery time for a run with 1,000 tasks in the queue and 100,000 task-log
// events: median wall time of `sw-recover` for the no-op case (the last
// session stopped cleanly) and the crash case (state valid, the queue
// reconciled, a recovery checkpoint), against the floor of a bare `node -e 0`.
//   node dist/bench/recover.js [rounds]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TaskLog, type TaskEvent } from '../lib/tasklog/index.js';
import { runPaths } from '../lib/run.js';
import { writeTask, type Task } from '../lib/queue/task.js';
import { median } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const rounds = Number(process.argv[2] ?? 7);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-rec-'));
function envFor(root: string): NodeJS.ProcessEnv {
  return { ...process.env, SELFWARE_STATE_DIR: path.join(root, 'state'), SELFWARE_CONFIG_DIR: path.join(root, 'etc'), SELFWARE_RUNTIME_DIR: path.join(root, 'run') };
}
function time(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

try {
  const tpl = path.join(dir, 'tpl');
  fs.mkdirSync(path.join(tpl, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(tpl, 'etc', 'bench.yaml'), 'recovery:\n  backoff_base: 0s\n  max_failures: 1000\n');
  const env = envFor(tpl);
  time([path.join(ROOT, 'dist/bin/sw-checkpoint.cjs'), 'create', 'bench', '-q'], env);
  const p = runPaths('bench', env);
  const log = TaskLog.forRun(p);
  const now = Date.now();
  const t0 = now - 7 * 86_400_000;
  // 1,000 tasks; 100,000 events over 7 days (task life cycles, steps, LLM calls).
  const evs: TaskEvent[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = `task-${String(i).padStart(4, '0')}`;
    const task: Task = { id, title: id, prompt: `do ${id}`, verify: 'true', priority: 0, max_attempts: 3, timeout: 3_600_000, status: i < 700 ? 'completed' : 'pending', attempt: 1, created: new Date(t0).toISOString(), updated: new Date(t0).toISOString(), source: 'cli', reason: null };
    await writeTask(p.stateDir, task);
    evs.push({ t: 'task_added', task: id, title: id, max_attempts: 3, spec: { ...task }, ts: new Date(t0 + i * 600_000).toISOString() });
  }
  let k = 0;
  while (evs.length < 100_000 - 2) {
    const id = `task-${String(k % 700).padStart(4, '0')}`;
    const ts = new Date(t0 + (evs.length * 6_000)).toISOString();
    if (k < 700) evs.push({ t: 'task_started', task: id, attempt: 1, ts }, { t: 'task_outcome', task: id, attempt: 1, outcome: 'completed', ts });
    else evs.push({ t: 'llm_call', task: id, tokens_in: 900, tokens_out: 80, latency_ms: 1300, tokens_per_s: 60, ts }, { t: 'task_step', task: id, attempt: 1, step: k, ts });
    k++;
  }
  for (let i = 0; i < evs.length; i += 5000) log.appendMany(evs.slice(i, i + 5000));
  await log.compact();
  // The queue is in the newest checkpoint, as the timer's checkpoints keep it.
  time([path.join(ROOT, 'dist/bin/sw-checkpoint.cjs'), 'create', 'bench', '-q'], env);
  const count = (await log.snapshot()).position;
  const clean = path.join(dir, 'clean');
  fs.cpSync(tpl, clean, { recursive: true });
  TaskLog.forRun(runPaths('bench', envFor(clean))).appendMany([
    { t: 'session_start', session: 'c1', ts: new Date(now - 3_600_000).toISOString() },
    { t: 'session_end', session: 'c1', state: 'clean', ts: new Date(now - 60_000).toISOString() },
  ]);
  log.appendMany([{ t: 'session_start', session: 'x1', ts: new Date(now - 3_600_000).toISOString() }]);
  for (let i = 700; i < 705; i++) log.append({ t: 'task_started', task: `task-0${i}`, attempt: 1, session: 'x1' });

  spawnSync('sync');
  const node: number[] = [];
  const noop: number[] = [];
  const crash: number[] = [];
  const cmd = path.join(ROOT, 'dist/bin/sw-recover.cjs');
  for (let r = 0; r < rounds; r++) {
    node.push(time(['-e', '0'], env));
    noop.push(time([cmd, 'bench', '-q'], envFor(clean)));
    const w = path.join(dir, `w${r}`);
    fs.cpSync(tpl, w, { recursive: true });
    // A copy has new inodes: refresh git's index stat data, as it is on the
    // machine that crashed, and flush the copy so that an fsync inside the
    // timed run does not pay for it.
    spawnSync('git', ['update-index', '-q', '--refresh'], { cwd: path.join(w, 'state', 'bench', 'state'), env: { ...process.env, GIT_DIR: '../state.git' } });
    spawnSync('sync');
    crash.push(time([cmd, 'bench', '-q'], envFor(w)));
    if (!process.env.BENCH_KEEP) fs.rmSync(w, { recursive: true, force: true });
  }
  const f = (x: number): string => x.toFixed(0);
  console.log(`run: 1,000 tasks in the queue, ${evs.length + 7} task-log events (journal position ${count} bytes), ${rounds} rounds`);
  console.log(`node -e 0:           median ${f(median(node))} ms`);
  console.log(`no-op (clean stop):  median ${f(median(noop))} ms   ratio to node ${(median(noop) / median(node)).toFixed(2)}`);
  console.log(`crash (reconcile):   median ${f(median(crash))} ms   ratio to node ${(median(crash) / median(node)).toFixed(2)}`);
} finally {
  if (process.env.BENCH_KEEP) console.log(`kept ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
