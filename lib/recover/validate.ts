// Is state/ as the crash left it usable? Every file parses and matches its
// schema, and the queue agrees with itself. Two crash artefacts are repaired
// rather than failed: a torn last transcript line (dropped, as the task log
// drops a torn record) and a missing state/.git pointer.

import fs from 'node:fs';
import path from 'node:path';
import { exists, removeStaleTemps, writeFileAtomic } from '../fsutil.js';
import { readQueue, type Task, type TaskDefaults } from '../queue/task.js';
import type { RunPaths } from '../run.js';
import { GITFILE } from '../state/layout.js';

export interface Validation {
  ok: boolean;
  /** What is wrong: "file: why". */
  problems: string[];
  /** What was (or, in a dry run, would be) repaired in place. */
  repairs: string[];
  tasks: Task[];
}

/** Check one JSON-lines transcript; returns the byte length of its complete, valid lines, or a problem. */
function checkTranscript(file: string): { keep: number; torn: boolean } | { problem: string } {
  const buf = fs.readFileSync(file);
  let off = 0;
  let line = 0;
  while (off < buf.length) {
    const nl = buf.indexOf(0x0a, off);
    if (nl < 0) return { keep: off, torn: true };
    line++;
    const text = buf.subarray(off, nl).toString('utf8');
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
  if (!exists(st)) return { ok: false, problems: [`${st}: missing`], repairs, tasks: [] };

  // Temp files of atomic writes a killed writer left behind.
  if (opts.repair) for (const d of [st, ...['queue', 'memory', 'transcripts'].map((n) => path.join(st, n))]) removeStaleTemps(d);

  const gitfile = path.join(st, '.git');
  if (!exists(gitfile) || fs.readFileSync(gitfile, 'utf8') !== GITFILE) {
    repairs.push(`${gitfile}: missing or wrong; pointed at ../state.git again`);
    if (opts.repair) writeFileAtomic(gitfile, GITFILE);
  }

  const runYaml = path.join(st, 'run.yaml');
  try {
    const { parse } = await import('yaml');
    const v = parse(fs.readFileSync(runYaml, 'utf8')) as { run?: unknown } | null;
    if (!v || typeof v !== 'object') problems.push(`${runYaml}: not a mapping`);
    else if (v.run !== paths.run) problems.push(`${runYaml}: run is ${JSON.stringify(v.run)}, expected '${paths.run}'`);
  } catch (e) {
    problems.push(`${runYaml}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `does not parse: ${(e as Error).message.split('\n')[0]}`}`);
  }

  const agentJson = path.join(st, 'agent.json');
  try {
    const v = JSON.parse(fs.readFileSync(agentJson, 'utf8')) as Record<string, unknown> | null;
    if (!v || typeof v !== 'object' || Array.isArray(v)) problems.push(`${agentJson}: not a JSON object`);
    else {
      if (typeof v.status !== 'string') problems.push(`${agentJson}: status is not a string`);
      if (v.paused !== undefined && typeof v.paused !== 'boolean') problems.push(`${agentJson}: paused is not true or false`);
    }
  } catch (e) {
    problems.push(`${agentJson}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'does not parse'}`);
  }

  const q = await readQueue(st, defaults);
  for (const bad of q.invalid) problems.push(bad.error.startsWith(bad.file) ? bad.error : `${bad.file}: ${bad.error}`);
  // Two files for one task (x.yaml and x.yml) cannot both be right.
  const seen = new Map<string, number>();
  for (const t of q.tasks) seen.set(t.id, (seen.get(t.id) ?? 0) + 1);
  for (const [id, n] of seen) if (n > 1) problems.push(`${path.join(st, 'queue')}: task ${id} is defined by ${n} files`);

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
  return { ok: problems.length === 0, problems, repairs, tasks: q.tasks };
}
