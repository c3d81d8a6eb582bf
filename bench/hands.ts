// The agent's hands, old against new: three scripted scenarios that mirror
// real work, each done once with the old actions only (shell, read_file,
// write_file, finish: what a careful model does with them) and once with the
// new ones (view, search, edit, apply_patch, and the run's memory), through
// the built sw-agent on the scripted backend, in the same process. Per task:
// the prompt tokens sent to the model (the task log's tokens_in, summed over
// its calls: each call sends the whole prompt) and the steps taken.
//   node dist/bench/hands.js
//
// The scenarios:
//   five lines in the middle of a 2,000-line file;
//   a function renamed where it is defined and at its three callers;
//   a failing test fixed over two attempts (the first fix wrong).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TaskLog } from '../lib/tasklog/index.js';
import { runPaths } from '../lib/run.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const AGENT = path.join(ROOT, 'dist/bin/sw-agent.cjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-hands-'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Act = Record<string, unknown>;

interface Scenario {
  name: string;
  /** Files of the workspace before the task. */
  files: Record<string, string>;
  prompt: string;
  verify: string;
  /** The actions of each attempt, old tools and new. */
  old: Act[][];
  new: Act[][];
}

const BIG = Array.from({ length: 2000 }, (_, i) => `export function f${i + 1}(x) { return x + ${i + 1}; }`).join('\n') + '\n';
const five = [1000, 1001, 1002, 1003, 1004];

const UTIL = 'export function total(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n';
const caller = (n: number): string => `import { total } from './util.js';\n${Array.from({ length: 60 }, (_, i) => `// line ${i} of caller ${n}, unrelated code that a whole-file read still costs`).join('\n')}\nexport const r${n} = total([${n}, 1]);\n`;
const renamed = (s: string): string => s.replace(/\btotal\b/g, 'sum');

const MATH = `${Array.from({ length: 80 }, (_, i) => `export const k${i} = ${i};`).join('\n')}\nexport function area(w, h) {\n  return w + h;\n}\n`;
const TEST = `import { area } from './math.js';\nif (area(2, 3) !== 6) { console.error('expected area(2, 3) to be 6, got ' + area(2, 3)); process.exit(1); }\n`;

