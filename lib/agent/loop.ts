// sw-agent run: the agent that works for days. It takes tasks from the queue,
// asks the model for one action at a time, runs it in the workspace under the
// policy, records each step durably before the next, verifies, checkpoints,
// and tells systemd how it is doing (READY, WATCHDOG, STATUS, STOPPING).
// A SIGTERM ends the step in hand, checkpoints and ends the session cleanly;
// a crash at any instant is picked up by sw-recover and the next start resumes
// the interrupted task at its next step.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { workspaceDir, type RunConfig } from '../config/index.js';
import { DISK_LOW_BYTES, EXIT, SwError, configError, describeError, exitCodeFor, isDiskFull, tempFailError, unavailableError } from '../exit.js';
import { diskPressure, readDecision, type Decision } from '../governor/decision.js';
import { lockHolder, tryLock, type Lock } from '../lock.js';
import { extendTimeout, notifyEnabled, ready, status, stopping, systemdUnit, watchdog, watchdogIntervalMs } from '../notify.js';
import type { Output } from '../output.js';
import { DirCache } from '../queue/dircache.js';
import { SETTLE_MS, rejectionEvent, setAsideInvalid, type SetAsideResult } from '../queue/reject.js';
import { queueDir, readQueue, runOrder, taskFile, writeTask, type Task } from '../queue/task.js';
import { EXIT_ESCALATED, describeChange, markEscalationDelivered, pendingEscalation, recover } from '../recover/index.js';
import { restoreWorkspace } from '../recover/restore.js';
import type { RunPaths } from '../run.js';
import { writeLooseObject } from '../state/objects.js';
import { type PruneResult, agentLockFile, createCheckpoint, initRun, lockState, pruneRun, snapshotWorkspace, stateGit, workspaceCommitObject, workspaceGit, writeRef, type Checkpoint } from '../state/index.js';
import { TaskLog } from '../tasklog/index.js';
import { archiveFinished, readDropped, type ArchivePass } from '../queue/archive.js';
import { formatBytes, formatDuration, plural } from '../units.js';
import { version } from '../version.js';
import { LlmUnavailableError, QUANT_LEVELS, type ChatMessage, type CompleteResult, type LlmBackend, type Quant } from './llm/types.js';
import { TransientLlmError } from './llm/openai.js';
import { evaluate } from './policy.js';
import { ACTION_SCHEMA, describeAction, parseAction, type Action } from './schema.js';
import {
  addTask,
  decideApproval,
  listApprovals,
  logTaskAdded,
  readAgentState,
  readApproval,
  readTask,
  requestApproval,
  setPaused,
  taskDefaults,
  updateAgentState,
  type Approval,
} from './state.js';
import { actionEnv, failedObservation, readFileAction, runShell, writeFileAction, type Observation } from './tools.js';
import { applyPatchAction, editAction, searchAction, viewAction } from './hands.js';
import { judge, workspaceFingerprint, type LoopLimits } from './loopguard.js';
import { appendNote, appendOutcome, boundMemory, memorySection, outcomeDetail, repoMap } from './memory.js';
import {
  appendLine,
  attemptView,
  buildMessages,
  estimateTokens,
  condensedSummary,
  planCondense,
  readTranscript,
  stepTurns,
  transcriptFile,
  INTERRUPTED_NOTE,
  type AttemptView,
  type CondensePlan,
  type TokenCounter,
} from './transcript.js';
import { sleep } from '../sleep.js';

/** Exit status after the memory guard: systemd restarts the agent (it is not in RestartPreventExitStatus=). */
export const EXIT_RSS = 3;

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

/** The answer to a condensation request (agent.condense: model). */
const CONDENSE_SCHEMA: Record<string, unknown> = {
  type: 'object',
  properties: { summary: { type: 'string', minLength: 1, maxLength: 1200 } },
  required: ['summary'],
  additionalProperties: false,
};

const PRETASK_PREFIX = 'refs/selfware/pretask/';
/** How often a disk-full wait looks for space, and how much it waits for (room for a checkpoint, not a byte). */
const DISK_POLL_MS = Number(process.env.SELFWARE_DISK_POLL_MS) || 5_000;
/** Space back: as much free as below which a failed write counts as a full disk. */
const DISK_RESUME_BYTES = DISK_LOW_BYTES;

export interface AgentOptions {
  out: Output;
  backend: LlmBackend;
  /** Poll interval of the idle and paused loops. */
  tickMs?: number;
}

type StopReason = 'clean' | 'rss';

export function systemPrompt(ws: string): string {
  return [
    'You are a careful software engineer working alone, unattended, in a git repository.',
    `The repository is your working directory (${ws}). Paths are relative to it; you cannot leave it.`,
    'Each turn, answer with exactly one JSON object, one of:',
    '{"action":"view","path":"...","start":N,"end":M}  shows lines N to M of a file, numbered (without start and end: its first 200 lines; a directory: its tree);',
    '{"action":"search","pattern":"...","path":"..."}  finds a regular expression in the files under path (without path: everywhere), with file and line;',
    '{"action":"edit","path":"...","old":"...","new":"..."}  replaces the one place where a file has exactly the old text; include enough lines to make it unique;',
    '{"action":"apply_patch","patch":"..."}  applies a unified diff (--- a/PATH, +++ b/PATH, @@ hunks) to several places at once;',
    '{"action":"write_file","path":"...","content":"..."}  creates a file, or replaces all of it;',
    '{"action":"shell","command":"..."}  runs a shell command in the repository (it has a time limit): tests, builds, git;',
    '{"action":"read_file","path":"..."}  shows a whole file (long ones cut in the middle);',
    '{"action":"note","text":"..."}  keeps a lesson for later tasks of this run (they see your notes);',
    '{"action":"finish","summary":"..."}  when the task is done; its check then runs.',
    'You are told what each action did. Work in small steps, look before you change (view, search), change with edit, and run the tests.',
  ].join('\n');
}

export function taskPrompt(t: Task, prevFailure: string | null, context = ''): string {
  const lines = context ? [context, '', `Task ${t.id}: ${t.title}`, '', t.prompt, ''] : [`Task ${t.id}: ${t.title}`, '', t.prompt, ''];
  if (t.verify) lines.push(`When you finish, this command checks the work (exit status 0 means done): ${t.verify}`);
  lines.push(`This is attempt ${t.attempt} of ${t.max_attempts}.`);
  if (prevFailure) lines.push(`The previous attempt failed (${prevFailure}); the repository was put back as it was before the task.`);
  return lines.join('\n');
}

export class Agent {
  private readonly paths: RunPaths;
  private readonly config: RunConfig;
  private readonly out: Output;
  private readonly backend: LlmBackend;
  private readonly ws: string;
  private readonly log: TaskLog;
  private readonly tick: number;
  private session = '';
  private stopReason: StopReason | null = null;
  /** Aborted on SIGTERM: ends a model answer or an action in progress. */
  private readonly stopCtrl = new AbortController();
  private lastTokenAt = 0;
  private inLlm = false;
  private firstTokenSeen = false;
  /** The backend's progress() at the last watchdog look, and when it last advanced. */
  private lastProgress = 0;
  private lastProgressAt = 0;
  private lastRequestAt = Date.now();
  private lastHeartbeat = 0;
  private idleSince: number | null = null;
  private idleWarned = false;
  private lastStatus = '';
  private tokensPerS: number | null = null;
  /** Bad queue entries that cannot be set aside, warned about once. */
  private warnedFiles = new Set<string>();
  private governorNote = '';
  /** The governor's decision in force at the last look (null: none or stale). */
  private decision: Decision | null = null;
  /** When the agent last pruned because the disk was short of space. */
  private lastPressureRetention: number | null = null;
  /** When the agent last moved finished tasks into the archive (0: not yet this session). */
  private lastArchive = 0;
  /** READY sent: the start is over, and the watchdog, not the start timeout, watches. */
  private started = false;
  private contextLimit: number | null = null;
  /**
   * Anonymous memory the model's loads and unloads added, net (its buffers,
   * llama.cpp's own): not the agent's, so not the memory guard's business.
   */
  private modelMemory = 0;
  /** Things said once a session (a level the backend cannot switch to, an unload it cannot do). */
  private readonly said = new Set<string>();
  private sayOnce(key: string): boolean {
    if (this.said.has(key)) return false;
    this.said.add(key);
    return true;
  }
  /** Attempts whose head alone overflows the budget, warned about once. */
  private readonly warnedOverBudget = new Set<string>();
  /** Model errors in a row (not transient ones), for the backoff between tries. */
  private llmErrors = 0;
  /** Levels that failed to load, and until when not to try them again. */
  private readonly badLevels = new Map<Quant, number>();
  /** The queue's runnable tasks, read again only when queue/ changed (lib/queue/dircache.ts). */
  private readonly queueCache: DirCache<Task[]>;

