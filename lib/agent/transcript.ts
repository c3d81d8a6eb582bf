// A task's transcript: state/transcripts/<task>.jsonl, one JSON line per
// event of its attempts, each fdatasync'd before the agent goes on. An
// "intent" line is written before an action runs and a "step" line after, so
// after a crash the agent knows whether the last action had started.
//
// What the model is given, within the context budget: the system text, the
// task, then the steps of this attempt as assistant (the action) and user
// (what came of it) turns. The messages only grow while they fit, so a model
// that keeps its evaluated prompt (lib/agent/llm/llama.ts) evaluates only what
// a step adds. When they no longer fit, the agent condenses once, a large part
// at a time: every step but the newest tenth of the budget becomes one line
// (or, with agent.condense: model, a summary the model writes), recorded as a
// "condense" line, and appended to the task's message. That condensed head
// then stays as it is until the next overflow, which appends to it (folding
// its oldest lines only when it outgrows a quarter of the budget). A step is
// always given the same way (an observation longer than a third of the
// budget is cut, wherever the step stands), so a step given once is given
// the same at every later step and after a restart.

import fs from 'node:fs';
import path from 'node:path';
import { mkdirDurable } from '../fsutil.js';
import { jsonTooDeep, readTextFile } from '../safefile.js';
import { plural } from '../units.js';
import type { ChatMessage } from './llm/types.js';
import { describeAction, type Action } from './schema.js';
import { observationText, type Observation } from './tools.js';

export type TranscriptLine =
  | {
      type: 'attempt';
      attempt: number;
      ts: string;
      session: string;
      reset?: string;
      /** What the task's message carried besides the task: the run's memory and the repository's map, as they were when the attempt began (a restart gives the same). */
      context?: string;
    }
  | { type: 'intent'; attempt: number; step: number; ts: string; action: Action }
  | {
      type: 'step';
      attempt: number;
      step: number;
      ts: string;
      action: Action | null;
      /** The model's raw answer when it was not a valid action. */
      answer?: string;
      decision?: string;
      observation: Observation;
      llm?: { tokens_in: number; tokens_out: number; latency_ms: number; tokens_per_s: number | null };
      /** The workspace's fingerprint after the step (lib/agent/loopguard.ts). */
      workspace?: string;
      /** The loop guard's note to the model, given after the step's result. */
      guard?: string;
    }
  | { type: 'verify'; attempt: number; ts: string; command: string; observation: Observation }
  | {
      type: 'condense';
      attempt: number;
      ts: string;
      /** The newest step the summary covers: steps after it are given whole. */
      through: number;
      /** Every condensed step so far, as the task's message ends with it. */
      summary: string;
      /** Who wrote the newest part: the rule (one line a step) or the model. */
      by: 'rule' | 'model';
    }
  | {
      type: 'end';
      attempt: number;
      ts: string;
      outcome: string;
      reason: string | null;
      summary?: string;
      /** Written by recovery from the task log: the agent stopped between recording the outcome and writing this line. */
      restored?: string;
    };

export function transcriptFile(stateDir: string, task: string): string {
  return path.join(stateDir, 'transcripts', `${task}.jsonl`);
}

/** Append one line and make it durable before returning. */
export function appendLine(file: string, line: TranscriptLine): void {
  mkdirDurable(path.dirname(file));
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644);
  try {
    // A torn last line (a crash mid-write) must not swallow this one.
    const size = fs.fstatSync(fd).size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      const rfd = fs.openSync(file, 'r');
      try {
        fs.readSync(rfd, last, 0, 1, size - 1);
      } finally {
        fs.closeSync(rfd);
      }
      if (last[0] !== 0x0a) fs.writeSync(fd, '\n');
    }
    fs.writeSync(fd, JSON.stringify(line) + '\n');
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Every complete line (a torn or garbled one is skipped, as is one nested
 * too deep to walk). No file means no lines; a file that is not a regular
 * file or is larger than 256 MiB is refused (exit 65) rather than read.
 */
