// sw-gpu-governor through the built command, on a machine of the test's own:
// a fake <proc> and cgroup tree (no test reads the host's CPU or RAM), a fake
// nvidia-smi on PATH (and one that hangs, one that fails, none at all), disk
// pressure on a real small tmpfs (disk thresholds set out of the way where
// disk is not the point), bad configuration, the daemon publishing and
// recording decisions and talking to systemd, CPU judged on the load that is
// not the runs' own and only once sustained, and a running agent on the tiny
// GGUF obeying it. Every process a test starts is killed in its finally.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { DIST, makeEnv, sleep, sw, type TestEnv } from '../helpers.js';
import { fakeNvidiaSmi, vramSeries } from '../fixtures/nvidia.js';
import { agentCmd, fakeMachine, fakeRun, killPid, unitCgroup, within, type FakeMachine } from '../fixtures/proc.js';
import { query, startAgent, waitFor, type RunningAgent } from '../fixtures/agent.js';
import { tinyLlamaConfig, tinyModels } from '../fixtures/gguf.js';
import { notifySocket } from '../fixtures/notify.js';
import { readDecision, type Decision } from '../../lib/governor/decision.js';

const gov = (args: string[], t: TestEnv, env: Record<string, string> = {}) => sw('sw-gpu-governor', args, t, { env });
const withBin = (bin: string) => ({ PATH: `${bin}:${process.env.PATH}` });
/** Disk thresholds no filesystem with a byte free reaches: for the tests whose state is on the host's disk. */
const NO_DISK = 'disk:\n  warning: 0.001\n  critical: 0\n';

function governorConfig(t: TestEnv, yaml: string): string {
  const f = path.join(t.configDir, 'governor.yaml');
  fs.writeFileSync(f, yaml);
  return f;
}

/** A fake machine for this test, ticking; every command the test runs reads it. */
function machine(t: TestEnv): FakeMachine {
  const m = fakeMachine(t.dir);
  Object.assign(t.env, m.env);
  m.start();
  return m;
}

/** The daemon, its output collected as it comes. */
function startGovernor(t: TestEnv, env: Record<string, string> = {}): { child: ResultPromise; output(): string } {
  let text = '';
  const child = execa(process.execPath, [path.join(DIST, 'bin', 'sw-gpu-governor.cjs'), 'run'], { reject: false, env: { ...process.env, ...t.env, ...env }, buffer: false, all: true });
  child.all?.on('data', (d: Buffer) => (text += d.toString()));
  return { child, output: () => text };
}

/** SIGTERM, and its exit code within a deadline. */
async function stopGovernor(g: { child: ResultPromise }): Promise<number | undefined> {
  g.child.kill('SIGTERM');
  const r = await within(15_000, 'the governor to stop on SIGTERM', Promise.resolve(g.child));
  return r.exitCode;
}

/** The decision published now (not stale), polled until `ok` says so. */
async function decisionWhen(t: TestEnv, what: string, ok: (d: Decision) => boolean, timeoutMs: number, g: { child: ResultPromise; output(): string }): Promise<Decision> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = readDecision(t.runtimeDir).decision;
    if (d && ok(d)) return d;
    const gone = g.child.exitCode !== null || g.child.signalCode !== null;
    if (gone || Date.now() > deadline) assert.fail(`${gone ? 'the governor exited' : `timed out after ${timeoutMs} ms`} waiting for ${what}; last decision: ${JSON.stringify(d)}\ngovernor output:\n${g.output()}`);
    await sleep(20);
  }
}

type Readings = { cpu: { value: number | null; tier: string }; cpu_load_pct: number | null; cpu_own_pct: number | null; cpu_runs: unknown[] };
const readings = (d: Decision): Readings => d.readings as unknown as Readings;

