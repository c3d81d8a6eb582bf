// What a step costs the model: tokens evaluated per step against tokens the
// step added to the prompt, over a 60-step attempt on the tiny GGUF with a
// 4,096-token context and a transcript far over its budget, for the code
// before prefix reuse (a fresh sequence per step, the whole prompt evaluated;
// older steps summarised anew at every step) and for today's (one sequence
// kept, messages appended, condensed once in a while). Same steps, same
// model, same process; the last line is today's figure.
//   node dist/bench/reuse.js [steps]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LlamaChat as LlamaChatT, LlamaModel } from 'node-llama-cpp';
import { RUN_SCHEMA, type RunConfig } from '../lib/config/index.js';
import type { LlmConfig } from '../lib/config/schema.js';
import { defaultsOf } from '../lib/config/spec.js';
import { ACTION_SCHEMA, describeAction } from '../lib/agent/schema.js';
import { systemPrompt, taskPrompt } from '../lib/agent/loop.js';
import { LlamaBackend } from '../lib/agent/llm/llama.js';
import type { ChatMessage } from '../lib/agent/llm/types.js';
import { observationText } from '../lib/agent/tools.js';
import {
  appendLine,
  attemptView,
  buildMessages,
  condensedSummary,
  messagesTokens,
  planCondense,
  readTranscript,
  type AttemptView,
  type TokenCounter,
  type TranscriptLine,
} from '../lib/agent/transcript.js';
import type { Task } from '../lib/queue/task.js';
import { tinyModels } from '../test/fixtures/gguf.js';

const STEPS = Number(process.argv[2] ?? 60);
const CONTEXT = 4096;
const MAX_TOKENS = 256;
/** The answers are not used (the steps are given): a few tokens of each are enough to time a step. */
const ANSWER_TOKENS = 24;
const BUDGET = CONTEXT - MAX_TOKENS;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-reuse-'));
const defaults = (defaultsOf(RUN_SCHEMA) as RunConfig).llm;
const config: LlmConfig = { ...defaults, models: tinyModels(dir), context: CONTEXT, max_tokens: MAX_TOKENS, gpu: false, threads: 1, temperature: 0 };
const keep = (defaultsOf(RUN_SCHEMA) as RunConfig).agent.condense_keep;

const task = { id: 't-bench', title: 'make the tests pass', prompt: 'The test suite fails since the last refactor. Find out why and fix it; keep the change small.', verify: 'make test', attempt: 1, max_attempts: 3 } as Task;
const HEAD: ChatMessage[] = [
  { role: 'system', content: systemPrompt('/var/lib/selfware/run1/workspace') },
  { role: 'user', content: taskPrompt(task, null) },
];

/** Step i of the attempt: a command and an output of 200 to 900 characters. */
function step(i: number): Extract<TranscriptLine, { type: 'step' }> {
  const lines = 4 + ((i * 7) % 16);
  const output = Array.from({ length: lines }, (_, k) => `src/mod${(i + k) % 9}.ts:${10 + k * 3}: ${k % 3 === 0 ? 'error' : 'note'} in step ${i}, line ${k}`).join('\n');
  return {
    type: 'step',
    attempt: 1,
    step: i,
    ts: new Date(1_700_000_000_000 + i * 1000).toISOString(),
    action: i % 4 === 0 ? { action: 'read_file', path: `src/mod${i % 9}.ts` } : { action: 'shell', command: `npm test -- --grep 'case ${i}'` },
    decision: 'allow',
    observation: { ok: i % 3 !== 0, exit_code: i % 3 === 0 ? 1 : 0, signal: null, output, cut: 0, timed_out: false, duration_ms: 40 },
  };
}

// ---- The code before prefix reuse, as it was (lib/agent/transcript.ts and llm/llama.ts at 9cd5be2) ----

