// sw-recover's work: after a crash, make the run whole again before the agent
// starts. Validate state/, restore a checkpoint when it is not usable (newest
// that verifies first; none: a fresh start), reconcile the queue with the task
// log, checkpoint, record the recovery, then back off or escalate. Every step
// can be killed and run again: a marker records a restore in progress, and
// each step's result depends only on the task log and the checkpoint used.

import fs from 'node:fs';
import path from 'node:path';
import { workspaceDir, type RunConfig } from '../config/index.js';
import { EXIT, SwError, dataError, noInputError, tempFailError } from '../exit.js';
import { exists, writeFileAtomic } from '../fsutil.js';
import { lockHolder, tryLock, type Lock } from '../lock.js';
import { rejectionEvent } from '../queue/reject.js';
import { readQueue, writeTask, type Task, type TaskDefaults } from '../queue/task.js';
import type { RunPaths } from '../run.js';
import {
  agentLockFile,
  createCheckpointLocked,
  listCheckpoints,
  lockState,
  resolveId,
  initStateRepo,
  runExists,
  runPresent,
  verifyCheckpoints,
  type Checkpoint,
} from '../state/index.js';
import { TaskLog, describeCorrupt, type Snapshot } from '../tasklog/index.js';
import { systemdUnit } from '../notify.js';
import { agentProcess } from '../agent/state.js';
import { PLANNED_ENDS, checkEscalation, computeBackoff, crashed, type SessionInfo } from './backoff.js';
import { readJournalLocked } from '../tasklog/journal.js';
import { sha256 } from '../tasklog/copy.js';
import { appendLine, readTranscript, transcriptFile } from '../agent/transcript.js';
import { appendOutcome, hasOutcome } from '../agent/memory.js';
import { readArchiveIds } from '../queue/archive.js';
import { crashReason, readHistory, type History } from './history.js';
import { planReconcile, type ReconcileChange } from './reconcile.js';
import { freshState, keepForensics, restoreStateFiles, restoreWorkspace, stamp } from './restore.js';
import { validateState, type Validation } from './validate.js';

export { computeBackoff, checkEscalation } from './backoff.js';
export { planReconcile, placeFromLog } from './reconcile.js';

/** Errors that are not a failed recovery: nothing was attempted. */
const NOT_FAILURES = new Set<number>([EXIT.USAGE, EXIT.CONFIG, EXIT.TEMPFAIL, EXIT.NOINPUT]);

/** The exit status that tells systemd to stop restarting (RestartPreventExitStatus=). */
export const EXIT_ESCALATED = 79;

export type Action = 'none' | 'reconcile' | 'restore' | 'fresh' | 'rollback';

export interface RecoverResult {
  run: string;
  action: Action;
  /** crash, hang, unknown (after a crash), rollback, or null when nothing was done. */
  reason: string | null;
  detail: string;
  /** The crashed session handled. */
  session: string | null;
  /** The checkpoint restored, or the recovery checkpoint made. */
  checkpoint: string | null;
  recovery_checkpoint: string | null;
  rejected: Array<{ id: string; reason: string }>;
  problems: string[];
  repairs: string[];
  forensics: string[];
  reconciled: ReconcileChange[];
  requeued: number;
  lost: string[];
  crashes: number;
  backoff_ms: number;
  escalated: boolean;
  escalation: string | null;
  duration_ms: number;
  dry_run: boolean;
  notes: string[];
}

export interface RecoverOptions {
  /** The caller (the agent, recovering at its own start) holds the agent lock already. */
  agentLockHeld?: boolean;
  checkpoint?: string;
  dryRun?: boolean;
  /** Diagnostics as recovery goes (info lines; warnings are marked). */
  say?: (level: 'info' | 'warn' | 'notice', text: string) => void;
  now?: () => number;
}

/**
 * A crash recovery in progress (recovery.json): written before anything
 * changes, so a recovery killed and run again restores the same checkpoint
 * and reports every change the first one made.
 */
