// The agent on the llama backend with the generated tiny GGUF: it loads,
// answers with schema-valid actions (random ones: the model is random), unloads
// when idle and loads again on demand.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeEnv, sw } from '../helpers.js';
import { query, startAgent, tasks, transcript, waitFor } from '../fixtures/agent.js';
import { tinyLlamaConfig, tinyModels } from '../fixtures/gguf.js';

test('llama backend: tasks run on the tiny model, the model unloads when idle and comes back on demand', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    // A random model's shell commands are not run (tinyLlamaConfig refuses them).
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(models, { llm: ['max_tokens: 200', 'threads: 1', 'idle_unload: 1s'] }));
    // A random model may never say finish: the task's time limit ends it then.
    const add = async (title: string) => String((await sw('sw-agent', ['add', 'run1', '--title', title, '--verify', 'true', '--timeout', '15s', `${title}: write notes.md`], t)).stdout).trim();
    const ended = async (id: string) => ['completed', 'failed'].includes(String((await tasks(t)).find((x) => x.id === id)?.status));
    const first = await add('first');
    const a = startAgent(t);
    await waitFor('the first task ended', () => ended(first), 60_000, a);
    await waitFor('the idle unload', async () => (await query(t, "SELECT count(*) FROM events WHERE type = 'model_unloaded' AND json_extract(data, '$.reason') = 'idle'"))[0]?.[0] === 1, 20_000, a);
    const second = await add('second');
    await waitFor('the second task ended', () => ended(second), 60_000, a);
    assert.equal(await a.stop(), 0, a.output());
    const loads = await query(t, "SELECT json_extract(data, '$.quantization') FROM events WHERE type = 'model_loaded' ORDER BY pos");
    assert.deepEqual(loads, [['Q4_K_M'], ['Q4_K_M']], 'loaded at start, and again on demand after the idle unload');
    const calls = await query(t, "SELECT count(*), min(tokens_out), min(tokens_per_s), min(quantization) FROM llm_calls WHERE ok = 1 AND backend = 'llama'");
    const [n, minOut, minTps, q] = calls[0] as [number, number, number, string];
    assert.ok(n >= 2 && minOut > 0 && minTps > 0 && q === 'Q4_K_M', JSON.stringify(calls));
    const steps = [...transcript(t, first), ...transcript(t, second)].filter((l) => l.type === 'step');
    const valid = steps.filter((s) => s.action !== null).length;
    assert.ok(valid >= Math.ceil(steps.length * 0.8), `${valid} of ${steps.length} answers were valid actions`);
  } finally {
    t.cleanup();
  }
});

test('llama backend: each step evaluates only what it adds to the prompt; over the budget the older steps are condensed once, and the report shows the reuse', { timeout: 120_000 }, async () => {
  const t = makeEnv();
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    // A budget the head (about 1,600 tokens: the tiny model's tokens are about one a character, and the
    // system text names nine actions; the memory held to 150) and a few steps fill.
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(models, { llm: ['max_tokens: 120', 'threads: 1'], agent: ['context_budget: 2400', 'memory_budget: 150'] }));
    // A random model says finish now and then: several tasks make enough steps (on a busy machine too: the wait is for steps, not time).
    const ids: string[] = [];
    for (let i = 1; i <= 10; i++) ids.push(String((await sw('sw-agent', ['add', 'run1', '--title', `long${i}`, '--verify', 'true', '--timeout', '30s', `long${i}: write notes.md`], t)).stdout).trim());
    const a = startAgent(t);
    const lines = () => ids.flatMap((id) => transcript(t, id));
    await waitFor('12 steps and a condensation', async () => lines().filter((l) => l.type === 'step').length >= 12 && lines().some((l) => l.type === 'condense'), 100_000, a);
    assert.equal(await a.stop(), 0, a.output());
    const calls = (await query(t, 'SELECT task_id, step, tokens_in, tokens_evaluated, tokens_reused, eval_ms FROM llm_calls WHERE ok = 1 ORDER BY pos')) as Array<[string, number, number, number, number, number]>;
    const condensed = lines().filter((l) => l.type === 'condense') as Array<{ through: number; summary: string }>;
    const steps = lines().filter((l) => l.type === 'step').length;
    assert.ok(condensed.length >= 1, `the steps outgrew the budget and were condensed (${steps} steps)`);
    assert.ok(condensed.length <= Math.ceil(steps / 2), `${condensed.length} condensations in ${steps} steps: once in a while, not every step`);
    assert.match(a.output(), /condensed steps? [\d-]+ to one line each to fit the context \(\d+ -> \d+ tokens of 2400\)/);
    // Every call says what it evaluated, and the two add up to the prompt.
    for (const [task, step, tin, ev, re] of calls) assert.ok(ev > 0 && re >= 0 && ev + re === tin, `${task} step ${step}: ${ev} evaluated + ${re} reused != ${tin}`);
    // After a task's first step, a step's prompt is mostly the one before: the model evaluates little of it.
    const later = calls.filter((c) => c[1] > 1);
    const evaluated = later.reduce((n, c) => n + c[3], 0);
    const prompt = later.reduce((n, c) => n + c[2], 0);
    assert.ok(later.length >= 4 && evaluated < prompt / 3, `${evaluated} of ${prompt} prompt tokens evaluated in ${later.length} later steps`);
    const rep = await sw('sw-report', ['run1', '--since', '1h'], t);
    assert.match(String(rep.stdout), /prompts:\s+[\d.k]+ tokens evaluated, [\d.k]+ reused \(\d+(\.\d)?% of the prompts\)/);
    assert.match(String(rep.stdout), /prompt speed:\s+[\d.]+ tokens\/s evaluated/);
  } finally {
    t.cleanup();
  }
});

