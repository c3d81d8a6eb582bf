// The governor's own cost: CPU (% of one core) and RSS of `sw-gpu-governor
// run` at its 5 s interval over 10 minutes, against a minimal script doing
// the same sampling and nothing else (bench/governor-minimal.ts), both
// running side by side on the same machine, the same two runs and the same
// nvidia-smi (a small shell stand-in, since this machine has no GPU). CPU is
// the process's own utime+stime from /proc; the nvidia-smi children are
// counted separately (cutime+cstime) as they cost both the same.
//   node dist/bench/governor.js [seconds] [interval_ms]

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const seconds = Number(process.argv[2] ?? 600);
const interval = Number(process.argv[3] ?? 5000);
const warmup = Math.min(30, seconds / 10);
const TICK = 100; // getconf CLK_TCK on Linux
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-gov-'));
const env: NodeJS.ProcessEnv = {
  ...process.env,
  SELFWARE_STATE_DIR: path.join(dir, 'state'),
  SELFWARE_CONFIG_DIR: path.join(dir, 'etc'),
  SELFWARE_RUNTIME_DIR: path.join(dir, 'run'),
  PATH: `${path.join(dir, 'bin')}:${process.env.PATH}`,
  NO_COLOR: '1',
};
for (const d of ['state', 'etc', 'run', 'bin']) fs.mkdirSync(path.join(dir, d));
fs.writeFileSync(path.join(dir, 'bin', 'nvidia-smi'), '#!/bin/sh\necho "0, Fake RTX 4090, 9830, 24576, 87, 71, 301.5"\n', { mode: 0o755 });
fs.writeFileSync(path.join(dir, 'etc', 'governor.yaml'), `interval: ${interval}ms\n`);
for (const run of ['run1', 'run2']) {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'dist/bin/sw-agent.cjs'), 'init', run, '-q'], { env });
  if (r.status !== 0) throw new Error(`sw-agent init ${run}: ${r.stderr}`);
}

function stat(pid: number): { self: number; children: number } {
  // Fields after the ")" of comm: state is 3; utime 14, stime 15, cutime 16, cstime 17.
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const n = (i: number): number => Number(f[i - 3]);
  return { self: n(14) + n(15), children: n(16) + n(17) };
}
function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Proc {
  name: string;
  child: ChildProcess;
  start?: { self: number; children: number; t: number };
  rss: number[];
}
const procs: Proc[] = [
  { name: 'sw-gpu-governor run', child: spawn(process.execPath, [path.join(ROOT, 'dist/bin/sw-gpu-governor.cjs'), 'run'], { env, stdio: ['ignore', 'ignore', 'inherit'] }), rss: [] },
  { name: 'minimal sampler', child: spawn(process.execPath, [path.join(ROOT, 'dist/bench/governor-minimal.js'), env.SELFWARE_STATE_DIR as string, String(interval)], { env, stdio: ['ignore', 'ignore', 'inherit'] }), rss: [] },
];

try {
  await sleep(warmup * 1000);
  for (const p of procs) p.start = { ...stat(p.child.pid as number), t: performance.now() };
  const end = performance.now() + (seconds - warmup) * 1000;
  while (performance.now() < end) {
    for (const p of procs) p.rss.push(rssKb(p.child.pid as number));
    await sleep(interval);
  }
  const res = procs.map((p) => {
    const now = stat(p.child.pid as number);
    const s = (performance.now() - (p.start as { t: number }).t) / 1000;
    const cpu = ((now.self - (p.start?.self ?? 0)) / TICK / s) * 100;
    const kids = ((now.children - (p.start?.children ?? 0)) / TICK / s) * 100;
    const mean = p.rss.reduce((a, b) => a + b, 0) / p.rss.length / 1024;
    const max = Math.max(...p.rss) / 1024;
    return { name: p.name, cpu, kids, mean, max, seconds: s };
  });
  const decision = JSON.parse(fs.readFileSync(path.join(dir, 'run', 'governor.json'), 'utf8')) as { tier: string };
  console.log(`governor bench: ${seconds} s at a ${interval} ms interval (first ${warmup} s not measured); the governor's tier at the end: ${decision.tier}`);
  for (const r of res) console.log(`  ${r.name.padEnd(20)} CPU ${r.cpu.toFixed(3)} % of one core (nvidia-smi children ${r.kids.toFixed(3)} %), RSS mean ${r.mean.toFixed(1)} MiB, max ${r.max.toFixed(1)} MiB`);
  const [g, m] = res as [(typeof res)[0], (typeof res)[0]];
  console.log(`  ratio governor/minimal: CPU ${(g.cpu / m.cpu).toFixed(2)}, RSS ${(g.mean / m.mean).toFixed(2)}`);
} finally {
  for (const p of procs) p.child.kill('SIGTERM');
  await sleep(500);
  fs.rmSync(dir, { recursive: true, force: true });
}