interface Marker {
  session: string;
  /** The checkpoint being restored, "fresh", or null while state/ is used as it is. */
  checkpoint: string | null;
  rejected: Array<{ id: string; reason: string }>;
  forensics: string[];
  reconciled: ReconcileChange[];
}

/** Changes of an earlier, interrupted pass followed by this pass's. */
function mergeChanges(prior: ReconcileChange[], now: ReconcileChange[]): ReconcileChange[] {
  const by = new Map(prior.map((c) => [c.task, c]));
  for (const c of now) {
    const p = by.get(c.task);
    by.set(c.task, p ? { ...c, before: p.before } : c);
  }
  return [...by.values()].sort((a, b) => a.task.localeCompare(b.task));
}

const markerFile = (paths: RunPaths): string => path.join(paths.runDir, 'recovery.json');

function readMarker(paths: RunPaths): Marker | null {
  try {
    return JSON.parse(fs.readFileSync(markerFile(paths), 'utf8')) as Marker;
  } catch {
    return null;
  }
}

function taskDefaults(config: RunConfig): TaskDefaults {
  return { max_attempts: config.agent.max_attempts, timeout: config.agent.task_timeout };
}

function emptyResult(run: string, dryRun: boolean): RecoverResult {
  return {
    run,
    action: 'none',
    reason: null,
    detail: '',
    session: null,
    checkpoint: null,
    recovery_checkpoint: null,
    rejected: [],
    problems: [],
    repairs: [],
    forensics: [],
    reconciled: [],
    requeued: 0,
    lost: [],
    crashes: 0,
    backoff_ms: 0,
    escalated: false,
    escalation: null,
    duration_ms: 0,
    dry_run: dryRun,
    notes: [],
  };
}

/**
 * The usual start after a clean stop, answered from the journal alone
 * (without loading the task log's database): the newest session event there
 * is a planned end, or the newest session was already recovered. null: look
 * at the whole log.
 */
function quickCheck(paths: RunPaths): string | null {
  let records: Array<{ event: Record<string, unknown> }> | null;
  try {
    records = readJournalLocked(paths.tasklogJournal, (j) => {
      // A damaged task log is repaired on any start, clean or not: the whole path.
      if (j.corrupt.length > 0 || j.headerDamage) return null;
      if (j.header.db_sha256 && (!exists(paths.tasklogDb) || sha256(fs.readFileSync(paths.tasklogDb)) !== j.header.db_sha256)) return null;
      return j.records;
    });
  } catch {
    return null;
  }
  if (!records) return null;
  const recovered = new Set<string>();
  for (let i = records.length - 1; i >= 0; i--) {
    const e = (records[i] as { event: Record<string, unknown> }).event;
    if (e.t === 'recovery' && e.ok !== false && typeof e.session === 'string') recovered.add(e.session);
    else if (e.t === 'session_end') {
      // The memory guard's end is checkpointed too, but it counts (once) towards the backoff and the escalation.
      if (e.state === 'rss') return recovered.has(String(e.session)) ? `session ${String(e.session)} was stopped by the memory guard and counted already: nothing to do` : null;
      return typeof e.state === 'string' && PLANNED_ENDS.has(e.state) ? `session ${String(e.session)} ended cleanly: nothing to recover` : null;
    } else if (e.t === 'session_start') {
      return recovered.has(String(e.session)) ? `session ${String(e.session)} was already recovered: nothing to do` : null;
    }
  }
  return null;
}

/** The agent's lock, taken so no agent starts while we work; exit 75 if one runs. */
function lockAgent(paths: RunPaths): Lock {
  const l = tryLock(agentLockFile(paths));
  if (l) return l;
  const h = lockHolder(agentLockFile(paths));
  throw tempFailError(`run '${paths.run}' has its agent running${h ? ` (pid ${h.pid})` : ''}; stop it first`);
}

