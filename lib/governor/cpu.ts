// The machine's CPU load, split into the runs' own work and everything else.
// A run's own is its agent with the model's threads and every tool or build
// it starts: the agent's systemd unit's cgroup when it runs in one of its own
// (cpu.stat counts processes long gone too), else the agent's process tree.
// The governor judges only the rest ("others"): an agent must not be
// throttled for the load it makes itself.

import path from 'node:path';
import fs from 'node:fs';
import { agentProcessAt } from '../agent/state.js';
import { listRuns } from './runs.js';
import { TICKS_PER_S, readCgroupPath, readCgroupUsec, readCpuTimes, readProcs, readUptimeTicks, runUnitNames, type HostRoots, type ProcStat } from './proc.js';

export interface RunCpu {
  run: string;
  /** The agent's pid. */
  pid: number;
  /** How its own load is measured: its unit's cgroup, or its process tree. */
  by: 'cgroup' | 'processes';
  /** The cgroup measured (by cgroup), else null. */
  cgroup: string | null;
  /** Its load over the period, % of all cores (null on the first reading). */
  pct: number | null;
}

export interface CpuReading {
  /** The whole machine's load over the period, % of all cores. */
  all_pct: number | null;
  /** The runs' own share of it. */
  own_pct: number | null;
  /** The rest: what the governor judges. */
  others_pct: number | null;
  runs: RunCpu[];
}

const NONE: CpuReading = { all_pct: null, own_pct: null, others_pct: null, runs: [] };

interface Snapshot {
  total: number;
  busy: number;
  /** Clock ticks since boot when it was taken (null: unknown). */
  uptime: number | null;
  /** cgroup path -> the CPU its processes have used, in clock ticks. */
  cgroups: Map<string, number>;
  /** Every process, when some run is measured by its processes. */
  procs: Map<number, ProcStat> | null;
  /** run -> the pids counted as its own: its agent, what descends from it, and what did (a daemon a tool left behind). */
  own: Map<string, Set<number>>;
}

type Found = Omit<RunCpu, 'pct'>;

const round1 = (x: number): number => Math.round(x * 10) / 10;

/**
 * Readings of the CPU since the previous one. The first has nothing to
 * compare with, and gives no figures: `Sampler` then reads again after a
 * short wait.
 */
export class CpuMeter {
  private prev: Snapshot | null = null;
  private last: CpuReading = NONE;

  constructor(
    private readonly host: HostRoots,
    private readonly stateRoot: string,
  ) {}

  get primed(): boolean {
    return this.prev !== null;
  }

