// Can the run's owner still write its run? A file or directory that another
// user made (a command run from a root shell) can stop every checkpoint while
// the agent goes on working unprotected, so verify, status and the report ask
// this, by the owner's permission bits (root's own access says yes to all).

import fs from 'node:fs';
import path from 'node:path';
import type { RunPaths } from '../run.js';
import { describeUser, userName } from '../owner.js';
import { stateRepoDir } from './layout.js';

export interface Writability {
  /** The run's owner (the owner of its directory). */
  owner: { uid: number; name: string };
  /** Paths the owner cannot use as selfware needs to, with why; the first `limit`. */
  problems: Array<{ path: string; why: string }>;
  /** How many there are in all. */
  count: number;
}

type Need = 'r' | 'rw';

/** The groups a user is in: its primary group and those /etc/group lists it in. */
function groupsOf(uid: number, gid: number): Set<number> {
  const out = new Set([gid]);
  const name = userName(uid);
  if (!name) return out;
  try {
    for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 4 && (f[3] ?? '').split(',').includes(name)) out.add(Number(f[2]));
    }
  } catch {
    /* no group file */
  }
  return out;
}

function modeText(m: number): string {
  return (m & 0o7777).toString(8).padStart(4, '0');
}

/**
 * What the run's owner cannot read or write of what selfware writes: state/
 * (its files are rewritten and appended to), the checkpoint repository's and
 * the workspace repository's directories, the locks and the task log.
 */
export function checkWritable(paths: RunPaths, wsDir: string, limit = 10): Writability | null {
  let top: fs.Stats;
  try {
    top = fs.statSync(paths.runDir);
  } catch {
    return null;
  }
  const uid = top.uid;
  const groups = groupsOf(uid, top.gid);
  const problems: Array<{ path: string; why: string }> = [];
  let count = 0;
  const check = (p: string, st: fs.Stats, need: Need): void => {
    const dir = st.isDirectory();
    const bits = st.uid === uid ? 6 : groups.has(st.gid) ? 3 : 0;
    const m = (st.mode >> bits) & 7;
    const missing: string[] = [];
    if (!(m & 4)) missing.push('read');
    if ((need === 'rw' || dir) && !(m & 2)) missing.push('write');
    if (dir && !(m & 1)) missing.push('enter');
    if (missing.length === 0 || st.isSymbolicLink()) return;
    count++;
    if (problems.length < limit) {
      const who = `${describeUser(st.uid)}:${st.gid}`;
      problems.push({ path: p, why: `owned by ${who}, mode ${modeText(st.mode)}: ${describeUser(uid)} cannot ${missing.join(' or ')} it` });
    }
  };
  /** p and, for a directory, what is below it: directories always, files as `files` says. */
  const walk = (p: string, files: Need | null, skipFilesUnder: (dir: string) => boolean = () => false): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) {
      if (files) check(p, st, files);
      return;
    }
    check(p, st, 'rw');
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(p, { withFileTypes: true });
    } catch {
      return;
    }
    const skip = skipFilesUnder(p);
    for (const e of entries) if (!skip || e.isDirectory()) walk(path.join(p, e.name), files, skipFilesUnder);
  };
  // Object files are written once, read-only for everyone: only their directories matter.
  const objectDirs = (dir: string): boolean => /[/]objects([/][0-9a-f]{2}|[/]pack)?$/.test(dir);
  check(paths.runDir, top, 'rw');
  walk(paths.stateDir, 'rw', (d) => d.endsWith(`${path.sep}.git`));
  walk(stateRepoDir(paths), 'r', objectDirs);
  walk(paths.lockDir, 'rw');
  for (const f of [paths.tasklogJournal]) walk(f, 'rw');
  for (const f of [paths.tasklogDb]) walk(f, 'r');
  walk(path.join(wsDir, '.git'), 'r', objectDirs);
  return { owner: { uid, name: describeUser(uid) }, problems, count };
}

/** One line for a run its owner cannot write, or null when it can. */
export function writableProblem(w: Writability | null, runDir: string): string | null {
  if (!w || w.count === 0) return null;
  const first = w.problems[0] as { path: string; why: string };
  const more = w.count > 1 ? ` (and ${w.count - 1} more)` : '';
  const name = userName(w.owner.uid) ?? String(w.owner.uid);
  return `'${first.path}' is ${first.why}${more}: checkpoints fail until it is fixed (chown -R ${name}: ${runDir})`;
}