/**
 * What the task log says. A missing journal is started again (from the
 * database when there is one); a corrupt database is moved aside so that the
 * journal's events still count.
 */
async function openHistory(paths: RunPaths, res: RecoverResult, dryRun: boolean): Promise<History> {
  const log = TaskLog.forRun(paths);
  if (!log.exists()) {
    res.problems.push(`${paths.tasklogJournal}: missing${dryRun ? '' : '; started again'}`);
    if (dryRun) return readHistory(null);
    await log.init();
  }
  let snap: Snapshot;
  try {
    snap = await log.snapshot();
  } catch (e) {
    if (!(e instanceof SwError) || e.code !== EXIT.DATAERR || !exists(paths.tasklogDb) || /newer than this selfware/.test(e.message)) throw e;
    res.problems.push(e.message);
    if (dryRun) throw e;
    const aside = `${paths.tasklogDb}.corrupt-${Date.now()}`;
    fs.renameSync(paths.tasklogDb, aside);
    res.notes.push(`the task log database was unreadable; moved to ${aside}; the journal's events still count`);
    res.forensics.push(aside);
    snap = await log.snapshot();
    snap.damage.push(`${paths.tasklogDb}: unreadable, and no intact copy of it in state.git: the events before the journal are lost`);
  }
  let history: History;
  try {
    if (snap.torn) res.notes.push('task log: a torn last record (from the crash) was dropped');
    for (const c of snap.corrupt) res.problems.push(`${describeCorrupt(paths.tasklogJournal, c)}; skipped`);
    res.problems.push(...snap.damage);
    res.notes.push(...snap.warnings);
    history = readHistory(snap);
  } finally {
    snap.db.close();
  }
  if (!dryRun && (snap.damage.length > 0 || snap.corrupt.length > 0)) {
    // Repaired: the good records folded into a new database (and its copy), a new journal; the damaged files kept aside.
    const c = await log.compact({ repair: true });
    res.forensics.push(...c.forensics);
    res.repairs.push(`task log: rewritten from what was intact (${c.folded} events folded at position ${c.position}); the damaged files kept as ${c.forensics.map((f) => path.basename(f)).join(', ')}`);
  }
  return history;
}

async function recoveryCheckpointFor(paths: RunPaths, session: string): Promise<Checkpoint | null> {
  const { checkpoints } = await listCheckpoints(paths);
  return checkpoints.find((c) => c.kind === 'recovery' && c.message.includes(`session ${session}`)) ?? null;
}

/** Reconcile the queue files with the log (writes unless dry run). */
async function reconcile(
  paths: RunPaths,
  config: RunConfig,
  history: History,
  tasks: Task[] | null,
  res: RecoverResult,
  dryRun: boolean,
  prior: ReconcileChange[] = [],
  save: () => void = () => {},
): Promise<void> {
  const current = tasks ?? (await readQueue(paths.stateDir, taskDefaults(config))).tasks;
  const plan = planReconcile(current, history.tasks, new Date().toISOString(), readArchiveIds(paths.stateDir));
  res.reconciled = mergeChanges(prior, plan.changes);
  res.lost = plan.lost;
  res.requeued = res.reconciled.filter((c) => c.after.status === 'pending' && c.before !== null && c.before.status !== 'pending').length;
  for (const id of plan.lost) res.problems.push(`task ${id} is in the task log but not in the queue, and the log lacks its definition: not restored`);
  for (const k of plan.kept) {
    res.problems.push(
      `task ${k.task}: its queue file says ${k.status} at attempt ${k.attempt}, ahead of the task log (${k.log.status} at attempt ${k.log.attempt}): the log lost a record; kept ${k.status}${dryRun ? '' : ', and its outcome written to the log again'}`,
    );
  }
  if (dryRun) return;
  // Recorded before the files change, so a recovery killed half-way reports all of it when run again.
  save();
  if (plan.restore.length > 0) {
    TaskLog.forRun(paths).appendMany(plan.restore.map((r) => ({ t: 'task_outcome', task: r.task, attempt: r.attempt, outcome: r.outcome, reason: r.reason, ts: r.ts, restored: 'from the queue file' })));
  }
  for (const t of plan.write) await writeTask(paths.stateDir, t);
  res.repairs.push(...closeTranscripts(paths, history, plan.changes));
  res.repairs.push(...rememberOutcomes(paths, history, plan.changes));
}

