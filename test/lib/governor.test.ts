import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GOVERNOR_SCHEMA, type GovernorConfig } from '../../lib/governor/config.js';
import { Governor, decideOnce, nextTier, rawTier, transition } from '../../lib/governor/decide.js';
import { parseNvidiaSmi, type Sample } from '../../lib/governor/sample.js';
import { defaultsOf } from '../../lib/config/spec.js';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { Recorder } from '../../lib/governor/index.js';
import { parseJournal } from '../../lib/tasklog/journal.js';
import { TaskLog } from '../../lib/tasklog/index.js';
import { ROOT, makeEnv, rng } from '../helpers.js';
import { CpuMeter, type CpuReading } from '../../lib/governor/cpu.js';
import { readCpuTimes, readMemInfo } from '../../lib/governor/proc.js';
import { exitCodeFor } from '../../lib/exit.js';
import { agentCmd, fakeMachine, fakeRun, killPid, unitCgroup, within } from '../fixtures/proc.js';

/** Every test here is in-process and quick: a hang fails in seconds. */
const TO = { timeout: 20_000 };

const cfg = (over: Partial<GovernorConfig> = {}): GovernorConfig => ({ ...(defaultsOf(GOVERNOR_SCHEMA) as GovernorConfig), ...over });

function sampleAt(t: number, vramPct: number | null, over: Partial<Sample> = {}): Sample {
  return {
    time: t,
    gpus: vramPct === null ? [] : [{ index: 0, name: 'g', vram_used_mb: (vramPct / 100) * 24000, vram_total_mb: 24000, util_pct: 50, temp_c: 50, power_w: 100 }],
    gpu_note: vramPct === null ? 'nvidia-smi not found' : null,
    ram_used_mb: 4000,
    ram_total_mb: 16000,
    swap_used_mb: 0,
    swap_total_mb: 0,
    cpu_load_pct: 10,
    cpu_own_pct: 0,
    cpu_others_pct: 10,
    cpu_runs: [],
    disks: [{ runs: ['r'], path: '/x', free_pct: 50, free_bytes: 1e9, total_bytes: 2e9 }],
    ...over,
  };
}

test('tiers by threshold; disk is judged on % free; hysteresis delays the way back', TO, () => {
  const t = { warning: 70, critical: 85 };
  assert.equal(rawTier('vram', 69.9, t), 'normal');
  assert.equal(rawTier('vram', 70, t), 'warning');
  assert.equal(rawTier('vram', 85, t), 'critical');
  assert.equal(rawTier('vram', null, t), 'normal', 'no GPU is normal');
  const d = { warning: 20, critical: 10 };
  assert.equal(rawTier('disk', 25, d), 'normal');
  assert.equal(rawTier('disk', 15, d), 'warning');
  assert.equal(rawTier('disk', 9, d), 'critical');
  assert.equal(nextTier('vram', 68, t, 'warning', 3), 'warning', 'below 70 but not below 67: stays');
  assert.equal(nextTier('vram', 66, t, 'warning', 3), 'normal');
  assert.equal(nextTier('disk', 21, d, 'warning', 3), 'warning', 'above 20 but not above 23: stays');
  assert.equal(nextTier('disk', 24, d, 'warning', 3), 'normal');
});

test('a value hovering at a threshold never flaps (and without hysteresis and dwell it does)', TO, () => {
  const rand = rng(9);
  const noisy = Array.from({ length: 720 }, () => 70 + (rand() - 0.5) * 4); // 68..72, one hour at 5 s
  const count = (c: GovernorConfig): number => {
    const g = new Governor(c, { now: 0 });
    let prev: string | null = null;
    let changes = 0;
    noisy.forEach((v, i) => {
      const d = g.observe(sampleAt(i * 5000, v));
      const tier = (d.readings as Record<string, { tier: string }>).vram?.tier ?? '';
      if (prev !== null && tier !== prev) changes++;
      prev = tier;
    });
    return changes;
  };
  const steady = count(cfg({ calm: 86_400_000 }));
  const flappy = count(cfg({ hysteresis: 0, dwell: 0, calm: 86_400_000 }));
  assert.ok(steady <= 1, `with hysteresis and dwell: ${steady} changes`);
  assert.ok(flappy > 50, `without: ${flappy} changes`);
});

