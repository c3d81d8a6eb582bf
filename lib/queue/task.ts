// A task is a YAML file in state/queue/<id>.yaml: what to do, how to check it,
// and where it stands. Humans and scripts add tasks by dropping such a file
// (only a prompt or a title is required) or with `sw-agent add`.

import fs from 'node:fs';
import path from 'node:path';
import { SwError, dataError, errnoText } from '../exit.js';
import { writeFileAtomic } from '../fsutil.js';
import { checkYamlDepth, notAFile, readTextFile } from '../safefile.js';
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

/** What a YAML node holds when it is not a scalar, in words. */
function nodeKind(node: unknown, y: typeof import('yaml')): string | null {
  if (y.isSeq(node)) return 'a list';
  if (y.isMap(node)) return 'a mapping';
  if (y.isScalar(node)) return null;
  return 'an unsupported value';
}

/**
 * Parse and check a task file's text. Missing fields get defaults; wrong ones
 * are errors naming file:line:col, the key, what was expected and what was
 * found. Text nested too deep is refused before the YAML parser sees it.
 */
export async function parseTask(file: string, text: string, defaults: TaskDefaults): Promise<Task> {
  await checkYamlDepth(file, text);
  const y = await import('yaml');
  const lc = new y.LineCounter();
  const doc = y.parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const fail = (line: number, col: number, what: string): never => {
    throw dataError(`${file}:${line}:${col}: ${what}`);
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0] as (typeof doc.errors)[number];
    const lp = lc.linePos(e.pos[0]);
    fail(lp.line, lp.col, `invalid YAML: ${e.message.split('\n')[0]}`);
  }
  const root = doc.contents;
  if (!root || !y.isMap(root)) fail(1, 1, 'expected a mapping of task fields');
  const map = root as import('yaml').YAMLMap;
  /** A field's scalar value, or what it is instead (kind: "a list"), and where. */
  const values = new Map<string, { value: unknown; kind: string | null; line: number; col: number }>();
  for (const pair of map.items) {
    const keyPos = lc.linePos((pair.key as { range?: number[] } | null)?.range?.[0] ?? 0);
    if (!y.isScalar(pair.key)) fail(keyPos.line, keyPos.col, `expected a field name, got ${nodeKind(pair.key, y) ?? 'nothing'}`);
    const k = String((pair.key as import('yaml').Scalar).value);
    let node = pair.value as unknown;
    // An alias stands for its anchor's value.
    if (y.isAlias(node)) node = node.resolve(doc) ?? null;
    const pos = lc.linePos(((pair.value ?? pair.key) as { range?: number[] }).range?.[0] ?? 0);
    if (node === null || node === undefined) values.set(k, { value: null, kind: null, line: pos.line, col: pos.col });
    else values.set(k, { value: y.isScalar(node) ? node.value : undefined, kind: nodeKind(node, y), line: pos.line, col: pos.col });
  }
  const known = ['id', 'title', 'prompt', 'verify', 'priority', 'max_attempts', 'timeout', 'status', 'attempt', 'created', 'updated', 'source', 'reason'];
  for (const [k, v] of values) if (!known.includes(k)) fail(v.line, v.col, `${k}: unknown task field`);
  const get = (k: string) => values.get(k);
  const got = (v: { value: unknown; kind: string | null }): string => v.kind ?? JSON.stringify(v.value);
  /** undefined when absent, null when given as null. */
  const str = (k: string): string | null | undefined => {
    const v = get(k);
    if (!v) return undefined;
    if (v.kind === null && v.value === null) return null;
    if (v.kind !== null || (typeof v.value !== 'string' && typeof v.value !== 'number')) fail(v.line, v.col, `${k}: expected a string, got ${got(v)}`);
    return String(v.value);
  };
  const int = (k: string, min: number, max: number): number | undefined => {
    const v = get(k);
    if (!v || (v.kind === null && v.value === null)) return undefined;
    if (v.kind !== null || typeof v.value !== 'number' || !Number.isInteger(v.value) || v.value < min || v.value > max) {
      fail(v.line, v.col, `${k}: expected an integer from ${min} to ${max}, got ${got(v)}`);
    }
    return v.value as number;
  };
  const stem = path.basename(file).replace(/\.ya?ml$/, '');
  const id = str('id') ?? stem;
  if (!TASK_ID_RE.test(id)) fail(get('id')?.line ?? 1, get('id')?.col ?? 1, `id: invalid task id ${JSON.stringify(id)}`);
  if (id !== stem) fail(get('id')?.line ?? 1, get('id')?.col ?? 1, `id: '${id}' does not match the file name '${path.basename(file)}'`);
  const prompt = str('prompt') ?? undefined;
  const title = str('title') ?? undefined;
  const verify = str('verify') ?? null;
  if (!prompt && !title) fail(1, 1, 'a task needs a prompt or a title');
  const statusV = get('status');
  const status = (str('status') ?? 'pending') as TaskStatus;
  if (!TASK_STATUSES.includes(status)) fail(statusV?.line ?? 1, statusV?.col ?? 1, `status: expected one of ${TASK_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);
  const max_attempts = int('max_attempts', 1, MAX_ATTEMPTS_LIMIT) ?? defaults.max_attempts;
  const attempt = int('attempt', 1, MAX_ATTEMPTS_LIMIT) ?? 1;
  if (attempt > max_attempts) fail(get('attempt')?.line ?? 1, get('attempt')?.col ?? 1, `attempt: ${attempt} is more than max_attempts ${max_attempts}`);
  let timeout = defaults.timeout;
  const tv = get('timeout');
  if (tv && !(tv.kind === null && tv.value === null)) {
    const ms = tv.kind === null && (typeof tv.value === 'string' || typeof tv.value === 'number') ? parseDuration(tv.value) : undefined;
    if (ms === undefined || ms <= 0 || ms > MAX_TASK_TIMEOUT_MS) fail(tv.line, tv.col, `timeout: expected a duration up to 4h such as 30m, got ${got(tv)}`);
    timeout = ms as number;
  }
  for (const k of ['created', 'updated']) {
    const v = get(k);
    if (v && !(v.kind === null && v.value === null) && (v.kind !== null || typeof v.value !== 'string' || Number.isNaN(Date.parse(v.value)))) fail(v.line, v.col, `${k}: expected an ISO 8601 time, got ${got(v)}`);
  }
  const now = new Date().toISOString();
  return {
    id,
    title: title ?? titleOf(prompt ?? ''),
    prompt: prompt ?? (title as string),
    verify,
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

/** A queue entry that is not a valid task. */
export interface InvalidEntry {
  /** The entry's path. */
  file: string;
  /** One line that names it: "PATH[:LINE:COL]: WHY". */
  error: string;
  /** It could not be read (a system error such as EACCES or EIO): reported, but not set aside. */
  unreadable?: boolean;
}

export interface QueueRead {
  tasks: Task[];
  /** Entries of queue/ that are not valid tasks, each named in its error. */
  invalid: InvalidEntry[];
}

/** The folder of queue/ where bad entries are set aside (see reject.ts); nothing in it is a task. */
export const REJECTED_DIR = 'rejected';

/**
 * One queue entry read as a task, by the same rules for every reader (the
 * agent, recovery, list, show): a regular .yaml or .yml file within the task
 * size limit, UTF-8 text, nested at most 64 levels, holding valid fields.
 * Refusals are SwErrors naming the path (exit 65); system errors are thrown as they are.
 */
export async function readTaskFile(file: string, defaults: TaskDefaults): Promise<Task> {
  if (!/\.ya?ml$/.test(file)) {
    const what = notAFile(fs.lstatSync(file));
    throw dataError(`${file}: ${what ? `${what}, ` : ''}not a task file (a task file's name ends in .yaml)`);
  }
  return parseTask(file, readTextFile(file, 'task'), defaults);
}

