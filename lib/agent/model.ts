// The model and the governor: loading the model at the level the governor
// decides and unloading it, the evaluated prompt a planned stop saves for the
// next load, the governor's word (pause, unload, throttle, a level switch)
// and retention under disk pressure.

import fs from 'node:fs';
import path from 'node:path';
import { configError, describeError } from '../exit.js';
import { diskPressure, readDecision, type Decision } from '../governor/decision.js';
import { extendTimeout } from '../notify.js';
import { readDropped } from '../queue/archive.js';
import { type PruneResult, lockState, pruneRun } from '../state/index.js';
import { formatBytes, formatDuration, plural } from '../units.js';
import { QUANT_LEVELS, type LlmBackend, type Quant } from './llm/types.js';
import { residentMemory, type Session } from './session.js';

export class Model {
  private readonly s: Session;
  /** When the model last answered or loaded: the idle unload counts from it. */
  lastRequestAt = Date.now();
  /** The governor's decision in force at the last look (null: none or stale). */
  private decision: Decision | null = null;
  /** When the agent last pruned because the disk was short of space. */
  private lastPressureRetention: number | null = null;
  private limit: number | null = null;
  /** Things said once a session (a level the backend cannot switch to, an unload it cannot do). */
  private readonly said = new Set<string>();
  private sayOnce(key: string): boolean {
    if (this.said.has(key)) return false;
    this.said.add(key);
    return true;
  }
  /** Levels that failed to load, and until when not to try them again. */
  private readonly badLevels = new Map<Quant, number>();

  constructor(s: Session) {
    this.s = s;
  }

  /** The context limit the governor's throttle sets (null: none). */
  get contextLimit(): number | null {
    return this.limit;
  }

  startLevel(): Quant {
    const { decision } = readDecision(this.s.paths.roots.runtimeDir);
    return decision?.quantization ?? this.s.config.llm.quantization;
  }

  /** The governor's level, else the configured one; a model that cannot load at all is a configuration error. */
  async loadFirstModel(): Promise<void> {
    const wanted = this.startLevel();
    try {
      await this.loadModel(wanted);
    } catch (e) {
      if (wanted === this.s.config.llm.quantization) throw configError(`cannot load the ${wanted} model: ${(e as Error).message}`);
      this.badLevels.set(wanted, Date.now() + 10 * 60_000);
      this.s.out.error(`cannot load the ${wanted} model the governor asks for: ${(e as Error).message}; starting at ${this.s.config.llm.quantization}`);
      try {
        await this.loadModel(this.s.config.llm.quantization);
      } catch (e2) {
        throw configError(`cannot load the ${this.s.config.llm.quantization} model: ${(e2 as Error).message}`);
      }
    }
  }

  async loadModel(level: Quant): Promise<void> {
    const backend = this.s.backend;
    this.s.setStatus(backend.canSwitch(level) ? `loading the ${level} model` : 'loading the model');
    // Only a start needs more time (its timeout runs until READY). Once running, the pings go on while
    // the model loads (the load does not block them), and EXTEND_TIMEOUT_USEC would put off the
    // watchdog: a hang right after a level switch went unseen for two minutes.
    const extend = (): void => {
      if (!this.s.started) extendTimeout(120_000);
    };
    extend();
    const t0 = Date.now();
    const before = residentMemory().anon;
    await backend.load(level, extend);
    this.lastRequestAt = Date.now();
    extend();
    await this.restoreModelState();
    this.s.modelMemory = Math.max(0, this.s.modelMemory + residentMemory().anon - before);
    // The level loaded, or none where the backend's server decides.
    this.s.log.append({ t: 'model_loaded', session: this.s.id, quantization: backend.quantization, backend: backend.name, load_ms: Date.now() - t0, model_memory: this.s.modelMemory });
  }

  /** Unload, and take from the model's share of memory what the unload gave back. */
  async unloadModel(): Promise<void> {
    const before = residentMemory().anon;
    await this.s.backend.unload();
    this.s.modelMemory = Math.max(0, this.s.modelMemory - Math.max(0, before - residentMemory().anon));
  }

  /** Where a planned stop saves what the model evaluated (outside git: the run's directory, one pair of files). */
  private get modelStateDir(): string {
    return path.join(this.s.paths.runDir, 'llm-state');
  }

