import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { EXIT, SwError } from '../../lib/exit.js';
import { crc32, encodeLine, parseJournal } from '../../lib/tasklog/journal.js';
import { MIGRATIONS, SCHEMA_VERSION, TaskLog, schemaVersion, sqljs } from '../../lib/tasklog/index.js';
import { DIST, makeEnv, rng, sleep } from '../helpers.js';

function newLog(dir: string): TaskLog {
  return new TaskLog(path.join(dir, 'tasklog.db'), path.join(dir, 'tasklog.journal'));
}

function rows(db: import('sql.js').Database, sql: string): unknown[][] {
  return db.exec(sql)[0]?.values ?? [];
}

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
});

test('events land in their tables; positions are global and survive compaction', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    const p0 = log.append({ t: 'session_start', session: 's1', pid: 1, host: 'h', version: '0' });
    const p1 = log.append({ t: 'task_added', task: 'a', title: 'A', priority: 5, max_attempts: 3 });
    log.appendMany([
      { t: 'task_started', task: 'a', attempt: 1, session: 's1' },
      { t: 'llm_call', task: 'a', tokens_in: 10, tokens_out: 5, latency_ms: 12.5, tokens_per_s: 400, quantization: 'Q4_K_M' },
      { t: 'task_outcome', task: 'a', attempt: 1, outcome: 'completed', steps: 3 },
      { t: 'session_end', session: 's1', state: 'clean', exit_code: 0 },
    ]);
    assert.equal(p0, 0);
    assert.ok(p1 > p0);
    const endBefore = log.end().position;
    const c = await log.compact();
    assert.equal(c.folded, 6);
    assert.equal(c.position, endBefore);
    const p7 = log.append({ t: 'recovery', reason: 'crash', checkpoint: 'abcd1234', duration_ms: 40 });
    assert.equal(p7, endBefore, 'positions continue after a compaction');
    const s = await log.snapshot();
    try {
      assert.deepEqual(rows(s.db, 'SELECT id, end_state FROM sessions'), [['s1', 'clean']]);
      assert.deepEqual(rows(s.db, 'SELECT task_id, attempt, outcome, steps FROM task_attempts'), [['a', 1, 'completed', 3]]);
      assert.deepEqual(rows(s.db, 'SELECT tokens_in, tokens_out, quantization FROM llm_calls'), [[10, 5, 'Q4_K_M']]);
      assert.deepEqual(rows(s.db, 'SELECT checkpoint_id, duration_ms FROM recoveries'), [['abcd1234', 40]]);
      assert.equal(s.replayed, 1);
      assert.equal(s.position, log.end().position);
    } finally {
      s.db.close();
    }
    assert.equal((await log.verify()).ok, true);
  } finally {
    t.cleanup();
  }
});

test('a torn last record is dropped, never read, and cut off by the next append', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    for (let i = 0; i < 3; i++) log.append({ t: 'test_event', n: i });
    const whole = encodeLine({ t: 'test_event', n: 99, ts: new Date().toISOString() });
    fs.appendFileSync(log.journalFile, whole.subarray(0, whole.length - 7));
    let s = await log.snapshot();
    assert.equal(s.torn, true);
    assert.equal(rows(s.db, 'SELECT count(*) FROM events')[0]?.[0], 3);
    s.db.close();
    const v = await log.verify();
    assert.equal(v.ok, true, 'a torn tail is expected after a crash, not corruption');
    assert.match(v.notes.join('\n'), /torn last record/);
    log.append({ t: 'test_event', n: 3 });
    s = await log.snapshot();
    assert.equal(s.torn, false);
    assert.deepEqual(rows(s.db, "SELECT json_extract(data, '$.n') FROM events ORDER BY pos"), [[0], [1], [2], [3]]);
    s.db.close();
  } finally {
    t.cleanup();
  }
});

test('a corrupt record in the middle is reported by position and skipped', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    log.append({ t: 'test_event', n: 0 });
    const p1 = log.append({ t: 'test_event', n: 1, text: 'hello world' });
    log.append({ t: 'test_event', n: 2 });
    const buf = fs.readFileSync(log.journalFile);
    const j = parseJournal(log.journalFile, buf);
    // The header and its copy (format 2), the same length.
    const headerLen = 2 * (buf.indexOf(0x0a) + 1);
    const at = headerLen + (p1 - j.header.base) + 30;
    buf[at] = (buf[at] as number) ^ 0x20;
    fs.writeFileSync(log.journalFile, buf);
    const v = await log.verify();
    assert.equal(v.ok, false);
    assert.deepEqual(v.problems, [`${log.journalFile}:4: record at position ${p1}: CRC mismatch`], 'the line of the file: the header, its copy, n 0, then n 1');
    const s = await log.snapshot();
    assert.deepEqual(rows(s.db, "SELECT json_extract(data, '$.n') FROM events ORDER BY pos"), [[0], [2]]);
    assert.deepEqual(s.corrupt, [{ pos: p1, line: 4, reason: 'CRC mismatch' }]);
    s.db.close();
  } finally {
    t.cleanup();
  }
});