test('llama backend: a planned stop saves the evaluated prompt and the next start goes on from it; a damaged or foreign one is set aside with one line', { timeout: 120_000 }, async () => {
  const t = makeEnv();
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(models, { llm: ['max_tokens: 120', 'threads: 1'] }));
    for (let i = 1; i <= 8; i++) await sw('sw-agent', ['add', 'run1', '--title', `t${i}`, '--verify', 'true', '--timeout', '30s', `t${i}: write notes.md`], t);
    const stateDir = path.join(t.env.SELFWARE_STATE_DIR as string, 'run1', 'llm-state');
    const calls = async () => (await query(t, 'SELECT count(*) FROM llm_calls WHERE ok = 1'))[0]?.[0] as number;
    /** Run the agent until n more model calls were made, then stop it (SIGTERM); its output. */
    const session = async (n: number): Promise<string> => {
      const before = await calls();
      const a = startAgent(t);
      await waitFor(`${n} model calls`, async () => (await calls()) >= before + n, 60_000, a);
      assert.equal(await a.stop(), 0, a.output());
      return a.output();
    };
    /** The first call of the newest session: prompt tokens, evaluated, reused. */
    const firstCall = async () => (await query(t, 'SELECT tokens_in, tokens_evaluated, tokens_reused FROM llm_calls WHERE ok = 1 AND session_id = (SELECT id FROM sessions ORDER BY started_at DESC LIMIT 1) ORDER BY pos LIMIT 1'))[0] as [number, number, number];

    const out1 = await session(3);
    const saved = /saved the model's evaluated prompt \((\d+) tokens?, /.exec(out1);
    assert.ok(saved, out1);
    assert.deepEqual(fs.readdirSync(stateDir).sort(), ['sequence.json', 'sequence.state']);
    assert.equal(JSON.parse(fs.readFileSync(path.join(stateDir, 'sequence.json'), 'utf8')).tokens, Number(saved[1]));

    // The next start loads it: its first call evaluates only what differs from the saved prompt.
    const out2 = await session(1);
    assert.match(out2, new RegExp(`the model goes on from the state saved at \\S+: ${saved[1]} tokens need no evaluation`));
    const [tin, ev, re] = await firstCall();
    assert.ok(re > 0 && ev + re === tin && ev < tin / 2, `first call after the restart: ${ev} of ${tin} evaluated, ${re} reused`);
    assert.ok(fs.readdirSync(stateDir).length === 2, 'the stop saved again');

    // A damaged state file: one line, the prompt evaluated whole, the files gone, the run goes on.
    fs.truncateSync(path.join(stateDir, 'sequence.state'), 1000);
    const out3 = await session(1);
    assert.match(out3, /ignoring the saved model state: \S+sequence\.state: 1000 bytes, saved as \d+; the prompt is evaluated again/);
    assert.equal((await firstCall())[2], 0, 'nothing reused after a damaged state');
    assert.equal((await query(t, "SELECT count(*) FROM events WHERE type = 'llm_state_ignored'"))[0]?.[0], 1);

    // Another model file at the level (a new download, same path): set aside too.
    const now = new Date();
    fs.utimesSync(models.Q4_K_M, now, new Date(now.getTime() + 5000));
    const out4 = await session(1);
    assert.match(out4, /ignoring the saved model state: \S+sequence\.json: saved for mtime_ms \d+(\.\d+)?, now \d+(\.\d+)?; the prompt is evaluated again/);
    assert.equal((await firstCall())[2], 0, 'nothing reused from another model file');
  } finally {
    t.cleanup();
  }
});