/**
 * The agent records an outcome in the log, then ends the transcript, then
 * writes the queue file: killed between the first two, the task is placed by
 * the log but its transcript has no end. Written here from the log (marked
 * restored), so the transcript says how the attempt ended.
 */
function closeTranscripts(paths: RunPaths, history: History, changes: ReconcileChange[]): string[] {
  const out: string[] = [];
  for (const c of changes) {
    const latest = history.tasks.get(c.task)?.latest;
    if (!latest || latest.outcome === null) continue;
    const file = transcriptFile(paths.stateDir, c.task);
    const lines = readTranscript(file);
    if (!lines.some((l) => l.type === 'attempt' && l.attempt === latest.attempt)) continue;
    if (lines.some((l) => l.type === 'end' && l.attempt === latest.attempt)) continue;
    appendLine(file, { type: 'end', attempt: latest.attempt, ts: new Date().toISOString(), outcome: latest.outcome, reason: latest.reason, restored: 'from the task log' });
    out.push(`transcript of task ${c.task}: the end of attempt ${latest.attempt} (${latest.outcome}) written from the task log`);
  }
  return out;
}

/**
 * The agent records an outcome in the task log, then in the run's memory
 * (state/memory/outcomes.md): killed between the two, the memory lacks the
 * line. Written here from the log, saying so.
 */
function rememberOutcomes(paths: RunPaths, history: History, changes: ReconcileChange[]): string[] {
  const out: string[] = [];
  for (const c of changes) {
    const latest = history.tasks.get(c.task)?.latest;
    if (!latest || latest.outcome === null || latest.outcome === 'cancelled') continue;
    if (hasOutcome(paths.stateDir, c.task, latest.attempt)) continue;
    try {
      // The time and steps the log recorded, not the recovery's: the line says when the attempt ended (and a
      // recovery killed and run again writes the same line).
      const time = new Date(latest.endedAt ?? Date.now());
      appendOutcome(paths.stateDir, { time, task: c.task, attempt: latest.attempt, outcome: latest.outcome === 'completed' ? 'done' : latest.outcome, reason: latest.reason, steps: latest.steps ?? null, detail: 'written by sw-recover from the task log' });
      out.push(`memory: the outcome of task ${c.task} attempt ${latest.attempt} (${latest.outcome}) written from the task log`);
    } catch (e) {
      out.push(`memory: cannot write the outcome of task ${c.task} attempt ${latest.attempt}: ${(e as Error).message}`);
    }
  }
  return out;
}

