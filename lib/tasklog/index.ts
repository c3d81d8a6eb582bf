// The task log: the authoritative, append-only record of a run. Events are
// appended to a journal (flat cost, durable on return); a checkpoint folds the
// journal into a SQLite snapshot (sql.js) and starts a new journal. Readers see
// the snapshot plus the journal's tail, as one database.

import fs from 'node:fs';
import crypto from 'node:crypto';
import type { Database, SqlJsStatic } from 'sql.js';
import { SwError, dataError } from '../exit.js';
import { writeFileAtomic } from '../fsutil.js';
import {
  appendRecords,
  describeCorrupt,
  journalEnd,
  openLocked,
  parseJournal,
  readJournalFd,
  readJournalHeader,
  readJournalLocked,
  unlock,
  writeJournal,
  type CorruptRecord,
  type JournalContents,
} from './journal.js';
import { EventApplier, SCHEMA_VERSION, getMeta, migrate, schemaVersion, setMeta } from './schema.js';
import { readDbCopy, listDbCopies, storeDbCopy } from './copy.js';
import { downsampleSamples, foldDetail, foldTasks, type DetailResult, type RetentionResult, type TasklogRetention, type TasksResult } from './retention.js';
import path from 'node:path';

export { SCHEMA_VERSION, MIGRATIONS, migrate, schemaVersion } from './schema.js';
export type { CorruptRecord } from './journal.js';
export { describeCorrupt } from './journal.js';

export interface TaskEvent {
  /** Event type: session_start, task_outcome, checkpoint, ... */
  t: string;
  /** ISO 8601; filled in by append when absent. */
  ts?: string;
  [field: string]: unknown;
}

let sqlPromise: Promise<SqlJsStatic> | undefined;
/** sql.js, loaded once per process. */
export async function sqljs(): Promise<SqlJsStatic> {
  if (!sqlPromise) {
    sqlPromise = import('sql.js').then((m) => (m.default as unknown as (cfg?: object) => Promise<SqlJsStatic>)());
  }
  return sqlPromise;
}

export interface Snapshot {
  /** The database: snapshot plus the journal's tail. The caller closes it. */
  db: Database;
  log: string;
  /** Global position just past the last event in db. */
  position: number;
  /** Events replayed from the journal on top of the snapshot. */
  replayed: number;
  corrupt: CorruptRecord[];
  torn: boolean;
  /** Problems found while reading (gaps, mismatches); reading went on. */
  warnings: string[];
  /** Damage found (a header read from its copy, a database read from its copy); sw-recover repairs it. */
  damage: string[];
}

export interface VerifyResult {
  ok: boolean;
  position: number;
  events: number;
  problems: string[];
  notes: string[];
}

const sha256 = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

/** The database to read: the file, or its copy in the checkpoint store when the file is not the one the journal continues. */
interface DbChoice {
  bytes: Buffer | null;
  /** Why the copy was used, or null. */
  fromCopy: string | null;
}

export class TaskLog {
  constructor(
    readonly dbFile: string,
    readonly journalFile: string,
    /** The git repository holding copies of the database (state.git), if any. */
    readonly copyRepo: string | null = null,
  ) {}

  static forRun(paths: { tasklogDb: string; tasklogJournal: string }): TaskLog {
    return new TaskLog(paths.tasklogDb, paths.tasklogJournal, path.join(path.dirname(paths.tasklogDb), 'state.git'));
  }

  private hasCopyRepo(): boolean {
    return this.copyRepo !== null && fs.existsSync(path.join(this.copyRepo, 'HEAD'));
  }

  /**
   * The file's bytes when they are the database the journal continues (its
   * sha256 is in the header); otherwise the copy kept in state.git when there
   * is one (a compaction killed before its new journal also lands here: the
   * copy plus the whole journal is the same history).
   */
  private async chooseDb(bytes: Buffer | null, journal: JournalContents): Promise<DbChoice> {
    const want = journal.header.db_sha256;
    if (!want || (bytes && sha256(bytes) === want) || !this.hasCopyRepo()) return { bytes, fromCopy: null };
    if (bytes && (await this.finishedCompaction(bytes, journal))) return { bytes, fromCopy: null };
    const copy = readDbCopy(this.copyRepo as string, want);
    if (!copy) return { bytes, fromCopy: null };
    return {
      bytes: copy,
      fromCopy: bytes
        ? `${this.dbFile}: not the database the journal continues (checksum differs); read from its copy in state.git`
        : `${this.dbFile}: missing; read from its copy in state.git`,
    };
  }

