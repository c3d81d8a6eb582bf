// The alerts: the same nine questions for `--check` (Monitoring Plugins:
// exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line with perfdata), the
// report's verdict and the mail's subject. Each is judged at `until`.

import fs from 'node:fs';
import type { Database } from 'sql.js';
import type { ReportConfig } from '../config/schema.js';
import type { Thresholds } from '../governor/config.js';
import { queryRows } from '../tasklog/schema.js';
import { ATTEMPTS, ERROR_STEPS } from '../tasklog/retention.js';
import { formatDuration, plural } from '../units.js';
import { pct } from './human.js';
import type { Alert, Report, Status } from './types.js';
import { windowMs } from './window.js';

/** Step statuses that count as errors: a tool that failed, an answer that was not a valid action, a model call that failed. */

export const STATUS_CODE: Record<Status, number> = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 };
/** Statuses from best to worst (the Monitoring Plugins' order of precedence): a CRITICAL is never hidden by an UNKNOWN. */
export const ORDER: Status[] = ['OK', 'WARNING', 'UNKNOWN', 'CRITICAL'];

/** The text of a check line: a | would start the performance data, so it becomes ¦. */
export function pluginText(s: string): string {
  return s.replace(/\|/g, '¦').replace(/[\r\n]+/g, ' ');
}

export interface CheckContext {
  config: ReportConfig['check'];
  until: number;
  runDir: string;
  /** The governor's disk thresholds, % free. */
  disk: Thresholds;
  /** Whether the agent runs (changes left unprotected are judged only then). */
  sessionOpen: boolean;
  /** Why what the newest checkpoint protects could not be worked out, if it could not. */
  protectionError: string | null;
  /** When the oldest task now waiting in the queue was created (ms), if any. */
  oldestWaiting: number | null;
  /** The run's agent.max_attempts, for tasks the task log has no max_attempts for. */
  maxAttempts: number;
}

function scalar(db: Database, sql: string, params: Array<string | number>): number | null {
  const v = queryRows(db, sql, params)[0]?.[0];
  return v === null || v === undefined ? null : Number(v);
}

/** Higher is worse unless `worse` is "below". */
function judge(value: number | null, warning: number, critical: number, worse: 'above' | 'below'): Status {
  if (value === null) return 'OK';
  if (worse === 'below') return value < critical ? 'CRITICAL' : value < warning ? 'WARNING' : 'OK';
  return value > critical ? 'CRITICAL' : value > warning ? 'WARNING' : 'OK';
}

