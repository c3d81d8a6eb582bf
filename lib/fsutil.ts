// Durable file operations: every file is replaced atomically (temp, fsync,
// rename, fsync dir), so a kill at any instant leaves the old or the new
// content, never a torn one (DESIGN.md invariant 2).

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

/** fsync a directory, so that a rename or create inside it survives power loss. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replace file with data atomically and durably. */
export function writeFileAtomic(file: string, data: string | Uint8Array, opts: { mode?: number } = {}): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', opts.mode ?? 0o644);
  try {
    try {
      let buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      while (buf.length > 0) {
        const n = fs.writeSync(fd, buf);
        buf = buf.subarray(n);
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* already renamed or never made */
    }
    throw err;
  }
  fsyncDir(dir);
}

/** mkdir -p, then fsync each directory that was created and its parent. */
export function mkdirDurable(dir: string, mode = 0o755): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let cur = abs;
  while (!fs.existsSync(cur)) {
    missing.push(cur);
    const parent = path.dirname(cur);
    if (parent === cur) break;
    cur = parent;
  }
  if (missing.length === 0) return;
  fs.mkdirSync(abs, { recursive: true, mode });
  for (const d of missing.reverse()) fsyncDir(path.dirname(d));
}

/** Remove our own temp files left by a killed writer (".<name>.<pid>.<rand>.tmp"). */
export function removeStaleTemps(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/.exec(n);
    if (m && !pidAlive(Number(m[1]))) {
      try {
        fs.unlinkSync(path.join(dir, n));
      } catch {
        /* raced with another cleaner */
      }
    }
  }
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Visit dir and everything below it (lstat, sorted names, entries that vanish are skipped). */
export function walk(dir: string, visit: (p: string, st: fs.Stats) => void): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch {
    return;
  }
  visit(dir, st);
  if (!st.isDirectory()) return;
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const n of names) walk(path.join(dir, n), visit);
}

/** Bytes on disk under dir (allocated blocks), as du(1) counts them. */
export function diskUsage(dir: string): number {
  let total = 0;
  walk(dir, (_p, st) => (total += st.blocks * 512));
  return total;
}

export function exists(p: string): boolean {
  try {
    fs.accessSync(p);
    return true;
  } catch {
    return false;
  }
}
