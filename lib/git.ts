// git as selfware runs it: durable writes (core.fsync), no user or system
// config, no hooks or automatic gc, a fixed identity, and errors turned into
// one-line messages.

import fs from 'node:fs';
import path from 'node:path';
import { SwError, EXIT } from './exit.js';
import { run, type RunResult } from './proc.js';

export const IDENTITY = { name: 'selfware', email: 'selfware@localhost' };

const CONFIG_FLAGS = [
  '-c', 'core.fsync=all',
  '-c', 'core.fsyncMethod=fsync',
  '-c', 'gc.auto=0',
  '-c', 'maintenance.auto=false',
  '-c', 'core.hooksPath=/dev/null',
  '-c', 'safe.directory=*',
  '-c', 'commit.gpgSign=false',
  '-c', 'advice.detachedHead=false',
  // What a checkpoint holds must not depend on whose ~/.config/git/ignore git finds.
  '-c', 'core.excludesFile=/dev/null',
]; // prettier-ignore

/**
 * What git prints when it could not write: a full disk or quota in errno's
 * words, or git's own ("sha1 file '...' write error. Out of diskspace" when
 * write(2) returns 0, "short write"), and any other failed write. All are
 * I/O errors (exit 74), not a failed answer (1).
 */
const WRITE_FAILED = /No space left on device|Disk quota exceeded|Out of diskspace|File too large|Read-only file system|Input\/output error|\bshort write\b|\bunable to write\b|\bwrite error\b|\bcould not write\b|\bfailed to write\b|\bunable to create temporary\b/i;

/** The disk is full (or the quota reached): worth saying in those words. */
const DISK_FULL = /No space left on device|Disk quota exceeded|Out of diskspace/i;

export class GitError extends SwError {
  readonly stderr: string;
  readonly args: string[];
  /** git could not write (disk full, quota, I/O error): exit 74. */
  readonly writeFailed: boolean;
  constructor(args: string[], res: RunResult) {
    const lines = res.stderr.split('\n').filter((l) => l.trim() !== '');
    // The line that says why: the one naming the full disk, else git's own verdict (fatal:, error:), not a warning printed before it.
    const first =
      lines.find((l) => DISK_FULL.test(l)) ?? lines.find((l) => WRITE_FAILED.test(l)) ?? lines.find((l) => /^(fatal|error): /.test(l)) ?? lines[0] ?? `exit status ${res.code ?? res.signal}`;
    const writeFailed = WRITE_FAILED.test(res.stderr);
    super(`git ${args[0]}: ${first.replace(/^(fatal|error): /, '')}`, writeFailed ? EXIT.IOERR : EXIT.FAIL);
    this.stderr = res.stderr;
    this.args = args;
    this.writeFailed = writeFailed;
  }
}

export interface GitRunOptions {
  input?: string | Buffer;
  env?: Record<string, string>;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFail?: boolean;
  timeoutMs?: number;
}

export class Git {
  /** The work tree. */
  readonly dir: string;
  /** The repository (GIT_DIR). */
  readonly gitDir: string;
  private readonly extraEnv: Record<string, string>;

  constructor(dir: string, gitDir: string = path.join(dir, '.git'), extraEnv: Record<string, string> = {}) {
    this.dir = dir;
    this.gitDir = gitDir;
    this.extraEnv = extraEnv;
  }

  /** Another handle on the same repo with more environment (GIT_INDEX_FILE, dates). */
  with(env: Record<string, string>): Git {
    return new Git(this.dir, this.gitDir, { ...this.extraEnv, ...env });
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const base: NodeJS.ProcessEnv = {};
    for (const k of ['PATH', 'HOME', 'TMPDIR', 'TZ', 'LANG']) if (process.env[k] !== undefined) base[k] = process.env[k];
    return {
      ...base,
      LC_ALL: 'C',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: IDENTITY.name,
      GIT_AUTHOR_EMAIL: IDENTITY.email,
      GIT_COMMITTER_NAME: IDENTITY.name,
      GIT_COMMITTER_EMAIL: IDENTITY.email,
      GIT_DIR: this.gitDir,
      GIT_WORK_TREE: this.dir,
      ...this.extraEnv,
      ...extra,
    };
  }

  /** git without a repository of ours (init, clone): the same config and identity, no GIT_DIR. */
  static async plain(args: string[], cwd: string): Promise<RunResult> {
    const g = new Git(cwd);
    const env = g.env();
    delete env.GIT_DIR;
    delete env.GIT_WORK_TREE;
    const res = await run('git', [...CONFIG_FLAGS, ...args], { cwd, env });
    if (res.code !== 0) throw new GitError(args, res);
    return res;
  }

  async run(args: string[], opts: GitRunOptions = {}): Promise<RunResult> {
    const started = Date.now();
    const res = await run('git', [...CONFIG_FLAGS, ...args], {
      cwd: this.dir,
      env: this.env(opts.env),
      input: opts.input,
      timeoutMs: opts.timeoutMs,
    });
    if (res.code !== 0) {
      const err = new GitError(args, res);
      // git dies on a full disk without removing the object it was writing: each failure would leak some of what little space is left.
      if (err.writeFailed) this.removeTempObjects(started);
      if (!opts.allowFail) throw err;
    }
    return res;
  }