export function evaluate(db: Database, r: Report, ctx: CheckContext): Alert[] {
  const U = ctx.until;
  const c = ctx.config;
  const from = U - c.window;
  const out: Alert[] = [];

  // 1. Success rate of the tasks that ended over the window: completed, or failed
  // for good (the failed attempt was the task's last); an attempt retried is not a task's end.
  const [okV, badV] = queryRows(
    db,
    `SELECT sum(a.n * (a.outcome = 'completed')), sum(a.n * (a.outcome = 'failed' AND a.attempt >= coalesce(a.max_attempts, ?)))
     FROM (${ATTEMPTS}) a WHERE a.outcome IN ('completed', 'failed') AND a.ended_at >= ? AND a.ended_at < ?`,
    [ctx.maxAttempts, from, U],
  )[0] ?? [];
  const ok = Number(okV ?? 0);
  const done = ok + Number(badV ?? 0);
  const rate = done ? Math.round((ok / done) * 10000) / 10000 : null;
  const sr = judge(rate, c.success_rate.warning, c.success_rate.critical, 'below');
  out.push({
    name: 'success_rate',
    status: sr,
    message: rate === null ? `no task finished in the last ${formatDuration(c.window)}` : `success rate ${pct(rate)} over ${formatDuration(c.window)} (${ok} of ${plural(done, 'task')})`,
    value: rate,
    warning: c.success_rate.warning,
    critical: c.success_rate.critical,
    worse: 'below',
    uom: '',
    label: 'success',
    min: 0,
    max: 1,
  });

  // 2. Progress: a step (or a task started or finished) while tasks wait.
  const waiting = r.queue.pending + r.queue.in_progress;
  const lastStep = scalar(
    db,
    `SELECT max(t) FROM (SELECT max(ts) AS t FROM task_steps WHERE ts < ?1 UNION ALL SELECT max(ts_last) FROM step_rollups WHERE ts_last < ?1
       UNION ALL SELECT max(started_at) FROM task_attempts WHERE started_at < ?1
       UNION ALL SELECT max(ended_at) FROM task_attempts WHERE ended_at < ?1
       UNION ALL SELECT max(ts_last) FROM attempt_rollups WHERE ts_last < ?1)`,
    [U],
  );
  // With no step ever, the wait counts from the oldest task still waiting.
  const since = lastStep ?? ctx.oldestWaiting;
  const humanPause = r.agent.paused;
  const age = waiting > 0 && since !== null && !humanPause ? Math.max(0, Math.round((U - since) / 1000)) : null;
  const pr = judge(age, c.progress.warning / 1000, c.progress.critical / 1000, 'above');
  out.push({
    name: 'progress',
    status: pr,
    message:
      waiting === 0
        ? 'no task waiting'
        : humanPause
          ? `paused by a human with ${plural(waiting, 'task')} waiting`
          : age === null
            ? `${plural(waiting, 'task')} waiting`
            : `last progress ${formatDuration(age * 1000)} ago with ${plural(waiting, 'task')} waiting${r.approvals.pending.length ? ` (${plural(r.approvals.pending.length, 'approval')} pending)` : ''}`,
    value: age,
    warning: c.progress.warning / 1000,
    critical: c.progress.critical / 1000,
    worse: 'above',
    uom: 's',
    label: 'progress_age',
    min: 0,
    max: null,
  });

  // 3. Error rate of the steps taken in the window.
  // Steps folded past tasklog.detail_after (step_rollups) count as the rows they were.
  const steps = scalar(db, 'SELECT (SELECT count(*) FROM task_steps WHERE ts >= ?1 AND ts < ?2) + (SELECT coalesce(sum(steps), 0) FROM step_rollups WHERE ts >= ?1 AND ts < ?2)', [from, U]) ?? 0;
  const bad =
    scalar(
      db,
      `SELECT (SELECT count(*) FROM task_steps WHERE ts >= ?1 AND ts < ?2 AND status IN (${ERROR_STEPS.map((_, i) => `?${i + 3}`).join(', ')})) + (SELECT coalesce(sum(errors), 0) FROM step_rollups WHERE ts >= ?1 AND ts < ?2)`,
      [from, U, ...ERROR_STEPS],
    ) ?? 0;
  const er = steps ? Math.round((bad / steps) * 10000) / 10000 : null;
  out.push({
    name: 'error_rate',
    status: judge(er, c.error_rate.warning, c.error_rate.critical, 'above'),
    message: er === null ? `no step in the last ${formatDuration(c.window)}` : `error rate ${pct(er)} over ${formatDuration(c.window)} (${bad} of ${steps} steps)`,
    value: er,
    warning: c.error_rate.warning,
    critical: c.error_rate.critical,
    worse: 'above',
    uom: '',
    label: 'errors',
    min: 0,
    max: 1,
  });

  // 4. Checkpoints: the newest attempts failed (CRITICAL, naming why), or changes left
  // unprotected for long while the agent runs. An idle run whose state is what its newest
  // checkpoint holds is protected, however old that checkpoint.
  const ck = r.checkpoints;
  const nowMs = Date.parse(r.generated_at);
  const un = ck.unprotected;
  const unAge = un && un.paths > 0 && un.since !== null ? Math.max(0, Math.round((nowMs - Date.parse(un.since)) / 1000)) : un ? 0 : null;
  let ckStatus: Status;
  let ckMessage: string;
  if (ck.failing) {
    const f = ck.failing;
    ckStatus = 'CRITICAL';
    ckMessage = `checkpoints failing since ${formatDuration(Math.max(0, U - Date.parse(f.since)))} ago (${plural(f.count, 'attempt')}${f.kind ? `, the last ${f.kind}` : ''}): ${f.reason ?? 'no reason recorded'}`;
  } else if (un === null) {
    ckStatus = ctx.protectionError ? 'UNKNOWN' : 'OK';
    ckMessage = ctx.protectionError
      ? `cannot tell what the newest checkpoint protects: ${ctx.protectionError}`
      : ck.last
        ? `last checkpoint ${formatDuration(Math.max(0, (ck.age_s ?? 0) * 1000))} ago`
        : 'no checkpoint yet';
  } else if (un.paths === 0) {
    // The newest checkpoint is the one a checkpoint now would follow (the tip), whatever time it recorded.
    const tip = un.checkpoint;
    ckStatus = 'OK';
    ckMessage = tip ? `nothing changed since checkpoint ${tip.id} (${tip.kind}, ${formatDuration(Math.max(0, nowMs - Date.parse(tip.time)))} ago)` : 'nothing to protect yet';
  } else {
    ckStatus = ctx.sessionOpen ? judge(unAge, c.checkpoint_age.warning / 1000, c.checkpoint_age.critical / 1000, 'above') : 'OK';
    const first = un.sample[0] ?? '';
    const what = `${first}${un.paths > 1 ? ` and ${un.paths - 1} more` : ''}`;
    const tip = un.checkpoint;
    const base = tip ? `the newest checkpoint ${tip.id} is ${formatDuration(Math.max(0, nowMs - Date.parse(tip.time)))} old` : 'no checkpoint yet';
    ckMessage = ctx.sessionOpen
      ? `${plural(un.paths, 'change')} left unprotected for ${formatDuration((unAge ?? 0) * 1000)} (${what}), ${base}`
      : `${plural(un.paths, 'change')} since the agent stopped (${what}), ${base}`;
  }
  out.push({
    name: 'checkpoints',
    status: ckStatus,
    message: ckMessage,
    value: unAge,
    warning: c.checkpoint_age.warning / 1000,
    critical: c.checkpoint_age.critical / 1000,
    worse: 'above',
    uom: 's',
    label: 'unprotected_age',
    min: 0,
    max: null,
  });

  // 5. Disk: free space now on the run's filesystem, by the governor's thresholds.
  let free: number | null = null;
  let diskNote = '';
  try {
    const st = fs.statfsSync(ctx.runDir);
    free = st.blocks > 0 ? Math.round(((st.bavail * st.bsize) / (st.blocks * st.bsize)) * 1000) / 10 : null;
  } catch (e) {
    diskNote = (e as Error).message;
  }
  const dk: Status = free === null ? 'UNKNOWN' : judge(free, ctx.disk.warning, ctx.disk.critical, 'below');
  out.push({
    name: 'disk',
    status: dk,
    message: free === null ? `cannot read the disk's free space: ${diskNote}` : `${free}% disk free`,
    value: free,
    warning: ctx.disk.warning,
    critical: ctx.disk.critical,
    worse: 'below',
    uom: '%',
    label: 'disk_free',
    min: 0,
    max: 100,
  });

  // 6. An escalation that no start has followed: systemd stopped restarting the run.
  const esc = r.escalated;
  out.push({
    name: 'escalation',
    status: esc ? 'CRITICAL' : 'OK',
    message: esc ? `escalated ${formatDuration(Math.max(0, U - Date.parse(esc.time)))} ago${esc.reason ? ` (${esc.reason})` : ''}: systemd stopped restarting the run` : 'no escalation',
    value: esc ? 1 : 0,
    warning: null,
    critical: 0,
    worse: 'above',
    uom: '',
    label: 'escalations',
    min: 0,
    max: null,
  });

  // 7. A config the agent will not start with (the rest of selfware goes on without it).
  const cfg = r.config.problems;
  out.push({
    name: 'config',
    status: cfg.length ? 'CRITICAL' : 'OK',
    message: cfg.length ? `config ${cfg[0]}${cfg.length > 1 ? ` (and ${cfg.length - 1} more)` : ''}: the agent will not start until it is fixed` : 'config valid',
    value: cfg.length,
    warning: null,
    critical: 0,
    worse: 'above',
    uom: '',
    label: 'config_errors',
    min: 0,
    max: null,
  });

  // 8. Files in the run its owner cannot write: every checkpoint fails on them.
  out.push({
    name: 'writable',
    status: r.writable.ok ? 'OK' : 'CRITICAL',
    message: r.writable.ok ? 'the run is writable by its owner' : `run not writable by its owner: ${r.writable.message ?? `${r.writable.count} paths`}`,
    value: r.writable.count,
    warning: null,
    critical: 0,
    worse: 'above',
    uom: '',
    label: 'unwritable',
    min: 0,
    max: null,
  });

  // 9. Queue files the agent ignores, or set aside in queue/rejected/ (until a human fixes or
  // removes them): someone's task is not being done.
  const ignored = r.queue.invalid + r.queue.rejected;
  const first = r.queue.invalid_files[0] ?? r.queue.rejected_files[0] ?? 'see sw-agent status';
  out.push({
    name: 'queue',
    status: ignored ? 'WARNING' : 'OK',
    message: ignored ? `${plural(ignored, 'queue file')} not taken as tasks (${r.queue.rejected} set aside in queue/rejected/): ${first}` : 'every queue file is a task',
    value: ignored,
    warning: 0,
    critical: null,
    worse: 'above',
    uom: '',
    label: 'queue_ignored',
    min: 0,
    max: null,
  });

  // 10. Memory files set aside (not text, or too big) or unreadable: what the run learned is not
  // given to its tasks until a human looks.
  const mem = r.memory;
  const memBad = mem.set_aside.length + (mem.notes === null ? 1 : 0) + (mem.outcomes === null ? 1 : 0);
  out.push({
    name: 'memory',
    status: memBad ? 'WARNING' : 'OK',
    message: memBad
      ? mem.set_aside.length
        ? `${plural(mem.set_aside.length, 'memory file')} set aside in state/memory/: ${mem.set_aside[mem.set_aside.length - 1]}${mem.set_aside.length > 1 ? ` (the newest of ${mem.set_aside.length})` : ''}; read it, fix and move it back, or delete it`
        : `state/memory/${mem.notes === null ? 'notes.md' : 'outcomes.md'} cannot be read as text; the agent sets it aside at its next task`
      : 'the memory files are readable',
    value: memBad,
    warning: 0,
    critical: null,
    worse: 'above',
    uom: '',
    label: 'memory_bad',
    min: 0,
    max: null,
  });

  // 11. The task log damaged: a record skipped, a header or the database read from its copy, events missing.
  const dmg = r.tasklog_damage ?? [];
  out.push({
    name: 'tasklog',
    status: dmg.length ? 'WARNING' : 'OK',
    message: dmg.length ? `task log damaged: ${dmg[0]}${dmg.length > 1 ? ` (and ${dmg.length - 1} more)` : ''}; sw-recover repairs what can be` : 'the task log is intact',
    value: dmg.length,
    warning: 0,
    critical: null,
    worse: 'above',
    uom: '',
    label: 'tasklog_damage',
    min: 0,
    max: null,
  });
  return out;
}

