// The task log's SQLite schema, its migrations, and how each journal event
// lands in the tables. The version is PRAGMA user_version: an older database
// is upgraded on open, a newer one is refused.

import type { Database } from 'sql.js';
import { dataError } from '../exit.js';

/** Every row of a query, each an array of its values (the report's and recovery's reads). */
export function queryRows<T = string | number | Uint8Array | null>(db: Database, sql: string, params: Array<string | number | null> = []): T[][] {
  const stmt = db.prepare(sql);
  try {
    stmt.bind(params);
    const out: T[][] = [];
    while (stmt.step()) out.push(stmt.get() as T[]);
    return out;
  } finally {
    stmt.free();
  }
}

/** Migration N takes a database from version N to N+1. */
export const MIGRATIONS: string[] = [
  // 1: the tables.
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE sessions (
    id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, ended_at INTEGER,
    end_state TEXT, exit_code INTEGER, reason TEXT, pid INTEGER, host TEXT, version TEXT, unit TEXT);
  CREATE TABLE tasks (
    id TEXT PRIMARY KEY, title TEXT, added_at INTEGER NOT NULL, priority INTEGER, max_attempts INTEGER, source TEXT);
  CREATE TABLE task_attempts (
    task_id TEXT NOT NULL, attempt INTEGER NOT NULL, session_id TEXT, started_at INTEGER NOT NULL,
    ended_at INTEGER, outcome TEXT, reason TEXT, steps INTEGER, PRIMARY KEY (task_id, attempt));
  CREATE TABLE task_steps (
    task_id TEXT NOT NULL, attempt INTEGER NOT NULL, step INTEGER NOT NULL, ts INTEGER NOT NULL,
    action TEXT, status TEXT, PRIMARY KEY (task_id, attempt, step));
  CREATE TABLE llm_calls (
    pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, session_id TEXT, task_id TEXT, attempt INTEGER, step INTEGER,
    backend TEXT, model TEXT, quantization TEXT, tokens_in INTEGER, tokens_out INTEGER,
    latency_ms REAL, tokens_per_s REAL, ok INTEGER NOT NULL DEFAULT 1, error TEXT);
  CREATE TABLE checkpoints (
    id TEXT PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT, position INTEGER,
    state_commit TEXT, workspace_commit TEXT, size INTEGER, pruned_at INTEGER);
  CREATE TABLE recoveries (
    pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, reason TEXT, action TEXT, checkpoint_id TEXT,
    reconciled INTEGER, requeued INTEGER, duration_ms INTEGER, backoff_ms INTEGER, ok INTEGER, detail TEXT);
  CREATE TABLE escalations (pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, reason TEXT, failures INTEGER);
  CREATE TABLE governor_decisions (
    pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, tier TEXT, quantization TEXT, actions TEXT, reason TEXT);
  CREATE TABLE resource_samples (
    pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, vram_used_mb REAL, vram_total_mb REAL, gpu_util REAL,
    gpu_temp REAL, ram_used_mb REAL, ram_total_mb REAL, swap_used_mb REAL, disk_free_pct REAL,
    cpu_load REAL, tier TEXT);
  CREATE TABLE events (pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL);
  `,
  // 2: approvals, and the indexes the report's time-range queries use.
  `
  CREATE TABLE approvals (
    id TEXT PRIMARY KEY, ts INTEGER NOT NULL, task_id TEXT, action TEXT, decided_at INTEGER,
    decision TEXT, reason TEXT);
  CREATE INDEX sessions_started ON sessions (started_at);
  CREATE INDEX attempts_ended ON task_attempts (ended_at, outcome);
  CREATE INDEX attempts_started ON task_attempts (started_at);
  CREATE INDEX steps_ts ON task_steps (ts);
  CREATE INDEX llm_ts ON llm_calls (ts);
  CREATE INDEX checkpoints_ts ON checkpoints (ts);
  CREATE INDEX recoveries_ts ON recoveries (ts);
  CREATE INDEX escalations_ts ON escalations (ts);
  CREATE INDEX decisions_ts ON governor_decisions (ts);
  CREATE INDEX samples_ts ON resource_samples (ts);
  CREATE INDEX events_type_ts ON events (type, ts);
  `,
  // 3: what recovery needs: each task's full definition (to restore a task the
  // queue lost), the session a recovery handled, and how systemd saw a
  // service end (watchdog, signal, exit code).
  `
  ALTER TABLE tasks ADD COLUMN spec TEXT;
  ALTER TABLE recoveries ADD COLUMN session_id TEXT;
  CREATE TABLE service_exits (
    pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, unit TEXT, result TEXT, exit_code TEXT, exit_status TEXT);
  CREATE INDEX service_exits_ts ON service_exits (ts);
  `,
  // 4: resource samples folded by retention into aggregates: how many samples
  // a row stands for, and its last sample's time (ts is its first's).
  `
  ALTER TABLE resource_samples ADD COLUMN samples INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE resource_samples ADD COLUMN ts_last INTEGER;
  `,
  // 5: steps and model calls past tasklog.detail_after, folded by retention
  // into one row per bucket (ts its start, ts_last its newest call's or
  // step's time): what the report reads of them. A model's call latencies are
  // kept as a list (latencies, comma-separated), so that percentiles stay exact.
  `
  CREATE TABLE step_rollups (ts INTEGER NOT NULL, ts_last INTEGER NOT NULL, steps INTEGER NOT NULL, errors INTEGER NOT NULL);
  CREATE INDEX step_rollups_ts ON step_rollups (ts);
  CREATE TABLE llm_rollups (
    ts INTEGER NOT NULL, ts_last INTEGER NOT NULL, backend TEXT, quantization TEXT, calls INTEGER NOT NULL,
    errors INTEGER NOT NULL, tokens_in INTEGER, tokens_out INTEGER, speed_n INTEGER NOT NULL, speed_sum REAL,
    latency_n INTEGER NOT NULL, latencies TEXT NOT NULL);
  CREATE INDEX llm_rollups_ts ON llm_rollups (ts);
  `,
  // 6: finished tasks whose archives have left state/, and pruned checkpoints,
  // past tasklog.detail_after, folded by retention into rows of what the
  // report reads. Attempts: one row per bucket of their starts (started_at,
  // and the oldest task's added_at), and one per bucket of their ends and
  // outcome, reason, attempt number and the task's max_attempts (so that
  // "failed for good" is judged as before); the other time NULL. Checkpoints:
  // one row per bucket of their creation and of their pruning, and kind, with
  // the id of the newest (the report's last checkpoint of a past window). A
  // row's time is its group's first (ts_last its newest), so that a window on
  // bucket boundaries counts a group whole.
  `
  CREATE TABLE attempt_rollups (
    started_at INTEGER, ended_at INTEGER, ts_last INTEGER NOT NULL, added_at INTEGER, outcome TEXT, reason TEXT,
    attempt INTEGER, max_attempts INTEGER, attempts INTEGER NOT NULL);
  CREATE INDEX attempt_rollups_ended ON attempt_rollups (ended_at);
  CREATE INDEX attempt_rollups_started ON attempt_rollups (started_at);
  CREATE TABLE checkpoint_rollups (
    ts INTEGER NOT NULL, ts_last INTEGER NOT NULL, last_id TEXT NOT NULL, kind TEXT NOT NULL, pruned_at INTEGER NOT NULL,
    pruned_last INTEGER NOT NULL, checkpoints INTEGER NOT NULL);
  CREATE INDEX checkpoint_rollups_ts ON checkpoint_rollups (ts);
  `,
  // 7: what a model call evaluated: of its prompt's tokens (tokens_in), those
  // the model evaluated and those it kept from an earlier call (NULL where the
  // backend cannot tell), and the time the evaluation took; what the call was
  // for (NULL: a step's action; 'condense': a summary of older steps). Folded
  // calls keep their sums (only of calls that recorded them).
  `
  ALTER TABLE llm_calls ADD COLUMN tokens_evaluated INTEGER;
  ALTER TABLE llm_calls ADD COLUMN tokens_reused INTEGER;
  ALTER TABLE llm_calls ADD COLUMN eval_ms REAL;
  ALTER TABLE llm_calls ADD COLUMN purpose TEXT;
  ALTER TABLE llm_rollups ADD COLUMN tokens_evaluated INTEGER;
  ALTER TABLE llm_rollups ADD COLUMN tokens_reused INTEGER;
  ALTER TABLE llm_rollups ADD COLUMN eval_tokens INTEGER;
  ALTER TABLE llm_rollups ADD COLUMN eval_ms REAL;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function schemaVersion(db: Database): number {
  const r = db.exec('PRAGMA user_version');
  return Number(r[0]?.values[0]?.[0] ?? 0);
}

/** Bring db to SCHEMA_VERSION; refuse a newer one. Returns the version found. */
export function migrate(db: Database, what: string, upTo = SCHEMA_VERSION): number {
  const found = schemaVersion(db);
  if (found > SCHEMA_VERSION) {
    throw dataError(`${what}: schema version ${found} is newer than this selfware understands (${SCHEMA_VERSION}); upgrade selfware`);
  }
  for (let v = found; v < upTo; v++) {
    db.exec('BEGIN');
    try {
      db.exec(MIGRATIONS[v] as string);
      db.exec(`PRAGMA user_version = ${v + 1}`);
      db.exec('COMMIT');
    } catch (e) {
      db.exec('ROLLBACK');
      throw dataError(`${what}: migration to schema version ${v + 1} failed: ${(e as Error).message}`);
    }
  }
  return found;
}

export function getMeta(db: Database, key: string): string | undefined {
  const stmt = db.prepare('SELECT value FROM meta WHERE key = ?');
  try {
    stmt.bind([key]);
    return stmt.step() ? String(stmt.get()[0]) : undefined;
  } finally {
    stmt.free();
  }
}

export function setMeta(db: Database, key: string, value: string | number): void {
  db.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, String(value)]);
}

