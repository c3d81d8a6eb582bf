// One step of an attempt: the model's answer and its action, run in the
// workspace under the policy (a human's approval awaited where it says so),
// recorded in the task log and the transcript, and judged by the loop guard.

import type { RunConfig } from '../config/index.js';
import { SwError } from '../exit.js';
import type { Task } from '../queue/task.js';
import { sleep } from '../sleep.js';
import { formatDuration } from '../units.js';
import { applyPatchAction, editAction, searchAction, viewAction } from './hands.js';
import { TransientLlmError } from './llm/openai.js';
import { LlmUnavailableError, type ChatMessage, type CompleteResult } from './llm/types.js';
import { judge, workspaceFingerprint, type LoopLimits } from './loopguard.js';
import type { Model } from './model.js';
import { evaluate } from './policy.js';
import type { Prompter } from './prompt.js';
import { note } from './recall.js';
import { ACTION_SCHEMA, describeAction, parseAction, type Action } from './schema.js';
import type { Session } from './session.js';
import { decideApproval, readApproval, requestApproval, setPaused, type Approval } from './state.js';
import { actionEnv, failedObservation, readFileAction, runShell, writeFileAction, type Observation } from './tools.js';
import { appendLine, type attemptView } from './transcript.js';

/** What actions run with: never the model endpoint's key. */
export function actionEnvFor(config: RunConfig): NodeJS.ProcessEnv {
  const env = actionEnv();
  if (config.llm.api_key_env) delete env[config.llm.api_key_env];
  return env;
}

export class Steps {
  private readonly s: Session;
  private readonly model: Model;
  private readonly prompter: Prompter;
  /** Model errors in a row (not transient ones), for the backoff between tries. */
  private llmErrors = 0;

  constructor(s: Session, model: Model, prompter: Prompter) {
    this.s = s;
    this.model = model;
    this.prompter = prompter;
  }

