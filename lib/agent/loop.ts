// sw-agent run: the agent that works for days. It takes tasks from the queue,
// asks the model for one action at a time, runs it in the workspace under the
// policy, records each step durably before the next, verifies, checkpoints,
// and tells systemd how it is doing (READY, WATCHDOG, STATUS, STOPPING).
// A SIGTERM ends the step in hand, checkpoints and ends the session cleanly;
// a crash at any instant is picked up by sw-recover and the next start resumes
// the interrupted task at its next step.
//
// This file is the process's life: the lock, recovery, the start, the main
// loop, a full disk and the shutdown. Its parts: session.ts (what they all
// share, and systemd's view), model.ts (the model and the governor),
// queue.ts (the queue and idling), attempt.ts and step.ts (the work),
// prompt.ts (what the model is given), recall.ts (the run's memory).

import fs from 'node:fs';
import path from 'node:path';
import type { RunConfig } from '../config/index.js';
import { DISK_LOW_BYTES, EXIT, exitCodeFor, isDiskFull, tempFailError, unavailableError } from '../exit.js';
import { lockHolder, tryLock, type Lock } from '../lock.js';
import { ready, status, watchdogIntervalMs } from '../notify.js';
import { EXIT_ESCALATED, describeChange, markEscalationDelivered, pendingEscalation, recover } from '../recover/index.js';
import type { RunPaths } from '../run.js';
import { agentLockFile, initRun, lockState } from '../state/index.js';
import { sleep } from '../sleep.js';
import { formatDuration } from '../units.js';
import { Attempts } from './attempt.js';
import { LlmUnavailableError } from './llm/types.js';
import { Model } from './model.js';
import { Prompter } from './prompt.js';
import { TaskQueue } from './queue.js';
import { Session, type SessionOptions, type StopReason } from './session.js';
import { readAgentState } from './state.js';
import { Steps } from './step.js';

export { residentMemory } from './session.js';
export { systemPrompt, taskPrompt } from './prompt.js';

/** Exit status after the memory guard: systemd restarts the agent (it is not in RestartPreventExitStatus=). */
export const EXIT_RSS = 3;

/** How often a disk-full wait looks for space, and how much it waits for (room for a checkpoint, not a byte). */
const DISK_POLL_MS = Number(process.env.SELFWARE_DISK_POLL_MS) || 5_000;
/** Space back: as much free as below which a failed write counts as a full disk. */
const DISK_RESUME_BYTES = DISK_LOW_BYTES;

export type AgentOptions = SessionOptions;

export class Agent {
  private readonly s: Session;
  private readonly model: Model;
  private readonly queue: TaskQueue;
  private readonly attempts: Attempts;

  constructor(paths: RunPaths, config: RunConfig, opts: AgentOptions) {
    this.s = new Session(paths, config, opts);
    this.model = new Model(this.s);
    this.queue = new TaskQueue(this.s, this.model);
    this.attempts = new Attempts(this.s, this.model, this.queue, new Steps(this.s, this.model, new Prompter(this.s, this.model)));
  }

  /** The whole life of the agent process; returns its exit status. */
  async run(): Promise<number> {
    const paths = this.s.paths;
    const lock = tryLock(agentLockFile(paths));
    if (!lock) {
      const h = lockHolder(agentLockFile(paths));
      throw tempFailError(`run '${paths.run}' already has an agent running${h ? ` (pid ${h.pid})` : ''}`);
    }
    try {
      return await this.runLocked(lock);
    } finally {
      lock.release();
    }
  }