  /** A database a compaction wrote before it was killed, short of starting the new journal: it covers this whole journal. */
  private async finishedCompaction(bytes: Buffer, journal: JournalContents): Promise<boolean> {
    try {
      const SQL = await sqljs();
      const db = new SQL.Database(bytes);
      try {
        return getMeta(db, 'log') === journal.header.log && Number(getMeta(db, 'position')) === journal.end && journal.header.base < journal.end;
      } finally {
        db.close();
      }
    } catch {
      return false;
    }
  }

  /** Keep the copy of the database the journal continues in state.git (a no-op when it is there); returns whether one was written. */
  ensureCopy(): boolean {
    if (!this.hasCopyRepo() || !fs.existsSync(this.dbFile)) return false;
    const fd = openLocked(this.journalFile, 'sh', fs.constants.O_RDONLY);
    try {
      const want = readJournalHeader(fd, this.journalFile).db_sha256;
      // The usual case, every checkpoint: the copy is there; the database is not read.
      if (!want || listDbCopies(this.copyRepo as string).includes(want)) return false;
      const bytes = fs.readFileSync(this.dbFile);
      // Only the database the journal continues is worth a copy (a damaged file is not).
      if (sha256(bytes) !== want) return false;
      return storeDbCopy(this.copyRepo as string, bytes).stored;
    } finally {
      unlock(fd);
      fs.closeSync(fd);
    }
  }

  exists(): boolean {
    return fs.existsSync(this.journalFile);
  }

  /** Create the journal of a new log; a no-op when it exists. */
  async init(): Promise<void> {
    if (this.exists()) return;
    if (fs.existsSync(this.dbFile)) {
      // The journal was lost but the snapshot remains: continue after it.
      const SQL = await sqljs();
      const bytes = fs.readFileSync(this.dbFile);
      const db = new SQL.Database(bytes);
      try {
        const log = getMeta(db, 'log') ?? crypto.randomUUID();
        const base = Number(getMeta(db, 'position') ?? 0);
        writeJournal(this.journalFile, { log, base, db_sha256: sha256(bytes) });
      } finally {
        db.close();
      }
      return;
    }
    writeJournal(this.journalFile, { log: crypto.randomUUID(), base: 0, db_sha256: '' });
  }

  /** Append one event; returns its global position once it is on disk. */
  append(event: TaskEvent): number {
    return this.appendMany([event])[0] as number;
  }

  /** Append several events at once; `lockWaitMs` bounds the wait for the journal's lock (exit 75 past it). */
  appendMany(events: TaskEvent[], lockWaitMs?: number): number[] {
    const now = new Date().toISOString();
    const stamped = events.map((e) => (e.ts ? e : { ...e, ts: now }));
    return appendRecords(this.journalFile, stamped, lockWaitMs).positions;
  }

  /** Size of the journal in bytes (what a compaction would fold). */
  journalBytes(): number {
    try {
      return fs.statSync(this.journalFile).size;
    } catch {
      return 0;
    }
  }

  /** The global position just past the last complete event, and the log's id (reads only the ends of the journal). */
  end(): { position: number; log: string } {
    const fd = openLocked(this.journalFile, 'sh', fs.constants.O_RDONLY);
    try {
      return journalEnd(fd, this.journalFile);
    } finally {
      unlock(fd);
      fs.closeSync(fd);
    }
  }

  private async loadDb(bytes: Buffer | null, journal: JournalContents): Promise<{ db: Database; position: number; warnings: string[] }> {
    const SQL = await sqljs();
    const warnings: string[] = [];
    let db: Database;
    try {
      db = bytes ? new SQL.Database(bytes) : new SQL.Database();
      schemaVersion(db); // fails here on a file that is not a database
    } catch (e) {
      throw dataError(`${this.dbFile}: cannot open the task log database: ${(e as Error).message}`);
    }
    let log: string | undefined;
    let dbPos: number;
    try {
      migrate(db, this.dbFile);
      // A damaged page shows on the first read of it ("malformed database schema"): bad data, named, not a crash.
      log = getMeta(db, 'log');
      dbPos = Number(getMeta(db, 'position') ?? 0);
    } catch (e) {
      db.close();
      if (e instanceof SwError) throw e;
      throw dataError(`${this.dbFile}: cannot read the task log database: ${(e as Error).message}`);
    }
    let position = journal.header.base;
    if (bytes) {
      if (log && log !== journal.header.log) {
        db.close();
        throw dataError(`${this.dbFile}: belongs to task log ${log}, but ${this.journalFile} to ${journal.header.log}`);
      }
      position = dbPos;
      if (journal.header.base > position) {
        warnings.push(`${this.journalFile} starts at position ${journal.header.base} but the database ends at ${position}: the events between are missing`);
      }
    } else if (journal.header.base > 0) {
      warnings.push(`${this.dbFile} is missing: the ${journal.header.base} bytes of events before the journal are lost`);
    }
    setMeta(db, 'log', journal.header.log);
    return { db, position, warnings };
  }