  read(): CpuReading {
    // Resolved once, so that one reading sees one view of a root that is
    // moved by swapping a symbolic link (as the tests' fake machine is),
    // and both roots from the same view: proc again after cgroup, until it
    // did not move in between (the real roots never do).
    let proc = realpath(this.host.proc);
    let cgroupRoot = realpath(this.host.cgroup);
    for (let i = 0; i < 10; i++) {
      const again = realpath(this.host.proc);
      if (again === proc) break;
      proc = again;
      cgroupRoot = realpath(this.host.cgroup);
    }
    const prev = this.prev;
    const uptime = readUptimeTicks(proc);
    const runs: Found[] = [];
    for (const r of listRuns(this.stateRoot)) {
      const a = agentProcessAt(path.join(r.dir, 'locks', 'agent.lock'), proc);
      if (!a) continue;
      const cg = readCgroupPath(proc, a.pid);
      const inUnit = cg !== null && runUnitNames(r.run).includes(path.posix.basename(cg));
      runs.push({ run: r.run, pid: a.pid, by: inUnit ? 'cgroup' : 'processes', cgroup: inUnit ? cg : null });
    }
    const cgroups = new Map<string, number>();
    for (const r of runs) {
      const usec = r.cgroup === null ? null : readCgroupUsec(cgroupRoot, r.cgroup);
      // No cpu.stat (the cpu controller is off there): its processes, then.
      if (usec === null || r.cgroup === null) Object.assign(r, { by: 'processes', cgroup: null });
      else cgroups.set(r.cgroup, (usec / 1e6) * TICKS_PER_S);
    }
    const procs = runs.some((r) => r.by === 'processes') ? readProcs(proc) : null;
    const { total, busy } = readCpuTimes(proc);
    const own = new Map<string, Set<number>>();
    const tree = procs ? treeTicks(runs, procs, prev, own) : new Map<string, number>();
    const now: Snapshot = { total, busy, uptime, cgroups, procs, own };
    const totalD = prev ? total - prev.total : 0;
    // No clock tick since the previous reading: keep it as the base, and
    // the figures it gave, rather than divide by nothing.
    if (prev && totalD <= 0) return this.last;
    this.prev = now;
    if (!prev) return (this.last = { ...NONE, runs: runs.map((r) => ({ ...r, pct: null })) });
    const counted = new Set<string>();
    const ticks = runs.map((r) => {
      if (r.by === 'processes') return tree.get(r.run) ?? 0;
      const cg = r.cgroup as string;
      // The same unit named by two runs (a stale lock) counts once.
      if (counted.has(cg)) return 0;
      counted.add(cg);
      const u = cgroups.get(cg) ?? 0;
      const before = prev.cgroups.get(cg);
      // Not measured before, or made again (the unit restarted): all it used is new.
      return before === undefined || u < before ? u : u - before;
    });
    const busyD = Math.max(0, Math.min(totalD, busy - prev.busy));
    const ownD = Math.min(busyD, ticks.reduce((a, t) => a + Math.max(0, t), 0));
    const pct = (t: number): number => round1(Math.min(100, Math.max(0, (t / totalD) * 100)));
    this.last = {
      all_pct: pct(busyD),
      own_pct: pct(ownD),
      others_pct: pct(busyD - ownD),
      runs: runs.map((r, i) => ({ ...r, pct: pct(ticks[i] ?? 0) })),
    };
    return this.last;
  }
}

function realpath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * Each run's ticks by its processes since the previous snapshot. A process's
 * time moves into its parent's cutime/cstime when it is reaped, so over a
 * tree that reaps its own the sum only grows: each process adds what it used
 * since (all of it if it started since), and one gone since is taken off
 * what it had used by then, once, when that time has moved into a parent
 * (or, through parents gone too, an ancestor) still in the tree; one reaped
 * outside the tree only stops adding. A process that leaves the tree (a
 * daemon that detached) stays the run's own while it lives.
 */
function treeTicks(runs: Found[], procs: Map<number, ProcStat>, prev: Snapshot | null, own: Map<string, Set<number>>): Map<string, number> {
  const out = new Map<string, number>();
  const children = new Map<number, number[]>();
  for (const [pid, p] of procs) {
    const c = children.get(p.ppid);
    if (c) c.push(pid);
    else children.set(p.ppid, [pid]);
  }
  const was = (pid: number): ProcStat | undefined => prev?.procs?.get(pid);
  const still = (pid: number): boolean => was(pid) !== undefined && procs.get(pid)?.start === was(pid)?.start;
  const claimed = new Set<number>();
  for (const r of runs) {
    if (r.by !== 'processes') continue;
    const before = prev?.own.get(r.run) ?? new Set<number>();
    const mine = new Set<number>();
    for (const stack = [r.pid, ...[...before].filter(still)]; stack.length; ) {
      const p = stack.pop() as number;
      if (mine.has(p) || claimed.has(p) || !procs.has(p)) continue;
      mine.add(p);
      claimed.add(p);
      stack.push(...(children.get(p) ?? []));
    }
    own.set(r.run, mine);
    if (!prev) continue;
    let ticks = 0;
    for (const p of mine) {
      const cur = procs.get(p) as ProcStat;
      if (still(p)) ticks += cur.ticks - (was(p)?.ticks ?? 0);
      // Started since the previous snapshot: all its time is new. One that
      // was there but not read then (no process was measured) starts its
      // count now.
      else if (prev.procs || (prev.uptime !== null && cur.start > prev.uptime)) ticks += cur.ticks;
    }
    for (const p of before) {
      const w = was(p);
      if (!w || still(p)) continue;
      let q = w.ppid;
      for (let hops = 0; hops < 64 && before.has(q) && !still(q); hops++) q = was(q)?.ppid ?? 0;
      if (mine.has(q) && still(q)) ticks -= w.ticks;
    }
    out.set(r.run, ticks);
  }
  return out;
}
