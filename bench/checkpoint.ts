// Checkpoint cost on a 50 MB state (500 files of 100 KiB): a delta checkpoint
// (one file changed) and a full one (every file new), each against the floor
// of a bare `node -e 0` plus a durable `git add -A && git commit` of the same
// change in a plain repository on the same disk. Prints medians and ratios.
//   node dist/bench/checkpoint.js [rounds]

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CMD = path.join(ROOT, 'dist/bin/sw-checkpoint.cjs');
const INIT = path.join(ROOT, 'dist/bin/sw-agent.cjs');
const rounds = Number(process.argv[2] ?? 15);
const FILES = 500;
const SIZE = 100 * 1024;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cp-'));
const env = { ...process.env, SELFWARE_STATE_DIR: path.join(dir, 'state'), SELFWARE_CONFIG_DIR: path.join(dir, 'etc'), SELFWARE_RUNTIME_DIR: path.join(dir, 'run') };
const plain = path.join(dir, 'plain');
const GIT = ['-c', 'core.fsync=all', '-c', 'core.fsyncMethod=fsync', '-c', 'user.name=b', '-c', 'user.email=b@x', '-c', 'gc.auto=0'];

function time(cmd: string, args: string[], cwd = dir): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return ms;
}
function fill(target: string): void {
  fs.mkdirSync(target, { recursive: true });
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(target, `f${String(i).padStart(3, '0')}.bin`), crypto.randomBytes(SIZE));
}
const floorOnce = (): number => time(process.execPath, ['-e', '0']) + time('sh', ['-c', `git ${GIT.join(' ')} add -A && git ${GIT.join(' ')} commit -q -m x`], plain);

try {
  // Full checkpoints: a fresh run and a fresh plain repo each round.
  const full: number[] = [];
  const fullFloor: number[] = [];
  for (let r = 0; r < Math.max(3, Math.floor(rounds / 3)); r++) {
    const run = `full${r}`;
    time(process.execPath, [INIT, 'init', run, '-q']);
    time(process.execPath, [CMD, 'create', run, '-q']);
    fill(path.join(dir, 'state', run, 'state', 'memory'));
    fs.rmSync(plain, { recursive: true, force: true });
    fs.mkdirSync(plain);
    time('git', ['init', '-q', plain]);
    fill(path.join(plain, 'memory'));
    full.push(time(process.execPath, [CMD, 'create', run, '-q']));
    fullFloor.push(floorOnce());
  }
  // Delta checkpoints on one run: change one file, checkpoint; same in the plain repo.
  const run = 'delta';
  time(process.execPath, [INIT, 'init', run, '-q']);
  time(process.execPath, [CMD, 'create', run, '-q']);
  fill(path.join(dir, 'state', run, 'state', 'memory'));
  time(process.execPath, [CMD, 'create', run, '-q']);
  const delta: number[] = [];
  const deltaFloor: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const k = String(r % FILES).padStart(3, '0');
    fs.writeFileSync(path.join(dir, 'state', run, 'state', 'memory', `f${k}.bin`), crypto.randomBytes(SIZE));
    delta.push(time(process.execPath, [CMD, 'create', run, '--kind', 'routine', '-q']));
    fs.writeFileSync(path.join(plain, 'memory', `f${k}.bin`), crypto.randomBytes(SIZE));
    deltaFloor.push(floorOnce());
  }
  const nodeOnly = median(Array.from({ length: 9 }, () => time(process.execPath, ['-e', '0'])));
  const f = (x: number): string => x.toFixed(1);
  console.log(`state: ${FILES} files x ${SIZE / 1024} KiB = ${(FILES * SIZE) / 1e6} MB; rounds: delta ${rounds}, full ${full.length}`);
  console.log(`node -e 0 alone:           median ${f(nodeOnly)} ms`);
  console.log(`delta checkpoint:          median ${f(median(delta))} ms   floor (node + git add/commit) ${f(median(deltaFloor))} ms   ratio ${(median(delta) / median(deltaFloor)).toFixed(2)}`);
  console.log(`full checkpoint:           median ${f(median(full))} ms   floor ${f(median(fullFloor))} ms   ratio ${(median(full) / median(fullFloor)).toFixed(2)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