test('--help, usage errors 64, bad configuration 78 naming the key, an unreadable <proc> 74', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const m = machine(t);
  try {
    assert.equal((await gov(['--help'], t)).exitCode, 0);
    for (const sub of ['run', 'once', 'status']) assert.equal((await gov([sub, '--help'], t)).exitCode, 0, sub);
    assert.match(String((await gov(['once', '--help'], t)).stdout), /no dwell, no cpu_sustain; the CPU\s+load is that of the next half second/);
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
    governorConfig(t, 'cpu_sustain: 2h\n');
    const s = await gov(['once'], t);
    assert.equal(s.exitCode, 78);
    assert.match(String(s.stderr), /governor\.yaml:1:14: cpu_sustain: expected a duration such as 30s, 5m or 1h30m \(from 0s to 1h\), got "2h"/);
    governorConfig(t, 'disk:\n  warning: 5\n  critical: 10\n');
    assert.match(String((await gov(['once'], t)).stderr), /disk\.warning: must be above disk\.critical \(10\)/);
    governorConfig(t, 'vrma:\n  warning: 50\n');
    assert.match(String((await gov(['once'], t)).stderr), /vrma: unknown key \(did you mean 'vram'\?\)/);
    // status reads the published decision only; it needs no configuration.
    const none = await gov(['status'], t);
    assert.equal(none.exitCode, 66);
    assert.match(String(none.stderr), /no decision at .*governor\.json: is sw-gpu-governor running\?/);
    // A runtime directory that cannot be made (its parent is a file): 74, naming the path.
    governorConfig(t, NO_DISK);
    const file = path.join(t.dir, 'afile');
    fs.writeFileSync(file, '');
    const bad = await gov(['run'], t, { SELFWARE_RUNTIME_DIR: path.join(file, 'sub'), PATH: '/usr/bin:/bin' });
    assert.equal(bad.exitCode, 74, String(bad.stderr));
    assert.match(String(bad.stderr), /afile\/sub.*: not a directory/);
    // A <proc> that is not there: 74, naming the file, for once and the daemon alike.
    const gone = path.join(t.dir, 'no-proc');
    for (const sub of ['once', 'run']) {
      const x = await gov([sub], t, { SELFWARE_PROC: gone, PATH: '/usr/bin:/bin' });
      assert.equal(x.exitCode, 74, `${sub}: ${x.stderr}`);
      assert.equal(String(x.stderr).trim().split('\n').pop(), `sw-gpu-governor: cannot read '${gone}/stat': no such file or directory`, sub);
    }
    const reserved = await sw('sw-checkpoint', ['create', 'governor'], t);
    assert.equal(reserved.exitCode, 64);
    assert.match(String(reserved.stderr), /'governor': it is reserved/);
  } finally {
    m.stop();
    t.cleanup();
  }
});

test('once --json: the fake GPU answers the fields asked; RAM and swap from meminfo; no nvidia-smi, a hanging one, a failing one: no GPU, not an error', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const m = machine(t);
  try {
    m.set({ others: 12, mem: { totalMb: 16000, availableMb: 12000, swapTotalMb: 2000, swapFreeMb: 1500 } });
    governorConfig(t, NO_DISK);
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
    assert.deepEqual(d.readings.ram, { value: 25, tier: 'normal' });
    assert.deepEqual([d.readings.ram_used_mb, d.readings.ram_total_mb, d.readings.swap_used_mb, d.readings.swap_total_mb], [4000, 16000, 500, 2000]);
    assert.deepEqual([d.readings.cpu, d.readings.cpu_load_pct, d.readings.cpu_own_pct, d.readings.cpu_runs], [{ value: 12, tier: 'normal' }, 12, 0, []]);
    const text = await gov(['once'], t, withBin(ok.bin));
    assert.match(String(text.stdout), /^quantization:\s+Q3_K_L$/m);
    assert.match(String(text.stdout), /^ram:\s+25% used \(normal\)$/m);
    for (const [mode, note] of [
      ['hang', /did not answer within 500 ms/],
      ['fail', /failed \(exit 9\)/],
    ] as const) {
      governorConfig(t, `nvidia_smi_timeout: 500ms\n${NO_DISK}`);
      const f = fakeNvidiaSmi(t.dir, mode);
      const start = Date.now();
      const x = await gov(['once', '--json'], t, withBin(f.bin));
      assert.equal(x.exitCode, 0, `${mode}: ${x.stderr}`);
      const dx = JSON.parse(String(x.stdout));
      assert.equal(dx.tier, 'normal', mode);
      assert.equal(dx.readings.vram.value, null, mode);
      assert.match(dx.readings.gpu_note, note);
      assert.ok(Date.now() - start < 10_000, `${mode} took ${Date.now() - start} ms`);
    }
    governorConfig(t, NO_DISK);
    const none = await gov(['once', '--json'], t, { PATH: '/usr/bin:/bin' });
    assert.equal(none.exitCode, 0);
    assert.match(JSON.parse(String(none.stdout)).readings.gpu_note, /nvidia-smi not found/);
  } finally {
    m.stop();
    t.cleanup();
  }
});

