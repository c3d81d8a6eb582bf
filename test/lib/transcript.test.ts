// What the model is given at each step (lib/agent/transcript.ts): the
// messages only grow while they fit, a condensation happens once in a while
// and takes most of the steps at a time, the condensed head then stays as it
// is, and the same transcript gives the same messages after a restart.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChatMessage } from '../../lib/agent/llm/types.js';
import {
  appendLine,
  attemptView,
  buildMessages,
  estimateTokens,
  condensedSummary,
  messagesTokens,
  planCondense,
  readTranscript,
  SUMMARY_INTRO,
  type TranscriptLine,
} from '../../lib/agent/transcript.js';

const HEAD: ChatMessage[] = [
  { role: 'system', content: 'You are a careful engineer.' },
  { role: 'user', content: 'Task t1: make the tests pass.\n\nThis is attempt 1 of 3.' },
];

function step(n: number, output: string): Extract<TranscriptLine, { type: 'step' }> {
  return {
    type: 'step',
    attempt: 1,
    step: n,
    ts: new Date(1_700_000_000_000 + n * 1000).toISOString(),
    action: { action: 'shell', command: `make test # try ${n}` },
    decision: 'allow',
    observation: { ok: n % 3 !== 0, exit_code: n % 3 === 0 ? 2 : 0, signal: null, output, cut: 0, timed_out: false, duration_ms: 10 },
  };
}

/** b is a with messages appended, a's untouched. */
function samePrefix(a: ChatMessage[], b: ChatMessage[]): boolean {
  return b.length >= a.length && a.every((m, i) => m.role === b[i]?.role && m.content === b[i]?.content);
}

/** Run an attempt of n steps the way the agent does: build, condense when over (recorded), append the step. */
function simulate(dir: string, n: number, budget: number, keep: number, outputOf: (i: number) => string) {
  const file = path.join(dir, 't1.jsonl');
  appendLine(file, { type: 'attempt', attempt: 1, ts: new Date(1_700_000_000_000).toISOString(), session: 's1' });
  const prompts: ChatMessage[][] = [];
  const condensedAt: number[] = [];
  for (let i = 1; i <= n; i++) {
    let view = attemptView(readTranscript(file), 1);
    let built = buildMessages(HEAD, view, budget);
    if (built.over) {
      const plan = planCondense(view, budget, keep);
      assert.ok(plan, `step ${i}: over the budget with nothing to condense`);
      appendLine(file, { type: 'condense', attempt: 1, ts: new Date().toISOString(), through: plan.through, summary: condensedSummary(plan.base, plan.lines.join('\n'), budget), by: 'rule' });
      condensedAt.push(i);
      view = attemptView(readTranscript(file), 1);
      built = buildMessages(HEAD, view, budget);
      assert.ok(!built.over, `step ${i}: still over the budget after condensing (${built.tokens} of ${budget})`);
    }
    prompts.push(built.messages);
    appendLine(file, step(i, outputOf(i)));
  }
  return { file, prompts, condensedAt };
}

test('the messages only grow while they fit; over the budget, most steps are condensed at once and the head then stays', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-transcript-'));
  try {
    const budget = 3000;
    const { prompts, condensedAt } = simulate(dir, 120, budget, 0.1, (i) => `ok ${i}\n${'line of test output\n'.repeat(6 + (i % 5))}`);
    // Each step's prompt is the previous one with the step appended, except at a condensation.
    for (let i = 1; i < prompts.length; i++) {
      const grew = samePrefix(prompts[i - 1] as ChatMessage[], prompts[i] as ChatMessage[]);
      assert.equal(grew, !condensedAt.includes(i + 1), `step ${i + 1}: ${grew ? 'grew' : 'changed'} (condensations at ${condensedAt})`);
    }
    // Condensations are rare: each takes all but the newest tenth of the budget.
    assert.ok(condensedAt.length >= 3 && condensedAt.length <= 12, `condensed at steps ${condensedAt}`);
    for (let i = 1; i < condensedAt.length; i++) assert.ok((condensedAt[i] as number) - (condensedAt[i - 1] as number) >= 8, `condensed at steps ${condensedAt}`);
    // Every prompt fits, and the summary sits at the end of the task's message.
    for (const p of prompts) assert.ok(messagesTokens(p, estimateTokens) <= budget);
    const last = prompts[prompts.length - 1] as ChatMessage[];
    assert.match((last[1] as ChatMessage).content, new RegExp(`${SUMMARY_INTRO}\\n(\\(\\d+ earlier lines? omitted to fit the context\\)\\n)?step \\d+: shell: make test # try \\d+ -> exit status \\d`));
    // What a model that keeps its evaluated prompt evaluates (the text after the common start with
    // the prompt before) against what the steps added (each step's two turns; the first prompt whole).
    const render = (m: ChatMessage[]) => m.map((x) => `<|${x.role}|>${x.content}<|end|>`).join('');
    let evaluated = 0;
    let added = 0;
    for (let i = 0; i < prompts.length; i++) {
      const cur = render(prompts[i] as ChatMessage[]);
      const prev = i === 0 ? '' : render(prompts[i - 1] as ChatMessage[]);
      let k = 0;
      while (k < prev.length && k < cur.length && prev[k] === cur[k]) k++;
      evaluated += estimateTokens(cur.slice(k));
      added += estimateTokens(i === 0 ? cur : render((prompts[i] as ChatMessage[]).slice(-2)));
    }
    assert.ok(evaluated / added <= 1.3, `evaluated/added ${evaluated}/${added} = ${(evaluated / added).toFixed(2)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the same transcript gives the same messages after a restart, and a step is given the same wherever it stands', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-transcript-'));
  try {
    const budget = 2000;
    // One step's output is far longer than a third of the budget: it is cut, the same way, newest or not.
    const { file, prompts } = simulate(dir, 30, budget, 0.1, (i) => (i === 25 ? 'x'.repeat(20_000) : `ok ${i}`));
    const view = attemptView(readTranscript(file), 1);
    const again = buildMessages(HEAD, attemptView(readTranscript(file), 1), budget);
    assert.deepEqual(again, buildMessages(HEAD, view, budget), 'read twice, built twice: the same');
    const withBig = prompts.slice(25).map((p) => p.find((m) => m.content.includes('xxxxxxxx'))?.content);
    assert.ok(withBig[0] && withBig[0].includes('[... cut to fit the context ...]'), 'the long output is cut');
    assert.ok(estimateTokens(withBig[0]) <= budget / 3 + 1, `cut to a third of the budget: ${estimateTokens(withBig[0])}`);
    for (const w of withBig) if (w !== undefined) assert.equal(w, withBig[0], 'the same cut at every later step');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a summary that outgrows a quarter of the budget is folded, oldest lines first, with their count', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-transcript-'));
  try {
    const budget = 1200;
    const { file } = simulate(dir, 200, budget, 0.1, (i) => `ok ${i}`);
    const lines = readTranscript(file).filter((l): l is Extract<TranscriptLine, { type: 'condense' }> => l.type === 'condense');
    const last = lines[lines.length - 1];
    assert.ok(last, 'condensed');
    assert.match(last.summary, /^\(\d+ earlier lines? omitted to fit the context\)\n/);
    assert.ok(estimateTokens(last.summary) <= budget / 4 + 40, `summary of ${estimateTokens(last.summary)} tokens`);
    // The newest condensed step is in it.
    assert.match(last.summary, new RegExp(`step ${last.through}: `));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
