// sw-gpu-governor through the built command: a fake nvidia-smi on PATH (and
// one that hangs, one that fails, none at all), disk pressure on a real small
// tmpfs, bad configuration, the daemon publishing and recording decisions and
// talking to systemd, and a running agent on the tiny GGUF obeying it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, makeEnv, sleep, sw, type TestEnv } from '../helpers.js';
import { fakeNvidiaSmi, vramSeries } from '../fixtures/nvidia.js';
import { query, startAgent, tasks, waitFor } from '../fixtures/agent.js';
import { tinyLlamaConfig, tinyModels } from '../fixtures/gguf.js';
import { notifySocket } from '../fixtures/notify.js';

const gov = (args: string[], t: TestEnv, env: Record<string, string> = {}) => sw('sw-gpu-governor', args, t, { env });
const withBin = (bin: string) => ({ PATH: `${bin}:${process.env.PATH}` });

function governorConfig(t: TestEnv, yaml: string): string {
  const f = path.join(t.configDir, 'governor.yaml');
  fs.writeFileSync(f, yaml);
  return f;
}

test('--help, usage errors 64, bad configuration 78 naming the key', async () => {
  const t = makeEnv();
  try {
    assert.equal((await gov(['--help'], t)).exitCode, 0);
    for (const sub of ['run', 'once', 'status']) assert.equal((await gov([sub, '--help'], t)).exitCode, 0, sub);
    assert.equal((await gov(['frob'], t)).exitCode, 64);
    assert.equal((await gov(['once', '--frob'], t)).exitCode, 64);
    const f = governorConfig(t, 'vram:\n  warning: 90\n  critical: 80\n');
    const r = await gov(['once'], t);
    assert.equal(r.exitCode, 78);
    assert.equal(String(r.stderr), `sw-gpu-governor: ${f}:2:12: vram.warning: must be below vram.critical (80)`);
    governorConfig(t, 'interval: -5s\n');
    const n = await gov(['run'], t);
    assert.equal(n.exitCode, 78);
    assert.match(String(n.stderr), /governor\.yaml:1:11: interval: expected a duration such as 30s, 5m or 1h30m .*got "-5s"/);
    governorConfig(t, 'disk:\n  warning: 5\n  critical: 10\n');
    assert.match(String((await gov(['once'], t)).stderr), /disk\.warning: must be above disk\.critical \(10\)/);
    governorConfig(t, 'vrma:\n  warning: 50\n');
    assert.match(String((await gov(['once'], t)).stderr), /vrma: unknown key \(did you mean 'vram'\?\)/);
    // status reads the published decision only; it needs no configuration.
    const none = await gov(['status'], t);
    assert.equal(none.exitCode, 66);
    assert.match(String(none.stderr), /no decision at .*governor\.json: is sw-gpu-governor running\?/);
    // A runtime directory that cannot be made (its parent is a file): 74, naming the path.
    fs.rmSync(path.join(t.configDir, 'governor.yaml'));
    const file = path.join(t.dir, 'afile');
    fs.writeFileSync(file, '');
    const bad = await gov(['run'], t, { SELFWARE_RUNTIME_DIR: path.join(file, 'sub') });
    assert.equal(bad.exitCode, 74, String(bad.stderr));
    assert.match(String(bad.stderr), /afile\/sub.*: not a directory/);
    const reserved = await sw('sw-checkpoint', ['create', 'governor'], t);
    assert.equal(reserved.exitCode, 64);
    assert.match(String(reserved.stderr), /'governor': it is reserved/);
  } finally {
    t.cleanup();
  }
});

