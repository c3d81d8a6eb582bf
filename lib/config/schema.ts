// Every key of a run's config, with its default: the one place that says what
// /etc/selfware/<run>.yaml may hold. man/selfware.7 documents the same keys.

import type { Spec } from './spec.js';

const count = (doc: string, dflt: number): Spec => ({ kind: 'int', min: 0, max: 100_000, default: dflt, doc });

export const RUN_SCHEMA: Spec = {
  kind: 'object',
  doc: 'a run',
  fields: {
    workspace: {
      kind: 'string',
      default: null,
      nullable: true,
      pattern: /^\//,
      patternDoc: 'an absolute path',
      doc: 'the git repo the agent works in; default <state dir>/<run>/workspace',
    },
    checkpoint: {
      kind: 'object',
      doc: 'checkpoints of state/ and the workspace',
      fields: {
        retention: {
          kind: 'object',
          doc: "what `sw-checkpoint prune` keeps, with restic's forget semantics",
          fields: {
            keep_last: count('keep the newest N checkpoints', 12),
            keep_hourly: count('keep the newest checkpoint of each of the last N hours that have one', 24),
            keep_daily: count('keep the newest checkpoint of each of the last N days that have one', 7),
            keep_weekly: count('keep the newest checkpoint of each of the last N ISO weeks that have one', 4),
          },
        },
      },
    },
    agent: {
      kind: 'object',
      doc: 'the agent and its tasks',
      fields: {
        max_attempts: { kind: 'int', min: 1, max: 100, default: 3, doc: 'attempts a task gets unless it says otherwise' },
        task_timeout: { kind: 'duration', min: 1000, max: 4 * 3_600_000, default: 3_600_000, doc: 'time a task attempt may take unless it says otherwise (at most 4h)' },
      },
    },
    recovery: {
      kind: 'object',
      doc: 'what sw-recover does after a crash',
      fields: {
        max_failures: { kind: 'int', min: 1, max: 1000, default: 5, doc: 'crashes or failed recoveries inside the window that escalate' },
        window: { kind: 'duration', min: 1000, default: 3_600_000, doc: 'the window for max_failures' },
        backoff_base: { kind: 'duration', min: 0, max: 3_600_000, default: 1000, doc: 'delay before restarting after the first crash; doubles with each crash in a row' },
        backoff_max: { kind: 'duration', min: 0, max: 3_600_000, default: 60_000, doc: 'the longest delay' },
        stable_after: { kind: 'duration', min: 1000, default: 3_600_000, doc: 'a session that stayed up this long resets the count of crashes in a row' },
      },
    },
    tasklog: {
      kind: 'object',
      doc: 'the task log',
      fields: {
        compact_bytes: {
          kind: 'bytes',
          default: 1024 * 1024,
          doc: 'a checkpoint folds the journal into the database once the journal holds this much',
        },
      },
    },
  },
};

export interface RetentionPolicy {
  keep_last: number;
  keep_hourly: number;
  keep_daily: number;
  keep_weekly: number;
}

/** Checks across keys: [key, message]. */
export const RUN_CHECKS = [
  (c: RunConfig): Array<[string, string]> =>
    c.recovery.backoff_base > c.recovery.backoff_max ? [['recovery.backoff_base', 'must not be more than recovery.backoff_max']] : [],
];

export interface RecoveryConfig {
  max_failures: number;
  window: number;
  backoff_base: number;
  backoff_max: number;
  stable_after: number;
}

export interface RunConfig {
  workspace: string | null;
  checkpoint: { retention: RetentionPolicy };
  agent: { max_attempts: number; task_timeout: number };
  recovery: RecoveryConfig;
  tasklog: { compact_bytes: number };
}