  private async runLocked(_lock: Lock): Promise<number> {
    const { paths, config, out, backend } = this.s;
    const stateLock = await lockState(paths);
    try {
      await initRun(paths, this.s.ws);
    } finally {
      stateLock.release();
    }
    // Escalations reach systemd through the main process's exit status.
    const esc = await pendingEscalation(paths);
    if (esc) return this.deliverEscalation(esc);
    const rec = await recover(paths, config, {
      agentLockHeld: true,
      say: (level, text) => (level === 'warn' ? out.warn(text) : level === 'notice' ? out.notice(text) : out.info(text)),
    });
    if (rec.action !== 'none') {
      out.notice(`recovered before starting: ${rec.action}, ${rec.reconciled.length} task(s) reconciled`);
      for (const c of rec.reconciled) out.verbose(describeChange(c));
    }
    if (rec.escalated) {
      out.error(`escalating: ${rec.escalation}`);
      return this.deliverEscalation(rec.escalation ?? 'escalated');
    }

    this.s.begin();
    const onSignal = (sig: NodeJS.Signals): void => {
      if (this.s.stopReason) return;
      out.notice(`${sig}: finishing the step in hand, then a shutdown checkpoint`);
      this.requestStop('clean');
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const wdMs = watchdogIntervalMs();
    const wdTimer = wdMs > 0 ? setInterval(() => this.s.watchdogTick(wdMs), Math.max(100, Math.floor(wdMs / 4))) : undefined;
    try {
      await this.s.updateState({ status: 'starting', pid: process.pid, session: this.s.id });
      await this.model.loadFirstModel();
      ready(this.s.statusLine('ready'));
      this.s.started = true;
      out.info(`agent ready: run '${paths.run}', session ${this.s.id}, ${backend.name} backend${backend.quantization ? ` at ${backend.quantization}` : ''}`);
      await this.s.updateState({ status: 'idle', model_loaded: backend.loaded, quantization: backend.quantization });
      await this.mainLoop();
      return await this.shutdown();
    } catch (e) {
      if (e instanceof LlmUnavailableError) {
        out.error(`the model is unavailable: ${e.message}`);
        await this.s.endSession('unavailable', EXIT.UNAVAILABLE);
        throw unavailableError(e.message);
      }
      await this.s.endSession('error', exitCodeFor(e), (e as Error).message);
      throw e;
    } finally {
      if (wdTimer) clearInterval(wdTimer);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      await backend.dispose().catch(() => {});
    }
  }

  private deliverEscalation(reason: string): number {
    markEscalationDelivered(this.s.paths, reason);
    this.s.out.error(`run '${this.s.paths.run}' escalated: ${reason}; not starting (exit ${EXIT_ESCALATED}) until a human starts it again`);
    return EXIT_ESCALATED;
  }

  requestStop(reason: StopReason): void {
    this.s.requestStop(reason);
  }

  private async mainLoop(): Promise<void> {
    while (!this.s.stopReason) {
      try {
        await this.iteration();
      } catch (e) {
        // A full disk is a pause, not a crash: wait for space, then go on where the task stood.
        if (!isDiskFull(e, [this.s.paths.runDir, this.s.ws])) throw e;
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
    const { paths, ws, out } = this.s;
    const since = Date.now();
    const why = (e as Error).message.split('\n')[0] ?? 'disk full';
    out.error(`disk full (${why}): waiting for space on ${paths.runDir}${path.resolve(ws).startsWith(path.resolve(paths.runDir) + path.sep) ? '' : ` and ${ws}`}; a pause, not a crash`);
    status(`paused: disk full since ${new Date(since).toISOString()}`);
    const signal = this.s.signal;
    for (;;) {
      await sleep(DISK_POLL_MS, signal);
      if (this.s.stopReason) return;
      let free = Infinity;
      try {
        // The run's filesystem and the workspace's (the same one, or not).
        for (const dir of [paths.runDir, ws]) {
          const st = fs.statfsSync(dir);
          free = Math.min(free, st.bavail * st.bsize);
        }
      } catch {
        continue;
      }
      if (free < DISK_RESUME_BYTES) continue;
      try {
        this.s.log.append({ t: 'disk_full', session: this.s.id, since: new Date(since).toISOString(), duration_ms: Date.now() - since, error: why });
      } catch (e2) {
        if (isDiskFull(e2, [paths.runDir, ws])) continue;
        throw e2;
      }
      out.notice(`disk space is back after ${formatDuration(Date.now() - since)}: going on`);
      this.s.forgetStatus();
      return;
    }
  }

  /** One turn of the loop: the governor, a pause, or the next task (run to its end or to a stop). */
  private async iteration(): Promise<void> {
    const signal = this.s.signal;
    this.s.heartbeat();
    if (this.s.rssExceeded()) {
      this.requestStop('rss');
      return;
    }
    const gov = await this.model.obeyGovernor();
    await this.model.pressureRetention();
    const st = readAgentState(this.s.paths);
    if (gov || st.paused) {
      this.s.setStatus(gov ? this.s.governorNote : `paused${st.pause_reason ? `: ${st.pause_reason}` : ''}`);
      if (st.status !== 'paused') await this.s.updateState({ status: 'paused' });
      // Idle again after the pause: say so then.
      this.queue.pauseIdle();
      await sleep(this.s.tick, signal);
      return;
    }
    await this.queue.archivePass();
    const task = await this.queue.nextTask(st.task);
    if (!task) {
      await this.queue.idle();
      await sleep(this.s.tick, signal);
      return;
    }
    this.queue.endIdle();
    await this.attempts.runTask(task);
  }

  private async shutdown(): Promise<number> {
    const reason = this.s.stopReason ?? 'clean';
    this.s.setStatus(reason === 'rss' ? 'stopping: memory above the limit' : 'stopping');
    // The stopped state first, so the shutdown checkpoint holds the run as it
    // stays: a routine checkpoint that ends after it (its timer fired as the
    // run was stopped) finds nothing new and is skipped.
    try {
      await this.s.updateState({ status: 'stopped', pid: null, model_loaded: false });
    } catch (e) {
      // The checkpoint and the end of the session matter more: go on to them.
      this.s.out.warn(`cannot record the stop in agent.json: ${(e as Error).message}`);
    }
    const id = await this.s.checkpoint('shutdown', reason === 'rss' ? 'memory above the limit' : 'stop');
    // After the checkpoint, which matters more: what the model evaluated, for the next start.
    await this.model.saveModelState(reason === 'rss' ? 'memory' : 'stop');
    const code = reason === 'rss' ? EXIT_RSS : EXIT.OK;
    await this.s.endSession(reason, code, reason === 'rss' ? (this.s.guardReason ?? undefined) : undefined);
    this.s.out.info(`stopped${id ? ` after shutdown checkpoint ${id}` : ''}`);
    return code;
  }
}