test('readings swinging across the far threshold still move the tier, to the nearer one, within the dwell', TO, () => {
  const c = cfg({ calm: 86_400_000 });
  const vramTier = (d: ReturnType<Governor['observe']>): string => (d.readings as Record<string, { tier: string }>).vram?.tier ?? '';
  const { warning, critical } = c.vram;
  // From normal: readings alternating just under and just over the critical threshold.
  let g = new Governor(c, { now: 0 });
  g.observe(sampleAt(0, warning - 20));
  let at: number | null = null;
  for (let i = 1; i <= 120 && at === null; i++) {
    const d = g.observe(sampleAt(i * 5000, i % 2 ? critical - 1 : critical + 1));
    if (vramTier(d) !== 'normal') {
      assert.equal(vramTier(d), 'warning', 'the nearer tier: not every reading was critical');
      at = i * 5000;
    }
  }
  assert.ok(at !== null && at <= c.dwell + 5000, `warning after ${at} ms (dwell ${c.dwell} ms)`);
  // From critical (unloaded): readings alternating in the normal and warning tiers, never critical.
  g = new Governor(c, { now: 0 });
  assert.equal(vramTier(g.observe(sampleAt(0, critical + 5))), 'critical');
  at = null;
  const low = warning - c.hysteresis - 5;
  const mid = warning + 2;
  for (let i = 1; i <= 120 && at === null; i++) {
    const d = g.observe(sampleAt(i * 5000, i % 2 ? low : mid));
    if (vramTier(d) !== 'critical') {
      assert.equal(vramTier(d), 'warning', 'the nearer tier');
      assert.notDeepEqual(d.actions, ['unload'], 'no longer unloaded');
      at = i * 5000;
    }
  }
  assert.ok(at !== null && at <= c.dwell + 5000, `out of critical after ${at} ms (dwell ${c.dwell} ms)`);
  // Sustained readings in the far tier still go there in one move after the dwell.
  g = new Governor(c, { now: 0 });
  g.observe(sampleAt(0, warning - 20));
  let tiers: string[] = [];
  for (let i = 1; i <= 10; i++) tiers.push(vramTier(g.observe(sampleAt(i * 5000, critical + 2))));
  assert.ok(!tiers.includes('warning') && tiers.includes('critical'), tiers.join(' '));
  // And a reading back in the current tier starts the dwell again.
  g = new Governor(c, { now: 0 });
  g.observe(sampleAt(0, warning - 20));
  tiers = [];
  for (let i = 1; i <= 24; i++) tiers.push(vramTier(g.observe(sampleAt(i * 5000, i % 3 === 0 ? warning - 20 : warning + 2))));
  assert.deepEqual([...new Set(tiers)], ['normal'], 'never two dwell-lengths of readings in a row');
  // A rising reading: one warning, then critical from the next sample on. The
  // warning tier comes after the dwell, and critical one dwell after the first
  // critical reading, not a dwell after the move to warning.
  g = new Governor(c, { now: 0 });
  g.observe(sampleAt(0, warning - 20));
  g.observe(sampleAt(5000, warning + 2));
  at = null;
  for (let i = 2; i <= 40 && at === null; i++) if (vramTier(g.observe(sampleAt(i * 5000, critical + 2))) === 'critical') at = i * 5000;
  assert.equal(at, 10_000 + Math.ceil(c.dwell / 5000) * 5000, `critical at ${at} ms (first critical reading at 10000 ms, dwell ${c.dwell} ms)`);
});

test('quantization steps down under VRAM pressure, waits step_wait between steps, unloads when critical, and comes back one level after calm', TO, () => {
  const c = cfg({ dwell: 10_000, step_wait: 30_000, calm: 60_000 });
  const g = new Governor(c, { now: 0 });
  const seen: Array<[number, string]> = [];
  const run = (from: number, to: number, pct: number): void => {
    for (let t = from; t < to; t += 5000) {
      const d = g.observe(sampleAt(t, pct));
      const key = `${d.quantization}${d.actions.includes('unload') ? '+unload' : ''}`;
      if (seen[seen.length - 1]?.[1] !== key) seen.push([t, key]);
    }
  };
  run(0, 30_000, 50);
  run(30_000, 90_000, 75); // warning from 40 s (dwell): one level down, the next step_wait later
  run(90_000, 120_000, 90); // critical from 100 s: unload
  run(120_000, 400_000, 40); // normal from 130 s: loaded again; back up one level per calm period
  assert.deepEqual(seen, [
    [0, 'Q4_K_M'],
    [40_000, 'Q3_K_L'],
    [70_000, 'Q2_K'],
    [100_000, 'Q2_K+unload'],
    [130_000, 'Q2_K'],
    [185_000, 'Q3_K_L'],
    [245_000, 'Q4_K_M'],
  ]);
});

