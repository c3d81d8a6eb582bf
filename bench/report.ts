// sw-report on a seven-day task log (2,000 tasks: 100,000 task events; and
// 120,000 resource samples; compacted into the database as checkpoints leave
// it): the median time to build the report in process, against the median
// time to read the same files (the floor: any report must read them), and
// the whole command's wall time against `node -e 0`.
//   node dist/bench/report.js [rounds]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { collect } from '../lib/report/collect.js';
import { RUN_SCHEMA, type RunConfig } from '../lib/config/index.js';
import { defaultsOf } from '../lib/config/spec.js';
import { runPaths } from '../lib/run.js';
import { renderHtml } from '../lib/report/html.js';
import { renderText } from '../lib/report/text.js';
import { T0, T1, writeWeekLog } from '../test/fixtures/weeklog.js';
import { median } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const rounds = Number(process.argv[2] ?? 7);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-report-'));
const env = { ...process.env, SELFWARE_STATE_DIR: path.join(dir, 'state'), SELFWARE_CONFIG_DIR: path.join(dir, 'etc'), SELFWARE_RUNTIME_DIR: path.join(dir, 'run') };

try {
  const g0 = performance.now();
  const facts = await writeWeekLog(env.SELFWARE_STATE_DIR, 'week');
  const genMs = performance.now() - g0;
  const paths = runPaths('week', env);
  const task = facts.attempts.length * 43;
  const bytes = fs.statSync(paths.tasklogDb).size + fs.statSync(paths.tasklogJournal).size;
  const config = defaultsOf(RUN_SCHEMA) as RunConfig;
  const read: number[] = [];
  const build: number[] = [];
  const render: number[] = [];
  const cmd: number[] = [];
  const bare: number[] = [];
  const args = [path.join(ROOT, 'dist/bin/sw-report.cjs'), 'week', '--since', new Date(T0).toISOString(), '--until', new Date(T1).toISOString(), '--json'];
  for (let i = 0; i < rounds; i++) {
    let t = performance.now();
    fs.readFileSync(paths.tasklogDb);
    fs.readFileSync(paths.tasklogJournal);
    read.push(performance.now() - t);
    t = performance.now();
    const r = await collect(paths, config, { since: T0, until: T1 }, { now: T1, systemd: false });
    build.push(performance.now() - t);
    t = performance.now();
    renderText([r]);
    renderHtml([r]);
    render.push(performance.now() - t);
    t = performance.now();
    const c = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    if (c.status !== 0) throw new Error(`sw-report: ${c.stderr}`);
    cmd.push(performance.now() - t);
    t = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    bare.push(performance.now() - t);
  }
  console.log(`report bench: ${facts.events} events (${task} task events, ${facts.samples.length} resource samples), ${(bytes / 1048576).toFixed(1)} MiB on disk, generated in ${(genMs / 1000).toFixed(1)} s; ${rounds} rounds, medians:`);
  console.log(`  read the task log files     ${median(read).toFixed(1)} ms`);
  console.log(`  build the report (collect)  ${median(build).toFixed(1)} ms   ratio to reading: ${(median(build) / median(read)).toFixed(1)}`);
  console.log(`  render text + HTML          ${median(render).toFixed(1)} ms`);
  console.log(`  sw-report --json (process)  ${median(cmd).toFixed(1)} ms   node -e 0: ${median(bare).toFixed(1)} ms   ratio: ${(median(cmd) / median(bare)).toFixed(1)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
