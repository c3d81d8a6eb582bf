// The soak's faults: each kind injected the way the world would do it to a
// run under systemd, and the sign, afterwards, that selfware saw it and
// answered it as designed.

import fs from 'node:fs';
import path from 'node:path';

export const FAULT_KINDS = [
  'kill-agent',
  'kill-agent-mid-step',
  'kill-agent-mid-checkpoint',
  'stop-agent',
  'memory-guard',
  'kill-checkpoint-timer',
  'kill-recover',
  'disk-full',
  'reboot-clean',
  'reboot-abrupt',
  'flip-checkpoint-store',
  'flip-tasklog',
  'llm-down',
  'vram-pressure',
  'restart-storm',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultRecord {
  n: number;
  kind: FaultKind;
  /** Milliseconds from the soak's start. */
  at_ms: number;
  detail: string;
  /** The sign it was seen, and when (ms after injection); null: not seen. */
  detected: string | null;
  detect_ms: number | null;
  /** Back to READY (a new agent, the unit active), ms after injection; null for faults that do not stop the agent. */
  ready_ms: number | null;
  /** Steps executed again after it (a kill mid-step), and tasks whose attempt began again. */
  steps_redone: number;
  ok: boolean;
  problem: string | null;
}

/**
 * The pid (as this host sees it) of the oldest process whose command line has
 * every word, inside the container whose init is initPid (its PID namespace).
 * The oldest: a child the process has just forked still has its command line
 * until it execs (a kill meant for the agent hit its git once).
 */
export function findProc(initPid: number, words: string[], not: string[] = [], contains = ''): number | null {
  let ns: string;
  try {
    ns = fs.readlinkSync(`/proc/${initPid}/ns/pid`);
  } catch {
    return null;
  }
  let best: { pid: number; start: number } | null = null;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const args = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (!words.every((w) => args.includes(w) || args.some((a) => a.endsWith(w)))) continue;
      if (not.some((w) => args.includes(w))) continue;
      if (contains && !args.some((a) => a.includes(contains))) continue;
      if (fs.readlinkSync(`/proc/${d}/ns/pid`) !== ns) continue;
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      if (!best || start < best.start) best = { pid: Number(d), start };
    } catch {
      /* gone, or not ours to read */
    }
  }
  return best?.pid ?? null;
}

/** Resident memory of a process, bytes (0 if gone). */
export function rssOf(pid: number | null): number {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function signal(pid: number | null, sig: NodeJS.Signals): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Flip one byte of a file at offset (xor 0xff); returns what was there. */
export function flipByte(file: string, offset: number): number {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    const was = b[0] as number;
    b[0] = was ^ 0xff;
    fs.writeSync(fd, b, 0, 1, offset);
    fs.fsyncSync(fd);
    return was;
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes used by a file, or under a directory (files' real sizes, as du counts them); 0 if gone. */
export function duBytes(dir: string): number {
  let n = 0;
  try {
    const st = fs.lstatSync(dir);
    if (!st.isDirectory()) return st.blocks * 512;
  } catch {
    return 0;
  }
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      try {
        if (e.isDirectory()) walk(p);
        else n += fs.lstatSync(p).blocks * 512;
      } catch {
        /* gone meanwhile */
      }
    }
  };
  walk(dir);
  return n;
}

/** How long a process has run, ms (null if gone). */
export function procAgeMs(pid: number | null): number | null {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const uptime = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    return Math.max(0, (uptime - startTicks / 100) * 1000);
  } catch {
    return null;
  }
}

/** The faults that end the agent (each is a crash that counts towards an escalation). */
export const INTERRUPTING: ReadonlySet<FaultKind> = new Set<FaultKind>(['kill-agent', 'kill-agent-mid-step', 'kill-agent-mid-checkpoint', 'stop-agent', 'kill-recover', 'reboot-abrupt', 'flip-checkpoint-store', 'flip-tasklog', 'restart-storm']);

/** The parent pid of a process (null if gone). */
export function ppidOf(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Is any child of parent a process named comm (as /proc/PID/comm says)? */
export function hasChild(parent: number | null, comm: string, cmdline?: (text: string) => boolean): boolean {
  if (!parent) return false;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== comm || ppidOf(Number(d)) !== parent) continue;
      if (!cmdline || cmdline(fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' '))) return true;
    } catch {
      /* gone */
    }
  }
  return false;
}