test('a governor (re)started under pressure decides from its first sample, and keeps the level and unload it published', TO, () => {
  const c = cfg({ dwell: 15_000, step_wait: 120_000 });
  const fresh = new Governor(c, { now: 0 });
  const first = fresh.observe(sampleAt(0, 30, { disks: [{ runs: ['a'], path: '/s', free_pct: 5, free_bytes: 1, total_bytes: 20 }] }));
  assert.deepEqual(first.actions, ['pause'], 'critical disk pauses at the first sample, not after dwell');
  // Restarted from a published "Q3_K_L, unload" while VRAM is still critical: nothing changes, nothing to log.
  const prev = new Governor(c, { now: 0 }).observe(sampleAt(0, 30));
  const g = new Governor(c, { level: 'Q3_K_L', unloaded: true, now: 1_000_000 });
  const d = g.observe(sampleAt(1_000_000, 90));
  assert.equal(d.quantization, 'Q3_K_L');
  assert.deepEqual(d.actions, ['unload']);
  assert.equal(transition({ ...prev, tier: 'critical', quantization: 'Q3_K_L', actions: ['unload'] }, d), null);
  // Restarted at Q3_K_L under warning: the next step still waits step_wait.
  const w = new Governor(c, { level: 'Q3_K_L', now: 0 });
  assert.equal(w.observe(sampleAt(0, 75)).quantization, 'Q3_K_L');
  assert.equal(w.observe(sampleAt(115_000, 75)).quantization, 'Q3_K_L');
  assert.equal(w.observe(sampleAt(120_000, 75)).quantization, 'Q2_K');
});

test('pause on critical disk or RAM, throttle on CPU, the reasons say why; once decides from one sample', TO, () => {
  const c = cfg();
  const disk = decideOnce(sampleAt(0, 30, { disks: [{ runs: ['a'], path: '/s', free_pct: 5, free_bytes: 1, total_bytes: 20 }] }), c);
  assert.equal(disk.tier, 'critical');
  assert.deepEqual(disk.actions, ['pause']);
  assert.deepEqual(disk.reasons, ['5% disk free (critical)']);
  const ram = decideOnce(sampleAt(0, 30, { ram_used_mb: 15000 }), c);
  assert.deepEqual(ram.actions, ['pause']);
  const cpu = decideOnce(sampleAt(0, 30, { cpu_load_pct: 97, cpu_own_pct: 7, cpu_others_pct: 90 }), c);
  assert.deepEqual(cpu.actions, ['throttle']);
  assert.equal(cpu.context_limit, 4096);
  assert.deepEqual(cpu.reasons, ['90% CPU outside the runs (warning)']);
  const own = decideOnce(sampleAt(0, 30, { cpu_load_pct: 97.4, cpu_own_pct: 97.4, cpu_others_pct: 0 }), c);
  assert.equal(own.tier, 'normal', "the runs' own load is not judged");
  assert.deepEqual(own.actions, []);
  assert.deepEqual([(own.readings as { cpu: unknown }).cpu, own.readings.cpu_load_pct, own.readings.cpu_own_pct], [{ value: 0, tier: 'normal' }, 97.4, 97.4]);
  const vram = decideOnce(sampleAt(0, 88), c);
  assert.equal(vram.quantization, 'Q2_K');
  assert.deepEqual(vram.actions, ['unload']);
  assert.equal(decideOnce(sampleAt(0, 72), c).quantization, 'Q3_K_L');
  const none = decideOnce(sampleAt(0, null), c);
  assert.equal(none.tier, 'normal');
  assert.equal(none.quantization, 'Q4_K_M');
  assert.equal((none.readings as { gpu_note: string }).gpu_note, 'nvidia-smi not found');
  assert.equal(transition(none, none), null);
  assert.match(transition(none, vram) ?? '', /^tier normal -> critical; quantization Q4_K_M -> Q2_K; actions: unload; 88% VRAM used \(critical\)$/);
});

