// From readings to a decision. Each resource has a tier (normal, warning,
// critical) by its thresholds; a tier changes only when the value has gone
// past a threshold (back past it by `hysteresis` to get better) and the new
// tier has held for `dwell`, so a value hovering at a threshold never flaps.
// VRAM pressure steps the model down a quantization level (Q4_K_M -> Q3_K_L
// -> Q2_K), critical VRAM unloads it, and after `calm` at normal it goes back
// up one level; critical disk, RAM or temperature pause the runs; CPU or
// temperature at warning throttle them. CPU is judged on the load that is not
// the runs' own, and rises a tier only once that load has held for
// `cpu_sustain`: builds and the model's own threads come in bursts.

import os from 'node:os';
import type { Quant } from '../config/schema.js';
import { QUANT_LEVELS } from '../agent/llm/types.js';
import type { GovernorConfig, Thresholds } from './config.js';
import type { Decision, GovernorAction, Tier } from './decision.js';
import type { Sample } from './sample.js';

export const RESOURCES = ['vram', 'ram', 'disk', 'cpu', 'gpu_temp'] as const;
export type Resource = (typeof RESOURCES)[number];

const RANK: Record<Tier, number> = { normal: 0, warning: 1, critical: 2 };
const TIER_BY_RANK: Tier[] = ['normal', 'warning', 'critical'];
const worst = (a: Tier, b: Tier): Tier => (RANK[a] >= RANK[b] ? a : b);

