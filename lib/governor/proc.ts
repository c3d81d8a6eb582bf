// What the kernel says about the machine and its processes, read from files:
// <proc>/stat, <proc>/meminfo, <proc>/<pid>/{stat,cgroup} and a cgroup v2
// unit's cpu.stat. Both roots can be moved (SELFWARE_PROC, SELFWARE_CGROUP),
// so the governor can be given a machine of a test's own making.

import fs from 'node:fs';
import path from 'node:path';
import { errnoText, ioError } from '../exit.js';

/** Clock ticks a second in every /proc file: USER_HZ is 100 on every architecture Node runs on. */
export const TICKS_PER_S = 100;

export interface HostRoots {
  proc: string;
  cgroup: string;
}

export function hostRoots(env: NodeJS.ProcessEnv = process.env): HostRoots {
  const abs = (p: string | undefined, dflt: string): string => path.resolve(p && p !== '' ? p : dflt);
  return { proc: abs(env.SELFWARE_PROC, '/proc'), cgroup: abs(env.SELFWARE_CGROUP, '/sys/fs/cgroup') };
}

function readRequired(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw ioError(`cannot read '${file}': ${errnoText(e)}`, e);
  }
}

/** The machine's CPU time in clock ticks, all cores added: in all, and busy (not idle, not waiting for I/O). */
export function readCpuTimes(proc: string): { total: number; busy: number } {
  const file = path.join(proc, 'stat');
  const line = readRequired(file)
    .split('\n')
    .find((l) => /^cpu\s/.test(l));
  // user nice system idle iowait irq softirq steal (guest and guest_nice are already in user and nice).
  const f = (line ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 5 || f.some((x) => !Number.isFinite(x))) throw ioError(`cannot read '${file}': no 'cpu' line with the times of all cores`);
  const total = f.reduce((a, b) => a + b, 0);
  return { total, busy: total - (f[3] ?? 0) - (f[4] ?? 0) };
}

/** Time since boot in clock ticks (to tell a process started since a reading), or null. */
export function readUptimeTicks(proc: string): number | null {
  try {
    const v = Number(fs.readFileSync(path.join(proc, 'uptime'), 'utf8').split(' ')[0]);
    return Number.isFinite(v) ? Math.floor(v * TICKS_PER_S) : null;
  } catch {
    return null;
  }
}

export interface MemInfo {
  ram_total_mb: number;
  ram_used_mb: number;
  swap_total_mb: number;
  swap_used_mb: number;
}

/** RAM and swap from <proc>/meminfo; used RAM is what the kernel does not count available (caches that can be dropped are free). */
export function readMemInfo(proc: string): MemInfo {
  const file = path.join(proc, 'meminfo');
  const kb = new Map<string, number>();
  for (const l of readRequired(file).split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(l);
    if (m) kb.set(m[1] as string, Number(m[2]));
  }
  const total = kb.get('MemTotal');
  if (total === undefined) throw ioError(`cannot read '${file}': no MemTotal line`);
  // Kernels before 3.14 have no MemAvailable: free and the page cache then.
  const available = kb.get('MemAvailable') ?? (kb.get('MemFree') ?? 0) + (kb.get('Buffers') ?? 0) + (kb.get('Cached') ?? 0);
  const mb = (k: number): number => Math.round(k / 1024);
  const swapTotal = kb.get('SwapTotal') ?? 0;
  return { ram_total_mb: mb(total), ram_used_mb: mb(Math.max(0, total - available)), swap_total_mb: mb(swapTotal), swap_used_mb: mb(Math.max(0, swapTotal - (kb.get('SwapFree') ?? swapTotal))) };
}

export interface ProcStat {
  ppid: number;
  /** When it started, in clock ticks since boot: with the pid, who it is (pids are reused). */
  start: number;
  /** utime + stime + cutime + cstime: its own CPU and that of the children it has reaped. */
  ticks: number;
}

/** One <proc>/<pid>/stat, or null when it is gone or unreadable. */
export function readProcStat(proc: string, pid: number): ProcStat | null {
  let s: string;
  try {
    s = fs.readFileSync(path.join(proc, String(pid), 'stat'), 'utf8');
  } catch {
    return null;
  }
  // The command name is in parentheses and may hold spaces and parentheses itself.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // Fields after it, from field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17, starttime 22.
  const n = (i: number): number => Number(f[i - 3]);
  const ticks = n(14) + n(15) + n(16) + n(17);
  if (!Number.isFinite(ticks) || !Number.isFinite(n(4)) || !Number.isFinite(n(22))) return null;
  return { ppid: n(4), start: n(22), ticks };
}

/** Every process there is now. */
export function readProcs(proc: string): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  let names: string[] = [];
  try {
    names = fs.readdirSync(proc);
  } catch (e) {
    throw ioError(`cannot read '${proc}': ${errnoText(e)}`, e);
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const s = readProcStat(proc, Number(n));
    if (s) out.set(Number(n), s);
  }
  return out;
}

/** A process's cgroup v2 path ("/system.slice/x.service"), or null (gone, or cgroup v1 only). */
export function readCgroupPath(proc: string, pid: number): string | null {
  try {
    const line = fs
      .readFileSync(path.join(proc, String(pid), 'cgroup'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'));
    return line ? line.slice(3) : null;
  } catch {
    return null;
  }
}

/**
 * The CPU time a cgroup's processes have used, in microseconds (all of them,
 * those gone too), or null. A hybrid layout has the v2 tree under unified/.
 */
export function readCgroupUsec(cgroupRoot: string, cgroupPath: string): number | null {
  for (const root of [cgroupRoot, path.join(cgroupRoot, 'unified')]) {
    try {
      const m = /^usage_usec\s+(\d+)/m.exec(fs.readFileSync(path.join(root, cgroupPath, 'cpu.stat'), 'utf8'));
      if (m) return Number(m[1]);
    } catch {
      /* not in this tree */
    }
  }
  return null;
}

/** The unit name systemd gives a run's service: the instance as typed, or systemd-escaped. */
export function runUnitNames(run: string): string[] {
  const escaped = run.replace(/^\.|[^A-Za-z0-9:_.]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return [...new Set([`selfware@${run}.service`, `selfware@${escaped}.service`])];
}