test('parseNvidiaSmi reads csv,noheader,nounits and skips what it cannot read', TO, () => {
  const g = parseNvidiaSmi('0, NVIDIA GeForce RTX 4090, 20000, 24564, 97, 71, 350.12\n1, Tesla T4, [N/A], 15360, 0, 40, [N/A]\n\n');
  assert.equal(g.length, 1);
  assert.deepEqual(g[0], { index: 0, name: 'NVIDIA GeForce RTX 4090', vram_used_mb: 20000, vram_total_mb: 24564, util_pct: 97, temp_c: 71, power_w: 350.12 });
});

test('a run whose task log is locked keeps its records for the next tick instead of stalling the loop', TO, async () => {
  const t = makeEnv('gov-rec');
  const dir = path.join(t.stateDir, 'run1');
  fs.mkdirSync(dir);
  const log = new TaskLog(path.join(dir, 'tasklog.db'), path.join(dir, 'tasklog.journal'));
  await log.init();
  // Another process holds the journal's lock (as a stopped agent mid-append would).
  const holder = execa(process.execPath, ['-e', `const fs=require('fs'),fx=require('fs-ext');fx.flockSync(fs.openSync(${JSON.stringify(log.journalFile)},'r'),'ex');console.log('locked');setInterval(()=>{},1e9)`], { cwd: ROOT, reject: false, buffer: false });
  try {
    await within(10_000, 'the holder to take the lock', new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve())));
    const warnings: string[] = [];
    const rec = new Recorder(t.stateDir, (l) => warnings.push(l));
    const t0 = performance.now();
    rec.record([{ t: 'governor_decision', tier: 'warning', quantization: 'Q3_K_L', actions: [], reason: 'a' }]);
    rec.record([{ t: 'governor_decision', tier: 'critical', quantization: 'Q2_K', actions: ['unload'], reason: 'b' }]);
    const waited = performance.now() - t0;
    assert.ok(waited < 5000, `two ticks against a locked log took ${Math.round(waited)} ms (each waits at most 1 s)`);
    assert.deepEqual(warnings, ["run 'run1': its task log is locked; keeping the records for later"], 'warned once');
    await killPid(holder);
    rec.record([]);
    const { records } = parseJournal(log.journalFile, fs.readFileSync(log.journalFile));
    assert.deepEqual(
      records.map((r) => (r.event as { tier: string }).tier),
      ['warning', 'critical'],
      'both records written, in order, once the lock was free',
    );
    rec.record([]);
    assert.equal(parseJournal(log.journalFile, fs.readFileSync(log.journalFile)).records.length, 2, 'and not twice');
  } finally {
    await killPid(holder);
    t.cleanup();
  }
});