test('a journal of format 1 (one header line, no copy) is still read and appended to; a compaction moves it to format 2', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    const head = encodeLine({ selfware_tasklog: 1, log: 'old-log', base: 0, db_sha256: '', created: '2026-01-01T00:00:00Z' });
    fs.writeFileSync(log.journalFile, Buffer.concat([head, encodeLine({ t: 'test_event', n: 0, ts: '2026-01-01T00:00:01Z' })]));
    const p1 = log.append({ t: 'test_event', n: 1 });
    assert.equal(p1, encodeLine({ t: 'test_event', n: 0, ts: '2026-01-01T00:00:01Z' }).length, 'positions count from the end of the one header line');
    const j = parseJournal(log.journalFile, fs.readFileSync(log.journalFile));
    assert.deepEqual([j.header.log, j.records.map((r) => r.event.n), j.headerDamage], ['old-log', [0, 1], null]);
    await log.compact();
    const lines = fs.readFileSync(log.journalFile, 'utf8').split('\n');
    assert.equal(lines[0], lines[1], 'the header and its copy');
    assert.match(lines[0] as string, /"selfware_tasklog":2/);
    const s = await log.snapshot();
    assert.deepEqual(rows(s.db, "SELECT json_extract(data, '$.n') FROM events ORDER BY pos"), [[0], [1]]);
    s.db.close();
  } finally {
    t.cleanup();
  }
});

test('a flipped byte in the database is caught by the checksum the journal keeps', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    for (let i = 0; i < 50; i++) log.append({ t: 'task_added', task: `t${i}`, title: `task number ${i}` });
    await log.compact();
    assert.equal((await log.verify()).ok, true);
    const buf = fs.readFileSync(log.dbFile);
    buf[buf.length - 100] = (buf[buf.length - 100] as number) ^ 0xff;
    fs.writeFileSync(log.dbFile, buf);
    const v = await log.verify();
    assert.equal(v.ok, false);
    assert.ok(v.problems.some((p) => p.includes('checksum does not match')), v.problems.join('; '));
  } finally {
    t.cleanup();
  }
});

test('a compaction killed between the database and the new journal is completed, not called corrupt', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    for (let i = 0; i < 5; i++) log.append({ t: 'test_event', n: i });
    await log.compact();
    for (let i = 5; i < 9; i++) log.append({ t: 'test_event', n: i });
    // What compact() does up to the kill: the database now covers the whole journal...
    const s = await log.snapshot();
    fs.writeFileSync(log.dbFile, s.db.export());
    s.db.close();
    // ...but the journal was not replaced yet.
    const v = await log.verify();
    assert.equal(v.ok, true, v.problems.join('; '));
    assert.match(v.notes.join('\n'), /did not finish/);
    const again = await log.snapshot();
    assert.equal(rows(again.db, 'SELECT count(*) FROM events')[0]?.[0], 9, 'no event applied twice or lost');
    again.db.close();
    await log.compact();
    const v2 = await log.verify();
    assert.equal(v2.ok, true);
    assert.deepEqual(v2.notes, []);
  } finally {
    t.cleanup();
  }
});

test('an older database is upgraded; a newer one is refused with exit 65', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const SQL = await sqljs();
    const old = new SQL.Database();
    old.exec(MIGRATIONS[0] as string);
    old.exec('PRAGMA user_version = 1');
    old.run("INSERT INTO meta VALUES ('log', 'L1'), ('position', '0')");
    old.run("INSERT INTO tasks (id, title, added_at) VALUES ('old', 'from v1', 1)");
    const log = newLog(t.dir);
    fs.writeFileSync(log.dbFile, old.export());
    old.close();
    await log.init();
    log.append({ t: 'approval_requested', id: 'ap1', task: 'old', action: 'shell' });
    const s = await log.snapshot();
    assert.equal(schemaVersion(s.db), SCHEMA_VERSION);
    assert.deepEqual(rows(s.db, 'SELECT title FROM tasks'), [['from v1']]);
    assert.deepEqual(rows(s.db, 'SELECT id, task_id FROM approvals'), [['ap1', 'old']]);
    s.db.close();
    await log.compact();
    const onDisk = new SQL.Database(fs.readFileSync(log.dbFile));
    assert.equal(schemaVersion(onDisk), SCHEMA_VERSION, 'the compaction wrote the upgraded schema');
    onDisk.exec('PRAGMA user_version = 99');
    fs.writeFileSync(log.dbFile, onDisk.export());
    onDisk.close();
    await assert.rejects(log.snapshot(), (e: unknown) => {
      assert.ok(e instanceof SwError);
      assert.equal(e.code, EXIT.DATAERR);
      assert.match(e.message, new RegExp(`schema version 99 is newer than this selfware understands \\(${SCHEMA_VERSION}\\); upgrade selfware`));
      return true;
    });
  } finally {
    t.cleanup();
  }
});