  /** One model answer and its action; returns 'stop' when stopping, {finish} when done. */
  async oneStep(task: Task, step: number, head: ChatMessage[], view: ReturnType<typeof attemptView>, file: string): Promise<'stop' | { finish: string } | { looping: string } | null> {
    const { backend, config, out, log } = this.s;
    let result: CompleteResult;
    const stepCtrl = new AbortController();
    const timer = setTimeout(() => stepCtrl.abort(), config.agent.step_timeout);
    const onStop = (): void => stepCtrl.abort();
    this.s.signal.addEventListener('abort', onStop, { once: true });
    try {
      if (!backend.loaded) await this.model.loadModel(backend.quantization ?? this.model.startLevel());
      // Built with the loaded model's tokenizer; condensed first if it outgrew the budget.
      const messages = await this.prompter.promptFor(task, step, head, view, file, stepCtrl.signal);
      this.s.startRequest();
      result = await backend.complete({
        messages,
        schema: ACTION_SCHEMA as unknown as Record<string, unknown>,
        maxTokens: config.llm.max_tokens,
        signal: stepCtrl.signal,
        task: { id: task.id, title: task.title, attempt: task.attempt, step },
        onToken: () => this.s.sawToken(),
      });
    } catch (e) {
      if (this.s.stopReason) return 'stop';
      if (e instanceof LlmUnavailableError) throw e;
      if (e instanceof TransientLlmError) {
        this.s.setStatus(`${task.id}: the model is not answering (${e.message}); trying again in ${formatDuration(e.retryAfterMs)}`);
        out.warn(`model request failed: ${e.message}; retrying in ${formatDuration(e.retryAfterMs)}`);
        log.append({ t: 'llm_call', session: this.s.id, task: task.id, attempt: task.attempt, step, backend: backend.name, ok: false, error: e.message });
        await sleep(e.retryAfterMs, this.s.signal);
        return null;
      }
      const timedOut = stepCtrl.signal.aborted;
      const error = timedOut ? `the model did not answer within the step limit (${formatDuration(config.agent.step_timeout)})` : `the model failed: ${(e as Error).message}`;
      // Errors in a row wait longer each time (1 s, 2 s ... 60 s): no tight loop on a broken model.
      this.llmErrors++;
      const wait = Math.min(60_000, 1000 * 2 ** Math.min(this.llmErrors - 1, 6));
      out.warn(`task ${task.id} step ${step}: ${error}; next try in ${formatDuration(wait)}`);
      log.append({ t: 'llm_call', session: this.s.id, task: task.id, attempt: task.attempt, step, backend: backend.name, ok: false, error });
      appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action: null, observation: failedObservation(error, { timedOut }) });
      log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: 'none', status: 'llm_error' });
      await sleep(wait, this.s.signal);
      return null;
    } finally {
      this.s.endRequest();
      clearTimeout(timer);
      this.s.signal.removeEventListener('abort', onStop);
    }
    this.model.lastRequestAt = Date.now();
    this.s.tokensPerS = result.tokensPerS;
    this.llmErrors = 0;
    await this.s.updateState({ tokens_per_s: result.tokensPerS === null ? null : Math.round(result.tokensPerS * 10) / 10, quantization: result.quantization });
    log.append({
      t: 'llm_call', session: this.s.id, task: task.id, attempt: task.attempt, step, backend: backend.name, model: result.model,
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
      log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: 'invalid', status: 'invalid' });
      return null;
    }
    const action = parsed.action;
    if (action.action === 'finish') {
      appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action, llm, observation: { ok: true, exit_code: null, signal: null, output: 'finished; the check runs next', cut: 0, timed_out: false, duration_ms: 0 } });
      log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: 'finish', status: 'ok' });
      return { finish: action.summary };
    }
    const verdict = evaluate(action, config.policy);
    let decision: string = verdict.decision;
    let obs: Observation;
    if (verdict.decision === 'deny') {
      obs = failedObservation(`refused by the policy (deny rule '${verdict.rule}')`);
      out.warn(`task ${task.id} step ${step}: ${describeAction(action)} refused by the deny rule '${verdict.rule}'`);
    } else {
      if (verdict.decision === 'approve') {
        const answer = await this.awaitApproval(task, step, action, verdict.rule);
        if (answer === 'stop') return 'stop';
        decision = answer.status;
        if (answer.status !== 'approved') {
          obs = failedObservation(`a human rejected this action${answer.reason ? `: ${answer.reason}` : ''}${answer.by === 'timeout' ? ' (no answer in time)' : ''}`);
          appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action, llm, decision, observation: obs });
          log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: action.action, status: 'rejected' });
          return null;
        }
      }
      appendLine(file, { type: 'intent', attempt: task.attempt, step, ts: new Date().toISOString(), action });
      obs = await this.execute(task, action);
      if (this.s.stopReason && !obs.ok) {
        // Killed by the stop, part done: its effect is as unknown as after a crash, and handled the same
        // way. The intent stays without a step; the next start records the step as interrupted and the
        // model is told to check what it did (recorded now as a plain failure, a model would just run it again).
        out.notice(`task ${task.id} step ${step}: ${describeAction(action)} killed as the agent stops; its effect is unknown, and the next start tells the model so`);
        return 'stop';
      }
    }
    // The task log first: the step ran. A crash between the two leaves the step in the task log and
    // the intent without a step in the transcript, and the next start records it (the same step
    // number, an upsert) as interrupted. The other order lost the step from the task log, and the
    // report counted one step less (a loaded run of sw-report.test.ts killed the agent just there).
    // The loop guard: judged on the attempt's steps with this one, the workspace as it left it.
    const workspace = (await workspaceFingerprint(this.s.ws)) ?? undefined;
    const verdict2 = judge([...view.steps, { action, observation: obs, workspace }], this.loopLimits());
    const guard = verdict2.kind === 'note' ? verdict2.note : undefined;
    log.append({ t: 'task_step', task: task.id, attempt: task.attempt, step, action: action.action, status: decision === 'deny' ? 'denied' : obs.ok ? 'ok' : 'failed' });
    appendLine(file, { type: 'step', attempt: task.attempt, step, ts: new Date().toISOString(), action, llm, decision, observation: obs, ...(workspace ? { workspace } : {}), ...(guard ? { guard } : {}) });
    if (guard) out.info(`task ${task.id} step ${step}: told the model: ${guard}`);
    if (verdict2.kind === 'end') return { looping: verdict2.reason };
    return null;
  }

  private execute(task: Task, a: Action): Promise<Observation> {
    const { config, ws } = this.s;
    const budget = config.agent.output_budget;
    switch (a.action) {
      case 'shell':
        return runShell(a.command, {
          cwd: ws,
          shell: config.agent.shell,
          timeoutMs: config.agent.tool_timeout,
          budget,
          env: actionEnvFor(config),
          signal: this.s.signal,
        });
      case 'read_file':
        return readFileAction(ws, a.path, budget);
      case 'write_file':
        return writeFileAction(ws, a.path, a.content);
      case 'view':
        return viewAction(ws, a.path, { start: a.start, end: a.end }, budget);
      case 'search':
        return searchAction(ws, a.pattern, a.path, { budget, timeoutMs: config.agent.tool_timeout });
      case 'edit':
        return editAction(ws, a.path, a.old, a.new, budget);
      case 'apply_patch':
        return applyPatchAction(ws, a.patch, { budget, timeoutMs: config.agent.tool_timeout });
      case 'note':
        return Promise.resolve(note(this.s, task, a.text));
      case 'finish':
        return Promise.resolve({ ok: true, exit_code: null, signal: null, output: '', cut: 0, timed_out: false, duration_ms: 0 });
    }
  }

  /**
   * A pre-op checkpoint, then wait for `sw-agent approve|reject` (heartbeats go
   * on). On timeout: reject, or pause the run until a human decides.
   */
  private async awaitApproval(task: Task, step: number, action: Action, rule: string | null): Promise<Approval | 'stop'> {
    const { paths, config, out } = this.s;
    const id = `${task.id}.${task.attempt}.${step}`;
    let a = readApproval(paths, id);
    if (!a) {
      const cp = await this.s.checkpoint('pre-op', `before ${describeAction(action)} (approval ${id})`);
      const now = Date.now();
      a = await requestApproval(paths, { id, task: task.id, attempt: task.attempt, step, action, rule, requested: new Date(now).toISOString(), timeout_at: new Date(now + config.policy.approval_timeout).toISOString(), checkpoint: cp });
      out.notice(`task ${task.id} step ${step}: ${describeAction(action)} waits for approval: sw-agent approve ${paths.run} ${id}`);
    }
    let pausedForIt = false;
    while (!this.s.stopReason) {
      a = readApproval(paths, id) ?? a;
      if (a.status !== 'pending') {
        if (pausedForIt) await setPaused(paths, false, null);
        out.info(`approval ${id}: ${a.status}${a.reason ? ` (${a.reason})` : ''}`);
        return a;
      }
      if (Date.now() >= Date.parse(a.timeout_at) && !pausedForIt) {
        if (config.policy.on_timeout === 'reject') {
          try {
            return await decideApproval(paths, id, 'rejected', 'no answer in time', 'timeout');
          } catch (e) {
            if (!(e instanceof SwError)) throw e;
            continue;
          }
        }
        pausedForIt = true;
        await setPaused(paths, true, `approval ${id} timed out`);
        out.warn(`approval ${id} timed out: the run is paused until a human approves or rejects it`);
      }
      this.s.setStatus(`${task.id} step ${step}: waiting for approval ${id}`);
      this.s.heartbeat();
      if (this.s.rssExceeded()) {
        this.s.requestStop('rss');
        break;
      }
      // An unload the governor asks for is obeyed while a human decides.
      await this.model.obeyGovernor();
      await sleep(Math.min(this.s.tick, 500), this.s.signal);
    }
    return 'stop';
  }

  private loopLimits(): LoopLimits {
    const a = this.s.config.agent;
    return { repeat: a.loop_repeat, failing: a.loop_failing, unchanged: a.loop_unchanged };
  }
}