test("CPU sustained: the runs' own load never throttles; others' load throttles only once held for cpu_sustain", TO, () => {
  const c = cfg({ dwell: 15_000, cpu_sustain: 60_000 });
  const cpuTier = (d: ReturnType<Governor['observe']>): string => (d.readings as Record<string, { tier: string }>).cpu?.tier ?? '';
  // An agent and its compiles keep the machine at 99% for an hour: nothing to do.
  let g = new Governor(c, { now: 0 });
  for (let t = 0; t <= 3_600_000; t += 5000) {
    const d = g.observe(sampleAt(t, 30, { cpu_load_pct: 99.2, cpu_own_pct: 97.5, cpu_others_pct: 1.7 }));
    assert.equal(d.tier, 'normal', `at ${t} ms`);
    assert.deepEqual(d.actions, []);
  }
  // Others at 96% for 55 s, then quiet: a burst, not sustained.
  g = new Governor(c, { now: 0 });
  for (let t = 0; t <= 600_000; t += 5000) {
    const d = g.observe(sampleAt(t, 30, { cpu_others_pct: t >= 10_000 && t < 65_000 ? 96 : 10 }));
    assert.deepEqual(d.actions, [], `at ${t} ms`);
  }
  // Held: critical, throttle, cpu_sustain after the first high reading (not the dwell), and no sooner.
  g = new Governor(c, { now: 0 });
  let at: number | null = null;
  for (let t = 0; t <= 300_000 && at === null; t += 5000) {
    const d = g.observe(sampleAt(t, 30, { cpu_others_pct: t >= 10_000 ? 96 : 10 }));
    if (d.actions.includes('throttle')) {
      assert.equal(cpuTier(d), 'critical');
      at = t;
    }
  }
  assert.equal(at, 70_000, 'throttled cpu_sustain (60 s) after the first reading at 96% (10 s)');
  // The first reading after a start is no exception (the other resources count at once).
  g = new Governor(c, { now: 0 });
  assert.equal(cpuTier(g.observe(sampleAt(0, 30, { cpu_others_pct: 99 }))), 'normal');
  assert.equal(cpuTier(g.observe(sampleAt(55_000, 30, { cpu_others_pct: 99 }))), 'normal');
  assert.equal(cpuTier(g.observe(sampleAt(60_000, 30, { cpu_others_pct: 99 }))), 'critical');
  // Coming back down takes the dwell only.
  assert.equal(cpuTier(g.observe(sampleAt(65_000, 30, { cpu_others_pct: 20 }))), 'critical');
  assert.equal(cpuTier(g.observe(sampleAt(80_000, 30, { cpu_others_pct: 20 }))), 'normal');
  // A daemon restarted while the load it had sustained is still there keeps the tier it published.
  g = new Governor(c, { cpu: 'critical', now: 0 });
  assert.equal(cpuTier(g.observe(sampleAt(0, 30, { cpu_others_pct: 97 }))), 'critical');
  g = new Governor(c, { cpu: 'critical', now: 0 });
  assert.equal(cpuTier(g.observe(sampleAt(0, 30, { cpu_others_pct: 85 }))), 'warning', 'but no more than the load says now');
  // cpu_sustain 0: the dwell alone, as for the other resources.
  g = new Governor(cfg({ dwell: 15_000, cpu_sustain: 0 }), { now: 0 });
  g.observe(sampleAt(0, 30, { cpu_others_pct: 10 }));
  g.observe(sampleAt(5000, 30, { cpu_others_pct: 96 }));
  assert.equal(cpuTier(g.observe(sampleAt(20_000, 30, { cpu_others_pct: 96 }))), 'critical');
});

test("CPU meter, a run in its own unit: the unit's cgroup is the run's own, the rest is others", TO, () => {
  const t = makeEnv('gov-cpu');
  try {
    const m = fakeMachine(t.dir);
    const cg = unitCgroup('run1');
    fakeRun(t.stateDir, 'run1', 4242);
    m.spawn({ pid: 4242, ppid: 1, cmd: agentCmd('run1'), cgroup: cg });
    m.set({ others: 0, iowait: 2, cgroups: { [cg]: 97.4 } });
    const meter = new CpuMeter(m, t.stateDir);
    assert.deepEqual(meter.read(), { all_pct: null, own_pct: null, others_pct: null, runs: [{ run: 'run1', pid: 4242, by: 'cgroup', cgroup: cg, pct: null }] }, 'the first reading has nothing to compare with');
    m.step(3);
    assert.deepEqual(meter.read(), { all_pct: 97.4, own_pct: 97.4, others_pct: 0, runs: [{ run: 'run1', pid: 4242, by: 'cgroup', cgroup: cg, pct: 97.4 }] });
    m.set({ others: 25, cgroups: { [cg]: 70 } });
    m.step(2);
    assert.deepEqual(pcts(meter.read()), [95, 70, 25]);
    // No tick since: the last figures stand, and the next reading counts from the earlier base.
    assert.deepEqual(pcts(meter.read()), [95, 70, 25]);
    m.set({ others: 10, cgroups: { [cg]: 50 } });
    m.step(2);
    assert.deepEqual(pcts(meter.read()), [60, 50, 10]);
    // The unit restarted: a new cgroup whose usage starts again from 0 is all new, not negative.
    m.restartUnit(cg);
    m.step(2);
    assert.deepEqual(pcts(meter.read()), [60, 50, 10]);
    // The agent gone (its lock names a dead pid): its unit's load is others' like any other.
    m.exit(4242);
    m.step(2);
    assert.deepEqual(meter.read(), { all_pct: 60, own_pct: 0, others_pct: 60, runs: [] });
  } finally {
    t.cleanup();
  }
});

const pcts = (r: CpuReading): Array<number | null> => [r.all_pct, r.own_pct, r.others_pct];