/** The value each resource is judged by; null when there is nothing to judge (no GPU). */
export function values(s: Sample): Record<Resource, number | null> {
  const pctUsed = (u: number, t: number): number => (t > 0 ? (u / t) * 100 : 0);
  const vram = s.gpus.length ? Math.max(...s.gpus.map((g) => pctUsed(g.vram_used_mb, g.vram_total_mb))) : null;
  const temps = s.gpus.map((g) => g.temp_c).filter((t): t is number => t !== null);
  return {
    vram: vram === null ? null : round1(vram),
    ram: round1(pctUsed(s.ram_used_mb, s.ram_total_mb)),
    disk: s.disks.length ? round1(Math.min(...s.disks.map((d) => d.free_pct))) : null,
    cpu: s.cpu_others_pct,
    gpu_temp: temps.length ? Math.max(...temps) : null,
  };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

/** Disk is judged on % free: lower is worse. */
const lowerIsWorse = (r: Resource): boolean => r === 'disk';

/** The tier a value falls in by the thresholds alone, shifted by `shift` towards better. */
export function rawTier(r: Resource, v: number | null, t: Thresholds, shift = 0): Tier {
  if (v === null) return 'normal';
  if (lowerIsWorse(r)) {
    if (v < t.critical + shift) return 'critical';
    if (v < t.warning + shift) return 'warning';
    return 'normal';
  }
  if (v >= t.critical - shift) return 'critical';
  if (v >= t.warning - shift) return 'warning';
  return 'normal';
}

/** The tier a value points to from `current`: worse at once by the thresholds, better only past them by the hysteresis. */
export function nextTier(r: Resource, v: number | null, t: Thresholds, current: Tier, hysteresis: number): Tier {
  const up = rawTier(r, v, t);
  if (RANK[up] > RANK[current]) return up;
  const down = rawTier(r, v, t, hysteresis);
  return RANK[down] < RANK[current] ? down : current;
}

const UNITS: Record<Resource, string> = { vram: '% VRAM used', ram: '% RAM used', disk: '% disk free', cpu: '% CPU outside the runs', gpu_temp: ' °C GPU' };

export function describe(r: Resource, v: number | null, tier: Tier): string {
  return `${v === null ? '-' : v}${UNITS[r]} (${tier})`;
}

function actionsFor(tiers: Record<Resource, Tier>, unloaded: boolean): GovernorAction[] {
  const actions: GovernorAction[] = [];
  if (unloaded) actions.push('unload');
  if (tiers.disk === 'critical' || tiers.ram === 'critical' || tiers.gpu_temp === 'critical') actions.push('pause');
  if (tiers.cpu !== 'normal' || tiers.gpu_temp === 'warning') actions.push('throttle');
  return actions;
}

function build(s: Sample, v: Record<Resource, number | null>, tiers: Record<Resource, Tier>, level: number, unloaded: boolean, cfg: GovernorConfig): Decision {
  const actions = actionsFor(tiers, unloaded);
  const tier = RESOURCES.reduce<Tier>((acc, r) => worst(acc, tiers[r]), 'normal');
  const reasons = RESOURCES.filter((r) => tiers[r] !== 'normal').map((r) => describe(r, v[r], tiers[r]));
  return {
    version: 1,
    time: new Date(s.time).toISOString(),
    host: os.hostname(),
    tier,
    quantization: QUANT_LEVELS[level] as Quant,
    actions,
    context_limit: actions.includes('throttle') ? cfg.throttle_context : null,
    reasons,
    readings: {
      ...Object.fromEntries(RESOURCES.map((r) => [r, { value: v[r], tier: tiers[r] }])),
      gpus: s.gpus,
      gpu_note: s.gpu_note,
      ram_used_mb: s.ram_used_mb,
      ram_total_mb: s.ram_total_mb,
      swap_used_mb: s.swap_used_mb,
      swap_total_mb: s.swap_total_mb,
      cpu_load_pct: s.cpu_load_pct,
      cpu_own_pct: s.cpu_own_pct,
      cpu_runs: s.cpu_runs,
      disks: s.disks,
    },
  };
}

/** `once`: the decision from one sample alone, no hysteresis, no dwell, no memory of earlier levels. */
export function decideOnce(s: Sample, cfg: GovernorConfig): Decision {
  const v = values(s);
  const tiers = Object.fromEntries(RESOURCES.map((r) => [r, rawTier(r, v[r], cfg[r])])) as Record<Resource, Tier>;
  const level = RANK[tiers.vram];
  return build(s, v, tiers, level, tiers.vram === 'critical', cfg);
}

interface Track {
  tier: Tier;
  /** By tier rank: since when every reading has been at least that bad (null: the last one was better). */
  worse: Array<number | null>;
  /** By tier rank: since when every reading has been at least that good. */
  better: Array<number | null>;
}

/** `run`: decisions over time, with hysteresis, dwell and calm. */
export class Governor {
  private readonly tracks = new Map<Resource, Track>();
  private level: number;
  private unloaded = false;
  /** The last step down (or unload): the next one waits `step_wait` after it. */
  private lastStepDown = -Infinity;
  private lastLevelChange: number;
  private lastNotNormalVram: number;
  /** The CPU tier a restarted daemon had published: the load had been sustained then. */
  private readonly cpuBefore: Tier;

  constructor(
    private readonly cfg: GovernorConfig,
    start: { level?: Quant; unloaded?: boolean; cpu?: Tier; now: number },
  ) {
    this.level = Math.max(0, QUANT_LEVELS.indexOf(start.level ?? 'Q4_K_M'));
    this.unloaded = start.unloaded ?? false;
    // Restarted at a lower level: that level gets its step_wait too.
    if (this.level > 0) this.lastStepDown = start.now;
    this.lastLevelChange = start.now;
    this.lastNotNormalVram = start.now;
    this.cpuBefore = start.cpu ?? 'normal';
  }

  /** The tier a resource is in now, after hysteresis and dwell. */
  private settle(r: Resource, v: number | null, now: number): Tier {
    const known = this.tracks.get(r);
    // The first reading counts at once: dwell guards against flapping, and
    // a governor (re)started under pressure must not publish "normal" first.
    // Not so for CPU, which must be sustained: it starts from the tier the
    // daemon had published before a restart, if the load is still there.
    const first = rawTier(r, v, this.cfg[r]);
    const t = known ?? { tier: r === 'cpu' && RANK[first] > RANK[this.cpuBefore] ? this.cpuBefore : first, worse: [null, null, null], better: [null, null, null] };
    const k = RANK[known ? nextTier(r, v, this.cfg[r], t.tier, this.cfg.hysteresis) : first];
    // The dwell times how long the readings have stayed at or beyond each
    // tier, whatever the tier in force: readings that swing between two tiers
    // on the same side (84, 86, 84 % from normal with thresholds at 80 and 85)
    // hold the nearer one, and move the tier there after the dwell; a rising
    // reading that passes through warning into critical reaches critical one
    // dwell after its first critical reading, not a dwell after the warning.
    for (let x = 0; x < 3; x++) {
      t.worse[x] = k >= x ? (t.worse[x] ?? now) : null;
      t.better[x] = k <= x ? (t.better[x] ?? now) : null;
    }
    const held = (since: number | null | undefined, wait: number): boolean => since !== null && since !== undefined && now - since >= wait;
    const rise = r === 'cpu' ? Math.max(this.cfg.dwell, this.cfg.cpu_sustain) : this.cfg.dwell;
    const c = RANK[t.tier];
    // The farthest tier held for the dwell (both sides cannot hold at once).
    let to: number | null = null;
    for (let x = 2; x > c && to === null; x--) if (held(t.worse[x], rise)) to = x;
    for (let x = 0; x < c && to === null; x++) if (held(t.better[x], this.cfg.dwell)) to = x;
    if (to !== null) t.tier = TIER_BY_RANK[to] as Tier;
    this.tracks.set(r, t);
    return t.tier;
  }

  observe(s: Sample, now = s.time): Decision {
    const v = values(s);
    const tiers = Object.fromEntries(RESOURCES.map((r) => [r, this.settle(r, v[r], now)])) as Record<Resource, Tier>;
    const vram = tiers.vram;
    if (vram !== 'normal') this.lastNotNormalVram = now;
    if (vram === 'critical') {
      if (!this.unloaded) {
        // Unload, and come back one level smaller.
        this.unloaded = true;
        this.lastStepDown = now;
        if (this.level < QUANT_LEVELS.length - 1) this.level++;
        this.lastLevelChange = now;
      }
    } else {
      this.unloaded = false;
      // One level down, then wait `step_wait` for the agents to reload at it
      // (they do between model calls) before judging whether it was enough.
      if (vram === 'warning' && this.level < QUANT_LEVELS.length - 1 && now - this.lastStepDown >= this.cfg.step_wait) {
        this.lastStepDown = now;
        this.level++;
        this.lastLevelChange = now;
      } else if (vram === 'normal' && this.level > 0 && now - this.lastNotNormalVram >= this.cfg.calm && now - this.lastLevelChange >= this.cfg.calm) {
        this.level--;
        this.lastLevelChange = now;
      }
    }
    return build(s, v, tiers, this.level, this.unloaded, this.cfg);
  }
}

/** What changed between two decisions, for the log (null: nothing worth a line). */
export function transition(prev: Decision | null, next: Decision): string | null {
  if (prev && prev.tier === next.tier && prev.quantization === next.quantization && prev.actions.join() === next.actions.join()) return null;
  const parts = [`tier ${prev ? `${prev.tier} -> ` : ''}${next.tier}`];
  if (!prev || prev.quantization !== next.quantization) parts.push(`quantization ${prev ? `${prev.quantization} -> ` : ''}${next.quantization}`);
  parts.push(`actions: ${next.actions.length ? next.actions.join(', ') : 'none'}`);
  if (next.reasons.length) parts.push(next.reasons.join('; '));
  return parts.join('; ');
}