/** Every task file in state/queue/ (dotfiles, temp files and queue/rejected/ left out), and every entry that is not one. */
export async function readQueue(stateDir: string, defaults: TaskDefaults): Promise<QueueRead> {
  const dir = queueDir(stateDir);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { tasks: [], invalid: [] };
    throw e;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const tasks: Task[] = [];
  const invalid: InvalidEntry[] = [];
  /** The file that defines each id: ID.yaml sorts before ID.yml and wins. */
  const defined = new Map<string, string>();
  for (const ent of entries) {
    const n = ent.name;
    if (n.startsWith('.')) continue;
    if (n === REJECTED_DIR && ent.isDirectory()) continue;
    const file = path.join(dir, n);
    try {
      const t = await readTaskFile(file, defaults);
      const first = defined.get(t.id);
      if (first !== undefined) throw dataError(`${file}: task ${t.id} is already defined by ${first}`);
      defined.set(t.id, n);
      tasks.push(t);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // Removed since it was listed: not an entry any more.
      if (code === 'ENOENT') continue;
      if (e instanceof SwError) invalid.push({ file, error: e.message.startsWith(file) ? e.message : `${file}: ${e.message}` });
      else invalid.push({ file, error: `${file}: cannot read: ${errnoText(e)}`, unreadable: true });
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
