// Locks that a SIGKILLed holder never leaves stuck: flock(2) on a lock file,
// which the kernel drops when the holder dies. Lock files are never removed
// (removing one while held would let a second process lock a new inode).

import fs from 'node:fs';
import path from 'node:path';
import fsExt from 'fs-ext';
import { tempFailError } from './exit.js';
import { mkdirDurable } from './fsutil.js';
import { sleep } from './sleep.js';

export interface Lock {
  readonly file: string;
  readonly fd: number;
  release(): void;
}

export interface LockOptions {
  shared?: boolean;
  /** How long to keep trying; 0 tries once. Default: SELFWARE_LOCK_TIMEOUT seconds, else 10 s. */
  waitMs?: number;
  /** What is locked, for the error message: "run 'run1'". */
  what?: string;
}

export function defaultLockWaitMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SELFWARE_LOCK_TIMEOUT;
  if (v !== undefined && v !== '' && Number.isFinite(Number(v)) && Number(v) >= 0) return Math.round(Number(v) * 1000);
  return 10_000;
}

/**
 * The fds of the locks this process holds. Programs it runs through
 * lib/proc.ts (git, for the changes it makes) inherit them, so a holder SIGKILLed while git works for it keeps the
 * lock until that git has exited too: the next holder never races an
 * orphaned git over the same repository.
 */
const held = new Set<number>();

export function heldLockFds(): number[] {
  return [...held];
}

/** Try once, without waiting; null if someone else holds it. */
export function tryLock(file: string, shared = false): Lock | null {
  mkdirDurable(path.dirname(file));
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  try {
    fsExt.flockSync(fd, shared ? 'shnb' : 'exnb');
  } catch (e) {
    fs.closeSync(fd);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return null;
    throw e;
  }
  if (!shared) {
    // Who holds it, for other processes' error messages; advisory only.
    const info = `${process.pid} ${path.basename(process.argv[1] ?? 'node')} ${new Date().toISOString()}\n`;
    try {
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, info, 0);
    } catch {
      /* the lock holds even if the note cannot be written (disk full) */
    }
  }
  let released = false;
  held.add(fd);
  return {
    file,
    fd,
    release() {
      if (released) return;
      released = true;
      held.delete(fd);
      try {
        fsExt.flockSync(fd, 'un');
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

/** The holder noted in a lock file: "pid program since". */
export function lockHolder(file: string): { pid: number; program: string } | null {
  try {
    const [pid, program] = fs.readFileSync(file, 'utf8').trim().split(' ');
    if (!pid || !/^\d+$/.test(pid)) return null;
    return { pid: Number(pid), program: program ?? '?' };
  } catch {
    return null;
  }
}

/** Take the lock, waiting up to waitMs; a live holder past that gives exit 75. */
export async function acquireLock(file: string, opts: LockOptions = {}): Promise<Lock> {
  const wait = opts.waitMs ?? defaultLockWaitMs();
  const deadline = Date.now() + wait;
  let delay = 10;
  for (;;) {
    const l = tryLock(file, opts.shared);
    if (l) return l;
    if (Date.now() >= deadline) break;
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
    delay = Math.min(delay * 2, 200);
  }
  const h = lockHolder(file);
  const who = h ? ` by ${h.program} (pid ${h.pid})` : '';
  throw tempFailError(`${opts.what ?? `'${file}'`} is locked${who}; try again later`);
}
