// The soak: a compressed week of one run under a real systemd, with every
// kind of fault at random instants, checked against ground truth the
// harness keeps itself. `make soak DAYS=7 TASKS=10000 FAULTS=200`; see the
// README. Needs root (a container boots) and the built tree (make build).
//
//   node dist/bench/soak/soak.js --days D --tasks T --faults F
//        [--runs N] [--day-seconds S] [--drain-seconds S] [--seed N] [--out FILE] [--keep]
//
// One run (`soak`) for a soak of one or two days, two for longer; with
// --runs N, N runs (`soak1`..`soakN`) at once on the host, the tasks dealt
// among them in turn, each fault that targets one agent aimed at one of them
// drawn at random (a reboot, a full disk, the model's outage and VRAM
// pressure hit them all), and every check made for each run. Two runs use the
// second core of a 2-core machine: one agent is one thread.
//
// Time is compressed with the keys and drop-ins a user has (no fake clock):
// a simulated day is S seconds; routine checkpoints, retention (the daily
// timer, the agent's under disk pressure, the task log's fold of samples older
// than a week and of steps and model calls older than 2 days, the archive's
// and the forensics' 2 days, the workspace's hour of grace), the report
// (mailed once a simulated day, over that day), heartbeats, the governor's
// interval, the watchdog, recovery's window and stable_after are scaled to it.
//
// Growth: the run's directory is measured in parts (state/, its archive,
// state.git, the workspace and its .git, the task log's database and
// journal) as it goes; disk growth after day 2 is the least-squares slope of
// the samples since, per day, of the size at day 1, printed by part too.
//
// Ground truth: every task's effect is a set of lines in the workspace
// (`<id> s<i>`, one per step) and a ledger outside it of every execution.
// At the end: every task completed once (each line exactly once) or failed
// for good with a reason; a step executed again only after a fault, and then
// as a checked retry (the agent said it was interrupted); the report's
// figures and the mails match what systemd and the harness saw; git fsck and
// sw-checkpoint verify are clean. The last line:
//   soak: T tasks, F faults, L lost, D doubled, M report mismatches, disk growth after day 2 G%/day, RSS growth R%

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Container, cannotBoot } from '../../test/systemd/container.js';
import { fakeNvidiaSmi, vramSeries, type FakeGpu } from '../../test/fixtures/nvidia.js';
import { SoakModel } from './model.js';
import { rng, sleep } from '../../test/helpers.js';
import { FAULT_KINDS, INTERRUPTING, duBytes, findProc, flipByte, hasChild, procAgeMs, rssOf, signal, type FaultKind, type FaultRecord } from './faults.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const GOV = 'sw-gpu-governor.service';
const STEPS = 3;
/** Between two faults that end the agent (see the recovery config). */
const SPACING_MS = 12_000;
const BLOCK = 100;

interface Args {
  days: number;
  /** Runs at once (soak, or soak1..soakN). */
  runs: number;
  tasks: number;
  faults: number;
  daySeconds: number;
  /** After the simulated days, how long the queue may take to empty. */
  drainSeconds: number;
  seed: number;
  out: string;
  keep: boolean;
}

/** One run of the soak, and what the harness counts of it. */
interface Run {
  k: number;
  name: string;
  unit: string;
  runDir: string;
  queueDir: string;
  wsDir: string;
  /** Tasks dropped into its queue. */
  queued: number;
  /** Of them, those whose last step the ledger shows run (at least once). */
  lastSteps: number;
  /** Sessions the harness ended without a word (SIGKILL, power loss, the watchdog). */
  unclean: number;
  /** Restart storms aimed at it. */
  storms: number;
}

