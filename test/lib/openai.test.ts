// The openai backend against a small HTTP server of the test's own:
// streaming answers, retries, the circuit breaker, timeouts, and an endpoint
// that is gone (exit 69 from the agent after its patience).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { OpenAiBackend, TransientLlmError, FatalLlmError } from '../../lib/agent/llm/openai.js';
import { LlmUnavailableError } from '../../lib/agent/llm/types.js';
import { ACTION_SCHEMA } from '../../lib/agent/schema.js';
import { defaultsOf } from '../../lib/config/spec.js';
import { RUN_SCHEMA, type RunConfig } from '../../lib/config/index.js';
import { makeEnv, sw } from '../helpers.js';
import { startAgent } from '../fixtures/agent.js';

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;

async function server(handler: Handler): Promise<{ url: string; requests: Array<{ body: Record<string, unknown>; headers: http.IncomingHttpHeaders }>; close(): Promise<void> }> {
  const requests: Array<{ body: Record<string, unknown>; headers: http.IncomingHttpHeaders }> = [];
  const s = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      try {
        requests.push({ body: JSON.parse(body), headers: req.headers });
      } catch {
        requests.push({ body: {}, headers: req.headers });
      }
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
  };
}

function stream(res: http.ServerResponse, text: string, usage = true): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const piece of text.match(/.{1,5}/gs) ?? []) res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: piece } }] })}\n\n`);
  if (usage) res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 42, completion_tokens: 7 } })}\n\n`);
  res.end('data: [DONE]\n\n');
}

function llmConfig(over: Partial<RunConfig['llm']>): RunConfig['llm'] {
  return { ...(defaultsOf(RUN_SCHEMA) as RunConfig).llm, backend: 'openai', ...over };
}

const req = () => ({ messages: [{ role: 'user' as const, content: 'hi' }], schema: ACTION_SCHEMA as unknown as Record<string, unknown>, maxTokens: 64 });
const noSleep = async (): Promise<void> => {};

test('a streamed answer: text, token counts, onToken, and the request it sent', { timeout: 60_000 }, async () => {
  const s = await server((_q, _b, res) => stream(res, '{"action":"finish","summary":"ok"}'));
  try {
    process.env.SW_TEST_KEY = 'sekrit';
    const b = new OpenAiBackend(llmConfig({ endpoint: s.url, model: 'qwen3-coder', api_key_env: 'SW_TEST_KEY' }));
    await b.load('Q3_K_L');
    let tokens = 0;
    const r = await b.complete({ ...req(), onToken: (n) => (tokens += n) });
    assert.equal(r.text, '{"action":"finish","summary":"ok"}');
    assert.equal(r.tokensIn, 42);
    assert.equal(r.tokensOut, 7);
    assert.ok(tokens >= 7, `onToken called ${tokens} times`);
    // No model is configured for the level: the server decides, and the call claims no level.
    assert.equal(r.quantization, null);
    // Without the server's own figures, nothing is said of what it evaluated.
    assert.equal(r.tokensEvaluated, null);
    assert.equal(r.tokensReused, null);
    const sent = s.requests[0];
    assert.equal(sent?.headers.authorization, 'Bearer sekrit');
    assert.equal(sent?.body.model, 'qwen3-coder');
    assert.equal(sent?.body.stream, true);
    assert.deepEqual((sent?.body.response_format as { type: string }).type, 'json_schema');
    assert.deepEqual((sent?.body.response_format as { json_schema: { schema: unknown } }).json_schema.schema, ACTION_SCHEMA);
  } finally {
    delete process.env.SW_TEST_KEY;
    await s.close();
  }
});

