// The floor for bench/governor.ts: the same sampling the governor does
// (nvidia-smi, /proc/stat and /proc/meminfo, statfs of each run's directory)
// every interval, and nothing else: no runs' own CPU (the bench's runs have
// no agent), no decision, no file, no task log.
//   node dist/bench/governor-minimal.js STATE_ROOT INTERVAL_MS

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const [root = '.', interval = '5000'] = process.argv.slice(2);
const fields = 'index,name,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw';
let last = '';
let prev: number[] = [];
async function tick(): Promise<void> {
  const gpu = new Promise<string>((resolve) => execFile('nvidia-smi', [`--query-gpu=${fields}`, '--format=csv,noheader,nounits'], { timeout: 3000 }, (_e, out) => resolve(String(out))));
  const cpu = (/^cpu\s+(.*)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').split(' ').slice(0, 8).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  const busy = total - (cpu[3] ?? 0) - (cpu[4] ?? 0);
  const load = prev.length ? ((busy - (prev[1] ?? 0)) / (total - (prev[0] ?? 0))) * 100 : 0;
  prev = [total, busy];
  const available = /^MemAvailable:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1];
  const g = await gpu;
  const free = fs.readdirSync(root).map((n) => fs.statfsSync(path.join(root, n)).bavail);
  last = `${g.length} ${available} ${load} ${free.join(',')}`;
}
process.on('SIGTERM', () => {
  process.stdout.write(`${last}\n`);
  process.exit(0);
});
await tick();
setInterval(() => void tick(), Number(interval));
