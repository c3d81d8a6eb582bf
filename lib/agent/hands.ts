// The agent's purpose-built hands, beside the raw shell: view a window of a
// file with line numbers (or a directory as a tree), search the workspace,
// edit by exact replacement, apply a unified diff. Each is confined to the
// workspace like read_file and write_file (tools.ts), bounded by the output
// budget, and answers with an error the model can act on: where the
// candidates are, what line the file ends at, what git apply said.

import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../fsutil.js';
import { diffPath, patchPaths } from './schema.js';
import { confine, failedObservation, type Observation } from './tools.js';

/** Lines a view without start and end shows. */
export const VIEW_WINDOW = 200;
/** Matches a search shows at most. */
export const SEARCH_MAX = 100;
/** Lines of context an edit's answer shows around the new text. */
const EDIT_CONTEXT = 3;
/** A line longer than this is cut in views and search results. */
const LINE_MAX = 2000;
/** Files larger than this are not read whole by view and edit. */
const FILE_MAX = 64 * 1024 * 1024;
/** A tree shows this many levels below the directory viewed; deeper ones as counts. */
const TREE_DEPTH = 3;

function ok(output: string, started: number, cut = 0): Observation {
  return { ok: true, exit_code: null, signal: null, output, cut, timed_out: false, duration_ms: Date.now() - started };
}

function fail(error: string, started: number): Observation {
  return failedObservation(error, { durationMs: Date.now() - started });
}

function ioError(p: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `'${p}' does not exist`;
  if (code === 'EACCES') return `'${p}': permission denied`;
  if (code === 'EISDIR') return `'${p}' is a directory`;
  return (e as Error).message;
}

/** A text file's content, or why it cannot be shown or edited as text. */
function readText(file: string, p: string): { text: string } | { error: string } {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    return { error: ioError(p, e) };
  }
  if (st.isDirectory()) return { error: `'${p}' is a directory` };
  if (!st.isFile()) return { error: `'${p}' is not a regular file` };
  if (st.size > FILE_MAX) return { error: `'${p}' is too big to read whole (${st.size} bytes); use search, or a shell command such as sed -n` };
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    return { error: ioError(p, e) };
  }
  if (buf.subarray(0, 8192).includes(0)) return { error: `'${p}' is a binary file (${buf.length} bytes)` };
  return { text: buf.toString('utf8') };
}

/** A file's lines, without the empty one after a final newline. */
function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

function cutLine(l: string): string {
  return l.length > LINE_MAX ? `${l.slice(0, LINE_MAX)} [... ${l.length - LINE_MAX} characters cut]` : l;
}

/**
 * Numbered lines from..to (1-based, inclusive) within budget bytes: the text,
 * and the last line that fit.
 */
function numbered(lines: string[], from: number, to: number, budget: number): { text: string; last: number } {
  const width = String(to).length;
  const out: string[] = [];
  let size = 0;
  let last = from - 1;
  for (let i = from; i <= to; i++) {
    const row = `${String(i).padStart(width)}  ${cutLine(lines[i - 1] as string)}`;
    if (size + row.length + 1 > budget && out.length > 0) break;
    out.push(row);
    size += row.length + 1;
    last = i;
  }
  return { text: out.join('\n'), last };
}

export interface ViewRange {
  start?: number;
  end?: number;
}

/**
 * A file's lines start..end, numbered (end 0, negative or past the end: to
 * the end; neither: the first VIEW_WINDOW lines), or a directory as a tree.
 */
export async function viewAction(workspace: string, p: string, range: ViewRange, budget: number): Promise<Observation> {
  const started = Date.now();
  const c = confine(workspace, p);
  if ('error' in c) return fail(c.error, started);
  try {
    if (fs.statSync(c.path).isDirectory()) {
      const t = await treeView(workspace, c.path, budget);
      return ok(t.text, started, t.cut);
    }
  } catch (e) {
    return fail(ioError(p, e), started);
  }
  const r = readText(c.path, p);
  if ('error' in r) return fail(r.error, started);
  const lines = splitLines(r.text);
  const n = lines.length;
  if (n === 0) return ok(`(${p} is empty)`, started);
  let from: number;
  let to: number;
  if (range.start === undefined) {
    from = 1;
    to = Math.min(n, VIEW_WINDOW);
  } else {
    from = Math.max(1, range.start);
    const end = range.end ?? 0;
    to = end <= 0 || end > n ? n : end;
    if (from > n) return fail(`'${p}' has ${n} lines; start ${range.start} is past its end`, started);
    if (to < from) return fail(`end ${end} is before start ${range.start}`, started);
  }
  const shown = numbered(lines, from, to, budget);
  let foot: string;
  if (shown.last < to) foot = `(lines ${from}-${shown.last} of ${n} shown: the output budget; view from ${shown.last + 1} for more)`;
  else if (from > 1 || to < n) foot = `(lines ${from}-${to} of ${n}${to < n ? `; view from ${to + 1} for more` : ''})`;
  else foot = `(${n} lines)`;
  return ok(`${shown.text}\n${foot}`, started);
}