export async function recover(paths: RunPaths, config: RunConfig, opts: RecoverOptions = {}): Promise<RecoverResult> {
  const now = opts.now ?? Date.now;
  const started = now();
  const dryRun = !!opts.dryRun;
  const say = opts.say ?? (() => {});
  const res = emptyResult(paths.run, dryRun);
  const ws = workspaceDir(config, paths);

  if (!runPresent(paths) || (opts.checkpoint && !runExists(paths))) {
    if (opts.checkpoint) throw noInputError(`no such run '${paths.run}' (nothing at '${paths.runDir}')`);
    res.detail = 'the run has no state yet: nothing to recover';
    res.duration_ms = now() - started;
    return res;
  }
  // A dry run changes nothing: it takes no lock, so it works while the agent runs (and for a reader who may not write the run).
  if (dryRun && !opts.agentLockHeld && !opts.checkpoint) {
    const live = agentProcess(paths);
    if (live) {
      res.detail = `the agent is running (pid ${live.pid}): nothing to recover while it runs`;
      res.duration_ms = now() - started;
      return res;
    }
  }
  const agentLock = opts.agentLockHeld || dryRun ? null : lockAgent(paths);
  if (!opts.checkpoint && !exists(markerFile(paths))) {
    const quick = quickCheck(paths);
    if (quick) {
      agentLock?.release();
      res.detail = quick;
      res.duration_ms = now() - started;
      return res;
    }
  }
  let stateLock: Lock | null = null;
  let session: SessionInfo | undefined;
  let failures = 0;
  try {
    if (!dryRun) stateLock = await lockState(paths);
    const history = await openHistory(paths, res, dryRun);
    if (opts.checkpoint) {
      await rollback(paths, config, ws, history, opts.checkpoint, res, dryRun, say, now);
    } else {
      session = history.sessions[0];
      const marker = readMarker(paths);
      if (session && session.endState === 'rss' && !history.recovered.has(session.id)) {
        // The memory guard: checkpointed, nothing to recover, but a failure for the backoff and the escalation below.
        res.session = session.id;
        res.reason = 'memory';
        res.detail = `session ${session.id} was stopped by the memory guard${session.reason ? ` (${session.reason})` : ''}: nothing to recover, but it counts like a crash`;
        say('warn', res.detail);
      } else if (!session || !crashed(session) || history.recovered.has(session.id)) {
        if (marker && !dryRun) fs.rmSync(markerFile(paths), { force: true });
        res.detail = !session
          ? 'no session has run yet: nothing to recover'
          : history.recovered.has(session.id) && crashed(session)
            ? `session ${session.id} was already recovered: nothing to do`
            : `session ${session.id} ended cleanly: nothing to recover`;
        res.duration_ms = now() - started;
        return res;
      } else await recoverCrash(paths, config, ws, history, session, marker, res, dryRun, say);
      const b = computeBackoff(history.sessions, config.recovery);
      res.crashes = b.crashes;
      res.backoff_ms = b.delayMs;
      const esc = checkEscalation(history.sessions, history.failedRecoveries, history.lastEscalation, now(), config.recovery);
      failures = esc.failures;
      if (esc.escalate) {
        res.escalated = true;
        res.escalation = esc.why;
        res.backoff_ms = 0;
      }
    }
    res.duration_ms = now() - started;
    if (!dryRun) {
      const log = TaskLog.forRun(paths);
      log.append({
        t: 'recovery',
        session: res.session,
        reason: res.reason,
        action: res.action,
        checkpoint: res.checkpoint,
        reconciled: res.reconciled.length,
        requeued: res.requeued,
        duration_ms: res.duration_ms,
        backoff_ms: res.backoff_ms,
        ok: true,
        detail: res.detail,
      });
      if (res.escalated) log.append({ t: 'escalation', reason: res.escalation, failures, session: res.session });
      fs.rmSync(markerFile(paths), { force: true });
    }
    return res;
  } catch (e) {
    // A recovery that fails counts towards escalation.
    if (!dryRun && !(e instanceof SwError && NOT_FAILURES.has(e.code))) {
      try {
        TaskLog.forRun(paths).append({ t: 'recovery', session: session?.id ?? null, reason: res.reason, action: res.action, ok: false, detail: (e as Error).message, duration_ms: now() - started });
      } catch {
        /* the log itself may be what failed */
      }
    }
    throw e;
  } finally {
    stateLock?.release();
    agentLock?.release();
  }
}

/**
 * An escalation recorded after the newest session began that no agent has
 * delivered yet. systemd honours RestartPreventExitStatus= only for the main
 * process, so sw-recover (an ExecStartPre=) records the escalation and the
 * agent, the main process, exits with EXIT_ESCALATED.
 */
