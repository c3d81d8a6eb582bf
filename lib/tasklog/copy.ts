// A copy of the task log's database in the run's checkpoint store: every
// compaction's database is kept in state.git under a ref named by its sha256
// (the one the journal's header records), so a damaged tasklog.db is read from
// (and repaired with) the copy instead of losing the history before the
// journal. The ref keeps the blob through git gc; older copies are dropped.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { FILE_LIMITS } from '../safefile.js';
import { GitError } from '../git.js';

export const DB_COPY_REFS = 'refs/selfware/tasklog-db/';

export const sha256 = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

/** git, synchronously (the task log's readers are); a failure is a GitError (74 when git could not write). */
function gitSync(repo: string, args: string[], input?: Buffer): Buffer {
  try {
    return execFileSync('git', ['-c', 'safe.directory=*', ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', GIT_DIR: repo, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
      input,
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: FILE_LIMITS.journal * 4,
    });
  } catch (e) {
    const x = e as { status?: number | null; signal?: NodeJS.Signals | null; stdout?: Buffer; stderr?: Buffer; message: string };
    throw new GitError(args, { code: x.status ?? null, signal: x.signal ?? null, stdout: x.stdout?.toString('utf8') ?? '', stderr: x.stderr?.toString('utf8') || x.message, timedOut: false });
  }
}

/** The copy of the database whose sha256 is `sha`, checked; null when there is none or it does not match. */
export function readDbCopy(repo: string, sha: string): Buffer | null {
  if (!/^[0-9a-f]{64}$/.test(sha)) return null;
  try {
    const out = gitSync(repo, ['cat-file', 'blob', `${DB_COPY_REFS}${sha}`]);
    return sha256(out) === sha ? out : null;
  } catch {
    return null;
  }
}

/** The copies the store holds: the database's sha256 and the blob holding it. */
function copies(repo: string): Array<{ sha: string; blob: string }> {
  try {
    return gitSync(repo, ['for-each-ref', '--format=%(refname) %(objectname)', DB_COPY_REFS])
      .toString('utf8')
      .split('\n')
      .filter((l) => l.startsWith(DB_COPY_REFS))
      .map((l) => {
        const [ref, blob] = l.split(' ') as [string, string];
        return { sha: ref.slice(DB_COPY_REFS.length), blob };
      });
  } catch {
    return [];
  }
}

/** The shas of the copies the store holds. */
export function listDbCopies(repo: string): string[] {
  return copies(repo).map((c) => c.sha);
}

/**
 * Store `bytes` (the database the journal continues) as the copy, and drop
 * the others. A no-op when that copy is there already. Throws if git fails
 * (a full disk): the caller's checkpoint fails with it, and the next one tries again.
 */
export function storeDbCopy(repo: string, bytes: Buffer): { stored: boolean; sha: string } {
  const sha = sha256(bytes);
  const have = copies(repo);
  const stored = !have.some((c) => c.sha === sha);
  let blob = have.find((c) => c.sha === sha)?.blob ?? '';
  if (stored) {
    blob = gitSync(repo, ['hash-object', '-w', '--stdin'], bytes).toString('utf8').trim();
    gitSync(repo, ['update-ref', `${DB_COPY_REFS}${sha}`, blob]);
  }
  // The old copies go only once the new one is in place, their blobs with them when loose: a copy is
  // the whole database, and one a compaction (an hour of a busy run, past 10 MiB after a week) left
  // for the daily prune would add up to hundreds of MiB a day. Nothing else names such a blob (the
  // database is not in state/), and no reader wants it (they read the copy their journal names).
  for (const old of have) {
    if (old.sha === sha) continue;
    gitSync(repo, ['update-ref', '-d', `${DB_COPY_REFS}${old.sha}`]);
    if (/^[0-9a-f]{40}$/.test(old.blob) && old.blob !== blob) fs.rmSync(path.join(repo, 'objects', old.blob.slice(0, 2), old.blob.slice(2)), { force: true });
  }
  return { stored, sha };
}
