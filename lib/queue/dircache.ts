// A value computed from a directory's entries (the agent's view of its queue),
// computed again only when the directory changed: an entry added, removed or
// renamed changes the directory's mtime.
//
// Two races make a cached view miss a change, and both once kept a task
// `sw-agent add` had queued waiting in an idle agent until something else
// touched the queue:
// - The stamp must be taken before the entries are read. Taken after, a file
//   added while they were being read is stamped as seen, and is not.
// - The clock the kernel stamps mtimes with is coarse (a few ms): two changes in
//   one tick leave one mtime. As git does for its index ("racily clean"), a
//   stamp younger than RACY_MS is not trusted and the entries are read again.

import fs from 'node:fs';

/** A directory's mtime younger than this is not trusted as a stamp. */
export const RACY_MS = 1000;

/** What changes when an entry of the directory is added, removed or renamed; null: no directory. */
export function dirStamp(dir: string): { key: string; mtimeMs: number } | null {
  try {
    const st = fs.statSync(dir);
    return { key: `${st.mtimeMs}:${st.ino}`, mtimeMs: st.mtimeMs };
  } catch {
    return null;
  }
}

export class DirCache<T> {
  private cached: { key: string; value: T } | null = null;

  constructor(
    private readonly dir: string,
    private readonly racyMs = RACY_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The cached value, or compute's (cached unless compute says to look again
   * next time, or the stamp is too young to trust). null: no directory.
   */
  async get(compute: () => Promise<{ value: T; again: boolean }>): Promise<T | null> {
    const stamp = dirStamp(this.dir);
    if (stamp === null) {
      this.cached = null;
      return null;
    }
    if (this.cached && this.cached.key === stamp.key) return this.cached.value;
    const { value, again } = await compute();
    const racy = this.now() - stamp.mtimeMs < this.racyMs;
    this.cached = again || racy ? null : { key: stamp.key, value };
    return value;
  }

  /** Forget the cached value: the next get computes. */
  clear(): void {
    this.cached = null;
  }
}
