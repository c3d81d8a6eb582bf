// The llama backend on real node-llama-cpp with the tiny GGUF the fixture
// writes: grammar-constrained answers, token counts, load, unload, level
// switches, abort and a missing file; and the fixture's own determinism.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { RUN_SCHEMA, type RunConfig } from '../../lib/config/index.js';
import type { LlmConfig } from '../../lib/config/schema.js';
import { defaultsOf } from '../../lib/config/spec.js';
import { ACTION_SCHEMA, parseAction } from '../../lib/agent/schema.js';
import { LlamaBackend } from '../../lib/agent/llm/llama.js';
import type { ChatMessage, CompleteRequest } from '../../lib/agent/llm/types.js';
import { tinyModels, writeTinyGguf } from '../fixtures/gguf.js';
import { DIST, makeEnv, type TestEnv } from '../helpers.js';

/** A run's llm config with the tiny models of t's directory. */
function llmConfig(t: TestEnv, over: Partial<LlmConfig> = {}): LlmConfig {
  const base = (defaultsOf(RUN_SCHEMA) as RunConfig).llm;
  // One thread: the tiny model's tokens take microseconds, so a second
  // thread only adds waiting on a 2-core machine (bench/tokens.ts measures it).
  return { ...base, models: tinyModels(path.join(t.dir, 'models')), context: 4096, max_tokens: 2048, threads: 1, gpu: false, ...over };
}

const messages = (i: number): ChatMessage[] => [
  { role: 'system', content: 'You are a coding agent. Answer with one JSON action: shell, read_file, write_file or finish.' },
  { role: 'user', content: `Task ${i}: create hello-${i}.txt containing "hello ${i}".` },
];

const request = (i: number, over: Partial<CompleteRequest> = {}): CompleteRequest => ({
  messages: messages(i),
  schema: ACTION_SCHEMA as unknown as Record<string, unknown>,
  maxTokens: 2048,
  ...over,
});

/** A backend and its temp dir, freed whatever the test does. */
async function withBackend(fn: (b: LlamaBackend, t: TestEnv, cfg: LlmConfig) => Promise<void>, over: Partial<LlmConfig> = {}): Promise<void> {
  const t = makeEnv('llama');
  const cfg = llmConfig(t, over);
  const b = new LlamaBackend(cfg);
  try {
    await fn(b, t, cfg);
  } finally {
    await b.dispose();
    t.cleanup();
  }
}

test('the fixture writes the same bytes for a seed and other bytes for another seed', () => {
  const t = makeEnv('gguf');
  try {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => path.join(t.dir, `${n}.gguf`)) as [string, string, string];
    writeTinyGguf(a, { seed: 7 });
    writeTinyGguf(b, { seed: 7 });
    writeTinyGguf(c, { seed: 8 });
    const [ba, bb, bc] = [a, b, c].map((f) => fs.readFileSync(f)) as [Buffer, Buffer, Buffer];
    assert.equal(ba.subarray(0, 4).toString('latin1'), 'GGUF');
    assert.ok(ba.length > 400_000 && ba.length < 700_000, `size ${ba.length}`);
    assert.ok(ba.equals(bb), 'same seed, same bytes');
    assert.equal(ba.length, bc.length, 'same shape');
    assert.ok(!ba.equals(bc), 'another seed, other weights');
    const models = tinyModels(path.join(t.dir, 'm'));
    assert.deepEqual(Object.keys(models).sort(), ['Q2_K', 'Q3_K_L', 'Q4_K_M']);
    assert.ok(!fs.readFileSync(models.Q4_K_M).equals(fs.readFileSync(models.Q2_K)), 'levels differ');
    const mtime = fs.statSync(models.Q2_K).mtimeMs;
    tinyModels(path.join(t.dir, 'm'));
    assert.equal(fs.statSync(models.Q2_K).mtimeMs, mtime, 'existing files are kept');
  } finally {
    t.cleanup();
  }
});