export function readTranscript(file: string): TranscriptLine[] {
  let text: string;
  try {
    text = readTextFile(file, 'transcript', { text: false });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return parseTranscript(text);
}

/** A transcript's lines from its text (a torn or garbled line skipped). */
export function parseTranscript(text: string): TranscriptLine[] {
  const out: TranscriptLine[] = [];
  const lines = text.split('\n');
  if (!text.endsWith('\n')) lines.pop();
  for (const l of lines) {
    if (l === '' || jsonTooDeep(l) !== null) continue;
    try {
      const v = JSON.parse(l) as unknown;
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(v as TranscriptLine);
    } catch {
      /* a garbled line: recovery reports it */
    }
  }
  return out;
}

export interface AttemptView {
  started: Extract<TranscriptLine, { type: 'attempt' }> | null;
  steps: Array<Extract<TranscriptLine, { type: 'step' }>>;
  /** An action that was started and never recorded as done: its effect is unknown. */
  interrupted: Extract<TranscriptLine, { type: 'intent' }> | null;
  /** The newest condensation of this attempt's older steps. */
  condensed: Extract<TranscriptLine, { type: 'condense' }> | null;
  ended: Extract<TranscriptLine, { type: 'end' }> | null;
}

export function attemptView(lines: TranscriptLine[], attempt: number): AttemptView {
  const mine = lines.filter((l) => l.attempt === attempt);
  const steps = mine.filter((l): l is Extract<TranscriptLine, { type: 'step' }> => l.type === 'step');
  const done = new Set(steps.map((s) => s.step));
  const intents = mine.filter((l): l is Extract<TranscriptLine, { type: 'intent' }> => l.type === 'intent');
  const lastIntent = intents[intents.length - 1];
  return {
    started: (mine.find((l) => l.type === 'attempt') as Extract<TranscriptLine, { type: 'attempt' }> | undefined) ?? null,
    steps,
    interrupted: lastIntent && !done.has(lastIntent.step) ? lastIntent : null,
    condensed: (mine.filter((l) => l.type === 'condense').pop() as Extract<TranscriptLine, { type: 'condense' }> | undefined) ?? null,
    ended: (mine.filter((l) => l.type === 'end').pop() as Extract<TranscriptLine, { type: 'end' }> | undefined) ?? null,
  };
}

/** Rough token count: ~3.5 characters a token for code and English. */
export function estimateTokens(s: string): number {
  return Math.ceil(s.length / 3.5);
}

export const INTERRUPTED_NOTE =
  'The agent was restarted while this action was running: its effect is unknown. Check what it did before relying on it.';

/** Counts a text's tokens: the model's tokenizer where there is one, else estimateTokens. */
export type TokenCounter = (text: string) => number;

/** Tokens a chat format adds around each message (ChatML: `<|im_start|>role\n` ... `<|im_end|>\n`). */
export const MESSAGE_OVERHEAD = 6;

/** The share of the budget one step's observation may take. */
const STEP_SHARE = 1 / 3;
/** The condensed summary is folded when it outgrows this share of the budget ... */
const SUMMARY_MAX_SHARE = 1 / 4;
/** ... to this share. */
const SUMMARY_FOLDED_SHARE = 1 / 8;
export const SUMMARY_INTRO = 'Earlier steps of this attempt, in short:';

export function messagesTokens(messages: ChatMessage[], count: TokenCounter): number {
  return messages.reduce((n, m) => n + count(m.content) + MESSAGE_OVERHEAD, 0);
}

/** text cut in its middle to at most max tokens (by count), the same way every time. */
function cutToTokens(text: string, max: number, count: TokenCounter): string {
  let n = count(text);
  let out = text;
  for (let chars = text.length; n > max && chars > 64; ) {
    chars = Math.floor((chars * max) / n) - 40;
    if (chars < 64) chars = 64;
    const half = Math.floor(chars / 2);
    out = text.slice(0, half) + '\n[... cut to fit the context ...]\n' + text.slice(text.length - half);
    n = count(out);
  }
  return out;
}

/** A step as its two turns: what the agent did, and what came of it. */
export function stepTurns(s: AttemptView['steps'][number], budgetTokens: number, count: TokenCounter): ChatMessage[] {
  const assistant = s.action ? JSON.stringify(s.action) : (s.answer ?? '');
  let obs = s.decision && s.decision !== 'allow' ? `[policy: ${s.decision}] ` : '';
  obs += observationText(s.observation);
  obs = cutToTokens(obs, Math.max(100, Math.floor(budgetTokens * STEP_SHARE)), count);
  if (s.guard) obs += `\n\n[selfware: ${s.guard}]`;
  return [
    { role: 'assistant', content: assistant },
    { role: 'user', content: obs || '(no output)' },
  ];
}

export function stepSummary(s: AttemptView['steps'][number]): string {
  const o = s.observation;
  const what = s.action ? describeAction(s.action) : 'an answer that was not a valid action';
  const how = o.error ? `error: ${o.error.slice(0, 80)}` : o.exit_code !== null ? `exit status ${o.exit_code}` : o.ok ? 'ok' : 'failed';
  return `step ${s.step}: ${what} -> ${how}`;
}

export interface BuiltMessages {
  messages: ChatMessage[];
  /** Their tokens, by the counter given. */
  tokens: number;
  /** More than the budget: condense (planCondense) and build again. */
  over: boolean;
  /** Steps given in the condensed summary, and given whole. */
  condensed: number;
  whole: number;
}

/**
 * The messages for the next step: the head (system, task), the task's message
 * ending in the condensed summary if there is one, every step after it whole,
 * and the interrupted action if there is one. Append-only between
 * condensations: a step adds its turns at the end and changes nothing before.
 */
export function buildMessages(head: ChatMessage[], view: AttemptView, budgetTokens: number, count: TokenCounter = estimateTokens): BuiltMessages {
  const messages = head.map((m) => ({ ...m }));
  const c = view.condensed;
  if (c) {
    const last = messages[messages.length - 1] as ChatMessage;
    last.content += `\n\n${SUMMARY_INTRO}\n${c.summary}`;
  }
  const live = view.steps.filter((s) => !c || s.step > c.through);
  for (const s of live) messages.push(...stepTurns(s, budgetTokens, count));
  if (view.interrupted) {
    messages.push({ role: 'assistant', content: JSON.stringify(view.interrupted.action) }, { role: 'user', content: INTERRUPTED_NOTE });
  }
  const tokens = messagesTokens(messages, count);
  return { messages, tokens, over: tokens > budgetTokens, condensed: view.steps.length - live.length, whole: live.length };
}

export interface CondensePlan {
  /** The steps to condense now (after the previous summary, before those kept whole). */
  steps: AttemptView['steps'];
  through: number;
  /** The summary so far; the new part is appended to it (condensedSummary). */
  base: string;
  /** The rule's part for these steps: one line each. */
  lines: string[];
}

/**
 * What to condense when the messages no longer fit: every step after the
 * previous summary but the newest ones within keepShare of the budget (the
 * newest step always stays whole). Null when there is nothing to condense.
 */
export function planCondense(view: AttemptView, budgetTokens: number, keepShare: number, count: TokenCounter = estimateTokens): CondensePlan | null {
  const c = view.condensed;
  const live = view.steps.filter((s) => !c || s.step > c.through);
  let keep = 0;
  let kept = 0;
  for (let i = live.length - 1; i >= 0; i--) {
    const cost = messagesTokens(stepTurns(live[i] as AttemptView['steps'][number], budgetTokens, count), count);
    if (keep > 0 && kept + cost > budgetTokens * keepShare) break;
    kept += cost;
    keep++;
  }
  const steps = live.slice(0, live.length - keep);
  const base = c?.summary ?? '';
  if (steps.length === 0 && count(base) <= budgetTokens * SUMMARY_FOLDED_SHARE) return null;
  const lines = steps.map(stepSummary);
  return { steps, through: steps.length > 0 ? (steps[steps.length - 1] as AttemptView['steps'][number]).step : (c?.through ?? 0), base, lines };
}

/** The summary with its oldest lines dropped (and counted) when it outgrows its share of the budget. */
export function foldSummary(summary: string, budgetTokens: number, count: TokenCounter): string {
  if (summary === '' || count(summary) <= budgetTokens * SUMMARY_MAX_SHARE) return summary;
  const lines = summary.split('\n');
  let omitted = 0;
  const m = /^\((\d+) earlier (?:lines?|steps?) omitted to fit the context\)$/.exec(lines[0] ?? '');
  if (m) {
    omitted = Number(m[1]);
    lines.shift();
  }
  while (lines.length > 1 && count(lines.join('\n')) > budgetTokens * SUMMARY_FOLDED_SHARE) {
    lines.shift();
    omitted++;
  }
  return [`(${plural(omitted, 'earlier line')} omitted to fit the context)`, ...lines].join('\n');
}

/** The summary after a condensation: the base, then the new part, folded if it outgrew its share. */
export function condensedSummary(base: string, part: string, budgetTokens: number, count: TokenCounter = estimateTokens): string {
  return foldSummary(base === '' ? part : part === '' ? base : `${base}\n${part}`, budgetTokens, count);
}