test("once: the agent's own load (its unit's cgroup, or its process tree run by hand) is not judged; others' load is, from the one sample", { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const m = machine(t);
  try {
    governorConfig(t, NO_DISK);
    const env = { PATH: '/usr/bin:/bin' };
    // The agent under systemd: llama.cpp's threads and its compiles keep both cores busy.
    const cg = unitCgroup('run1');
    fakeRun(t.stateDir, 'run1', 4242);
    m.spawn({ pid: 4242, ppid: 1, cmd: agentCmd('run1'), cgroup: cg });
    m.set({ others: 0, iowait: 1, cgroups: { [cg]: 97.4 } });
    const r = await gov(['once', '--json'], t, env);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const d = JSON.parse(String(r.stdout));
    assert.equal(d.tier, 'normal', JSON.stringify(d.readings));
    assert.deepEqual(d.actions, [], "no throttle for the agent's own work");
    assert.equal(d.context_limit, null);
    assert.deepEqual(d.readings.cpu, { value: 0, tier: 'normal' });
    assert.equal(d.readings.cpu_load_pct, 97.4);
    assert.equal(d.readings.cpu_own_pct, 97.4);
    assert.deepEqual(d.readings.cpu_runs, [{ run: 'run1', pid: 4242, by: 'cgroup', cgroup: cg, pct: 97.4 }]);
    const text = await gov(['once'], t, env);
    assert.match(String(text.stdout), /^cpu:\s+0% others \(normal\)\s+own 97\.4% \(run1 97\.4%\), all 97\.4%$/m);
    // Others' load: once decides from its one sample, with no cpu_sustain.
    m.set({ others: 90, cgroups: { [cg]: 8 } });
    const o = JSON.parse(String((await gov(['once', '--json'], t, env)).stdout));
    assert.deepEqual([o.tier, o.actions, o.context_limit, o.readings.cpu, o.readings.cpu_own_pct, o.readings.cpu_load_pct], ['warning', ['throttle'], 4096, { value: 90, tier: 'warning' }, 8, 98]);
    assert.deepEqual(o.reasons, ['90% CPU outside the runs (warning)']);
    // Run by hand, in a session's cgroup: the agent's process tree, a yes it started burning most of the machine.
    fs.rmSync(path.join(t.stateDir, 'run1'), { recursive: true });
    m.set({ others: 3, cgroups: {} });
    fakeRun(t.stateDir, 'run2', 5000);
    m.spawn({ pid: 5000, ppid: 900, cmd: agentCmd('run2'), pct: 1 });
    m.spawn({ pid: 5001, ppid: 5000, cmd: ['/bin/sh', '-c', 'yes >/dev/null'], pct: 0 });
    m.spawn({ pid: 5002, ppid: 5001, cmd: ['yes'], pct: 94 });
    const p = JSON.parse(String((await gov(['once', '--json'], t, env)).stdout));
    assert.deepEqual([p.tier, p.actions, p.readings.cpu, p.readings.cpu_own_pct, p.readings.cpu_load_pct], ['normal', [], { value: 3, tier: 'normal' }, 95, 98]);
    assert.deepEqual(p.readings.cpu_runs, [{ run: 'run2', pid: 5000, by: 'processes', cgroup: null, pct: 95 }]);
  } finally {
    m.stop();
    t.cleanup();
  }
});