test('CPU meter: a step of the machine between resolving its proc and its cgroup roots does not mix two views in one reading', TO, () => {
  const t = makeEnv('gov-cpu');
  const realpathSync = fs.realpathSync;
  try {
    const m = fakeMachine(t.dir);
    const cg = unitCgroup('run1');
    fakeRun(t.stateDir, 'run1', 4242);
    m.spawn({ pid: 4242, ppid: 1, cmd: agentCmd('run1'), cgroup: cg });
    m.set({ others: 0, iowait: 1, cgroups: { [cg]: 97.4 } });
    const meter = new CpuMeter(m, t.stateDir);
    meter.read();
    m.step(10);
    // The next step lands just as the reader goes from one root to the other (the
    // timer of a test's machine can, on a loaded machine): proc of one step with the
    // cgroup of the next would say the unit burnt 11 steps' worth in 10, 107%.
    let steps = 0;
    fs.realpathSync = ((p: fs.PathLike, o?: unknown) => {
      if (String(p) === m.cgroup && steps < 2) {
        steps++;
        m.step();
      }
      return (realpathSync as (p: fs.PathLike, o?: unknown) => string)(p, o);
    }) as typeof fs.realpathSync;
    const r = meter.read();
    fs.realpathSync = realpathSync;
    assert.deepEqual(r, { all_pct: 97.4, own_pct: 97.4, others_pct: 0, runs: [{ run: 'run1', pid: 4242, by: 'cgroup', cgroup: cg, pct: 97.4 }] });
    assert.equal(steps, 2, 'a step fell between the roots twice');
  } finally {
    fs.realpathSync = realpathSync;
    t.cleanup();
  }
});

test('CPU meter: a unit name systemd-escaped; an agent in a unit not its own, or a pid reused by another program', TO, () => {
  const t = makeEnv('gov-cpu');
  try {
    const m = fakeMachine(t.dir);
    const escaped = '/system.slice/system-selfware.slice/selfware@my\\x2drun.service';
    fakeRun(t.stateDir, 'my-run', 100);
    m.spawn({ pid: 100, ppid: 1, cmd: agentCmd('my-run'), cgroup: escaped });
    // Started by hand from another unit's shell: that unit is not the run's, its processes are.
    fakeRun(t.stateDir, 'run2', 200);
    m.spawn({ pid: 200, ppid: 1, cmd: agentCmd('run2'), cgroup: '/system.slice/ssh.service', pct: 20 });
    // A lock left by an agent long gone, its pid now a shell's.
    fakeRun(t.stateDir, 'run3', 300);
    m.spawn({ pid: 300, ppid: 1, cmd: ['bash'], pct: 15 });
    m.set({ others: 5, cgroups: { [escaped]: 40, '/system.slice/ssh.service': 20 } });
    const meter = new CpuMeter(m, t.stateDir);
    meter.read();
    m.step(4);
    const r = meter.read();
    assert.deepEqual(pcts(r), [80, 60, 20]);
    assert.deepEqual(
      r.runs.map((x) => [x.run, x.by, x.pct]),
      [
        ['my-run', 'cgroup', 40],
        ['run2', 'processes', 20],
      ],
    );
  } finally {
    t.cleanup();
  }
});

test('CPU meter: a hybrid cgroup layout (the v2 tree under unified/)', TO, () => {
  const t = makeEnv('gov-cpu');
  try {
    const m = fakeMachine(t.dir, { hybrid: true });
    const cg = unitCgroup('run1');
    fakeRun(t.stateDir, 'run1', 4242);
    m.spawn({ pid: 4242, ppid: 1, cmd: agentCmd('run1'), cgroup: cg });
    m.set({ others: 10, iowait: 0, cgroups: { [cg]: 80 } });
    const meter = new CpuMeter(m, t.stateDir);
    meter.read();
    m.step(2);
    const r = meter.read();
    assert.deepEqual([pcts(r), r.runs.map((x) => x.by)], [[90, 80, 10], ['cgroup']]);
  } finally {
    t.cleanup();
  }
});

