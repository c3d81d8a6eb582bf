// Which checkpoints a retention policy keeps: restic's `forget` semantics
// (restic 0.14, internal/restic/snapshot_policy.go), counted the same way:
// newest first, each bucket keeps the newest checkpoint of each of its last N
// distinct hours/days/ISO weeks, in local time.

import type { RetentionPolicy } from '../config/schema.js';

export interface Dated {
  id: string;
  /** Milliseconds since the epoch. */
  time: number;
}

export interface PolicyResult<T extends Dated> {
  keep: T[];
  remove: T[];
  /** Why each kept one is kept, by id: "last", "hourly", "daily", "weekly". */
  reasons: Map<string, string[]>;
}

export function policyEmpty(p: RetentionPolicy): boolean {
  return p.keep_last === 0 && p.keep_hourly === 0 && p.keep_daily === 0 && p.keep_weekly === 0;
}

/** ISO 8601 week-numbering year and week of a local date. */
export function isoWeek(d: Date): { year: number; week: number } {
  const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const day = t.getUTCDay() || 7; // Monday 1 .. Sunday 7
  t.setUTCDate(t.getUTCDate() + 4 - day); // the Thursday of this week decides the year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return { year, week };
}

const ymdh = (d: Date): number => d.getFullYear() * 1_000_000 + (d.getMonth() + 1) * 10_000 + d.getDate() * 100 + d.getHours();
const ymd = (d: Date): number => d.getFullYear() * 10_000 + (d.getMonth() + 1) * 100 + d.getDate();
const yw = (d: Date): number => {
  const w = isoWeek(d);
  return w.year * 100 + w.week;
};

/**
 * Apply policy to list. An empty policy keeps everything, as restic does.
 * Ties in time keep their order in list.
 */
export function applyPolicy<T extends Dated>(list: T[], policy: RetentionPolicy): PolicyResult<T> {
  const sorted = list
    .map((item, i) => ({ item, i }))
    .sort((a, b) => b.item.time - a.item.time || a.i - b.i)
    .map((x) => x.item);
  const reasons = new Map<string, string[]>();
  if (policyEmpty(policy)) {
    for (const s of sorted) reasons.set(s.id, ['policy is empty']);
    return { keep: sorted, remove: [], reasons };
  }
  const buckets: Array<{ count: number; bucket: (d: Date, nr: number) => number; last: number; reason: string }> = [
    { count: policy.keep_last, bucket: (_d, nr) => nr, last: -1, reason: 'last' },
    { count: policy.keep_hourly, bucket: ymdh, last: -1, reason: 'hourly' },
    { count: policy.keep_daily, bucket: ymd, last: -1, reason: 'daily' },
    { count: policy.keep_weekly, bucket: yw, last: -1, reason: 'weekly' },
  ];
  const keep: T[] = [];
  const remove: T[] = [];
  sorted.forEach((cur, nr) => {
    const why: string[] = [];
    const d = new Date(cur.time);
    for (const b of buckets) {
      if (b.count > 0 || b.count === -1) {
        const val = b.bucket(d, nr);
        if (val !== b.last) {
          b.last = val;
          if (b.count > 0) b.count--;
          why.push(b.reason);
        }
      }
    }
    if (why.length > 0) {
      keep.push(cur);
      reasons.set(cur.id, why);
    } else remove.push(cur);
  });
  return { keep, remove, reasons };
}
