// The governor's loop: sample, decide, publish the decision (one file,
// replaced atomically, in the runtime directory), record decisions and
// downsampled samples in every run's task log, and log each transition once.

import path from 'node:path';
import { readDecision, writeDecision, type Decision } from './decision.js';
import { Governor, transition, type Resource, values, RESOURCES } from './decide.js';
import type { GovernorConfig } from './config.js';
import { Sampler, listRuns, type Sample } from './sample.js';
import type { Tier } from './decision.js';
import { TaskLog } from '../tasklog/index.js';
import { EXIT, exitCodeFor } from '../exit.js';
import type { Roots } from '../run.js';
import type { HostRoots } from './proc.js';
import { sleep as sleepFor } from '../sleep.js';

export { decideOnce, Governor, transition } from './decide.js';
export { Sampler, sample, parseNvidiaSmi } from './sample.js';

export interface LoopHooks {
  /** After each decision (the daemon pings the watchdog and sets STATUS here). */
  tick?: (d: Decision, s: Sample) => void;
  /** A transition worth a log line, at the decision's tier. */
  transition?: (d: Decision, line: string) => void;
  warn?: (line: string) => void;
  signal?: AbortSignal;
  /** Called at least every `keepaliveMs` while the loop waits between samples (the watchdog ping). */
  keepalive?: () => void;
  keepaliveMs?: number;
  /** Where /proc and the cgroup tree are (default: SELFWARE_PROC, SELFWARE_CGROUP, or the real ones). */
  host?: HostRoots;
}

/** How long the governor waits for a run's task-log lock before keeping the events for the next tick. */
const LOCK_WAIT_MS = 1000;
/** Events kept per run while its task log stays locked (the oldest samples go first). */
const PENDING_MAX = 500;

const maxOf = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));

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
      cpu_load_pct: maxOf(s.cpu_load_pct, this.s.cpu_load_pct),
      cpu_own_pct: maxOf(s.cpu_own_pct, this.s.cpu_own_pct),
      cpu_others_pct: maxOf(s.cpu_others_pct, this.s.cpu_others_pct),
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

/**
 * Append to every run's task log. A run whose log is locked (a compaction, a
 * stopped process holding it) keeps its events for the next tick rather than
 * stalling the loop; one that cannot take them at all is skipped with a warning.
 */
export class Recorder {
  private readonly pending = new Map<string, Array<Record<string, unknown> & { t: string }>>();
  private readonly warned = new Set<string>();
  constructor(
    private readonly stateRoot: string,
    private readonly warn?: (l: string) => void,
  ) {}

  record(events: Array<Record<string, unknown> & { t: string }>): void {
    // Most ticks have nothing to record: no need to look for runs then.
    if (!events.length && !this.pending.size) return;
    for (const r of listRuns(this.stateRoot)) {
      const queue = [...(this.pending.get(r.run) ?? []), ...events];
      if (!queue.length) continue;
      try {
        TaskLog.forRun({ tasklogDb: path.join(r.dir, 'tasklog.db'), tasklogJournal: path.join(r.dir, 'tasklog.journal') }).appendMany(queue, LOCK_WAIT_MS);
        this.pending.delete(r.run);
        this.warned.delete(r.run);
      } catch (e) {
        const busy = exitCodeFor(e) === EXIT.TEMPFAIL;
        if (busy) {
          while (queue.length > PENDING_MAX) queue.splice(queue.findIndex((x) => x.t === 'resource_sample'), 1);
          this.pending.set(r.run, queue);
        }
        if (!this.warned.has(r.run)) {
          this.warned.add(r.run);
          this.warn?.(busy ? `run '${r.run}': its task log is locked; keeping the records for later` : `cannot record in run '${r.run}': ${(e as Error).message}`);
        }
      }
    }
  }
}

async function sleep(ms: number, hooks: LoopHooks): Promise<void> {
  const step = hooks.keepalive && hooks.keepaliveMs ? hooks.keepaliveMs : ms;
  const end = Date.now() + ms;
  for (let left = ms; left > 0 && !hooks.signal?.aborted; left = end - Date.now()) {
    await sleepFor(Math.min(step, left), hooks.signal);
    if (end - Date.now() > 0) hooks.keepalive?.();
  }
}

/** The daemon: until signal aborts. The quantization level survives a restart through the published file. */
export async function runGovernor(cfg: GovernorConfig, roots: Roots, hooks: LoopHooks = {}): Promise<void> {
  const previous = readDecision(roots.runtimeDir).decision;
  const cpuBefore = (previous?.readings.cpu as { tier?: Tier } | undefined)?.tier;
  const gov = new Governor(cfg, { level: previous?.quantization, unloaded: previous?.actions.includes('unload'), cpu: cpuBefore, now: Date.now() });
  const sampler = new Sampler({ nvidiaSmi: cfg.nvidia_smi, nvidiaSmiTimeout: cfg.nvidia_smi_timeout, stateRoot: roots.stateDir, host: hooks.host });
  const recorder = new Recorder(roots.stateDir, hooks.warn);
  let last: Decision | null = previous;
  let noteShown: string | null = null;
  const peaks = new Peaks();
  let lastRecord = Date.now();
  while (!hooks.signal?.aborted) {
    const started = Date.now();
    const s = await sampler.sample(hooks.signal);
    if (hooks.signal?.aborted) break;
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
    recorder.record(events);
    last = d;
    hooks.tick?.(d, s);
    await sleep(Math.max(0, cfg.interval - (Date.now() - started)), hooks);
  }
}
