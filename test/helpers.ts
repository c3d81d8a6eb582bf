// Shared test helpers: a temp directory per test (kept with SW_TEST_KEEP=1),
// environment that moves selfware's roots into it, and running the built
// commands as a user would.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type Options, type Result } from 'execa';
import { walk } from '../lib/fsutil.js';

/** The repository root (tests run from dist/test/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = path.join(ROOT, 'dist');

export interface TestEnv {
  dir: string;
  env: Record<string, string>;
  configDir: string;
  stateDir: string;
  runtimeDir: string;
  /** Kill this process (its group when it leads one) at cleanup, if it still runs. */
  track(pid: number | undefined): void;
  cleanup(): void;
}

/** SIGKILL a process and, when it leads a process group, the group. */
export function killHard(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      /* gone, or not a group leader */
    }
  }
}

/** A fresh temp directory with selfware's three roots inside it. */
export function makeEnv(name = 'sw'): TestEnv {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  const configDir = path.join(dir, 'etc');
  const stateDir = path.join(dir, 'state');
  const runtimeDir = path.join(dir, 'run');
  for (const d of [configDir, stateDir, runtimeDir]) fs.mkdirSync(d, { recursive: true });
  const env: Record<string, string> = {
    SELFWARE_CONFIG_DIR: configDir,
    SELFWARE_STATE_DIR: stateDir,
    SELFWARE_RUNTIME_DIR: runtimeDir,
    // Short, so a test of a held lock is quick; long enough that a loaded machine's
    // checkpoint (the agent holds the lock meanwhile) does not make a command give up.
    SELFWARE_LOCK_TIMEOUT: '3',
    NO_COLOR: '1',
  };
  const pids = new Set<number>();
  return {
    dir,
    env,
    configDir,
    stateDir,
    runtimeDir,
    track(pid) {
      if (pid) pids.add(pid);
    },
    cleanup() {
      // Whatever the test started and did not stop (it failed half-way) goes first.
      for (const pid of pids) killHard(pid);
      if (process.env.SW_TEST_KEEP === '1') {
        process.stderr.write(`kept test directory ${dir}\n`);
        return;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run a built command: sw('sw-checkpoint', ['list', 'run1'], t). Never rejects; killed after a minute at most. */
export async function sw(cmd: string, args: string[], t: { env: Record<string, string> }, opts: Options = {}): Promise<Result> {
  const env = { ...process.env, ...t.env, ...(opts.env ?? {}) } as Record<string, string>;
  delete env.JOURNAL_STREAM;
  delete env.NOTIFY_SOCKET;
  return execa(process.execPath, [path.join(DIST, 'bin', `${cmd}.cjs`), ...args], { reject: false, timeout: 60_000, ...opts, env }) as unknown as Promise<Result>;
}

export function writeConfig(t: TestEnv, run: string, yaml: string): string {
  const f = path.join(t.configDir, `${run}.yaml`);
  fs.writeFileSync(f, yaml);
  return f;
}

/** A snapshot of every file under dir (path -> content), to prove nothing changed. */
export function treeSnapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  walk(dir, (p, st) => {
    const rel = path.relative(dir, p);
    if (st.isDirectory()) out.set(rel + '/', '');
    else if (st.isFile()) out.set(rel, fs.readFileSync(p).toString('base64'));
    else if (st.isSymbolicLink()) out.set(rel, 'link:' + fs.readlinkSync(p));
  });
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A seeded PRNG (mulberry32), so random rounds can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** git in a directory, for assertions (fsck, rev-parse). */
export async function git(cwd: string, args: string[], gitDir?: string): Promise<Result> {
  const env: Record<string, string> = { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
  if (gitDir) env.GIT_DIR = gitDir;
  return execa('git', ['-c', 'safe.directory=*', ...args], { cwd, reject: false, env }) as unknown as Promise<Result>;
}

/** Paths under dir (dir included) not owned by uid; with uid -1, every path. */
export function walkOwners(dir: string, uid: number): string[] {
  const out: string[] = [];
  walk(dir, (p, st) => {
    if (uid === -1 || st.uid !== uid) out.push(`${p} (uid ${st.uid})`);
  });
  return out;
}

/**
 * A governor.yaml whose disk thresholds only a full disk reaches: the report's
 * disk alert reads the real filesystem of the test's directory, which a test
 * does not control.
 */
export function ignoreHostDisk(t: TestEnv): void {
  fs.writeFileSync(path.join(t.configDir, 'governor.yaml'), 'disk:\n  warning: 0.002\n  critical: 0.001\n');
}