/** The files under dir that git does not ignore (every file when the workspace is not a repository). */
async function listFiles(workspace: string, dir: string): Promise<string[]> {
  const rel = path.relative(fs.realpathSync(workspace), dir) || '.';
  const r = await run('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z', '--', rel], workspace, 30_000);
  if (r.code === 0) {
    const seen = new Set<string>();
    for (const f of r.stdout.split('\0')) if (f !== '' && fs.existsSync(path.join(workspace, f))) seen.add(f);
    return [...seen].sort();
  }
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(path.join(workspace, d), { withFileTypes: true })) {
      if (e.name === '.git') continue;
      const f = d === '.' ? e.name : `${d}/${e.name}`;
      if (e.isDirectory()) walk(f);
      else out.push(f);
      if (out.length > 100_000) return;
    }
  };
  walk(rel);
  return out.sort();
}

interface Node {
  files: number;
  children: Map<string, Node>;
  isFile: boolean;
}

async function treeView(workspace: string, dir: string, budget: number): Promise<{ text: string; cut: number }> {
  const root = fs.realpathSync(workspace);
  const rel = path.relative(root, dir);
  const files = await listFiles(root, dir);
  const top: Node = { files: 0, children: new Map(), isFile: false };
  for (const f of files) {
    const parts = (rel === '' ? f : path.relative(rel, f)).split('/');
    let n = top;
    n.files++;
    parts.forEach((part, i) => {
      let child = n.children.get(part);
      if (!child) {
        child = { files: 0, children: new Map(), isFile: i === parts.length - 1 };
        n.children.set(part, child);
      }
      if (i < parts.length - 1) child.files++;
      n = child;
    });
  }
  const rows: string[] = [];
  const draw = (n: Node, depth: number): void => {
    // Directories first, then files, each by name.
    const entries = [...n.children].sort(([a, x], [b, y]) => Number(x.isFile) - Number(y.isFile) || (a < b ? -1 : a > b ? 1 : 0));
    for (const [name, child] of entries) {
      const pad = '  '.repeat(depth);
      if (child.isFile) rows.push(`${pad}${name}`);
      else if (depth + 1 >= TREE_DEPTH) rows.push(`${pad}${name}/ (${child.files} file${child.files === 1 ? '' : 's'})`);
      else {
        rows.push(`${pad}${name}/`);
        draw(child, depth + 1);
      }
    }
  };
  draw(top, 0);
  const head = `${rel === '' ? '.' : rel}/: ${top.files} file${top.files === 1 ? '' : 's'} (git-ignored ones left out)`;
  let size = head.length;
  let shown = 0;
  for (const r of rows) {
    if (size + r.length + 1 > budget) break;
    size += r.length + 1;
    shown++;
  }
  const text = [head, ...rows.slice(0, shown)];
  if (shown < rows.length) text.push(`(${rows.length - shown} more entries not shown: the output budget; view a subdirectory)`);
  return { text: text.join('\n'), cut: rows.slice(shown).reduce((a, r) => a + r.length + 1, 0) };
}

/** Whether ripgrep is on PATH (asked once). */
let rgFound: boolean | null = null;
export function haveRipgrep(): boolean {
  if (rgFound === null) rgFound = spawnSync('rg', ['--version'], { stdio: 'ignore' }).status === 0;
  return rgFound;
}

export interface SearchOptions {
  budget: number;
  timeoutMs: number;
  /** rg or git grep; by default rg where installed. */
  tool?: 'rg' | 'git';
}