  constructor(paths: RunPaths, config: RunConfig, opts: AgentOptions) {
    this.paths = paths;
    this.config = config;
    this.out = opts.out;
    this.backend = opts.backend;
    this.ws = workspaceDir(config, paths);
    this.log = TaskLog.forRun(paths);
    this.tick = opts.tickMs ?? 1000;
    this.queueCache = new DirCache(queueDir(paths.stateDir));
  }

  /** The whole life of the agent process; returns its exit status. */
  async run(): Promise<number> {
    const lock = tryLock(agentLockFile(this.paths));
    if (!lock) {
      const h = lockHolder(agentLockFile(this.paths));
      throw tempFailError(`run '${this.paths.run}' already has an agent running${h ? ` (pid ${h.pid})` : ''}`);
    }
    try {
      return await this.runLocked(lock);
    } finally {
      lock.release();
    }
  }

  private async runLocked(_lock: Lock): Promise<number> {
    const stateLock = await lockState(this.paths);
    try {
      await initRun(this.paths, this.ws);
    } finally {
      stateLock.release();
    }
    // Escalations reach systemd through the main process's exit status.
    const esc = await pendingEscalation(this.paths);
    if (esc) return this.deliverEscalation(esc);
    const rec = await recover(this.paths, this.config, {
      agentLockHeld: true,
      say: (level, text) => (level === 'warn' ? this.out.warn(text) : level === 'notice' ? this.out.notice(text) : this.out.info(text)),
    });
    if (rec.action !== 'none') {
      this.out.notice(`recovered before starting: ${rec.action}, ${rec.reconciled.length} task(s) reconciled`);
      for (const c of rec.reconciled) this.out.verbose(describeChange(c));
    }
    if (rec.escalated) {
      this.out.error(`escalating: ${rec.escalation}`);
      return this.deliverEscalation(rec.escalation ?? 'escalated');
    }

    this.session = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${process.pid}-${crypto.randomBytes(2).toString('hex')}`;
    this.log.append({ t: 'session_start', session: this.session, pid: process.pid, host: os.hostname(), version: version(), unit: systemdUnit() });
    this.lastHeartbeat = Date.now();
    const onSignal = (sig: NodeJS.Signals): void => {
      if (this.stopReason) return;
      this.out.notice(`${sig}: finishing the step in hand, then a shutdown checkpoint`);
      this.requestStop('clean');
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const wdMs = watchdogIntervalMs();
    const wdTimer = wdMs > 0 ? setInterval(() => this.watchdogTick(wdMs), Math.max(100, Math.floor(wdMs / 4))) : undefined;
    try {
      await this.updateState({ status: 'starting', pid: process.pid, session: this.session });
      await this.loadFirstModel();
      ready(this.statusLine('ready'));
      this.started = true;
      this.out.info(`agent ready: run '${this.paths.run}', session ${this.session}, ${this.backend.name} backend${this.backend.quantization ? ` at ${this.backend.quantization}` : ''}`);
      await this.updateState({ status: 'idle', model_loaded: this.backend.loaded, quantization: this.backend.quantization });
      await this.mainLoop();
      return await this.shutdown();
    } catch (e) {
      if (e instanceof LlmUnavailableError) {
        this.out.error(`the model is unavailable: ${e.message}`);
        await this.endSession('unavailable', EXIT.UNAVAILABLE);
        throw unavailableError(e.message);
      }
      await this.endSession('error', exitCodeFor(e), (e as Error).message);
      throw e;
    } finally {
      if (wdTimer) clearInterval(wdTimer);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      await this.backend.dispose().catch(() => {});
    }
  }

  private deliverEscalation(reason: string): number {
    markEscalationDelivered(this.paths, reason);
    this.out.error(`run '${this.paths.run}' escalated: ${reason}; not starting (exit ${EXIT_ESCALATED}) until a human starts it again`);
    return EXIT_ESCALATED;
  }

  requestStop(reason: StopReason): void {
    if (this.stopReason) return;
    this.stopReason = reason;
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
  private watchdogTick(wdMs: number): void {
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
  private startRequest(): void {
    this.inLlm = true;
    this.firstTokenSeen = false;
    this.lastTokenAt = Date.now();
    this.lastProgress = this.backend.progress?.() ?? 0;
    this.lastProgressAt = Date.now();
  }

  private sawToken(): void {
    this.firstTokenSeen = true;
    this.lastTokenAt = Date.now();
  }

  private statusLine(what: string): string {
    const parts = [what];
    if (this.backend.quantization && !what.includes(this.backend.quantization)) parts.push(this.backend.quantization);
    if (this.tokensPerS !== null) parts.push(`${this.tokensPerS.toFixed(1)} tok/s`);
    if (this.governorNote) parts.push(this.governorNote);
    return parts.join(', ');
  }

  private setStatus(what: string): void {
    const line = this.statusLine(what);
    if (line === this.lastStatus) return;
    this.lastStatus = line;
    status(line);
    this.out.verbose(line);
  }

  private async updateState(patch: Parameters<typeof updateAgentState>[1]): Promise<void> {
    await updateAgentState(this.paths, patch);
  }

  private startLevel(): Quant {
    const { decision } = readDecision(this.paths.roots.runtimeDir);
    return decision?.quantization ?? this.config.llm.quantization;
  }

  /** The governor's level, else the configured one; a model that cannot load at all is a configuration error. */
  private async loadFirstModel(): Promise<void> {
    const wanted = this.startLevel();
    try {
      await this.loadModel(wanted);
    } catch (e) {
      if (wanted === this.config.llm.quantization) throw configError(`cannot load the ${wanted} model: ${(e as Error).message}`);
      this.badLevels.set(wanted, Date.now() + 10 * 60_000);
      this.out.error(`cannot load the ${wanted} model the governor asks for: ${(e as Error).message}; starting at ${this.config.llm.quantization}`);
      try {
        await this.loadModel(this.config.llm.quantization);
      } catch (e2) {
        throw configError(`cannot load the ${this.config.llm.quantization} model: ${(e2 as Error).message}`);
      }
    }
  }

  private async loadModel(level: Quant): Promise<void> {
    this.setStatus(this.backend.canSwitch(level) ? `loading the ${level} model` : 'loading the model');
    // Only a start needs more time (its timeout runs until READY). Once running, the pings go on while
    // the model loads (the load does not block them), and EXTEND_TIMEOUT_USEC would put off the
    // watchdog: a hang right after a level switch went unseen for two minutes.
    const extend = (): void => {
      if (!this.started) extendTimeout(120_000);
    };
    extend();
    const t0 = Date.now();
    const before = residentMemory().anon;
    await this.backend.load(level, extend);
    this.lastRequestAt = Date.now();
    extend();
    await this.restoreModelState();
    this.modelMemory = Math.max(0, this.modelMemory + residentMemory().anon - before);
    // The level loaded, or none where the backend's server decides.
    this.log.append({ t: 'model_loaded', session: this.session, quantization: this.backend.quantization, backend: this.backend.name, load_ms: Date.now() - t0, model_memory: this.modelMemory });
  }

  /** Unload, and take from the model's share of memory what the unload gave back. */
  private async unloadModel(): Promise<void> {
    const before = residentMemory().anon;
    await this.backend.unload();
    this.modelMemory = Math.max(0, this.modelMemory - Math.max(0, before - residentMemory().anon));
  }

  /** Where a planned stop saves what the model evaluated (outside git: the run's directory, one pair of files). */
  private get modelStateDir(): string {
    return path.join(this.paths.runDir, 'llm-state');
  }

  /**
   * After a load: go on from the state a planned stop saved, if it is this
   * model's (lib/agent/llm/llama.ts checks the file, level and context);
   * anything else is set aside with one line and the prompt evaluated as usual.
   */
  private async restoreModelState(): Promise<void> {
    if (!this.backend.restoreState) {
      // Saved by a llama run this run no longer is: of no use to anything.
      if (fs.existsSync(this.modelStateDir)) {
        fs.rmSync(this.modelStateDir, { recursive: true, force: true });
        this.out.notice(`removed the model state a llama backend saved in ${this.modelStateDir}: the ${this.backend.name} backend has no use for it`);
      }
      return;
    }
    let r: Awaited<ReturnType<NonNullable<LlmBackend['restoreState']>>>;
    try {
      r = await this.backend.restoreState(this.modelStateDir);
    } catch (e) {
      r = { loaded: false, reason: describeError(e) };
    }
    if (r.loaded) {
      this.log.append({ t: 'llm_state_restored', session: this.session, tokens: r.tokens, bytes: r.bytes, load_ms: r.ms, saved_at: r.saved });
      this.out.info(`the model goes on from the state saved at ${r.saved}: ${plural(r.tokens, 'token')} need no evaluation (${formatBytes(r.bytes)} loaded in ${formatDuration(r.ms)})`);
    } else if (r.reason) {
      this.log.append({ t: 'llm_state_ignored', session: this.session, reason: r.reason });
      this.out.notice(`ignoring the saved model state: ${r.reason}; the prompt is evaluated again`);
    }
  }

  /** A planned stop or unload: save what the model evaluated for the next load (a failure costs only the re-evaluation). */
  private async saveModelState(why: string): Promise<void> {
    if (!this.backend.saveState || !this.backend.loaded) return;
    try {
      const r = await this.backend.saveState(this.modelStateDir);
      if (!r) return;
      this.log.append({ t: 'llm_state_saved', session: this.session, reason: why, tokens: r.tokens, bytes: r.bytes, save_ms: r.ms });
      this.out.info(`saved the model's evaluated prompt (${plural(r.tokens, 'token')}, ${formatBytes(r.bytes)} in ${formatDuration(r.ms)}) for the next load`);
    } catch (e) {
      this.out.warn(`cannot save the model's evaluated prompt: ${describeError(e)}; the next load evaluates it again`);
    }
  }

  /** The governor's word: pause and unload are obeyed (and reversed), a level change reloads the model. */
  private async obeyGovernor(): Promise<'pause' | 'unload' | null> {
    const { decision, stale } = readDecision(this.paths.roots.runtimeDir);
    this.governorNote = stale ? 'governor decision stale' : '';
    this.decision = decision;
    if (!decision) {
      this.contextLimit = null;
      return null;
    }
    return this.applyDecision(decision);
  }

  private async applyDecision(d: Decision): Promise<'pause' | 'unload' | null> {
    this.contextLimit = d.actions.includes('throttle') ? d.context_limit : null;
    if (d.actions.includes('unload')) {
      if (this.backend.loaded && this.backend.canUnload) {
        await this.saveModelState('governor');
        try {
          await this.unloadModel();
        } catch (e) {
          this.out.warn(`the governor says unload (${d.tier}), and the unload failed: ${describeError(e)}; trying again at the next look`);
          this.governorNote = `unload failed (${d.tier})`;
          return 'unload';
        }
        this.log.append({ t: 'model_unloaded', session: this.session, reason: 'governor', tier: d.tier });
        this.out.warn(`model unloaded: the governor says ${d.tier} (${d.reasons.join('; ')})`);
        await this.updateState({ model_loaded: false });
      } else if (!this.backend.canUnload && this.backend.name === 'openai' && this.sayOnce(`unload:${d.tier}`)) {
        const level = this.backend.quantization;
        const endpoint = (level && this.config.llm.endpoints[level]) || this.config.llm.endpoint;
        this.out.warn(`the governor says unload (${d.tier}: ${d.reasons.join('; ')}); the ${this.config.llm.server} server behind ${endpoint} keeps its model and cannot be told to unload it: no requests until the governor allows them`);
      }
      this.governorNote = `unloaded by the governor (${d.tier})`;
      return 'unload';
    }
    if (d.actions.includes('pause')) {
      this.governorNote = `paused by the governor: ${d.reasons.join('; ')}`;
      return 'pause';
    }
    if (QUANT_LEVELS.includes(d.quantization) && d.quantization !== this.backend.quantization && !this.backend.canSwitch(d.quantization)) {
      // Nothing to switch: the level is not a model of its own here. Said once a level, never recorded as a switch.
      if (this.sayOnce(`level:${d.quantization}`)) {
        this.out.notice(`the governor asks for ${d.quantization} (${d.tier}); ${this.backend.name === 'openai' ? 'the endpoint has no model for it (llm.model_names, llm.endpoints): its server decides' : `no model file is configured for it (llm.models.${d.quantization})`}; nothing switched`);
      }
      return null;
    }
    if (QUANT_LEVELS.includes(d.quantization) && d.quantization !== this.backend.quantization && (this.badLevels.get(d.quantization) ?? 0) < Date.now()) {
      const from = this.backend.quantization;
      try {
        await this.loadModel(d.quantization);
      } catch (e) {
        this.badLevels.set(d.quantization, Date.now() + 10 * 60_000);
        this.out.error(`cannot switch the model to ${d.quantization}: ${(e as Error).message}; staying at ${from ?? 'none'} (trying again in 10 min)`);
        this.log.append({ t: 'quantization_switch_failed', session: this.session, from, to: d.quantization, error: (e as Error).message });
        return null;
      }
      this.log.append({ t: 'quantization_switch', session: this.session, from, to: d.quantization, tier: d.tier });
      this.out.notice(`switched the model from ${from ?? 'none'} to ${d.quantization} as the governor decided (${d.tier})`);
      await this.updateState({ quantization: d.quantization, model_loaded: true });
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
  private async pressureRetention(): Promise<void> {
    const p = diskPressure(this.decision, this.paths.run);
    if (!p) return;
    const now = Date.now();
    if (this.lastPressureRetention !== null && now - this.lastPressureRetention < this.config.checkpoint.pressure_every) return;
    this.lastPressureRetention = now;
    const where = `${p.free_pct}% free${p.path ? ` on ${p.path}` : ''} (${p.tier})`;
    try {
      const res = (await pruneRun(this.paths, this.config, this.config.checkpoint.retention, false)) as PruneResult;
      const lock = await lockState(this.paths);
      let folded = 0;
      let detail = 0;
      let taskRows = 0;
      try {
        const c = await this.log.compact({ retention: this.config.tasklog, gone: new Set(readDropped(this.paths.stateDir).keys()) });
        folded = c.samples ? c.samples.rowsBefore - c.samples.rowsAfter : 0;
        detail = c.detail ? c.detail.steps[0] - c.detail.steps[1] + c.detail.calls[0] - c.detail.calls[1] + c.detail.heartbeats[0] - c.detail.heartbeats[1] : 0;
        taskRows = c.tasks ? c.tasks.tasks[0] - c.tasks.tasks[1] + c.tasks.checkpoints[0] - c.tasks.checkpoints[1] : 0;
      } finally {
        lock.release();
      }
      this.log.append({
        t: 'retention', session: this.session, reason: 'disk', tier: p.tier, free_pct: p.free_pct, pruned: res.remove.length, freed_bytes: res.bytesFreed,
        sample_rows_folded: folded, detail_rows_folded: detail, task_rows_folded: taskRows,
      }); // prettier-ignore
      this.out.notice(
        `disk ${where}: pruned ${plural(res.remove.length, 'checkpoint')} by checkpoint.retention, freed ${formatBytes(Math.max(0, res.bytesFreed))}, folded ${plural(folded, 'sample row')}, ${plural(detail, 'step, call and heartbeat row')} and ${plural(taskRows, 'task and checkpoint row')} of the task log`,
      );
    } catch (e) {
      this.out.warn(`disk ${where}: retention failed: ${describeError(e)}; trying again in ${formatDuration(this.config.checkpoint.pressure_every)}`);
      try {
        this.log.append({ t: 'retention_failed', session: this.session, reason: 'disk', tier: p.tier, free_pct: p.free_pct, error: describeError(e) });
      } catch {
        /* a full disk: said above */
      }
    }
  }

  /**
   * Move finished tasks the newest checkpoint holds into the archive
   * (lib/queue/archive.ts), at most every agent.archive_after (hourly at
   * most), between tasks. A failure is said and tried again next time.
   */
  private async archivePass(): Promise<void> {
    const now = Date.now();
    if (now - this.lastArchive < Math.min(this.config.agent.archive_after, 3_600_000)) return;
    this.lastArchive = now;
    try {
      const lock = await lockState(this.paths);
      let r: ArchivePass;
      try {
        r = await archiveFinished(this.paths.stateDir, stateGit(this.paths), { defaults: taskDefaults(this.config), olderThanMs: this.config.agent.archive_after, keepMs: this.config.agent.archive_keep, now });
      } finally {
        lock.release();
      }
      if (r.archived.length > 0 || r.finished.length > 0 || r.dropped.length > 0) {
        this.log.append({ t: 'tasks_archived', session: this.session, count: r.archived.length, file: r.file ? path.relative(this.paths.stateDir, r.file) : null, finished: r.finished.length, dropped: r.dropped });
        if (r.file) this.out.info(`archived ${plural(r.archived.length, 'finished task')} in ${path.relative(this.paths.stateDir, r.file)}`);
        if (r.finished.length > 0) this.out.info(`removed the queue files of ${plural(r.finished.length, 'task')} an interrupted archiving had archived`);
        if (r.dropped.length > 0) this.out.info(`${plural(r.dropped.length, 'archive')} (${r.dropped[0]}${r.dropped.length > 1 ? ` to ${r.dropped[r.dropped.length - 1]}` : ''}) left state/ (past agent.archive_keep; the checkpoints holding them keep them)`);
      }
    } catch (e) {
      this.out.warn(`archiving finished tasks failed: ${describeError(e)}; trying again later`);
    }
  }

  private heartbeat(): void {
    const now = Date.now();
    if (now - this.lastHeartbeat < this.config.agent.heartbeat) return;
    this.lastHeartbeat = now;
    const m = residentMemory();
    this.log.append({ t: 'heartbeat', session: this.session, rss: m.rss, anon: m.anon, model_memory: this.modelMemory, own: Math.max(0, m.anon - this.modelMemory) });
  }

  /**
   * The memory guard: the agent's own memory (anonymous resident memory less
   * what loading the model added) above agent.rss_limit. The model's own
   * memory (its mapped file, its buffers) is not the agent growing.
   */
  private rssExceeded(): boolean {
    const limit = this.config.agent.rss_limit;
    if (limit <= 0) return false;
    const m = residentMemory();
    const own = Math.max(0, m.anon - this.modelMemory);
    if (own <= limit) return false;
    const why = `the agent's own memory ${formatBytes(own)} is above the limit ${formatBytes(limit)} (resident ${formatBytes(m.rss)}${this.modelMemory ? `, ${formatBytes(this.modelMemory)} of it the model's` : ''})`;
    this.out.warn(`${why}: checkpointing and exiting to be restarted; this counts like a crash`);
    this.log.append({ t: 'rss_limit', session: this.session, rss: m.rss, own, model_memory: this.modelMemory, limit });
    this.guardReason = why;
    return true;
  }
  /** Why the memory guard stopped the agent (the session's end says it). */
  private guardReason: string | null = null;

  private async mainLoop(): Promise<void> {
    while (!this.stopReason) {
      try {
        await this.iteration();
      } catch (e) {
        // A full disk is a pause, not a crash: wait for space, then go on where the task stood.
        if (!isDiskFull(e, [this.paths.runDir, this.ws])) throw e;
        await this.waitForDisk(e);
      }
    }
  }

  /**
   * Wait, alive (the watchdog timer goes on pinging) and writing nothing,
   * until the run's filesystem has room again and the task log takes a
   * record of the wait; then the loop resumes the task in hand from its
   * transcript, as after a restart, but without counting a crash.
   */
  private async waitForDisk(e: unknown): Promise<void> {
    const since = Date.now();
    const why = (e as Error).message.split('\n')[0] ?? 'disk full';
    this.out.error(`disk full (${why}): waiting for space on ${this.paths.runDir}${path.resolve(this.ws).startsWith(path.resolve(this.paths.runDir) + path.sep) ? '' : ` and ${this.ws}`}; a pause, not a crash`);
    status(`paused: disk full since ${new Date(since).toISOString()}`);
    const signal = this.stopCtrl.signal;
    for (;;) {
      await sleep(DISK_POLL_MS, signal);
      if (this.stopReason) return;
      let free = Infinity;
      try {
        // The run's filesystem and the workspace's (the same one, or not).
        for (const dir of [this.paths.runDir, this.ws]) {
          const st = fs.statfsSync(dir);
          free = Math.min(free, st.bavail * st.bsize);
        }
      } catch {
        continue;
      }
      if (free < DISK_RESUME_BYTES) continue;
      try {
        this.log.append({ t: 'disk_full', session: this.session, since: new Date(since).toISOString(), duration_ms: Date.now() - since, error: why });
      } catch (e2) {
        if (isDiskFull(e2, [this.paths.runDir, this.ws])) continue;
        throw e2;
      }
      this.out.notice(`disk space is back after ${formatDuration(Date.now() - since)}: going on`);
      this.lastStatus = '';
      return;
    }
  }

  /** One turn of the loop: the governor, a pause, or the next task (run to its end or to a stop). */
  private async iteration(): Promise<void> {
    const signal = this.stopCtrl.signal;
    this.heartbeat();
    if (this.rssExceeded()) {
      this.requestStop('rss');
      return;
    }
    const gov = await this.obeyGovernor();
    await this.pressureRetention();
    const st = readAgentState(this.paths);
    if (gov || st.paused) {
      this.setStatus(gov ? this.governorNote : `paused${st.pause_reason ? `: ${st.pause_reason}` : ''}`);
      if (st.status !== 'paused') await this.updateState({ status: 'paused' });
      // Idle again after the pause: say so then.
      this.idleSince = null;
      await sleep(this.tick, signal);
      return;
    }
    await this.archivePass();
    const task = await this.nextTask(st.task);
    if (!task) {
      await this.idle();
      await sleep(this.tick, signal);
      return;
    }
    this.idleSince = null;
    this.idleWarned = false;
    await this.runTask(task);
  }


  private async idle(): Promise<void> {
    const now = Date.now();
    if (this.idleSince === null) {
      this.idleSince = now;
      await this.updateState({ status: 'idle', task: null, attempt: null, step: null });
      // The idle state protected at once (skipped when nothing changed), timer or no timer: an
      // idle run is then one whose state is what its newest checkpoint holds.
      await this.checkpoint('routine', 'idle');
    }
    this.setStatus('idle: the queue is empty');
    if (!this.idleWarned && now - this.idleSince >= this.config.agent.idle_warning) {
      this.idleWarned = true;
      this.out.warn(`the queue has been empty for ${formatDuration(now - this.idleSince)}`);
    }
    if (this.backend.loaded && this.backend.canUnload && now - this.lastRequestAt >= this.config.llm.idle_unload) {
      try {
        await this.unloadModel();
      } catch (e) {
        this.lastRequestAt = now;
        this.out.warn(`cannot unload the idle model: ${describeError(e)}; trying again in ${formatDuration(this.config.llm.idle_unload)}`);
        return;
      }
      this.log.append({ t: 'model_unloaded', session: this.session, reason: 'idle' });
      this.out.info(`model unloaded after ${formatDuration(now - this.lastRequestAt)} without a request; it is loaded again on demand`);
      await this.updateState({ model_loaded: false });
    }
    const idleTask = this.config.agent.idle_task;
    if (idleTask && now - this.idleSince >= this.config.agent.idle_task_after) {
      const t = await addTask(this.paths, this.config, { prompt: idleTask, title: 'idle task', source: 'idle' });
      this.out.info(`queued the idle task ${t.id}`);
      this.idleSince = now;
    }
  }

  /**
   * The queue, read again only when its directory changed (or while an entry
   * waits to settle). New dropped-in files are adopted; entries that are not
   * valid tasks are set aside in queue/rejected/, so no file can stop the run.
   */
  private async queue(): Promise<Task[]> {
    const tasks = await this.queueCache.get(async () => {
      const defaults = taskDefaults(this.config);
      let q = await readQueue(this.paths.stateDir, defaults);
      const aside = q.invalid.length > 0 ? await this.setAside() : { waiting: false, seen: new Set<string>() };
      const adopted = await this.adopt(q.tasks);
      if (q.invalid.length > 0 || adopted.count > 0) q = await readQueue(this.paths.stateDir, defaults);
      // A task not adopted yet (its file is still settling) does not run.
      const value = q.tasks.filter((t) => this.known?.has(t.id));
      // Entries that wait to settle or appeared meanwhile: look again next time even if the directory is unchanged.
      const again = aside.waiting || adopted.waiting || q.invalid.some((e) => !aside.seen.has(e.error)) || value.length < q.tasks.length;
      return { value, again };
    });
    return tasks ?? [];
  }

  /**
   * Set the bad entries of the queue aside, under the state lock. waiting:
   * some are left for a later look; seen: the errors of every bad entry
   * handled (those that cannot be moved are warned about once).
   */
  private async setAside(): Promise<{ waiting: boolean; seen: Set<string> }> {
    const lock = await lockState(this.paths);
    let res: SetAsideResult;
    try {
      const q = await readQueue(this.paths.stateDir, taskDefaults(this.config));
      res = setAsideInvalid(this.paths.stateDir, q.invalid, { settleMs: SETTLE_MS });
      for (const r of res.moved) this.log.append(rejectionEvent(this.paths.stateDir, r));
    } finally {
      lock.release();
    }
    const seen = new Set<string>();
    for (const r of res.moved) {
      seen.add(r.error);
      this.out.warn(`rejected ${r.error}; moved to ${r.to}`);
    }
    let waiting = false;
    for (const l of res.left) {
      seen.add(l.error);
      if (l.why.startsWith('it changed a moment ago')) waiting = true;
      else if (!this.warnedFiles.has(`${l.error}:${l.why}`)) {
        this.warnedFiles.add(`${l.error}:${l.why}`);
        this.out.warn(`ignoring ${l.error}: ${l.why}`);
      }
    }
    return { waiting, seen };
  }

  private known: Set<string> | null = null;

  /**
   * Files dropped into queue/ by hand become tasks like `sw-agent add` ones:
   * written out in full and logged, once they have settled (a file still
   * being written is left for the next look).
   */
  private async adopt(tasks: Task[]): Promise<{ count: number; waiting: boolean }> {
    // Tasks `sw-agent add` queued since the agent last looked are in the log already.
    if (!this.known || tasks.some((t) => !this.known?.has(t.id))) {
      const snap = await this.log.snapshot();
      try {
        this.known = new Set((snap.db.exec('SELECT id FROM tasks')[0]?.values ?? []).map((v) => String(v[0])));
      } finally {
        snap.db.close();
      }
    }
    let count = 0;
    let waiting = false;
    const now = Date.now();
    for (const t of tasks) {
      if (this.known.has(t.id)) continue;
      const yml = path.join(queueDir(this.paths.stateDir), `${t.id}.yml`);
      let mtime: number;
      try {
        mtime = fs.lstatSync(fs.existsSync(taskFile(this.paths.stateDir, t.id)) ? taskFile(this.paths.stateDir, t.id) : yml).mtimeMs;
      } catch {
        continue;
      }
      if (Math.abs(now - mtime) < SETTLE_MS) {
        waiting = true;
        continue;
      }
      const lock = await lockState(this.paths);
      try {
        await writeTask(this.paths.stateDir, t);
        // A task dropped in as ID.yml lives on as ID.yaml.
        fs.rmSync(yml, { force: true });
        logTaskAdded(this.paths, t);
      } finally {
        lock.release();
      }
      this.known.add(t.id);
      count++;
      this.out.info(`adopted task ${t.id} from ${taskFile(this.paths.stateDir, t.id)}`);
    }
    return { count, waiting };
  }

  private async nextTask(current: string | null): Promise<Task | null> {
    const tasks = await this.queue();
    // The task the agent was on when it stopped goes first: it resumes where it was.
    const resume = current ? tasks.find((t) => t.id === current && (t.status === 'pending' || t.status === 'in_progress')) : undefined;
    if (resume) return resume;
    const inProgress = tasks.find((t) => t.status === 'in_progress');
    if (inProgress) return inProgress;
    return runOrder(tasks)[0] ?? null;
  }

  /** Read the task again under the lock and change it; null if it was cancelled meanwhile. */
  private async changeTask(id: string, change: (t: Task) => Task | null): Promise<Task | null> {
    const lock = await lockState(this.paths);
    try {
      const t = await readTask(this.paths, this.config, id);
      if (t.status === 'cancelled') return null;
      const next = change(t);
      if (next) await writeTask(this.paths.stateDir, next);
      return next ?? t;
    } finally {
      lock.release();
    }
  }

  private async runTask(initial: Task): Promise<void> {
    const file = transcriptFile(this.paths.stateDir, initial.id);
    let view = attemptView(readTranscript(file), initial.attempt);
    const prevFailure = initial.attempt > 1 ? (initial.reason ?? 'it did not pass') : null;
    if (!view.started) {
      const reset = await this.prepareWorkspace(initial);
      const context = await this.attemptContext();
      appendLine(file, { type: 'attempt', attempt: initial.attempt, ts: new Date().toISOString(), session: this.session, ...(reset ? { reset } : {}), ...(context ? { context } : {}) });
      view = attemptView(readTranscript(file), initial.attempt);
    }
    this.log.append({ t: 'task_started', task: initial.id, attempt: initial.attempt, session: this.session });
    const task = await this.changeTask(initial.id, (t) => ({ ...t, status: 'in_progress', updated: new Date().toISOString() }));
    if (!task) return;
    if (view.interrupted) {
      // The action was running when the agent stopped: say so, as the step's result.
      const i = view.interrupted;
      appendLine(file, { type: 'step', attempt: task.attempt, step: i.step, ts: new Date().toISOString(), action: i.action, observation: failedObservation(INTERRUPTED_NOTE) });
      this.out.notice(`task ${task.id}: resuming after step ${i.step}, whose effect is unknown`);
      view = attemptView(readTranscript(file), task.attempt);
    } else if (view.steps.length > 0) this.out.notice(`task ${task.id}: resuming at step ${view.steps.length + 1} of attempt ${task.attempt}`);
    await this.updateState({ status: 'working', task: task.id, attempt: task.attempt, step: view.steps.length });
    const startedAt = Date.parse((view.started as { ts: string }).ts);
    const head: ChatMessage[] = [
      { role: 'system', content: systemPrompt(this.ws) },
      { role: 'user', content: taskPrompt(task, prevFailure, view.started?.context ?? '') },
    ];
    let finished: { summary: string } | null = null;
    let failure: string | null = null;
    // Stopped after the model said finish but before the check ran: run the check now.
    const lastStep = view.steps[view.steps.length - 1];
    if (lastStep?.action?.action === 'finish') finished = { summary: lastStep.action.summary };
    while (!this.stopReason && !finished) {
      const step = view.steps.length + 1;
      // Time spent waiting for a human's approval does not count against the task.
      if (Date.now() - startedAt - this.approvalWaitMs(task) > task.timeout) {
        failure = `the task took longer than its ${formatDuration(task.timeout)} limit`;
        break;
      }
      const cur = await this.changeTask(task.id, () => null);
      if (!cur) {
        this.out.notice(`task ${task.id} was cancelled; stopping it`);
        appendLine(file, { type: 'end', attempt: task.attempt, ts: new Date().toISOString(), outcome: 'cancelled', reason: 'cancelled by a human' });
        await this.dropPretask(task.id);
        await this.checkpoint('task', `task ${task.id} cancelled`);
        return;
      }
      const gov = await this.obeyGovernor();
      const paused = readAgentState(this.paths).paused;
      if (gov === 'pause') await this.pressureRetention();
      if (gov || paused) {
        this.setStatus(`${task.id}: waiting (${gov ? this.governorNote : 'paused'})`);
        await sleep(this.tick, this.stopCtrl.signal);
        continue;
      }
      if (this.rssExceeded()) {
        this.requestStop('rss');
        break;
      }
      this.heartbeat();
      this.setStatus(`${task.id} step ${step} (attempt ${task.attempt})`);
      await this.updateState({ step });
      const r = await this.oneStep(task, step, head, view, file);
      if (r === 'stop') break;
      view = attemptView(readTranscript(file), task.attempt);
      if (r && 'finish' in r) {
        finished = { summary: r.finish };
        break;
      }
      if (r && 'looping' in r) {
        failure = r.looping;
        break;
      }
    }
    if (this.stopReason) return;
    await this.finishAttempt(task, file, finished, failure);
  }

  /**
   * Before attempt 1 the workspace is snapshotted (on refs/selfware/pretask/<task>,
   * the branch it was on in the commit message); before a retry it is put back.
   */
  private async prepareWorkspace(t: Task): Promise<string | null> {
    const ws = workspaceGit(this.ws);
    const ref = `${PRETASK_PREFIX}${t.id}`;
    const existing = await ws.readRef(ref);
    if (!existing) {
      // The first attempt (or a task dropped in at a later attempt): the workspace as it is now.
      const snap = await snapshotWorkspace(this.ws);
      const body = workspaceCommitObject(snap.tree, snap.head, Math.floor(Date.now() / 1000), `selfware: the workspace before task ${t.id}\n\nSelfware-Branch: ${snap.branch ?? 'none'}\n`);
      writeRef(ws.gitDir, ref, writeLooseObject(ws.gitDir, 'commit', body));
      return null;
    }
    if (t.attempt === 1) return null;
    const raw = await ws.out(['cat-file', 'commit', ref]);
    const tree = /^tree ([0-9a-f]+)$/m.exec(raw)?.[1] ?? null;
    const head = /^parent ([0-9a-f]+)$/m.exec(raw)?.[1] ?? null;
    const b = /^Selfware-Branch: (.+)$/m.exec(raw)?.[1];
    const pseudo = { id: `pretask ${t.id}`, workspace: { tree, head, branch: b && b !== 'none' ? b : null, commit: null } } as unknown as Checkpoint;
    const forensics = await restoreWorkspace(this.ws, pseudo, new Date());
    this.out.info(`task ${t.id}: the workspace is back as it was before the task, for attempt ${t.attempt} (what was there is at ${forensics})`);
    return `workspace reset to the pre-task snapshot; the failed attempt's files are at ${forensics}`;
  }

  /** How long this attempt's actions have waited for approvals (decided or still pending). */
  private approvalWaitMs(t: Task): number {
    let ms = 0;
    for (const a of listApprovals(this.paths)) {
      if (a.task !== t.id || a.attempt !== t.attempt) continue;
      ms += (a.decided ? Date.parse(a.decided) : Date.now()) - Date.parse(a.requested);
    }
    return ms;
  }

  /** The pre-task snapshot is kept while a retry may need it. */
  private async dropPretask(id: string): Promise<void> {
    await workspaceGit(this.ws).run(['update-ref', '-d', `${PRETASK_PREFIX}${id}`], { allowFail: true });
  }

  /** One model answer and its action; returns 'stop' when stopping, {finish} when done. */
  private async oneStep(task: Task, step: number, head: ChatMessage[], view: ReturnType<typeof attemptView>, file: string): Promise<'stop' | { finish: string } | { looping: string } | null> {
    let result: CompleteResult;
    const stepCtrl = new AbortController();
    const timer = setTimeout(() => stepCtrl.abort(), this.config.agent.step_timeout);
    const onStop = (): void => stepCtrl.abort();
    this.stopCtrl.signal.addEventListener('abort', onStop, { once: true });
    try {
      if (!this.backend.loaded) await this.loadModel(this.backend.quantization ?? this.startLevel());
      // Built with the loaded model's tokenizer; condensed first if it outgrew the budget.
      const messages = await this.promptFor(task, step, head, view, file, stepCtrl.signal);
      this.startRequest();
      result = await this.backend.complete({
        messages,
        schema: ACTION_SCHEMA as unknown as Record<string, unknown>,
        maxTokens: this.config.llm.max_tokens,
        signal: stepCtrl.signal,
        task: { id: task.id, title: task.title, attempt: task.attempt, step },
        onToken: () => this.sawToken(),
      });
    } catch (e) {
      if (this.stopReason) return 'stop';
      if (e instanceof LlmUnavailableError) throw e;
      if (e instanceof TransientLlmError) {
        this.setStatus(`${task.id}: the model is not answering (${e.message}); trying again in ${formatDuration(e.retryAfterMs)}`);
        this.out.warn(`model request failed: ${e.message}; retrying in ${formatDuration(e.retryAfterMs)}`);
        this.log.append({ t: 'llm_call', session: this.session, task: task.id, attempt: task.attempt, step, backend: this.backend.name, ok: false, error: e.message });
        await sleep(e.retryAfterMs, this.stopCtrl.signal);
        return null;
      }
      const timedOut = stepCtrl.signal.aborted;
      const error = timedOut ? `the model did not answer within the step limit (${formatDuration(this.config.agent.step_timeout)})` : `the model failed: ${(e as Error).message}`;
      // Errors in a row wait longer each time (1 s, 2 s ... 60 s): no tight loop on a broken model.
      this.llmErrors++;
      const wait = Math.min(60_000, 1000 * 2 ** Math.min(this.llmErrors - 1, 6));
      this.out.warn(`task ${task.id} step ${step}: ${error}; next try in ${formatDuration(wait)}`);
      this.log.append({ t: 'llm_call', session: this.session, task: task.id, attempt: task.attempt, step, backend: this.backend.name, ok: false, error });
      appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action: null, observation: failedObservation(error, { timedOut }) });
      this.log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: 'none', status: 'llm_error' });
      await sleep(wait, this.stopCtrl.signal);
      return null;
    } finally {
      this.inLlm = false;
      clearTimeout(timer);
      this.stopCtrl.signal.removeEventListener('abort', onStop);
    }
    this.lastRequestAt = Date.now();
    this.tokensPerS = result.tokensPerS;
    this.llmErrors = 0;
    await this.updateState({ tokens_per_s: result.tokensPerS === null ? null : Math.round(result.tokensPerS * 10) / 10, quantization: result.quantization });
    this.log.append({
      t: 'llm_call', session: this.session, task: task.id, attempt: task.attempt, step, backend: this.backend.name, model: result.model,
      quantization: result.quantization, tokens_in: result.tokensIn, tokens_out: result.tokensOut, latency_ms: result.latencyMs, tokens_per_s: result.tokensPerS, ok: true,
      tokens_evaluated: result.tokensEvaluated, tokens_reused: result.tokensReused, eval_ms: result.evalMs,
    }); // prettier-ignore
    const llm = {
      tokens_in: result.tokensIn, tokens_out: result.tokensOut, latency_ms: result.latencyMs, tokens_per_s: result.tokensPerS,
      ...(result.tokensEvaluated !== null ? { tokens_evaluated: result.tokensEvaluated } : {}), ...(result.tokensReused !== null ? { tokens_reused: result.tokensReused } : {}),
    }; // prettier-ignore
    const parsed = parseAction(result.text);
    if ('error' in parsed) {
      appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action: null, answer: result.text.slice(0, 2000), llm, observation: failedObservation(`your answer was not a valid action: ${parsed.error}`) });
      this.log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: 'invalid', status: 'invalid' });
      return null;
    }
    const action = parsed.action;
    if (action.action === 'finish') {
      appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action, llm, observation: { ok: true, exit_code: null, signal: null, output: 'finished; the check runs next', cut: 0, timed_out: false, duration_ms: 0 } });
      this.log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: 'finish', status: 'ok' });
      return { finish: action.summary };
    }
    const verdict = evaluate(action, this.config.policy);
    let decision: string = verdict.decision;
    let obs: Observation;
    if (verdict.decision === 'deny') {
      obs = failedObservation(`refused by the policy (deny rule '${verdict.rule}')`);
      this.out.warn(`task ${task.id} step ${step}: ${describeAction(action)} refused by the deny rule '${verdict.rule}'`);
    } else {
      if (verdict.decision === 'approve') {
        const answer = await this.awaitApproval(task, step, action, verdict.rule);
        if (answer === 'stop') return 'stop';
        decision = answer.status;
        if (answer.status !== 'approved') {
          obs = failedObservation(`a human rejected this action${answer.reason ? `: ${answer.reason}` : ''}${answer.by === 'timeout' ? ' (no answer in time)' : ''}`);
          appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action, llm, decision, observation: obs });
          this.log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: action.action, status: 'rejected' });
          return null;
        }
      }
      appendLine(file, { type: 'intent', attempt: task.attempt, step, ts: new Date().toISOString(), action });
      obs = await this.execute(task, action);
      if (this.stopReason && !obs.ok) {
        // Killed by the stop, part done: its effect is as unknown as after a crash, and handled the same
        // way. The intent stays without a step; the next start records the step as interrupted and the
        // model is told to check what it did (recorded now as a plain failure, a model would just run it again).
        this.out.notice(`task ${task.id} step ${step}: ${describeAction(action)} killed as the agent stops; its effect is unknown, and the next start tells the model so`);
        return 'stop';
      }
    }
    // The task log first: the step ran. A crash between the two leaves the step in the task log and
    // the intent without a step in the transcript, and the next start records it (the same step
    // number, an upsert) as interrupted. The other order lost the step from the task log, and the
    // report counted one step less (a loaded run of sw-report.test.ts killed the agent just there).
    // The loop guard: judged on the attempt's steps with this one, the workspace as it left it.
    const workspace = (await workspaceFingerprint(this.ws)) ?? undefined;
    const verdict2 = judge([...view.steps, { action, observation: obs, workspace }], this.loopLimits());
    const guard = verdict2.kind === 'note' ? verdict2.note : undefined;
    this.log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: action.action, status: decision === 'deny' ? 'denied' : obs.ok ? 'ok' : 'failed' });
    appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action, llm, decision, observation: obs, ...(workspace ? { workspace } : {}), ...(guard ? { guard } : {}) });
    if (guard) this.out.info(`task ${task.id} step ${step}: told the model: ${guard}`);
    if (verdict2.kind === 'end') return { looping: verdict2.reason };
    return null;
  }

  /**
   * What an attempt is given besides its task: the run's memory (notes and
   * outcomes, newest first) and a map of the repository, within
   * agent.memory_budget tokens (the map at most a third). Memory files that
   * cannot be read are set aside (under the state lock) and said.
   */
  private async attemptContext(): Promise<string> {
    const budget = this.config.agent.memory_budget;
    if (budget <= 0) return '';
    const count = this.tokenCounter();
    const map = await repoMap(this.ws, Math.floor(budget / 3), count);
    const lock = await lockState(this.paths);
    let mem: ReturnType<typeof memorySection>;
    try {
      mem = memorySection(this.paths.stateDir, budget - (map ? count(map) : 0), count);
    } finally {
      lock.release();
    }
    for (const p of mem.problems) this.out.warn(`memory: ${p}`);
    return [mem.text, map ? `The repository:\n${map}` : ''].filter((x) => x !== '').join('\n\n');
  }

  /** An attempt's outcome in the run's memory, and the memory kept within its limits. */
  private rememberOutcome(task: Task, outcome: string, reason: string | null, steps: number, detail: string | null): void {
    try {
      appendOutcome(this.paths.stateDir, { time: new Date(), task: task.id, attempt: task.attempt, outcome: outcome === 'completed' ? 'done' : outcome, reason, steps, detail });
      const b = boundMemory(this.paths.stateDir, { notes: this.config.agent.memory_notes, outcomes: this.config.agent.memory_outcomes });
      for (const p of b.problems) this.out.warn(`memory: ${p}`);
    } catch (e) {
      this.out.warn(`memory: cannot record the outcome of task ${task.id}: ${(e as Error).message}`);
    }
  }

  /** A note for the run's memory (state/memory/notes.md), which later tasks are given. */
  private note(task: Task, text: string): Observation {
    const started = Date.now();
    try {
      const line = appendNote(this.paths.stateDir, { time: new Date(), task: task.id, text });
      if (line === null) return failedObservation('the note is empty', { durationMs: Date.now() - started });
      return { ok: true, exit_code: null, signal: null, output: `noted in state/memory/notes.md; later tasks of this run are given it:\n${line}`, cut: 0, timed_out: false, duration_ms: Date.now() - started };
    } catch (e) {
      return failedObservation(`the note could not be kept: ${(e as Error).message}`, { durationMs: Date.now() - started });
    }
  }

  private loopLimits(): LoopLimits {
    const a = this.config.agent;
    return { repeat: a.loop_repeat, failing: a.loop_failing, unchanged: a.loop_unchanged };
  }

  /** What actions run with: never the model endpoint's key. */
  private actionEnv(): NodeJS.ProcessEnv {
    const env = actionEnv();
    if (this.config.llm.api_key_env) delete env[this.config.llm.api_key_env];
    return env;
  }

  /** Tokens by the loaded model's tokenizer where the backend has one, else the estimate. */
  private tokenCounter(): TokenCounter {
    const b = this.backend;
    if (!b.countTokens) return estimateTokens;
    return (text) => b.countTokens?.(text) ?? estimateTokens(text);
  }

  /**
   * The messages for this step (lib/agent/transcript.ts). When they outgrow
   * the budget, the older steps are condensed once, a large part at a time,
   * and the condensation recorded in the transcript before it is used, so
   * that every later step, and the next start, gives the same head.
   */
  private async promptFor(task: Task, step: number, head: ChatMessage[], view: AttemptView, file: string, signal: AbortSignal): Promise<ChatMessage[]> {
    const budget = this.contextBudget();
    const count = this.tokenCounter();
    const built = buildMessages(head, view, budget, count);
    if (!built.over) return built.messages;
    const plan = planCondense(view, budget, this.config.agent.condense_keep, count);
    if (!plan) {
      const key = `${task.id}.${task.attempt}`;
      if (!this.warnedOverBudget.has(key)) {
        this.warnedOverBudget.add(key);
        this.out.warn(`task ${task.id} step ${step}: the task and its newest step alone take ${built.tokens} tokens, more than the context budget (${budget}); the model gets them as they are`);
      }
      return built.messages;
    }
    const first = plan.steps[0]?.step;
    const range = first === undefined ? 'no new steps' : first === plan.through ? `step ${first}` : `steps ${first}-${plan.through}`;
    let part = plan.lines.join('\n');
    let by: 'rule' | 'model' = 'rule';
    if (this.config.agent.condense === 'model' && plan.steps.length > 0) {
      try {
        part = `${range}, summarised: ${await this.modelSummary(task, step, head, view, plan, budget, count, signal)}`;
        by = 'model';
      } catch (e) {
        if (signal.aborted) throw e;
        this.out.warn(`task ${task.id} step ${step}: the model could not summarise ${range} (${(e as Error).message.split('\n')[0]}); one line a step instead`);
      }
    }
    const line = { type: 'condense' as const, attempt: task.attempt, ts: new Date().toISOString(), through: plan.through, summary: condensedSummary(plan.base, part, budget, count), by };
    appendLine(file, line);
    const after = buildMessages(head, { ...view, condensed: line }, budget, count);
    this.log.append({ t: 'condense', session: this.session, task: task.id, attempt: task.attempt, step, through: plan.through, steps: plan.steps.length, by, tokens_before: built.tokens, tokens_after: after.tokens, budget });
    this.out.info(`task ${task.id} step ${step}: condensed ${range} ${by === 'model' ? 'into the model\'s summary' : 'to one line each'} to fit the context (${built.tokens} -> ${after.tokens} tokens of ${budget})`);
    return after.messages;
  }

  /**
   * The model's summary of the steps a condensation takes (agent.condense:
   * model): one paragraph. Asked as the continuation of the prompt the model
   * last evaluated (the steps but the newest, which fit), the question added
   * to its last message: it evaluates little more than the question. Where
   * even that would not fit, the steps go in a request of their own.
   */
  private async modelSummary(task: Task, step: number, head: ChatMessage[], view: AttemptView, plan: CondensePlan, budget: number, count: TokenCounter, signal: AbortSignal): Promise<string> {
    const maxChars = 1200;
    const first = plan.steps[0]?.step ?? plan.through;
    const range = first === plan.through ? `step ${first}` : `steps ${first}-${plan.through}`;
    const ask = `Before the next step: condense ${range} of this attempt into a short summary for the steps to come: what was done, what was learned (facts, file names, errors), and what is left. Answer with one JSON object {"summary": "..."}.`;
    const before = buildMessages(head, { ...view, steps: view.steps.slice(0, -1), interrupted: null }, budget, count);
    let messages: ChatMessage[];
    if (view.steps.length > 1 && !before.over && before.messages.length > 2) {
      messages = before.messages.map((m) => ({ ...m }));
      const last = messages[messages.length - 1] as ChatMessage;
      last.content += `\n\n${ask}`;
    } else {
      const turns = plan.steps.flatMap((s) => stepTurns(s, budget, count)).map((m) => `${m.role === 'assistant' ? 'action' : 'result'}: ${m.content}`);
      let body = turns.join('\n');
      if (count(body) > Math.floor(budget / 2)) body = plan.lines.join('\n');
      messages = [
        { role: 'system', content: "You condense the record of an engineer's work on a task for the steps to come." },
        { role: 'user', content: `Task ${task.id}: ${task.title}\n\n${plan.base ? `What came before, in short:\n${plan.base}\n\n` : ''}The steps:\n${body}\n\n${ask}` },
      ];
    }
    this.startRequest();
    let r: CompleteResult;
    try {
      r = await this.backend.complete({
        messages,
        schema: CONDENSE_SCHEMA,
        maxTokens: Math.max(64, Math.min(this.config.llm.max_tokens, Math.floor(budget / 10))),
        signal,
        task: { id: task.id, title: task.title, attempt: task.attempt, step },
        onToken: () => this.sawToken(),
      });
    } finally {
      this.inLlm = false;
    }
    this.log.append({
      t: 'llm_call', session: this.session, task: task.id, attempt: task.attempt, step, backend: this.backend.name, model: r.model, purpose: 'condense',
      quantization: r.quantization, tokens_in: r.tokensIn, tokens_out: r.tokensOut, latency_ms: r.latencyMs, tokens_per_s: r.tokensPerS, ok: true,
      tokens_evaluated: r.tokensEvaluated, tokens_reused: r.tokensReused, eval_ms: r.evalMs,
    }); // prettier-ignore
    let summary: unknown;
    try {
      summary = (JSON.parse(r.text) as { summary?: unknown }).summary;
    } catch {
      throw new Error(`not a JSON object: ${r.text.slice(0, 80)}`);
    }
    if (typeof summary !== 'string' || summary.trim() === '') throw new Error('no summary in the answer');
    const one = summary.replace(/\s+/g, ' ').trim();
    return one.length > maxChars ? `${one.slice(0, maxChars - 3)}...` : one;
  }

  private contextBudget(): number {
    const base = this.config.agent.context_budget > 0 ? this.config.agent.context_budget : this.config.llm.context - this.config.llm.max_tokens;
    return this.contextLimit ? Math.min(base, this.contextLimit - this.config.llm.max_tokens) : base;
  }

  private execute(task: Task, a: Action): Promise<Observation> {
    const budget = this.config.agent.output_budget;
    switch (a.action) {
      case 'shell':
        return runShell(a.command, {
          cwd: this.ws,
          shell: this.config.agent.shell,
          timeoutMs: this.config.agent.tool_timeout,
          budget,
          env: this.actionEnv(),
          signal: this.stopCtrl.signal,
        });
      case 'read_file':
        return readFileAction(this.ws, a.path, budget);
      case 'write_file':
        return writeFileAction(this.ws, a.path, a.content);
      case 'view':
        return viewAction(this.ws, a.path, { start: a.start, end: a.end }, budget);
      case 'search':
        return searchAction(this.ws, a.pattern, a.path, { budget, timeoutMs: this.config.agent.tool_timeout });
      case 'edit':
        return editAction(this.ws, a.path, a.old, a.new, budget);
      case 'apply_patch':
        return applyPatchAction(this.ws, a.patch, { budget, timeoutMs: this.config.agent.tool_timeout });
      case 'note':
        return Promise.resolve(this.note(task, a.text));
      case 'finish':
        return Promise.resolve({ ok: true, exit_code: null, signal: null, output: '', cut: 0, timed_out: false, duration_ms: 0 });
    }
  }

  /**
   * A pre-op checkpoint, then wait for `sw-agent approve|reject` (heartbeats go
   * on). On timeout: reject, or pause the run until a human decides.
   */
  private async awaitApproval(task: Task, step: number, action: Action, rule: string | null): Promise<Approval | 'stop'> {
    const id = `${task.id}.${task.attempt}.${step}`;
    let a = readApproval(this.paths, id);
    if (!a) {
      const cp = await this.checkpoint('pre-op', `before ${describeAction(action)} (approval ${id})`);
      const now = Date.now();
      a = await requestApproval(this.paths, { id, task: task.id, attempt: task.attempt, step, action, rule, requested: new Date(now).toISOString(), timeout_at: new Date(now + this.config.policy.approval_timeout).toISOString(), checkpoint: cp });
      this.out.notice(`task ${task.id} step ${step}: ${describeAction(action)} waits for approval: sw-agent approve ${this.paths.run} ${id}`);
    }
    let pausedForIt = false;
    while (!this.stopReason) {
      a = readApproval(this.paths, id) ?? a;
      if (a.status !== 'pending') {
        if (pausedForIt) await setPaused(this.paths, false, null);
        this.out.info(`approval ${id}: ${a.status}${a.reason ? ` (${a.reason})` : ''}`);
        return a;
      }
      if (Date.now() >= Date.parse(a.timeout_at) && !pausedForIt) {
        if (this.config.policy.on_timeout === 'reject') {
          try {
            return await decideApproval(this.paths, id, 'rejected', 'no answer in time', 'timeout');
          } catch (e) {
            if (!(e instanceof SwError)) throw e;
            continue;
          }
        }
        pausedForIt = true;
        await setPaused(this.paths, true, `approval ${id} timed out`);
        this.out.warn(`approval ${id} timed out: the run is paused until a human approves or rejects it`);
      }
      this.setStatus(`${task.id} step ${step}: waiting for approval ${id}`);
      this.heartbeat();
      if (this.rssExceeded()) {
        this.requestStop('rss');
        break;
      }
      // An unload the governor asks for is obeyed while a human decides.
      await this.obeyGovernor();
      await sleep(Math.min(this.tick, 500), this.stopCtrl.signal);
    }
    return 'stop';
  }

  private async finishAttempt(task: Task, file: string, finished: { summary: string } | null, failure: string | null): Promise<void> {
    let outcome: 'completed' | 'failed';
    let reason: string | null = failure;
    // What the run's memory keeps of a failed check: a few words, and the most telling line of its output.
    let lesson: { reason: string; detail: string | null } | null = null;
    if (finished && !failure) {
      if (task.verify) {
        this.setStatus(`${task.id}: verifying`);
        const obs = await runShell(task.verify, { cwd: this.ws, shell: this.config.agent.shell, timeoutMs: Math.max(this.config.agent.tool_timeout, 60_000), budget: this.config.agent.output_budget, env: this.actionEnv(), signal: this.stopCtrl.signal });
        if (this.stopReason) return;
        appendLine(file, { type: 'verify', attempt: task.attempt, ts: new Date().toISOString(), command: task.verify, observation: obs });
        outcome = obs.ok ? 'completed' : 'failed';
        if (!obs.ok) {
          reason = `verify failed: ${obs.error ?? `exit status ${obs.exit_code}`}${obs.output ? `: ${obs.output.trim().split('\n').slice(-3).join(' | ').slice(0, 300)}` : ''}`;
          lesson = { reason: obs.timed_out ? 'verify timed out' : obs.exit_code !== null ? `verify exit ${obs.exit_code}` : 'verify failed', detail: outcomeDetail(obs.output) || null };
        }
      } else outcome = 'completed';
    } else outcome = 'failed';
    const steps = attemptView(readTranscript(file), task.attempt).steps.length;
    // The task log first: it is the authority recovery reconciles the queue with.
    const lock = await lockState(this.paths);
    let next: Task | null = null;
    try {
      const cur = await readTask(this.paths, this.config, task.id);
      if (cur.status !== 'cancelled') {
        this.log.append({ t: 'task_outcome', task: task.id, attempt: task.attempt, outcome, reason, steps, session: this.session });
        appendLine(file, { type: 'end', attempt: task.attempt, ts: new Date().toISOString(), outcome, reason, ...(finished ? { summary: finished.summary } : {}) });
        const now = new Date().toISOString();
        next =
          outcome === 'completed'
            ? { ...cur, status: 'completed', reason: null, updated: now }
            : task.attempt < task.max_attempts
              ? { ...cur, status: 'pending', attempt: task.attempt + 1, reason, updated: now }
              : { ...cur, status: 'failed', reason, updated: now };
        await writeTask(this.paths.stateDir, next);
        this.rememberOutcome(task, outcome, lesson?.reason ?? (outcome === 'completed' ? null : reason), steps, lesson ? lesson.detail : finished && outcome === 'completed' ? finished.summary : null);
      }
    } finally {
      lock.release();
    }
    if (!next) return;
    if (next.status !== 'pending') await this.dropPretask(task.id);
    const msg = outcome === 'completed' ? `completed in ${plural(steps, 'step')}` : `attempt ${task.attempt} of ${task.max_attempts} failed: ${reason}${next.status === 'pending' ? '; it will be retried' : ''}`;
    if (outcome === 'completed') this.out.notice(`task ${task.id} ${msg}`);
    else this.out.warn(`task ${task.id} ${msg}`);
    await this.updateState({ task: null, attempt: null, step: null });
    await this.checkpoint('task', `task ${task.id} ${outcome} (attempt ${task.attempt})`);
  }

  private async checkpoint(kind: 'task' | 'pre-op' | 'shutdown' | 'routine', message: string): Promise<string | null> {
    try {
      const { result } = await createCheckpoint(this.paths, this.config, { kind, message });
      return result.skipped ? result.latest.id : result.checkpoint.id;
    } catch (e) {
      // At err: the run goes on unprotected until checkpoints work again (the task log, status and the report say so too).
      this.out.error(`${kind} checkpoint failed: ${describeError(e)}`);
      return null;
    }
  }

  private async shutdown(): Promise<number> {
    const reason = this.stopReason ?? 'clean';
    this.setStatus(reason === 'rss' ? 'stopping: memory above the limit' : 'stopping');
    // The stopped state first, so the shutdown checkpoint holds the run as it
    // stays: a routine checkpoint that ends after it (its timer fired as the
    // run was stopped) finds nothing new and is skipped.
    try {
      await this.updateState({ status: 'stopped', pid: null, model_loaded: false });
    } catch (e) {
      // The checkpoint and the end of the session matter more: go on to them.
      this.out.warn(`cannot record the stop in agent.json: ${(e as Error).message}`);
    }
    const id = await this.checkpoint('shutdown', reason === 'rss' ? 'memory above the limit' : 'stop');
    // After the checkpoint, which matters more: what the model evaluated, for the next start.
    await this.saveModelState(reason === 'rss' ? 'memory' : 'stop');
    const code = reason === 'rss' ? EXIT_RSS : EXIT.OK;
    await this.endSession(reason, code, reason === 'rss' ? (this.guardReason ?? undefined) : undefined);
    this.out.info(`stopped${id ? ` after shutdown checkpoint ${id}` : ''}`);
    return code;
  }

  private async endSession(state: string, code: number, detail?: string): Promise<void> {
    if (!this.session) return;
    try {
      this.log.append({ t: 'session_end', session: this.session, state, exit_code: code, ...(detail ? { reason: detail } : {}) });
    } catch (e) {
      this.out.warn(`cannot record the end of the session: ${(e as Error).message}`);
    }
    if (notifyEnabled()) status(`stopped (${state})`);
  }
}
