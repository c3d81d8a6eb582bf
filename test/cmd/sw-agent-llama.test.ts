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
