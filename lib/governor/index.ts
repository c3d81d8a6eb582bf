// The governor's loop: sample, decide, publish the decision (one file,
// replaced atomically, in the runtime directory), record decisions and
// downsampled samples in every run's task log, and log each transition once.

import path from 'node:path';
import { readDecision, writeDecision, type Decision } from './decision.js';
import { Governor, transition, type Resource, values, RESOURCES } from './decide.js';
import type { GovernorConfig } from './config.js';
import { listRuns, sample, type Sample } from './sample.js';
import { TaskLog } from '../tasklog/index.js';
import type { Roots } from '../run.js';

export { decideOnce, Governor, transition } from './decide.js';
export { sample, parseNvidiaSmi } from './sample.js';

export interface LoopHooks {
  /** After each decision (the daemon pings the watchdog and sets STATUS here). */
  tick?: (d: Decision, s: Sample) => void;
  /** A transition worth a log line, at the decision's tier. */
  transition?: (d: Decision, line: string) => void;
  warn?: (line: string) => void;
  signal?: AbortSignal;
}

/** The worst of each reading over a period, for the task log's resource samples. */
class Peaks {
  private s: Sample | null = null;
  private v: Record<Resource, number | null> | null = null;
  add(s: Sample): void {
    const v = values(s);
    if (!this.s || !this.v) {
      this.s = s;
      this.v = v;
      return;
    }
    const worse = (r: Resource, a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : r === 'disk' ? Math.min(a, b) : Math.max(a, b));
    for (const r of RESOURCES) this.v[r] = worse(r, this.v[r], v[r]);
    const maxGpu = (x: Sample): number => Math.max(0, ...x.gpus.map((g) => g.vram_used_mb));
    this.s = {
      ...s,
      gpus: maxGpu(s) >= maxGpu(this.s) ? s.gpus : this.s.gpus,
      ram_used_mb: Math.max(s.ram_used_mb, this.s.ram_used_mb),
      swap_used_mb: Math.max(s.swap_used_mb, this.s.swap_used_mb),
      cpu_load_pct: Math.max(s.cpu_load_pct, this.s.cpu_load_pct),
    };
  }
  take(): { s: Sample; v: Record<Resource, number | null> } | null {
    if (!this.s || !this.v) return null;
    const out = { s: this.s, v: this.v };
    this.s = null;
    this.v = null;
    return out;
  }
}

function sampleEvent(p: { s: Sample; v: Record<Resource, number | null> }, tier: string): Record<string, unknown> & { t: string } {
  const gpu = p.s.gpus.reduce<(typeof p.s.gpus)[number] | null>((a, g) => (!a || g.vram_used_mb / g.vram_total_mb > a.vram_used_mb / a.vram_total_mb ? g : a), null);
  return {
    t: 'resource_sample',
    ts: new Date(p.s.time).toISOString(),
    vram_used_mb: gpu?.vram_used_mb ?? null,
    vram_total_mb: gpu?.vram_total_mb ?? null,
    gpu_util: gpu?.util_pct ?? null,
    gpu_temp: p.v.gpu_temp,
    ram_used_mb: p.s.ram_used_mb,
    ram_total_mb: p.s.ram_total_mb,
    swap_used_mb: p.s.swap_used_mb,
    disk_free_pct: p.v.disk,
    cpu_load: p.s.cpu_load_pct,
    tier,
  };
}

/** Append to every run's task log; a run that cannot take it is skipped with a warning. */
function recordAll(stateRoot: string, events: Array<Record<string, unknown> & { t: string }>, warn?: (l: string) => void): void {
  for (const r of listRuns(stateRoot)) {
    try {
      TaskLog.forRun({ tasklogDb: path.join(r.dir, 'tasklog.db'), tasklogJournal: path.join(r.dir, 'tasklog.journal') }).appendMany(events);
    } catch (e) {
      warn?.(`cannot record in run '${r.run}': ${(e as Error).message}`);
    }
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** The daemon: until signal aborts. The quantization level survives a restart through the published file. */
export async function runGovernor(cfg: GovernorConfig, roots: Roots, hooks: LoopHooks = {}): Promise<void> {
  const previous = readDecision(roots.runtimeDir).decision;
  const gov = new Governor(cfg, { level: previous?.quantization, now: Date.now() });
  let last: Decision | null = previous;
  let noteShown: string | null = null;
  const peaks = new Peaks();
  let lastRecord = Date.now();
  while (!hooks.signal?.aborted) {
    const started = Date.now();
    const s = await sample({ nvidiaSmi: cfg.nvidia_smi, nvidiaSmiTimeout: cfg.nvidia_smi_timeout, stateRoot: roots.stateDir });
    if (s.gpu_note !== noteShown) {
      noteShown = s.gpu_note;
      if (s.gpu_note) hooks.warn?.(`no GPU readings: ${s.gpu_note}`);
    }
    const d = gov.observe(s);
    writeDecision(roots.runtimeDir, d);
    peaks.add(s);
    const line = transition(last, d);
    const events: Array<Record<string, unknown> & { t: string }> = [];
    if (line) {
      hooks.transition?.(d, line);
      events.push({ t: 'governor_decision', ts: d.time, tier: d.tier, quantization: d.quantization, actions: d.actions, reason: d.reasons.join('; ') || 'normal' });
    }
    if (Date.now() - lastRecord >= cfg.record_every || line) {
      const p = peaks.take();
      if (p) events.push(sampleEvent(p, d.tier));
      lastRecord = Date.now();
    }
    if (events.length) recordAll(roots.stateDir, events, hooks.warn);
    last = d;
    hooks.tick?.(d, s);
    await sleep(Math.max(0, cfg.interval - (Date.now() - started)), hooks.signal);
  }
}