test('disk pressure on a real small filesystem: critical, pause', { timeout: 60_000 }, async (tc) => {
  if (process.getuid?.() !== 0) return tc.skip('mounting a tmpfs needs root');
  const t = makeEnv();
  const m = machine(t);
  const mnt = path.join(t.dir, 'small');
  fs.mkdirSync(mnt);
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  try {
    const env = { SELFWARE_STATE_DIR: mnt, PATH: '/usr/bin:/bin' };
    const c = await sw('sw-agent', ['init', 'tiny', '-q'], { env: { ...t.env, ...env } });
    assert.equal(c.exitCode, 0, String(c.stderr));
    const before = JSON.parse(String((await gov(['once', '--json'], t, env)).stdout));
    assert.equal(before.readings.disk.tier, 'normal');
    assert.equal(before.tier, 'normal', 'nothing else on this machine is under pressure');
    assert.deepEqual(before.readings.disks[0].runs, ['tiny']);
    assert.equal(before.readings.disks[0].total_bytes, 8 * 1024 * 1024);
    // Fill it to about 95%.
    const free = before.readings.disks[0].free_bytes as number;
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Math.floor(free - 0.05 * before.readings.disks[0].total_bytes)));
    const after = JSON.parse(String((await gov(['once', '--json'], t, env)).stdout));
    assert.equal(after.readings.disk.tier, 'critical', JSON.stringify(after.readings.disk));
    assert.equal(after.tier, 'critical');
    assert.deepEqual(after.actions, ['pause']);
    assert.deepEqual(after.reasons.length, 1);
    assert.match(after.reasons[0], /% disk free \(critical\)/);
    fs.rmSync(path.join(mnt, 'filler'));
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Math.floor(free - 0.15 * before.readings.disks[0].total_bytes)));
    assert.equal(JSON.parse(String((await gov(['once', '--json'], t, env)).stdout)).readings.disk.tier, 'warning');
  } finally {
    m.stop();
    await execa('umount', [mnt], { reject: false });
    t.cleanup();
  }
});

test('run: publishes a decision each interval, logs each transition once, records in the task log, READY and WATCHDOG', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const m = machine(t);
  const n = notifySocket(t);
  let g: ReturnType<typeof startGovernor> | null = null;
  try {
    await within(10_000, 'the notify socket', n.ready);
    assert.equal((await sw('sw-agent', ['init', 'run1', '-q'], t)).exitCode, 0);
    const fake = fakeNvidiaSmi(t.dir);
    fake.set(vramSeries([40], 700));
    governorConfig(t, `interval: 150ms\ndwell: 400ms\ncalm: 1s\nhysteresis: 3\nrecord_every: 1s\n${NO_DISK}`);
    g = startGovernor(t, { ...withBin(fake.bin), NOTIFY_SOCKET: n.sock, WATCHDOG_USEC: '1000000' });
    const gg = g;
    // Once it runs (a loaded machine starts it slowly): normal, then hovering
    // at the warning threshold, then critical, then calm.
    await decisionWhen(t, 'the first decision', () => true, 15_000, g);
    fake.set(vramSeries([40, 40, 71, 69, 71, 69, 72, 90, 90, 90, 30], 700));
    // Back up one level after calm (at 30% from 7 s on): the end of the series.
    await waitFor('the level back up after calm', () => /quantization Q2_K -> Q3_K_L/.test(gg.output()), 30_000).catch((e: Error) => assert.fail(`${e.message}\ngovernor output:\n${gg.output()}`));
    const d = await decisionWhen(t, 'a normal decision', (x) => x.tier === 'normal', 5000, gg);
    assert.equal(d.tier, 'normal');
    assert.equal((await gov(['status', '--json'], t)).exitCode, 0);
    assert.equal(await stopGovernor(g), 0, g.output());
    const out = g.output();
    // Tier changes, in order: the VRAM hovering at 69/71 % does not flap.
    const changes = [...out.matchAll(/tier (\w+) -> (\w+)/g)].filter((x) => x[1] !== x[2]).map((x) => `${x[1]}->${x[2]}`);
    assert.deepEqual(changes, ['normal->warning', 'warning->critical', 'critical->normal'], out);
    assert.match(out, /warning: tier normal -> warning; quantization Q4_K_M -> Q3_K_L/);
    assert.match(out, /sw-gpu-governor: tier warning -> critical;( quantization \w+ -> Q2_K;)? actions: unload/);
    assert.match(out, /warning: tier critical -> normal;/, 'the way back at warning too');
    assert.match(out, /warning: tier normal -> normal; quantization Q2_K -> Q3_K_L/, 'back up one level after calm, at warning');
    const decisions = await query(t, 'SELECT tier, quantization, actions FROM governor_decisions ORDER BY ts');
    assert.ok(decisions.length >= 3);
    assert.ok(decisions.some(([tier, , a]) => tier === 'critical' && String(a) === '["unload"]'));
    const samples = await query(t, 'SELECT count(*), max(vram_used_mb), min(ram_total_mb), max(cpu_load) FROM resource_samples');
    assert.ok((samples[0]?.[0] as number) >= 3, JSON.stringify(samples));
    assert.equal(samples[0]?.[1], Math.round(0.9 * 24576), 'the peak of the period is recorded');
    assert.equal(samples[0]?.[2], 16384, "the fake machine's RAM");
    assert.equal(samples[0]?.[3], 5, "the fake machine's CPU (others 5%, no run's)");
    const msgs = n.messages();
    assert.ok(msgs.some((x) => x.msg === 'READY=1'));
    assert.ok(msgs.filter((x) => x.msg === 'WATCHDOG=1').length >= 20);
    assert.ok(msgs.some((x) => /^STATUS=critical, Q2_K, unload/.test(x.msg)));
    assert.ok(msgs.some((x) => x.msg === 'STOPPING=1'));
  } finally {
    if (g) await killPid(g.child);
    n.stop();
    m.stop();
    t.cleanup();
  }
});

