// Task-log append cost at 1,000 and at 1,000,000 rows: the median time of an
// acknowledged (fdatasync'd) append to each, interleaved, and their ratio
// (DESIGN.md invariant 3: flat). For contrast, the cost of what invariant 3
// rules out: exporting and durably writing the whole database once.
//   node dist/bench/tasklog.js [appends]

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../lib/fsutil.js';
import { writeJournal } from '../lib/tasklog/journal.js';
import { TaskLog, migrate, sqljs } from '../lib/tasklog/index.js';
import { setMeta } from '../lib/tasklog/schema.js';
import { sha256 } from '../lib/tasklog/copy.js';
import { median } from './stats.js';

const appends = Number(process.argv[2] ?? 400);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tl-'));

/** A task log whose database already holds `rows` LLM-call rows. */
async function build(name: string, rows: number): Promise<{ log: TaskLog; exportMs: number; dbBytes: number }> {
  const SQL = await sqljs();
  const db = new SQL.Database();
  migrate(db, name);
  const logId = crypto.randomUUID();
  db.exec('BEGIN');
  const stmt = db.prepare(
    'INSERT INTO llm_calls (pos, ts, session_id, task_id, attempt, step, backend, model, quantization, tokens_in, tokens_out, latency_ms, tokens_per_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
  );
  const t0 = Date.parse('2026-11-14T00:00:00Z');
  for (let i = 0; i < rows; i++) {
    stmt.run([i * 200, t0 + i * 600, 's1', `task-${i >> 4}`, 1, i & 15, 'llama', 'qwen3-coder', 'Q4_K_M', 900 + (i % 300), 80 + (i % 90), 1200.5, 55.5]);
  }
  stmt.free();
  db.exec('COMMIT');
  setMeta(db, 'log', logId);
  setMeta(db, 'position', rows * 200);
  const e0 = performance.now();
  const bytes = db.export();
  const file = path.join(dir, `${name}.db`);
  writeFileAtomic(file, bytes);
  const exportMs = performance.now() - e0;
  db.close();
  const journal = path.join(dir, `${name}.journal`);
  writeJournal(journal, { log: logId, base: rows * 200, db_sha256: crypto.createHash('sha256').update(bytes).digest('hex') });
  return { log: new TaskLog(file, journal), exportMs, dbBytes: bytes.length };
}

try {
  const small = await build('small', 1_000);
  const big = await build('big', 1_000_000);
  const event = (i: number) => ({ t: 'llm_call', session: 's1', task: `t${i}`, tokens_in: 1000, tokens_out: 90, latency_ms: 1300, tokens_per_s: 60, quantization: 'Q4_K_M' });
  for (let i = 0; i < 20; i++) {
    small.log.append(event(i));
    big.log.append(event(i));
  }
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < appends; i++) {
    let t = performance.now();
    small.log.append(event(i));
    a.push(performance.now() - t);
    t = performance.now();
    big.log.append(event(i));
    b.push(performance.now() - t);
  }
  // What a clean start's quick check pays to trust the database (read and hash it), against the
  // full load every other command does (a snapshot), on the same 1M-row database.
  const hashMs: number[] = [];
  const loadMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    let t = performance.now();
    sha256(fs.readFileSync(path.join(dir, 'big.db')));
    hashMs.push(performance.now() - t);
    t = performance.now();
    (await big.log.snapshot()).db.close();
    loadMs.push(performance.now() - t);
  }
  const snap = await big.log.snapshot();
  const count = snap.db.exec('SELECT count(*) FROM llm_calls')[0]?.values[0]?.[0];
  snap.db.close();
  console.log(`appends: ${appends} to each, interleaved; every append fdatasync'd before it returns`);
  console.log(`1,000 rows:      median ${median(a).toFixed(3)} ms   (db ${(small.dbBytes / 1e6).toFixed(2)} MB)`);
  console.log(`1,000,000 rows:  median ${median(b).toFixed(3)} ms   (db ${(big.dbBytes / 1e6).toFixed(1)} MB, ${count} rows read back)`);
  console.log(`ratio (1M / 1k): ${(median(b) / median(a)).toFixed(2)}`);
  console.log(`quick check's read + sha256 of the 1M-row db: median ${median(hashMs).toFixed(1)} ms; a full snapshot: ${median(loadMs).toFixed(1)} ms; ratio ${(median(hashMs) / median(loadMs)).toFixed(3)}`);
  console.log(`for contrast, one export + durable write of the whole database: 1k rows ${small.exportMs.toFixed(1)} ms, 1M rows ${big.exportMs.toFixed(1)} ms`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
