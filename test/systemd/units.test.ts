// selfware under a real systemd: a container boots, the README's `make
// install` installs into it (/usr/local is a directory of the test's own
// there), and the run is driven with
// systemctl as a user would: READY, STATUS, timers, SIGKILL and recovery,
// SIGSTOP and the watchdog, a clean stop, journal priorities, a crash loop
// stopped by StartLimitBurst with an alert mailed through a real MTA (exim,
// from Debian), an escalation, and a reboot with the run enabled.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, makeEnv } from '../helpers.js';
import { Container, cannotBoot } from './container.js';
import { fakeNvidiaSmi, vramSeries } from '../fixtures/nvidia.js';

const RUN = 'run1';
const UNIT = `selfware@${RUN}.service`;

function steps(n: number, delay: number, tag: string): Array<Record<string, unknown>> {
  return [...Array.from({ length: n }, (_, i) => ({ action: 'shell', command: `echo ${tag}-${i + 1} >> ${tag}.txt`, delay_ms: delay })), { action: 'finish', summary: `${tag} done` }];
}

const SCRIPT = {
  tasks: {
    quick: [{ action: 'write_file', path: 'quick.txt', content: 'quick\n' }, { action: 'finish', summary: 'quick' }],
    killed: steps(25, 300, 'killed'),
    stopped: steps(25, 300, 'stopped'),
    afterboot: steps(30, 300, 'afterboot'),
    // A model whose prompt evaluation hangs before the first token, for 10 minutes.
    hung: [{ action: 'shell', command: 'true', hang_ms: 600_000 }, { action: 'finish', summary: 'never' }],
  },
};

interface MimePart {
  headers: Record<string, string>;
  body: string;
  parts: MimePart[];
}