test("run: CPU throttles only once others' load has held for cpu_sustain; the agent's own load near 100% never does", { timeout: 60_000 }, async () => {
  const t = makeEnv();
  const m = machine(t);
  let g: ReturnType<typeof startGovernor> | null = null;
  try {
    assert.equal((await sw('sw-agent', ['init', 'run1', '-q'], t)).exitCode, 0);
    const cg = unitCgroup('run1');
    fakeRun(t.stateDir, 'run1', 4242);
    m.spawn({ pid: 4242, ppid: 1, cmd: agentCmd('run1'), cgroup: cg });
    m.set({ others: 1, iowait: 0, cgroups: { [cg]: 97 } });
    const SUSTAIN = 3000;
    governorConfig(t, `interval: 100ms\ndwell: 0s\ncpu_sustain: ${SUSTAIN}ms\nrecord_every: 1s\n${NO_DISK}`);
    g = startGovernor(t, { PATH: '/usr/bin:/bin' });
    const gg = g;
    const unthrottled = (d: Decision): void => assert.deepEqual([d.tier, d.actions], ['normal', []], `${JSON.stringify(d.readings)}\n${gg.output()}`);
    // The agent's own work at 98% of the machine, for longer than cpu_sustain: nothing to do.
    const first = await decisionWhen(t, 'a first decision', () => true, 15_000, g);
    unthrottled(first);
    const own = await decisionWhen(t, 'decisions past cpu_sustain', (d) => Date.parse(d.time) - Date.parse(first.time) >= SUSTAIN + 1000, 20_000, g);
    unthrottled(own);
    assert.deepEqual([readings(own).cpu.value, readings(own).cpu_own_pct, readings(own).cpu_load_pct], [1, 97, 98]);
    // Others at 90% for a second, well short of cpu_sustain, then quiet again: no throttle.
    m.set({ others: 90, cgroups: { [cg]: 8 } });
    const high = await decisionWhen(t, "others' load seen", (d) => (readings(d).cpu.value ?? 0) >= 80, 10_000, g);
    await decisionWhen(t, 'a second of it', (d) => Date.parse(d.time) - Date.parse(high.time) >= 1000, 10_000, g);
    m.set({ others: 1, cgroups: { [cg]: 97 } });
    unthrottled(await decisionWhen(t, 'quiet again', (d) => (readings(d).cpu.value ?? 100) < 10, 10_000, g));
    // Held: throttled, no sooner than cpu_sustain after it began.
    const setAt = Date.now();
    m.set({ others: 90, cgroups: { [cg]: 8 } });
    const th = await decisionWhen(t, 'a throttle', (d) => d.actions.includes('throttle'), 20_000, g);
    assert.ok(Date.parse(th.time) - setAt >= SUSTAIN, `throttled ${Date.parse(th.time) - setAt} ms after others' load began (cpu_sustain ${SUSTAIN} ms)`);
    assert.deepEqual([th.tier, th.context_limit, readings(th).cpu.tier], ['warning', 4096, 'warning']);
    assert.equal(await stopGovernor(g), 0);
    const out = g.output();
    assert.deepEqual(
      [...out.matchAll(/tier (\w+) -> (\w+); actions: (\w+)/g)].map((x) => `${x[1]}->${x[2]} ${x[3]}`),
      ['normal->warning throttle'],
      `one change only, the held load's\n${out}`,
    );
    assert.match(out, /% CPU outside the runs \(warning\)/);
  } finally {
    if (g) await killPid(g.child);
    m.stop();
    t.cleanup();
  }
});