  private readDbBytes(): Buffer | null {
    try {
      return fs.readFileSync(this.dbFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  private static replay(db: Database, journal: JournalContents, from: number): { replayed: number; position: number } {
    const applier = new EventApplier(db);
    let replayed = 0;
    db.exec('BEGIN');
    try {
      for (const r of journal.records) {
        if (r.pos < from) continue;
        applier.apply(r.pos, r.event);
        replayed++;
      }
      db.exec('COMMIT');
    } catch (e) {
      db.exec('ROLLBACK');
      throw e;
    } finally {
      applier.free();
    }
    const position = Math.max(from, journal.end);
    setMeta(db, 'position', position);
    return { replayed, position };
  }

  /** The database file's bytes and the journal, read together under the journal's shared lock. */
  private readBoth(): { bytes: Buffer | null; journal: JournalContents } {
    return readJournalLocked(this.journalFile, (journal) => ({ bytes: this.readDbBytes(), journal }));
  }

  /** The whole log as one in-memory database (snapshot plus journal tail). */
  async snapshot(): Promise<Snapshot> {
    const { bytes: fileBytes, journal } = this.readBoth();
    const choice = await this.chooseDb(fileBytes, journal);
    const { db, position: dbPos, warnings } = await this.loadDb(choice.bytes, journal);
    try {
      const { replayed, position } = TaskLog.replay(db, journal, dbPos);
      const damage = [journal.headerDamage, choice.fromCopy].filter((d): d is string => d !== null);
      return { db, log: journal.header.log, position, replayed, corrupt: journal.corrupt, torn: journal.torn, warnings, damage };
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /**
   * Fold the journal into the database snapshot and start a new journal that
   * continues at the same position. Writers wait on the journal lock meanwhile.
   * The new database's copy goes to state.git. `repair`: fold even when there
   * is nothing new, keeping the damaged files beside the run (`forensics`).
   */
  async compact(
    opts: { repair?: boolean; retention?: TasklogRetention; now?: number; gone?: ReadonlySet<string> } = {},
  ): Promise<{ folded: number; position: number; dbBytes: number; forensics: string[]; samples?: RetentionResult; detail?: DetailResult; tasks?: TasksResult }> {
    const fd = openLocked(this.journalFile, 'ex');
    try {
      const fileBytes = this.readDbBytes();
      const journal = readJournalFd(fd, this.journalFile);
      const choice = await this.chooseDb(fileBytes, journal);
      const { db, position: dbPos } = await this.loadDb(choice.bytes, journal);
      const forensics: string[] = [];
      try {
        const { replayed, position } = TaskLog.replay(db, journal, dbPos);
        const shaNow = fileBytes ? sha256(fileBytes) : '';
        const damaged = journal.headerDamage !== null || journal.corrupt.length > 0 || choice.fromCopy !== null;
        let samples: RetentionResult | undefined;
        let detail: DetailResult | undefined;
        let tasks: TasksResult | undefined;
        let folding = false;
        if (opts.retention) {
          const r = opts.retention;
          samples = downsampleSamples(db, opts.now ?? Date.now(), r);
          if (r.detail_after !== undefined) {
            detail = foldDetail(db, opts.now ?? Date.now(), { ...r, detail_after: r.detail_after });
            // After the steps: a task folds only once none of its steps is left.
            tasks = foldTasks(db, opts.now ?? Date.now(), { ...r, detail_after: r.detail_after }, opts.gone ?? new Set());
          }
          folding =
            samples.rowsAfter < samples.rowsBefore ||
            (detail !== undefined && (detail.steps[1] < detail.steps[0] || detail.calls[1] < detail.calls[0] || detail.heartbeats[1] < detail.heartbeats[0])) ||
            (tasks !== undefined && (tasks.tasks[1] < tasks.tasks[0] || tasks.checkpoints[1] < tasks.checkpoints[0]));
          // The freed pages go too, so the file shrinks rather than holding them.
          if (folding) db.exec('VACUUM');
        }
        const extra = { ...(samples ? { samples } : {}), ...(detail ? { detail } : {}), ...(tasks ? { tasks } : {}) };
        if (replayed === 0 && !folding && journal.header.base === position && journal.header.db_sha256 === shaNow && fileBytes && !damaged) {
          return { folded: 0, position, dbBytes: fileBytes.length, forensics, ...extra };
        }
        if (damaged && opts.repair) {
          const stamp = Date.now();
          const j = `${this.journalFile}.damaged-${stamp}`;
          fs.copyFileSync(this.journalFile, j);
          forensics.push(j);
          if (choice.fromCopy && fileBytes) {
            const d = `${this.dbFile}.corrupt-${stamp}`;
            fs.writeFileSync(d, fileBytes);
            forensics.push(d);
          }
        }
        setMeta(db, 'updated_at', new Date().toISOString());
        const out = Buffer.from(db.export());
        writeFileAtomic(this.dbFile, out);
        writeJournal(this.journalFile, { log: journal.header.log, base: position, db_sha256: sha256(out) });
        if (this.hasCopyRepo()) storeDbCopy(this.copyRepo as string, out);
        return { folded: replayed, position, dbBytes: out.length, forensics, ...extra };
      } finally {
        db.close();
      }
    } finally {
      unlock(fd);
      fs.closeSync(fd);
    }
  }

  /** Check the journal's records and the snapshot's integrity; never throws for corruption. */
  async verify(): Promise<VerifyResult> {
    const problems: string[] = [];
    const notes: string[] = [];
    let journal: JournalContents;
    let bytes: Buffer | null;
    try {
      ({ bytes, journal } = this.readBoth());
    } catch (e) {
      const msg = (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${this.journalFile}: missing` : (e as Error).message;
      return { ok: false, position: 0, events: 0, problems: [msg], notes };
    }
    for (const c of journal.corrupt) problems.push(describeCorrupt(this.journalFile, c));
    if (journal.headerDamage) problems.push(journal.headerDamage);
    const copyNote = (): string => (journal.header.db_sha256 && this.hasCopyRepo() && readDbCopy(this.copyRepo as string, journal.header.db_sha256) ? ' (an intact copy is in state.git; sw-recover repairs it)' : '');
    if (journal.torn) notes.push(`${this.journalFile}: a torn last record (from a killed writer) is ignored`);
    if (bytes) {
      const sha = sha256(bytes);
      let dbPos: number | undefined;
      let dbLog: string | undefined;
      try {
        const SQL = await sqljs();
        const db = new SQL.Database(bytes);
        try {
          const ic = db.exec('PRAGMA integrity_check');
          const res = String(ic[0]?.values[0]?.[0] ?? 'no answer');
          if (res !== 'ok') problems.push(`${this.dbFile}: integrity check: ${res}`);
          const v = schemaVersion(db);
          if (v > SCHEMA_VERSION) problems.push(`${this.dbFile}: schema version ${v} is newer than this selfware understands (${SCHEMA_VERSION})`);
          dbPos = Number(getMeta(db, 'position') ?? NaN);
          dbLog = getMeta(db, 'log');
        } finally {
          db.close();
        }
      } catch (e) {
        problems.push(`${this.dbFile}: cannot read: ${(e as Error).message}`);
      }
      if (sha !== journal.header.db_sha256) {
        // A compaction killed between writing the snapshot and starting the new
        // journal leaves a snapshot that already covers the whole journal.
        const covered = dbLog === journal.header.log && dbPos === journal.end && journal.header.base < dbPos;
        if (covered) notes.push(`${this.dbFile}: written by a compaction that did not finish; the next one completes it`);
        else problems.push(`${this.dbFile}: checksum does not match the one the journal recorded for it${copyNote()}`);
      }
    } else if (journal.header.db_sha256 !== '') {
      problems.push(`${this.dbFile}: missing, but the journal continues from it${copyNote()}`);
    }
    return { ok: problems.length === 0, position: journal.end, events: journal.records.length, problems, notes };
  }
}

/** Parse journal bytes (exported for tests and tools). */
export { parseJournal };