export async function pendingEscalation(paths: RunPaths): Promise<string | null> {
  const log = TaskLog.forRun(paths);
  if (!log.exists()) return null;
  const snap = await log.snapshot();
  try {
    const esc = snap.db.exec('SELECT ts, reason FROM escalations ORDER BY ts DESC, pos DESC LIMIT 1')[0]?.values[0];
    if (!esc) return null;
    const ts = Number(esc[0]);
    const delivered = snap.db.exec(`SELECT count(*) FROM events WHERE type = 'escalation_delivered' AND ts >= ${ts}`)[0]?.values[0]?.[0];
    const laterSession = snap.db.exec(`SELECT count(*) FROM sessions WHERE started_at > ${ts}`)[0]?.values[0]?.[0];
    return Number(delivered) === 0 && Number(laterSession) === 0 ? String(esc[1] ?? 'escalated') : null;
  } finally {
    snap.db.close();
  }
}

/** Record that the escalation was delivered (the agent is about to exit with EXIT_ESCALATED). */
export function markEscalationDelivered(paths: RunPaths, reason: string): void {
  TaskLog.forRun(paths).append({ t: 'escalation_delivered', reason });
}

async function recoverCrash(
  paths: RunPaths,
  config: RunConfig,
  ws: string,
  history: History,
  session: SessionInfo,
  marker: Marker | null,
  res: RecoverResult,
  dryRun: boolean,
  say: NonNullable<RecoverOptions['say']>,
): Promise<void> {
  const why = crashReason(session, history.serviceExit);
  res.session = session.id;
  res.reason = why.reason;
  res.detail = `session ${session.id} did not stop cleanly (${why.reason}: ${why.detail})`;
  say('notice', res.detail);
  const defaults = taskDefaults(config);
  if (!runExists(paths)) {
    const lost = `${path.join(paths.runDir, 'state.git')} is missing: every checkpoint is lost${dryRun ? '' : '; a new, empty one was made'}`;
    res.problems.push(lost);
    say('warn', lost);
    if (!dryRun) await initStateRepo(paths);
  }
  let tasks: Task[] | null = null;
  const prior = marker && marker.session === session.id ? marker : null;
  let restoring: string | null = prior?.checkpoint ?? null;
  const save = (): void => {
    if (dryRun) return;
    const m: Marker = { session: session.id, checkpoint: restoring, rejected: res.rejected, forensics: res.forensics, reconciled: res.reconciled };
    writeFileAtomic(markerFile(paths), JSON.stringify(m) + '\n');
  };
  if (prior) {
    res.notes.push(`resuming an interrupted recovery${prior.checkpoint ? ` (restoring ${prior.checkpoint})` : ''}`);
    if (!dryRun) {
      // A recovery killed before it finished (an agent that dies in its own recovery, every start) is a failed one:
      // it counts towards escalation, or such a run would restart for ever.
      TaskLog.forRun(paths).append({ t: 'recovery', session: session.id, reason: why.reason, action: prior.checkpoint ? 'restore' : 'reconcile', ok: false, detail: 'interrupted: the recovery was killed before it finished' });
      history.failedRecoveries.push(Date.now());
    }
    res.rejected = prior.rejected;
    res.forensics = [...new Set([...prior.forensics, ...res.forensics])];
  } else save();
  if (!prior?.checkpoint) {
    const v = await validateState(paths, defaults, { repair: !dryRun });
    res.repairs.push(...v.repairs);
    for (const r of v.repairs) say('info', r);
    noteRejections(paths, v, res, dryRun, say);
    if (v.ok) {
      res.action = 'reconcile';
      say('info', 'state/ is valid: the files the crash left are the newest state');
      tasks = v.tasks;
    } else {
      res.problems.push(...v.problems);
      for (const p of v.problems) say('warn', p);
    }
  }
  if (res.action !== 'reconcile') {
    tasks = await restoreNewestValid(paths, config, ws, session, prior, res, dryRun, say, (id) => {
      restoring = id;
      save();
    });
  }
  await reconcile(paths, config, history, tasks, res, dryRun, prior?.reconciled ?? [], save);
  for (const c of res.reconciled) say('info', describeChange(c));
  if (!dryRun) {
    const existing = await recoveryCheckpointFor(paths, session.id);
    if (existing) res.recovery_checkpoint = existing.id;
    else {
      const said: string[] = [];
      try {
        const made = await createCheckpointLocked(paths, ws, { kind: 'recovery', message: `recovery of session ${session.id} (${res.reason}, ${res.action})`, checkObjects: said });
        if (!made.skipped) res.recovery_checkpoint = made.checkpoint.id;
      } finally {
        noteObjectRepairs(said, res, say);
      }
    }
  }
  if (res.action === 'reconcile') res.checkpoint = res.recovery_checkpoint;
}

