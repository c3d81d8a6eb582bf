// The exit-code table of DESIGN.md, in one place, and the error type that
// carries a code from deep in lib/ up to the one main() wrapper.

import fs from 'node:fs';

export const EXIT = {
  OK: 0,
  FAIL: 1, // failed, or a "no" answer (verify found a problem)
  USAGE: 64, // EX_USAGE
  DATAERR: 65, // EX_DATAERR: corrupt checkpoint, malformed task
  NOINPUT: 66, // EX_NOINPUT: no such run, checkpoint or task
  UNAVAILABLE: 69, // EX_UNAVAILABLE: LLM endpoint, sendmail
  IOERR: 74, // EX_IOERR: I/O error, disk full
  TEMPFAIL: 75, // EX_TEMPFAIL: locked, busy, try again
  NOPERM: 77, // EX_NOPERM: the run belongs to another user (run as its owner or root)
  CONFIG: 78, // EX_CONFIG
} as const;

export type ExitCode = number;

/** An error meant for the user: its message is printed as is, its code is the exit status. */
export class SwError extends Error {
  readonly code: ExitCode;
  /** Extra lines printed after the message (each already one line). */
  readonly details: string[];
  constructor(message: string, code: ExitCode = EXIT.FAIL, details: string[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SwError';
    this.code = code;
    this.details = details;
  }
}

export const usageError = (msg: string): SwError => new SwError(msg, EXIT.USAGE);
export const dataError = (msg: string, details: string[] = []): SwError => new SwError(msg, EXIT.DATAERR, details);
export const noInputError = (msg: string): SwError => new SwError(msg, EXIT.NOINPUT);
export const configError = (msg: string, details: string[] = []): SwError => new SwError(msg, EXIT.CONFIG, details);
export const tempFailError = (msg: string): SwError => new SwError(msg, EXIT.TEMPFAIL);
export const unavailableError = (msg: string): SwError => new SwError(msg, EXIT.UNAVAILABLE);
export const ioError = (msg: string, cause?: unknown): SwError => new SwError(msg, EXIT.IOERR, [], { cause });

const IO_CODES = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EFBIG', 'EMFILE', 'ENFILE', 'ENOTDIR', 'EISDIR', 'ELOOP', 'ENAMETOOLONG']);

/** The exit status for any thrown value. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof SwError) return err.code;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string') {
    if (IO_CODES.has(code)) return EXIT.IOERR;
    if (code === 'EAGAIN' || code === 'EBUSY' || code === 'EWOULDBLOCK') return EXIT.TEMPFAIL;
    if (code === 'EACCES' || code === 'EPERM') return EXIT.IOERR;
  }
  return EXIT.FAIL;
}

/** Below this much free space, a failed write on a filesystem is taken for a full disk. */
export const DISK_LOW_BYTES = 16 * 1024 * 1024;

/**
 * The disk (or the quota) is full: a reason to wait for space, not a crash.
 * Walks the error's causes. Some writers do not say why a write failed (git:
 * "Unable to write new index file"); given the directories it may have
 * written to, a write that failed (an I/O errno, or a git error that says it
 * could not write) while one's filesystem has less than DISK_LOW_BYTES free
 * counts too.
 */
export function isDiskFull(err: unknown, dirs: string[] = []): boolean {
  let wrote = false;
  for (let e = err as (Error & { code?: unknown; cause?: unknown; stderr?: unknown; writeFailed?: unknown }) | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return true;
    if (/No space left on device|Disk quota exceeded|Out of diskspace/i.test(`${e.message ?? ''}\n${typeof e.stderr === 'string' ? e.stderr : ''}`)) return true;
    if (e.writeFailed === true || e.code === 'EIO' || e.code === 'EFBIG') wrote = true;
  }
  if (!wrote) return false;
  return dirs.some((dir) => {
    try {
      const st = fs.statfsSync(dir);
      return st.bavail * st.bsize < DISK_LOW_BYTES;
    } catch {
      return false;
    }
  });
}

/** A one-line description of an error from the system, without Node's stack or syscall noise. */
export function describeError(err: unknown): string {
  if (err instanceof SwError) return err.message;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e.code === 'string' && e.syscall) {
    const what = errnoText(e);
    return e.path ? `cannot ${e.syscall} '${e.path}': ${what}` : `${e.syscall}: ${what}`;
  }
  if (e instanceof Error) return e.message.split('\n')[0] ?? String(e);
  return String(err);
}

/** Why a system call failed, alone: "no space left on device" (else as describeError). */
export function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? (ERRNO_TEXT[code] ?? code.toLowerCase()) : describeError(err);
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  EROFS: 'read-only file system',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'file exists',
  EAGAIN: 'resource temporarily unavailable',
};
