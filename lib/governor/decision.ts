// The governor's decision: one JSON file in the runtime directory, replaced
// atomically each time the governor decides, read by every agent before each
// LLM call. A decision older than a few minutes is stale (the governor is not
// running) and agents stop obeying it.

import fs from 'node:fs';
import path from 'node:path';
import type { Quant } from '../config/schema.js';
import { mkdirDurable, writeFileAtomic } from '../fsutil.js';

export type Tier = 'normal' | 'warning' | 'critical';
export type GovernorAction = 'pause' | 'unload' | 'throttle';

export interface Decision {
  version: 1;
  time: string;
  host: string;
  tier: Tier;
  quantization: Quant;
  actions: GovernorAction[];
  /** Under throttle: the context, in tokens, an agent should keep its prompts within. */
  context_limit: number | null;
  reasons: string[];
  readings: Record<string, unknown>;
}

export const STALE_AFTER_MS = 5 * 60_000;

export function decisionFile(runtimeDir: string): string {
  return path.join(runtimeDir, 'governor.json');
}

export function writeDecision(runtimeDir: string, d: Decision): void {
  mkdirDurable(runtimeDir);
  writeFileAtomic(decisionFile(runtimeDir), JSON.stringify(d, null, 2) + '\n');
}

/** The decision now in force, or null (none, unreadable, or stale). */
export function readDecision(runtimeDir: string, now = Date.now()): { decision: Decision | null; stale: boolean } {
  let d: Decision;
  try {
    d = JSON.parse(fs.readFileSync(decisionFile(runtimeDir), 'utf8')) as Decision;
  } catch {
    return { decision: null, stale: false };
  }
  if (d.version !== 1 || typeof d.time !== 'string' || !Array.isArray(d.actions)) return { decision: null, stale: false };
  if (now - Date.parse(d.time) > STALE_AFTER_MS) return { decision: null, stale: true };
  return { decision: d, stale: false };
}

/**
 * The governor's word on the disk holding `run`: its tier when warning or
 * critical, else null. The filesystem listing the run decides; a decision
 * without a per-filesystem list goes by the worst disk.
 */
export function diskPressure(d: Decision | null, run: string): { tier: Exclude<Tier, 'normal'>; free_pct: number | null; path: string | null } | null {
  const disk = d?.readings?.disk as { value?: number | null; tier?: Tier } | undefined;
  if (!disk || (disk.tier !== 'warning' && disk.tier !== 'critical')) return null;
  const disks = Array.isArray(d?.readings?.disks) ? (d?.readings?.disks as Array<{ runs?: unknown; path?: unknown; free_pct?: unknown }>) : [];
  const mine = disks.find((x) => Array.isArray(x.runs) && x.runs.includes(run));
  if (!mine) return disks.length ? null : { tier: disk.tier, free_pct: disk.value ?? null, path: null };
  const free = typeof mine.free_pct === 'number' ? mine.free_pct : null;
  // The tier is the worst filesystem's: this one is it when it is as short (to the governor's rounding).
  if (free === null || typeof disk.value !== 'number' || free > disk.value + 0.05) return null;
  return { tier: disk.tier, free_pct: Math.round(free * 10) / 10, path: typeof mine.path === 'string' ? mine.path : null };
}