test('the fixture runs as a script and prints each level and its file', { timeout: 60_000 }, async () => {
  const t = makeEnv('gguf');
  try {
    const r = await execa(process.execPath, [path.join(DIST, 'test', 'fixtures', 'gguf.js'), path.join(t.dir, 'demo')], { reject: false });
    assert.equal(r.exitCode, 0, String(r.stderr));
    const lines = String(r.stdout).trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split('\t')[0]),
      ['Q4_K_M', 'Q3_K_L', 'Q2_K'],
    );
    for (const l of lines) assert.ok(fs.statSync(l.split('\t')[1] as string).size > 400_000, l);
    const usage = await execa(process.execPath, [path.join(DIST, 'test', 'fixtures', 'gguf.js')], { reject: false });
    assert.equal(usage.exitCode, 64);
  } finally {
    t.cleanup();
  }
});

test('the tiny model answers with valid actions, counting tokens', { timeout: 60_000 }, async (ctx) => {
  await withBackend(async (b) => {
    const progress: number[] = [];
    await b.load('Q4_K_M', () => progress.push(Date.now()));
    assert.ok(b.loaded);
    assert.ok(progress.length >= 2, 'progress is reported while loading');
    let valid = 0;
    const errors: string[] = [];
    for (let i = 0; i < 10; i++) {
      let streamed = 0;
      const r = await b.complete(request(i, { onToken: (n) => (streamed += n) }));
      assert.ok(r.tokensOut > 0 && (r.tokensPerS ?? 0) > 0 && r.tokensIn > 20, JSON.stringify({ ...r, text: r.text.slice(0, 80) }));
      assert.ok(streamed > 0 && streamed <= r.tokensOut, `onToken counted ${streamed} of ${r.tokensOut}`);
      assert.equal(r.model, 'tiny-Q4_K_M.gguf');
      assert.equal(r.quantization, 'Q4_K_M');
      const p = parseAction(r.text);
      if ('action' in p) valid++;
      else errors.push(p.error);
    }
    ctx.diagnostic(`${valid}/10 answers were valid actions${errors.length ? ': ' + errors.join('; ') : ''}`);
    assert.ok(valid >= 8, `only ${valid}/10 valid: ${errors.join('; ')}`);
    assert.equal(b.chatWrapperName, 'ChatML', 'the template picks the ChatML wrapper');
  });
});

test('unload frees the model and the next request loads it again', { timeout: 60_000 }, async () => {
  await withBackend(async (b) => {
    await b.load('Q4_K_M');
    await b.unload();
    assert.equal(b.loaded, false);
    assert.equal(b.quantization, 'Q4_K_M', 'the level is kept for the reload');
    const r = await b.complete(request(1, { maxTokens: 64 }));
    assert.ok(b.loaded, 'loaded on demand');
    assert.ok(r.tokensOut > 0);
    assert.equal(r.quantization, 'Q4_K_M');
  });
});

test('load switches to another level and its file', { timeout: 60_000 }, async () => {
  await withBackend(async (b) => {
    await b.load('Q4_K_M');
    const before = await b.complete(request(2, { maxTokens: 64 }));
    await b.load('Q2_K');
    assert.equal(b.quantization, 'Q2_K');
    assert.ok(b.loaded);
    const after = await b.complete(request(2, { maxTokens: 64 }));
    assert.equal(before.model, 'tiny-Q4_K_M.gguf');
    assert.equal(after.model, 'tiny-Q2_K.gguf');
    assert.equal(after.quantization, 'Q2_K');
    // Other weights, another answer to the same request (greedy decoding, so not by chance).
    assert.notEqual(after.text, before.text);
  }, { temperature: 0 });
});

