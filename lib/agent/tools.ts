// What actions do in the workspace: a shell command in its own process group
// (killed whole on timeout), reading and writing files confined to the
// workspace (no `..`, no absolute paths outside it, no symlink escapes, nothing
// inside .git), and output cut to a budget, head and tail kept.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mkdirDurable, writeFileAtomic } from '../fsutil.js';

export interface Observation {
  ok: boolean;
  exit_code: number | null;
  signal: string | null;
  output: string;
  /** Bytes cut from the middle of the output. */
  cut: number;
  timed_out: boolean;
  duration_ms: number;
  error?: string;
}

/** An action that did not run (or did not get to its output): the error the model is told. */
export function failedObservation(error: string, opts: { durationMs?: number; timedOut?: boolean } = {}): Observation {
  return { ok: false, exit_code: null, signal: null, output: '', cut: 0, timed_out: opts.timedOut ?? false, duration_ms: opts.durationMs ?? 0, error };
}

/** Keep the head and the tail of text within budget bytes. */
export function cutOutput(buf: Buffer, budget: number): { text: string; cut: number } {
  if (buf.length <= budget) return { text: buf.toString('utf8'), cut: 0 };
  const half = Math.max(0, Math.floor(budget / 2));
  const head = buf.subarray(0, half).toString('utf8');
  const tail = buf.subarray(buf.length - half).toString('utf8');
  const cut = buf.length - 2 * half;
  return { text: `${head}\n[... ${cut} bytes cut ...]\n${tail}`, cut };
}

/**
 * The absolute path for p inside the workspace, or why not. Symlinks are
 * followed for the part of the path that exists, so a link pointing out of
 * the workspace is refused too.
 */
export function confine(workspace: string, p: string, opts: { write?: boolean } = {}): { path: string } | { error: string } {
  if (p.includes('\0')) return { error: 'the path has a NUL byte' };
  const root = fs.realpathSync(workspace);
  const target = path.resolve(root, p);
  const rel = path.relative(root, target);
  if (rel === '' && opts.write) return { error: 'the path is the workspace itself' };
  if (rel.startsWith('..') || path.isAbsolute(rel)) return { error: `'${p}' is outside the workspace` };
  // Resolve the deepest part that exists.
  let existing = target;
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  const real = fs.realpathSync(existing);
  const relReal = path.relative(root, real);
  if (relReal.startsWith('..') || path.isAbsolute(relReal)) return { error: `'${p}' leads outside the workspace through a symbolic link` };
  const first = rel.split(path.sep)[0];
  if (opts.write && first === '.git') return { error: `'${p}' is inside .git; change the repository with git commands` };
  return { path: target };
}

export async function readFileAction(workspace: string, p: string, budget: number): Promise<Observation> {
  const started = Date.now();
  const c = confine(workspace, p);
  const fail = (error: string): Observation => failedObservation(error, { durationMs: Date.now() - started });
  if ('error' in c) return fail(c.error);
  try {
    const st = fs.statSync(c.path);
    if (st.isDirectory()) {
      const names = fs.readdirSync(c.path).sort().map((n) => (fs.statSync(path.join(c.path, n)).isDirectory() ? `${n}/` : n));
      const out = cutOutput(Buffer.from(names.join('\n')), budget);
      return { ok: true, exit_code: null, signal: null, output: out.text, cut: out.cut, timed_out: false, duration_ms: Date.now() - started };
    }
    const fd = fs.openSync(c.path, 'r');
    let buf: Buffer;
    try {
      // Read at most a little more than the budget's worth from each end.
      if (st.size <= budget) buf = fs.readFileSync(fd);
      else {
        const half = Math.floor(budget / 2);
        const head = Buffer.alloc(half);
        const tail = Buffer.alloc(half);
        fs.readSync(fd, head, 0, half, 0);
        fs.readSync(fd, tail, 0, half, st.size - half);
        const o = `${head.toString('utf8')}\n[... ${st.size - 2 * half} bytes cut ...]\n${tail.toString('utf8')}`;
        return { ok: true, exit_code: null, signal: null, output: o, cut: st.size - 2 * half, timed_out: false, duration_ms: Date.now() - started };
      }
    } finally {
      fs.closeSync(fd);
    }
    return { ok: true, exit_code: null, signal: null, output: buf.toString('utf8'), cut: 0, timed_out: false, duration_ms: Date.now() - started };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? `'${p}' does not exist` : code === 'EACCES' ? `'${p}': permission denied` : (e as Error).message);
  }
}