test("llama backend: the memory guard counts the agent's own memory, not what loading the model took", { timeout: 120_000 }, async () => {
  const t = makeEnv();
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    // A large context: llama.cpp's buffers for it are tens of MiB, the model's memory, taken at load.
    const config = (limit: string) => tinyLlamaConfig(models, { llm: ['context: 65536', 'max_tokens: 60', 'threads: 1'], agent: [`rss_limit: ${limit}`, 'heartbeat: 1s'] });
    // First without a limit: what the model took at load, and the agent's own memory beside it.
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), config('0'));
    for (let i = 1; i <= 4; i++) await sw('sw-agent', ['add', 'run1', '--title', `m${i}`, '--verify', 'true', '--timeout', '20s', `m${i}: write notes.md`], t);
    const calls = async () => (await query(t, 'SELECT count(*) FROM llm_calls WHERE ok = 1'))[0]?.[0] as number;
    const beats = async () => (await query(t, "SELECT count(*) FROM events WHERE type = 'heartbeat' AND json_extract(data, '$.model_memory') > 0"))[0]?.[0] as number;
    const a = startAgent(t);
    await waitFor('model calls and heartbeats', async () => (await calls()) >= 3 && (await beats()) >= 2, 60_000, a);
    assert.equal(await a.stop(), 0, a.output());
    const model = Number((await query(t, "SELECT json_extract(data, '$.model_memory') FROM events WHERE type = 'model_loaded'"))[0]?.[0]);
    const [own, anon, rss] = (await query(t, "SELECT max(json_extract(data, '$.own')), max(json_extract(data, '$.anon')), max(json_extract(data, '$.rss')) FROM events WHERE type = 'heartbeat'"))[0] as [number, number, number];
    assert.ok(model >= 24 * 1048576, `loading the model took ${model} bytes`);
    assert.ok(Math.abs(anon - model - own) < 8 * 1048576 && rss > anon, `own ${own}, model ${model}, anonymous ${anon}, resident ${rss}`);
    // A limit above the agent's own memory and below all of it: the guard stays quiet and the run works on.
    const limit = Math.round(own + model / 2);
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), config(String(limit)));
    const before = await calls();
    const b = startAgent(t);
    await waitFor('more model calls', async () => (await calls()) >= before + 3, 60_000, b);
    assert.equal(await b.stop(), 0, b.output());
    assert.doesNotMatch(b.output(), /above the limit/);
    assert.equal((await query(t, "SELECT count(*) FROM events WHERE type = 'rss_limit'"))[0]?.[0], 0);
  } finally {
    t.cleanup();
  }
});

test('llama backend, agent.condense: model: the older steps are condensed into a summary the model writes, recorded as its own call', { timeout: 120_000 }, async () => {
  const t = makeEnv();
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(models, { llm: ['max_tokens: 100', 'threads: 1'], agent: ['context_budget: 2100', 'memory_budget: 150', 'condense: model'] }));
    const ids: string[] = [];
    for (let i = 1; i <= 4; i++) ids.push(String((await sw('sw-agent', ['add', 'run1', '--title', `c${i}`, '--verify', 'true', '--timeout', '15s', `c${i}: write notes.md`], t)).stdout).trim());
    const a = startAgent(t);
    const condensed = () => ids.flatMap((id) => transcript(t, id)).filter((l) => l.type === 'condense') as Array<{ by: string; summary: string; through: number }>;
    await waitFor('a condensation', async () => condensed().length > 0, 100_000, a);
    assert.equal(await a.stop(), 0, a.output());
    const c = condensed();
    // The tiny model's summary is random text, but it is the model's: one line, after the steps it covers.
    const byModel = c.filter((x) => x.by === 'model');
    assert.ok(byModel.length >= 1, JSON.stringify(c));
    assert.match((byModel[0] as { summary: string }).summary, /^steps? [\d-]+, summarised: /m);
    assert.match(a.output(), /condensed steps? [\d-]+ into the model's summary to fit the context/);
    const calls = await query(t, "SELECT count(*), min(tokens_evaluated), max(tokens_reused * 1.0 / tokens_in) FROM llm_calls WHERE purpose = 'condense' AND ok = 1");
    assert.ok(Number(calls[0]?.[0]) >= byModel.length && Number(calls[0]?.[1]) > 0, JSON.stringify(calls));
    // Asked as the continuation of the prompt the model had evaluated: most of it is reused.
    assert.ok(Number(calls[0]?.[2]) > 0.5, `reused share of a condensation's prompt: ${JSON.stringify(calls)}`);
  } finally {
    t.cleanup();
  }
});
