// How long to wait before the agent starts again, and when to stop trying.
// systemd 252 has no RestartSteps=, so sw-recover does the exponential part:
// 1 s, 2 s, 4 s ... up to backoff_max for each crash in a row; a session that
// stayed up stable_after resets the count. After max_failures crashes or
// failed recoveries inside the window (since the last escalation), it
// escalates instead.

import type { RecoveryConfig } from '../config/schema.js';
import { formatDuration, plural } from '../units.js';

export interface SessionInfo {
  id: string;
  startedAt: number;
  /** When it ended, or the last sign of life when it did not record an end. */
  lastSeen: number;
  /** clean, rss (the memory guard: a checkpointed end, nothing to recover), or a crash (error, or no end at all). */
  endState: string | null;
  /** What the session's end said of itself (the memory guard: the memory and the limit). */
  reason?: string;
}

export const PLANNED_ENDS = new Set(['clean', 'rss']);

/** The session ended without its shutdown checkpoint: recovery has work. */
export function crashed(s: SessionInfo): boolean {
  return s.endState === null || !PLANNED_ENDS.has(s.endState);
}

/**
 * The session ended as a failure: a crash, or the memory guard (its end is
 * checkpointed, but a run whose memory keeps growing past the limit must back
 * off and escalate like one that crashes, not restart for ever).
 */
export function failed(s: SessionInfo): boolean {
  return crashed(s) || s.endState === 'rss';
}

export interface Backoff {
  /** Crashes (and memory-guard restarts) in a row that count. */
  crashes: number;
  delayMs: number;
}

/** sessions newest first. */
export function computeBackoff(sessions: SessionInfo[], cfg: Pick<RecoveryConfig, 'backoff_base' | 'backoff_max' | 'stable_after'>): Backoff {
  let crashes = 0;
  for (const s of sessions) {
    if (!failed(s)) break;
    crashes++;
    if (s.lastSeen - s.startedAt >= cfg.stable_after) break;
  }
  if (crashes === 0) return { crashes, delayMs: 0 };
  const delay = cfg.backoff_base * 2 ** Math.min(crashes - 1, 40);
  return { crashes, delayMs: Math.min(cfg.backoff_max, delay) };
}

export interface Escalation {
  failures: number;
  escalate: boolean;
  why: string;
}

/**
 * Crashed sessions and failed recoveries inside the window that came after
 * the last escalation (a human starting the run again after an alert gets a
 * fresh count).
 */
export function checkEscalation(
  sessions: SessionInfo[],
  failedRecoveries: number[],
  lastEscalation: number | null,
  now: number,
  cfg: Pick<RecoveryConfig, 'max_failures' | 'window'>,
): Escalation {
  const from = Math.max(now - cfg.window, lastEscalation === null ? -Infinity : lastEscalation + 1);
  const inWindow = sessions.filter((s) => failed(s) && s.startedAt >= from);
  const crashes = inWindow.length;
  const guard = inWindow.filter((s) => s.endState === 'rss').length;
  const failedRec = failedRecoveries.filter((t) => t >= from).length;
  const failures = crashes + failedRec;
  // "60 min" as ever; a window that is no whole number of minutes in its own words ("20s", "1m30s").
  const span = cfg.window % 60_000 === 0 ? `${cfg.window / 60_000} min` : formatDuration(cfg.window);
  return {
    failures,
    escalate: failures >= cfg.max_failures,
    why: `${plural(crashes, 'crash', 'crashes')}${guard ? ` (${guard} of them the memory guard's restarts)` : ''} and ${plural(failedRec, 'failed recovery', 'failed recoveries')} in the last ${span} (limit ${cfg.max_failures})`,
  };
}
