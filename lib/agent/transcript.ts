// A task's transcript: state/transcripts/<task>.jsonl, one JSON line per
// event of its attempts, each fdatasync'd before the agent goes on. An
// "intent" line is written before an action runs and a "step" line after, so
// after a crash the agent knows whether the last action had started.
//
// What the model is given, within the context budget: the system text, the
// task, then the steps of this attempt as assistant (the action) and user
// (what came of it) turns. When they do not fit, the oldest steps are cut to
// one line each ("step 3: shell `make` -> exit status 2"), oldest first, and
// when even those do not fit, the oldest lines are dropped with a note saying
// how many. The newest step is always given whole (cut to the budget itself).

import fs from 'node:fs';
import path from 'node:path';
import { mkdirDurable } from '../fsutil.js';
import { jsonTooDeep, readTextFile } from '../safefile.js';
import { plural } from '../units.js';
import type { ChatMessage } from './llm/types.js';
import { describeAction, type Action } from './schema.js';
import { observationText, type Observation } from './tools.js';

export type TranscriptLine =
  | { type: 'attempt'; attempt: number; ts: string; session: string; reset?: string }
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
    }
  | { type: 'verify'; attempt: number; ts: string; command: string; observation: Observation }
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
  started: TranscriptLine | null;
  steps: Array<Extract<TranscriptLine, { type: 'step' }>>;
  /** An action that was started and never recorded as done: its effect is unknown. */
  interrupted: Extract<TranscriptLine, { type: 'intent' }> | null;
  ended: Extract<TranscriptLine, { type: 'end' }> | null;
}

export function attemptView(lines: TranscriptLine[], attempt: number): AttemptView {
  const mine = lines.filter((l) => l.attempt === attempt);
  const steps = mine.filter((l): l is Extract<TranscriptLine, { type: 'step' }> => l.type === 'step');
  const done = new Set(steps.map((s) => s.step));
  const intents = mine.filter((l): l is Extract<TranscriptLine, { type: 'intent' }> => l.type === 'intent');
  const lastIntent = intents[intents.length - 1];
  return {
    started: mine.find((l) => l.type === 'attempt') ?? null,
    steps,
    interrupted: lastIntent && !done.has(lastIntent.step) ? lastIntent : null,
    ended: (mine.filter((l) => l.type === 'end').pop() as Extract<TranscriptLine, { type: 'end' }> | undefined) ?? null,
  };
}

/** Rough token count: ~3.5 characters a token for code and English. */
export function estimateTokens(s: string): number {
  return Math.ceil(s.length / 3.5);
}

export const INTERRUPTED_NOTE =
  'The agent was restarted while this action was running: its effect is unknown. Check what it did before relying on it.';

function stepTurns(s: AttemptView['steps'][number], budgetChars: number): ChatMessage[] {
  const assistant = s.action ? JSON.stringify(s.action) : (s.answer ?? '');
  let obs = s.decision && s.decision !== 'allow' ? `[policy: ${s.decision}] ` : '';
  obs += observationText(s.observation);
  if (obs.length > budgetChars) obs = obs.slice(0, Math.floor(budgetChars / 2)) + '\n[... cut to fit the context ...]\n' + obs.slice(obs.length - Math.floor(budgetChars / 2));
  return [
    { role: 'assistant', content: assistant },
    { role: 'user', content: obs || '(no output)' },
  ];
}

function stepSummary(s: AttemptView['steps'][number]): string {
  const o = s.observation;
  const what = s.action ? describeAction(s.action) : 'an answer that was not a valid action';
  const how = o.error ? `error: ${o.error.slice(0, 80)}` : o.exit_code !== null ? `exit status ${o.exit_code}` : o.ok ? 'ok' : 'failed';
  return `step ${s.step}: ${what} -> ${how}`;
}

/**
 * The messages for the next step: fixed head (system, task) and as much of
 * the attempt's history as the budget allows, by the rule above.
 */
export function buildMessages(head: ChatMessage[], view: AttemptView, budgetTokens: number): { messages: ChatMessage[]; summarised: number; dropped: number } {
  const headTokens = head.reduce((n, m) => n + estimateTokens(m.content), 0);
  let left = Math.max(256, budgetTokens - headTokens);
  const tail: ChatMessage[] = [];
  if (view.interrupted) {
    const turns: ChatMessage[] = [
      { role: 'assistant', content: JSON.stringify(view.interrupted.action) },
      { role: 'user', content: INTERRUPTED_NOTE },
    ];
    left -= turns.reduce((n, m) => n + estimateTokens(m.content), 0);
    tail.push(...turns);
  }
  // Newest first: whole steps while they fit (the newest always, cut if it must be).
  const whole: ChatMessage[][] = [];
  let i = view.steps.length - 1;
  for (; i >= 0; i--) {
    const s = view.steps[i] as AttemptView['steps'][number];
    const turns = stepTurns(s, whole.length === 0 ? Math.max(400, Math.floor(left * 3.5 * 0.8)) : Number.MAX_SAFE_INTEGER);
    const cost = turns.reduce((n, m) => n + estimateTokens(m.content), 0);
    if (whole.length > 0 && cost > left) break;
    whole.unshift(turns);
    left -= cost;
  }
  // Older steps as one line each, newest of them first, while they fit.
  const lines: string[] = [];
  for (; i >= 0; i--) {
    const line = stepSummary(view.steps[i] as AttemptView['steps'][number]);
    const cost = estimateTokens(line) + 1;
    if (cost > left) break;
    lines.unshift(line);
    left -= cost;
  }
  const dropped = i + 1;
  const messages = head.map((m) => ({ ...m }));
  if (lines.length > 0 || dropped > 0) {
    // Added to the task's own message, so turns keep alternating.
    const note = dropped > 0 ? `(${plural(dropped, 'earlier step')} omitted to fit the context)\n` : '';
    const last = messages[messages.length - 1] as ChatMessage;
    last.content += `\n\n${note}Earlier steps of this attempt, in short:\n${lines.join('\n')}`;
  }
  for (const t of whole) messages.push(...t);
  messages.push(...tail);
  return { messages, summarised: lines.length, dropped };
}
