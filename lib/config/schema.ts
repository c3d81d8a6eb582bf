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

export interface RunConfig {
  workspace: string | null;
  checkpoint: { retention: RetentionPolicy };
  tasklog: { compact_bytes: number };
}
