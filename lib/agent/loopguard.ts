// Loops and drift, caught: a model that sends the same action again and
// again, runs the same failing command again and again with nothing changed
// in between, or takes many steps
// without changing the workspace is first told so (a note after the step's
// result), then its attempt ends with the reason "looping". Judged from the
// attempt's transcript alone (each step line records a fingerprint of the
// workspace after it), so a restart judges the same way.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Action } from './schema.js';
import type { Observation } from './tools.js';

export interface LoopLimits {
  /** The same action this many times in a row: a note; two more: the end (0: not checked, as below). */
  repeat: number;
  /** The same shell command failing this many times on an unchanged workspace: a note; two more: the end. */
  failing: number;
  /** This many steps in a row with no change to the workspace: a note; half as many more: the end. */
  unchanged: number;
}

export const DEFAULT_LOOP_LIMITS: LoopLimits = { repeat: 3, failing: 3, unchanged: 12 };

/** What the guard needs of a step. */
export interface GuardStep {
  action: Action | null;
  observation: Observation;
  /** The workspace's fingerprint after the step (absent: not taken). */
  workspace?: string;
  /** The note the guard gave with it, if any. */
  guard?: string;
}

export type Verdict = { kind: 'ok' } | { kind: 'note'; note: string } | { kind: 'end'; reason: string };

/** A canonical text of an action: the same action, whatever its keys' order. */
function key(a: Action | null): string {
  if (!a) return '(invalid)';
  const o = a as unknown as Record<string, unknown>;
  return JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
}

function short(a: Action | null): string {
  if (!a) return 'an answer that is not an action';
  const s = a.action === 'shell' ? `shell: ${a.command}` : `${a.action}${'path' in a ? ` ${a.path}` : ''}`;
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * Judge the attempt's steps, the newest last (it has just run). A note is
 * given once per run of the same trouble (not again while it goes on); the
 * end comes at its limit whether or not the model changed course in between.
 */
export function judge(steps: GuardStep[], limits: LoopLimits = DEFAULT_LOOP_LIMITS): Verdict {
  const last = steps[steps.length - 1];
  if (!last || last.action?.action === 'finish') return { kind: 'ok' };
  const noted = (k: string): boolean => steps.slice(0, -1).some((s) => s.guard?.startsWith(k) ?? false);

  // The same action in a row.
  let same = 1;
  for (let i = steps.length - 2; i >= 0 && key((steps[i] as GuardStep).action) === key(last.action); i--) same++;
  if (limits.repeat > 0 && same >= limits.repeat + 2) return { kind: 'end', reason: `looping: the same action ${same} times in a row (${short(last.action)})` };

  // The same command failing on the same workspace, in a row or not (run again after a change, it is
  // a test run while fixing, not a loop): the workspace before a step is as the step before left it.
  let failing = 0;
  if (limits.failing > 0 && last.action?.action === 'shell' && !last.observation.ok) {
    const cmd = last.action.command.trim();
    // (Before the first step, the workspace is taken as that step left it: a failing command seldom changes it.)
    const before = (i: number): string => (steps[Math.max(0, i - 1)] as GuardStep).workspace ?? '?';
    const here = before(steps.length - 1);
    failing = steps.filter((s, i) => s.action?.action === 'shell' && s.action.command.trim() === cmd && !s.observation.ok && before(i) === here).length;
    if (failing >= limits.failing + 2) return { kind: 'end', reason: `looping: the same command failed ${failing} times on an unchanged workspace (${short(last.action)})` };
  }

  // Steps in a row that left the workspace as the newest step did (a step with no fingerprint, an
  // answer that was not an action, changed nothing either).
  let still = 0;
  let fp: string | undefined;
  for (let i = steps.length - 1; i >= 0; i--) {
    const w = (steps[i] as GuardStep).workspace;
    if (w !== undefined) {
      if (fp === undefined) fp = w;
      else if (w !== fp) break;
    }
    still++;
  }
  if (fp === undefined) still = 0;
  const stillEnd = limits.unchanged + Math.ceil(limits.unchanged / 2);
  if (limits.unchanged > 0 && still >= stillEnd) return { kind: 'end', reason: `looping: ${still} steps without a change to the workspace` };

  if (limits.repeat > 0 && same >= limits.repeat && !(noted(NOTE.repeat) && same > limits.repeat)) {
    return { kind: 'note', note: `${NOTE.repeat} ${same} times in a row, with the same result. Do something else; after ${limits.repeat + 2} the attempt ends as looping.` };
  }
  if (limits.failing > 0 && failing >= limits.failing && !(noted(NOTE.failing) && failing > limits.failing)) {
    return { kind: 'note', note: `${NOTE.failing} ${failing} times. Read its error and change something first; after ${limits.failing + 2} the attempt ends as looping.` };
  }
  if (limits.unchanged > 0 && still >= limits.unchanged && !(noted(NOTE.unchanged) && still > limits.unchanged)) {
    return { kind: 'note', note: `${NOTE.unchanged} ${still} steps. Make a change (edit, apply_patch, write_file) or finish; after ${stillEnd} the attempt ends as looping.` };
  }
  return { kind: 'ok' };
}

const NOTE = {
  repeat: 'You have sent this same action',
  failing: 'This command has failed on this same workspace',
  unchanged: 'The workspace has not changed in',
} as const;

/**
 * A fingerprint of the workspace's content: HEAD, and every changed or
 * untracked file (not ignored) with its size and modification time, read from
 * git status without writing anything to the repository. null when git cannot
 * tell (not a repository).
 */
export function workspaceFingerprint(ws: string, timeoutMs = 30_000): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      'git',
      ['-c', 'core.quotePath=false', 'status', '--porcelain=v1', '-z', '--untracked-files=all', '--no-renames'],
      { cwd: ws, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', env: { ...process.env, GIT_OPTIONAL_LOCKS: '0' } },
      (err, stdout) => {
        if (err) return resolve(null);
        const h = crypto.createHash('sha1');
        let head = '';
        try {
          head = fs.readFileSync(path.join(ws, '.git', 'HEAD'), 'utf8').trim();
          const m = /^ref: (.+)$/.exec(head);
          if (m) {
            const ref = path.join(ws, '.git', m[1] as string);
            head = fs.existsSync(ref) ? fs.readFileSync(ref, 'utf8').trim() : packedRef(ws, m[1] as string);
          }
        } catch {
          /* a worktree or an odd layout: the status alone */
        }
        h.update(`${head}\n`);
        for (const entry of stdout.split('\0')) {
          if (entry === '') continue;
          const file = entry.slice(3);
          let st = '-';
          try {
            const s = fs.lstatSync(path.join(ws, file));
            st = `${s.size}:${s.mtimeMs}:${s.mode}`;
          } catch {
            /* deleted */
          }
          h.update(`${entry}\0${st}\n`);
        }
        resolve(h.digest('hex').slice(0, 16));
      },
    );
  });
}

function packedRef(ws: string, ref: string): string {
  try {
    const line = fs
      .readFileSync(path.join(ws, '.git', 'packed-refs'), 'utf8')
      .split('\n')
      .find((l) => l.endsWith(` ${ref}`));
    return line?.split(' ')[0] ?? '';
  } catch {
    return '';
  }
}
