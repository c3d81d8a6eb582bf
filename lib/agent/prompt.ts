// What the model is given: the system prompt, the task's prompt, and each
// step's messages within the context budget, the older steps condensed (by
// rule or by the model's own summary) when they outgrow it.

import type { Task } from '../queue/task.js';
import type { ChatMessage, CompleteResult, LlmBackend } from './llm/types.js';
import type { Model } from './model.js';
import type { Session } from './session.js';
import { appendLine, buildMessages, condensedSummary, estimateTokens, planCondense, stepTurns, type AttemptView, type CondensePlan, type TokenCounter } from './transcript.js';

/** The answer to a condensation request (agent.condense: model). */
const CONDENSE_SCHEMA: Record<string, unknown> = {
  type: 'object',
  properties: { summary: { type: 'string', minLength: 1, maxLength: 1200 } },
  required: ['summary'],
  additionalProperties: false,
};

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

/** Tokens by the loaded model's tokenizer where the backend has one, else the estimate. */
export function tokenCounter(b: LlmBackend): TokenCounter {
  if (!b.countTokens) return estimateTokens;
  return (text) => b.countTokens?.(text) ?? estimateTokens(text);
}

export class Prompter {
  private readonly s: Session;
  private readonly model: Model;
  /** Attempts whose head alone overflows the budget, warned about once. */
  private readonly warnedOverBudget = new Set<string>();

  constructor(s: Session, model: Model) {
    this.s = s;
    this.model = model;
  }

  /**
   * The messages for this step (lib/agent/transcript.ts). When they outgrow
   * the budget, the older steps are condensed once, a large part at a time,
   * and the condensation recorded in the transcript before it is used, so
   * that every later step, and the next start, gives the same head.
   */
  async promptFor(task: Task, step: number, head: ChatMessage[], view: AttemptView, file: string, signal: AbortSignal): Promise<ChatMessage[]> {
    const { config, out } = this.s;
    const budget = this.contextBudget();
    const count = tokenCounter(this.s.backend);
    const built = buildMessages(head, view, budget, count);
    if (!built.over) return built.messages;
    const plan = planCondense(view, budget, config.agent.condense_keep, count);
    if (!plan) {
      const key = `${task.id}.${task.attempt}`;
      if (!this.warnedOverBudget.has(key)) {
        this.warnedOverBudget.add(key);
        out.warn(`task ${task.id} step ${step}: the task and its newest step alone take ${built.tokens} tokens, more than the context budget (${budget}); the model gets them as they are`);
      }
      return built.messages;
    }
    const first = plan.steps[0]?.step;
    const range = first === undefined ? 'no new steps' : first === plan.through ? `step ${first}` : `steps ${first}-${plan.through}`;
    let part = plan.lines.join('\n');
    let by: 'rule' | 'model' = 'rule';
    if (config.agent.condense === 'model' && plan.steps.length > 0) {
      try {
        part = `${range}, summarised: ${await this.modelSummary(task, step, head, view, plan, budget, count, signal)}`;
        by = 'model';
      } catch (e) {
        if (signal.aborted) throw e;
        out.warn(`task ${task.id} step ${step}: the model could not summarise ${range} (${(e as Error).message.split('\n')[0]}); one line a step instead`);
      }
    }
    const line = { type: 'condense' as const, attempt: task.attempt, ts: new Date().toISOString(), through: plan.through, summary: condensedSummary(plan.base, part, budget, count), by };
    appendLine(file, line);
    const after = buildMessages(head, { ...view, condensed: line }, budget, count);
    this.s.log.append({ t: 'condense', session: this.s.id, task: task.id, attempt: task.attempt, step, through: plan.through, steps: plan.steps.length, by, tokens_before: built.tokens, tokens_after: after.tokens, budget });
    out.info(`task ${task.id} step ${step}: condensed ${range} ${by === 'model' ? 'into the model\'s summary' : 'to one line each'} to fit the context (${built.tokens} -> ${after.tokens} tokens of ${budget})`);
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
    const { backend, config } = this.s;
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
    this.s.startRequest();
    let r: CompleteResult;
    try {
      r = await backend.complete({
        messages,
        schema: CONDENSE_SCHEMA,
        maxTokens: Math.max(64, Math.min(config.llm.max_tokens, Math.floor(budget / 10))),
        signal,
        task: { id: task.id, title: task.title, attempt: task.attempt, step },
        onToken: () => this.s.sawToken(),
      });
    } finally {
      this.s.endRequest();
    }
    this.s.log.append({
      t: 'llm_call', session: this.s.id, task: task.id, attempt: task.attempt, step, backend: backend.name, model: r.model, purpose: 'condense',
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
    const config = this.s.config;
    const base = config.agent.context_budget > 0 ? config.agent.context_budget : config.llm.context - config.llm.max_tokens;
    const limit = this.model.contextLimit;
    return limit ? Math.min(base, limit - config.llm.max_tokens) : base;
  }
}
