// What telling the truth costs a monitor: `sw-report --check` and `sw-agent
// status` on a run whose workspace holds 50 MB (500 files of 100 KiB), which
// stage state/ and the workspace in a scratch index to see what the newest
// checkpoint leaves unprotected. Against, in the same rounds: the same check
// for a window that does not end now (judged on the log alone, no staging),
// a routine checkpoint that finds nothing changed (the timer's every 5
// minutes, which stages the same), and `node -e 0`. Unchanged, and with one
// file changed. Prints medians and ratios.
//   node dist/bench/check.js [rounds]

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = (c: string): string => path.join(ROOT, 'dist/bin', `${c}.cjs`);
const rounds = Number(process.argv[2] ?? 11);
const FILES = 500;
const SIZE = 100 * 1024;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-check-'));
const env = { ...process.env, SELFWARE_STATE_DIR: path.join(dir, 'state'), SELFWARE_CONFIG_DIR: path.join(dir, 'etc'), SELFWARE_RUNTIME_DIR: path.join(dir, 'run'), NO_COLOR: '1' };

function time(args: string[], ok: number[] = [0]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!ok.includes(r.status ?? -1)) throw new Error(`${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return ms;
}

try {
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  // Disk thresholds no filesystem reaches: the bench measures time, not the host's disk.
  fs.writeFileSync(path.join(dir, 'etc', 'governor.yaml'), 'disk:\n  warning: 0.002\n  critical: 0.001\n');
  time([bin('sw-agent'), 'init', 'b', '-q']);
  const ws = path.join(dir, 'state', 'b', 'workspace');
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(ws, `f${String(i).padStart(3, '0')}.bin`), crypto.randomBytes(SIZE));
  time([bin('sw-checkpoint'), 'create', 'b', '-q']);
  const past = new Date(Date.now() - 3_600_000).toISOString();
  const cases: Record<string, number[]> = { node: [], check: [], checkPast: [], status: [], routine: [], checkChanged: [] };
  for (let r = 0; r < rounds; r++) {
    cases.node?.push(time(['-e', '0']));
    cases.check?.push(time([bin('sw-report'), 'b', '--check'], [0, 1, 2]));
    cases.checkPast?.push(time([bin('sw-report'), 'b', '--check', '--until', past], [0, 1, 2]));
    cases.status?.push(time([bin('sw-agent'), 'status', 'b']));
    cases.routine?.push(time([bin('sw-checkpoint'), 'create', 'b', '--kind', 'routine', '-q']));
  }
  // One file changed and left unprotected: the check hashes it (in the scratch store only).
  for (let r = 0; r < rounds; r++) {
    fs.writeFileSync(path.join(ws, `f${String(r).padStart(3, '0')}.bin`), crypto.randomBytes(SIZE));
    cases.checkChanged?.push(time([bin('sw-report'), 'b', '--check'], [0, 1, 2]));
  }
  const m = Object.fromEntries(Object.entries(cases).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const f = (x: number | undefined): string => (x ?? 0).toFixed(0);
  console.log(`workspace: ${FILES} files x ${SIZE / 1024} KiB = ${(FILES * SIZE) / 1e6} MB; ${rounds} rounds`);
  console.log(`node -e 0:                          ${f(m.node)} ms`);
  console.log(`--check, window ending now:         ${f(m.check)} ms   (stages state/ and the workspace)`);
  console.log(`--check, window ending an hour ago: ${f(m.checkPast)} ms   (the log alone)`);
  console.log(`--check, one file changed:          ${f(m.checkChanged)} ms`);
  console.log(`status:                             ${f(m.status)} ms`);
  console.log(`routine checkpoint, nothing new:    ${f(m.routine)} ms`);
  console.log(`ratio --check now / --check past: ${((m.check ?? 0) / (m.checkPast ?? 1)).toFixed(2)}; --check now / routine checkpoint: ${((m.check ?? 0) / (m.routine ?? 1)).toFixed(2)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
