// Reading the files selfware parses (queue tasks, approvals, agent.json, the
// config, scripts, transcripts, the task log's journal) so that no file can
// stop a command: what it is (lstat first), how big, whether it is text, and
// how deep it nests, all checked before a parser sees it.

import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import { EXIT, SwError, type ExitCode } from './exit.js';
import { formatBytes } from './units.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The most each kind of file may hold. Transcripts and the journal are read whole: their bound is generous. */
export const FILE_LIMITS = {
  task: 256 * KiB,
  approval: 1 * MiB,
  agent: 1 * MiB,
  config: 1 * MiB,
  script: 16 * MiB,
  transcript: 256 * MiB,
  journal: 256 * MiB,
  archive: 256 * MiB,
} as const;

export type FileKind = keyof typeof FILE_LIMITS;

const KIND_NAMES: Record<FileKind, string> = {
  task: 'a task file',
  approval: 'an approval file',
  agent: 'agent.json',
  config: 'a config file',
  script: 'a script',
  transcript: 'a transcript',
  journal: 'the task log journal',
  archive: 'an archive of finished tasks',
};

/** Collections nested deeper than this are refused before a parser (which recurses) sees them. */
export const MAX_DEPTH = 64;

/** A file refused for what it is or holds, not for a system error: "FILE[:LINE:COL]: WHY". */
export class BadFileError extends SwError {
  readonly file: string;
  readonly why: string;
  readonly line: number | null;
  readonly col: number | null;
  constructor(file: string, why: string, code: ExitCode, at?: { line: number; col: number }) {
    super(`${file}${at ? `:${at.line}:${at.col}` : ''}: ${why}`, code);
    this.file = file;
    this.why = why;
    this.line = at?.line ?? null;
    this.col = at?.col ?? null;
  }
}

