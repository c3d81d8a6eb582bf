// One sample of the machine: each GPU through nvidia-smi (missing, failing
// or hanging means no GPU for that sample, not an error), RAM, swap and CPU
// load through systeminformation, and the free space of every filesystem that
// holds a run's state (statfs on the run's directory).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { RUN_NAME_RE } from '../run.js';

export interface GpuReading {
  index: number;
  name: string;
  vram_used_mb: number;
  vram_total_mb: number;
  util_pct: number | null;
  temp_c: number | null;
  power_w: number | null;
}

export interface DiskReading {
  /** The runs whose state is on this filesystem. */
  runs: string[];
  path: string;
  free_pct: number;
  free_bytes: number;
  total_bytes: number;
}

export interface Sample {
  time: number;
  gpus: GpuReading[];
  /** Why there is no GPU reading, when there is none. */
  gpu_note: string | null;
  ram_used_mb: number;
  ram_total_mb: number;
  swap_used_mb: number;
  swap_total_mb: number;
  cpu_load_pct: number;
  disks: DiskReading[];
}

const FIELDS = ['index', 'name', 'memory.used', 'memory.total', 'utilization.gpu', 'temperature.gpu', 'power.draw'];

const num = (s: string | undefined): number | null => {
  if (s === undefined) return null;
  const v = Number(s.trim());
  return s.trim() === '' || Number.isNaN(v) ? null : v;
};

/** Parse nvidia-smi's csv,noheader,nounits answer for FIELDS; "[N/A]" and junk become null. */
export function parseNvidiaSmi(text: string): GpuReading[] {
  const out: GpuReading[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.split(',').map((x) => x.trim());
    const used = num(f[2]);
    const total = num(f[3]);
    if (used === null || total === null || total <= 0) continue;
    out.push({ index: num(f[0]) ?? out.length, name: f[1] ?? 'GPU', vram_used_mb: used, vram_total_mb: total, util_pct: num(f[4]), temp_c: num(f[5]), power_w: num(f[6]) });
  }
  return out;
}

export function readGpus(cmd: string, timeoutMs: number): Promise<{ gpus: GpuReading[]; note: string | null }> {
  return new Promise((resolve) => {
    execFile(cmd, [`--query-gpu=${FIELDS.join(',')}`, '--format=csv,noheader,nounits'], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number | null; signal?: string | null };
        const why =
          e.code === 'ENOENT'
            ? `${cmd} not found`
            : e.killed
              ? `${cmd} did not answer within ${timeoutMs} ms`
              : typeof e.code === 'number'
                ? `${cmd} failed (exit ${e.code})`
                : e.signal
                  ? `${cmd} was killed by ${e.signal}`
                  : `${cmd} failed: ${e.message.split('\n')[0]}`;
        resolve({ gpus: [], note: why });
        return;
      }
      const gpus = parseNvidiaSmi(stdout);
      resolve({ gpus, note: gpus.length ? null : `${cmd} reported no GPU` });
    });
  });
}

/** Runs (their directories) under the state root: those with a task log. */
export function listRuns(stateRoot: string): Array<{ run: string; dir: string }> {
  let names: string[] = [];
  try {
    names = fs.readdirSync(stateRoot);
  } catch {
    return [];
  }
  return names
    // Only what could be a run: a stray directory ('x y', '.old') is not one, whatever it holds.
    .filter((n) => RUN_NAME_RE.test(n) && fs.existsSync(path.join(stateRoot, n, 'tasklog.journal')))
    .sort()
    .map((n) => ({ run: n, dir: path.join(stateRoot, n) }));
}

/** Free space of each filesystem holding a run (one reading per filesystem). */
export function readDisks(runs: Array<{ run: string; dir: string }>, stateRoot: string): DiskReading[] {
  const byDev = new Map<string, DiskReading>();
  const targets = runs.length ? runs : [{ run: '', dir: stateRoot }];
  for (const r of targets) {
    try {
      const dev = String(fs.statSync(r.dir).dev);
      const s = fs.statfsSync(r.dir);
      const total = s.blocks * s.bsize;
      const free = s.bavail * s.bsize;
      const reading = byDev.get(dev) ?? { runs: [], path: r.dir, free_pct: total > 0 ? (free / total) * 100 : 100, free_bytes: free, total_bytes: total };
      if (r.run) reading.runs.push(r.run);
      byDev.set(dev, reading);
    } catch {
      /* a run removed meanwhile */
    }
  }
  return [...byDev.values()];
}

type Si = typeof import('systeminformation');
let si: Si | null = null;

export async function sample(opts: { nvidiaSmi: string; nvidiaSmiTimeout: number; stateRoot: string }): Promise<Sample> {
  si ??= (await import('systeminformation')) as unknown as Si;
  const sys = (si as unknown as { default?: Si }).default ?? si;
  const [g, mem, load] = await Promise.all([readGpus(opts.nvidiaSmi, opts.nvidiaSmiTimeout), sys.mem(), sys.currentLoad()]);
  const mb = (b: number): number => Math.round(b / 1048576);
  return {
    time: Date.now(),
    gpus: g.gpus,
    gpu_note: g.note,
    ram_used_mb: mb(mem.total - mem.available),
    ram_total_mb: mb(mem.total),
    swap_used_mb: mb(mem.swapused),
    swap_total_mb: mb(mem.swaptotal),
    cpu_load_pct: Math.round(load.currentLoad * 10) / 10,
    disks: readDisks(listRuns(opts.stateRoot), opts.stateRoot),
  };
}
