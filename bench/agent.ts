// The agent's own cost: milliseconds of infrastructure per step (durable
// transcript lines, task-log events, agent.json, policy, the action's
// bookkeeping) with the scripted backend, as a share of a step on the tiny
// GGUF; and the resident memory of `sw-agent run` idle and busy, model
// excluded (scripted backend).
//   node dist/bench/agent.js [steps]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TaskLog } from '../lib/tasklog/index.js';
import { runPaths } from '../lib/run.js';
import { tinyLlamaConfig, tinyModels } from '../test/fixtures/gguf.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const AGENT = path.join(ROOT, 'dist/bin/sw-agent.cjs');
const steps = Number(process.argv[2] ?? 200);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-agent-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function envFor(name: string): NodeJS.ProcessEnv {
  const root = path.join(dir, name);
  for (const d of ['etc', 'state', 'run']) fs.mkdirSync(path.join(root, d), { recursive: true });
  return { ...process.env, SELFWARE_CONFIG_DIR: path.join(root, 'etc'), SELFWARE_STATE_DIR: path.join(root, 'state'), SELFWARE_RUNTIME_DIR: path.join(root, 'run') };
}

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

async function untilEnded(env: NodeJS.ProcessEnv, id: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = spawnSync(process.execPath, [AGENT, 'list', 'b', '--json'], { env });
    const t = (JSON.parse(r.stdout.toString()) as { tasks: Array<{ id: string; status: string }> }).tasks.find((x) => x.id === id);
    if (t && ['completed', 'failed'].includes(t.status)) return;
    await sleep(200);
  }
  throw new Error(`task ${id} did not end`);
}

/** Per step: wall time between consecutive task_step events, and the LLM call latencies. */
async function stepTimes(env: NodeJS.ProcessEnv): Promise<{ perStep: number; llm: number; n: number }> {
  const snap = await TaskLog.forRun(runPaths('b', env)).snapshot();
  try {
    const ts = (snap.db.exec('SELECT ts FROM task_steps ORDER BY ts')[0]?.values ?? []).map((v) => Number(v[0]));
    const llm = (snap.db.exec('SELECT latency_ms FROM llm_calls WHERE ok = 1')[0]?.values ?? []).map((v) => Number(v[0]));
    const gaps = ts.slice(1).map((t, i) => t - (ts[i] as number));
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    return { perStep: med(gaps), llm: med(llm), n: ts.length };
  } finally {
    snap.db.close();
  }
}

function start(env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [AGENT, 'run', 'b', '-q'], { env, stdio: 'ignore' });
}

try {
  // Scripted: `steps` cheap actions, then finish.
  const s = envFor('scripted');
  const script = path.join(dir, 'script.yaml');
  fs.writeFileSync(script, stringify({ tasks: { bench: [...Array.from({ length: steps }, (_, i) => ({ action: 'read_file', path: i % 2 ? '.' : 'notes.txt' })), { action: 'finish', summary: 'x' }] } }));
  fs.writeFileSync(path.join(s.SELFWARE_CONFIG_DIR as string, 'b.yaml'), `llm:\n  backend: scripted\n  script: ${script}\n`);
  const idA = spawnSync(process.execPath, [AGENT, 'add', 'b', '--title', 'bench', 'read files'], { env: s }).stdout.toString().trim();
  // Idle first: no task is runnable while paused.
  spawnSync(process.execPath, [AGENT, 'pause', 'b'], { env: s });
  const a = start(s);
  await sleep(4000);
  const idle: number[] = [];
  for (let i = 0; i < 10; i++) {
    idle.push(rssKiB(a.pid as number));
    await sleep(200);
  }
  spawnSync(process.execPath, [AGENT, 'resume', 'b'], { env: s });
  const busy: number[] = [];
  const sampler = setInterval(() => busy.push(rssKiB(a.pid as number)), 50);
  await untilEnded(s, idA, 300_000);
  clearInterval(sampler);
  a.kill('SIGTERM');
  await new Promise((r) => a.once('exit', r));
  const scripted = await stepTimes(s);

  // The tiny GGUF: the same loop with a model answering (random actions, shell refused).
  const l = envFor('llama');
  const models = tinyModels(path.join(dir, 'models'));
  fs.writeFileSync(
    path.join(l.SELFWARE_CONFIG_DIR as string, 'b.yaml'),
    tinyLlamaConfig(models, { llm: ['max_tokens: 200'], agent: ['task_timeout: 60s'] }),
  );
  const idB = spawnSync(process.execPath, [AGENT, 'add', 'b', '--title', 'bench', 'write notes'], { env: l }).stdout.toString().trim();
  const b = start(l);
  await untilEnded(l, idB, 120_000);
  b.kill('SIGTERM');
  await new Promise((r) => b.once('exit', r));
  const llama = await stepTimes(l);

  const kib = (xs: number[]) => `${(Math.max(...xs) / 1024).toFixed(1)} MiB`;
  console.log(`scripted backend: ${scripted.n} steps; median ${scripted.perStep.toFixed(1)} ms a step (model answer ${scripted.llm.toFixed(1)} ms of it)`);
  console.log(`tiny GGUF (llama): ${llama.n} steps; median ${llama.perStep.toFixed(1)} ms a step (model answer ${llama.llm.toFixed(1)} ms of it)`);
  console.log(`infrastructure share of a tiny-model step: ${((scripted.perStep / llama.perStep) * 100).toFixed(0)}%`);
  console.log(`RSS of sw-agent run (scripted, no model): idle ${kib(idle)}, busy peak ${kib(busy)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