test("what the server says of its prompt cache is recorded: OpenAI's cached_tokens, llama-server's timings", { timeout: 60_000 }, async () => {
  const answer = JSON.stringify({ choices: [{ delta: { content: '{"action":"finish","summary":"ok"}' } }] });
  let mode = 'openai';
  const s = await server((_q, _b, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${answer}\n\n`);
    if (mode === 'openai') res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 1000, completion_tokens: 9, prompt_tokens_details: { cached_tokens: 900 } } })}\n\n`);
    else res.write(`data: ${JSON.stringify({ choices: [{ delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 1000, completion_tokens: 9 }, timings: { prompt_n: 40, prompt_ms: 80.5, cache_n: 960 } })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  try {
    const b = new OpenAiBackend(llmConfig({ endpoint: s.url }));
    const r1 = await b.complete(req());
    assert.deepEqual([r1.tokensIn, r1.tokensEvaluated, r1.tokensReused, r1.evalMs], [1000, 100, 900, null]);
    mode = 'llama-server';
    const r2 = await b.complete(req());
    assert.deepEqual([r2.tokensIn, r2.tokensEvaluated, r2.tokensReused, r2.evalMs], [1000, 40, 960, 81]);
  } finally {
    await s.close();
  }
});

test('failures are retried with backoff, then the answer comes', { timeout: 60_000 }, async () => {
  let n = 0;
  const s = await server((_q, _b, res) => {
    if (++n <= 2) {
      res.writeHead(503);
      res.end('busy');
    } else stream(res, '{"action":"shell","command":"ls"}', false);
  });
  try {
    const waits: number[] = [];
    const b = new OpenAiBackend(llmConfig({ endpoint: s.url, retries: 3, breaker_threshold: 10 }), { sleep: async (ms) => void waits.push(ms) });
    const r = await b.complete(req());
    assert.equal(r.text, '{"action":"shell","command":"ls"}');
    assert.equal(r.tokensOut, 7, 'without usage, the chunks are counted');
    assert.equal(s.requests.length, 3);
    assert.deepEqual(waits, [500, 1000]);
  } finally {
    await s.close();
  }
});

test('the circuit breaker opens after failures in a row, refuses without calling, and half-opens after its cooldown', { timeout: 60_000 }, async () => {
  let fail = true;
  const s = await server((_q, _b, res) => {
    if (fail) {
      res.writeHead(500);
      res.end('boom');
    } else stream(res, '{"action":"finish","summary":"back"}');
  });
  try {
    let now = 1_000_000;
    const b = new OpenAiBackend(llmConfig({ endpoint: s.url, retries: 5, breaker_threshold: 3, breaker_cooldown: 30_000, patience: 600_000 }), { now: () => now, sleep: noSleep });
    await assert.rejects(b.complete(req()), (e: unknown) => e instanceof TransientLlmError && /answered 500: boom/.test(e.message) && e.retryAfterMs === 30_000);
    assert.equal(s.requests.length, 3, 'stops at the threshold');
    assert.equal(b.breakerState, 'open');
    await assert.rejects(b.complete(req()), (e: unknown) => e instanceof TransientLlmError && /circuit breaker open after 3 failures in a row/.test(e.message));
    assert.equal(s.requests.length, 3, 'an open breaker does not call the endpoint');
    now += 30_001;
    await assert.rejects(b.complete(req()));
    assert.equal(s.requests.length, 4, 'half-open: one trial request, which failed: open again');
    assert.equal(b.breakerState, 'open');
    now += 30_001;
    fail = false;
    const r = await b.complete(req());
    assert.equal(r.text, '{"action":"finish","summary":"back"}');
    assert.equal(b.breakerState, 'closed');
  } finally {
    await s.close();
  }
});

test('a 4xx is not retried; a request that hangs times out', { timeout: 60_000 }, async () => {
  const bad = await server((_q, _b, res) => {
    res.writeHead(400);
    res.end('{"error":"bad schema"}');
  });
  try {
    const b = new OpenAiBackend(llmConfig({ endpoint: bad.url, retries: 3 }), { sleep: noSleep });
    await assert.rejects(b.complete(req()), (e: unknown) => e instanceof FatalLlmError && /answered 400/.test(e.message));
    assert.equal(bad.requests.length, 1);
  } finally {
    await bad.close();
  }
  const hang = await server(() => {
    /* never answers */
  });
  try {
    const b = new OpenAiBackend(llmConfig({ endpoint: hang.url, retries: 1, request_timeout: 300, breaker_threshold: 10 }), { sleep: noSleep });
    const t0 = Date.now();
    await assert.rejects(b.complete(req()), (e: unknown) => e instanceof TransientLlmError && /no answer within 300 ms/.test(e.message));
    assert.equal(hang.requests.length, 2);
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    await hang.close();
  }
});

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('an endpoint gone longer than the patience is unavailable', { timeout: 60_000 }, async () => {
  const port = await closedPort();
  let now = 0;
  const b = new OpenAiBackend(llmConfig({ endpoint: `http://127.0.0.1:${port}/v1`, retries: 0, patience: 60_000, breaker_threshold: 100 }), { now: () => now, sleep: noSleep });
  await assert.rejects(b.complete(req()), TransientLlmError);
  now += 30_000;
  await assert.rejects(b.complete(req()), TransientLlmError);
  now += 31_000;
  await assert.rejects(b.complete(req()), (e: unknown) => e instanceof LlmUnavailableError && /unavailable for 61 s/.test(e.message));
});

test('the agent on a dead endpoint exits 69 after its patience', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const port = await closedPort();
    fs.writeFileSync(
      path.join(t.configDir, 'run1.yaml'),
      `llm:\n  backend: openai\n  endpoint: http://127.0.0.1:${port}/v1\n  retries: 1\n  patience: 2s\n  breaker_threshold: 2\n  breaker_cooldown: 500ms\n`,
    );
    const add = await sw('sw-agent', ['add', 'run1', 'say hello'], t);
    assert.equal(add.exitCode, 0, String(add.stderr));
    const a = startAgent(t);
    const r = await a.child;
    assert.equal(r.exitCode, 69, a.output());
    assert.match(a.output(), /the model is unavailable: http:\/\/127\.0\.0\.1:\d+\/v1 unavailable for \d+ s/);
    const rec = await sw('sw-recover', ['run1', '--json'], t);
    assert.equal(JSON.parse(String(rec.stdout)).action, 'reconcile', 'the session ended as unavailable: recovery runs at the next start');
  } finally {
    t.cleanup();
  }
});