test('once --json: the fake GPU answers the fields asked; no nvidia-smi, a hanging one, a failing one: no GPU, not an error', async () => {
  const t = makeEnv();
  try {
    const ok = fakeNvidiaSmi(t.dir, 'ok');
    ok.set(vramSeries([76], 1000));
    const r = await gov(['once', '--json'], t, withBin(ok.bin));
    assert.equal(r.exitCode, 0, String(r.stderr));
    const d = JSON.parse(String(r.stdout));
    assert.equal(d.tier, 'warning');
    assert.equal(d.quantization, 'Q3_K_L');
    assert.deepEqual(d.actions, []);
    assert.deepEqual(d.readings.vram, { value: 76, tier: 'warning' });
    assert.equal(d.readings.gpus[0].name, 'Fake RTX 4090');
    assert.equal(d.readings.gpus[0].temp_c, 45);
    assert.equal(d.readings.gpus[0].power_w, 120.5);
    assert.ok(d.readings.ram.value > 0 && d.readings.cpu.tier);
    const text = await gov(['once'], t, withBin(ok.bin));
    assert.match(String(text.stdout), /^quantization:\s+Q3_K_L$/m);
    for (const [mode, note] of [
      ['hang', /did not answer within 500 ms/],
      ['fail', /failed \(exit 9\)/],
    ] as const) {
      governorConfig(t, 'nvidia_smi_timeout: 500ms\n');
      const f = fakeNvidiaSmi(t.dir, mode);
      const start = Date.now();
      const x = await gov(['once', '--json'], t, withBin(f.bin));
      assert.equal(x.exitCode, 0, `${mode}: ${x.stderr}`);
      const dx = JSON.parse(String(x.stdout));
      assert.equal(dx.tier === 'critical' ? 'x' : dx.readings.vram.value, null, mode);
      assert.match(dx.readings.gpu_note, note);
      assert.ok(Date.now() - start < 10_000, `${mode} took ${Date.now() - start} ms`);
    }
    fs.rmSync(path.join(t.configDir, 'governor.yaml'));
    const none = await gov(['once', '--json'], t, { PATH: '/usr/bin:/bin' });
    assert.equal(none.exitCode, 0);
    assert.match(JSON.parse(String(none.stdout)).readings.gpu_note, /nvidia-smi not found/);
  } finally {
    t.cleanup();
  }
});

test('disk pressure on a real small filesystem: critical, pause', async (tc) => {
  if (process.getuid?.() !== 0) return tc.skip('mounting a tmpfs needs root');
  const t = makeEnv();
  const mnt = path.join(t.dir, 'small');
  fs.mkdirSync(mnt);
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  try {
    const env = { SELFWARE_STATE_DIR: mnt };
    const c = await sw('sw-checkpoint', ['create', 'tiny', '-q'], { env: { ...t.env, ...env } });
    assert.equal(c.exitCode, 0, String(c.stderr));
    const before = JSON.parse(String((await gov(['once', '--json'], t, env)).stdout));
    assert.equal(before.readings.disk.tier, 'normal');
    assert.deepEqual(before.readings.disks[0].runs, ['tiny']);
    // Fill it to about 95%.
    const free = before.readings.disks[0].free_bytes as number;
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Math.floor(free - 0.05 * before.readings.disks[0].total_bytes)));
    const after = JSON.parse(String((await gov(['once', '--json'], t, env)).stdout));
    assert.equal(after.readings.disk.tier, 'critical', JSON.stringify(after.readings.disk));
    assert.equal(after.tier, 'critical');
    assert.ok(after.actions.includes('pause'), JSON.stringify(after.actions));
    assert.ok(!after.actions.includes('unload'));
    assert.match(after.reasons.join(), /% disk free \(critical\)/);
    fs.rmSync(path.join(mnt, 'filler'));
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Math.floor(free - 0.15 * before.readings.disks[0].total_bytes)));
    assert.equal(JSON.parse(String((await gov(['once', '--json'], t, env)).stdout)).readings.disk.tier, 'warning');
  } finally {
    await execa('umount', [mnt], { reject: false });
    t.cleanup();
  }
});

