// The floor for bench/governor.ts: the same sampling the governor does
// (nvidia-smi, systeminformation's mem() and currentLoad(), statfs of each
// run's directory) every interval, and nothing else: no decision, no file,
// no task log.
//   node dist/bench/governor-minimal.js STATE_ROOT INTERVAL_MS

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import si from 'systeminformation';

const [root = '.', interval = '5000'] = process.argv.slice(2);
const fields = 'index,name,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw';
let last = '';
async function tick(): Promise<void> {
  const gpu = new Promise<string>((resolve) => execFile('nvidia-smi', [`--query-gpu=${fields}`, '--format=csv,noheader,nounits'], { timeout: 3000 }, (_e, out) => resolve(String(out))));
  const [g, mem, load] = await Promise.all([gpu, si.mem(), si.currentLoad()]);
  const free = fs.readdirSync(root).map((n) => fs.statfsSync(path.join(root, n)).bavail);
  last = `${g.length} ${mem.available} ${load.currentLoad} ${free.join(',')}`;
}
process.on('SIGTERM', () => {
  process.stdout.write(`${last}\n`);
  process.exit(0);
});
await tick();
setInterval(() => void tick(), Number(interval));