  /**
   * After a load: go on from the state a planned stop saved, if it is this
   * model's (lib/agent/llm/llama.ts checks the file, level and context);
   * anything else is set aside with one line and the prompt evaluated as usual.
   */
  private async restoreModelState(): Promise<void> {
    const backend = this.s.backend;
    if (!backend.restoreState) {
      // Saved by a llama run this run no longer is: of no use to anything.
      if (fs.existsSync(this.modelStateDir)) {
        fs.rmSync(this.modelStateDir, { recursive: true, force: true });
        this.s.out.notice(`removed the model state a llama backend saved in ${this.modelStateDir}: the ${backend.name} backend has no use for it`);
      }
      return;
    }
    let r: Awaited<ReturnType<NonNullable<LlmBackend['restoreState']>>>;
    try {
      r = await backend.restoreState(this.modelStateDir);
    } catch (e) {
      r = { loaded: false, reason: describeError(e) };
    }
    if (r.loaded) {
      this.s.log.append({ t: 'llm_state_restored', session: this.s.id, tokens: r.tokens, bytes: r.bytes, load_ms: r.ms, saved_at: r.saved });
      this.s.out.info(`the model goes on from the state saved at ${r.saved}: ${plural(r.tokens, 'token')} need no evaluation (${formatBytes(r.bytes)} loaded in ${formatDuration(r.ms)})`);
    } else if (r.reason) {
      this.s.log.append({ t: 'llm_state_ignored', session: this.s.id, reason: r.reason });
      this.s.out.notice(`ignoring the saved model state: ${r.reason}; the prompt is evaluated again`);
    }
  }

  /** A planned stop or unload: save what the model evaluated for the next load (a failure costs only the re-evaluation). */
  async saveModelState(why: string): Promise<void> {
    const backend = this.s.backend;
    if (!backend.saveState || !backend.loaded) return;
    try {
      const r = await backend.saveState(this.modelStateDir);
      if (!r) return;
      this.s.log.append({ t: 'llm_state_saved', session: this.s.id, reason: why, tokens: r.tokens, bytes: r.bytes, save_ms: r.ms });
      this.s.out.info(`saved the model's evaluated prompt (${plural(r.tokens, 'token')}, ${formatBytes(r.bytes)} in ${formatDuration(r.ms)}) for the next load`);
    } catch (e) {
      this.s.out.warn(`cannot save the model's evaluated prompt: ${describeError(e)}; the next load evaluates it again`);
    }
  }

  /** The governor's word: pause and unload are obeyed (and reversed), a level change reloads the model. */
  async obeyGovernor(): Promise<'pause' | 'unload' | null> {
    const { decision, stale } = readDecision(this.s.paths.roots.runtimeDir);
    this.s.governorNote = stale ? 'governor decision stale' : '';
    this.decision = decision;
    if (!decision) {
      this.limit = null;
      return null;
    }
    return this.applyDecision(decision);
  }

