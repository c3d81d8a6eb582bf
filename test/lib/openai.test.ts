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
    assert.equal(r.quantization, 'Q3_K_L');
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
