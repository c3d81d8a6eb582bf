// The task log's append-only journal: one event per line, each line
// "<crc32 hex> <json>\n", appended under flock with O_APPEND and fdatasync'd
// before the append returns. A torn last line (a writer killed mid-write) has
// no newline or a bad CRC: it is never read as data, and the next writer cuts
// it off before appending. The first line is a header naming the log and the
// global position where this journal starts, so positions keep counting across
// compactions (DESIGN.md invariants 1 and 3). Since format 2 the header is
// written twice, the second line an exact copy of the first: one damaged byte
// in it no longer makes the whole log unreadable (the copy starts where the
// first line ended, whatever the damage did to that line).

import fs from 'node:fs';
import fsExt from 'fs-ext';
import { dataError, tempFailError } from '../exit.js';
import { writeFileAtomic } from '../fsutil.js';
import { FILE_LIMITS } from '../safefile.js';
import { formatBytes } from '../units.js';

export const JOURNAL_VERSION = 2;
/** Where to look for the header's copy when the first line is damaged. */
const HEADER_SCAN = 8192;

export interface JournalHeader {
  selfware_tasklog: number;
  /** Identity of the log, shared with the database snapshot. */
  log: string;
  /** Global position of the first byte after the header. */
  base: number;
  /** sha256 of the database snapshot this journal continues, "" for none. */
  db_sha256: string;
  created: string;
}

export interface JournalRecord {
  /** Global position of the record's first byte. */
  pos: number;
  event: Record<string, unknown>;
}

export interface CorruptRecord {
  pos: number;
  /** The line of the journal file (1 is the header). */
  line: number;
  reason: string;
}

/** "FILE:LINE: record at position POS: REASON", for every message about a corrupt record. */
export function describeCorrupt(file: string, c: CorruptRecord): string {
  return `${file}:${c.line}: record at position ${c.pos}: ${c.reason}`;
}

export interface JournalContents {
  header: JournalHeader;
  records: JournalRecord[];
  /** Global position just past the last complete record. */
  end: number;
  /** A torn last record was present (and ignored). */
  torn: boolean;
  /** Complete lines that failed their CRC or did not parse: never used as data. */
  corrupt: CorruptRecord[];
  /** The header (or its copy) is damaged; what was read is from the other. */
  headerDamage: string | null;
}

