// Generation speed of the llama backend on the tiny GGUF: tokens/s with the
// configured thread setting (llm.threads, 0 = all cores but one) against the
// best of a sweep over 1..2x cores, median over several requests each; and
// how long a load, a reload after unload and a switch of level take.
//   node dist/bench/tokens.js [requests]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RUN_SCHEMA, type RunConfig } from '../lib/config/index.js';
import type { LlmConfig } from '../lib/config/schema.js';
import { defaultsOf } from '../lib/config/spec.js';
import { ACTION_SCHEMA } from '../lib/agent/schema.js';
import { LlamaBackend, resolveThreads } from '../lib/agent/llm/llama.js';
import type { CompleteRequest } from '../lib/agent/llm/types.js';
import { tinyModels } from '../test/fixtures/gguf.js';
import { median } from './stats.js';

const requests = Number(process.argv[2] ?? 5);
// An oversubscribed setting runs at a few tokens/s: a request is cut after
// this long and its speed taken from the tokens that came.
const REQUEST_MS = 3000;
const MAX_TOKENS = 64;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tokens-'));
const ms = (t0: number): number => performance.now() - t0;

const defaults = (defaultsOf(RUN_SCHEMA) as RunConfig).llm;
const config = (threads: number): LlmConfig => ({ ...defaults, models: tinyModels(dir), context: 4096, gpu: false, threads });

const request = (i: number, over: Partial<CompleteRequest> = {}): CompleteRequest => ({
  messages: [
    { role: 'system', content: 'You are a coding agent. Answer with one JSON action.' },
    { role: 'user', content: `Task ${i}: list the files, then write notes-${i}.md.` },
  ],
  schema: ACTION_SCHEMA as unknown as Record<string, unknown>,
  maxTokens: MAX_TOKENS,
  ...over,
});

/** tokens/s of one request; a request cut by the time limit counts the tokens after the first. */
async function timed(b: LlamaBackend, i: number): Promise<{ tps: number; cut: boolean }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), REQUEST_MS);
  let first = 0;
  let last = 0;
  let n = 0;
  const onToken = (k: number): void => {
    last = performance.now();
    if (first === 0) first = last;
    else n += k;
  };
  try {
    const r = await b.complete(request(i, { signal: ac.signal, onToken }));
    return { tps: r.tokensPerS ?? 0, cut: false };
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
    return { tps: n > 0 && last > first ? n / ((last - first) / 1000) : 0, cut: true };
  } finally {
    clearTimeout(timer);
  }
}

async function speed(threads: number): Promise<{ tps: number; cut: number }> {
  const b = new LlamaBackend(config(threads));
  try {
    await b.load('Q4_K_M');
    await timed(b, -1); // warm up: first allocations, grammar compile
    const tps: number[] = [];
    let cut = 0;
    for (let i = 0; i < requests; i++) {
      const r = await timed(b, i);
      tps.push(r.tps);
      if (r.cut) cut++;
    }
    return { tps: median(tps), cut };
  } finally {
    await b.dispose();
  }
}

try {
  const cores = os.availableParallelism();
  const configured = resolveThreads(defaults.threads);
  console.log(`cores: ${cores}; llm.threads: ${defaults.threads} (= ${configured} threads); ${requests} requests of up to ${MAX_TOKENS} tokens per setting, each cut after ${REQUEST_MS / 1000} s`);

  const sweep = new Map<number, { tps: number; cut: number }>();
  for (let t = 1; t <= 2 * cores; t++) {
    const r = await speed(t);
    sweep.set(t, r);
    console.log(`threads ${t}: median ${r.tps.toFixed(1)} tokens/s${r.cut ? `  (${r.cut} requests cut at the time limit)` : ''}`);
  }
  const [bestThreads, best] = [...sweep].reduce((a, b) => (b[1].tps > a[1].tps ? b : a));
  const conf = sweep.get(configured) ?? (await speed(configured));
  console.log(`configured (${configured} threads): ${conf.tps.toFixed(1)} tokens/s; best (${bestThreads} threads): ${best.tps.toFixed(1)} tokens/s; ratio configured/best: ${(conf.tps / best.tps).toFixed(3)}`);

  // Load times: the first load also starts llama.cpp's binding.
  const b = new LlamaBackend(config(configured));
  try {
    let t0 = performance.now();
    await b.load('Q4_K_M');
    const first = ms(t0);
    const reloads: number[] = [];
    const switches: number[] = [];
    for (let i = 0; i < 5; i++) {
      await b.unload();
      t0 = performance.now();
      await b.load('Q4_K_M');
      reloads.push(ms(t0));
      t0 = performance.now();
      await b.load('Q2_K');
      switches.push(ms(t0));
      await b.load('Q4_K_M');
    }
    t0 = performance.now();
    await b.unload();
    const unload = ms(t0);
    console.log(`first load (with llama.cpp's binding): ${first.toFixed(1)} ms`);
    console.log(`reload after unload: median ${median(reloads).toFixed(1)} ms; switch of level: median ${median(switches).toFixed(1)} ms; unload: ${unload.toFixed(1)} ms`);
  } finally {
    await b.dispose();
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
