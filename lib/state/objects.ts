// Reading git objects in bulk and checking each against its id: what verify
// needs to say "this checkpoint's data is intact" without trusting git's cache.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
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
    }, (oid) => bad.push({ oid, reason: 'missing' })); // prettier-ignore
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