  /**
   * Remove the temporary object and pack files (tmp_obj_*, tmp_pack_*,
   * tmp_idx_*) a failed git left, those made since it started; a git
   * running meanwhile writes to the same full disk and fails as well.
   */
  private removeTempObjects(sinceMs: number): void {
    const objects = path.join(this.gitDir, 'objects');
    let dirs: string[];
    try {
      dirs = fs.readdirSync(objects).filter((d) => /^[0-9a-f]{2}$/.test(d) || d === 'pack');
    } catch {
      return;
    }
    for (const d of dirs) {
      let names: string[];
      try {
        names = fs.readdirSync(path.join(objects, d));
      } catch {
        continue;
      }
      for (const n of names) {
        if (!/^tmp_(obj|pack|idx|rev|mtimes)_/.test(n)) continue;
        const p = path.join(objects, d, n);
        try {
          if (fs.lstatSync(p).mtimeMs >= sinceMs - 1000) fs.unlinkSync(p);
        } catch {
          /* gone already */
        }
      }
    }
  }

  /**
   * Several git commands in one spawn: sh runs them in turn and stops at the
   * first that fails, which throws its GitError as run() would. Each
   * command's stdout, trailing newline removed. A spawn from the agent's big
   * process blocks it ~13 ms whatever it runs (git's own start is a fraction
   * of that), and a snapshot took three.
   */
  async sequence(cmds: Array<string[] | { args: string[]; allowFail: true }>, opts: Omit<GitRunOptions, 'input' | 'allowFail'> = {}): Promise<string[]> {
    const started = Date.now();
    const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;
    const argsOf = (c: string[] | { args: string[] }): string[] => (Array.isArray(c) ? c : c.args);
    // A command that may fail says so by its empty stdout (and its stderr is dropped).
    const script = cmds
      .map((c, i) => `git ${[...CONFIG_FLAGS, ...argsOf(c)].map(quote).join(' ')} ${Array.isArray(c) ? `|| { s=$?; echo 'selfware-step ${i}' >&2; exit $s; }` : '2>/dev/null'}; printf '\\0'`)
      .join('\n');
    const res = await run('sh', ['-c', script], { cwd: this.dir, env: this.env(opts.env), timeoutMs: opts.timeoutMs });
    if (res.code !== 0) {
      const m = /selfware-step (\d+)\n?$/.exec(res.stderr);
      const failed = cmds[m ? Number(m[1]) : 0];
      const err = new GitError(failed ? argsOf(failed) : [], { ...res, stderr: m ? res.stderr.slice(0, m.index) : res.stderr });
      if (err.writeFailed) this.removeTempObjects(started);
      throw err;
    }
    return res.stdout.split('\0').slice(0, cmds.length).map((x) => x.replace(/\n$/, ''));
  }

  /**
   * The object a ref names, read from the ref files (loose, else
   * packed-refs), without a git process; null when neither has it. Only
   * for refs selfware writes, in a git dir of its own layout (not a linked
   * worktree's, whose refs live elsewhere: there, git is asked).
   */
  async readRef(ref: string): Promise<string | null> {
    if (fs.existsSync(path.join(this.gitDir, 'commondir'))) return this.resolve(ref);
    try {
      const loose = fs.readFileSync(path.join(this.gitDir, ref), 'utf8').trim();
      if (/^[0-9a-f]{40}$/.test(loose)) return loose;
      if (loose.startsWith('ref: ')) return this.resolve(ref);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return this.resolve(ref);
    }
    let packed = '';
    try {
      packed = fs.readFileSync(path.join(this.gitDir, 'packed-refs'), 'utf8');
    } catch {
      return null;
    }
    const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`) && /^[0-9a-f]{40} /.test(l));
    return line ? line.slice(0, 40) : null;
  }

  /** stdout of a git command, trailing newline removed. */
  async out(args: string[], opts: GitRunOptions = {}): Promise<string> {
    return (await this.run(args, opts)).stdout.replace(/\n$/, '');
  }

  /** The object a revision names, or null if it does not resolve. */
  async resolve(rev: string): Promise<string | null> {
    const res = await this.run(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], { allowFail: true });
    return res.code === 0 ? res.stdout.trim() : null;
  }

  /**
   * Remove lock files a killed git left behind. Only safe while the caller
   * holds selfware's own lock over this repo, so no live git can own them.
   */
  removeStaleLocks(): string[] {
    const removed: string[] = [];
    const walk = (dir: string, depth: number): void => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
          if (depth < 6 && e.name !== 'objects') walk(p, depth + 1);
        } else if (e.name.endsWith('.lock')) {
          try {
            fs.unlinkSync(p);
            removed.push(p);
          } catch {
            /* gone already */
          }
        }
      }
    };
    walk(this.gitDir, 0);
    return removed;
  }
}