/** What a directory entry is when it is not a regular file, as words ("a directory"); null for a file. */
export function notAFile(st: fs.Stats | fs.Dirent): string | null {
  if (st.isFile()) return null;
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

export interface ReadOptions {
  /** The exit status of a refusal: 65 (bad data) unless the file is configuration (78). */
  code?: ExitCode;
  /** Check that the bytes are UTF-8 text without NUL (default true). */
  text?: boolean;
  /**
   * Follow a symbolic link (default false). Files a human names in the
   * configuration (a script) are often links (configuration management,
   * NixOS); files found in state/ are never followed.
   */
  follow?: boolean;
}

function tooBig(file: string, kind: FileKind, size: number, code: ExitCode): BadFileError {
  return new BadFileError(file, `too big (${formatBytes(size)}; ${KIND_NAMES[kind]} may hold at most ${formatBytes(FILE_LIMITS[kind])})`, code);
}

/**
 * A regular file's bytes, at most its kind's limit. A symbolic link (unless
 * followed), a directory, a device or a FIFO is refused without being read
 * (so nothing blocks or reads forever); system errors (ENOENT, EACCES) are
 * thrown as they are.
 */
export function readFileBounded(file: string, kind: FileKind, opts: ReadOptions = {}): Buffer {
  const code = opts.code ?? EXIT.DATAERR;
  const limit = FILE_LIMITS[kind];
  const st = opts.follow ? fs.statSync(file) : fs.lstatSync(file);
  const what = notAFile(st);
  if (what) throw new BadFileError(file, `${what}, not a file`, code);
  if (st.size > limit) throw tooBig(file, kind, st.size, code);
  let fd: number;
  try {
    // O_NOFOLLOW and O_NONBLOCK: swapped for a link or a FIFO since lstat, it still cannot hang us.
    fd = fs.openSync(file, fs.constants.O_RDONLY | (opts.follow ? 0 : fs.constants.O_NOFOLLOW) | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new BadFileError(file, 'a symbolic link, not a file', code);
    throw e;
  }
  try {
    const fst = fs.fstatSync(fd);
    const opened = notAFile(fst);
    if (opened) throw new BadFileError(file, `${opened}, not a file`, code);
    // Room for one byte past what fstat said: a file that grew since is read on, up to one byte past the limit.
    let buf = Buffer.allocUnsafe(Math.min(limit + 1, fst.size + 1));
    let total = 0;
    for (;;) {
      if (total === buf.length) {
        if (total > limit) throw tooBig(file, kind, total, code);
        const more = Buffer.allocUnsafe(Math.min(limit + 1, buf.length * 2 + 4096));
        buf.copy(more, 0, 0, total);
        buf = more;
      }
      const n = fs.readSync(fd, buf, total, buf.length - total, null);
      if (n === 0) break;
      total += n;
    }
    if (total > limit) throw tooBig(file, kind, total, code);
    return buf.subarray(0, total);
  } finally {
    fs.closeSync(fd);
  }
}

/** Line and column (1-based, columns in bytes) of a byte offset. */
function bytePos(buf: Buffer, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = buf.indexOf(0x0a); i >= 0 && i < offset; i = buf.indexOf(0x0a, i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, col: offset - start + 1 };
}

/** The offset of the first byte that is not valid UTF-8, or -1. */
function invalidUtf8At(buf: Buffer): number {
  let i = 0;
  while (i < buf.length) {
    const b = buf[i] as number;
    if (b < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) [n, min] = [1, 0x80];
    else if (b >= 0xe0 && b <= 0xef) [n, min] = [2, 0x800];
    else if (b >= 0xf0 && b <= 0xf4) [n, min] = [3, 0x10000];
    else return i;
    let cp = b & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const c = buf[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

/** Bytes as text: UTF-8 without a NUL byte, else refused as "not text" with where. A byte-order mark is dropped. */
export function decodeText(file: string, buf: Buffer, code: ExitCode = EXIT.DATAERR): string {
  const nul = buf.indexOf(0);
  if (nul >= 0) throw new BadFileError(file, 'not text: a NUL byte', code, bytePos(buf, nul));
  const bad = isUtf8(buf) ? -1 : Math.max(0, invalidUtf8At(buf));
  if (bad >= 0) throw new BadFileError(file, 'not text: invalid UTF-8', code, bytePos(buf, bad));
  const text = buf.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** A file read whole as text, within its kind's limit (see readFileBounded and decodeText). */
export function readTextFile(file: string, kind: FileKind, opts: ReadOptions = {}): string {
  const buf = readFileBounded(file, kind, opts);
  return opts.text === false ? buf.toString('utf8') : decodeText(file, buf, opts.code);
}

/** Line and column (1-based) of a character offset in text. */
export function textPos(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, col: offset - start + 1 };
}

/**
 * Where JSON text first nests deeper than max arrays and objects, or null.
 * JSON.parse copes with any depth, but what then walks the value
 * (JSON.stringify, structuredClone) recurses and would overflow the stack.
 */
export function jsonTooDeep(text: string, max = MAX_DEPTH): number | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return null;
}

/** JSON text parsed, refused (BadFileError naming the place) when it nests too deep or does not parse. */
export function parseJsonText(file: string, text: string, code: ExitCode = EXIT.DATAERR): unknown {
  const deep = jsonTooDeep(text);
  if (deep !== null) throw new BadFileError(file, `nested deeper than ${MAX_DEPTH} levels`, code, textPos(text, deep));
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new BadFileError(file, `does not parse: ${(e as Error).message.split('\n')[0]}`, code);
  }
}

type Kind = 'map' | 'seq';

/**
 * Where YAML text first nests deeper than max collections (flow [ and {, and
 * block mappings and sequences by indentation), or null. The yaml package's
 * lexer does not recurse, so it tokenizes any input safely; its composer
 * does, and a deep enough input exhausted the stack and then V8's regular
 * expression compiler (exit 134), so this runs before the parser.
 */
export async function yamlTooDeep(text: string, max = MAX_DEPTH): Promise<{ line: number; col: number } | null> {
  const { Lexer, CST } = await import('yaml');
  let off = 0;
  let line = 1;
  let lineStart = 0;
  let flow = 0;
  const block: Array<{ col: number; kind: Kind }> = [];
  /** Column where the node before the next indicator began on this line (an implicit key's column), or -1. */
  let nodeCol = -1;
  let scalarNext = false;
  const open = (col: number, kind: Kind): boolean => {
    while (block.length > 0 && (block[block.length - 1] as { col: number }).col > col) block.pop();
    let top: { col: number; kind: Kind } | undefined = block[block.length - 1];
    if (top && top.col === col && top.kind !== kind) {
      // "- " at a key's column is that key's sequence; a key at a sequence's column ends the sequence.
      if (kind === 'map') {
        block.pop();
        top = block[block.length - 1];
      } else top = undefined;
    }
    if (!top || top.col !== col || top.kind !== kind) block.push({ col, kind });
    return block.length + flow > max;
  };
  for (const tok of new Lexer().lex(text)) {
    const col = off - lineStart;
    let deep = false;
    if (tok === CST.DOCUMENT) {
      block.length = 0;
      flow = 0;
      continue;
    }
    if (tok === CST.FLOW_END) {
      flow = 0;
      continue;
    }
    if (tok === CST.SCALAR) {
      scalarNext = true;
      continue;
    }
    const type = scalarNext ? 'scalar' : CST.tokenType(tok);
    scalarNext = false;
    switch (type) {
      case 'flow-seq-start':
      case 'flow-map-start':
        if (nodeCol < 0) nodeCol = col;
        deep = ++flow + block.length > max;
        break;
      case 'flow-seq-end':
      case 'flow-map-end':
        flow = Math.max(0, flow - 1);
        break;
      case 'seq-item-ind':
        if (flow === 0) deep = open(col, 'seq');
        nodeCol = -1;
        break;
      case 'explicit-key-ind':
        if (flow === 0) deep = open(col, 'map');
        nodeCol = -1;
        break;
      case 'map-value-ind':
        if (flow === 0) deep = open(nodeCol >= 0 ? nodeCol : col, 'map');
        nodeCol = -1;
        break;
      case 'newline':
        nodeCol = -1;
        break;
      case 'space':
      case 'comment':
      case 'comma':
      case 'byte-order-mark':
        break;
      default:
        if (nodeCol < 0) nodeCol = col;
    }
    if (deep) return { line, col: col + 1 };
    for (let i = tok.indexOf('\n'); i >= 0; i = tok.indexOf('\n', i + 1)) {
      line++;
      lineStart = off + i + 1;
    }
    off += tok.length;
  }
  return null;
}

/** Refuse YAML text that nests too deep (BadFileError naming file:line:col). */
export async function checkYamlDepth(file: string, text: string, code: ExitCode = EXIT.DATAERR): Promise<void> {
  const at = await yamlTooDeep(text);
  if (at) throw new BadFileError(file, `nested deeper than ${MAX_DEPTH} levels`, code, at);
}

/** What an error says without the file's name in front (for a message that names it another way). */
export function withoutFile(file: string, message: string): string {
  return message.startsWith(`${file}:`) ? message.slice(file.length + 1).trimStart() : message;
}
