// Reading sizes out of a git index file (gitformat-index(5), versions 2-4):
// after `git add --all` the index holds every file's size, so a checkpoint's
// size costs one read instead of opening every blob (`ls-tree -l` does that).

import fs from 'node:fs';

export interface IndexTotals {
  files: number;
  bytes: number;
}

/** Count regular files and symlinks in an index and add up their sizes; null if it cannot be read. */
export function indexTotals(file: string): IndexTotals | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== 'DIRC') return null;
  const version = buf.readUInt32BE(4);
  if (version < 2 || version > 4) return null;
  const count = buf.readUInt32BE(8);
  let off = 12;
  let files = 0;
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    if (off + 62 > buf.length) return null;
    const mode = buf.readUInt32BE(off + 24);
    const size = buf.readUInt32BE(off + 36);
    const flags = buf.readUInt16BE(off + 60);
    let p = off + 62;
    if (version >= 3 && flags & 0x4000) p += 2; // extended flags
    const type = mode >>> 12;
    if (type === 0o10 || type === 0o12) {
      files++;
      bytes += size;
    }
    if (version === 4) {
      // prefix-compressed name: a varint (bytes to drop) then a NUL-terminated suffix, no padding
      while ((buf[p] as number) & 0x80) p++;
      p++;
      const nul = buf.indexOf(0, p);
      if (nul < 0) return null;
      off = nul + 1;
    } else {
      const nul = buf.indexOf(0, p);
      if (nul < 0) return null;
      const entryLen = nul - off + 1;
      off += Math.ceil(entryLen / 8) * 8;
    }
  }
  return { files, bytes };
}
