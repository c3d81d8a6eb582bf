// The report's window from --since and --until.

import { usageError } from '../exit.js';
import { isoUtc, parseDuration, parseTime } from '../units.js';

export interface Window {
  since: number;
  until: number;
}

/** A duration back from `from` (24h, 7d) or an ISO 8601 time. */
function pointInTime(flag: string, text: string, from: number): number {
  const d = /^\d/.test(text) && !/^\d{4}-/.test(text) ? parseDuration(text) : undefined;
  if (d !== undefined) return from - d;
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

