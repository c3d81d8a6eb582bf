// The short soak (bench/soak), as `make soak DAYS=1 TASKS=300 FAULTS=20`
// runs it: one simulated day under a real systemd in a container, every kind
// of fault at least once, checked against the harness's own ground truth.
// The figures it prints go to the test's output. Up to 18 min: on a 2-core
// machine kept busy the agent works at half its idle speed (about 8 min idle).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, makeEnv } from './helpers.js';
import { cannotBoot } from './systemd/container.js';
import { FAULT_KINDS } from '../bench/soak/faults.js';

test('the short soak: 300 tasks and 20 faults of every kind in a simulated day; nothing lost, nothing doubled, the report true', { timeout: 18 * 60_000 }, async (t) => {
  const why = await cannotBoot();
  if (why) {
    t.skip(`cannot boot a container here: ${why}`);
    return;
  }
  const env = makeEnv('soak');
  const out = path.join(env.dir, 'soak.json');
  const child = execa(process.execPath, [path.join(DIST, 'bench', 'soak', 'soak.js'), '--days', '1', '--tasks', '300', '--faults', '20', '--out', out], { reject: false, all: true });
  try {
    const r = await child;
    const text = String(r.all);
    console.log(text.split('\n').filter((l) => !/^\[/.test(l)).join('\n'));
    assert.equal(r.exitCode, 0, text.split('\n').slice(-40).join('\n'));
    const last = text.trim().split('\n').pop() ?? '';
    assert.match(last, /^soak: 300 tasks, 20 faults, 0 lost, 0 doubled, 0 report mismatches, disk growth after day 2 n\/a%\/day, RSS growth (-?\d+\.\d|n\/a)%$/);
    const j = JSON.parse(fs.readFileSync(out, 'utf8')) as { faults: { by_kind: Record<string, { n: number; ok: number }> }; stores: Record<string, string>; tasks: { completed: number; failed: number } };
    // Every kind at least once, each seen and answered.
    assert.deepEqual(Object.keys(j.faults.by_kind).sort(), [...FAULT_KINDS].sort());
    for (const [k, v] of Object.entries(j.faults.by_kind)) assert.equal(v.ok, v.n, `${k}: ${v.ok} of ${v.n} answered`);
    assert.deepEqual(j.stores, { fsck_state: 'clean', fsck_workspace: 'clean', verify: 'clean' });
    assert.equal(j.tasks.completed + j.tasks.failed, 300);
  } finally {
    if (child.pid && child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([child, new Promise((r) => setTimeout(r, 30_000))]);
      child.kill('SIGKILL');
    }
    env.cleanup();
  }
});
