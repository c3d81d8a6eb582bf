// Reading git objects in bulk and checking each against its id: what verify
// needs to say "this checkpoint's data is intact" without trusting git's cache.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fsyncDir, mkdirDurable } from '../fsutil.js';
import type { Git } from '../git.js';

export interface BadObject {
  oid: string;
  reason: string;
}

/** A git object's id: sha1 of "<type> <size>\0<content>". */
export function gitObjectId(type: string, content: string | Buffer): string {
  const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  return crypto.createHash('sha1').update(`${type} ${body.length}\0`).update(body).digest('hex');
}

/**
 * Write a loose object as git would (zlib of "<type> <size>\0<content>" under
 * objects/xx/, made durable: a temporary file fsynced, renamed, its directory
 * fsynced) and return its id, without a git process: a checkpoint writes two
 * commits and the agent one before each task, and each spawn of git from the
 * agent's big process blocked it ~13 ms. An object already there loose is
 * left as it is, its time refreshed (as git does, so a prune's grace counts
 * from now). A failed write leaves no temporary file.
 */
export function writeLooseObject(gitDir: string, type: string, content: string | Buffer): string {
  const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const oid = gitObjectId(type, body);
  const dir = path.join(gitDir, 'objects', oid.slice(0, 2));
  const file = path.join(dir, oid.slice(2));
  try {
    const now = new Date();
    fs.utimesSync(file, now, now);
    return oid;
  } catch {
    /* not there loose: write it */
  }
  mkdirDurable(dir);
  const tmp = path.join(dir, `tmp_obj_selfware_${process.pid}_${crypto.randomBytes(4).toString('hex')}`);
  try {
    const fd = fs.openSync(tmp, 'wx', 0o444);
    try {
      fs.writeSync(fd, zlib.deflateSync(Buffer.concat([Buffer.from(`${type} ${body.length}\0`), body])));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  fsyncDir(dir);
  return oid;
}

/**
 * Read each object with `git cat-file --batch` and re-hash it. A corrupt object
 * can make git die mid-stream; the object it died on is reported and the rest
 * are read by a new process.
 */
export async function checkObjects(git: Git, oids: string[]): Promise<BadObject[]> {
  const bad: BadObject[] = [];
  let rest = oids;
  while (rest.length > 0) {
    const { done, error } = await catFileBatch(git, rest, (oid, type, content) => {
      if (gitObjectId(type, content) !== oid) bad.push({ oid, reason: 'content does not match its id' });
    }, (oid) => bad.push({ oid, reason: fs.existsSync(looseFile(git, oid)) ? 'damaged: its file cannot be read (git cannot inflate it)' : 'missing' })); // prettier-ignore
    if (done >= rest.length) break;
    const failed = rest[done] as string;
    bad.push({ oid: failed, reason: error || 'unreadable' });
    rest = rest.slice(done + 1);
  }
  return bad;
}

/** Objects' contents by id (for commits and small trees); throws if git fails. */
export async function readObjects(git: Git, oids: string[]): Promise<Map<string, { type: string; content: Buffer }>> {
  const out = new Map<string, { type: string; content: Buffer }>();
  const { done, error } = await catFileBatch(git, oids, (oid, type, content) => out.set(oid, { type, content }), () => {});
  if (done < oids.length) throw new Error(`git cat-file: cannot read ${oids[done]}: ${error}`);
  return out;
}

function catFileBatch(
  git: Git,
  oids: string[],
  onObject: (oid: string, type: string, content: Buffer) => void,
  onMissing: (oid: string) => void,
): Promise<{ done: number; error: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-c', 'safe.directory=*', 'cat-file', '--batch'], { cwd: git.dir, env: git.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let buf: Buffer = Buffer.alloc(0);
    let done = 0;
    let stderr = '';
    let need: { oid: string; type: string; size: number } | null = null;
    const pump = (): void => {
      for (;;) {
        if (need) {
          if (buf.length < need.size + 1) return;
          onObject(need.oid, need.type, buf.subarray(0, need.size));
          buf = buf.subarray(need.size + 1);
          need = null;
          done++;
          continue;
        }
        const nl = buf.indexOf(0x0a);
        if (nl < 0) return;
        const header = buf.subarray(0, nl).toString('utf8');
        buf = buf.subarray(nl + 1);
        const parts = header.split(' ');
        if (parts[1] === 'missing' || parts[1] === 'ambiguous') {
          onMissing(parts[0] as string);
          done++;
          continue;
        }
        need = { oid: parts[0] as string, type: parts[1] as string, size: Number(parts[2]) };
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      pump();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', () => {
      const first = stderr.split('\n').find((l) => l.trim() !== '') ?? '';
      resolve({ done, error: first.replace(/^(fatal|error): /, '') });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(oids.join('\n') + '\n');
  });
}

const looseFile = (git: Git, oid: string): string => path.join(git.gitDir, 'objects', oid.slice(0, 2), oid.slice(2));

/** The pack files (their .pack paths) that hold any of oids. */
async function packsHolding(git: Git, oids: Set<string>): Promise<string[]> {
  const dir = path.join(git.gitDir, 'objects', 'pack');
  let idxs: string[];
  try {
    idxs = fs.readdirSync(dir).filter((f) => f.endsWith('.idx'));
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const idx of idxs) {
    const listed = await git.run(['show-index'], { input: fs.readFileSync(path.join(dir, idx)), allowFail: true });
    // A damaged index: its pack is suspect as a whole.
    const has = listed.code !== 0 || listed.stdout.split('\n').some((l) => oids.has(l.split(' ')[1] ?? ''));
    if (has) out.push(path.join(dir, idx.replace(/\.idx$/, '.pack')));
  }
  return out;
}

/**
 * Move damaged objects out of a repository into `aside` (forensics), so git
 * writes them again from the live files instead of reusing them: a loose
 * object's file is moved; a pack holding one is moved whole once every object
 * still readable in it is written back as a loose object. Returns what was
 * moved, one line each.
 */
export async function setAsideObjects(git: Git, oids: string[], aside: string): Promise<string[]> {
  const done: string[] = [];
  const rest = new Set<string>();
  for (const oid of oids) {
    const f = looseFile(git, oid);
    if (fs.existsSync(f)) {
      const to = path.join(aside, 'objects', oid.slice(0, 2), oid.slice(2));
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.renameSync(f, to);
      done.push(`object ${oid.slice(0, 12)} moved to ${to}`);
    } else rest.add(oid);
  }
  if (rest.size === 0) return done;
  for (const pack of await packsHolding(git, rest)) {
    const base = pack.replace(/\.pack$/, '');
    // Every object of the pack that still reads back whole is written out loose first, found through
    // its index (not by reading the pack as a stream, which cannot go on past a damaged object: all
    // that came after it in the pack was lost, the trees of dozens of older checkpoints among them).
    const saved = await salvagePack(git, `${base}.idx`, rest);
    const toDir = path.join(aside, 'pack');
    fs.mkdirSync(toDir, { recursive: true });
    for (const ext of ['.pack', '.idx', '.rev', '.bitmap', '.keep', '.promisor', '.mtimes']) {
      if (fs.existsSync(base + ext)) fs.renameSync(base + ext, path.join(toDir, path.basename(base + ext)));
    }
    const lost = saved.lost.length > 0 ? `; ${saved.lost.length} could not be read (${saved.lost.slice(0, 3).map((o) => o.slice(0, 12)).join(', ')}${saved.lost.length > 3 ? ', ...' : ''})` : '';
    done.push(`pack ${path.basename(pack)} held a damaged object: moved to ${toDir}, its ${saved.written} intact objects written back${lost}`);
  }
  return done;
}

/**
 * Write out as loose objects the objects of a pack (listed by its index) that
 * read back whole, all but `damaged` and those stored as deltas on them; each
 * is checked against its id first. A corrupt one can make git die mid-stream:
 * it is counted lost and the rest are read by a new process.
 */
async function salvagePack(git: Git, idx: string, damaged: Set<string>): Promise<{ written: number; lost: string[] }> {
  const listed = await git.run(['show-index'], { input: fs.readFileSync(idx), allowFail: true });
  const all = listed.stdout.split('\n').map((l) => l.split(' ')[1] ?? '').filter((o) => /^[0-9a-f]{40}$/.test(o));
  const lost = all.filter((o) => damaged.has(o));
  let rest = all.filter((o) => !damaged.has(o) && !fs.existsSync(looseFile(git, o)));
  let written = 0;
  while (rest.length > 0) {
    const { done } = await catFileBatch(git, rest, (oid, type, content) => {
      if (gitObjectId(type, content) !== oid) {
        lost.push(oid);
        return;
      }
      writeLooseObject(git.gitDir, type, content);
      written++;
    }, (oid) => lost.push(oid)); // prettier-ignore
    if (done >= rest.length) break;
    lost.push(rest[done] as string);
    rest = rest.slice(done + 1);
  }
  return { written, lost };
}

