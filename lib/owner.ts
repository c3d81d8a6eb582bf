// Who a run belongs to, and acting as them. A run's files must stay writable
// by the user its units run as (selfware): a command started from a root
// shell becomes the run's owner before it touches anything, and a command of
// another user may read a run but not change it (exit 77).

import fs from 'node:fs';
import os from 'node:os';
import { EXIT, SwError } from './exit.js';
import type { RunPaths } from './run.js';

export interface Owner {
  uid: number;
  gid: number;
  /** The user's name, when the system knows it. */
  name: string | null;
  /** The directory whose owner this is: the run's, or the state root for a run not made yet. */
  dir: string;
}

/** The name of uid from /etc/passwd, or null (a uid with no entry). */
export function userName(uid: number): string | null {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && Number(f[2]) === uid) return f[0] ?? null;
    }
  } catch {
    /* no passwd file */
  }
  return null;
}

/** "selfware", or "uid 998" when the system has no name for it. */
export function describeUser(uid: number): string {
  return userName(uid) ?? `uid ${uid}`;
}

/** The owner of the run's directory, else of the state root it would be made in; null when neither exists. */
export function runOwner(paths: RunPaths): Owner | null {
  for (const dir of [paths.runDir, paths.roots.stateDir]) {
    try {
      const st = fs.statSync(dir);
      return { uid: st.uid, gid: st.gid, name: null, dir };
    } catch {
      /* try the next */
    }
  }
  return null;
}

/**
 * Act as the run's owner. Root becomes the owner (its groups, gid and uid,
 * HOME and USER) before anything is read or written, so that nothing it
 * creates is left where the owner cannot write. Another user may read
 * (`writes` false) but gets exit 77 for a change. Returns the owner, or null
 * when there is nothing to act as (no run and no state root yet).
 */
export function actAsOwner(paths: RunPaths, opts: { writes: boolean; command?: string }): Owner | null {
  const owner = runOwner(paths);
  const me = process.geteuid?.();
  if (!owner || me === undefined || me === owner.uid) return owner;
  if (me === 0) {
    becomeUser(owner.uid, owner.gid);
    return owner;
  }
  if (!opts.writes) return owner;
  const who = describeUser(owner.uid);
  throw new SwError(
    `run '${paths.run}' belongs to ${who}, not to ${describeUser(me)}: change it as ${who} or as root${opts.command ? ` (sudo -u ${userName(owner.uid) ?? `'#${owner.uid}'`} ${opts.command})` : ''}`,
    EXIT.NOPERM,
  );
}

/** Drop root for good: supplementary groups, gid, then uid; the environment follows. */
export function becomeUser(uid: number, gid: number): void {
  const name = userName(uid);
  try {
    const p = process as NodeJS.Process & { initgroups?: (user: string, extraGroup: number) => void };
    if (name && p.initgroups) p.initgroups(name, gid);
    else process.setgroups?.([gid]);
  } catch {
    process.setgroups?.([gid]);
  }
  process.setgid?.(gid);
  process.setuid?.(uid);
  let home: string | null = null;
  try {
    home = os.userInfo().homedir;
  } catch {
    /* no passwd entry */
  }
  if (home) process.env.HOME = home;
  if (name) {
    process.env.USER = name;
    process.env.LOGNAME = name;
  }
}
