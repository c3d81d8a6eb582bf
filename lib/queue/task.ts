// A task is a YAML file in state/queue/<id>.yaml: what to do, how to check it,
// and where it stands. Humans and scripts add tasks by dropping such a file
// (only a prompt or a title is required) or with `sw-agent add`.

import fs from 'node:fs';
import path from 'node:path';
import { dataError } from '../exit.js';
import { writeFileAtomic } from '../fsutil.js';
import { formatDuration, parseDuration } from '../units.js';

export const TASK_STATUSES = ['pending', 'in_progress', 'completed', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const MAX_TASK_TIMEOUT_MS = 4 * 3_600_000;
const MAX_ATTEMPTS_LIMIT = 100;

export interface Task {
  id: string;
  title: string;
  prompt: string;
  /** Shell command run in the workspace after `finish`: exit 0 means completed. */
  verify: string | null;
  /** Higher runs first. */
  priority: number;
  max_attempts: number;
  /** Milliseconds. */
  timeout: number;
  status: TaskStatus;
  /** The attempt in progress, or the next one to run. */
  attempt: number;
  created: string;
  updated: string;
  source: string;
  /** Why it failed or was cancelled. */
  reason: string | null;
}

export interface TaskDefaults {
  max_attempts: number;
  timeout: number;
}

/** Fields that define a task (what the task log keeps to restore it). */
export type TaskSpec = Pick<Task, 'id' | 'title' | 'prompt' | 'verify' | 'priority' | 'max_attempts' | 'timeout' | 'created' | 'source'>;

export function taskSpec(t: Task): TaskSpec {
  return { id: t.id, title: t.title, prompt: t.prompt, verify: t.verify, priority: t.priority, max_attempts: t.max_attempts, timeout: t.timeout, created: t.created, source: t.source };
}

/** A task's default title: the prompt's first line, cut to 72 characters. */
export function titleOf(prompt: string): string {
  const firstLine = prompt.split('\n')[0]?.trim() ?? '';
  return firstLine.length > 72 ? firstLine.slice(0, 69) + '...' : firstLine;
}

export function queueDir(stateDir: string): string {
  return path.join(stateDir, 'queue');
}

export function taskFile(stateDir: string, id: string): string {
  return path.join(queueDir(stateDir), `${id}.yaml`);
}

/**
 * Parse and check a task file's text. Missing fields get defaults; wrong ones
 * are errors naming file:line, the key and the value.
 */
export async function parseTask(file: string, text: string, defaults: TaskDefaults): Promise<Task> {
  const { parseDocument, LineCounter, isMap, isScalar } = await import('yaml');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const fail = (line: number, col: number, what: string): never => {
    throw dataError(`${file}:${line}:${col}: ${what}`);
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0] as (typeof doc.errors)[number];
    const lp = lc.linePos(e.pos[0]);
    fail(lp.line, lp.col, `invalid YAML: ${e.message.split('\n')[0]}`);
  }
  const root = doc.contents;
  if (!root || !isMap(root)) fail(1, 1, 'expected a mapping of task fields');
  const map = root as import('yaml').YAMLMap;
  const values = new Map<string, { value: unknown; line: number; col: number }>();
  for (const pair of map.items) {
    const k = isScalar(pair.key) ? String(pair.key.value) : '';
    const node = pair.value as import('yaml').Node | null;
    const pos = lc.linePos(((node ?? pair.key) as { range?: number[] }).range?.[0] ?? 0);
    const value = node && isScalar(node) ? node.value : node ? '[non-scalar]' : null;
    values.set(k, { value, line: pos.line, col: pos.col });
  }
  const known = ['id', 'title', 'prompt', 'verify', 'priority', 'max_attempts', 'timeout', 'status', 'attempt', 'created', 'updated', 'source', 'reason'];
  for (const [k, v] of values) if (!known.includes(k)) fail(v.line, v.col, `${k}: unknown task field`);
  const get = (k: string) => values.get(k);
  /** undefined when absent, null when given as null. */
  const str = (k: string): string | null | undefined => {
    const v = get(k);
    if (!v) return undefined;
    if (v.value === null) return null;
    if (typeof v.value !== 'string' && typeof v.value !== 'number') fail(v.line, v.col, `${k}: expected a string, got ${JSON.stringify(v.value)}`);
    return String(v.value);
  };
  const int = (k: string, min: number, max: number): number | undefined => {
    const v = get(k);
    if (!v || v.value === null) return undefined;
    if (typeof v.value !== 'number' || !Number.isInteger(v.value) || v.value < min || v.value > max) {
      fail(v.line, v.col, `${k}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v.value)}`);
    }
    return v.value as number;
  };
  const stem = path.basename(file).replace(/\.ya?ml$/, '');
  const id = str('id') ?? stem;
  if (!TASK_ID_RE.test(id)) fail(get('id')?.line ?? 1, get('id')?.col ?? 1, `id: invalid task id ${JSON.stringify(id)}`);
  if (id !== stem) fail(get('id')?.line ?? 1, get('id')?.col ?? 1, `id: '${id}' does not match the file name '${path.basename(file)}'`);
  const prompt = str('prompt') ?? undefined;
  const title = str('title') ?? undefined;
  if (!prompt && !title) fail(1, 1, 'a task needs a prompt or a title');
  const statusV = get('status');
  const status = (str('status') ?? 'pending') as TaskStatus;
  if (!TASK_STATUSES.includes(status)) fail(statusV?.line ?? 1, statusV?.col ?? 1, `status: expected one of ${TASK_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);
  const max_attempts = int('max_attempts', 1, MAX_ATTEMPTS_LIMIT) ?? defaults.max_attempts;
  const attempt = int('attempt', 1, MAX_ATTEMPTS_LIMIT) ?? 1;
  if (attempt > max_attempts) fail(get('attempt')?.line ?? 1, get('attempt')?.col ?? 1, `attempt: ${attempt} is more than max_attempts ${max_attempts}`);
  let timeout = defaults.timeout;
  const tv = get('timeout');
  if (tv && tv.value !== null) {
    const ms = typeof tv.value === 'string' || typeof tv.value === 'number' ? parseDuration(tv.value) : undefined;
    if (ms === undefined || ms <= 0 || ms > MAX_TASK_TIMEOUT_MS) fail(tv.line, tv.col, `timeout: expected a duration up to 4h such as 30m, got ${JSON.stringify(tv.value)}`);
    timeout = ms as number;
  }
  for (const k of ['created', 'updated']) {
    const v = get(k);
    if (v && v.value !== null && (typeof v.value !== 'string' || Number.isNaN(Date.parse(v.value)))) fail(v.line, v.col, `${k}: expected an ISO 8601 time, got ${JSON.stringify(v.value)}`);
  }
  const now = new Date().toISOString();
  return {
    id,
    title: title ?? titleOf(prompt ?? ''),
    prompt: prompt ?? (title as string),
    verify: str('verify') ?? null,
    priority: int('priority', -1_000_000, 1_000_000) ?? 0,
    max_attempts,
    timeout,
    status,
    attempt,
    created: str('created') ?? now,
    updated: str('updated') ?? str('created') ?? now,
    source: str('source') ?? 'file',
    reason: str('reason') ?? null,
  };
}

/** The YAML a task is written as (stable field order, timeout as a duration). */
export async function serializeTask(t: Task): Promise<string> {
  const { stringify } = await import('yaml');
  const doc: Record<string, unknown> = {
    id: t.id,
    title: t.title,
    prompt: t.prompt,
    verify: t.verify,
    priority: t.priority,
    max_attempts: t.max_attempts,
    timeout: formatDuration(t.timeout),
    status: t.status,
    attempt: t.attempt,
    created: t.created,
    updated: t.updated,
    source: t.source,
    reason: t.reason,
  };
  return stringify(doc, { lineWidth: 0 });
}

export async function writeTask(stateDir: string, t: Task): Promise<void> {
  writeFileAtomic(taskFile(stateDir, t.id), await serializeTask(t));
}

export interface QueueRead {
  tasks: Task[];
  /** Files that do not parse or do not hold a valid task: file and why. */
  invalid: Array<{ file: string; error: string }>;
}

/** Every task file in state/queue/ (ignoring dotfiles and temp files). */
export async function readQueue(stateDir: string, defaults: TaskDefaults): Promise<QueueRead> {
  const dir = queueDir(stateDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { tasks: [], invalid: [] };
    throw e;
  }
  const tasks: Task[] = [];
  const invalid: Array<{ file: string; error: string }> = [];
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const file = path.join(dir, n);
    if (!/\.ya?ml$/.test(n)) {
      invalid.push({ file, error: 'not a .yaml file' });
      continue;
    }
    try {
      const text = fs.readFileSync(file, 'utf8');
      if (text.includes('\u0000') || text.includes('\ufffd')) throw dataError(`${file}: not text`);
      tasks.push(await parseTask(file, text, defaults));
    } catch (e) {
      invalid.push({ file, error: (e as Error).message });
    }
  }
  return { tasks, invalid };
}

/** The agent's order: higher priority first, then older, then by id. */
export function byRunOrder(a: Task, b: Task): number {
  return b.priority - a.priority || Date.parse(a.created) - Date.parse(b.created) || a.id.localeCompare(b.id);
}

/** Pending tasks in the order the agent takes them. */
export function runOrder(tasks: Task[]): Task[] {
  return tasks.filter((t) => t.status === 'pending').sort(byRunOrder);
}
