// The governor's configuration: /etc/selfware/governor.yaml (one per host;
// "governor" is therefore not a run name). Every key has a default.

import path from 'node:path';
import { loadConfigFile, type LoadOptions, type LoadedConfig } from '../config/index.js';
import type { Spec } from '../config/spec.js';
import type { Roots } from '../run.js';

const pct = (doc: string, warning: number, critical: number): Spec => ({
  kind: 'object',
  doc,
  fields: {
    warning: { kind: 'number', min: 0, max: 100, default: warning, doc: 'the warning threshold' },
    critical: { kind: 'number', min: 0, max: 100, default: critical, doc: 'the critical threshold' },
  },
});

export const GOVERNOR_SCHEMA: Spec = {
  kind: 'object',
  doc: 'the governor',
  fields: {
    interval: { kind: 'duration', min: 100, max: 60_000, default: 5000, doc: 'how often to sample (a decision older than 5 minutes is stale)' },
    nvidia_smi: { kind: 'string', default: 'nvidia-smi', doc: 'the nvidia-smi command (looked up on PATH unless a path)' },
    nvidia_smi_timeout: { kind: 'duration', min: 100, max: 60_000, default: 3000, doc: 'nvidia-smi taking longer counts as no GPU for that sample' },
    vram: pct('VRAM used, % (higher is worse)', 70, 85),
    ram: pct('RAM used, % (higher is worse)', 70, 85),
    disk: pct('disk free, % (lower is worse), on every filesystem holding a run', 20, 10),
    cpu: pct("CPU load outside the runs' own work, % of all cores (higher is worse)", 80, 95),
    cpu_sustain: { kind: 'duration', min: 0, max: 3_600_000, default: 60_000, doc: 'the CPU load must hold at or above a tier this long before the CPU tier rises to it (besides the dwell)' },
    gpu_temp: {
      kind: 'object',
      doc: 'GPU temperature, °C (higher is worse)',
      fields: {
        warning: { kind: 'number', min: 0, max: 200, default: 85, doc: 'the warning threshold' },
        critical: { kind: 'number', min: 0, max: 200, default: 95, doc: 'the critical threshold' },
      },
    },
    hysteresis: { kind: 'number', min: 0, max: 50, default: 3, doc: 'points (% or °C) a value must come back past a threshold before its tier goes back' },
    dwell: { kind: 'duration', min: 0, max: 3_600_000, default: 15_000, doc: 'a new tier must hold this long before it counts' },
    step_wait: { kind: 'duration', min: 0, max: 3_600_000, default: 120_000, doc: 'after a step down, VRAM still at warning this long before the next step (agents reload between model calls)' },
    calm: { kind: 'duration', min: 0, max: 86_400_000, default: 10 * 60_000, doc: 'VRAM normal this long before the quantization goes back up a level' },
    record_every: { kind: 'duration', min: 1000, max: 86_400_000, default: 60_000, doc: "how often a sample goes into each run's task log (the peaks of the period)" },
    throttle_context: { kind: 'int', min: 1024, max: 1_048_576, default: 4096, doc: 'the context (tokens) agents keep to while throttled' },
  },
};

export interface Thresholds {
  warning: number;
  critical: number;
}

export interface GovernorConfig {
  interval: number;
  nvidia_smi: string;
  nvidia_smi_timeout: number;
  vram: Thresholds;
  ram: Thresholds;
  disk: Thresholds;
  cpu: Thresholds;
  cpu_sustain: number;
  gpu_temp: Thresholds;
  hysteresis: number;
  dwell: number;
  step_wait: number;
  calm: number;
  record_every: number;
  throttle_context: number;
}

/** Thresholds in the order their direction needs. */
export const GOVERNOR_CHECKS = [
  (c: GovernorConfig): Array<[string, string]> => {
    const out: Array<[string, string]> = [];
    for (const k of ['vram', 'ram', 'cpu', 'gpu_temp'] as const) {
      if (c[k].warning >= c[k].critical) out.push([`${k}.warning`, `must be below ${k}.critical (${c[k].critical})`]);
    }
    if (c.disk.warning <= c.disk.critical) out.push(['disk.warning', `must be above disk.critical (${c.disk.critical}): disk thresholds are % free`]);
    return out;
  },
];

export function governorConfigFile(roots: Roots): string {
  return path.join(roots.configDir, 'governor.yaml');
}

export async function loadGovernorConfig(roots: Roots, opts: LoadOptions = {}): Promise<LoadedConfig<GovernorConfig>> {
  return loadConfigFile<GovernorConfig>(governorConfigFile(roots), GOVERNOR_SCHEMA, GOVERNOR_CHECKS, opts);
}
