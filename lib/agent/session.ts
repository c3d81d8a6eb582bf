// The agent's session: what every part of the agent shares (the run's paths
// and config, the output, the task log, the model backend, the stop signal)
// and how systemd sees it: the stop request, the watchdog, the status line,
// heartbeats, the memory guard, checkpoints and the session's end.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { workspaceDir, type RunConfig } from '../config/index.js';
import { describeError } from '../exit.js';
import { notifyEnabled, status, stopping, systemdUnit, watchdog } from '../notify.js';
import type { Output } from '../output.js';
import type { RunPaths } from '../run.js';
import { createCheckpoint } from '../state/index.js';
import { TaskLog } from '../tasklog/index.js';
import { formatBytes } from '../units.js';
import { version } from '../version.js';
import type { LlmBackend } from './llm/types.js';
import { updateAgentState } from './state.js';

/**
 * The process's resident memory, and of it the anonymous part (the heap,
 * llama.cpp's buffers; not the pages of mapped files such as a GGUF, which
 * the kernel can drop). Linux's /proc/self/status; elsewhere all of it.
 */
export function residentMemory(): { rss: number; anon: number } {
  const rss = process.memoryUsage().rss;
  try {
    const m = /^RssAnon:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return { rss, anon: m ? Number(m[1]) * 1024 : rss };
  } catch {
    return { rss, anon: rss };
  }
}

export type StopReason = 'clean' | 'rss';

export interface SessionOptions {
  out: Output;
  backend: LlmBackend;
  /** Poll interval of the idle and paused loops. */
  tickMs?: number;
}

export class Session {
  readonly paths: RunPaths;
  readonly config: RunConfig;
  readonly out: Output;
  readonly backend: LlmBackend;
  readonly ws: string;
  readonly log: TaskLog;
  /** Poll interval of the idle and paused loops. */
  readonly tick: number;
  /** The session's id in the task log ('' until begin()). */
  id = '';
  private reason: StopReason | null = null;
  /** Aborted on SIGTERM: ends a model answer or an action in progress. */
  private readonly stopCtrl = new AbortController();
  private lastTokenAt = 0;
  private inLlm = false;
  private firstTokenSeen = false;
  /** The backend's progress() at the last watchdog look, and when it last advanced. */
  private lastProgress = 0;
  private lastProgressAt = 0;
  private lastHeartbeat = 0;
  private lastStatus = '';
  /** The model's speed at its last answer, for the status line. */
  tokensPerS: number | null = null;
  /** What the governor's decision does to the agent, for the status line. */
  governorNote = '';
  /** READY sent: the start is over, and the watchdog, not the start timeout, watches. */
  started = false;
  /**
   * Anonymous memory the model's loads and unloads added, net (its buffers,
   * llama.cpp's own): not the agent's, so not the memory guard's business.
   */
  modelMemory = 0;
  /** Why the memory guard stopped the agent (the session's end says it). */
  guardReason: string | null = null;

  constructor(paths: RunPaths, config: RunConfig, opts: SessionOptions) {
    this.paths = paths;
    this.config = config;
    this.out = opts.out;
    this.backend = opts.backend;
    this.ws = workspaceDir(config, paths);
    this.log = TaskLog.forRun(paths);
    this.tick = opts.tickMs ?? 1000;
  }

  /** Why the agent stops, once a stop was requested. */
  get stopReason(): StopReason | null {
    return this.reason;
  }

  /** The stop signal: aborted when a stop is requested. */
  get signal(): AbortSignal {
    return this.stopCtrl.signal;
  }

