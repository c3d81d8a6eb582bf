// The state store's public surface: what commands call.

import { workspaceDir, type RunConfig } from '../config/index.js';
import type { RunPaths } from '../run.js';
import { TaskLog } from '../tasklog/index.js';
import { readDropped } from '../queue/archive.js';
import { createCheckpointLocked, type CreateOptions, type CreateResult } from './checkpoint.js';
import { noteFailure } from './attempts.js';
import { initRun, lockState } from './layout.js';
import { executePrune, planPrune, type PrunePlan, type PruneResult } from './prune.js';
import type { RetentionPolicy } from '../config/schema.js';

export * from './checkpoint.js';
export * from './layout.js';
export { applyPolicy, isoWeek } from './retention.js';
export { pendingChanges, type PendingChanges } from './pending.js';
export { failingFile, readFailing, type CheckpointFailing } from './attempts.js';
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
  try {
    const lock = await lockState(paths);
    try {
      const ws = workspaceDir(config, paths);
      const { created } = await initRun(paths, ws);
      const tasklog = TaskLog.forRun(paths);
      let compacted: number | null = null;
      if (tasklog.journalBytes() >= config.tasklog.compact_bytes) compacted = (await tasklog.compact({ retention: config.tasklog, gone: new Set(readDropped(paths.stateDir).keys()) })).folded;
      // The copy of the task log's database a compaction made, in case it failed to be stored then.
      else tasklog.ensureCopy();
      const result = await createCheckpointLocked(paths, ws, opts);
      return { result, initialised: created, compacted };
    } finally {
      lock.release();
    }
  } catch (e) {
    // A lock that could not be had, a task log that could not be folded: failed attempts too.
    noteFailure(paths, opts.kind, e);
    throw e;
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
  const keepFor = { forensicsMs: config.checkpoint.forensics_keep, workspaceGraceMs: config.checkpoint.workspace_grace };
  if (dryRun) return planPrune(paths, ws, policy, keepFor);
  const lock = await lockState(paths);
  try {
    const plan = await planPrune(paths, ws, policy, keepFor);
    return await executePrune(paths, ws, plan, keepFor);
  } finally {
    lock.release();
  }
}