/** A fake server answering every chat request with a shell step (and finish after `steps`), recording every request's path and body. */
async function agentServer(steps: number) {
  const paths: string[] = [];
  let n = 0;
  const s = await server((req, _body, res) => {
    paths.push(String(req.url));
    if (req.url === '/api/generate') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"done":true,"done_reason":"unload"}');
      return;
    }
    n++;
    stream(res, JSON.stringify(n % steps === 0 ? { action: 'finish', summary: 'done' } : { action: 'shell', command: `echo ${n}` }));
  });
  return { ...s, paths };
}

/** The agent on the openai backend under the governor: Q3_K_L, then unload, then back to Q4_K_M. */
async function governed(t: ReturnType<typeof makeEnv>, llm: string, check: () => Promise<boolean>) {
  const { writeDecision } = await import('../../lib/governor/decision.js');
  const { query, waitFor, startAgent: start } = await import('../fixtures/agent.js');
  const decide = (over: Record<string, unknown>) =>
    writeDecision(t.runtimeDir, { version: 1, time: new Date().toISOString(), host: 'test', tier: 'normal', quantization: 'Q4_K_M', actions: [], context_limit: null, reasons: [], readings: {}, ...over } as never);
  fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), `llm:\n  backend: openai\n${llm}policy:\n  allow: ["*"]\n`);
  for (let i = 0; i < 3; i++) assert.equal((await sw('sw-agent', ['add', 'run1', `task ${i}`], t)).exitCode, 0);
  decide({});
  const a = start(t);
  const calls = async () => Number((await query(t, 'SELECT count(*) FROM llm_calls WHERE ok = 1'))[0]?.[0]);
  await waitFor('calls at the start level', async () => (await calls()) >= 2, 20_000, a);
  decide({ tier: 'warning', quantization: 'Q3_K_L' });
  const at = await calls();
  await waitFor('calls after the step down', async () => (await calls()) >= at + 3 && (await check()), 20_000, a);
  decide({ tier: 'critical', quantization: 'Q3_K_L', actions: ['unload'], reasons: ['VRAM 97%'] });
  await waitFor('the agent obeys the unload', async () => /unloaded by the governor \(critical\)/.test(a.output()), 20_000, a);
  decide({ tier: 'normal', quantization: 'Q4_K_M' });
  const at2 = await calls();
  await waitFor('calls after the way back', async () => (await calls()) >= at2 + 2, 20_000, a);
  assert.equal(await a.stop(), 0, a.output());
  return { output: a.output(), query: (sql: string) => query(t, sql) };
}