/** Damaged objects of the checkpoint store found and set aside while making the recovery checkpoint: problems (the damage) and repairs (what was done). */
function noteObjectRepairs(said: string[], res: RecoverResult, say: NonNullable<RecoverOptions['say']>): void {
  for (const line of said) {
    if (/^state\.git: object /.test(line)) res.problems.push(`${line}; written again from state/`);
    else {
      res.repairs.push(line);
      const m = / to (\S+state\.git\.damaged-\d+)/.exec(line);
      if (m && !res.forensics.includes(m[1] as string)) res.forensics.push(m[1] as string);
    }
    say('warn', line);
  }
}

/** Queue entries validation set aside: a repair each, said once as a warning, and a task_rejected event. */
function noteRejections(paths: RunPaths, v: Validation, res: RecoverResult, dryRun: boolean, say: NonNullable<RecoverOptions['say']>): void {
  for (const r of v.rejected) {
    const line = `rejected ${r.error}; ${dryRun ? 'would move it' : 'moved it'} to ${r.to}`;
    res.repairs.push(line);
    say('warn', line);
    if (!dryRun) TaskLog.forRun(paths).append(rejectionEvent(paths.stateDir, r));
  }
  for (const n of v.notes) if (!res.notes.includes(n)) res.notes.push(n);
}

/** Try checkpoints newest first; each must verify and its files must validate. None: a fresh start. */
async function restoreNewestValid(
  paths: RunPaths,
  config: RunConfig,
  ws: string,
  session: SessionInfo,
  resuming: Marker | null,
  res: RecoverResult,
  dryRun: boolean,
  say: NonNullable<RecoverOptions['say']>,
  mark: (checkpoint: string) => void,
): Promise<Task[]> {
  const defaults = taskDefaults(config);
  const now = new Date();
  if (!dryRun && res.forensics.length === 0) {
    const kept = await keepForensics(paths, `recovery-${session.id}`, `recovery of session ${session.id}`);
    res.forensics.push(kept);
    say('info', `what state/ held is kept at ${kept}`);
  }
  let list: Checkpoint[] = [];
  try {
    const l = await listCheckpoints(paths);
    list = l.checkpoints;
    for (const b of l.broken) if (!res.rejected.some((r) => r.id === b.id)) res.rejected.push({ id: b.id, reason: b.reason });
  } catch (e) {
    res.problems.push(`the checkpoints cannot be listed: ${(e as Error).message}`);
  }
  // On a resumed recovery, start again at the checkpoint it was restoring.
  const skip = new Set(res.rejected.map((r) => r.id));
  if (resuming?.checkpoint === 'fresh') list = [];
  for (const c of list) {
    if (skip.has(c.id)) continue;
    const [report] = await verifyCheckpoints(paths, ws, [c], []);
    if (!report?.valid) {
      const reason = report?.errors.join('; ') ?? 'unverifiable';
      res.rejected.push({ id: c.id, reason });
      say('warn', `checkpoint ${c.id} rejected: ${reason}`);
      continue;
    }
    if (dryRun) {
      res.action = 'restore';
      res.checkpoint = c.id;
      say('info', `would restore checkpoint ${c.id} (${c.kind}, ${c.time})`);
      return (await readQueue(paths.stateDir, defaults)).tasks;
    }
    mark(c.id);
    await restoreStateFiles(paths, c);
    const v = await validateState(paths, defaults, { repair: true });
    noteRejections(paths, v, res, false, say);
    if (!v.ok) {
      const reason = `its files do not validate: ${v.problems.join('; ')}`;
      res.rejected.push({ id: c.id, reason });
      say('warn', `checkpoint ${c.id} rejected: ${reason}`);
      continue;
    }
    res.action = 'restore';
    res.checkpoint = c.id;
    say('notice', `restored state/ from checkpoint ${c.id} (${c.kind}, ${c.time})`);
    return v.tasks;
  }
  res.action = 'fresh';
  res.checkpoint = null;
  const loud = `no checkpoint can be used${res.rejected.length ? ` (${res.rejected.length} rejected)` : ''}: starting state/ afresh from the config; tasks come back from the task log`;
  say('warn', loud.toUpperCase().slice(0, 1) + loud.slice(1));
  res.notes.push(loud);
  if (dryRun) return [];
  mark('fresh');
  res.notes.push(...(await freshState(paths, ws, now)));
  return (await readQueue(paths.stateDir, defaults)).tasks;
}