/**
 * Lines matching a regular expression over the workspace or under path, with
 * file and line, git-ignored files left out: ripgrep where installed (Rust
 * regex syntax), else git grep -E (POSIX extended). At most SEARCH_MAX shown.
 */
export async function searchAction(workspace: string, pattern: string, p: string | undefined, opts: SearchOptions): Promise<Observation> {
  const started = Date.now();
  let rel = '.';
  if (p !== undefined) {
    const c = confine(workspace, p);
    if ('error' in c) return fail(c.error, started);
    if (!fs.existsSync(c.path)) return fail(`'${p}' does not exist`, started);
    rel = path.relative(fs.realpathSync(workspace), c.path) || '.';
  }
  const tool = opts.tool ?? (haveRipgrep() ? 'rg' : 'git');
  const args =
    tool === 'rg'
      ? ['--line-number', '--no-heading', '--with-filename', '--color', 'never', '--hidden', '--glob', '!.git', '--max-columns', String(LINE_MAX), '--max-columns-preview', '--max-filesize', '16M', '--regexp', pattern, '--', rel]
      : ['grep', '--line-number', '-I', '-E', '--untracked', '--no-color', '--full-name', '-e', pattern, '--', rel];
  const r = await run(tool, args, workspace, opts.timeoutMs, 1024 * 1024);
  if (r.timedOut) return fail(`the search took more than ${opts.timeoutMs} ms and was stopped; narrow the path`, started);
  // rg and git grep both exit 1 when nothing matched.
  if (r.code === 1 && r.stdout === '') return ok(`no match for ${JSON.stringify(pattern)} in ${rel === '.' ? 'the workspace' : rel}`, started);
  if (r.code !== 0 && r.code !== 1) {
    const why = r.stderr.trim().split('\n').slice(0, 6).join('\n').replace(/^(fatal|error): /, '');
    return fail(`the search failed (${tool === 'rg' ? 'ripgrep, Rust regex syntax' : 'git grep -E, POSIX extended regex syntax'}): ${why}`, started);
  }
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  const files = new Set<string>();
  const rows: string[] = [];
  let size = 0;
  for (const l of lines) {
    const m = /^(.*?):(\d+):(.*)$/.exec(l);
    if (!m) continue;
    const file = (m[1] as string).replace(/^\.\//, '');
    files.add(file);
    if (rows.length >= SEARCH_MAX) continue;
    const row = `${file}:${m[2]}: ${cutLine(m[3] as string)}`;
    if (size + row.length + 1 > opts.budget && rows.length > 0) continue;
    rows.push(row);
    size += row.length + 1;
  }
  const total = `${r.truncated ? 'more than ' : ''}${lines.length} match${lines.length === 1 ? '' : 'es'} in ${files.size}${r.truncated ? '+' : ''} file${files.size === 1 ? '' : 's'}`;
  const foot = rows.length < lines.length ? `(${total}; the first ${rows.length} shown: narrow the pattern or the path)` : `(${total})`;
  return ok(`${rows.join('\n')}\n${foot}`, started, rows.length < lines.length ? 1 : 0);
}

/** The 1-based line a character offset is on. */
function lineAt(text: string, offset: number): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

function occurrences(text: string, s: string): number[] {
  const at: number[] = [];
  for (let i = text.indexOf(s); i !== -1; i = text.indexOf(s, i + s.length)) at.push(i);
  return at;
}

/** How alike two lines are, 0 to 1: the Dice coefficient of their character pairs (cheap, and kind to a changed name). */
function similarity(a: string, b: string): number {
  if (a.length < 2 || b.length < 2) return a === b ? 1 : 0;
  const pairs = new Map<string, number>();
  for (let i = 0; i < a.length - 1; i++) {
    const p = a.slice(i, i + 2);
    pairs.set(p, (pairs.get(p) ?? 0) + 1);
  }
  let both = 0;
  for (let i = 0; i < b.length - 1; i++) {
    const p = b.slice(i, i + 2);
    const n = pairs.get(p) ?? 0;
    if (n > 0) {
      both++;
      pairs.set(p, n - 1);
    }
  }
  return (2 * both) / (a.length + b.length - 2);
}

/** Where the old text nearly is: the same lines with other indentation, or lines like its first. */
function candidates(lines: string[], old: string): string {
  const want = splitLines(old).map((l) => l.trim());
  while (want.length > 0 && want[0] === '') want.shift();
  if (want.length === 0) return 'the old text is only white space';
  const trimmed = lines.map((l) => l.trim());
  for (let i = 0; i + want.length <= lines.length; i++) {
    if (want.every((w, k) => trimmed[i + k] === w)) return `it is there with other white space at lines ${i + 1}-${i + want.length}: view them and copy the text exactly`;
  }
  const first = want[0] as string;
  const like = trimmed
    .map((t, i) => ({ i, sim: t === '' ? 0 : t.includes(first) ? 1 : similarity(t, first) }))
    .filter((x) => x.sim >= 0.6)
    .sort((a, b) => b.sim - a.sim || a.i - b.i);
  if (like.length === 0) return 'no line of the file is like its first line either: view the file, or search for the text';
  const shown = like.slice(0, 5).map(({ i }) => `  line ${i + 1}: ${cutLine(lines[i] as string).slice(0, 200)}`);
  return `lines like its first line:\n${shown.join('\n')}${like.length > 5 ? `\n  (and ${like.length - 5} more)` : ''}`;
}

/**
 * Replace the one occurrence of old with new in a file. None or several is an
 * error saying where the candidates are; the answer shows the edited lines,
 * numbered, with a few lines of context.
 */
export async function editAction(workspace: string, p: string, old: string, nw: string, budget: number): Promise<Observation> {
  const started = Date.now();
  const c = confine(workspace, p, { write: true });
  if ('error' in c) return fail(c.error, started);
  if (old === nw) return fail('old and new are the same text: nothing to change', started);
  const r = readText(c.path, p);
  if ('error' in r) return fail(`${r.error}${/does not exist/.test(r.error) ? '; write_file creates a file' : ''}`, started);
  let text = r.text;
  let from = old;
  let to = nw;
  let at = occurrences(text, from);
  // A file with CRLF line ends, and text given with LF ones.
  if (at.length === 0 && text.includes('\r\n') && !old.includes('\r')) {
    from = old.replace(/\n/g, '\r\n');
    to = nw.replace(/\r?\n/g, '\r\n');
    at = occurrences(text, from);
  }
  if (at.length === 0) return fail(`the old text is not in '${p}'; ${candidates(splitLines(text), old)}`, started);
  if (at.length > 1) {
    const where = at.slice(0, 10).map((o) => lineAt(text, o));
    return fail(`the old text occurs ${at.length} times in '${p}', at lines ${where.join(', ')}${at.length > 10 ? ', ...' : ''}: include lines around it so it occurs once`, started);
  }
  const o = at[0] as number;
  text = text.slice(0, o) + to + text.slice(o + from.length);
  try {
    const mode = fs.statSync(c.path).mode & 0o7777;
    writeFileAtomic(c.path, text, { mode });
    fs.chmodSync(c.path, mode);
  } catch (e) {
    return fail(ioError(p, e), started);
  }
  const lines = splitLines(text);
  const first = lineAt(text, o);
  const added = to === '' ? 0 : splitLines(to).length;
  const last = Math.max(first, first + added - 1);
  const removed = splitLines(from).length;
  const shown = numbered(lines, Math.max(1, first - EDIT_CONTEXT), Math.min(lines.length, last + EDIT_CONTEXT), budget);
  const what = added === 0 ? `${removed} line${removed === 1 ? '' : 's'} removed at line ${first}` : `lines ${first}-${last} now (${removed} line${removed === 1 ? '' : 's'} replaced by ${added})`;
  return ok(`edited ${p}: ${what}; it has ${lines.length} lines\n${shown.text}`, started);
}

/**
 * Apply a unified diff to the working tree: the paths it names confined to
 * the workspace, then `git apply --check`, then `git apply` (hunk line counts
 * recounted: models miscount them). Nothing is changed unless all of it applies.
 */
export async function applyPatchAction(workspace: string, patch: string, opts: { timeoutMs: number; budget: number }): Promise<Observation> {
  const started = Date.now();
  const paths = patchPaths(patch);
  if (paths.length === 0) return fail('no file is named in the patch: a unified diff needs its "--- a/PATH" and "+++ b/PATH" lines before the hunks', started);
  for (const p of paths) {
    const c = confine(workspace, p, { write: true });
    if ('error' in c) return fail(c.error, started);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'selfware-patch-'));
  try {
    const file = path.join(dir, 'patch.diff');
    const text = withGitHeaders(patch);
    fs.writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`);
    let common = ['apply', '--recount', '--whitespace=nowarn'];
    let check = await run('git', [...common, '--check', '-v', file], workspace, opts.timeoutMs);
    // Hunks without context lines (as diff -U0 writes them, and models often do) apply only with
    // --unidiff-zero: git otherwise anchors them at the file's start or end.
    if (check.code !== 0 && /^@@ /m.test(patch) && !/^ /m.test(patch)) {
      const zero = await run('git', [...common, '--unidiff-zero', '--check', '-v', file], workspace, opts.timeoutMs);
      if (zero.code === 0) {
        common = [...common, '--unidiff-zero'];
        check = zero;
      }
    }
    if (check.code !== 0) {
      const why = (check.stderr || check.stdout).trim().split('\n').filter((l) => !/^Checking patch /.test(l)).slice(0, 12).join('\n');
      return fail(`the patch does not apply, nothing was changed:\n${why.slice(0, Math.max(200, Math.min(opts.budget, 4000)))}`, started);
    }
    const stat = await run('git', [...common, '--numstat', file], workspace, opts.timeoutMs);
    const done = await run('git', [...common, file], workspace, opts.timeoutMs);
    if (done.code !== 0) return fail(`git apply failed after its check passed: ${done.stderr.trim().split('\n').slice(0, 6).join('\n')}`, started);
    const rows = stat.stdout
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const [a, d, f] = l.split('\t');
        return `  ${f}: +${a} -${d}`;
      });
    return ok(`applied to ${rows.length} file${rows.length === 1 ? '' : 's'}:\n${rows.join('\n')}`, started);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A plain unified diff (no `diff --git` lines, as models and diff -u write
 * them) given git's file headers: without them, recounting a hunk runs on
 * into the next file's `--- ` line, and a path without its a/ or b/ prefix
 * loses its first directory. A file made or removed through /dev/null gets
 * its new or deleted file mode line. A diff with git's headers is left as it is.
 */
export function withGitHeaders(patch: string): string {
  const lines = patch.split('\n');
  if (lines.some((l) => l.startsWith('diff --git '))) return patch;
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i] as string;
    const next = lines[i + 1];
    if (l.startsWith('--- ') && next?.startsWith('+++ ')) {
      const a = diffPath(l.slice(4));
      const b = diffPath(next.slice(4));
      if (a === '/dev/null' && b === '/dev/null') {
        out.push(l);
        continue;
      }
      const from = a === '/dev/null' ? b : a;
      const to = b === '/dev/null' ? a : b;
      out.push(`diff --git a/${from} b/${to}`);
      if (a === '/dev/null') out.push('new file mode 100644');
      if (b === '/dev/null') out.push('deleted file mode 100644');
      out.push(a === '/dev/null' ? '--- /dev/null' : `--- a/${a}`, b === '/dev/null' ? '+++ /dev/null' : `+++ b/${b}`);
      i++;
      continue;
    }
    out.push(l);
  }
  return out.join('\n');
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  truncated: boolean;
}

/** Run a program in cwd with a time limit; stdout kept up to cap bytes (then it is stopped). */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number, cap = 16 * 1024 * 1024): Promise<RunResult> {
  return new Promise((resolve) => {
    if (cap >= 16 * 1024 * 1024) {
      execFile(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: cap, encoding: 'utf8', env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' } }, (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr: stderr || (e && typeof e.code === 'string' ? e.message : ''), timedOut: Boolean(e?.killed), truncated: false });
      });
      return;
    }
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let truncated = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      if (truncated) return;
      out.push(d);
      size += d.length;
      if (size > cap) {
        truncated = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const done = (code: number | null, e?: Error): void => {
      clearTimeout(timer);
      let stdout = Buffer.concat(out).toString('utf8');
      // A line cut by the cap is dropped.
      if (truncated) stdout = stdout.slice(0, stdout.lastIndexOf('\n') + 1);
      resolve({ code: truncated ? 0 : code, stdout, stderr: e ? e.message : Buffer.concat(err).toString('utf8'), timedOut, truncated });
    };
    child.on('error', (e) => done(null, e));
    child.on('close', (code) => done(code));
  });
}