type Row = Record<string, unknown>;
type Val = string | number | null;

const toMs = (v: unknown): number | null => {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  }
  return null;
};
const str = (v: unknown): string | null => (typeof v === 'string' ? v : v === undefined || v === null ? null : String(v));
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const bool = (v: unknown): number | null => (typeof v === 'boolean' ? (v ? 1 : 0) : null);

/** Statements, prepared once per database, that apply events. */
export class EventApplier {
  private readonly stmts = new Map<string, ReturnType<Database['prepare']>>();
  constructor(private readonly db: Database) {}

  private run(sql: string, params: Val[]): void {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    s.run(params);
  }

  free(): void {
    for (const s of this.stmts.values()) s.free();
    this.stmts.clear();
  }

  /** Apply one event found at global position pos. Events of unknown types go to `events`. */
  apply(pos: number, e: Row): void {
    const ts = toMs(e.ts) ?? 0;
    switch (e.t) {
      case 'session_start':
        this.run(
          `INSERT INTO sessions (id, started_at, pid, host, version, unit) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at`,
          [str(e.session), ts, num(e.pid), str(e.host), str(e.version), str(e.unit)],
        );
        return;
      case 'session_end':
        this.run(
          `INSERT INTO sessions (id, started_at, ended_at, end_state, exit_code, reason) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, end_state = excluded.end_state,
             exit_code = excluded.exit_code, reason = excluded.reason`,
          [str(e.session), ts, ts, str(e.state), num(e.exit_code), str(e.reason)],
        );
        return;
      case 'task_added':
        this.run(
          `INSERT INTO tasks (id, title, added_at, priority, max_attempts, source, spec) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET title = excluded.title, priority = excluded.priority,
             max_attempts = excluded.max_attempts, spec = coalesce(excluded.spec, spec)`,
          [str(e.task), str(e.title), ts, num(e.priority), num(e.max_attempts), str(e.source), e.spec && typeof e.spec === 'object' ? JSON.stringify(e.spec) : null],
        );
        return;
      case 'task_started':
        this.run(
          `INSERT INTO task_attempts (task_id, attempt, session_id, started_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (task_id, attempt) DO UPDATE SET session_id = excluded.session_id`,
          [str(e.task), num(e.attempt) ?? 1, str(e.session), ts],
        );
        return;
      case 'task_step':
        this.run(
          `INSERT INTO task_steps (task_id, attempt, step, ts, action, status) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (task_id, attempt, step) DO UPDATE SET ts = excluded.ts, action = excluded.action, status = excluded.status`,
          [str(e.task), num(e.attempt) ?? 1, num(e.step) ?? 0, ts, str(e.action), str(e.status)],
        );
        return;
      case 'task_outcome':
        this.run(
          `INSERT INTO task_attempts (task_id, attempt, session_id, started_at, ended_at, outcome, reason, steps)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (task_id, attempt) DO UPDATE SET ended_at = excluded.ended_at, outcome = excluded.outcome,
             reason = excluded.reason, steps = excluded.steps`,
          [str(e.task), num(e.attempt) ?? 1, str(e.session), ts, ts, str(e.outcome), str(e.reason), num(e.steps)],
        );
        return;
      case 'llm_call':
        this.run(
          `INSERT OR REPLACE INTO llm_calls (pos, ts, session_id, task_id, attempt, step, backend, model, quantization,
             tokens_in, tokens_out, latency_ms, tokens_per_s, ok, error, tokens_evaluated, tokens_reused, eval_ms, purpose)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            pos, ts, str(e.session), str(e.task), num(e.attempt), num(e.step), str(e.backend), str(e.model), str(e.quantization),
            num(e.tokens_in), num(e.tokens_out), num(e.latency_ms), num(e.tokens_per_s), bool(e.ok) ?? 1, str(e.error),
            num(e.tokens_evaluated), num(e.tokens_reused), num(e.eval_ms), str(e.purpose),
          ], // prettier-ignore
        );
        return;
      case 'checkpoint':
        this.run(
          `INSERT INTO checkpoints (id, ts, kind, message, position, state_commit, workspace_commit, size)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET state_commit = excluded.state_commit, size = excluded.size`,
          [str(e.id), toMs(e.time) ?? ts, str(e.kind) ?? 'manual', str(e.message), num(e.position), str(e.state_commit), str(e.workspace_commit), num(e.size)],
        );
        return;
      case 'checkpoint_pruned':
        this.run('UPDATE checkpoints SET pruned_at = ? WHERE id = ?', [ts, str(e.id)]);
        return;
      case 'recovery':
        this.run(
          `INSERT OR REPLACE INTO recoveries (pos, ts, reason, action, checkpoint_id, reconciled, requeued, duration_ms, backoff_ms, ok, detail, session_id)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [pos, ts, str(e.reason), str(e.action), str(e.checkpoint), num(e.reconciled), num(e.requeued), num(e.duration_ms), num(e.backoff_ms), bool(e.ok) ?? 1, str(e.detail), str(e.session)],
        );
        return;
      case 'escalation':
        this.run('INSERT OR REPLACE INTO escalations (pos, ts, reason, failures) VALUES (?, ?, ?, ?)', [pos, ts, str(e.reason), num(e.failures)]);
        return;
      case 'governor_decision':
        this.run('INSERT OR REPLACE INTO governor_decisions (pos, ts, tier, quantization, actions, reason) VALUES (?, ?, ?, ?, ?, ?)', [
          pos, ts, str(e.tier), str(e.quantization), JSON.stringify(Array.isArray(e.actions) ? e.actions : []), str(e.reason),
        ]); // prettier-ignore
        return;
      case 'resource_sample':
        this.run(
          `INSERT OR REPLACE INTO resource_samples (pos, ts, vram_used_mb, vram_total_mb, gpu_util, gpu_temp, ram_used_mb,
             ram_total_mb, swap_used_mb, disk_free_pct, cpu_load, tier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            pos, ts, num(e.vram_used_mb), num(e.vram_total_mb), num(e.gpu_util), num(e.gpu_temp), num(e.ram_used_mb),
            num(e.ram_total_mb), num(e.swap_used_mb), num(e.disk_free_pct), num(e.cpu_load), str(e.tier),
          ], // prettier-ignore
        );
        return;
      case 'service_exit':
        this.run('INSERT OR REPLACE INTO service_exits (pos, ts, unit, result, exit_code, exit_status) VALUES (?, ?, ?, ?, ?, ?)', [
          pos, ts, str(e.unit), str(e.result), str(e.exit_code), str(e.exit_status),
        ]); // prettier-ignore
        return;
      case 'approval_requested':
        this.run(
          `INSERT INTO approvals (id, ts, task_id, action) VALUES (?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, action = excluded.action`,
          [str(e.id), ts, str(e.task), str(e.action)],
        );
        return;
      case 'approval_decided':
        this.run(
          `INSERT INTO approvals (id, ts, decided_at, decision, reason) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET decided_at = excluded.decided_at, decision = excluded.decision, reason = excluded.reason`,
          [str(e.id), ts, ts, str(e.decision), str(e.reason)],
        );
        return;
      default:
        this.run('INSERT OR REPLACE INTO events (pos, ts, type, data) VALUES (?, ?, ?, ?)', [pos, ts, str(e.t) ?? 'unknown', JSON.stringify(e)]);
    }
  }
}
