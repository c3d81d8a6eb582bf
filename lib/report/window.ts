// The report's window from --since and --until.

import { usageError } from '../exit.js';
import { isoUtc, parseDuration, parseTime } from '../units.js';
import type { Report } from './types.js';

export interface Window {
  since: number;
  until: number;
}

/** A duration back from `from` (24h, 7d) or an ISO 8601 time. */
function pointInTime(flag: string, text: string, from: number): number {
  const d = /^\d/.test(text) && !/^\d{4}-/.test(text) ? parseDuration(text) : undefined;
  if (d !== undefined) {
    if (from - d < 0) throw usageError(`invalid ${flag} '${text}': it reaches back before 1970`);
    return from - d;
  }
  const t = parseTime(text);
  if (t) return t.getTime();
  throw usageError(`invalid ${flag} '${text}': expected a duration such as 30m, 24h or 7d, or an ISO 8601 time such as 2026-11-21T08:00:00Z`);
}

export function windowOf(o: { since: string; until?: string | undefined }, now: number): Window {
  const until = o.until === undefined ? now : pointInTime('--until', o.until, now);
  const since = pointInTime('--since', o.since, until);
  if (since >= until) throw usageError(`--since ${o.since} (${isoUtc(since)}) is not before --until ${o.until ?? 'now'} (${isoUtc(until)})`);
  return { since, until };
}

/** A report's window length in ms, exact (its `hours` field is rounded). */
export function windowMs(r: Pick<Report, 'since' | 'until'>): number {
  return Date.parse(r.until) - Date.parse(r.since);
}