  /** The session starts: its id, and its start in the task log. */
  begin(): void {
    this.id = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${process.pid}-${crypto.randomBytes(2).toString('hex')}`;
    this.log.append({ t: 'session_start', session: this.id, pid: process.pid, host: os.hostname(), version: version(), unit: systemdUnit() });
    this.lastHeartbeat = Date.now();
  }

  requestStop(reason: StopReason): void {
    if (this.reason) return;
    this.reason = reason;
    stopping(reason === 'rss' ? 'stopping: memory above the limit' : 'stopping');
    this.stopCtrl.abort();
  }

  /**
   * Ping systemd only while the agent makes progress. During a model request
   * that is tokens evaluated or generated advancing (the backend's progress():
   * a prompt evaluation that hangs before its first token stops the pings as
   * surely as a generation that hangs after it); a backend that cannot see
   * the evaluation (an endpoint) is watched from its first token on, and
   * before it by its request timeout.
   */
  watchdogTick(wdMs: number): void {
    if (this.inLlm) {
      const now = Date.now();
      const p = this.backend.progress?.();
      if (p !== undefined) {
        if (p !== this.lastProgress) {
          this.lastProgress = p;
          this.lastProgressAt = now;
        }
        if (now - this.lastProgressAt > wdMs * 0.8) return;
      } else if (this.firstTokenSeen && now - this.lastTokenAt > wdMs * 0.8) return;
    }
    watchdog();
  }

  /** A model request begins: the watchdog now pings only while it makes progress. */
  startRequest(): void {
    this.inLlm = true;
    this.firstTokenSeen = false;
    this.lastTokenAt = Date.now();
    this.lastProgress = this.backend.progress?.() ?? 0;
    this.lastProgressAt = Date.now();
  }

  sawToken(): void {
    this.firstTokenSeen = true;
    this.lastTokenAt = Date.now();
  }

  /** The model request is over (answered or not): the watchdog pings as usual. */
  endRequest(): void {
    this.inLlm = false;
  }

  statusLine(what: string): string {
    const parts = [what];
    if (this.backend.quantization && !what.includes(this.backend.quantization)) parts.push(this.backend.quantization);
    if (this.tokensPerS !== null) parts.push(`${this.tokensPerS.toFixed(1)} tok/s`);
    if (this.governorNote) parts.push(this.governorNote);
    return parts.join(', ');
  }

  setStatus(what: string): void {
    const line = this.statusLine(what);
    if (line === this.lastStatus) return;
    this.lastStatus = line;
    status(line);
    this.out.verbose(line);
  }

  /** The status was said outside setStatus(): the next one is said even if it is the same. */
  forgetStatus(): void {
    this.lastStatus = '';
  }

  async updateState(patch: Parameters<typeof updateAgentState>[1]): Promise<void> {
    await updateAgentState(this.paths, patch);
  }

  heartbeat(): void {
    const now = Date.now();
    if (now - this.lastHeartbeat < this.config.agent.heartbeat) return;
    this.lastHeartbeat = now;
    const m = residentMemory();
    this.log.append({ t: 'heartbeat', session: this.id, rss: m.rss, anon: m.anon, model_memory: this.modelMemory, own: Math.max(0, m.anon - this.modelMemory) });
  }

  /**
   * The memory guard: the agent's own memory (anonymous resident memory less
   * what loading the model added) above agent.rss_limit. The model's own
   * memory (its mapped file, its buffers) is not the agent growing.
   */
  rssExceeded(): boolean {
    const limit = this.config.agent.rss_limit;
    if (limit <= 0) return false;
    const m = residentMemory();
    const own = Math.max(0, m.anon - this.modelMemory);
    if (own <= limit) return false;
    const why = `the agent's own memory ${formatBytes(own)} is above the limit ${formatBytes(limit)} (resident ${formatBytes(m.rss)}${this.modelMemory ? `, ${formatBytes(this.modelMemory)} of it the model's` : ''})`;
    this.out.warn(`${why}: checkpointing and exiting to be restarted; this counts like a crash`);
    this.log.append({ t: 'rss_limit', session: this.id, rss: m.rss, own, model_memory: this.modelMemory, limit });
    this.guardReason = why;
    return true;
  }

  async checkpoint(kind: 'task' | 'pre-op' | 'shutdown' | 'routine', message: string): Promise<string | null> {
    try {
      const { result } = await createCheckpoint(this.paths, this.config, { kind, message });
      return result.skipped ? result.latest.id : result.checkpoint.id;
    } catch (e) {
      // At err: the run goes on unprotected until checkpoints work again (the task log, status and the report say so too).
      this.out.error(`${kind} checkpoint failed: ${describeError(e)}`);
      return null;
    }
  }

  async endSession(state: string, code: number, detail?: string): Promise<void> {
    if (!this.id) return;
    try {
      this.log.append({ t: 'session_end', session: this.id, state, exit_code: code, ...(detail ? { reason: detail } : {}) });
    } catch (e) {
      this.out.warn(`cannot record the end of the session: ${(e as Error).message}`);
    }
    if (notifyEnabled()) status(`stopped (${state})`);
  }
}
