// One sample of the machine: each GPU through nvidia-smi (missing, failing
// or hanging means no GPU for that sample, not an error), RAM and swap from
// <proc>/meminfo, the CPU load split into the runs' own and the rest (cpu.ts),
// and the free space of every filesystem that holds a run's state (statfs on
// the run's directory).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { sleep } from '../sleep.js';
import { CpuMeter, type RunCpu } from './cpu.js';
import { hostRoots, readMemInfo, type HostRoots } from './proc.js';
import { listRuns } from './runs.js';

export { listRuns } from './runs.js';

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
  /** The whole machine's CPU load, % of all cores, since the previous sample (null: not measured). */
  cpu_load_pct: number | null;
  /** The runs' own share of it. */
  cpu_own_pct: number | null;
  /** The rest, which the governor judges. */
  cpu_others_pct: number | null;
  cpu_runs: RunCpu[];
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

/** How long the first CPU reading waits for its second: the load over the previous half second. */
export const FIRST_CPU_WAIT_MS = 500;

export interface SampleOptions {
  nvidiaSmi: string;
  nvidiaSmiTimeout: number;
  stateRoot: string;
  host?: HostRoots;
}

/** Samples one after another: the CPU load of each is that since the previous one. */
export class Sampler {
  private readonly host: HostRoots;
  private readonly cpu: CpuMeter;
  constructor(private readonly opts: SampleOptions) {
    this.host = opts.host ?? hostRoots();
    this.cpu = new CpuMeter(this.host, opts.stateRoot);
  }

  async sample(signal?: AbortSignal): Promise<Sample> {
    const gpus = readGpus(this.opts.nvidiaSmi, this.opts.nvidiaSmiTimeout);
    if (!this.cpu.primed) {
      this.cpu.read();
      await sleep(FIRST_CPU_WAIT_MS, signal);
    }
    const cpu = this.cpu.read();
    const mem = readMemInfo(this.host.proc);
    const g = await gpus;
    return {
      time: Date.now(),
      gpus: g.gpus,
      gpu_note: g.note,
      ...mem,
      cpu_load_pct: cpu.all_pct,
      cpu_own_pct: cpu.own_pct,
      cpu_others_pct: cpu.others_pct,
      cpu_runs: cpu.runs,
      disks: readDisks(listRuns(this.opts.stateRoot), this.opts.stateRoot),
    };
  }
}

/** One sample alone (`once`): its CPU load is that of the next half second. */
export function sample(opts: SampleOptions): Promise<Sample> {
  return new Sampler(opts).sample();
}