/** The old buildMessages: as many whole steps as fit, newest first, the older ones as one line each, all rebuilt at every step. */
function oldMessages(view: AttemptView, count: TokenCounter): ChatMessage[] {
  let left = Math.max(256, BUDGET - messagesTokens(HEAD, count));
  const whole: ChatMessage[][] = [];
  let i = view.steps.length - 1;
  for (; i >= 0; i--) {
    const s = view.steps[i] as AttemptView['steps'][number];
    let obs = observationText(s.observation);
    const cap = Math.max(400, Math.floor(left * 3.5 * 0.8));
    if (whole.length === 0 && obs.length > cap) obs = obs.slice(0, cap / 2) + '\n[... cut to fit the context ...]\n' + obs.slice(obs.length - cap / 2);
    const turns: ChatMessage[] = [
      { role: 'assistant', content: JSON.stringify(s.action) },
      { role: 'user', content: obs },
    ];
    const cost = messagesTokens(turns, count);
    if (whole.length > 0 && cost > left) break;
    whole.unshift(turns);
    left -= cost;
  }
  const lines: string[] = [];
  for (; i >= 0; i--) {
    const s = view.steps[i] as AttemptView['steps'][number];
    const line = `step ${s.step}: ${describeAction(s.action as never)} -> exit status ${s.observation.exit_code}`;
    const cost = count(line) + 1;
    if (cost > left) break;
    lines.unshift(line);
    left -= cost;
  }
  const messages = HEAD.map((m) => ({ ...m }));
  if (lines.length > 0 || i >= 0) {
    const last = messages[messages.length - 1] as ChatMessage;
    last.content += `\n\n${i >= 0 ? `(${i + 1} earlier steps omitted to fit the context)\n` : ''}Earlier steps of this attempt, in short:\n${lines.join('\n')}`;
  }
  for (const t of whole) messages.push(...t);
  return messages;
}

/** The old backend's request: a fresh chat on a fresh sequence, disposed after (the whole prompt evaluated). */
async function oldComplete(model: LlamaModel, context: import('node-llama-cpp').LlamaContext, messages: ChatMessage[]): Promise<{ evaluated: number; ms: number }> {
  const { LlamaChat } = await import('node-llama-cpp');
  const sequence = context.getSequence();
  const chat: LlamaChatT = new LlamaChat({ contextSequence: sequence, autoDisposeSequence: true });
  const t0 = performance.now();
  try {
    const history = messages.map((m) => (m.role === 'system' ? { type: 'system' as const, text: m.content } : m.role === 'user' ? { type: 'user' as const, text: m.content } : { type: 'model' as const, response: [m.content] }));
    history.push({ type: 'model', response: [] });
    const grammar = await model.llama.createGrammarForJsonSchema(ACTION_SCHEMA as never);
    await chat.generateResponse(history, { grammar, maxTokens: ANSWER_TOKENS, temperature: 0 });
    const m = sequence.tokenMeter;
    return { evaluated: m.usedInputTokens + 1, ms: performance.now() - t0 };
  } finally {
    chat.dispose();
  }
}

// ---- One attempt, both ways ----

interface Figures {
  evaluated: number;
  added: number;
  ms: number;
  condensed: number;
}

async function attemptNew(backend: LlamaBackend, count: TokenCounter): Promise<Figures> {
  const file = path.join(dir, 'new.jsonl');
  fs.rmSync(file, { force: true });
  appendLine(file, { type: 'attempt', attempt: 1, ts: new Date().toISOString(), session: 'bench' });
  const f: Figures = { evaluated: 0, added: 0, ms: 0, condensed: 0 };
  for (let i = 1; i <= STEPS; i++) {
    let view = attemptView(readTranscript(file), 1);
    let built = buildMessages(HEAD, view, BUDGET, count);
    if (built.over) {
      const plan = planCondense(view, BUDGET, keep, count);
      if (plan) {
        appendLine(file, { type: 'condense', attempt: 1, ts: new Date().toISOString(), through: plan.through, summary: condensedSummary(plan.base, plan.lines.join('\n'), BUDGET, count), by: 'rule' });
        f.condensed++;
        view = attemptView(readTranscript(file), 1);
        built = buildMessages(HEAD, view, BUDGET, count);
      }
    }
    const t0 = performance.now();
    const r = await backend.complete({ messages: built.messages, schema: ACTION_SCHEMA as unknown as Record<string, unknown>, maxTokens: ANSWER_TOKENS });
    f.ms += performance.now() - t0;
    f.evaluated += r.tokensEvaluated ?? Number.NaN;
    f.added += i === 1 ? messagesTokens(built.messages, count) : messagesTokens(built.messages.slice(-2), count);
    appendLine(file, step(i));
  }
  return f;
}