const scenarios: Scenario[] = [
  {
    name: 'five lines in the middle of a 2,000-line file',
    files: { 'big.js': BIG },
    prompt: 'In big.js, make f1000 to f1004 return x * 2 instead.',
    verify: five.map((n) => `grep -q 'export function f${n}(x) { return x \\* 2; }' big.js`).join(' && '),
    old: [
      [
        // read_file gives the head and the tail: the middle is cut, so the model looks with sed.
        { action: 'read_file', path: 'big.js' },
        { action: 'shell', command: 'grep -n "function f100[0-4](" big.js' },
        { action: 'shell', command: 'sed -n 995,1010p big.js' },
        { action: 'shell', command: `sed -i ${five.map((n) => `-e 's/^export function f${n}(x) { return x + ${n}; }$/export function f${n}(x) { return x * 2; }/'`).join(' ')} big.js` },
        { action: 'shell', command: 'sed -n 998,1006p big.js' },
        { action: 'finish', summary: 'changed f1000-f1004' },
      ],
    ],
    new: [
      [
        { action: 'search', pattern: 'function f100[0-4]\\(', path: 'big.js' },
        { action: 'view', path: 'big.js', start: 998, end: 1006 },
        { action: 'edit', path: 'big.js', old: five.map((n) => `export function f${n}(x) { return x + ${n}; }`).join('\n'), new: five.map((n) => `export function f${n}(x) { return x * 2; }`).join('\n') },
        { action: 'finish', summary: 'changed f1000-f1004' },
      ],
    ],
  },
  {
    name: 'a function renamed where it is defined and at its callers',
    files: { 'util.js': UTIL, 'a.js': caller(1), 'b.js': caller(2), 'c.js': caller(3) },
    prompt: 'Rename total to sum, where it is defined and where it is called.',
    verify: "! grep -rq 'total' --include=*.js . && grep -q 'export function sum' util.js",
    old: [
      [
        { action: 'shell', command: 'grep -rn "total" --include=*.js .' },
        { action: 'read_file', path: 'util.js' },
        { action: 'write_file', path: 'util.js', content: renamed(UTIL) },
        { action: 'read_file', path: 'a.js' },
        { action: 'write_file', path: 'a.js', content: renamed(caller(1)) },
        { action: 'read_file', path: 'b.js' },
        { action: 'write_file', path: 'b.js', content: renamed(caller(2)) },
        { action: 'read_file', path: 'c.js' },
        { action: 'write_file', path: 'c.js', content: renamed(caller(3)) },
        { action: 'shell', command: 'grep -rn "total" --include=*.js . || echo none left' },
        { action: 'finish', summary: 'renamed' },
      ],
    ],
    new: [
      [
        { action: 'search', pattern: '\\btotal\\b' },
        { action: 'edit', path: 'util.js', old: 'export function total(xs) {', new: 'export function sum(xs) {' },
        {
          action: 'apply_patch',
          patch: [1, 2, 3]
            .map((n) => [`--- a/${'abc'[n - 1]}.js`, `+++ b/${'abc'[n - 1]}.js`, '@@ -1,1 +1,1 @@', "-import { total } from './util.js';", "+import { sum } from './util.js';", `@@ -62,1 +62,1 @@`, `-export const r${n} = total([${n}, 1]);`, `+export const r${n} = sum([${n}, 1]);`].join('\n'))
            .join('\n'),
        },
        { action: 'search', pattern: '\\btotal\\b' },
        { action: 'finish', summary: 'renamed' },
      ],
    ],
  },
  {
    name: 'a failing test fixed over two attempts',
    files: { 'math.js': MATH, 'test.js': TEST },
    prompt: 'node test.js fails: fix area in math.js.',
    verify: 'node test.js',
    old: [
      [
        { action: 'read_file', path: 'test.js' },
        { action: 'read_file', path: 'math.js' },
        { action: 'write_file', path: 'math.js', content: MATH.replace('return w + h;', 'return w * h + 1;') },
        { action: 'finish', summary: 'fixed' },
      ],
      [
        // Nothing of attempt 1 is known: read it all again, and run the test to see why.
        { action: 'read_file', path: 'test.js' },
        { action: 'read_file', path: 'math.js' },
        { action: 'write_file', path: 'math.js', content: MATH.replace('return w + h;', 'return w * h + 1;') },
        { action: 'shell', command: 'node test.js' },
        { action: 'write_file', path: 'math.js', content: MATH.replace('return w + h;', 'return w * h;') },
        { action: 'shell', command: 'node test.js' },
        { action: 'finish', summary: 'fixed' },
      ],
    ],
    new: [
      [
        { action: 'search', pattern: 'function area' },
        { action: 'view', path: 'math.js', start: 81, end: 83 },
        { action: 'edit', path: 'math.js', old: 'return w + h;', new: 'return w * h + 1;' },
        { action: 'finish', summary: 'fixed' },
      ],
      [
        // The memory gives attempt 1's outcome and its telling line ("expected ... got 7"): straight to the fix.
        { action: 'view', path: 'math.js', start: 81, end: 83 },
        { action: 'edit', path: 'math.js', old: 'return w + h;', new: 'return w * h;' },
        { action: 'shell', command: 'node test.js' },
        { action: 'finish', summary: 'fixed' },
      ],
    ],
  },
];

function envFor(name: string): NodeJS.ProcessEnv {
  const root = path.join(dir, name);
  for (const d of ['etc', 'state', 'run']) fs.mkdirSync(path.join(root, d), { recursive: true });
  return { ...process.env, SELFWARE_CONFIG_DIR: path.join(root, 'etc'), SELFWARE_STATE_DIR: path.join(root, 'state'), SELFWARE_RUNTIME_DIR: path.join(root, 'run') };
}

