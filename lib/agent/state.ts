// The plain files the agent and humans share in state/: agent.json (what the
// agent is doing, and whether the run is paused), the queue, and
// approvals/<id>.json. Every change is made under the run's state lock, so the
// agent, `sw-agent` commands and timers never lose each other's updates.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { RunConfig } from '../config/schema.js';
import { EXIT, SwError, noInputError, usageError } from '../exit.js';
import { exists, mkdirDurable, writeFileAtomic } from '../fsutil.js';
import { lockHolder } from '../lock.js';
import { listRejected } from '../queue/reject.js';
import { archivedTask, readArchive, readArchiveIds, readArchiveIndex, readDropped } from '../queue/archive.js';
import { MAX_TASK_TIMEOUT_MS, TASK_STATUSES, parseTask, queueDir, readQueue, readTaskFile, taskFile, taskSpec, titleOf, writeTask, type QueueRead, type Task, type TaskDefaults, type TaskStatus } from '../queue/task.js';
import { parseJsonText, readTextFile } from '../safefile.js';
import type { RunPaths } from '../run.js';
import { INITIAL_AGENT_STATE, agentLockFile, initRun, lockState, runExists } from '../state/layout.js';
import { workspaceDir } from '../config/index.js';
import { TaskLog } from '../tasklog/index.js';
import { parseDuration } from '../units.js';
import type { Action } from './schema.js';

export interface AgentState {
  status: string;
  paused: boolean;
  pause_reason: string | null;
  task: string | null;
  attempt: number | null;
  step: number | null;
  session: string | null;
  pid: number | null;
  quantization: string | null;
  model_loaded: boolean;
  tokens_per_s: number | null;
  updated: string | null;
}

const DEFAULT_STATE: AgentState = {
  ...INITIAL_AGENT_STATE,
  pause_reason: null,
  attempt: null,
  pid: null,
  quantization: null,
  model_loaded: false,
  tokens_per_s: null,
  updated: null,
} as AgentState;

/**
 * The agent process of a run, if one runs: the pid its lock file names, alive
 * and an sw-agent. Read without touching the lock, so asking never gets in the
 * way of an agent starting.
 */
export function agentProcess(paths: RunPaths): { pid: number } | null {
  return agentProcessAt(agentLockFile(paths));
}

/**
 * The same from the lock file alone, with the process looked up under `proc`
 * (the governor's may be moved). A pid that is gone has no command line there
 * and a zombie an empty one, so reading it is also the check that it is alive.
 */
export function agentProcessAt(lockFile: string, proc = '/proc'): { pid: number } | null {
  const h = lockHolder(lockFile);
  if (!h || !h.program.startsWith('sw-agent')) return null;
  try {
    if (!fs.readFileSync(path.join(proc, String(h.pid), 'cmdline'), 'utf8').includes('sw-agent')) return null;
  } catch {
    return null;
  }
  return { pid: h.pid };
}

export function agentFile(paths: RunPaths): string {
  return path.join(paths.stateDir, 'agent.json');
}

export function readAgentState(paths: RunPaths): AgentState {
  try {
    const v = parseJsonText(agentFile(paths), readTextFile(agentFile(paths), 'agent'));
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ...DEFAULT_STATE };
    return { ...DEFAULT_STATE, ...(v as Partial<AgentState>) };
  } catch {
    return { ...DEFAULT_STATE };
  }
}

/** Change agent.json under the state lock; returns the new state. */
export async function updateAgentState(paths: RunPaths, change: Partial<AgentState> | ((s: AgentState) => Partial<AgentState>)): Promise<AgentState> {
  const lock = await lockState(paths);
  try {
    const cur = readAgentState(paths);
    const next = { ...cur, ...(typeof change === 'function' ? change(cur) : change), updated: new Date().toISOString() };
    writeFileAtomic(agentFile(paths), JSON.stringify(next, null, 2) + '\n');
    return next;
  } finally {
    lock.release();
  }
}

/** Create the run if it does not exist yet (queueing work before the first start is normal). */
export async function ensureRun(paths: RunPaths, config: RunConfig): Promise<void> {
  if (runExists(paths)) return;
  const lock = await lockState(paths);
  try {
    await initRun(paths, workspaceDir(config, paths));
  } finally {
    lock.release();
  }
}

export function taskDefaults(config: RunConfig): TaskDefaults {
  return { max_attempts: config.agent.max_attempts, timeout: config.agent.task_timeout };
}

function slug(text: string): string {
  const s = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  return s === '' ? 'task' : s;
}

/** A task's --timeout, checked before anything is touched. */
export function parseTaskTimeout(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0 || ms > MAX_TASK_TIMEOUT_MS) throw usageError(`option '--timeout <duration>': expected a duration up to 4h such as 30m, got '${text}'`);
  return ms;
}

