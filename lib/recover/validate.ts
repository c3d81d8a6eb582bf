// Is state/ as the crash left it usable? Every file parses and matches its
// schema. Crash artefacts are repaired rather than failed: a torn last
// transcript line (dropped, as the task log drops a torn record) and a
// missing state/.git pointer. A queue entry that is not a valid task does not
// make state/ unusable (one bad file must not roll good state back): it is
// set aside in queue/rejected/ with its reason.

import fs from 'node:fs';
import path from 'node:path';
import { SwError, errnoText } from '../exit.js';
import { exists, removeStaleTemps, writeFileAtomic } from '../fsutil.js';
import { setAsideInvalid, type Rejection } from '../queue/reject.js';
import { readQueue, type Task, type TaskDefaults } from '../queue/task.js';
import type { RunPaths } from '../run.js';
import { MAX_DEPTH, checkYamlDepth, jsonTooDeep, parseJsonText, readFileBounded, readTextFile } from '../safefile.js';
import { GITFILE, stateGit } from '../state/layout.js';
import { archiveProblems } from '../queue/archive.js';

/** "FILE: missing", "FILE: does not parse", or the refusal of a bad file (a link, too big, not text). */
function fileProblem(file: string, e: unknown, parseWords: string): string {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return `${file}: missing`;
  if (e instanceof SwError) return e.message.startsWith(file) ? e.message : `${file}: ${parseWords}: ${e.message.split('\n')[0]}`;
  if ((e as NodeJS.ErrnoException).code) return `${file}: cannot read: ${errnoText(e)}`;
  return `${file}: ${parseWords}: ${(e as Error).message.split('\n')[0]}`;
}

export interface Validation {
  ok: boolean;
  /** What is wrong: "file: why". */
  problems: string[];
  /** What was (or, in a dry run, would be) repaired in place. */
  repairs: string[];
  /** Queue entries set aside (in a dry run: that would be); not in repairs, the caller reports them. */
  rejected: Rejection[];
  /** Bad queue entries left in place, and why. */
  notes: string[];
  tasks: Task[];
}

/** Check one JSON-lines transcript; returns the byte length of its complete, valid lines, or a problem. */
function checkTranscript(file: string): { keep: number; torn: boolean } | { problem: string } {
  let buf: Buffer;
  try {
    buf = readFileBounded(file, 'transcript');
  } catch (e) {
    return { problem: e instanceof SwError ? e.message : `${file}: cannot read: ${errnoText(e)}` };
  }
  let off = 0;
  let line = 0;
  while (off < buf.length) {
    const nl = buf.indexOf(0x0a, off);
    if (nl < 0) return { keep: off, torn: true };
    line++;
    const text = buf.subarray(off, nl).toString('utf8');
    if (jsonTooDeep(text) !== null) return { problem: `${file}:${line}: nested deeper than ${MAX_DEPTH} levels` };
    try {
      const v = JSON.parse(text) as unknown;
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return { problem: `${file}:${line}: not a JSON object` };
    } catch {
      return { problem: `${file}:${line}: not JSON` };
    }
    off = nl + 1;
  }
  return { keep: off, torn: false };
}

export async function validateState(paths: RunPaths, defaults: TaskDefaults, opts: { repair: boolean }): Promise<Validation> {
  const problems: string[] = [];
  const repairs: string[] = [];
  const st = paths.stateDir;
  if (!exists(st)) return { ok: false, problems: [`${st}: missing`], repairs, rejected: [], notes: [], tasks: [] };

  // Temp files of atomic writes a killed writer left behind.
  if (opts.repair) for (const d of [st, ...['queue', 'queue/rejected', 'memory', 'transcripts'].map((n) => path.join(st, n))]) removeStaleTemps(d);

  const gitfile = path.join(st, '.git');
  if (!exists(gitfile) || fs.readFileSync(gitfile, 'utf8') !== GITFILE) {
    repairs.push(`${gitfile}: missing or wrong; pointed at ../state.git again`);
    if (opts.repair) writeFileAtomic(gitfile, GITFILE);
  }

  const runYaml = path.join(st, 'run.yaml');
  try {
    const text = readTextFile(runYaml, 'config');
    await checkYamlDepth(runYaml, text);
    const { parse } = await import('yaml');
    const v = parse(text) as { run?: unknown } | null;
    if (!v || typeof v !== 'object') problems.push(`${runYaml}: not a mapping`);
    else if (v.run !== paths.run) problems.push(`${runYaml}: run is ${JSON.stringify(v.run)}, expected '${paths.run}'`);
  } catch (e) {
    problems.push(fileProblem(runYaml, e, 'does not parse'));
  }

  const agentJson = path.join(st, 'agent.json');
  try {
    const v = parseJsonText(agentJson, readTextFile(agentJson, 'agent')) as Record<string, unknown> | null;
    if (!v || typeof v !== 'object' || Array.isArray(v)) problems.push(`${agentJson}: not a JSON object`);
    else {
      if (typeof v.status !== 'string') problems.push(`${agentJson}: status is not a string`);
      if (v.paused !== undefined && typeof v.paused !== 'boolean') problems.push(`${agentJson}: paused is not true or false`);
    }
  } catch (e) {
    problems.push(fileProblem(agentJson, e, 'does not parse'));
  }

  // Bad queue entries are set aside, not held against state/; only a queue/ that cannot be read is a problem.
  let tasks: Task[] = [];
  let rejected: Rejection[] = [];
  const notes: string[] = [];
  try {
    let q = await readQueue(st, defaults);
    const aside = setAsideInvalid(st, q.invalid, { dryRun: !opts.repair });
    rejected = aside.moved;
    for (const l of aside.left) notes.push(`${l.error}: not a valid task; left in place: ${l.why}`);
    if (opts.repair && aside.moved.length > 0) q = await readQueue(st, defaults);
    tasks = q.tasks;
  } catch (e) {
    problems.push(`${path.join(st, 'queue')}: cannot be read: ${errnoText(e)}`);
  }

  // An archive of finished tasks that cannot be read is state lost (the checkpoints hold it intact).
  // Those the newest checkpoint holds unchanged are not inflated again (a start reads only what is new).
  problems.push(...(await archiveProblems(st, stateGit(paths))));

  const tdir = path.join(st, 'transcripts');
  let names: string[] = [];
  try {
    names = fs.readdirSync(tdir).sort();
  } catch {
    problems.push(`${tdir}: missing`);
  }
  for (const n of names) {
    if (!n.endsWith('.jsonl')) continue;
    const file = path.join(tdir, n);
    const r = checkTranscript(file);
    if ('problem' in r) problems.push(r.problem);
    else if (r.torn) {
      repairs.push(`${file}: a torn last line (a step being written at the crash) was dropped`);
      if (opts.repair) {
        const fd = fs.openSync(file, 'r+');
        try {
          fs.ftruncateSync(fd, r.keep);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      }
    }
  }
  return { ok: problems.length === 0, problems, repairs, rejected, notes, tasks };
}