test("CPU meter, a run by hand (no unit of its own): the agent's process tree, children reaped or detached, is the run's own", TO, () => {
  const t = makeEnv('gov-cpu');
  try {
    const m = fakeMachine(t.dir);
    fakeRun(t.stateDir, 'run1', 5000);
    m.set({ others: 0, iowait: 0 });
    m.spawn({ pid: 5000, ppid: 4000, cmd: agentCmd('run1'), pct: 2 });
    m.spawn({ pid: 5001, ppid: 5000, cmd: ['/usr/bin/yes'], pct: 45 });
    m.spawn({ pid: 5002, ppid: 5001, cmd: ['/usr/libexec/gcc/cc1'], comm: 'cc1 (x) y', pct: 20 });
    m.spawn({ pid: 6000, ppid: 1, cmd: ['/usr/bin/yes'], pct: 30 }); // someone else's
    const meter = new CpuMeter(m, t.stateDir);
    meter.read();
    m.step(2);
    const r = meter.read();
    assert.deepEqual(pcts(r), [97, 67, 30]);
    assert.deepEqual(r.runs, [{ run: 'run1', pid: 5000, by: 'processes', cgroup: null, pct: 67 }]);
    // The compiler ends and its parent reaps it: its time moves into the parent's cutime, counted once.
    m.step(1);
    m.exit(5002);
    m.step(1);
    assert.deepEqual(pcts(meter.read()), [87, 57, 30], 'a step with it, a step without');
    m.step(2);
    assert.deepEqual(pcts(meter.read()), [77, 47, 30]);
    // A child that starts and ends between two readings is counted through its parent's cutime.
    m.spawn({ pid: 5003, ppid: 5000, cmd: ['make'], pct: 20 });
    m.step(1);
    m.exit(5003);
    m.step(1);
    assert.deepEqual(pcts(meter.read()), [87, 57, 30]);
    // A daemon a tool leaves behind (its parent gone, it goes to pid 1) stays the run's own.
    m.spawn({ pid: 5004, ppid: 5001, cmd: ['gradle-daemon'], pct: 10 });
    m.step(1);
    meter.read();
    m.exit(5001);
    m.step(2);
    assert.deepEqual(pcts(meter.read()), [42, 12, 30]);
    // It ends, reaped by pid 1, outside the tree: it stops adding, and takes nothing off.
    m.exit(5004, false);
    m.step(2);
    assert.deepEqual(pcts(meter.read()), [32, 2, 30]);
    // A parent and its child gone between readings, reaped in turn up to the agent: counted once.
    m.spawn({ pid: 5005, ppid: 5000, cmd: ['sh'], pct: 0 });
    m.spawn({ pid: 5006, ppid: 5005, cmd: ['cc1'], pct: 50 });
    m.step(2);
    meter.read();
    m.step(1);
    m.exit(5006);
    m.exit(5005);
    m.step(1);
    assert.deepEqual(pcts(meter.read()), [57, 27, 30]);
  } finally {
    t.cleanup();
  }
});

test('CPU meter: a run whose agent appears between readings counts its processes started since', TO, () => {
  const t = makeEnv('gov-cpu');
  try {
    const m = fakeMachine(t.dir);
    m.set({ others: 10, iowait: 0 });
    m.spawn({ pid: 7000, ppid: 1, cmd: ['/usr/bin/yes'], pct: 10 });
    const meter = new CpuMeter(m, t.stateDir);
    meter.read();
    m.step(1);
    fakeRun(t.stateDir, 'run1', 5000);
    m.spawn({ pid: 5000, ppid: 1, cmd: agentCmd('run1'), pct: 60 });
    m.step(1);
    // 60% for one of two steps.
    assert.deepEqual(pcts(meter.read()), [50, 30, 20]);
  } finally {
    t.cleanup();
  }
});

test('RAM and swap from <proc>/meminfo; an unreadable <proc> is an I/O error naming the file', TO, () => {
  const t = makeEnv('gov-mem');
  try {
    const m = fakeMachine(t.dir);
    m.set({ mem: { totalMb: 16000, availableMb: 4000, swapTotalMb: 1000, swapFreeMb: 250 } });
    assert.deepEqual(readMemInfo(m.proc), { ram_total_mb: 16000, ram_used_mb: 12000, swap_total_mb: 1000, swap_used_mb: 750 });
    const none = path.join(t.dir, 'none');
    assert.throws(() => readMemInfo(none), (e: Error) => exitCodeFor(e) === 74 && e.message === `cannot read '${none}/meminfo': no such file or directory`);
    assert.throws(() => readCpuTimes(none), /cannot read '.*none\/stat': no such file or directory/);
    fs.mkdirSync(none);
    fs.writeFileSync(path.join(none, 'stat'), 'intr 0\n');
    assert.throws(() => readCpuTimes(none), /none\/stat': no 'cpu' line/);
  } finally {
    t.cleanup();
  }
});
