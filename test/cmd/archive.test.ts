// The archive of finished tasks (lib/queue/archive.ts): the agent moves a
// finished task's queue file and transcript into state/archive once the
// newest checkpoint holds them; every reader still finds the task, recovery
// does not bring it back into the queue, and the checkpoints verify.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { makeEnv, sw, writeConfig } from '../helpers.js';
import { createRun } from '../fixtures/runs.js';
import { TaskLog, type TaskEvent } from '../../lib/tasklog/index.js';
import { addTask, scriptedRun, startAgent, tasks, waitFor } from '../fixtures/agent.js';
import { archiveFinished, archiveFiles, archiveProblems, archivedTask, readArchive, readArchiveIds } from '../../lib/queue/archive.js';
import { runPaths } from '../../lib/run.js';
import { stateGit } from '../../lib/state/index.js';

const archived = (stateDir: string): string[] => archiveFiles(stateDir);

test('finished tasks move into the archive once checkpointed: list, show, status and recovery still see them, nothing comes back to the queue', { timeout: 90_000 }, async () => {
  const t = makeEnv();
  try {
    const step = (n: string) => [{ action: 'shell', command: `echo ${n} >> done.txt` }, { action: 'finish', summary: n }];
    scriptedRun(t, { a1: step('a1'), a2: step('a2'), a3: step('a3') }, 'agent:\n  archive_after: 1s\n');
    const ids = [await addTask(t, 'a1'), await addTask(t, 'a2'), await addTask(t, 'a3')];
    const st = path.join(t.stateDir, 'run1', 'state');
    const a = startAgent(t);
    await waitFor('three tasks completed', async () => (await tasks(t)).filter((x) => x.status === 'completed').length === 3, 30_000, a);
    await waitFor('the three archived', () => ids.every((id) => !fs.existsSync(path.join(st, 'queue', `${id}.yaml`)) && !fs.existsSync(path.join(st, 'transcripts', `${id}.jsonl`))), 20_000, a);
    // A crash right after: recovery must not bring them back from the task log.
    await a.stop('SIGKILL');
    const r = await sw('sw-recover', ['run1', '--json'], t);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const rj = JSON.parse(String(r.stdout)) as { action: string; reconciled: Array<{ task: string }>; lost: string[]; problems: string[] };
    assert.ok(!rj.reconciled.some((c) => ids.includes(c.task)), JSON.stringify(rj));
    assert.deepEqual(rj.lost, []);
    assert.deepEqual(rj.problems, []);
    for (const id of ids) assert.equal(fs.existsSync(path.join(st, 'queue', `${id}.yaml`)), false, `${id} not back in the queue`);
    assert.match(a.output(), /archived (1 finished task|\d+ finished tasks) in archive\/\d{4}-\d\d-\d\d\/\d{9}-\d+\.jsonl\.gz/);
    const files = archived(st);
    assert.ok(files.length >= 1);
    const lines = files.flatMap((f) => zlib.gunzipSync(fs.readFileSync(f)).toString('utf8').split('\n').filter(Boolean)).map((l) => JSON.parse(l) as { id: string; queue: string; transcript: string });
    assert.deepEqual(lines.map((l) => l.id).sort(), [...ids].sort());
    for (const l of lines) {
      assert.match(l.queue, /status: completed/);
      assert.match(l.transcript, /"type":"end"/);
    }
    // list and status count them; show reads them from the archive.
    const list = await tasks(t);
    assert.deepEqual(list.map((x) => [x.id, x.status, x.archived]).sort(), ids.map((id) => [id, 'completed', true]).sort());
    const show = await sw('sw-agent', ['show', 'run1', ids[0] as string, '--json'], t);
    assert.equal(show.exitCode, 0, String(show.stderr));
    const sj = JSON.parse(String(show.stdout)) as { status: string; transcript: Array<{ type: string }>; archived: string };
    assert.equal(sj.status, 'completed');
    assert.ok(sj.transcript.some((l) => l.type === 'end'));
    assert.match(sj.archived, /archive\/\d{4}-\d\d-\d\d\//);
    const cancel = await sw('sw-agent', ['cancel', 'run1', ids[1] as string], t);
    assert.equal(cancel.exitCode, 1);
    assert.match(String(cancel.stderr), new RegExp(`task ${ids[1]} is already completed \\(archived\\)`));
    const status = await sw('sw-agent', ['status', 'run1', '--json'], t);
    assert.equal((JSON.parse(String(status.stdout)) as { queue: { completed: number } }).queue.completed, 3, String(status.stdout));
    // A checkpoint holds the archive, and every checkpoint verifies.
    const c = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(c.exitCode, 0, String(c.stderr));
    const v = await sw('sw-checkpoint', ['verify', 'run1'], t);
    assert.equal(v.exitCode, 0, String(v.stdout) + String(v.stderr));
    // A new task gets an id no archived task had, and runs.
    const b = startAgent(t);
    scriptedRun(t, { a1: step('a1'), a2: step('a2'), a3: step('a3'), a4: step('a4') }, 'agent:\n  archive_after: 1s\n');
    const id4 = await addTask(t, 'a4');
    assert.ok(!ids.includes(id4));
    await waitFor('the fourth completed', async () => (await tasks(t)).find((x) => x.id === id4)?.status === 'completed', 30_000, b);
    assert.equal(await b.stop(), 0);
    assert.equal(fs.readFileSync(path.join(t.stateDir, 'run1', 'workspace', 'done.txt'), 'utf8'), 'a1\na2\na3\na4\n');
  } finally {
    t.cleanup();
  }
});

test('an archiving pass takes only what the newest checkpoint holds unchanged, finishes an interrupted pass, and drops days past the horizon', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const paths = runPaths('run1', t.env);
    const init = await sw('sw-agent', ['init', 'run1'], t);
    assert.equal(init.exitCode, 0, String(init.stderr));
    const c0 = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(c0.exitCode, 0, String(c0.stderr));
    const st = paths.stateDir;
    const now = Date.now();
    const old = new Date(now - 2 * 3_600_000).toISOString();
    const write = (id: string, status: string): void => {
      fs.writeFileSync(path.join(st, 'queue', `${id}.yaml`), `id: ${id}\ntitle: ${id}\nprompt: do ${id}\nstatus: ${status}\nattempt: 1\ncreated: ${old}\nupdated: ${old}\n`);
      fs.writeFileSync(path.join(st, 'transcripts', `${id}.jsonl`), `{"type":"attempt","attempt":1,"ts":"${old}"}\n`);
    };
    write('done1', 'completed');
    write('done2', 'failed');
    write('live', 'pending');
    write('changed', 'completed');
    const c1 = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(c1.exitCode, 0, String(c1.stderr));
    // Changed since the checkpoint: not archived until a checkpoint holds it.
    fs.appendFileSync(path.join(st, 'transcripts', 'changed.jsonl'), `{"type":"end","attempt":1,"ts":"${old}","outcome":"completed"}\n`);
    // Two archives of one day, the horizon between them: the older leaves, its day's folder stays.
    fs.mkdirSync(path.join(st, 'archive', '2000-01-01'), { recursive: true });
    fs.writeFileSync(path.join(st, 'archive', '2000-01-01', '000000000-1.jsonl.gz'), zlib.gzipSync('{"id":"ancient","name":"ancient.yaml","queue":"id: ancient\\n","transcript":null}\n'));
    fs.writeFileSync(path.join(st, 'archive', '2000-01-01', '120000000-1.jsonl.gz'), zlib.gzipSync('{"id":"noon","name":"noon.yaml","queue":"id: noon\\nstatus: failed\\n","transcript":null}\n'));
    const defaults = { max_attempts: 3, timeout: 3_600_000 };
    const r = await archiveFinished(st, stateGit(paths), { defaults, olderThanMs: 3_600_000, keepMs: now - Date.parse('2000-01-01T06:00:00Z'), now });
    assert.deepEqual(r.archived.sort(), ['done1', 'done2']);
    assert.deepEqual(r.dropped, ['2000-01-01/000000000-1.jsonl.gz']);
    assert.deepEqual(fs.readdirSync(path.join(st, 'archive', '2000-01-01')), ['120000000-1.jsonl.gz']);
    for (const id of ['done1', 'done2']) assert.equal(fs.existsSync(path.join(st, 'queue', `${id}.yaml`)), false);
    for (const id of ['live', 'changed']) assert.equal(fs.existsSync(path.join(st, 'queue', `${id}.yaml`)), true);
    assert.deepEqual([...readArchive(st).entries.keys()].sort(), ['done1', 'done2', 'noon']);
    // The dropped day's tasks keep their ids (recovery must not restore them from the task log, nor
    // a new task take one), read from that archive itself: it had no index.
    assert.equal(fs.readFileSync(path.join(st, 'archive', 'dropped.ids'), 'utf8'), 'ancient completed 2000-01-01\n');
    assert.deepEqual([...readArchiveIds(st)].sort(), ['ancient', 'done1', 'done2', 'noon']);
    const showGone = await sw('sw-agent', ['show', 'run1', 'ancient'], t);
    assert.equal(showGone.exitCode, 66);
    assert.match(String(showGone.stderr), /task ancient is completed; its archive of 2000-01-01 has left state\/ \(past agent\.archive_keep\)/);
    const cancelGone = await sw('sw-agent', ['cancel', 'run1', 'ancient'], t);
    assert.equal(cancelGone.exitCode, 1);
    assert.match(String(cancelGone.stderr), /task ancient is already completed \(archived\)/);
    // Without its ids file, an archive's ids are read from the archive itself.
    for (const f of archiveFiles(st)) fs.rmSync(f.replace(/\.jsonl\.gz$/, '.ids'), { force: true });
    assert.deepEqual([...readArchiveIds(st)].sort(), ['ancient', 'done1', 'done2', 'noon']);
    // A pass stopped before it removed the live files: the next one removes them, archives nothing twice.
    const e = readArchive(st).entries.get('done1');
    fs.writeFileSync(path.join(st, 'queue', 'done1.yaml'), e?.queue as string);
    fs.writeFileSync(path.join(st, 'transcripts', 'done1.jsonl'), e?.transcript as string);
    const c2 = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(c2.exitCode, 0, String(c2.stderr));
    const r2 = await archiveFinished(st, stateGit(paths), { defaults, olderThanMs: 3_600_000, keepMs: 30 * 86_400_000, now: now + 1 });
    assert.deepEqual(r2.finished, ['done1']);
    // The day's last archive leaves (its id read from the archive: it had no index), and the folder with it.
    assert.deepEqual(r2.dropped, ['2000-01-01/120000000-1.jsonl.gz']);
    assert.equal(fs.existsSync(path.join(st, 'archive', '2000-01-01')), false);
    assert.equal(fs.readFileSync(path.join(st, 'archive', 'dropped.ids'), 'utf8'), 'ancient completed 2000-01-01\nnoon failed 2000-01-01\n');
    assert.deepEqual(r2.archived, ['changed'], 'changed is in the newest checkpoint now');
    assert.equal(fs.existsSync(path.join(st, 'queue', 'done1.yaml')), false);
    assert.equal(archiveFiles(st).length, 2);
    // Once a checkpoint holds them, recovery's check at a start inflates no archive, and show
    // only the one its index names.
    const [first, second] = archiveFiles(st) as [string, string];
    fs.writeFileSync(first.replace(/\.jsonl\.gz$/, '.ids'), 'done1 completed\ndone2 completed\n');
    const c3 = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(c3.exitCode, 0, String(c3.stderr));
    const gunzip = zlib.gunzipSync;
    let inflated = 0;
    const counting = (buf: zlib.InputType, o?: zlib.ZlibOptions): Buffer => {
      inflated++;
      return gunzip(buf, o ?? {});
    };
    zlib.gunzipSync = counting as typeof zlib.gunzipSync;
    try {
      assert.deepEqual(await archiveProblems(st, stateGit(paths)), []);
      assert.equal(inflated, 0, 'archives the newest checkpoint holds are not inflated');
      const a = await archivedTask(st, 'changed', defaults);
      assert.equal(a?.task.id, 'changed');
      assert.equal(a?.file, second);
      assert.equal(inflated, 1, 'show inflates the one archive that holds the task');
    } finally {
      zlib.gunzipSync = gunzip;
    }
    // A damaged archive is a problem recovery names (and the checkpoints hold it intact).
    const f = first;
    const bytes = fs.readFileSync(f);
    bytes[bytes.length - 6] = (bytes[bytes.length - 6] as number) ^ 0xff;
    fs.writeFileSync(f, bytes);
    assert.equal(readArchive(st).problems.length, 1, readArchive(st).problems.join('\n'));
    const named = await archiveProblems(st, stateGit(paths));
    assert.equal(named.length, 1, named.join('\n'));
    assert.match(named[0] as string, new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read`));
  } finally {
    t.cleanup();
  }
});

test('at a checkpoint past tasklog.detail_after, tasks whose archives left state/ fold out of the task log: the report says the same, sw-recover brings none back', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    // Every checkpoint folds the journal; a minute's horizon.
    writeConfig(t, 'run1', 'tasklog:\n  compact_bytes: 1\n  detail_after: 1m\n  downsample_bucket: 1m\n');
    await createRun(t);
    const p = runPaths('run1', t.env);
    const ago = (min: number): string => new Date(Date.now() - min * 60_000).toISOString();
    // Three tasks that ended two hours ago; the archives of two have left state/.
    const evs: TaskEvent[] = [{ t: 'session_start', session: 's1', pid: 1, ts: ago(140) }];
    for (const [id, outcome] of [['gone1', 'completed'], ['gone2', 'failed'], ['kept', 'completed']] as const) {
      evs.push({ t: 'task_added', task: id, ts: ago(130), title: id, max_attempts: 1, priority: 0 });
      evs.push({ t: 'task_started', task: id, attempt: 1, ts: ago(125), session: 's1' });
      evs.push({ t: 'task_outcome', task: id, attempt: 1, outcome, reason: outcome === 'failed' ? 'verify failed' : null, steps: 2, ts: ago(120) });
    }
    evs.push({ t: 'session_end', session: 's1', state: 'clean', ts: ago(110) });
    TaskLog.forRun(p).appendMany(evs);
    fs.mkdirSync(path.join(p.stateDir, 'archive'), { recursive: true });
    fs.writeFileSync(path.join(p.stateDir, 'archive', 'dropped.ids'), 'gone1 completed 2026-12-01\ngone2 failed 2026-12-01\n');
    const report = async (): Promise<Record<string, unknown>> => {
      const r = await sw('sw-report', ['run1', '--json', '--since', '1d'], t);
      assert.equal(r.exitCode, 0, String(r.stderr));
      const j = JSON.parse(String(r.stdout)) as Record<string, Record<string, unknown>>;
      // What the clock and the checkpoints made meanwhile change is left out.
      return { tasks: { ...j.tasks, span_s: null, per_hour: null }, attempts: j.attempts, totals: { ...j.totals, checkpoints: null } };
    };
    const before = await report();
    assert.deepEqual((before.tasks as { completed: number; failed: number }).completed, 2);

    const ck = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine', '--force'], t);
    assert.equal(ck.exitCode, 0, String(ck.stderr));
    const snap = await TaskLog.forRun(p).snapshot();
    try {
      assert.deepEqual(snap.db.exec('SELECT id FROM tasks ORDER BY id')[0]?.values, [['kept']]);
      assert.deepEqual(snap.db.exec('SELECT sum(attempts) FROM attempt_rollups WHERE ended_at IS NOT NULL')[0]?.values, [[2]]);
    } finally {
      snap.db.close();
    }
    assert.deepEqual(await report(), before, 'the report says the same');

    const rec = await sw('sw-recover', ['run1'], t);
    assert.equal(rec.exitCode, 0, String(rec.stderr));
    assert.deepEqual(fs.readdirSync(path.join(p.stateDir, 'queue')).filter((f) => f.startsWith('gone')), [], 'nothing came back to the queue');
    assert.deepEqual(await report(), before, 'nor to the report');
  } finally {
    t.cleanup();
  }
});