export interface AddOptions {
  prompt: string;
  title?: string;
  verify?: string | null;
  priority?: number;
  maxAttempts?: number;
  timeout?: string;
  source?: string;
}

/** Queue a task; returns it (its id is what `sw-agent add` prints). */
export async function addTask(paths: RunPaths, config: RunConfig, opts: AddOptions): Promise<Task> {
  const prompt = opts.prompt.trim();
  if (prompt === '') throw usageError('the prompt is empty');
  const timeout = opts.timeout === undefined ? config.agent.task_timeout : parseTaskTimeout(opts.timeout);
  const title = opts.title ?? titleOf(prompt);
  const lock = await lockState(paths);
  try {
    mkdirDurable(queueDir(paths.stateDir));
    let id: string;
    // Not an id a finished task had either (its files may be in the archive).
    const used = readArchiveIds(paths.stateDir);
    do id = `${slug(title)}-${crypto.randomBytes(2).toString('hex')}`;
    while (exists(taskFile(paths.stateDir, id)) || used.has(id));
    const now = new Date().toISOString();
    const task: Task = {
      id,
      title,
      prompt,
      verify: opts.verify ?? null,
      priority: opts.priority ?? 0,
      max_attempts: opts.maxAttempts ?? config.agent.max_attempts,
      timeout,
      status: 'pending',
      attempt: 1,
      created: now,
      updated: now,
      source: opts.source ?? 'cli',
      reason: null,
    };
    await writeTask(paths.stateDir, task);
    logTaskAdded(paths, task);
    return task;
  } finally {
    lock.release();
  }
}

export function logTaskAdded(paths: RunPaths, t: Task): void {
  TaskLog.forRun(paths).append({ t: 'task_added', task: t.id, title: t.title, priority: t.priority, max_attempts: t.max_attempts, source: t.source, spec: taskSpec(t) });
}

/**
 * One task, read fresh from its file by the rules the queue is read by: 66
 * if there is none, 65 naming the file if it is not a valid task.
 */