async function rollback(
  paths: RunPaths,
  config: RunConfig,
  ws: string,
  history: History,
  id: string,
  res: RecoverResult,
  dryRun: boolean,
  say: NonNullable<RecoverOptions['say']>,
  now: () => number,
): Promise<void> {
  const { checkpoints } = await listCheckpoints(paths);
  const c = resolveId(checkpoints, id);
  const [report] = await verifyCheckpoints(paths, ws, [c], []);
  if (!report?.valid) throw dataError(`checkpoint ${c.id} is invalid: ${report?.errors.join('; ')}`);
  res.action = 'rollback';
  res.reason = 'rollback';
  res.checkpoint = c.id;
  res.detail = `rollback of state/ and the workspace to checkpoint ${c.id} (${c.kind}, ${c.time})`;
  say('notice', (dryRun ? 'would do a ' : '') + res.detail);
  if (dryRun) {
    await reconcile(paths, config, history, null, res, true);
    return;
  }
  const when = new Date(now());
  res.forensics.push(await keepForensics(paths, `rollback-${stamp(when)}`, `rollback to ${c.id}`));
  await restoreStateFiles(paths, c);
  res.forensics.push(`${await restoreWorkspace(ws, c, when)} in ${path.join(ws, '.git')}`);
  for (const f of res.forensics) say('info', `what was there before is kept at ${f}`);
  await reconcile(paths, config, history, null, res, false);
  for (const ch of res.reconciled) say('info', describeChange(ch));
  const said: string[] = [];
  try {
    const made = await createCheckpointLocked(paths, ws, { kind: 'recovery', message: `rollback to checkpoint ${c.id}`, checkObjects: said });
    if (!made.skipped) res.recovery_checkpoint = made.checkpoint.id;
  } finally {
    noteObjectRepairs(said, res, say);
  }
}

export function describeChange(c: ReconcileChange): string {
  const before = c.before ? `${c.before.status} (attempt ${c.before.attempt})` : 'missing from the queue';
  return `task ${c.task}: ${before} -> ${c.after.status} (attempt ${c.after.attempt}): ${c.rule}`;
}

/** ExecStopPost=: note how systemd saw the service end ($SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS). */
export function recordServiceExit(paths: RunPaths, env: NodeJS.ProcessEnv): boolean {
  const log = TaskLog.forRun(paths);
  if (!log.exists()) return false;
  log.append({
    t: 'service_exit',
    unit: systemdUnit(),
    result: env.SERVICE_RESULT ?? null,
    exit_code: env.EXIT_CODE ?? null,
    exit_status: env.EXIT_STATUS ?? null,
  });
  return true;
}