function appender(log: TaskLog, writer: string, count?: number, mode?: string) {
  const args = [path.join(DIST, 'test/fixtures/append-loop.js'), log.dbFile, log.journalFile, writer];
  if (count !== undefined) args.push(String(count));
  if (mode) args.push(mode);
  return execa(process.execPath, args, { reject: false });
}

test('several processes appending and compacting at once lose nothing', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    const n = 60;
    const results = await Promise.all([appender(log, 'a', n), appender(log, 'b', n), appender(log, 'c', n, 'compact')]);
    for (const r of results) assert.equal(r.exitCode, 0, String(r.stderr));
    const s = await log.snapshot();
    const got = rows(s.db, "SELECT json_extract(data, '$.writer') AS w, count(*), count(DISTINCT json_extract(data, '$.n')) FROM events GROUP BY w ORDER BY w");
    assert.deepEqual(got, [['a', n, n], ['b', n, n], ['c', n, n]]);
    s.db.close();
    assert.equal((await log.verify()).ok, true);
  } finally {
    t.cleanup();
  }
});

test('SIGKILL at random instants: every acknowledged event is there, the log opens', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const log = newLog(t.dir);
    await log.init();
    const rand = rng(42);
    const acked = new Map<string, number>();
    for (let round = 0; round < 15; round++) {
      const writer = `w${round}`;
      const child = appender(log, writer, undefined, round % 3 === 0 ? 'compact' : undefined);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      // The random instant counts from its first acknowledged event (a loaded machine can take
      // longer than the whole draw to start a process): every kill lands while it writes.
      const deadline = Date.now() + 20_000;
      while (out === '' && child.exitCode === null && Date.now() < deadline) await sleep(10);
      await sleep(20 + rand() * 250);
      child.kill('SIGKILL');
      await child;
      const done = out.split('\n').filter((l) => l !== '').length;
      acked.set(writer, done);
      const s = await log.snapshot();
      try {
        for (const [w, k] of acked) {
          const have = rows(s.db, `SELECT count(DISTINCT json_extract(data, '$.n')) FROM events WHERE json_extract(data, '$.writer') = '${w}'`)[0]?.[0] as number;
          assert.ok(have >= k, `round ${round}: writer ${w} had ${k} acknowledged, log has ${have}`);
        }
        assert.deepEqual(s.corrupt, []);
      } finally {
        s.db.close();
      }
    }
    const v = await log.verify();
    assert.equal(v.ok, true, v.problems.join('; '));
    assert.ok([...acked.values()].reduce((a, b) => a + b, 0) > 50, 'the kills landed while events were being written');
  } finally {
    t.cleanup();
  }
});

test("a compaction's copy of the database in state.git replaces the last one, its loose blob removed at once, not left for the daily prune", { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const repo = path.join(t.dir, 'state.git');
    await execa('git', ['init', '--quiet', '--bare', repo]);
    const log = new TaskLog(path.join(t.dir, 'tasklog.db'), path.join(t.dir, 'tasklog.journal'), repo);
    await log.init();
    const copies = async (): Promise<Array<[string, string]>> =>
      String((await execa('git', ['--git-dir', repo, 'for-each-ref', '--format=%(refname) %(objectname)', 'refs/selfware/tasklog-db/'])).stdout)
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]);
    const blobs: string[] = [];
    for (let round = 0; round < 3; round++) {
      log.appendMany(Array.from({ length: 200 }, (_, i) => ({ t: 'resource_sample', vram_used_mb: round * 1000 + i, cpu_load: i })));
      await log.compact();
      const c = await copies();
      assert.equal(c.length, 1, `round ${round}: one copy`);
      blobs.push((c[0] as [string, string])[1]);
    }
    assert.equal(new Set(blobs).size, 3, 'a new copy each time');
    for (const old of blobs.slice(0, 2)) {
      assert.equal(fs.existsSync(path.join(repo, 'objects', old.slice(0, 2), old.slice(2))), false, `old copy ${old} removed`);
      assert.notEqual((await execa('git', ['--git-dir', repo, 'cat-file', '-e', old], { reject: false })).exitCode, 0);
    }
    const last = blobs[2] as string;
    assert.equal((await execa('git', ['--git-dir', repo, 'cat-file', '-e', last], { reject: false })).exitCode, 0);
    const fsck = await execa('git', ['--git-dir', repo, 'fsck', '--strict', '--unreachable'], { reject: false });
    assert.equal(fsck.exitCode, 0, String(fsck.stderr));
    assert.equal(String(fsck.stdout).trim(), '', 'nothing unreachable left');
    assert.equal((await log.verify()).ok, true);
  } finally {
    t.cleanup();
  }
});