export async function readTask(paths: RunPaths, config: RunConfig, id: string): Promise<Task> {
  // A dropped-in ID.yml is the task until the agent writes it out as ID.yaml.
  for (const file of [taskFile(paths.stateDir, id), path.join(queueDir(paths.stateDir), `${id}.yml`)]) {
    try {
      return await readTaskFile(file, taskDefaults(config));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  const aside = listRejected(paths.stateDir).find((r) => /^(.*)\.ya?ml(\.\d+)?$/.exec(path.basename(r.file))?.[1] === id);
  throw noInputError(`no such task '${id}'${aside ? ` (${aside.file} was set aside${aside.reason ? `: ${aside.reason}` : ''})` : ''}`);
}

/** Cancel a task that has not ended; the agent stops it at its next step if it is running. */
export async function cancelTask(paths: RunPaths, config: RunConfig, id: string, reason = 'cancelled by a human'): Promise<Task> {
  const lock = await lockState(paths);
  try {
    const gone = readDropped(paths.stateDir).get(id);
    if (gone) throw new SwError(`task ${id} is already ${gone.status} (archived)`, EXIT.FAIL);
    const { task: t, archive } = await findTask(paths, config, id);
    if (t.status === 'completed' || t.status === 'failed' || t.status === 'cancelled') throw new SwError(`task ${id} is already ${t.status}${archive ? ' (archived)' : ''}`, EXIT.FAIL);
    const next: Task = { ...t, status: 'cancelled', reason, updated: new Date().toISOString() };
    TaskLog.forRun(paths).append({ t: 'task_outcome', task: id, attempt: t.attempt, outcome: 'cancelled', reason });
    await writeTask(paths.stateDir, next);
    return next;
  } finally {
    lock.release();
  }
}

export async function setPaused(paths: RunPaths, paused: boolean, reason: string | null): Promise<AgentState> {
  const s = await updateAgentState(paths, { paused, pause_reason: paused ? reason : null });
  TaskLog.forRun(paths).append({ t: paused ? 'paused' : 'resumed', reason });
  return s;
}

/** How many tasks are in each status: the queue's, and the archive's from its index (not inflated). */
export async function taskCounts(paths: RunPaths, config: RunConfig): Promise<QueueRead & { counts: Record<TaskStatus, number> }> {
  const q = await readQueue(paths.stateDir, taskDefaults(config));
  const counts = Object.fromEntries(TASK_STATUSES.map((st) => [st, 0])) as Record<TaskStatus, number>;
  const live = new Set<string>();
  for (const t of q.tasks) {
    counts[t.status]++;
    live.add(t.id);
  }
  for (const [id, st] of readArchiveIndex(paths.stateDir)) if (!live.has(id) && st in counts) counts[st as TaskStatus]++;
  return { ...q, counts };
}

/** The queue's tasks and the archive's (lib/queue/archive.ts), as one list; which ids are archived; what of the archive could not be read. */
export async function listTasks(paths: RunPaths, config: RunConfig): Promise<QueueRead & { archived: Set<string>; archiveProblems: string[] }> {
  const defaults = taskDefaults(config);
  const q = await readQueue(paths.stateDir, defaults);
  const { entries, problems } = readArchive(paths.stateDir);
  const live = new Set(q.tasks.map((t) => t.id));
  const archived = new Set<string>();
  const tasks = [...q.tasks];
  for (const e of entries.values()) {
    // A pass stopped before it removed the live files: the live ones stand.
    if (live.has(e.id)) continue;
    try {
      tasks.push(await parseTask(path.join(e.file, e.name), e.queue, defaults));
      archived.add(e.id);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return { tasks, invalid: q.invalid, archived, archiveProblems: problems };
}

/** A task from the queue or, finished and archived, from the archive, with its transcript's text (null: none). */
export async function findTask(paths: RunPaths, config: RunConfig, id: string): Promise<{ task: Task; transcript: string | null; archive: string | null }> {
  try {
    const task = await readTask(paths, config, id);
    return { task, transcript: null, archive: null };
  } catch (e) {
    if ((e as SwError).code !== EXIT.NOINPUT) throw e;
    const a = await archivedTask(paths.stateDir, id, taskDefaults(config));
    if (!a) {
      const gone = readDropped(paths.stateDir).get(id);
      if (gone) throw new SwError(`task ${id} is ${gone.status}; its archive of ${gone.day} has left state/ (past agent.archive_keep): the checkpoints of that day hold it`, EXIT.NOINPUT);
      throw e;
    }
    return { task: a.task, transcript: a.transcript, archive: a.file };
  }
}

// Approvals.

export interface Approval {
  id: string;
  task: string;
  attempt: number;
  step: number;
  action: Action;
  rule: string | null;
  requested: string;
  timeout_at: string;
  status: 'pending' | 'approved' | 'rejected';
  decided: string | null;
  by: 'human' | 'timeout' | null;
  reason: string | null;
  checkpoint: string | null;
}

export function approvalsDir(paths: RunPaths): string {
  return path.join(paths.stateDir, 'approvals');
}

export function approvalFile(paths: RunPaths, id: string): string {
  return path.join(approvalsDir(paths), `${id}.json`);
}

/** An approval, or null when there is none or its file is not one (a link, too big, not JSON). */
export function readApproval(paths: RunPaths, id: string): Approval | null {
  try {
    const v = parseJsonText(approvalFile(paths, id), readTextFile(approvalFile(paths, id), 'approval'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Approval) : null;
  } catch {
    return null;
  }
}

export function listApprovals(paths: RunPaths): Approval[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(approvalsDir(paths));
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
    .map((n) => readApproval(paths, n.slice(0, -5)))
    .filter((a): a is Approval => a !== null)
    .sort((a, b) => (a.status === 'pending' ? 0 : 1) - (b.status === 'pending' ? 0 : 1) || a.requested.localeCompare(b.requested));
}

export async function requestApproval(paths: RunPaths, a: Omit<Approval, 'status' | 'decided' | 'by' | 'reason'>): Promise<Approval> {
  const lock = await lockState(paths);
  try {
    const existing = readApproval(paths, a.id);
    if (existing) return existing;
    const full: Approval = { ...a, status: 'pending', decided: null, by: null, reason: null };
    mkdirDurable(approvalsDir(paths));
    writeFileAtomic(approvalFile(paths, a.id), JSON.stringify(full, null, 2) + '\n');
    TaskLog.forRun(paths).append({ t: 'approval_requested', id: a.id, task: a.task, action: JSON.stringify(a.action), rule: a.rule });
    return full;
  } finally {
    lock.release();
  }
}

/** approve or reject; 66 for no such approval, 1 when it was already decided. */
export async function decideApproval(paths: RunPaths, id: string, decision: 'approved' | 'rejected', reason: string | null, by: 'human' | 'timeout' = 'human'): Promise<Approval> {
  const lock = await lockState(paths);
  try {
    const a = readApproval(paths, id);
    if (!a) throw noInputError(`no such approval '${id}'`);
    if (a.status !== 'pending') throw new SwError(`approval ${id} was already ${a.status}${a.by === 'timeout' ? ' (timed out)' : ''}`, EXIT.FAIL);
    const next: Approval = { ...a, status: decision, decided: new Date().toISOString(), by, reason };
    writeFileAtomic(approvalFile(paths, id), JSON.stringify(next, null, 2) + '\n');
    TaskLog.forRun(paths).append({ t: 'approval_decided', id, decision, reason, by });
    return next;
  } finally {
    lock.release();
  }
}