export function worst(statuses: Status[]): Status {
  return statuses.reduce<Status>((a, b) => (ORDER.indexOf(b) > ORDER.indexOf(a) ? b : a), 'OK');
}

export function verdictOf(alerts: Alert[]): Status {
  return worst(alerts.map((a) => a.status));
}

/** The alerts that are not OK, worst first. */
export function problems(alerts: Alert[]): Alert[] {
  return alerts.filter((a) => a.status !== 'OK').sort((a, b) => ORDER.indexOf(b.status) - ORDER.indexOf(a.status));
}

/** A threshold as a Monitoring Plugins range: "0.5:" alerts below 0.5, "3600" above 3600. */
function range(v: number | null, worse: 'above' | 'below'): string {
  if (v === null) return '';
  return worse === 'below' ? `${v}:` : String(v);
}

export function perfdata(a: Alert, prefix = ''): string {
  const v = a.value === null ? 'U' : String(a.value);
  const tail = [range(a.warning, a.worse), range(a.critical, a.worse), a.min === null ? '' : String(a.min), a.max === null ? '' : String(a.max)];
  while (tail.length && tail[tail.length - 1] === '') tail.pop();
  return `${prefix}${a.label}=${v}${a.value === null ? '' : a.uom}${tail.length ? ';' + tail.join(';') : ''}`;
}

/** The one line of --check: "SELFWARE CRITICAL - success rate 20% over 1h | success=0.2;0.5:;0.25:;0;1 ...". */
export function checkLine(reports: Report[], opts: { all?: boolean } = {}): { status: Status; line: string } {
  const status = worst(reports.map((r) => r.verdict));
  // With --all, every label carries its run (stable as runs come and go); for one run, none does.
  const many = opts.all === true;
  const bad = reports.flatMap((r) => problems(r.alerts).map((a) => ({ r, a }))).sort((x, y) => ORDER.indexOf(y.a.status) - ORDER.indexOf(x.a.status));
  const text = bad.length
    ? bad.map(({ r, a }) => `${many ? `${r.run}: ` : ''}${a.message}`).join(', ')
    : reports.map((r) => `${many ? `${r.run}: ` : ''}${r.summary} in ${formatDuration(windowMs(r))}`).join(', ');
  const perf = reports.flatMap((r) => r.alerts.map((a) => perfdata(a, many ? `${r.run}_` : ''))).join(' ');
  return { status, line: `SELFWARE ${status} - ${pluginText(text || 'no runs')}${perf ? ` | ${perf}` : ''}` };
}
