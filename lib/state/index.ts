// The state store's public surface: what commands call.

import fs from 'node:fs';
import path from 'node:path';
import { workspaceDir, type RunConfig } from '../config/index.js';
import { describeError, exitCodeFor } from '../exit.js';
import { writeFileAtomic } from '../fsutil.js';
import type { RunPaths } from '../run.js';
import { TaskLog } from '../tasklog/index.js';
import { createCheckpointLocked, type CreateOptions, type CreateResult, type Kind } from './checkpoint.js';
import { initRun, lockState, runExists } from './layout.js';
import { executePrune, planPrune, type PrunePlan, type PruneResult } from './prune.js';
import type { RetentionPolicy } from '../config/schema.js';

export * from './checkpoint.js';
export * from './layout.js';
export { applyPolicy, isoWeek } from './retention.js';
export { pendingChanges, type PendingChanges } from './pending.js';
export type { PrunePlan, PruneResult } from './prune.js';

export interface CreateOutcome {
  result: CreateResult;
  /** The run did not exist and was created. */
  initialised: boolean;
  /** Events folded from the journal into the task log database. */
  compacted: number | null;
}

/**
 * Create a checkpoint of a run (initialising it if it does not exist yet),
 * folding the task log's journal into its database first once it has grown
 * past tasklog.compact_bytes.
 */
export async function createCheckpoint(paths: RunPaths, config: RunConfig, opts: CreateOptions): Promise<CreateOutcome> {
  let outcome: CreateOutcome;
  try {
    const lock = await lockState(paths);
    try {
      const ws = workspaceDir(config, paths);
      const { created } = await initRun(paths, ws);
      const tasklog = TaskLog.forRun(paths);
      let compacted: number | null = null;
      if (tasklog.journalBytes() >= config.tasklog.compact_bytes) compacted = (await tasklog.compact()).folded;
      const result = await createCheckpointLocked(paths, ws, opts);
      outcome = { result, initialised: created, compacted };
    } finally {
      lock.release();
    }
  } catch (e) {
    recordFailure(paths, opts.kind, e);
    throw e;
  }
  const failing = readFailing(paths);
  if (failing) {
    // Protected again: a checkpoint made, or the state found unchanged since the newest one.
    fs.rmSync(failingFile(paths), { force: true });
    if (outcome.result.skipped) {
      TaskLog.forRun(paths).append({ t: 'checkpoint_skipped', kind: opts.kind, latest: outcome.result.latest.id, after_failures: failing.count });
    }
  }
  return outcome;
}

/**
 * The run's checkpoints are failing: the newest attempts failed, since when,
 * how many, and the newest reason. Kept in <run>/checkpoint-failing.json
 * (beside the task log, which records every failure too) so that `status`
 * can say so without reading the log; removed by the next attempt that
 * succeeds.
 */
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

/** A failed attempt, in the task log and the marker; best effort, the failure itself is what the caller reports. */
function recordFailure(paths: RunPaths, kind: Kind, e: unknown): void {
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

/** Plan (dry run) or carry out a prune under the state lock. */
export async function pruneRun(
  paths: RunPaths,
  config: RunConfig,
  policy: RetentionPolicy,
  dryRun: boolean,
): Promise<PrunePlan | PruneResult> {
  const ws = workspaceDir(config, paths);
  if (dryRun) return planPrune(paths, ws, policy);
  const lock = await lockState(paths);
  try {
    const plan = await planPrune(paths, ws, policy);
    return await executePrune(paths, ws, plan);
  } finally {
    lock.release();
  }
}