export async function writeFileAction(workspace: string, p: string, content: string): Promise<Observation> {
  const started = Date.now();
  const c = confine(workspace, p, { write: true });
  if ('error' in c) return failedObservation(c.error, { durationMs: Date.now() - started });
  try {
    if (fs.existsSync(c.path) && fs.statSync(c.path).isDirectory()) throw new Error(`'${p}' is a directory`);
    mkdirDurable(path.dirname(c.path));
    writeFileAtomic(c.path, content);
    return { ok: true, exit_code: null, signal: null, output: `wrote ${Buffer.byteLength(content)} bytes to ${p}`, cut: 0, timed_out: false, duration_ms: Date.now() - started };
  } catch (e) {
    return failedObservation((e as Error).message, { durationMs: Date.now() - started });
  }
}

export interface ShellOptions {
  cwd: string;
  shell: string;
  timeoutMs: number;
  budget: number;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Called while the command runs (the agent's watchdog counts a bounded wait as progress). */
  onProgress?: () => void;
}

/** The environment actions run with: ours, without what only selfware itself may use. */
export function actionEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'JOURNAL_STREAM']) delete env[k];
  return env;
}

/**
 * Run command with the shell in its own process group. On timeout (or abort)
 * the whole group gets SIGTERM, then SIGKILL two seconds later, so nothing it
 * started outlives it.
 */
export function runShell(command: string, opts: ShellOptions): Promise<Observation> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(opts.shell, ['-c', command], { cwd: opts.cwd, env: opts.env ?? actionEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    const cap = opts.budget * 4 + 65536;
    let dropped = 0;
    const take = (d: Buffer): void => {
      // Keep the first and the last part of a flood; the middle is cut anyway.
      chunks.push(d);
      size += d.length;
      while (size > cap && chunks.length > 2) {
        const mid = chunks.splice(1, 1)[0] as Buffer;
        size -= mid.length;
        dropped += mid.length;
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (): void => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      killTimer = setTimeout(() => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, 2000);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs);
    const progress = opts.onProgress ? setInterval(opts.onProgress, 1000) : undefined;
    const onAbort = (): void => killGroup();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (code: number | null, signal: NodeJS.Signals | null, error?: string): void => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      if (progress) clearInterval(progress);
      opts.signal?.removeEventListener('abort', onAbort);
      // Whatever the shell left running in its group goes with it.
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* none left */
      }
      let buf = Buffer.concat(chunks);
      if (dropped > 0) buf = Buffer.concat([buf.subarray(0, Math.floor(buf.length / 2)), Buffer.from(`\n[... ${dropped} bytes dropped ...]\n`), buf.subarray(Math.floor(buf.length / 2))]);
      const out = cutOutput(buf, opts.budget);
      resolve({
        ok: !timedOut && code === 0 && !error,
        exit_code: code,
        signal,
        output: out.text,
        cut: out.cut + dropped,
        timed_out: timedOut,
        duration_ms: Date.now() - started,
        ...(error ? { error } : timedOut ? { error: `timed out after ${opts.timeoutMs} ms; its process group was killed` } : {}),
      });
    };
    child.on('error', (e) => finish(null, null, e.message));
    child.on('close', (code, signal) => finish(code, signal));
  });
}

/** The observation as the model reads it. */
export function observationText(o: Observation): string {
  const head: string[] = [];
  if (o.error) head.push(`error: ${o.error}`);
  if (o.exit_code !== null) head.push(`exit status ${o.exit_code}`);
  else if (o.signal) head.push(`killed by ${o.signal}`);
  if (o.cut > 0) head.push(`(${o.cut} bytes of output cut)`);
  return [head.join(' '), o.output].filter((s) => s !== '').join('\n');
}