test('run: publishes a decision each interval, logs each transition once, records in the task log, READY and WATCHDOG', async () => {
  const t = makeEnv();
  const n = notifySocket(t);
  try {
    await n.ready;
    await sw('sw-checkpoint', ['create', 'run1', '-q'], t);
    const fake = fakeNvidiaSmi(t.dir);
    // Normal, then hovering at the warning threshold, then critical, then calm.
    fake.set(vramSeries([40, 40, 71, 69, 71, 69, 72, 90, 90, 90, 30], 700));
    governorConfig(t, 'interval: 150ms\ndwell: 400ms\ncalm: 1s\nhysteresis: 3\nrecord_every: 1s\n');
    const child = execa(process.execPath, [path.join(DIST, 'bin', 'sw-gpu-governor.cjs'), 'run'], {
      reject: false,
      env: { ...process.env, ...t.env, ...withBin(fake.bin), NOTIFY_SOCKET: n.sock, WATCHDOG_USEC: '1000000' },
      all: true,
    });
    await sleep(9500);
    const st = await gov(['status', '--json'], t);
    assert.equal(st.exitCode, 0, String(st.stderr));
    const d = JSON.parse(String(st.stdout));
    assert.equal(d.tier, 'normal');
    child.kill('SIGTERM');
    const r = await child;
    assert.equal(r.exitCode, 0, String(r.all));
    const out = String(r.all);
    // Tier changes, in order: the VRAM hovering at 69/71 % does not flap.
    const changes = [...out.matchAll(/tier (\w+) -> (\w+)/g)].filter((m) => m[1] !== m[2]).map((m) => `${m[1]}->${m[2]}`);
    assert.deepEqual(changes, ['normal->warning', 'warning->critical', 'critical->normal'], out);
    assert.match(out, /warning: tier normal -> warning; quantization Q4_K_M -> Q3_K_L/);
    assert.match(out, /sw-gpu-governor: tier warning -> critical;( quantization \w+ -> Q2_K;)? actions: unload/);
    assert.match(out, /warning: tier critical -> normal;/, 'the way back at warning too');
    assert.match(out, /warning: tier normal -> normal; quantization Q2_K -> Q3_K_L/, 'back up one level after calm, at warning');
    const decisions = await query(t, 'SELECT tier, quantization, actions FROM governor_decisions ORDER BY ts');
    assert.ok(decisions.length >= 3);
    assert.ok(decisions.some(([tier, , a]) => tier === 'critical' && String(a) === '["unload"]'));
    const samples = await query(t, 'SELECT count(*), max(vram_used_mb), min(ram_total_mb) > 0 FROM resource_samples');
    assert.ok((samples[0]?.[0] as number) >= 3, JSON.stringify(samples));
    assert.equal(samples[0]?.[1], Math.round(0.9 * 24576), 'the peak of the period is recorded');
    const msgs = n.messages();
    assert.ok(msgs.some((m) => m.msg === 'READY=1'));
    assert.ok(msgs.filter((m) => m.msg === 'WATCHDOG=1').length >= 20);
    assert.ok(msgs.some((m) => /^STATUS=critical, Q2_K, unload/.test(m.msg)));
    assert.ok(msgs.some((m) => m.msg === 'STOPPING=1'));
  } finally {
    n.stop();
    t.cleanup();
  }
});

test('a running agent on the tiny GGUF obeys the governor: steps down, unloads, and comes back', async () => {
  const t = makeEnv();
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(models, { llm: ['max_tokens: 64', 'threads: 1'] }));
    // Long tasks keep the agent asking the model while the governor works.
    for (let i = 0; i < 3; i++) await sw('sw-agent', ['add', 'run1', '--title', `busy${i}`, '--verify', 'true', '--timeout', '25s', 'keep writing notes'], t);
    const fake = fakeNvidiaSmi(t.dir);
    fake.set(vramSeries([40, 40, 76, 76, 76, 76, 92, 92, 92, 30, 30, 30, 30, 30, 30, 30, 30, 30], 1500));
    governorConfig(t, 'interval: 250ms\ndwell: 1s\ncalm: 2s\nrecord_every: 1s\n');
    const g = execa(process.execPath, [path.join(DIST, 'bin', 'sw-gpu-governor.cjs'), 'run'], { reject: false, env: { ...process.env, ...t.env, ...withBin(fake.bin) }, all: true });
    const a = startAgent(t);
    await waitFor('the agent back at Q4_K_M after the pressure', async () => {
      const sw2 = await query(t, "SELECT json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos");
      const unloads = await query(t, "SELECT count(*) FROM events WHERE type = 'model_unloaded' AND json_extract(data, '$.reason') = 'governor'");
      return sw2.length >= 3 && (unloads[0]?.[0] as number) >= 1 && sw2[sw2.length - 1]?.[0] === 'Q4_K_M';
    }, 60_000, a);
    await a.stop();
    g.kill('SIGTERM');
    await g;
    const switches = (await query(t, "SELECT json_extract(data, '$.from'), json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos")).map((r) => `${r[0]}->${r[1]}`);
    assert.equal(switches[0], 'Q4_K_M->Q3_K_L');
    assert.ok(switches.includes('Q3_K_L->Q2_K') || switches.includes('Q4_K_M->Q2_K') || switches.some((s) => s.endsWith('->Q2_K')), switches.join(' '));
    assert.equal(switches[switches.length - 1]?.endsWith('->Q4_K_M'), true);
    const unload = await query(t, "SELECT pos FROM events WHERE type = 'model_unloaded' AND json_extract(data, '$.reason') = 'governor' LIMIT 1");
    assert.ok(unload.length === 1);
    const levels = (await query(t, 'SELECT DISTINCT quantization FROM llm_calls WHERE ok = 1')).map((r) => r[0]).sort();
    assert.deepEqual(levels, ['Q2_K', 'Q3_K_L', 'Q4_K_M'], 'the model answered at every level');
    const decisions = await query(t, 'SELECT count(*) FROM governor_decisions');
    assert.ok((decisions[0]?.[0] as number) >= 3);
    void tasks;
  } finally {
    t.cleanup();
  }
});
