// An attempt at a task: the workspace snapshotted before it (or put back for
// a retry), its steps run until it finishes, fails, is cancelled or the agent
// stops, resumed from its transcript after a restart, then its check, its
// outcome and a checkpoint.

import { writeTask, type Task } from '../queue/task.js';
import { restoreWorkspace } from '../recover/restore.js';
import { writeLooseObject } from '../state/objects.js';
import { lockState, snapshotWorkspace, workspaceCommitObject, workspaceGit, writeRef, type Checkpoint } from '../state/index.js';
import { sleep } from '../sleep.js';
import { formatDuration, plural } from '../units.js';
import type { ChatMessage } from './llm/types.js';
import { outcomeDetail } from './memory.js';
import type { Model } from './model.js';
import { systemPrompt, taskPrompt } from './prompt.js';
import type { TaskQueue } from './queue.js';
import { attemptContext, rememberOutcome } from './recall.js';
import type { Session } from './session.js';
import { listApprovals, readAgentState, readTask } from './state.js';
import { actionEnvFor, type Steps } from './step.js';
import { failedObservation, runShell } from './tools.js';
import { appendLine, attemptView, readTranscript, transcriptFile, INTERRUPTED_NOTE } from './transcript.js';

const PRETASK_PREFIX = 'refs/selfware/pretask/';

export class Attempts {
  private readonly s: Session;
  private readonly model: Model;
  private readonly queue: TaskQueue;
  private readonly steps: Steps;

  constructor(s: Session, model: Model, queue: TaskQueue, steps: Steps) {
    this.s = s;
    this.model = model;
    this.queue = queue;
    this.steps = steps;
  }