/** A MIME message parsed back: headers (lower-case names, unfolded), the decoded body, and its parts. */
function parseMime(raw: string): MimePart {
  const text = raw.replace(/\r\n/g, '\n');
  const split = text.indexOf('\n\n');
  const head = (split < 0 ? text : text.slice(0, split)).replace(/\n[ \t]+/g, ' ');
  let body = split < 0 ? '' : text.slice(split + 2);
  const headers: Record<string, string> = {};
  for (const l of head.split('\n')) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  const boundary = /boundary="?([^";]+)"?/.exec(headers['content-type'] ?? '')?.[1];
  if (boundary) {
    const chunks = body.split(`--${boundary}`).slice(1);
    const parts = chunks.filter((ch) => !ch.startsWith('--')).map((ch) => parseMime(ch.replace(/^\n/, '')));
    return { headers, body: '', parts };
  }
  const enc = (headers['content-transfer-encoding'] ?? '').toLowerCase();
  if (enc === 'base64') body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  else if (enc === 'quoted-printable') body = Buffer.from(body.replace(/=\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  return { headers, body, parts: [] };
}

function config(extra = ''): string {
  return [
    'llm:',
    '  backend: scripted',
    '  script: /etc/selfware/run1-script.yaml',
    'recovery:',
    '  backoff_base: 200ms',
    '  backoff_max: 1s',
    '  max_failures: 100',
    'report:',
    '  mail: ops@localhost',
    'checkpoint:',
    '  retention:',
    '    keep_last: 2',
    '    keep_hourly: 0',
    '    keep_daily: 0',
    '    keep_weekly: 0',
    extra,
    '',
  ].join('\n');
}

test('selfware under a real systemd', { timeout: 20 * 60_000 }, async (t) => {
  const why = await cannotBoot();
  if (why) {
    t.skip(`cannot boot a container here: ${why}`);
    return;
  }
  const env = makeEnv('systemd');
  fs.mkdirSync(path.join(env.dir, 'usr-local'));
  const times: Record<string, number> = {};
  const c = new Container({
    root: path.join(env.dir, 'root'),
    name: `sw${process.pid}`,
    log: path.join(env.dir, 'nspawn.log'),
    binds: [`--bind=${path.join(env.dir, 'usr-local')}:/usr/local`, `--bind-ro=${ROOT}`, '--bind-ro=/var/lib/dpkg', '--bind-ro=/etc/alternatives', '--bind-ro=/etc/exim4', '--bind-ro=/var/lib/exim4', `--bind=${env.dir}:${env.dir}`],
  });
  const sw = (cmd: string, args: string) => c.sh(`setpriv --reuid=selfware --regid=selfware --init-groups env HOME=/var/lib/selfware /usr/local/bin/${cmd} ${args}`);
  /** A command as root, from a root shell, the way the README shows them. */
  const asRoot = (cmd: string, args: string, opts: { allowFail?: boolean } = {}) => c.sh(`/usr/local/bin/${cmd} ${args}`, opts);
  const journal = (args: string) => c.sh(`journalctl --no-pager -o cat ${args}`, { allowFail: true });
  const taskStatus = async (id: string): Promise<string> => {
    const l = JSON.parse(await sw('sw-agent', `list ${RUN} --json`)) as { tasks: Array<{ id: string; status: string }> };
    return l.tasks.find((x) => x.id === id)?.status ?? 'missing';
  };
  const mainPid = async (): Promise<number> => {
    const pid = Number((await c.show(UNIT, ['MainPID'])).MainPID);
    // A pid of 0 would signal the caller's own process group.
    assert.ok(pid > 1, `${UNIT} has no main process`);
    return pid;
  };
  const activeAt = async (): Promise<number> => Number((await c.show(UNIT, ['ActiveEnterTimestampMonotonic'])).ActiveEnterTimestampMonotonic) / 1000;
  const monoMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);
  const dropIn = (name: string, body: string) =>
    c.sh(`mkdir -p /etc/systemd/system/${UNIT}.d && cat > /etc/systemd/system/${UNIT}.d/${name}.conf <<'EOF'\n${body}\nEOF\nsystemctl daemon-reload`);
  const mails = () => c.sh('cat /var/mail/ops 2>/dev/null', { allowFail: true });
  // On a timeout, say what the unit was doing.
  const waitFor = <T>(what: string, fn: () => Promise<T | null | undefined | false>, ms: number): Promise<T> =>
    c.waitFor(what, fn, ms).catch(async (e: Error) => {
      const st = await c.sh(`systemctl status --no-pager -n 0 ${UNIT}; journalctl -u ${UNIT} --no-pager -o cat -n 25`, { allowFail: true });
      throw new Error(`${e.message}\n${st}`);
    });
  try {
    await c.boot();

    await t.test('make install (the README\'s, PREFIX=/usr/local) into the container; a real MTA', async () => {
      await c.installWithMta(ROOT);
      assert.match(await c.sh('id selfware'), /selfware/);
      assert.match(await c.sh('systemctl cat selfware@.service | grep ^ExecStart='), /^ExecStart=\/usr\/local\/bin\/sw-agent run %i$/m);
      await waitFor('the test mail', async () => /Subject: mta check/.test(await mails()), 20_000).catch(async (e) => {
        throw new Error(`${(e as Error).message}; exim says: ${await c.sh('tail -20 /var/log/exim4/mainlog /var/log/exim4/paniclog 2>&1', { allowFail: true })}`);
      });
      fs.writeFileSync(path.join(env.dir, 'script.yaml'), JSON.stringify(SCRIPT));
      await c.sh(`cp ${env.dir}/script.yaml /etc/selfware/run1-script.yaml && chmod 644 /etc/selfware/run1-script.yaml`);
      await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config()}\nEOF`);
      // Short intervals for the test.
      await dropIn('test', '[Service]\nWatchdogSec=4s\nTimeoutAbortSec=3s\nRestartSec=1s');
      await c.sh(`mkdir -p /etc/systemd/system/selfware-checkpoint@${RUN}.timer.d && printf '[Timer]\\nOnCalendar=\\nOnCalendar=*:*:0/5\\nAccuracySec=1s\\n' > /etc/systemd/system/selfware-checkpoint@${RUN}.timer.d/test.conf && systemctl daemon-reload`);
    });

    await t.test('systemctl start returns after READY; StatusText; the run brings its timers', async () => {
      const quick = (await sw('sw-agent', `add ${RUN} --title quick 'write quick.txt'`)).trim();
      const t0 = monoMs();
      await c.sh(`systemctl start ${UNIT}`);
      times.start_to_ready_ms = monoMs() - t0;
      const p = await c.show(UNIT, ['ActiveState', 'SubState', 'StatusText', 'Type', 'NotifyAccess']);
      assert.equal(p.ActiveState, 'active', 'active as soon as start returns: READY came first');
      assert.equal(p.SubState, 'running');
      assert.ok(p.StatusText && p.StatusText.length > 0, 'StatusText is set');
      const j = await journal(`-u ${UNIT}`);
      assert.match(j, /sw-agent: agent ready: run 'run1'/);
      await waitFor('the quick task', async () => (await taskStatus(quick)) === 'completed', 30_000);
      await waitFor('StatusText says idle', async () => /idle/.test((await c.show(UNIT, ['StatusText'])).StatusText ?? ''), 10_000);
      const timers = await c.sh('systemctl list-timers --all --no-pager');
      for (const tm of ['selfware-checkpoint@run1.timer', 'selfware-retention@run1.timer', 'selfware-report@run1.timer']) assert.match(timers, new RegExp(tm.replace('.', '\\.')), tm);
    });

    await t.test('commands from a root shell on the running run, as the README shows them: the run stays its owner\'s and checkpoints keep working', async () => {
      const routine = async () => (JSON.parse(await sw('sw-checkpoint', `list ${RUN} --json`)) as { checkpoints: Array<{ kind: string }> }).checkpoints.filter((x) => x.kind === 'routine').length;
      const id = (await asRoot('sw-agent', `add ${RUN} --title quick 'write quick.txt again'`)).trim();
      await asRoot('sw-checkpoint', `create ${RUN} -m 'before the refactor'`);
      await asRoot('sw-checkpoint', `diff ${RUN} latest`);
      await asRoot('sw-checkpoint', `list ${RUN}`);
      await asRoot('sw-checkpoint', `verify ${RUN}`);
      await asRoot('sw-agent', `status ${RUN}`);
      await asRoot('sw-agent', `list ${RUN}`);
      await asRoot('sw-recover', `${RUN} --dry-run`);
      await asRoot('sw-report', `${RUN}`);
      // (The agent's own git comes and goes meanwhile: only what still exists, with its owner.)
      assert.equal((await c.sh(`find /var/lib/selfware/${RUN} ! -user selfware -exec stat -c '%U %n' {} + 2>/dev/null; true`)).trim(), '', 'nothing in the run belongs to root');
      // The agent's own checkpoints, and the timer's, still work.
      await waitFor('the task root queued', async () => (await taskStatus(id)) === 'completed', 30_000);
      const before = await routine();
      await c.sh(`setpriv --reuid=selfware --regid=selfware --init-groups sh -c 'echo root was here >> /var/lib/selfware/${RUN}/state/memory/notes.md'`);
      await waitFor('a routine checkpoint from the timer', async () => (await routine()) > before, 30_000);
      assert.equal((await c.show(`selfware-checkpoint@${RUN}.service`, ['Result'])).Result, 'success');
      await asRoot('sw-checkpoint', `verify ${RUN}`);
      const st = JSON.parse(await asRoot('sw-agent', `status ${RUN} --json`)) as { problems: unknown[] };
      assert.deepEqual(st.problems, []);
      assert.match(await asRoot('sw-report', `${RUN} --check`, { allowFail: true }), /^SELFWARE OK - /);
    });

    await t.test('an instance that is no run: its start fails and leaves no timer, no failed unit but its own, no state directory', async () => {
      const unit = (await c.sh("systemd-escape --template=selfware@.service 'bad name'")).trim();
      const inst = unit.slice('selfware@'.length, -'.service'.length);
      const r = await c.exec(['systemctl', 'start', unit]);
      assert.notEqual(r.exitCode, 0, 'the start fails');
      const timers = ['checkpoint', 'retention', 'report'].map((k) => `selfware-${k}@${inst}.timer`);
      await waitFor('the instance stopped', async () => (await c.show(unit, ['ActiveState'])).ActiveState === 'failed', 30_000);
      assert.deepEqual((await c.sh(`systemctl is-active ${timers.map((x) => `'${x}'`).join(' ')}`, { allowFail: true })).trim().split('\n'), ['inactive', 'inactive', 'inactive']);
      const failed = await c.sh('systemctl list-units --failed --all --no-legend --plain');
      assert.doesNotMatch(failed, /selfware-(checkpoint|retention|report)@/, failed);
      // The alert the failure starts removes the empty state directory systemd made for it.
      const left = async (): Promise<string> => (await c.sh(`ls -A /var/lib/selfware`)).trim().split('\n').filter((n) => n !== RUN).join(' ');
      await waitFor('no state directory left for it', async () => (await left()) === '', 30_000).catch(async (e: Error) => {
        throw new Error(`${e.message}: ${await left()}; the alert said:\n${await journal(`-u 'selfware-alert@${unit}.service'`)}`);
      });
      assert.match(await journal(`-u 'selfware-alert@${unit}.service'`), /removed the empty state directory \/var\/lib\/selfware\/bad\\x20name of a start that made nothing/);
      assert.match(await journal(`-u '${unit}'`), /invalid run name/);
      await c.sh(`systemctl reset-failed '${unit}' 'selfware-alert@*'`, { allowFail: true });
    });

    await t.test('SIGKILL of the main process: restart, sw-recover ran, the task resumes at its next step', async () => {
      const id = (await sw('sw-agent', `add ${RUN} --title killed --verify 'test -f killed.txt' 'many steps'`)).trim();
      await waitFor('step 4 of the task', async () => /killed-4/.test(await c.sh(`cat /var/lib/selfware/${RUN}/workspace/killed.txt 2>/dev/null`, { allowFail: true })), 60_000);
      const before = await mainPid();
      const restartsBefore = Number((await c.show(UNIT, ['NRestarts'])).NRestarts);
      const t0 = monoMs();
      await c.sh(`kill -9 ${before}`);
      await waitFor('a new main process, active', async () => {
        const p = await c.show(UNIT, ['MainPID', 'ActiveState']);
        return p.ActiveState === 'active' && Number(p.MainPID) !== before && Number(p.MainPID) > 0;
      }, 60_000);
      times.sigkill_to_ready_ms = (await activeAt()) - t0;
      assert.equal(Number((await c.show(UNIT, ['NRestarts'])).NRestarts), restartsBefore + 1);
      const j = await waitFor('the task resumed', async () => {
        const x = await journal(`-u ${UNIT}`);
        return new RegExp(`sw-agent: task ${id}: resuming (at step \\d+|after step \\d+)`).test(x) ? x : null;
      }, 30_000);
      assert.match(j, /sw-recover: session \S+ did not stop cleanly \(crash: systemd: signal, killed, KILL\)/);
      assert.doesNotMatch(j, /adopted task/, 'tasks queued with sw-agent add are not adopted again');
      await waitFor('the killed task completed', async () => (await taskStatus(id)) === 'completed', 60_000);
      const lines = (await c.sh(`cat /var/lib/selfware/${RUN}/workspace/killed.txt`)).trim().split('\n');
      assert.deepEqual([...new Set(lines)], Array.from({ length: 25 }, (_, i) => `killed-${i + 1}`), 'every step, in order');
    });

    await t.test('SIGSTOP of the main process: the watchdog kills it and it restarts', async () => {
      const before = await mainPid();
      const t0 = monoMs();
      await c.sh(`kill -STOP ${before}`);
      await waitFor('a new main process, active', async () => {
        const p = await c.show(UNIT, ['MainPID', 'ActiveState']);
        return p.ActiveState === 'active' && Number(p.MainPID) !== before && Number(p.MainPID) > 0;
      }, 60_000);
      times.sigstop_to_ready_ms = (await activeAt()) - t0;
      assert.ok(times.sigstop_to_ready_ms < (4 + 3 + 15) * 1000, `the watchdog (4 s) and the abort timeout (3 s) plus a margin: ${times.sigstop_to_ready_ms} ms`);
      const j = await journal(`-u ${UNIT}`);
      assert.match(j, /Watchdog timeout/);
      assert.match(j, /sw-recover: session \S+ did not stop cleanly \(hang: systemd: watchdog/);
    });

    await t.test('a model that hangs before its first token: the watchdog kills it and it restarts', async () => {
      const since = (await c.sh('date +%s')).trim();
      const before = await mainPid();
      const id = (await sw('sw-agent', `add ${RUN} --title hung 'a model that hangs'`)).trim();
      // The hang begins as step 1 asks the model: StatusText says so.
      await waitFor('step 1 of the hung task', async () => (await c.show(UNIT, ['StatusText'])).StatusText?.startsWith(`${id} step 1`), 30_000);
      const t0 = monoMs();
      await waitFor('a new main process, active', async () => {
        const p = await c.show(UNIT, ['MainPID', 'ActiveState']);
        return p.ActiveState === 'active' && Number(p.MainPID) !== before && Number(p.MainPID) > 0;
      }, 60_000);
      times.prefirst_stall_to_ready_ms = (await activeAt()) - t0;
      assert.ok(times.prefirst_stall_to_ready_ms < (4 + 3 + 15) * 1000, `the watchdog (4 s) and the abort timeout (3 s) plus a margin: ${times.prefirst_stall_to_ready_ms} ms`);
      const j = await journal(`-u ${UNIT} --since @${since}`);
      assert.match(j, /Watchdog timeout/);
      assert.match(j, /sw-recover: session \S+ did not stop cleanly \(hang: systemd: watchdog/);
      // The task would hang every time: cancelled, the run goes back to work.
      await sw('sw-agent', `cancel ${RUN} ${id}`);
      await waitFor('the run idle again', async () => {
        const p = await c.show(UNIT, ['ActiveState', 'StatusText']);
        return p.ActiveState === 'active' && /idle/.test(p.StatusText ?? '');
      }, 60_000);
    });

    await t.test('systemctl stop: a shutdown checkpoint, a clean end; the next start does no recovery work', async () => {
      const id = (await sw('sw-agent', `add ${RUN} --title stopped 'many steps'`)).trim();
      await waitFor('step 2 of the task', async () => /stopped-2/.test(await c.sh(`cat /var/lib/selfware/${RUN}/workspace/stopped.txt 2>/dev/null`, { allowFail: true })), 60_000);
      await c.sh(`systemctl stop ${UNIT}`);
      const cps = JSON.parse(await sw('sw-checkpoint', `list ${RUN} --json`)) as { checkpoints: Array<{ kind: string; message: string }> };
      assert.equal(cps.checkpoints[0]?.kind, 'shutdown');
      const j1 = await journal(`-u ${UNIT}`);
      assert.match(j1, /sw-agent: stopped after shutdown checkpoint/);
      const since = (await c.sh('date +%s')).trim();
      await c.sh(`systemctl start ${UNIT}`);
      const j2 = await waitFor('the task resumed', async () => {
        const j = await journal(`-u ${UNIT} --since @${since}`);
        return new RegExp(`task ${id}: resuming at step \\d+`).test(j) ? j : null;
      }, 30_000);
      assert.match(j2, /session \S+ ended cleanly: nothing to recover/);
      assert.doesNotMatch(j2, /did not stop cleanly/);
      await waitFor('the stopped task completed', async () => (await taskStatus(id)) === 'completed', 60_000);
    });

    await t.test('the checkpoint timer makes routine checkpoints; retention prunes', async () => {
      const count = async () => (JSON.parse(await sw('sw-checkpoint', `list ${RUN} --json`)) as { checkpoints: Array<{ kind: string }> }).checkpoints.filter((x) => x.kind === 'routine').length;
      const before = await count();
      await c.sh(`setpriv --reuid=selfware --regid=selfware --init-groups env HOME=/var/lib/selfware sh -c 'echo change >> /var/lib/selfware/${RUN}/state/memory/notes.md'`);
      await waitFor('a routine checkpoint from the timer', async () => (await count()) > before, 30_000);
      const total = (JSON.parse(await sw('sw-checkpoint', `list ${RUN} --json`)) as { checkpoints: unknown[] }).checkpoints.length;
      await c.sh(`systemctl start selfware-retention@${RUN}.service`);
      const after = (JSON.parse(await sw('sw-checkpoint', `list ${RUN} --json`)) as { checkpoints: unknown[] }).checkpoints.length;
      assert.ok(total > 3 && after < total, `retention pruned: ${total} -> ${after}`);
      const r = await c.show(`selfware-retention@${RUN}.service`, ['Result']);
      assert.equal(r.Result, 'success');
    });

    await t.test('a crash loop: StartLimitBurst stops it; the alert unit mails a real MTA', async () => {
      try {
        // TimeoutStopSec: in this container systemd is not always told when a killed unit's last process
        // is gone (no cgroup-empty notification), and then waits out the stop timeout (the unit's 2 min)
        // after every kill: a CI run's crash loop took over 5 min that way (the soak has the same drop-in).
        await dropIn('crash', "[Service]\nExecStartPost=/bin/sh -c 'sleep 0.5; kill -9 $MAINPID'\nTimeoutStopSec=5s");
        const since = (await c.sh('date +%s')).trim();
        await c.sh(`systemctl restart ${UNIT}`, { allowFail: true });
        // systemd 252 keeps the last failure's Result (signal) and says so in the journal.
        await waitFor('the start limit', async () => /Start request repeated too quickly/.test(await journal(`-u ${UNIT} --since @${since}`)), 300_000);
        await waitFor('the unit failed for good', async () => (await c.show(UNIT, ['ActiveState'])).ActiveState === 'failed', 30_000);
        const restarts = Number((await c.show(UNIT, ['NRestarts'])).NRestarts);
        assert.ok(restarts >= 5, `${restarts} restarts before the limit`);
        await waitFor('the alert unit ran', async () => (await c.show(`selfware-alert@${UNIT}.service`, ['Result', 'ActiveState'])).Result === 'success', 30_000);
        await waitFor('the alert mail arrived', async () => /\[selfware run1\] FAILED: selfware@run1\.service \(signal\)/.test(await mails()), 30_000);
        const m = await mails();
        assert.match(m, /systemd will not restart it/);
        assert.match(m, /--- the last journal lines of selfware@run1\.service ---/);
        assert.match(m, /restarts: [5-9]/);
        assert.match(await journal(`-u selfware-alert@${UNIT}.service`), /selfware-alert: selfware@run1\.service failed \(result: signal\); alert mailed to ops@localhost/);
      } finally {
        await c.sh(`rm /etc/systemd/system/${UNIT}.d/crash.conf && systemctl daemon-reload && systemctl reset-failed ${UNIT} 'selfware-alert@*'`);
      }
    });

    await t.test('an escalation: the agent exits 79, systemd does not restart it, the alert is mailed', async () => {
      try {
        await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config('').replace('max_failures: 100', 'max_failures: 2')}\nEOF`);
        await c.sh(`: > /var/mail/ops`);
        await dropIn('crash', "[Service]\nExecStartPost=/bin/sh -c 'sleep 0.5; kill -9 $MAINPID'\nTimeoutStopSec=5s");
        await c.sh(`systemctl start ${UNIT}`, { allowFail: true });
        const p = await waitFor('failed with 79', async () => {
          const q = await c.show(UNIT, ['ActiveState', 'Result', 'ExecMainStatus', 'NRestarts']);
          return q.ActiveState === 'failed' && q.ExecMainStatus === '79' ? q : null;
        }, 120_000);
        assert.equal(p.Result, 'exit-code');
        const restarts = Number(p.NRestarts);
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal(Number((await c.show(UNIT, ['NRestarts'])).NRestarts), restarts, 'no restart after 79');
        assert.equal((await c.show(UNIT, ['ActiveState'])).ActiveState, 'failed');
        const j = await journal(`-u ${UNIT}`);
        assert.match(j, /sw-recover: escalating: \d+ crashes and \d+ failed recover(y|ies) in the last 60 min \(limit 2\)/);
        assert.match(j, /sw-agent: run 'run1' escalated: .*not starting \(exit 79\)/);
        await waitFor('the alert mail arrived', async () => /\[selfware run1\] ESCALATED: selfware@run1\.service \(\d+ crash(es)? and \d+ failed recover(y|ies) in the last 60 min \(limit 2\)\)/.test(await mails()), 30_000);
        // The failed run's timers keep going (the morning report says what happened) until it is stopped.
        const timers = `selfware-report@${RUN}.timer selfware-checkpoint@${RUN}.timer`;
        assert.deepEqual((await c.sh(`systemctl is-active ${timers}`, { allowFail: true })).trim().split('\n'), ['active', 'active']);
        await c.sh(`systemctl stop ${UNIT}`);
        assert.deepEqual((await c.sh(`systemctl is-active ${timers}`, { allowFail: true })).trim().split('\n'), ['inactive', 'inactive']);
      } finally {
        await c.sh(`rm /etc/systemd/system/${UNIT}.d/crash.conf && systemctl daemon-reload && systemctl reset-failed ${UNIT} 'selfware-alert@*'`);
        await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config()}\nEOF`);
      }
    });

    await t.test('journal priorities: err for the errors only, lower for the rest', async () => {
      const raw = await c.sh('journalctl --no-pager -t selfware -o json');
      const lines = raw
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { MESSAGE: string; PRIORITY: string });
      const errs = lines.filter((l) => Number(l.PRIORITY) <= 3).map((l) => l.MESSAGE);
      const errText = (await journal('-t selfware -p err')).trim().split('\n');
      assert.deepEqual(errText, errs, 'journalctl -p err shows exactly the lines logged at err');
      assert.ok(errs.length >= 3, `error lines: ${errs.join(' | ')}`);
      for (const m of errs) assert.match(m, /escalat|FAILED|failed \(result|error|cannot|invalid run name|unknown key/i, `an error line: ${m}`);
      const prio = (re: RegExp) => lines.filter((l) => re.test(l.MESSAGE)).map((l) => Number(l.PRIORITY));
      assert.ok(prio(/agent ready/).every((p) => p === 6), 'ready lines at info');
      assert.ok(prio(/nothing to recover/).every((p) => p === 6), 'no-op recoveries at info');
      assert.ok(prio(/did not stop cleanly/).every((p) => p === 5), 'recoveries at notice');
      assert.ok(prio(/\bwarning:/).every((p) => p === 4), 'warnings at warning');
    });

    await t.test('a reboot with the run enabled: it comes back and resumes', async () => {
      await c.sh(`systemctl enable ${UNIT}`);
      await c.sh(`systemctl start ${UNIT}`);
      const id = (await sw('sw-agent', `add ${RUN} --title afterboot 'many steps'`)).trim();
      await waitFor('step 3 of the task', async () => /afterboot-3/.test(await c.sh(`cat /var/lib/selfware/${RUN}/workspace/afterboot.txt 2>/dev/null`, { allowFail: true })), 60_000);
      const t0 = monoMs();
      await c.shutdown();
      await c.boot();
      await waitFor('the run active again', async () => (await c.show(UNIT, ['ActiveState'])).ActiveState === 'active', 60_000);
      times.reboot_to_ready_ms = (await activeAt()) - t0;
      const j = await waitFor('the task resumed after the reboot', async () => {
        const x = await journal(`-u ${UNIT} -b`);
        return new RegExp(`task ${id}: resuming at step \\d+`).test(x) ? x : null;
      }, 30_000);
      assert.match(j, /sw-agent: agent ready/);
      await waitFor('the task completed after the reboot', async () => (await taskStatus(id)) === 'completed', 90_000);
    });

    await t.test('a config typo while the run is up: the restart refuses with 78, and the next report mail is CRITICAL naming it', async () => {
      const restartsBefore = Number((await c.show(UNIT, ['NRestarts'])).NRestarts);
      try {
        await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config().replace('llm:\n', 'llm:\n  backnd: llama\n')}\nEOF`);
        await c.sh(': > /var/mail/ops');
        await c.sh(`systemctl restart ${UNIT}`, { allowFail: true });
        const q = await waitFor('failed with 78', async () => {
          const x = await c.show(UNIT, ['ActiveState', 'ExecMainStatus', 'NRestarts']);
          return x.ActiveState === 'failed' && x.ExecMainStatus === '78' ? x : null;
        }, 60_000);
        assert.equal(Number(q.NRestarts), restartsBefore, 'no restart after 78');
        assert.match(await journal(`-u ${UNIT} -p err`), /run1\.yaml:2:3: llm\.backnd: unknown key \(did you mean 'backend'\?\)/);
        // The morning report still comes (its timer outlives the failure), CRITICAL, naming the mistake.
        assert.equal((await c.sh(`systemctl is-active selfware-report@${RUN}.timer`, { allowFail: true })).trim(), 'active');
        await c.sh(`systemctl start selfware-report@${RUN}.service`);
        assert.equal((await c.show(`selfware-report@${RUN}.service`, ['Result'])).Result, 'success');
        // The mailbox also holds the alert of the failed restart: the report is the multipart one.
        const raw = await waitFor('the report mail', async () => {
          const m = (await mails()).split(/^From /m).find((x) => /^Subject: \[selfware run1\] (OK|WARNING|CRITICAL|UNKNOWN): /m.test(x));
          return m ?? null;
        }, 30_000);
        const msg = parseMime(raw.slice(raw.indexOf('\n') + 1));
        assert.match(msg.headers.subject ?? '', /^\[selfware run1\] CRITICAL: /);
        const text = msg.parts.find((x) => /^text\/plain/.test(x.headers['content-type'] ?? ''));
        assert.match(text?.body ?? '', /\/etc\/selfware\/run1\.yaml:2:3: llm\.backnd: unknown key/);
      } finally {
        await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config()}\nEOF`);
        await c.sh(`systemctl reset-failed ${UNIT} 'selfware-alert@*'; systemctl start ${UNIT}`);
      }
    });

    await t.test('the daily report: selfware-report@ mails it through the real MTA, multipart text and HTML with the charts; systemd\'s NRestarts in it', async () => {
      await c.sh(': > /var/mail/ops');
      await c.sh(`systemctl start selfware-report@${RUN}.service`);
      assert.equal((await c.show(`selfware-report@${RUN}.service`, ['Result'])).Result, 'success');
      // The report runs as root: it must leave the run's directories to the agent's user.
      assert.deepEqual((await c.sh(`stat -c '%U %n' /var/lib/selfware/${RUN} /var/lib/selfware/${RUN}/tasklog.journal /run/selfware`)).trim().split('\n'), [
        `selfware /var/lib/selfware/${RUN}`,
        `selfware /var/lib/selfware/${RUN}/tasklog.journal`,
        'selfware /run/selfware',
      ]);
      const box = await waitFor('the report mail', async () => {
        const m = await mails();
        return /^Subject: \[selfware run1\] /m.test(m) ? m : null;
      }, 30_000);
      const msg = parseMime(box.slice(box.indexOf('\n') + 1));
      assert.match(msg.headers.subject ?? '', /^\[selfware run1\] (OK|WARNING|CRITICAL): /);
      assert.match(msg.headers['content-type'] ?? '', /^multipart\/alternative;/);
      const text = msg.parts.find((p) => /^text\/plain/.test(p.headers['content-type'] ?? ''));
      const html = msg.parts.find((p) => /^text\/html/.test(p.headers['content-type'] ?? ''));
      assert.ok(text && html, `parts: ${msg.parts.map((p) => p.headers['content-type']).join(', ')}`);
      assert.match(text.body, /^selfware run1 on /);
      assert.match(text.body, /\n  completed: +\d+/);
      for (const chart of ['tasks', 'tokens', 'resources', 'checkpoints']) assert.match(html.body, new RegExp(`<svg[^>]*data-chart="${chart}"`), `the ${chart} chart`);
      assert.doesNotMatch(html.body, /<(link|script)\b|src="http/i, 'self-contained');
      // What systemd knows goes into the report.
      const doc = JSON.parse(await sw('sw-report', `${RUN} --json`)) as { systemd: { unit: string; n_restarts: number } | null };
      assert.equal(doc.systemd?.unit, UNIT);
      assert.equal(doc.systemd?.n_restarts, Number((await c.show(UNIT, ['NRestarts'])).NRestarts));
      // A run without report.mail: the morning's start is skipped with a notice, not failed.
      try {
        await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config().replace('  mail: ops@localhost', '  check:\n    window: 1h')}\nEOF`);
        await c.sh(`systemctl start selfware-report@${RUN}.service`);
        const q = await c.show(`selfware-report@${RUN}.service`, ['Result', 'ActiveState']);
        assert.deepEqual([q.Result, q.ActiveState], ['exec-condition', 'inactive'], 'skipped, not failed');
        assert.match(await journal(`-u selfware-report@${RUN}.service -p notice`), /selfware-report: run run1 has no report\.mail, so no report was mailed/);
      } finally {
        await c.sh(`cat > /etc/selfware/${RUN}.yaml <<'EOF'\n${config()}\nEOF`);
      }
    });

    await t.test('sw-gpu-governor.service: READY inside its sandbox, nvidia-smi runs, the decision is published, logged at err and recorded', async () => {
      // No GPU here: a fake nvidia-smi (VRAM at 90%, critical), put where the sandbox can read it;
      // and a /proc of the test's own for CPU and RAM (the host's load is no business of this test).
      const host = path.join(env.dir, 'gpu');
      fakeNvidiaSmi(host).set(vramSeries([90], 1000));
      const GOV = 'sw-gpu-governor.service';
      await c.sh(
        [
          `mkdir -p /opt && rm -rf /opt/fakegpu && cp -r ${host} /opt/fakegpu`,
          `sed -i 's|${host}|/opt/fakegpu|g' /opt/fakegpu/bin-ok/nvidia-smi && chmod -R a+rX /opt/fakegpu`,
          'mkdir -p /opt/fakeproc && printf "cpu  1000 0 1000 98000 0 0 0 0 0 0\\n" > /opt/fakeproc/stat',
          'printf "MemTotal: 16384000 kB\\nMemAvailable: 12288000 kB\\nSwapTotal: 0 kB\\nSwapFree: 0 kB\\n" > /opt/fakeproc/meminfo && chmod -R a+rX /opt/fakeproc',
          `mkdir -p /etc/systemd/system/${GOV}.d`,
          `printf '[Service]\nEnvironment=PATH=/opt/fakegpu/bin-ok:/usr/bin:/bin SELFWARE_PROC=/opt/fakeproc\n' > /etc/systemd/system/${GOV}.d/fake-gpu.conf`,
          'systemctl daemon-reload',
        ].join(' && '),
      );
      const since = (await c.sh('date +%s')).trim();
      // Type=notify: start returns once the first decision is published.
      await c.sh(`systemctl start ${GOV}`);
      const q = await c.show(GOV, ['ActiveState', 'StatusText', 'NRestarts']);
      assert.equal(q.ActiveState, 'active');
      assert.equal(q.NRestarts, '0');
      assert.match(q.StatusText ?? '', /^critical, Q3_K_L, unload, vram 90(\.0)?%/, `the governor said:\n${await journal(`-u ${GOV}`)}\n${await c.sh('ls -la /opt/fakegpu /opt/fakegpu/bin-ok; cat /etc/systemd/system/sw-gpu-governor.service.d/*.conf; setpriv --reuid=selfware --regid=selfware --init-groups env PATH=/opt/fakegpu/bin-ok:/usr/bin:/bin nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits 2>&1', { allowFail: true })}`);
      const d = JSON.parse(await c.sh('cat /run/selfware/governor.json')) as { tier: string; quantization: string; actions: string[]; readings: { vram: { value: number } } };
      assert.deepEqual([d.tier, d.quantization, d.actions], ['critical', 'Q3_K_L', ['unload']]);
      assert.equal(Math.round(d.readings.vram.value), 90, 'the reading came from nvidia-smi, run inside the sandbox');
      assert.equal((await c.sh('stat -c %U /run/selfware/governor.json')).trim(), 'selfware');
      assert.match(await journal(`-u ${GOV} -p err --since @${since}`), /tier critical/);
      // The run's task log has the decision (the governor writes as the run's user).
      await waitFor(
        'the decision in the task log',
        async () => (JSON.parse(await sw('sw-report', `${RUN} --json`)) as { governor: { current: { tier: string } | null } }).governor.current?.tier === 'critical',
        30_000,
      );
      await c.sh(`systemctl stop ${GOV}`);
      const st = await c.show(GOV, ['ActiveState', 'Result']);
      assert.deepEqual([st.ActiveState, st.Result], ['inactive', 'success']);
    });

    // The figures for the issue's note.
    console.log(`# systemd timings: ${JSON.stringify(times)}`);
  } finally {
    await c.kill();
    env.cleanup();
  }
});