async function untilEnded(env: NodeJS.ProcessEnv, id: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = spawnSync(process.execPath, [AGENT, 'list', 'b', '--json'], { env });
    const t = (JSON.parse(r.stdout.toString()) as { tasks: Array<{ id: string; status: string }> }).tasks.find((x) => x.id === id);
    if (t && ['completed', 'failed'].includes(t.status)) return t.status;
    await sleep(200);
  }
  throw new Error(`task ${id} did not end`);
}

interface Figures {
  status: string;
  tokens: number;
  steps: number;
  attempts: number;
}

async function runOne(s: Scenario, which: 'old' | 'new', k: number): Promise<Figures> {
  const env = envFor(`${k}-${which}`);
  const ws = path.join(dir, `${k}-${which}-ws`);
  fs.mkdirSync(ws);
  for (const [f, text] of Object.entries(s.files)) fs.writeFileSync(path.join(ws, f), text);
  const git = (...a: string[]): void => void execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@b', ...a], { cwd: ws, stdio: 'ignore' });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-qm', 'start');
  // The scripted backend gives step k of attempt N the k-th entry of `t#N`.
  const script = path.join(dir, `${k}-${which}.yaml`);
  const attempts = s[which];
  fs.writeFileSync(script, stringify({ tasks: Object.fromEntries(attempts.map((a, i) => [`t#${i + 1}`, a])) }));
  // Old: no memory (it did not exist); new: the default budget.
  fs.writeFileSync(path.join(env.SELFWARE_CONFIG_DIR as string, 'b.yaml'), `workspace: ${ws}\nllm:\n  backend: scripted\n  script: ${script}\nagent:\n  memory_budget: ${which === 'old' ? 0 : 1024}\n`);
  const id = spawnSync(process.execPath, [AGENT, 'add', 'b', '--title', 't', '--verify', s.verify, '--max-attempts', String(attempts.length), s.prompt], { env }).stdout.toString().trim();
  const child = spawn(process.execPath, [AGENT, 'run', 'b', '-q'], { env, stdio: 'ignore' });
  try {
    const status = await untilEnded(env, id, 120_000);
    const snap = await TaskLog.forRun(runPaths('b', env)).snapshot();
    try {
      const tokens = Number(snap.db.exec('SELECT coalesce(sum(tokens_in), 0) FROM llm_calls WHERE ok = 1')[0]?.values[0]?.[0] ?? 0);
      const steps = Number(snap.db.exec('SELECT count(*) FROM task_steps')[0]?.values[0]?.[0] ?? 0);
      const att = Number(snap.db.exec("SELECT count(*) FROM task_attempts WHERE outcome IS NOT NULL")[0]?.values[0]?.[0] ?? 0);
      return { status, tokens, steps, attempts: att };
    } finally {
      snap.db.close();
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

try {
  let sumOld = 0;
  let sumNew = 0;
  let stepsOld = 0;
  let stepsNew = 0;
  console.log('scenario                                                  tools  status     attempts  steps  prompt tokens');
  for (const [k, s] of scenarios.entries()) {
    for (const which of ['old', 'new'] as const) {
      const f = await runOne(s, which, k);
      console.log(`${s.name.padEnd(58)}${which.padEnd(7)}${f.status.padEnd(11)}${String(f.attempts).padEnd(10)}${String(f.steps).padEnd(7)}${f.tokens}`);
      if (f.status !== 'completed') throw new Error(`${s.name} (${which}): the task ${f.status}; the script no longer mirrors the work`);
      if (which === 'old') {
        sumOld += f.tokens;
        stepsOld += f.steps;
      } else {
        sumNew += f.tokens;
        stepsNew += f.steps;
      }
    }
  }
  console.log(`prompt tokens per task, new/old: ${(sumNew / sumOld).toFixed(2)} (${Math.round(sumNew / scenarios.length)} against ${Math.round(sumOld / scenarios.length)}); steps, new/old: ${(stepsNew / stepsOld).toFixed(2)} (${stepsNew} against ${stepsOld})`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