// Real llama.cpp loads the model at three levels here, four or five times in
// all: on a loaded 2-core machine that alone can take a minute.
test('a running agent on the tiny GGUF obeys the governor: steps down, unloads, and comes back', { timeout: 150_000 }, async () => {
  const t = makeEnv();
  const m = machine(t);
  let g: ReturnType<typeof startGovernor> | null = null;
  let a: RunningAgent | null = null;
  try {
    const models = tinyModels(path.join(t.dir, 'models'));
    fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(models, { llm: ['max_tokens: 64', 'threads: 1'] }));
    // Enough tasks to keep the agent asking the model while the governor works: the tiny model
    // may finish one in three steps, and on a loaded machine three tasks ran out before the
    // pressure was over (so no answer came at the last level).
    for (let i = 0; i < 12; i++) await sw('sw-agent', ['add', 'run1', '--title', `busy${i}`, '--verify', 'true', '--timeout', '25s', 'keep writing notes'], t);
    const fake = fakeNvidiaSmi(t.dir);
    fake.set(vramSeries([40], 1500));
    // calm: 5s holds each level on the way back up long enough for a step on a loaded machine
    // (with 2s, a reload there took longer than the level lasted, and Q2_K never answered).
    governorConfig(t, `interval: 250ms\ndwell: 1s\ncalm: 5s\nrecord_every: 1s\n${NO_DISK}`);
    g = startGovernor(t, withBin(fake.bin));
    a = startAgent(t);
    const agent = a;
    // The pressure once the agent works (loading the model takes a while on a loaded machine).
    await waitFor('a first answer of the model', async () => (await query(t, 'SELECT count(*) FROM llm_calls WHERE ok = 1'))[0]?.[0] as number, 40_000, agent);
    fake.set(vramSeries([76, 76, 76, 76, 76, 92, 92, 92, 30], 1500));
    await waitFor(
      'the agent back at Q4_K_M after the pressure',
      async () => {
        const sw2 = await query(t, "SELECT json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos");
        const unloads = await query(t, "SELECT count(*) FROM events WHERE type = 'model_unloaded' AND json_extract(data, '$.reason') = 'governor'");
        const levels = await query(t, 'SELECT count(DISTINCT quantization) FROM llm_calls WHERE ok = 1');
        return sw2.length >= 3 && (unloads[0]?.[0] as number) >= 1 && sw2[sw2.length - 1]?.[0] === 'Q4_K_M' && levels[0]?.[0] === 3;
      },
      75_000,
      agent,
    );
    await within(15_000, 'the agent to stop', agent.stop());
    assert.equal(await stopGovernor(g), 0);
    const switches = (await query(t, "SELECT json_extract(data, '$.from'), json_extract(data, '$.to') FROM events WHERE type = 'quantization_switch' ORDER BY pos")).map((r) => `${r[0]}->${r[1]}`);
    assert.equal(switches[0], 'Q4_K_M->Q3_K_L');
    assert.ok(switches.some((s) => s.endsWith('->Q2_K')), switches.join(' '));
    assert.equal(switches[switches.length - 1]?.endsWith('->Q4_K_M'), true);
    const unload = await query(t, "SELECT pos FROM events WHERE type = 'model_unloaded' AND json_extract(data, '$.reason') = 'governor' LIMIT 1");
    assert.ok(unload.length === 1);
    const levels = (await query(t, 'SELECT DISTINCT quantization FROM llm_calls WHERE ok = 1')).map((r) => r[0]).sort();
    assert.deepEqual(levels, ['Q2_K', 'Q3_K_L', 'Q4_K_M'], 'the model answered at every level');
    const decisions = await query(t, 'SELECT count(*) FROM governor_decisions');
    assert.ok((decisions[0]?.[0] as number) >= 3);
  } finally {
    if (a) await killPid(a.child);
    if (g) await killPid(g.child);
    m.stop();
    t.cleanup();
  }
});