  private async applyDecision(d: Decision): Promise<'pause' | 'unload' | null> {
    const { backend, config, out, log } = this.s;
    this.limit = d.actions.includes('throttle') ? d.context_limit : null;
    if (d.actions.includes('unload')) {
      if (backend.loaded && backend.canUnload) {
        await this.saveModelState('governor');
        try {
          await this.unloadModel();
        } catch (e) {
          out.warn(`the governor says unload (${d.tier}), and the unload failed: ${describeError(e)}; trying again at the next look`);
          this.s.governorNote = `unload failed (${d.tier})`;
          return 'unload';
        }
        log.append({ t: 'model_unloaded', session: this.s.id, reason: 'governor', tier: d.tier });
        out.warn(`model unloaded: the governor says ${d.tier} (${d.reasons.join('; ')})`);
        await this.s.updateState({ model_loaded: false });
      } else if (!backend.canUnload && backend.name === 'openai' && this.sayOnce(`unload:${d.tier}`)) {
        const level = backend.quantization;
        const endpoint = (level && config.llm.endpoints[level]) || config.llm.endpoint;
        out.warn(`the governor says unload (${d.tier}: ${d.reasons.join('; ')}); the ${config.llm.server} server behind ${endpoint} keeps its model and cannot be told to unload it: no requests until the governor allows them`);
      }
      this.s.governorNote = `unloaded by the governor (${d.tier})`;
      return 'unload';
    }
    if (d.actions.includes('pause')) {
      this.s.governorNote = `paused by the governor: ${d.reasons.join('; ')}`;
      return 'pause';
    }
    if (QUANT_LEVELS.includes(d.quantization) && d.quantization !== backend.quantization && !backend.canSwitch(d.quantization)) {
      // Nothing to switch: the level is not a model of its own here. Said once a level, never recorded as a switch.
      if (this.sayOnce(`level:${d.quantization}`)) {
        out.notice(`the governor asks for ${d.quantization} (${d.tier}); ${backend.name === 'openai' ? 'the endpoint has no model for it (llm.model_names, llm.endpoints): its server decides' : `no model file is configured for it (llm.models.${d.quantization})`}; nothing switched`);
      }
      return null;
    }
    if (QUANT_LEVELS.includes(d.quantization) && d.quantization !== backend.quantization && (this.badLevels.get(d.quantization) ?? 0) < Date.now()) {
      const from = backend.quantization;
      try {
        await this.loadModel(d.quantization);
      } catch (e) {
        this.badLevels.set(d.quantization, Date.now() + 10 * 60_000);
        out.error(`cannot switch the model to ${d.quantization}: ${(e as Error).message}; staying at ${from ?? 'none'} (trying again in 10 min)`);
        log.append({ t: 'quantization_switch_failed', session: this.s.id, from, to: d.quantization, error: (e as Error).message });
        return null;
      }
      log.append({ t: 'quantization_switch', session: this.s.id, from, to: d.quantization, tier: d.tier });
      out.notice(`switched the model from ${from ?? 'none'} to ${d.quantization} as the governor decided (${d.tier})`);
      await this.s.updateState({ quantization: d.quantization, model_loaded: true });
    }
    return null;
  }

  /**
   * Disk pressure on the run's filesystem (the governor's warning or critical
   * tier): prune by checkpoint.retention and fold the task log's old samples
   * now rather than at the daily timer; again at most every
   * checkpoint.pressure_every while it lasts. A failure (git may need room to
   * repack) is said and tried again then.
   */
  async pressureRetention(): Promise<void> {
    const { paths, config, out, log } = this.s;
    const p = diskPressure(this.decision, paths.run);
    if (!p) return;
    const now = Date.now();
    if (this.lastPressureRetention !== null && now - this.lastPressureRetention < config.checkpoint.pressure_every) return;
    this.lastPressureRetention = now;
    const where = `${p.free_pct}% free${p.path ? ` on ${p.path}` : ''} (${p.tier})`;
    try {
      const res = (await pruneRun(paths, config, config.checkpoint.retention, false)) as PruneResult;
      const lock = await lockState(paths);
      let folded = 0;
      let detail = 0;
      let taskRows = 0;
      try {
        const c = await log.compact({ retention: config.tasklog, gone: new Set(readDropped(paths.stateDir).keys()) });
        folded = c.samples ? c.samples.rowsBefore - c.samples.rowsAfter : 0;
        detail = c.detail ? c.detail.steps[0] - c.detail.steps[1] + c.detail.calls[0] - c.detail.calls[1] + c.detail.heartbeats[0] - c.detail.heartbeats[1] : 0;
        taskRows = c.tasks ? c.tasks.tasks[0] - c.tasks.tasks[1] + c.tasks.checkpoints[0] - c.tasks.checkpoints[1] : 0;
      } finally {
        lock.release();
      }
      log.append({
        t: 'retention', session: this.s.id, reason: 'disk', tier: p.tier, free_pct: p.free_pct, pruned: res.remove.length, freed_bytes: res.bytesFreed,
        sample_rows_folded: folded, detail_rows_folded: detail, task_rows_folded: taskRows,
      }); // prettier-ignore
      out.notice(
        `disk ${where}: pruned ${plural(res.remove.length, 'checkpoint')} by checkpoint.retention, freed ${formatBytes(Math.max(0, res.bytesFreed))}, folded ${plural(folded, 'sample row')}, ${plural(detail, 'step, call and heartbeat row')} and ${plural(taskRows, 'task and checkpoint row')} of the task log`,
      );
    } catch (e) {
      out.warn(`disk ${where}: retention failed: ${describeError(e)}; trying again in ${formatDuration(config.checkpoint.pressure_every)}`);
      try {
        log.append({ t: 'retention_failed', session: this.s.id, reason: 'disk', tier: p.tier, free_pct: p.free_pct, error: describeError(e) });
      } catch {
        /* a full disk: said above */
      }
    }
  }
}