function parseArgs(argv: string[]): Args {
  const a: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i] as string;
    if (k === '--keep') a.keep = '1';
    else if (k.startsWith('--') && i + 1 < argv.length) a[k.slice(2)] = argv[++i] as string;
    else throw new Error(`soak: unknown argument '${k}'`);
  }
  const num = (k: string, d: number, min: number): number => {
    const v = a[k] === undefined || a[k] === '' ? d : Number(a[k]);
    if (!Number.isFinite(v) || v < min) throw new Error(`soak: --${k}: expected a number of at least ${min}, got '${a[k]}'`);
    return v;
  };
  const days = num('days', 7, 1);
  if (a['day-seconds'] !== undefined && Number(a['day-seconds']) % 60 !== 0) throw new Error(`soak: --day-seconds: expected a whole number of minutes in seconds (the timers run on calendar minutes), got '${a['day-seconds']}'`);
  // Two runs for a soak of days (one agent is one thread: a 2-core machine has room for two, and the
  // full soak's 10,000 tasks in 7 days of 900 s need 1.6 a second), one for a short one.
  const runs = num('runs', days >= 3 ? 2 : 1, 1);
  if (!Number.isInteger(runs) || runs > 8) throw new Error(`soak: --runs: expected a whole number from 1 to 8, got '${a.runs}'`);
  return {
    days,
    runs,
    tasks: num('tasks', 10_000, 1),
    faults: num('faults', 200, 0),
    daySeconds: num('day-seconds', days <= 1 ? 240 : 900, 60),
    // Until the queue is empty, at most this long: on a 2-core machine kept busy the agent does a task
    // in about 2 s, half its idle speed, and the short soak's 300 need the whole of it.
    drainSeconds: num('drain-seconds', days <= 1 ? 480 : 1800, 0),
    seed: num('seed', Date.now() % 1_000_000, 0),
    out: a.out ?? `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    keep: a.keep === '1',
  };
}

const monoMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);

function pctl(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const why = await cannotBoot();
  if (why) {
    console.error(`soak: cannot boot a container here: ${why}`);
    return 69;
  }
  const rand = rng(args.seed);
  const scale = 86_400 / args.daySeconds;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-soak-'));
  const root = path.join(dir, 'root');
  const stateHost = path.join(dir, 'state');
  const srv = path.join(dir, 'srv');
  for (const d of [root, stateHost, srv, path.join(dir, 'usr-local')]) fs.mkdirSync(d, { recursive: true });
  // The run's state on a small filesystem of its own (a full disk fills it, not the host's).
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=768m,mode=0755', 'tmpfs', stateHost]);
  const ledger = path.join(srv, 'ledger');
  fs.writeFileSync(ledger, '');
  fs.chmodSync(srv, 0o777);
  fs.chmodSync(ledger, 0o666);
  const model = new SoakModel({ tokensPerS: 1000, firstTokenMs: 20, slowChance: 0.01, stallChance: 0.005, stallMs: 4000 }, '/srv/soak/ledger', rand);
  await model.start();
  const c = new Container({
    root,
    name: `soak${process.pid}`,
    log: path.join(dir, 'nspawn.log'),
    binds: [
      `--bind=${path.join(dir, 'usr-local')}:/usr/local`,
      `--bind-ro=${ROOT}`,
      '--bind-ro=/var/lib/dpkg',
      '--bind-ro=/etc/alternatives',
      '--bind-ro=/etc/exim4',
      '--bind-ro=/var/lib/exim4',
      `--bind=${stateHost}:/var/lib/selfware`,
      `--bind=${srv}:/srv/soak`,
    ],
  });
  // Stopped from outside (a test's timeout, ^C): the container and the tmpfs go with it.
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`soak: ${sig}: stopping the container`);
    void c.powerLoss().finally(() => {
      try {
        execFileSync('umount', ['-l', stateHost]);
      } catch {
        /* not mounted */
      }
      fs.rmSync(dir, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const t0 = monoMs();
  const since = (): number => monoMs() - t0;
  const log = (s: string): void => console.log(`[${(since() / 1000).toFixed(0).padStart(5)} s] ${s}`);
  const faults: FaultRecord[] = [];
  /** agent_rss and agent_age_ms: one a run. */
  const samples: Array<{ t_ms: number; day: number; disk: number; parts: Record<string, number>; agent_rss: number[]; agent_age_ms: number[]; governor_rss: number }> = [];
  let gpu: FakeGpu | null = null;
  let runs: Run[] = [];
  let result = 1;
  try {
    await c.boot();
    log(`container up (${args.days} simulated days of ${args.daySeconds} s, ${args.tasks} tasks, ${args.faults} faults, seed ${args.seed})`);
    const sh = (script: string, opts: { allowFail?: boolean; timeoutMs?: number } = {}) => c.sh(script, opts);
    const asUser = (cmd: string, opts: { allowFail?: boolean } = {}) => c.sh(`setpriv --reuid=selfware --regid=selfware --init-groups env HOME=/var/lib/selfware ${cmd}`, opts);
    // --- install, as the README says, and a real MTA.
    await c.installWithMta(ROOT);
    log('make install done');
    const ids = (await sh('id -u selfware; id -g selfware')).trim().split('\n').map(Number) as [number, number];
    // --- the fake GPU (stepped by the vram fault) and a /proc of our own for CPU and RAM.
    gpu = fakeNvidiaSmi(path.join(root, 'opt/fakegpu'));
    gpu.set(vramSeries([40], 1000));
    const secs = (realSeconds: number, min: number): string => `${Math.max(min, Math.round(realSeconds / scale))}s`;
    await sh(
      [
        `sed -i 's|${root}/opt/fakegpu|/opt/fakegpu|g' /opt/fakegpu/bin-ok/nvidia-smi && chmod -R a+rX /opt/fakegpu`,
        'mkdir -p /opt/fakeproc && printf "cpu  1000 0 1000 98000 0 0 0 0 0 0\\n" > /opt/fakeproc/stat',
        'printf "MemTotal: 16384000 kB\\nMemAvailable: 12288000 kB\\nSwapTotal: 0 kB\\nSwapFree: 0 kB\\n" > /opt/fakeproc/meminfo && chmod -R a+rX /opt/fakeproc',
      ].join(' && '),
    );
    const dropIn = (unit: string, body: string): string => {
      const d = path.join(root, 'etc/systemd/system', `${unit}.d`);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'soak.conf'), body + '\n');
      return 'true';
    };
    const day = args.daySeconds;
    /** A systemd calendar spec for "every `period` seconds, `offset` seconds in" (period: a divisor or multiple of a minute). */
    const calendar = (period: number, offset: number): string => {
      if (period % 60 === 0) return `*:${Math.floor(offset / 60)}/${period / 60}:${String(offset % 60).padStart(2, '0')}`;
      return `*:*:${offset % period}/${period}`;
    };
    const config = (rssLimit = '4GiB'): string =>
      [
        'llm:',
        '  backend: openai',
        `  endpoint: http://127.0.0.1:${model.port}/v1`,
        '  model: soak',
        '  request_timeout: 30s',
        '  retries: 2',
        `  patience: ${secs(300 * 60, 8)}`,
        '  breaker_cooldown: 2s',
        'agent:',
        '  max_attempts: 3',
        '  task_timeout: 5m',
        `  heartbeat: ${secs(300, 2)}`,
        `  archive_after: ${secs(3600, 1)}`,
        // Archives of finished tasks leave state/ after 2 simulated days (the default, 14 days, would never in a week's soak).
        `  archive_keep: ${secs(2 * 86_400, 60)}`,
        `  rss_limit: ${rssLimit}`,
        // Escalation after 5 crashes in 40 s: the storm's kills (each as soon as the agent is READY) fit,
        // the other faults that end the agent come at least SPACING_MS apart, so at most 4 do.
        'recovery:',
        '  backoff_base: 200ms',
        '  backoff_max: 2s',
        '  max_failures: 5',
        '  window: 40s',
        '  stable_after: 8s',
        'report:',
        '  mail: ops@localhost',
        'checkpoint:',
        '  retention:',
        '    keep_last: 12',
        '    keep_hourly: 24',
        '    keep_daily: 7',
        '    keep_weekly: 4',
        `  pressure_every: ${secs(30 * 60, 1)}`,
        // The workspace's unreferenced objects stay an hour, scaled (unscaled, a soak shorter than an
        // hour never dropped the snapshots of pruned checkpoints). Forensics, and the checkpoints
        // recoveries used, stay 2 simulated days (the default, a week, would never expire in a week's
        // soak), as the archive does.
        `  workspace_grace: ${secs(3600, 1)}`,
        `  forensics_keep: ${secs(2 * 86_400, 60)}`,
        // Resource samples fold after a simulated week (the full soak's last day).
        'tasklog:',
        `  downsample_after: ${secs(7 * 86_400, 60)}`,
        `  downsample_bucket: ${secs(5 * 60, 1)}`,
        // Steps and model calls fold after 2 simulated days (the default, 14 days, would never in a week's soak).
        `  detail_after: ${secs(2 * 86_400, 60)}`,
        '',
      ].join('\n');
    // --- the runs: soak, or soak1..soakN.
    runs = Array.from({ length: args.runs }, (_, k) => {
      const name = args.runs === 1 ? 'soak' : `soak${k + 1}`;
      const runDir = path.join(stateHost, name);
      return { k, name, unit: `selfware@${name}.service`, runDir, queueDir: path.join(runDir, 'state', 'queue'), wsDir: path.join(runDir, 'workspace'), queued: 0, lastSteps: 0, unclean: 0, storms: 0 };
    });
    const writeConfig = (r: Run, rssLimit?: string): void => fs.writeFileSync(path.join(root, 'etc/selfware', `${r.name}.yaml`), config(rssLimit));
    for (const r of runs) writeConfig(r);
    fs.writeFileSync(
      path.join(root, 'etc/selfware/governor.yaml'),
      ['interval: 500ms', 'dwell: 1s', 'step_wait: 2s', 'calm: 3s', 'record_every: 5s', 'cpu_sustain: 5s', ''].join('\n'),
    );
    // The agent: a fast watchdog, restarts at once, and a start limit a storm of a simulated day fits.
    // TimeoutStopSec: in this container systemd is not told when a killed unit's last process is gone
    // (no cgroup empty notification), so it waits out the stop timeout after every kill of an agent
    // with a step running; 2 min of it would stretch each such fault, 5 s still lets a clean stop finish (a step of 50 ms and
    // a shutdown checkpoint).
    // Routine checkpoints every 5 min, scaled (but not more often than every 5 s).
    // Retention daily, scaled: once a simulated day. The report once a simulated day, over that day.
    // Calendar times, as the units' own: restarts and reboots do not move them.
    const perRun = (r: Run): string[] => [
      dropIn(r.unit, '[Unit]\nStartLimitIntervalSec=60s\nStartLimitBurst=40\n[Service]\nWatchdogSec=5s\nTimeoutAbortSec=3s\nTimeoutStopSec=5s\nRestartSec=1s\nReadWritePaths=/srv/soak'),
      dropIn(`selfware-checkpoint@${r.name}.timer`, `[Timer]\nOnCalendar=\nOnActiveSec=5s\nOnUnitActiveSec=${secs(300, 5)}\nAccuracySec=1s`),
      // (Its RandomizedDelaySec, 15 min, scaled too: unscaled, it put off each day's prune past the next,
      // and a 3-day soak pruned only once, under disk pressure, keeping 714 checkpoints at its end.)
      dropIn(`selfware-retention@${r.name}.timer`, `[Timer]\nOnCalendar=\nOnCalendar=${calendar(day, Math.round(day / 2))}\nAccuracySec=1s\nRandomizedDelaySec=${secs(15 * 60, 0)}`),
      dropIn(`selfware-report@${r.name}.timer`, `[Timer]\nOnCalendar=\nOnCalendar=${calendar(day, 0)}\nAccuracySec=1s`),
      dropIn(`selfware-report@${r.name}.service`, `[Service]\nExecStart=\nExecStart=/usr/local/bin/sw-report %i --mail --since ${day}s`),
    ];
    await sh(
      [
        ...runs.flatMap(perRun),
        dropIn(GOV, '[Service]\nEnvironment=PATH=/opt/fakegpu/bin-ok:/usr/bin:/bin SELFWARE_PROC=/opt/fakeproc\nWatchdogSec=10s'),
        'systemctl daemon-reload',
        ...runs.map((r) => `setpriv --reuid=selfware --regid=selfware --init-groups env HOME=/var/lib/selfware /usr/local/bin/sw-agent init ${r.name} >/dev/null`),
        `systemctl enable --now ${GOV}`,
        ...runs.map((r) => `systemctl enable ${r.unit}`),
      ].join(' && '),
    );
    // --- the workload: tasks dropped into the queue (ID.yml, as a user's script may), paced over the run;
    // task i goes to run i mod N (ids are unique over the runs, so one ledger serves them all).
    let queued = 0;
    const taskId = (i: number): string => `t${String(i).padStart(6, '0')}`;
    const runOf = (i: number): Run => runs[i % runs.length] as Run;
    const runOfId = (id: string): Run | null => (/^t\d{6}$/.test(id) ? runOf(Number(id.slice(1))) : null);
    const taskFileOf = (i: number): string => `effects/b${String(Math.floor(i / BLOCK)).padStart(4, '0')}.txt`;
    const dropTask = (i: number): void => {
      const r = runOf(i);
      fs.mkdirSync(r.queueDir, { recursive: true });
      const id = taskId(i);
      const tmp = path.join(stateHost, `.soak-${id}.tmp`);
      fs.writeFileSync(tmp, `title: soak ${id}\nprompt: "SOAK ${id} steps=${STEPS} file=${taskFileOf(i)}"\n`, { mode: 0o640 });
      fs.chownSync(tmp, ids[0], ids[1]);
      fs.renameSync(tmp, path.join(r.queueDir, `${id}.yml`));
      r.queued++;
      queued++;
    };
    let ledgerPos = 0;
    const lastStepRe = new RegExp(`^(\\S+) s${STEPS} a\\d+ `);
    const readLedger = (): void => {
      const buf = fs.readFileSync(ledger);
      const text = buf.subarray(ledgerPos).toString('utf8');
      const end = text.lastIndexOf('\n');
      if (end < 0) return;
      for (const l of text.slice(0, end).split('\n')) {
        const m = lastStepRe.exec(l);
        const r = m ? runOfId(m[1] as string) : null;
        if (r) r.lastSteps++;
      }
      ledgerPos += Buffer.byteLength(text.slice(0, end + 1));
    };
    const runMs = args.days * day * 1000;
    // At most 25 tasks waiting in each run's queue.
    const feed = (): void => {
      readLedger();
      const target = Math.min(args.tasks, Math.ceil((args.tasks * since()) / runMs) + 5 * runs.length);
      while (queued < target) {
        const r = runOf(queued);
        if (r.queued - r.lastSteps >= 25) break;
        dropTask(queued);
      }
    };
    feed();
    const startAt = monoMs();
    await sh(runs.map((r) => `systemctl start ${r.unit}`).join(' && '), { timeoutMs: 180_000 });
    log(`${runs.map((r) => r.unit).join(', ')} started (READY in ${monoMs() - startAt} ms)`);

    const show = async (unit: string, props: string[]): Promise<Record<string, string>> => c.show(unit, props).catch(() => ({}));
    const agentPid = (r: Run): number | null => findProc(c.initPid, ['sw-agent.cjs', 'run', r.name]);
    /** Wait until the run's unit is active with an agent that is not `old`; the time it took, or null on timeout. */
    const waitReady = async (r: Run, from: number, old: number | null, ms = 120_000): Promise<number | null> => {
      const deadline = monoMs() + ms;
      while (monoMs() < deadline) {
        const p = await show(r.unit, ['ActiveState', 'SubState', 'ActiveEnterTimestampMonotonic']);
        const pid = agentPid(r);
        if (p.ActiveState === 'active' && p.SubState === 'running' && pid && pid !== old && Number(p.ActiveEnterTimestampMonotonic) / 1000 >= from - 5) {
          return Number(p.ActiveEnterTimestampMonotonic) / 1000 - from;
        }
        if (p.ActiveState === 'failed' || (p.ActiveState === 'inactive' && !pid)) return null;
        await sleep(150);
      }
      return null;
    };
    /** Every run READY again (each with an agent not in olds): the longest time it took, or null if one was not. */
    const waitAllReady = async (from: number, olds: Array<number | null>): Promise<number | null> => {
      const t = await Promise.all(runs.map((r) => waitReady(r, from, olds[r.k] ?? null)));
      return t.some((x) => x === null) ? null : Math.max(...(t as number[]));
    };
    const journalSince = (sinceMono: number, args2: string): Promise<string> =>
      sh(`journalctl --no-pager -o cat ${args2} --since "@${Math.floor((Date.now() - (monoMs() - sinceMono)) / 1000) - 1}"`, { allowFail: true });
    const waitJournal = async (sinceMono: number, re: RegExp, ms: number, unitArgs: string): Promise<string | null> => {
      // At least one look, however short the wait.
      const deadline = monoMs() + ms;
      for (;;) {
        const j = await journalSince(sinceMono, unitArgs);
        const m = re.exec(j);
        if (m) return m[0];
        if (monoMs() >= deadline) return null;
        await sleep(500);
      }
    };
    const mails = (): string => {
      try {
        return fs.readFileSync(path.join(root, 'var/mail/ops'), 'utf8');
      } catch {
        return '';
      }
    };
    const subjects = (r: Run): string[] => (mails().match(/^Subject: \[selfware \S+\] .*$/gm) ?? []).filter((x) => x.startsWith(`Subject: [selfware ${r.name}] `));
    const escalationMails = (r: Run): number => subjects(r).filter((x) => /\] ESCALATED: /.test(x)).length;
    const reportMails = (r: Run): number => subjects(r).filter((x) => !/\] (ESCALATED|FAILED|CONFIG ERROR): /.test(x)).length;

    // --- the faults: random instants over the run, every kind at least once (when there are enough).
    const kinds: FaultKind[] = [];
    for (let i = 0; i < args.faults; i++) kinds.push(i < FAULT_KINDS.length ? (FAULT_KINDS[i] as FaultKind) : (FAULT_KINDS[Math.floor(rand() * FAULT_KINDS.length)] as FaultKind));
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j] as FaultKind, kinds[i] as FaultKind];
    }
    const instants = kinds.map(() => 0.03 + rand() * 0.9).sort((x, y) => x - y).map((f) => f * runMs);
    // The run each fault aims at (those of the whole host hit every run; with one run nothing is drawn,
    // so a seed gives the faults it gave before runs were added).
    const targets = kinds.map((): Run => (runs.length === 1 ? (runs[0] as Run) : (runs[Math.floor(rand() * runs.length)] as Run)));

    const inject = async (n: number, kind: FaultKind, r: Run): Promise<FaultRecord> => {
      const UNIT = r.unit;
      const RUN = r.name;
      const { runDir } = r;
      // (Moved to the real instant by a fault that first waits for something to damage.)
      let at = monoMs();
      const rec: FaultRecord = { n, kind, at_ms: at - t0, detail: '', detected: null, detect_ms: null, ready_ms: null, steps_redone: 0, ok: false, problem: null };
      const seen = async (re: RegExp, ms: number, unitArgs = `-u ${UNIT}`): Promise<void> => {
        const m = await waitJournal(at, re, ms, unitArgs);
        if (m) {
          rec.detected = m.slice(0, 160);
          rec.detect_ms = monoMs() - at;
        }
      };
      const killAgent = async (how: NodeJS.Signals = 'SIGKILL'): Promise<number | null> => {
        const pid = agentPid(r);
        if (signal(pid, how)) r.unclean++;
        return pid;
      };
      switch (kind) {
        case 'kill-agent':
        case 'kill-agent-mid-step':
        case 'kill-agent-mid-checkpoint': {
          // Mid-step: while a step's shell runs; mid-checkpoint: while the agent's git works on state.git.
          const deadline = monoMs() + 20_000;
          let where = 'at a random instant';
          if (kind !== 'kill-agent') {
            for (;;) {
              const a = agentPid(r);
              // (A step's shell is the agent's child; with several runs, another's may be running. The
              // agent's git runs as its child, or under an sh that runs several git commands in turn.)
              const gitSeq = (cmd: string): boolean => cmd.includes('selfware-step');
              const hit =
                kind === 'kill-agent-mid-step'
                  ? a !== null && hasChild(a, 'sh', (cmd) => !gitSeq(cmd))
                  : fs.existsSync(path.join(runDir, 'state.git', 'index.lock')) || hasChild(a, 'git') || hasChild(a, 'sh', gitSeq);
              if (hit) {
                where = kind === 'kill-agent-mid-step' ? 'while a step ran' : 'while git worked on its checkpoint';
                break;
              }
              if (monoMs() > deadline) {
                where = 'at a random instant (no step or checkpoint seen in 20 s)';
                break;
              }
              await sleep(2);
            }
          }
          const pid = await killAgent();
          rec.detail = `SIGKILL of the agent (pid ${pid}) ${where}`;
          rec.ready_ms = await waitReady(r, at, pid);
          await seen(/recover(ed|ing)[^\n]*|did not stop cleanly[^\n]*/, 10_000);
          break;
        }
        case 'stop-agent': {
          const pid = agentPid(r);
          signal(pid, 'SIGSTOP');
          r.unclean++;
          rec.detail = `SIGSTOP of the agent (pid ${pid}): a hang`;
          await seen(/Watchdog timeout[^\n]*/, 30_000, `-u ${UNIT}`);
          rec.ready_ms = await waitReady(r, at, pid);
          break;
        }
        case 'memory-guard': {
          // The limit is read at start: lowered, the agent restarted (a clean stop), the guard trips at once,
          // checkpoints and exits 3; systemd starts it again, with the limit back.
          writeConfig(r, '20MiB');
          await sh(`systemctl restart ${UNIT}`, { allowFail: true, timeoutMs: 120_000 });
          const tripped = agentPid(r);
          await seen(/the agent's own memory [^\n]* is above the limit[^\n]*/, 30_000);
          writeConfig(r);
          rec.detail = 'rss_limit lowered to 20MiB and the agent restarted: the guard trips, checkpoints, exits 3';
          await waitJournal(at, /Main process exited, code=exited, status=3/, 20_000, `-u ${UNIT}`);
          rec.ready_ms = await waitReady(r, at, tripped);
          break;
        }
        case 'kill-checkpoint-timer': {
          await sh(`systemctl start --no-block selfware-checkpoint@${RUN}.service`);
          const deadline = monoMs() + 15_000;
          let pid: number | null = null;
          while (!pid && monoMs() < deadline) {
            pid = findProc(c.initPid, ['sw-checkpoint.cjs', 'create', RUN]);
            if (!pid) await sleep(5);
          }
          signal(pid, 'SIGKILL');
          rec.detail = pid ? `SIGKILL of the timer's sw-checkpoint (pid ${pid})` : 'the timer\'s sw-checkpoint was not seen (it ended first)';
          await seen(/selfware-checkpoint@[^\n]*(Main process exited, code=killed|Failed with result)[^\n]*/, 15_000, `-u selfware-checkpoint@${RUN}.service`);
          if (!pid) rec.detected = 'nothing to detect: it finished before it could be killed';
          break;
        }
        case 'kill-recover': {
          const pid = await killAgent();
          const deadline = monoMs() + 20_000;
          let rp: number | null = null;
          while (!rp && monoMs() < deadline) {
            rp = findProc(c.initPid, ['sw-recover.cjs', RUN], ['--record-exit']);
            if (!rp) await sleep(3);
          }
          signal(rp, 'SIGKILL');
          rec.detail = `SIGKILL of the agent (pid ${pid}), then of sw-recover (pid ${rp ?? 'not seen'}) as systemd ran it`;
          rec.ready_ms = await waitReady(r, at, pid);
          await seen(/recover(ed|ing)[^\n]*|did not stop cleanly[^\n]*/, 10_000);
          break;
        }
        case 'disk-full': {
          const before = runs.map((x) => agentPid(x));
          const filler = path.join(stateHost, '.soak-filler');
          // What is free when asked may be less a moment later (a recovery writing, after a fault just
          // before; a full run of the soak died on fallocate's ENOSPC): asked again, leaving more.
          let free = 0;
          for (let k = 0; ; k++) {
            const st = fs.statfsSync(stateHost);
            free = st.bavail * st.bsize;
            try {
              execFileSync('fallocate', ['-l', String(Math.max(0, free - 64 * 1024 * 4 ** k)), filler], { stdio: ['ignore', 'ignore', 'pipe'] });
              break;
            } catch (e) {
              fs.rmSync(filler, { force: true });
              if (k >= 5) throw e;
            }
          }
          // The last pages too: 64 KiB left free would hold a dozen tasks' small appends, and on a busy
          // machine that outlasts the wait below (a CI run saw nothing fail to write in 30 s).
          const fd = fs.openSync(filler, 'a');
          try {
            const page = Buffer.alloc(4096);
            for (let i = 0; i < 1024; i++) fs.writeSync(fd, page);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          } finally {
            fs.closeSync(fd);
          }
          // Full for 2-6 s, and until something has had to write (on a busy machine the agent may spend
          // a short spell waiting on the model, writing nothing): at most 30 s. The governor's critical
          // disk tier (it pauses the runs) counts too: two loaded runs of make test saw an agent write
          // nothing for the whole 30 s.
          const hold = 2000 + rand() * 4000;
          await seen(/disk (is )?full[^\n]*|no space left[^\n]*|% disk free \(critical\)[^\n]*/i, 30_000, `-u ${UNIT} -u ${GOV}`);
          await sleep(Math.max(0, hold - (monoMs() - at)));
          fs.rmSync(filler, { force: true });
          const freed = monoMs();
          rec.detail = `the state's filesystem filled (${Math.round(free / 1048576)} MiB) for ${monoMs() - at} ms`;
          // The governor back from its critical tier before the next fault: it says a tier only when it
          // changes, so a disk filled again before it saw the space come back is not said again (a full
          // run's disk-full fault straight after another went unseen for 30 s: the agents paused, the
          // governor still critical).
          if (await waitJournal(at, /tier \w+ -> critical[^\n]*disk/, 0, `-u ${GOV}`)) {
            if (!(await waitJournal(freed, /tier critical -> \w+/, 60_000, `-u ${GOV}`))) rec.problem = 'the governor did not leave its critical tier within 60 s of the space coming back';
          }
          // Still the same agents: a full disk is a pause, not a crash. An agent that ended meanwhile
          // is a problem (its restart is waited for all the same).
          const ended = runs.filter((x) => before[x.k] !== null && agentPid(x) !== before[x.k]);
          if (ended.length > 0) rec.problem = `the agent of ${ended.map((x) => x.name).join(', ')} ended while the disk was full (a pause, not a crash)`;
          const gone = runs.filter((x) => agentPid(x) === null);
          if (gone.length > 0) {
            const t = await Promise.all(gone.map((x) => waitReady(x, at, null)));
            rec.ready_ms = t.some((x) => x === null) ? null : Math.max(...(t as number[]));
          }
          break;
        }
        case 'reboot-clean':
        case 'reboot-abrupt': {
          const olds = runs.map((x) => agentPid(x));
          if (kind === 'reboot-clean') await c.shutdown();
          else {
            await c.powerLoss();
            for (const x of runs) if (olds[x.k] !== null) x.unclean++;
          }
          await c.boot();
          rec.detail = kind === 'reboot-clean' ? 'a clean reboot of the container' : 'power loss: the container killed, its files kept';
          rec.ready_ms = await waitAllReady(at, olds);
          await seen(kind === 'reboot-clean' ? /agent ready[^\n]*/ : /did not stop cleanly[^\n]*|recover(ed|ing)[^\n]*/, 10_000);
          break;
        }
        case 'flip-checkpoint-store': {
          // A byte of an object of the newest checkpoint whose content is a live file's (so it can be, and must be, repaired).
          const git = (a: string[]): string => execFileSync('git', ['-c', 'safe.directory=*', '--git-dir', path.join(runDir, 'state.git'), ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
          // A fault drawn before the run's first checkpoint waits for one (a CI run's seed drew this
          // fault 30 s in, on a loaded machine, and the harness died on `rev-parse HEAD`).
          const headDeadline = Date.now() + 120_000;
          let head = '';
          for (;;) {
            try {
              head = git(['rev-parse', '--verify', '-q', 'refs/heads/main']).trim();
              break;
            } catch {
              if (Date.now() > headDeadline) throw new Error('flip-checkpoint-store: no checkpoint in state.git after 120 s');
              await sleep(500);
            }
          }
          at = monoMs();
          rec.at_ms = at - t0;
          // The agent stopped first: a file it rewrote between the choice and its death (agent.json is
          // rewritten at every task) would leave the damaged object only in an older checkpoint, which
          // the recovery checkpoint never reads (a loaded CI run's fault 12 went so, not detected).
          const frozen = agentPid(r);
          signal(frozen, 'SIGSTOP');
          const entries = git(['ls-tree', '-r', head]).trim().split('\n').map((l) => /^\d+ blob ([0-9a-f]+)\t(.*)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null);
          const live = entries.filter((m) => {
            try {
              // (A queue file may be gone meanwhile: adopted, or a task ended.)
              return execFileSync('git', ['hash-object', path.join(runDir, 'state', (m[2] as string).replace(/^state\//, ''))], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() === m[1];
            } catch {
              return false;
            }
          });
          // Not an object other objects are stored as deltas on: those would be lost with it (older
          // versions of the file, whose checkpoints then fail verify; the issue's note says so).
          const bases = new Set<string>();
          const packDirAll = path.join(runDir, 'state.git', 'objects', 'pack');
          for (const idx of fs.existsSync(packDirAll) ? fs.readdirSync(packDirAll).filter((f) => f.endsWith('.idx')) : []) {
            const v = execFileSync('git', ['verify-pack', '-v', path.join(packDirAll, idx)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
            for (const l of v.split('\n')) {
              const f = l.trim().split(/\s+/);
              if (f.length >= 7 && /^[0-9a-f]{40}$/.test(f[6] as string)) bases.add(f[6] as string);
            }
          }
          const candidates = live.filter((m) => !bases.has(m[1] as string));
          const pick = candidates[Math.floor(rand() * candidates.length)];
          if (!pick) {
            signal(frozen, 'SIGCONT');
            rec.detail = 'no object of the newest checkpoint matched a live file';
            break;
          }
          const sha = pick[1] as string;
          const loose = path.join(runDir, 'state.git', 'objects', sha.slice(0, 2), sha.slice(2));
          if (fs.existsSync(loose)) {
            const size = fs.statSync(loose).size;
            flipByte(loose, Math.min(size - 1, 2 + Math.floor(rand() * Math.max(1, size - 4))));
            rec.detail = `a byte flipped in the loose object ${sha.slice(0, 12)} (${pick[2]})`;
          } else {
            const packDir = path.join(runDir, 'state.git', 'objects', 'pack');
            let done = false;
            for (const idx of fs.readdirSync(packDir).filter((f) => f.endsWith('.idx'))) {
              const out = execFileSync('git', ['show-index'], { input: fs.readFileSync(path.join(packDir, idx)), encoding: 'utf8' });
              const row = out.split('\n').find((l) => l.split(' ')[1] === sha);
              if (!row) continue;
              const off = Number(row.split(' ')[0]);
              flipByte(path.join(packDir, idx.replace(/\.idx$/, '.pack')), off + 3);
              rec.detail = `a byte flipped in the packed object ${sha.slice(0, 12)} (${pick[2]}) of ${idx.replace(/\.idx$/, '.pack')}`;
              done = true;
              break;
            }
            if (!done) rec.detail = `object ${sha.slice(0, 12)} not found`;
          }
          const pid = await killAgent();
          rec.ready_ms = await waitReady(r, at, pid);
          await seen(/damaged[^\n]*|set aside[^\n]*|corrupt[^\n]*/, 10_000);
          break;
        }
        case 'flip-tasklog': {
          // The agent stopped first, so no rewrite of the database undoes the flip before its death.
          signal(agentPid(r), 'SIGSTOP');
          const journal = path.join(runDir, 'tasklog.journal');
          const db = path.join(runDir, 'tasklog.db');
          const where = rand();
          if (where < 0.34 && fs.existsSync(db) && fs.statSync(db).size > 8192) {
            const size = fs.statSync(db).size;
            const off = 4096 + Math.floor(rand() * (size - 4096));
            flipByte(db, off);
            rec.detail = `a byte flipped in tasklog.db at ${off}`;
          } else {
            const size = fs.statSync(journal).size;
            const off = where < 0.67 ? 10 + Math.floor(rand() * 40) : Math.floor(size / 2);
            flipByte(journal, off);
            rec.detail = `a byte flipped in tasklog.journal at ${off} (${where < 0.67 ? 'its header' : 'a middle record'})`;
          }
          const pid = await killAgent();
          rec.ready_ms = await waitReady(r, at, pid);
          await seen(/damaged[^\n]*|corrupt[^\n]*|CRC[^\n]*|checksum[^\n]*|does not match[^\n]*/, 10_000);
          break;
        }
        case 'llm-down': {
          // Down 3-10 s, and until an agent has asked it something (one busy elsewhere, in a checkpoint
          // or a retention pass, may ask nothing for a while): at most 30 s more. The endpoint is every
          // run's, so any agent's failed request detects it.
          const ms = 3000 + rand() * 7000;
          const llmDown = /model request failed[^\n]*|unavailable[^\n]*|ECONNREFUSED[^\n]*|circuit[^\n]*/;
          const agents = runs.map((x) => `-u ${x.unit}`).join(' ');
          await model.stop();
          await seen(llmDown, ms, agents);
          await sleep(Math.max(0, ms - (monoMs() - at)));
          if (!rec.detected) await seen(llmDown, 30_000, agents);
          rec.detail = `the LLM endpoint down for ${monoMs() - at} ms`;
          await model.start();
          // Past its patience the agent exits 69 and systemd starts it again.
          const down: Run[] = [];
          for (const x of runs) if ((await show(x.unit, ['ActiveState'])).ActiveState !== 'active') down.push(x);
          if (down.length > 0) {
            const t = await Promise.all(down.map((x) => waitReady(x, at, null)));
            rec.ready_ms = t.some((x) => x === null) ? null : Math.max(...(t as number[]));
          }
          break;
        }
        case 'vram-pressure': {
          gpu?.set(vramSeries([40, 78, 80, 90, 92, 80, 60, 40], 1500));
          rec.detail = 'VRAM 40% -> 78% -> 92% -> 40% over 12 s (fake nvidia-smi)';
          await seen(/tier (warning|critical)[^\n]*/, 25_000, `-u ${GOV}`);
          await sleep(Math.max(0, 12_000 - (monoMs() - at)));
          break;
        }
        case 'restart-storm': {
          r.storms++;
          const before = escalationMails(r);
          let kills = 0;
          const deadline = monoMs() + 120_000;
          while (monoMs() < deadline) {
            const p = await show(UNIT, ['ActiveState', 'Result']);
            if (p.ActiveState === 'failed' || (p.ActiveState === 'inactive' && p.Result !== 'success')) break;
            const pid = agentPid(r);
            if (pid && p.ActiveState === 'active') {
              if (signal(pid, 'SIGKILL')) {
                kills++;
                r.unclean++;
              }
              await sleep(300);
            } else await sleep(100);
          }
          rec.detail = `${kills} SIGKILLs of the agent in a row, each as soon as it was READY`;
          await seen(/escalat[^\n]*/, 20_000);
          const mailDeadline = monoMs() + 30_000;
          while (escalationMails(r) <= before && monoMs() < mailDeadline) await sleep(300);
          if (escalationMails(r) <= before) rec.problem = 'no escalation mail arrived';
          // A human reads the mail and starts it again.
          await sh(`systemctl reset-failed ${UNIT}; systemctl start ${UNIT}`, { allowFail: true, timeoutMs: 180_000 });
          rec.ready_ms = await waitReady(r, at, null);
          break;
        }
      }
      rec.ok = rec.detected !== null && rec.problem === null && (rec.ready_ms !== null || !['kill-agent', 'kill-agent-mid-step', 'kill-agent-mid-checkpoint', 'stop-agent', 'kill-recover', 'reboot-clean', 'reboot-abrupt', 'restart-storm'].includes(kind));
      if (!rec.detected && !rec.problem) rec.problem = 'not detected';
      return rec;
    };

    // --- the run: feed tasks, sample growth, inject faults on schedule.
    let nextFault = 0;
    let lastSample = -Infinity;
    const sampleEvery = Math.max(2000, (day * 1000) / 48);
    // Where the disk goes: each run's directory in parts (each counted once), their sum its size; the
    // parts of all runs summed by name.
    const diskParts = (): Record<string, number> => {
      const sum: Record<string, number> = {};
      for (const { runDir, wsDir } of runs) {
        const st = path.join(runDir, 'state');
        const parts: Record<string, number> = {
          archive: duBytes(path.join(st, 'archive')),
          state_git: duBytes(path.join(runDir, 'state.git')),
          workspace_git: duBytes(path.join(wsDir, '.git')),
          tasklog_db: duBytes(path.join(runDir, 'tasklog.db')),
          tasklog_journal: duBytes(path.join(runDir, 'tasklog.journal')),
        };
        parts.state = duBytes(st) - (parts.archive as number);
        parts.workspace = duBytes(wsDir) - (parts.workspace_git as number);
        parts.other = duBytes(runDir) - Object.values(parts).reduce((a, b) => a + b, 0);
        for (const [k, v] of Object.entries(parts)) sum[k] = (sum[k] ?? 0) + v;
      }
      return sum;
    };
    const sample = (): void => {
      const t = since();
      const aps = runs.map((r) => agentPid(r));
      const parts = diskParts();
      samples.push({
        t_ms: t,
        day: t / (day * 1000),
        disk: Object.values(parts).reduce((a, b) => a + b, 0),
        parts,
        agent_rss: aps.map((p) => rssOf(p)),
        agent_age_ms: aps.map((p) => procAgeMs(p) ?? 0),
        governor_rss: rssOf(findProc(c.initPid, ['sw-gpu-governor.cjs', 'run'])),
      });
      lastSample = t;
    };
    let lastInterrupt = -Infinity;
    // The simulated days, and past them until every fault is in (a slow fault puts the rest back).
    while (since() < runMs || nextFault < kinds.length) {
      feed();
      if (since() - lastSample >= sampleEvery) sample();
      if (nextFault < kinds.length && since() >= (instants[nextFault] as number)) {
        const kind = kinds[nextFault] as FaultKind;
        const target = targets[nextFault] as Run;
        if (INTERRUPTING.has(kind) && (since() - lastInterrupt < SPACING_MS || (procAgeMs(agentPid(target)) ?? 0) < 3000)) {
          await sleep(250);
          continue;
        }
        log(`fault ${nextFault + 1}/${kinds.length}: ${kind}${runs.length > 1 ? ` (${target.name})` : ''}`);
        // A fault the harness itself failed to make is one not ok, said, and the run goes on (a full
        // run died at 22 min on one fallocate, and its hour and a half of work said nothing).
        const r = await inject(nextFault + 1, kind, target).catch((e: unknown): FaultRecord => {
          fs.rmSync(path.join(stateHost, '.soak-filler'), { force: true });
          return { n: nextFault + 1, kind, at_ms: monoMs() - t0, detail: 'the harness failed to make the fault', detected: null, detect_ms: null, ready_ms: null, steps_redone: 0, ok: false, problem: `harness: ${(e as Error).message.split('\n')[0]}` };
        });
        faults.push(r);
        if (INTERRUPTING.has(kind)) lastInterrupt = since();
        log(`  ${r.detail}; ${r.detected ? `seen after ${r.detect_ms} ms` : 'NOT SEEN'}${r.ready_ms !== null ? `; READY after ${Math.round(r.ready_ms)} ms` : ''}${r.problem ? `; PROBLEM: ${r.problem}` : ''}`);
        nextFault++;
        continue;
      }
      await sleep(500);
    }
    /** The ids and final statuses of state/archive/dropped.ids (tasks whose archives left state/). */
    const droppedIds = (r: Run): Array<[string, string]> => {
      let text = '';
      try {
        text = fs.readFileSync(path.join(r.runDir, 'state', 'archive', 'dropped.ids'), 'utf8');
      } catch {
        /* none left */
      }
      return text
        .split('\n')
        .map((l) => l.split(' '))
        .filter((f): f is [string, string] => !!f[0] && !!f[1])
        .map((f) => [f[0], f[1]]);
    };
    // --- drain: every task queued and finished (or the deadline).
    log(`run phase over: ${queued} of ${args.tasks} tasks queued; draining`);
    gpu.set(vramSeries([40], 1000));
    await model.start();
    const drainDeadline = monoMs() + args.drainSeconds * 1000;
    let finished = 0;
    while (monoMs() < drainDeadline) {
      feed();
      if (since() - lastSample >= sampleEvery) sample();
      if (queued >= args.tasks) {
        // Finished: listed (the queue and the archives in state/), or in dropped.ids (archives past
        // agent.archive_keep, no longer listed), each id once.
        finished = 0;
        for (const r of runs) {
          const l = JSON.parse(await asUser(`/usr/local/bin/sw-agent list ${r.name} --json`)) as { tasks: Array<{ id: string; status: string }> };
          const done = new Set(l.tasks.filter((x) => x.status === 'completed' || x.status === 'failed').map((x) => x.id));
          for (const [id, status] of droppedIds(r)) if (status === 'completed' || status === 'failed') done.add(id);
          finished += done.size;
        }
        if (finished >= args.tasks) break;
      }
      await sleep(2000);
    }
    sample();
    await sh(`systemctl stop ${runs.map((r) => r.unit).join(' ')}`, { allowFail: true, timeoutMs: 180_000 });
    log('stopped; checking against the ground truth');

    // --- ground truth.
    // Executions, from the one ledger: a step run again must be a checked retry after a fault.
    const firsts = new Map<string, number>();
    let retries = 0;
    for (const l of fs.readFileSync(ledger, 'utf8').split('\n')) {
      const m = /^(\S+) s(\d+) a(\d+) (first|retry)/.exec(l);
      if (!m) continue;
      if (m[4] === 'retry') retries++;
      else {
        const k = `${m[1]} s${m[2]} a${m[3]}`;
        firsts.set(k, (firsts.get(k) ?? 0) + 1);
      }
    }
    const unreported = [...firsts].filter(([, n]) => n > 1).map(([k, n]) => `${k}: run ${n} times as a first execution (not as a checked retry)`);
    const interrupting = faults.filter((f) => f.ready_ms !== null).length;
    const hangsOf = (r: Run): number => faults.filter((f) => f.kind === 'stop-agent' && targets[f.n - 1] === r).length;
    const powerLosses = faults.filter((f) => f.kind === 'reboot-abrupt').length;
    interface ReportJson {
      tasks: { completed: number; failed: number };
      escalations: unknown[];
      sessions: { started: number; clean_ends: number; unclean_ends: number };
      recoveries: { count: number; by_reason: Record<string, number> };
      attempts: { started: number; completed: number; failed: number };
      llm: { calls: number; errors: number };
    }
    const fsck = (gitDir: string): string => {
      try {
        execFileSync('git', ['-c', 'safe.directory=*', '--git-dir', gitDir, 'fsck', '--no-dangling'], { stdio: 'pipe' });
        return 'clean';
      } catch (e) {
        // (git fsck says what is missing on standard output.)
        const x = e as { stdout?: Buffer; stderr?: Buffer };
        return `${String(x.stdout ?? '')}\n${String(x.stderr ?? '')}`.trim().split('\n').filter((l) => l.trim()).slice(0, 3).join('; ') || String(e);
      }
    };
    /** One run against the truth: its tasks, its report, its mails, its stores. */
    const truthOf = async (r: Run) => {
      const { name: RUN, unit: UNIT, runDir, wsDir } = r;
      const mine = (id: string): boolean => runOfId(id) === r;
      const list = JSON.parse(await asUser(`/usr/local/bin/sw-agent list ${RUN} --json`)) as { tasks: Array<{ id: string; status: string; reason?: string | null; attempts?: number }> };
      const byId = new Map(list.tasks.map((x) => [x.id, x]));
      // Tasks whose archives left state/ (agent.archive_keep, 2 simulated days here) are not listed; their
      // status is in state/archive/dropped.ids (their lines in the workspace are still checked; a failed
      // one's reason went with its archive and is not checked).
      let droppedCount = 0;
      for (const [id, status] of droppedIds(r)) {
        if (byId.has(id)) continue;
        byId.set(id, { id, status, reason: status === 'failed' ? '(its archive left state/)' : null });
        droppedCount++;
      }
      const lines = new Map<string, number>();
      for (const f of fs.existsSync(path.join(wsDir, 'effects')) ? fs.readdirSync(path.join(wsDir, 'effects')) : []) {
        for (const l of fs.readFileSync(path.join(wsDir, 'effects', f), 'utf8').split('\n')) if (l) lines.set(l, (lines.get(l) ?? 0) + 1);
      }
      const lost: string[] = [];
      const doubled: string[] = [];
      let completed = 0;
      let failed = 0;
      for (let i = r.k; i < queued; i += runs.length) {
        const id = taskId(i);
        const t = byId.get(id);
        if (t?.status === 'completed') {
          completed++;
          for (let s = 1; s <= STEPS; s++) {
            const k = lines.get(`${id} s${s}`) ?? 0;
            if (k === 0) lost.push(`${RUN}: ${id}: completed but its step ${s} left no line`);
            if (k > 1) doubled.push(`${RUN}: ${id}: step ${s}'s line is there ${k} times`);
          }
        } else if (t?.status === 'failed') {
          failed++;
          if (!t.reason) lost.push(`${RUN}: ${id}: failed with no reason`);
        } else lost.push(`${RUN}: ${id}: ${t ? t.status : 'missing from the queue'} at the end`);
      }
      // The report over the whole soak, against the truth.
      const report = JSON.parse(await asUser(`/usr/local/bin/sw-report ${RUN} --json --since ${Math.ceil(since() / 1000) + 120}s`)) as ReportJson;
      const mismatches: string[] = [];
      const cmp = (what: string, got: number, want: number): void => {
        if (got !== want) mismatches.push(`${RUN}: ${what}: the report says ${got}, the truth is ${want}`);
      };
      cmp('tasks completed', report.tasks.completed, completed);
      cmp('tasks failed for good', report.tasks.failed, failed);
      cmp('escalations', report.escalations.length, r.storms);
      // systemd's own word on how each agent ended, and the harness's power losses.
      // An agent that ended before it was READY (in its own recovery, before its session started: a
      // full disk, a kill) ended no session, so only the ends after systemd's "Started" count.
      const sysJournal = await sh(`journalctl --no-pager -o cat -u ${UNIT}`, { allowFail: true });
      let sysUnclean = 0;
      let readySeen = false;
      for (const l of sysJournal.split('\n')) {
        if (l.startsWith('Starting ')) readySeen = false;
        else if (l.startsWith('Started ')) readySeen = true;
        else if (/Main process exited, code=(killed|dumped)|Main process exited, code=exited, status=(?!0\/|3\/|79\/|78\/|64\/)\d+/.test(l)) {
          if (readySeen) sysUnclean++;
          readySeen = false;
        }
      }
      // Every agent that ended without a clean stop, as systemd saw it (and the power losses, which it
      // cannot see), is a session the report calls unclean, and each was recovered.
      cmp('sessions ended uncleanly', report.sessions.unclean_ends, sysUnclean + powerLosses);
      if (report.sessions.unclean_ends < r.unclean) mismatches.push(`${RUN}: sessions ended uncleanly: the report says ${report.sessions.unclean_ends}, the harness ended ${r.unclean} itself`);
      if (report.recoveries.count < report.sessions.unclean_ends) mismatches.push(`${RUN}: recoveries: the report says ${report.recoveries.count} for ${report.sessions.unclean_ends} unclean ends`);
      const hangs = hangsOf(r);
      if ((report.recoveries.by_reason.hang ?? 0) < hangs) mismatches.push(`${RUN}: recoveries after a hang: the report says ${report.recoveries.by_reason.hang ?? 0}, the harness stopped the agent ${hangs} times`);
      // Attempts: one completed per completed task; started at least as many as the ledger saw run a step,
      // and at most one more for each agent ended (an attempt started, killed before its first step).
      cmp('attempts completed', report.attempts.completed, completed);
      const ledgerAttempts = new Set([...firsts.keys()].filter((k) => mine(k.split(' ')[0] as string)).map((k) => k.replace(/ s\d+ /, ' '))).size;
      if (report.attempts.started < ledgerAttempts || report.attempts.started > ledgerAttempts + report.sessions.unclean_ends + faults.length)
        mismatches.push(`${RUN}: attempts started: the report says ${report.attempts.started}, the ledger saw ${ledgerAttempts} run a step`);
      // Each run of the report's service that succeeded mailed one report, and there was one a simulated day.
      const reportRuns = (await sh(`journalctl --no-pager -o cat -u selfware-report@${RUN}.service`, { allowFail: true })).match(/^Finished selfware-report@/gm)?.length ?? 0;
      const dailyMails = reportMails(r);
      if (dailyMails !== reportRuns) mismatches.push(`${RUN}: report mails: ${dailyMails} arrived, the report's service finished ${reportRuns} times`);
      if (dailyMails < Math.floor(args.days)) mismatches.push(`${RUN}: report mails: ${dailyMails} for ${args.days} simulated days`);
      if (escalationMails(r) < r.storms) mismatches.push(`${RUN}: escalation mails: ${escalationMails(r)} for ${r.storms} storms`);
      // The stores.
      const fsckState = fsck(path.join(runDir, 'state.git'));
      const fsckWs = fsck(path.join(wsDir, '.git'));
      const verify = await c.exec(['setpriv', '--reuid=selfware', '--regid=selfware', '--init-groups', '/usr/local/bin/sw-checkpoint', 'verify', RUN]);
      const verifyText = verify.exitCode === 0 ? 'clean' : (String(verify.stdout ?? '') + String(verify.stderr ?? '')).trim().split('\n').slice(-3).join('; ');
      return {
        run: RUN,
        queued: r.queued,
        completed,
        failed,
        droppedCount,
        lost,
        doubled,
        report,
        mismatches,
        truth: { unclean_by_harness: r.unclean, unclean_by_systemd: sysUnclean, power_losses: powerLosses, storms: r.storms, hangs, attempts_in_ledger: ledgerAttempts, report_mails: dailyMails, report_runs: reportRuns, escalation_mails: escalationMails(r) },
        stores: { fsck_state: fsckState, fsck_workspace: fsckWs, verify: verifyText },
      };
    };
    const truths: Array<Awaited<ReturnType<typeof truthOf>>> = [];
    for (const r of runs) truths.push(await truthOf(r));
    const completed = truths.reduce((a, t) => a + t.completed, 0);
    const failed = truths.reduce((a, t) => a + t.failed, 0);
    const droppedCount = truths.reduce((a, t) => a + t.droppedCount, 0);
    const lost = truths.flatMap((t) => t.lost);
    const doubled = truths.flatMap((t) => t.doubled);
    const mismatches = truths.flatMap((t) => t.mismatches);
    // Model calls, over the runs (one model serves them all): every answer the model finished was
    // recorded, but for those an agent died holding. (An answer cut as the server went down may have
    // been whole already: it counts either way.) (The reports' calls include the failed ones, refused
    // while the server was down.)
    const calls = truths.reduce((a, t) => a + t.report.llm.calls, 0);
    const callErrors = truths.reduce((a, t) => a + t.report.llm.errors, 0);
    const uncleanEnds = truths.reduce((a, t) => a + t.report.sessions.unclean_ends, 0);
    const answered = calls - callErrors;
    if (answered > model.stats.answers + model.stats.cut || answered < model.stats.answers - uncleanEnds - faults.length * runs.length)
      mismatches.push(`model calls answered: the reports say ${answered} (${calls} less ${callErrors} failed), the model answered ${model.stats.answers}`);
    // The stores: 'clean' when every run's are, else what each run's say.
    const storeOf = (k: 'fsck_state' | 'fsck_workspace' | 'verify'): string =>
      truths.every((t) => t.stores[k] === 'clean') ? 'clean' : truths.filter((t) => t.stores[k] !== 'clean').map((t) => (runs.length > 1 ? `${t.run}: ${t.stores[k]}` : t.stores[k])).join(' | ');
    const fsckState = storeOf('fsck_state');
    const fsckWs = storeOf('fsck_workspace');
    const verifyText = storeOf('verify');
    const verifyOk = verifyText === 'clean';
    // --- growth.
    const dayMs = day * 1000;
    const at = (d: number): number | null => {
      const s = samples.filter((x) => x.t_ms <= d * dayMs).pop();
      return s ? s.disk : null;
    };
    const end = samples[samples.length - 1];
    // Growth after day 2: the least-squares slope of the samples since (a size taken at one instant
    // swings with the journal's folds and git's packing; the slope is the trend), per day, of the
    // size at day 1. The two ends' difference is kept beside it.
    const slope = (pts: Array<[number, number]>): number | null => {
      if (pts.length < 3) return null;
      const mx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
      const my = pts.reduce((a, p) => a + p[1], 0) / pts.length;
      const sxx = pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
      return sxx === 0 ? null : pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0) / sxx;
    };
    const after2 = samples.filter((x) => x.day >= 2);
    let growth: number | null = null;
    let growthEnds: number | null = null;
    let growthBasis = '';
    const partGrowth: Record<string, { day1: number | null; day2: number | null; end: number | null; per_day: number | null }> = {};
    if (args.days >= 3) {
      const d1 = at(1);
      const d2 = at(2);
      const k = slope(after2.map((x) => [x.day, x.disk]));
      if (d1 && d2 && end && k !== null) {
        growth = (k / d1) * 100;
        growthEnds = ((end.disk - d2) / d1 / (end.t_ms / dayMs - 2)) * 100;
        growthBasis = `after day 2, per day, of the size at day 1: the slope of ${after2.length} samples (the two ends' difference: ${growthEnds.toFixed(1)}%/day)`;
      }
      const partAt = (d: number, name: string): number | null => samples.filter((x) => x.t_ms <= d * dayMs).pop()?.parts[name] ?? null;
      for (const name of Object.keys(end?.parts ?? {})) {
        partGrowth[name] = { day1: partAt(1, name), day2: partAt(2, name), end: end?.parts[name] ?? null, per_day: slope(after2.map((x) => [x.day, x.parts[name] ?? 0])) };
      }
    } else growthBasis = `not measured: a run of ${args.days} simulated day(s) has no days after day 2`;
    // The agent's size once warm (V8's heap grows to its working size with the work done, not with the
    // clock, and the faults restart the agent often): samples of an agent up at least 20 s; the
    // first three after the first simulated hour, against the last five. None: not measured (n/a).
    // With several runs, each agent is measured so, and the one that grew most is the figure.
    const rssOfRun = (k: number): { first: number | null; end: number | null; growth: number | null } => {
      const warm = samples.filter((x) => (x.agent_rss[k] ?? 0) > 0 && (x.agent_age_ms[k] ?? 0) >= 20_000).map((x) => ({ t_ms: x.t_ms, rss: x.agent_rss[k] as number }));
      const first = pctl(warm.filter((x) => x.t_ms >= dayMs / 24).slice(0, 3).map((x) => x.rss), 50);
      const last = pctl(warm.slice(-5).map((x) => x.rss), 50);
      return { first, end: last, growth: first && last ? (last / first - 1) * 100 : null };
    };
    const rssRuns = runs.map((r) => rssOfRun(r.k));
    const worstRss = rssRuns.filter((x) => x.growth !== null).sort((x, y) => (y.growth as number) - (x.growth as number))[0] ?? rssRuns[0] ?? { first: null, end: null, growth: null };
    const rssFirstHour = worstRss.first;
    const rssEnd = worstRss.end;
    const rssGrowth = worstRss.growth;
    const readyTimes = faults.map((f) => f.ready_ms).filter((x): x is number => x !== null);
    const byKind: Record<string, { n: number; detected: number; ok: number; detect_ms_p50: number | null; ready_ms_p50: number | null; ready_ms_max: number | null }> = {};
    for (const k of FAULT_KINDS) {
      const fs2 = faults.filter((f) => f.kind === k);
      if (fs2.length === 0) continue;
      const r = fs2.map((f) => f.ready_ms).filter((x): x is number => x !== null);
      byKind[k] = {
        n: fs2.length,
        detected: fs2.filter((f) => f.detected).length,
        ok: fs2.filter((f) => f.ok).length,
        detect_ms_p50: pctl(fs2.map((f) => f.detect_ms).filter((x): x is number => x !== null), 50),
        ready_ms_p50: pctl(r, 50),
        ready_ms_max: r.length ? Math.max(...r) : null,
      };
    }
    const out = {
      args,
      elapsed_s: Math.round(since() / 1000),
      tasks: { queued, completed, failed, from_dropped_ids: droppedCount, lost: lost.length, doubled: doubled.length, examples: [...lost, ...doubled].slice(0, 20) },
      runs: truths.map((t) => ({ run: t.run, queued: t.queued, completed: t.completed, failed: t.failed, lost: t.lost.length, doubled: t.doubled.length, mismatches: t.mismatches, stores: t.stores, rss: rssRuns[runs.findIndex((r) => r.name === t.run)] })),
      executions: { retries_reported: retries, unreported_reexecutions: unreported.length, examples: unreported.slice(0, 10), redone_per_interrupting_fault: interrupting ? retries / interrupting : null },
      report: {
        mismatches,
        // One a run.
        figures: truths.map((t) => ({ run: t.run, completed: t.report.tasks.completed, failed: t.report.tasks.failed, escalations: t.report.escalations.length, sessions: t.report.sessions, recoveries: t.report.recoveries.count, recoveries_by_reason: t.report.recoveries.by_reason, attempts: t.report.attempts, llm_calls: t.report.llm.calls, llm_errors: t.report.llm.errors })),
        truth: truths.map((t) => ({ run: t.run, ...t.truth })),
        model_answers: model.stats.answers,
      },
      stores: { fsck_state: fsckState, fsck_workspace: fsckWs, verify: verifyText },
      faults: { count: faults.length, not_ok: faults.filter((f) => !f.ok).length, by_kind: byKind, ready_ms_p50: pctl(readyTimes, 50), ready_ms_p99: pctl(readyTimes, 99), list: faults },
      model: model.stats,
      growth: { disk_pct_per_day: growth, disk_pct_per_day_ends: growthEnds, basis: growthBasis, parts: partGrowth, rss_growth_pct: rssGrowth, rss_first_hour: rssFirstHour, rss_end: rssEnd, samples },
    };
    fs.writeFileSync(args.out, JSON.stringify(out, null, 1) + '\n');
    // --- the table.
    console.log('');
    console.log('fault kind                  n  seen  ok  seen p50 ms  READY p50 ms  READY max ms');
    for (const [k, v] of Object.entries(byKind)) {
      console.log(`${k.padEnd(26)} ${String(v.n).padStart(2)}  ${String(v.detected).padStart(4)}  ${String(v.ok).padStart(2)}  ${String(v.detect_ms_p50 ?? '-').padStart(11)}  ${String(v.ready_ms_p50 === null ? '-' : Math.round(v.ready_ms_p50)).padStart(12)}  ${String(v.ready_ms_max === null ? '-' : Math.round(v.ready_ms_max)).padStart(12)}`);
    }
    console.log(`tasks: ${queued} queued, ${completed} completed, ${failed} failed for good (${droppedCount} of them read from dropped.ids, their archives past agent.archive_keep); ${retries} steps re-run as checked retries after faults, ${unreported.length} re-run unreported`);
    if (runs.length > 1) for (const t of truths) console.log(`  ${t.run}: ${t.queued} queued, ${t.completed} completed, ${t.failed} failed for good`);
    console.log(`stores: fsck state.git ${fsckState}, workspace ${fsckWs}; verify ${out.stores.verify}`);
    console.log(`disk: ${samples.length ? Math.round((samples[0]?.disk ?? 0) / 1024) : 0} KiB at start, ${Math.round((end?.disk ?? 0) / 1024)} KiB at the end; agent RSS ${Math.round((rssFirstHour ?? 0) / 1048576)} MiB after the first simulated hour, ${Math.round((rssEnd ?? 0) / 1048576)} MiB at the end`);
    if (Object.keys(partGrowth).length > 0) {
      const kib = (b: number | null): string => (b === null ? '-' : String(Math.round(b / 1024)));
      console.log('disk by part (KiB)      day 1     day 2       end  KiB/day after day 2');
      for (const [name, g] of Object.entries(partGrowth)) console.log(`  ${name.padEnd(18)} ${kib(g.day1).padStart(8)}  ${kib(g.day2).padStart(8)}  ${kib(g.end).padStart(8)}  ${kib(g.per_day).padStart(8)}`);
      console.log(`  growth: ${growthBasis}`);
    }
    for (const m of [...mismatches, ...lost.slice(0, 5), ...doubled.slice(0, 5), ...unreported.slice(0, 5)]) console.log(`  ${m}`);
    for (const f of faults.filter((x) => !x.ok)) console.log(`  fault ${f.n} ${f.kind}: ${f.problem ?? 'not READY again'} (${f.detail})`);
    console.log(`results: ${args.out}`);
    const fmt = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(1));
    console.log(`soak: ${completed + failed} tasks, ${faults.length} faults, ${lost.length} lost, ${doubled.length + unreported.length} doubled, ${mismatches.length} report mismatches, disk growth after day 2 ${fmt(growth)}%/day, RSS growth ${fmt(rssGrowth)}%`);
    const bad = lost.length + doubled.length + unreported.length + mismatches.length + faults.filter((f) => !f.ok).length + (verifyOk ? 0 : 1) + (fsckState === 'clean' ? 0 : 1) + (fsckWs === 'clean' ? 0 : 1);
    result = bad === 0 ? 0 : 1;
  } catch (e) {
    console.error(`soak: ${(e as Error).stack ?? String(e)}`);
    const j = await c.sh(`journalctl --no-pager -o short-monotonic -n 40 ${runs.map((r) => `-u ${r.unit}`).join(' ')} -u ${GOV}`, { allowFail: true, timeoutMs: 20_000 }).catch(() => '');
    console.error(`the last of the journal:\n${j}`);
    result = 2;
  } finally {
    await c.kill().catch(() => undefined);
    await model.stop();
    if (args.keep) console.log(`kept: ${dir} (the run's state on the tmpfs mounted at ${stateHost})`);
    else {
      try {
        execFileSync('umount', ['-l', stateHost]);
      } catch {
        /* not mounted */
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return result;
}

process.exitCode = await main();