test('openai on Ollama under the governor: a model name per level, the old one unloaded (keep_alive 0) at a switch and at an unload; the switches recorded are real', { timeout: 90_000 }, async () => {
  const t = makeEnv();
  const s = await agentServer(6);
  try {
    const r = await governed(t, `  endpoint: ${s.url}\n  server: ollama\n  model_names:\n    Q4_K_M: "qwen3-coder:30b-q4_K_M"\n    Q3_K_L: "qwen3-coder:30b-q3_K_L"\n`, async () => s.requests.some((q) => q.body.model === 'qwen3-coder:30b-q3_K_L'));
    const asked = s.requests.map((q, i) => ({ path: s.paths[i], model: q.body.model, keep_alive: q.body.keep_alive }));
    const unloads = asked.filter((q) => q.path === '/api/generate');
    // The step down unloads Q4 before Q3 is asked for; the governor's unload drops Q3; the way back asks for Q4 again.
    assert.deepEqual(unloads, [
      { path: '/api/generate', model: 'qwen3-coder:30b-q4_K_M', keep_alive: 0 },
      { path: '/api/generate', model: 'qwen3-coder:30b-q3_K_L', keep_alive: 0 },
    ]);
    // In order: Q4 asked for, Q4 unloaded, Q3 asked for, Q3 unloaded, Q4 asked for again.
    const order = asked.map((q) => `${q.path === '/api/generate' ? 'unload' : 'chat'} ${String(q.model).replace('qwen3-coder:30b-', '')}`).filter((x, i, a) => x !== a[i - 1]);
    assert.deepEqual(order, ['chat q4_K_M', 'unload q4_K_M', 'chat q3_K_L', 'unload q3_K_L', 'chat q4_K_M']);
    assert.deepEqual(await r.query("SELECT json_extract(data, '$.from'), json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos"), [['Q4_K_M', 'Q3_K_L'], ['Q3_K_L', 'Q4_K_M']]);
    assert.deepEqual(await r.query("SELECT json_extract(data, '$.reason') FROM events WHERE type = 'model_unloaded'"), [['governor']]);
    // Each call is recorded with the model and level that answered it.
    assert.deepEqual(await r.query('SELECT DISTINCT model, quantization FROM llm_calls ORDER BY pos'), [['qwen3-coder:30b-q4_K_M', 'Q4_K_M'], ['qwen3-coder:30b-q3_K_L', 'Q3_K_L']]);
  } finally {
    await s.close();
    t.cleanup();
  }
});

test('openai with an endpoint per level (llama-server, vLLM): a switch sends the requests to the level\'s server', { timeout: 90_000 }, async () => {
  const t = makeEnv();
  const q4 = await agentServer(6);
  const q3 = await agentServer(6);
  try {
    const r = await governed(t, `  endpoint: ${q4.url}\n  server: llama-server\n  endpoints:\n    Q4_K_M: ${q4.url}\n    Q3_K_L: ${q3.url}\n`, async () => q3.requests.length > 0);
    assert.ok(q3.requests.length >= 2, `${q3.requests.length} requests at the Q3_K_L server`);
    assert.ok(![...q4.paths, ...q3.paths].includes('/api/generate'), 'no unload asked of a llama-server');
    assert.match(r.output, /the governor says unload \(critical: VRAM 97%\); the llama-server server behind \S+ keeps its model and cannot be told to unload it/);
    assert.deepEqual(await r.query("SELECT count(*) FROM events WHERE type = 'model_unloaded'"), [[0]]);
    assert.deepEqual(await r.query("SELECT json_extract(data, '$.from'), json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos"), [['Q4_K_M', 'Q3_K_L'], ['Q3_K_L', 'Q4_K_M']]);
  } finally {
    await q4.close();
    await q3.close();
    t.cleanup();
  }
});

test('openai on one model the server chose: a level is said once to be the server\'s, no switch and no unload recorded, calls carry no level', { timeout: 90_000 }, async () => {
  const t = makeEnv();
  const s = await agentServer(6);
  try {
    const r = await governed(t, `  endpoint: ${s.url}\n`, async () => true);
    assert.equal(r.output.match(/the governor asks for Q3_K_L \(warning\); the endpoint has no model for it \(llm\.model_names, llm\.endpoints\): its server decides; nothing switched/g)?.length, 1, r.output);
    assert.doesNotMatch(r.output, /switched the model/);
    assert.deepEqual(await r.query("SELECT count(*) FROM events WHERE type IN ('quantization_switch', 'model_unloaded')"), [[0]]);
    assert.deepEqual(await r.query('SELECT DISTINCT model, quantization FROM llm_calls'), [['default', null]]);
    assert.ok(!s.paths.includes('/api/generate'));
    assert.ok(new Set(s.requests.map((q) => q.body.model)).size === 1);
  } finally {
    await s.close();
    t.cleanup();
  }
});