async function attemptOld(model: LlamaModel, context: import('node-llama-cpp').LlamaContext, count: TokenCounter): Promise<Figures> {
  const file = path.join(dir, 'old.jsonl');
  fs.rmSync(file, { force: true });
  appendLine(file, { type: 'attempt', attempt: 1, ts: new Date().toISOString(), session: 'bench' });
  const f: Figures = { evaluated: 0, added: 0, ms: 0, condensed: 0 };
  for (let i = 1; i <= STEPS; i++) {
    const view = attemptView(readTranscript(file), 1);
    const messages = oldMessages(view, count);
    const r = await oldComplete(model, context, messages);
    f.ms += r.ms;
    f.evaluated += r.evaluated;
    // What the step added: the same measure as for the new code (its two turns; the first prompt whole).
    f.added += i === 1 ? messagesTokens(messages, count) : messagesTokens(messages.slice(-2), count);
    appendLine(file, step(i));
  }
  return f;
}

/** The restart's context: large enough that evaluating the prompt weighs as it does for a real model, not the fixed costs of a start. */
const RESTART_CONTEXT = 16_384;

/**
 * What the next start saves (lib/agent/llm/llama.ts saveState/restoreState):
 * an attempt whose prompt fills a 16,384-token context is stopped after its
 * step N (its state saved, as a planned stop does); step N+1 is then asked
 * of a new backend that loads the model and answers, with the saved state
 * and without. Times to the first token from the new backend's start
 * (llama.cpp's binding, the model, the state, the answer's grammar) and from
 * the end of the model's load; medians of 5 each, alternated.
 */