test('an aborted request rejects with AbortError and the backend still answers', { timeout: 60_000 }, async () => {
  await withBackend(async (b) => {
    await b.load('Q4_K_M');
    const ac = new AbortController();
    let seen = 0;
    // The tiny model would run to maxTokens: abort once tokens flow.
    const p = b.complete(
      request(3, {
        maxTokens: 3000,
        signal: ac.signal,
        onToken: (n) => {
          seen += n;
          if (seen >= 5) ac.abort();
        },
      }),
    );
    await assert.rejects(p, (err: Error) => err.name === 'AbortError');
    const pre = new AbortController();
    pre.abort();
    await assert.rejects(b.complete(request(3, { signal: pre.signal })), (err: Error) => err.name === 'AbortError');
    const r = await b.complete(request(4, { maxTokens: 64 }));
    assert.ok(r.tokensOut > 0, 'the sequence was freed');
  });
});

test('a missing model file or level gives an error naming the level and path', { timeout: 60_000 }, async () => {
  await withBackend(async (b, t, cfg) => {
    const gone = path.join(t.dir, 'models', 'gone.gguf');
    cfg.models.Q3_K_L = gone;
    await b.load('Q4_K_M');
    await assert.rejects(b.load('Q3_K_L'), (err: Error) => err.message.includes(gone) && err.message.includes('Q3_K_L'));
    assert.ok(b.loaded, 'the loaded level stays when the new one is missing');
    assert.equal(b.quantization, 'Q4_K_M');
    delete cfg.models.Q2_K;
    await assert.rejects(b.load('Q2_K'), /Q2_K.*llm\.models\.Q2_K/);
  });
});

test('answers hold no broken UTF-8 and keep short string limits', { timeout: 60_000 }, async () => {
  // Random weights pick lone high bytes as often as letters; the backend bans them.
  const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 6 }, tags: { type: 'array', items: { type: 'string', maxLength: 3 }, maxItems: 3 } }, required: ['name', 'tags'] };
  await withBackend(async (b) => {
    const bad: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await b.complete(request(i, { schema, maxTokens: 200 }));
      let v: { name: string; tags: string[] } | null = null;
      try {
        v = JSON.parse(r.text) as { name: string; tags: string[] };
      } catch {
        /* counted below */
      }
      const ok = v !== null && !r.text.includes('\uFFFD') && v.name.length <= 6 && v.tags.length <= 3 && v.tags.every((s) => s.length <= 3);
      if (!ok) bad.push(JSON.stringify(r.text));
    }
    assert.ok(bad.length <= 2, `${bad.length}/10 broke the schema: ${bad.join(' ')}`);
  });
});

test('every action shape of the grammar comes out of the tiny model as that action', { timeout: 120_000 }, async (ctx) => {
  await withBackend(async (b) => {
    await b.load('Q4_K_M');
    const shapes = ACTION_SCHEMA.oneOf as Array<{ properties: Record<string, unknown> & { action: { const: string } } }>;
    const seen: string[] = [];
    for (const shape of shapes) {
      const name = shape.properties.action.const;
      const keys = Object.keys(shape.properties).sort();
      let got: string | null = null;
      const errors: string[] = [];
      // A random model may run into max tokens inside a long string: a few tries.
      for (let i = 0; i < 8 && got === null; i++) {
        const r = await b.complete(request(i, { schema: { oneOf: [shape] } as unknown as Record<string, unknown>, maxTokens: 1500 }));
        const p = parseAction(r.text);
        if ('error' in p) {
          errors.push(p.error);
          continue;
        }
        assert.equal(p.action.action, name, r.text);
        assert.deepEqual(Object.keys(p.action).sort(), keys, `the shape's keys: ${r.text}`);
        if (p.action.action === 'view' && p.action.start !== undefined) assert.ok(Number.isInteger(p.action.start) && Number.isInteger(p.action.end), r.text);
        got = `${name}(${keys.filter((k) => k !== 'action').join(',')})`;
      }
      assert.ok(got, `${name}: no valid answer in 8 tries: ${errors.join('; ')}`);
      seen.push(got);
    }
    ctx.diagnostic(`shapes produced: ${seen.join(' ')}`);
    assert.equal(seen.length, 11);
  });
});