  async runTask(initial: Task): Promise<void> {
    const { paths, out, log } = this.s;
    const file = transcriptFile(paths.stateDir, initial.id);
    let view = attemptView(readTranscript(file), initial.attempt);
    const prevFailure = initial.attempt > 1 ? (initial.reason ?? 'it did not pass') : null;
    if (!view.started) {
      const reset = await this.prepareWorkspace(initial);
      const context = await attemptContext(this.s);
      appendLine(file, { type: 'attempt', attempt: initial.attempt, ts: new Date().toISOString(), session: this.s.id, ...(reset ? { reset } : {}), ...(context ? { context } : {}) });
      view = attemptView(readTranscript(file), initial.attempt);
    }
    log.append({ t: 'task_started', task: initial.id, attempt: initial.attempt, session: this.s.id });
    const task = await this.queue.changeTask(initial.id, (t) => ({ ...t, status: 'in_progress', updated: new Date().toISOString() }));
    if (!task) return;
    if (view.interrupted) {
      // The action was running when the agent stopped: say so, as the step's result.
      const i = view.interrupted;
      appendLine(file, { type: 'step', attempt: task.attempt, step: i.step, ts: new Date().toISOString(), action: i.action, observation: failedObservation(INTERRUPTED_NOTE) });
      out.notice(`task ${task.id}: resuming after step ${i.step}, whose effect is unknown`);
      view = attemptView(readTranscript(file), task.attempt);
    } else if (view.steps.length > 0) out.notice(`task ${task.id}: resuming at step ${view.steps.length + 1} of attempt ${task.attempt}`);
    await this.s.updateState({ status: 'working', task: task.id, attempt: task.attempt, step: view.steps.length });
    const startedAt = Date.parse((view.started as { ts: string }).ts);
    const head: ChatMessage[] = [
      { role: 'system', content: systemPrompt(this.s.ws) },
      { role: 'user', content: taskPrompt(task, prevFailure, view.started?.context ?? '') },
    ];
    let finished: { summary: string } | null = null;
    let failure: string | null = null;
    // Stopped after the model said finish but before the check ran: run the check now.
    const lastStep = view.steps[view.steps.length - 1];
    if (lastStep?.action?.action === 'finish') finished = { summary: lastStep.action.summary };
    while (!this.s.stopReason && !finished) {
      const step = view.steps.length + 1;
      // Time spent waiting for a human's approval does not count against the task.
      if (Date.now() - startedAt - this.approvalWaitMs(task) > task.timeout) {
        failure = `the task took longer than its ${formatDuration(task.timeout)} limit`;
        break;
      }
      const cur = await this.queue.changeTask(task.id, () => null);
      if (!cur) {
        out.notice(`task ${task.id} was cancelled; stopping it`);
        appendLine(file, { type: 'end', attempt: task.attempt, ts: new Date().toISOString(), outcome: 'cancelled', reason: 'cancelled by a human' });
        await this.dropPretask(task.id);
        await this.s.checkpoint('task', `task ${task.id} cancelled`);
        return;
      }
      const gov = await this.model.obeyGovernor();
      const paused = readAgentState(paths).paused;
      if (gov === 'pause') await this.model.pressureRetention();
      if (gov || paused) {
        this.s.setStatus(`${task.id}: waiting (${gov ? this.s.governorNote : 'paused'})`);
        await sleep(this.s.tick, this.s.signal);
        continue;
      }
      if (this.s.rssExceeded()) {
        this.s.requestStop('rss');
        break;
      }
      this.s.heartbeat();
      this.s.setStatus(`${task.id} step ${step} (attempt ${task.attempt})`);
      await this.s.updateState({ step });
      const r = await this.steps.oneStep(task, step, head, view, file);
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
    if (this.s.stopReason) return;
    await this.finishAttempt(task, file, finished, failure);
  }

  /**
   * Before attempt 1 the workspace is snapshotted (on refs/selfware/pretask/<task>,
   * the branch it was on in the commit message); before a retry it is put back.
   */
  private async prepareWorkspace(t: Task): Promise<string | null> {
    const ws = workspaceGit(this.s.ws);
    const ref = `${PRETASK_PREFIX}${t.id}`;
    const existing = await ws.readRef(ref);
    if (!existing) {
      // The first attempt (or a task dropped in at a later attempt): the workspace as it is now.
      const snap = await snapshotWorkspace(this.s.ws);
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
    const forensics = await restoreWorkspace(this.s.ws, pseudo, new Date());
    this.s.out.info(`task ${t.id}: the workspace is back as it was before the task, for attempt ${t.attempt} (what was there is at ${forensics})`);
    return `workspace reset to the pre-task snapshot; the failed attempt's files are at ${forensics}`;
  }

  /** How long this attempt's actions have waited for approvals (decided or still pending). */
  private approvalWaitMs(t: Task): number {
    let ms = 0;
    for (const a of listApprovals(this.s.paths)) {
      if (a.task !== t.id || a.attempt !== t.attempt) continue;
      ms += (a.decided ? Date.parse(a.decided) : Date.now()) - Date.parse(a.requested);
    }
    return ms;
  }

  /** The pre-task snapshot is kept while a retry may need it. */
  private async dropPretask(id: string): Promise<void> {
    await workspaceGit(this.s.ws).run(['update-ref', '-d', `${PRETASK_PREFIX}${id}`], { allowFail: true });
  }

  private async finishAttempt(task: Task, file: string, finished: { summary: string } | null, failure: string | null): Promise<void> {
    const { paths, config, out } = this.s;
    let outcome: 'completed' | 'failed';
    let reason: string | null = failure;
    // What the run's memory keeps of a failed check: a few words, and the most telling line of its output.
    let lesson: { reason: string; detail: string | null } | null = null;
    if (finished && !failure) {
      if (task.verify) {
        this.s.setStatus(`${task.id}: verifying`);
        const obs = await runShell(task.verify, { cwd: this.s.ws, shell: config.agent.shell, timeoutMs: Math.max(config.agent.tool_timeout, 60_000), budget: config.agent.output_budget, env: actionEnvFor(config), signal: this.s.signal });
        if (this.s.stopReason) return;
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
    const lock = await lockState(paths);
    let next: Task | null = null;
    try {
      const cur = await readTask(paths, config, task.id);
      if (cur.status !== 'cancelled') {
        this.s.log.append({ t: 'task_outcome', task: task.id, attempt: task.attempt, outcome, reason, steps, session: this.s.id });
        // The memory next, so that a kill after this line leaves it whole; one before it leaves the
        // outcome to sw-recover, which writes it from the task log.
        rememberOutcome(this.s, task, outcome, lesson?.reason ?? (outcome === 'completed' ? null : reason), steps, lesson ? lesson.detail : finished && outcome === 'completed' ? finished.summary : null);
        appendLine(file, { type: 'end', attempt: task.attempt, ts: new Date().toISOString(), outcome, reason, ...(finished ? { summary: finished.summary } : {}) });
        const now = new Date().toISOString();
        next =
          outcome === 'completed'
            ? { ...cur, status: 'completed', reason: null, updated: now }
            : task.attempt < task.max_attempts
              ? { ...cur, status: 'pending', attempt: task.attempt + 1, reason, updated: now }
              : { ...cur, status: 'failed', reason, updated: now };
        await writeTask(paths.stateDir, next);
      }
    } finally {
      lock.release();
    }
    if (!next) return;
    if (next.status !== 'pending') await this.dropPretask(task.id);
    const msg = outcome === 'completed' ? `completed in ${plural(steps, 'step')}` : `attempt ${task.attempt} of ${task.max_attempts} failed: ${reason}${next.status === 'pending' ? '; it will be retried' : ''}`;
    if (outcome === 'completed') out.notice(`task ${task.id} ${msg}`);
    else out.warn(`task ${task.id} ${msg}`);
    await this.s.updateState({ task: null, attempt: null, step: null });
    await this.s.checkpoint('task', `task ${task.id} ${outcome} (attempt ${task.attempt})`);
  }
}
