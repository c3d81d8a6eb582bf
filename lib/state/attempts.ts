// Every checkpoint attempt's outcome, whoever makes it (the agent, the timer,
// recovery, a human): a failure is recorded in the task log with its reason
// and in <run>/checkpoint-failing.json until an attempt succeeds, so status,
// the report and --check can say the run is unprotected and why.

import fs from 'node:fs';
import path from 'node:path';
import { describeError, exitCodeFor } from '../exit.js';
import { writeFileAtomic } from '../fsutil.js';
import type { RunPaths } from '../run.js';
import { TaskLog } from '../tasklog/index.js';
import type { Kind } from './checkpoint.js';
import { runExists } from './layout.js';

/** The newest attempts failed: since when, how many, and the newest's kind, reason and exit status. */
export interface CheckpointFailing {
  since: string;
  count: number;
  last: { time: string; kind: Kind; reason: string; code: number };
}

export function failingFile(paths: RunPaths): string {
  return path.join(paths.runDir, 'checkpoint-failing.json');
}

export function readFailing(paths: RunPaths): CheckpointFailing | null {
  try {
    return JSON.parse(fs.readFileSync(failingFile(paths), 'utf8')) as CheckpointFailing;
  } catch {
    return null;
  }
}

/** Errors already recorded (a failure inside a locked create reaches the outer one too). */
const noted = new WeakSet<object>();

/** A failed attempt, in the task log and the marker; best effort: the failure itself is what the caller reports. */
export function noteFailure(paths: RunPaths, kind: Kind, e: unknown): void {
  if (typeof e === 'object' && e !== null) {
    if (noted.has(e)) return;
    noted.add(e);
  }
  if (!runExists(paths)) return;
  const reason = describeError(e);
  const code = exitCodeFor(e);
  const now = new Date().toISOString();
  try {
    TaskLog.forRun(paths).append({ t: 'checkpoint_failed', kind, reason, code });
  } catch {
    /* the task log may be what fails (a full disk): the marker below may still say it */
  }
  try {
    const prev = readFailing(paths);
    const next: CheckpointFailing = { since: prev?.since ?? now, count: (prev?.count ?? 0) + 1, last: { time: now, kind, reason, code } };
    writeFileAtomic(failingFile(paths), JSON.stringify(next) + '\n');
  } catch {
    /* nothing more can be done here */
  }
}

/** An attempt that worked (made, or found nothing changed): protected again after failures. */
export function noteSuccess(paths: RunPaths, kind: Kind, skippedAfter: string | null): void {
  const failing = readFailing(paths);
  if (!failing) return;
  fs.rmSync(failingFile(paths), { force: true });
  if (skippedAfter !== null) TaskLog.forRun(paths).append({ t: 'checkpoint_skipped', kind, latest: skippedAfter, after_failures: failing.count });
}