async function restartTimes(): Promise<{ with: number; without: number; withAfterLoad: number; withoutAfterLoad: number; bytes: number; tokens: number }> {
  const cfg: LlmConfig = { ...config, context: RESTART_CONTEXT };
  const budget = RESTART_CONTEXT - MAX_TOKENS;
  const stateDir = path.join(dir, 'llm-state');
  const file = path.join(dir, 'restart.jsonl');
  appendLine(file, { type: 'attempt', attempt: 1, ts: new Date().toISOString(), session: 'bench' });
  const first = new LlamaBackend(cfg);
  let next: ChatMessage[];
  let saved;
  try {
    await first.load('Q4_K_M');
    const count: TokenCounter = (t) => first.countTokens(t) ?? t.length;
    // Steps until the prompt is near the budget (nothing condensed), then the one asked before the stop.
    let n = 0;
    let built = buildMessages(HEAD, attemptView(readTranscript(file), 1), budget, count);
    while (built.tokens < budget * 0.85) {
      appendLine(file, step(++n));
      built = buildMessages(HEAD, attemptView(readTranscript(file), 1), budget, count);
    }
    await first.complete({ messages: built.messages, schema: ACTION_SCHEMA as unknown as Record<string, unknown>, maxTokens: ANSWER_TOKENS });
    saved = await first.saveState(stateDir);
    if (!saved) throw new Error('nothing to save');
    appendLine(file, step(n + 1));
    next = buildMessages(HEAD, attemptView(readTranscript(file), 1), budget, count).messages;
  } finally {
    await first.dispose();
  }
  const keepState = fs.readFileSync(path.join(stateDir, 'sequence.state'));
  const keepMeta = fs.readFileSync(path.join(stateDir, 'sequence.json'));
  const once = async (withState: boolean): Promise<{ total: number; afterLoad: number }> => {
    if (withState) {
      fs.mkdirSync(stateDir, { recursive: true });
      fs.writeFileSync(path.join(stateDir, 'sequence.state'), keepState);
      fs.writeFileSync(path.join(stateDir, 'sequence.json'), keepMeta);
    }
    const b = new LlamaBackend(cfg);
    try {
      const t0 = performance.now();
      await b.load('Q4_K_M');
      const loaded = performance.now();
      if (withState) {
        const r = await b.restoreState(stateDir);
        if (!r.loaded) throw new Error(`the saved state was not loaded: ${r.reason}`);
      }
      let firstToken = 0;
      await b.complete({ messages: next, schema: ACTION_SCHEMA as unknown as Record<string, unknown>, maxTokens: 4, onToken: () => (firstToken ||= performance.now()) });
      return { total: firstToken - t0, afterLoad: firstToken - loaded };
    } finally {
      await b.dispose();
    }
  };
  const w: Array<{ total: number; afterLoad: number }> = [];
  const wo: Array<{ total: number; afterLoad: number }> = [];
  for (let i = 0; i < 5; i++) {
    wo.push(await once(false));
    w.push(await once(true));
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number;
  return {
    with: med(w.map((x) => x.total)),
    without: med(wo.map((x) => x.total)),
    withAfterLoad: med(w.map((x) => x.afterLoad)),
    withoutAfterLoad: med(wo.map((x) => x.afterLoad)),
    bytes: saved.bytes,
    tokens: saved.tokens,
  };
}

try {
  const backend = new LlamaBackend(config);
  await backend.load('Q4_K_M');
  // The tiny model's tokens: about one a character (the budget is in them).
  const count: TokenCounter = (t) => backend.countTokens(t) ?? Math.ceil(t.length);
  // The old code on its own model and context, so that nothing of one run helps the other.
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 0 });
  const model = await llama.loadModel({ modelPath: config.models.Q4_K_M as string });
  const context = await model.createContext({ contextSize: CONTEXT, threads: 1, sequences: 1 });
  try {
    console.log(`${STEPS} steps of one attempt on the tiny GGUF, a ${CONTEXT}-token context (budget ${BUDGET}), answers of ${ANSWER_TOKENS} tokens`);
    const oldF = await attemptOld(model, context, count);
    const newF = await attemptNew(backend, count);
    const restart = await restartTimes();
    const perStep = (f: Figures) => (f.ms / STEPS).toFixed(1);
    console.log(`before (fresh sequence, summary rebuilt each step): ${oldF.evaluated} tokens evaluated for ${oldF.added} added: ${(oldF.evaluated / oldF.added).toFixed(2)} per added token; ${perStep(oldF)} ms per step`);
    console.log(`now (one sequence, append-only, ${newF.condensed} condensations): ${newF.evaluated} tokens evaluated for ${newF.added} added: ${(newF.evaluated / newF.added).toFixed(2)} per added token; ${perStep(newF)} ms per step`);
    console.log(`tokens evaluated, now/before: ${(newF.evaluated / oldF.evaluated).toFixed(3)}; wall time per step, now/before: ${(newF.ms / oldF.ms).toFixed(3)}`);
    console.log(
      `after a stop, time to the first token of the next step in a ${RESTART_CONTEXT}-token context (${restart.tokens} tokens saved, ${(restart.bytes / 1048576).toFixed(1)} MiB): from the new backend's start, with the saved state ${restart.with.toFixed(0)} ms, without ${restart.without.toFixed(0)} ms, with/without ${(restart.with / restart.without).toFixed(3)}; from the model loaded, with ${restart.withAfterLoad.toFixed(0)} ms, without ${restart.withoutAfterLoad.toFixed(0)} ms, with/without ${(restart.withAfterLoad / restart.withoutAfterLoad).toFixed(3)}`,
    );
    console.log(`evaluated/added tokens per step: ${(newF.evaluated / newF.added).toFixed(2)}`);
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
    await backend.dispose();
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