interface HeaderRead {
  header: JournalHeader;
  /** Bytes of the header lines (two from format 2 on). */
  len: number;
  damage: string | null;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = (CRC_TABLE[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function encodeLine(obj: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(obj), 'utf8');
  const crc = crc32(json).toString(16).padStart(8, '0');
  return Buffer.concat([Buffer.from(crc + ' ', 'ascii'), json, Buffer.from('\n', 'ascii')]);
}

/** Decode one line (without its newline); null if the CRC or the JSON is bad. */
export function decodeLine(line: Buffer): { value: Record<string, unknown> } | { error: string } {
  if (line.length < 10 || line[8] !== 0x20) return { error: 'malformed record' };
  const crcText = line.subarray(0, 8).toString('ascii');
  if (!/^[0-9a-f]{8}$/.test(crcText)) return { error: 'malformed record' };
  const json = line.subarray(9);
  if (crc32(json) !== parseInt(crcText, 16)) return { error: 'CRC mismatch' };
  try {
    const v = JSON.parse(json.toString('utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { error: 'record is not an object' };
    return { value: v as Record<string, unknown> };
  } catch {
    return { error: 'record is not JSON' };
  }
}

function checkHeader(file: string, v: Record<string, unknown>): JournalHeader {
  if (typeof v.selfware_tasklog !== 'number' || typeof v.log !== 'string' || typeof v.base !== 'number') {
    throw dataError(`${file}: not a selfware task log journal`);
  }
  if (v.selfware_tasklog > JOURNAL_VERSION) {
    throw dataError(`${file}: journal format ${v.selfware_tasklog} is newer than this selfware understands (${JOURNAL_VERSION}); upgrade selfware`);
  }
  return { db_sha256: '', created: '', ...v } as JournalHeader;
}

/** Parse a whole journal file's bytes. */
/**
 * The header from the first bytes of a journal: the first line, or (format 2)
 * its copy on the second when the first is damaged. A journal's header lines
 * are all the same length, so the copy starts exactly where the first ended.
 */
function findHeader(file: string, buf: Buffer): HeaderRead {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) throw dataError(`${file}: journal header is missing or torn`);
  const first = decodeLine(buf.subarray(0, nl));
  if (!('error' in first)) {
    const header = checkHeader(file, first.value);
    if (header.selfware_tasklog < 2) return { header, len: nl + 1, damage: null };
    const len = 2 * (nl + 1);
    const copyOk = buf.length >= len && buf.subarray(nl + 1, len).equals(buf.subarray(0, nl + 1));
    return { header, len, damage: copyOk ? null : `${file}:2: the copy of the journal header is damaged` };
  }
  let off = nl + 1;
  while (off < Math.min(buf.length, HEADER_SCAN)) {
    const e = buf.indexOf(0x0a, off);
    if (e < 0) break;
    const d = decodeLine(buf.subarray(off, e));
    // The copy: a header line of format 2 beginning where a line of its own length would end.
    if (!('error' in d) && typeof d.value.selfware_tasklog === 'number' && e + 1 - off === off) {
      const header = checkHeader(file, d.value);
      if (header.selfware_tasklog >= 2) return { header, len: e + 1, damage: `${file}:1: journal header: ${first.error}; read from its copy` };
    }
    off = e + 1;
  }
  throw dataError(`${file}: journal header: ${first.error}${buf.length > nl + 1 ? ', and no intact copy of it' : ''}`);
}

export function parseJournal(file: string, buf: Buffer): JournalContents {
  const { header, len: headerLen, damage } = findHeader(file, buf);
  const records: JournalRecord[] = [];
  const corrupt: CorruptRecord[] = [];
  let off = headerLen;
  let line = header.selfware_tasklog >= 2 ? 2 : 1;
  let torn = false;
  while (off < buf.length) {
    line++;
    const e = buf.indexOf(0x0a, off);
    if (e < 0) {
      torn = true;
      break;
    }
    const pos = header.base + (off - headerLen);
    const d = decodeLine(buf.subarray(off, e));
    if ('error' in d) corrupt.push({ pos, line, reason: d.error });
    else records.push({ pos, event: d.value });
    off = e + 1;
  }
  return { header, records, end: header.base + (off - headerLen), torn, corrupt, headerDamage: damage };
}

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/** flock with a deadline, synchronously (appends are short; a stopped holder must not hang us forever). */
export function flockWait(fd: number, mode: 'ex' | 'sh', file: string, waitMs = 30_000): void {
  const deadline = Date.now() + waitMs;
  let delay = 1;
  for (;;) {
    try {
      fsExt.flockSync(fd, mode === 'ex' ? 'exnb' : 'shnb');
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw e;
    }
    if (Date.now() >= deadline) throw tempFailError(`${file} is locked by another process; try again later`);
    sleepSync(delay);
    delay = Math.min(delay * 2, 50);
  }
}

export function unlock(fd: number): void {
  fsExt.flockSync(fd, 'un');
}

/**
 * Open the journal and lock it, making sure the locked file is still the one
 * at the path (a compaction may have replaced it while we waited).
 */
export function openLocked(file: string, mode: 'ex' | 'sh', flags = fs.constants.O_RDWR | fs.constants.O_APPEND, waitMs?: number): number {
  for (;;) {
    const fd = fs.openSync(file, flags);
    try {
      flockWait(fd, mode, file, waitMs);
      const a = fs.fstatSync(fd);
      let b: fs.Stats | undefined;
      try {
        b = fs.statSync(file);
      } catch {
        b = undefined;
      }
      if (b && a.ino === b.ino && a.dev === b.dev) return fd;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    fs.closeSync(fd);
  }
}

/** The journal's header alone (from its copy when the first line is damaged); the caller holds a lock. */
export function readJournalHeader(fd: number, file: string): JournalHeader {
  return readHeader(fd, file).header;
}

function readHeader(fd: number, file: string): HeaderRead {
  const buf = Buffer.alloc(HEADER_SCAN);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  return findHeader(file, buf.subarray(0, n));
}

/** Offset just past the last newline at or before size (the end of the last complete line). */
function lastCompleteEnd(fd: number, size: number): number {
  const chunk = 65536;
  let end = size;
  const buf = Buffer.alloc(chunk);
  while (end > 0) {
    const start = Math.max(0, end - chunk);
    const n = fs.readSync(fd, buf, 0, end - start, start);
    const i = buf.subarray(0, n).lastIndexOf(0x0a);
    if (i >= 0) return start + i + 1;
    end = start;
  }
  return 0;
}

/** Position past the last complete record, and the log id, from the header and the tail only. */
export function journalEnd(fd: number, file: string): { position: number; log: string } {
  const { header, len } = readHeader(fd, file);
  const size = fs.fstatSync(fd).size;
  let end = size;
  if (size > len) {
    const last = Buffer.alloc(1);
    fs.readSync(fd, last, 0, 1, size - 1);
    if (last[0] !== 0x0a) end = Math.max(len, lastCompleteEnd(fd, size));
  }
  return { position: header.base + (Math.max(end, len) - len), log: header.log };
}

export interface AppendResult {
  positions: number[];
}

/** Append events durably, under the journal's lock (a torn record a killed writer left is cut off first); returns once they are on disk; `waitMs` bounds the wait for it (default 30 s). */
export function appendRecords(file: string, events: Record<string, unknown>[], waitMs?: number): AppendResult {
  const lines = events.map((e) => encodeLine(e));
  const fd = openLocked(file, 'ex', undefined, waitMs);
  try {
    const { header, len } = readHeader(fd, file);
    let size = fs.fstatSync(fd).size;
    if (size > len) {
      const last = Buffer.alloc(1);
      fs.readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 0x0a) {
        const keep = Math.max(len, lastCompleteEnd(fd, size));
        fs.ftruncateSync(fd, keep);
        size = keep;
      }
    }
    const buf = Buffer.concat(lines);
    let off = 0;
    while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
    fs.fdatasyncSync(fd);
    const positions: number[] = [];
    let p = header.base + (size - len);
    for (const l of lines) {
      positions.push(p);
      p += l.length;
    }
    return { positions };
  } finally {
    try {
      unlock(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** Write a fresh journal with just its header, atomically (temp, fsync, rename, fsync dir). */
export function writeJournal(file: string, header: Omit<JournalHeader, 'selfware_tasklog' | 'created'>): void {
  const full: JournalHeader = { selfware_tasklog: JOURNAL_VERSION, log: header.log, base: header.base, db_sha256: header.db_sha256, created: new Date().toISOString() };
  const line = encodeLine(full);
  writeFileAtomic(file, Buffer.concat([line, line]));
}

/**
 * Read the whole journal under a shared lock taken here; `also` runs while
 * the lock is held (for what must be read consistently with it).
 */
export function readJournalLocked<T>(file: string, also: (journal: JournalContents) => T): T {
  const fd = openLocked(file, 'sh', fs.constants.O_RDONLY);
  try {
    return also(readJournalFd(fd, file));
  } finally {
    unlock(fd);
    fs.closeSync(fd);
  }
}

/** Read the whole journal; the caller holds a lock on it (see readJournalLocked). */
export function readJournalFd(fd: number, file: string): JournalContents {
  const size = fs.fstatSync(fd).size;
  // Read whole: a bound with a clear message instead of running out of memory.
  if (size > FILE_LIMITS.journal) {
    throw dataError(`${file}: too big to read (${formatBytes(size)}; the task log journal may hold at most ${formatBytes(FILE_LIMITS.journal)})`);
  }
  const buf = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const n = fs.readSync(fd, buf, off, size - off, off);
    if (n === 0) break;
    off += n;
  }
  return parseJournal(file, buf.subarray(0, off));
}
