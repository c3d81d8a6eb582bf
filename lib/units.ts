// Durations ("90s", "5m", "1h30m", "7d") and byte sizes ("512MiB", "2G"):
// parsing for config and flags, formatting for humans.

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** Milliseconds for "1h30m", "90s", "500ms", "7d"; a bare number is seconds. Undefined if malformed. */
export function parseDuration(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? Math.round(text * 1000) : undefined;
  const s = text.trim();
  if (s === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const re = /(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    pos = re.lastIndex;
    while (s[pos] === ' ') pos++;
    re.lastIndex = pos;
  }
  if (pos !== s.length) return undefined;
  return Math.round(total);
}

/** "1 task", "3 tasks"; `many` for an irregular plural. */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let s = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  if (s > 0 || parts.length === 0) parts.push(`${s}s`);
  return parts.slice(0, 2).join('');
}

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** Bytes for "512MiB", "2G", "1000"; undefined if malformed. */
export function parseBytes(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isInteger(text) && text >= 0 ? text : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase();
  const mult = unit === '' ? 1 : BYTE_UNITS[unit];
  if (mult === undefined) return undefined;
  return Math.round(Number(m[1]) * mult);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/**
 * A point in time from ISO 8601 ("2026-11-21T09:30:00Z", with an offset, or
 * without one for local time) or restic's "2006-01-02 15:04:05" (local).
 * Undefined if malformed.
 */
export function parseTime(text: string): Date | undefined {
  const s = text.trim();
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h = '00', mi = '00', se = '00', frac = '', zone] = m;
  const nums = [y, mo, d, h, mi, se].map(Number) as [number, number, number, number, number, number];
  // Days past the month's end (2026-02-31) are refused, not rolled over, with or without a zone.
  const monthDays = new Date(Date.UTC(nums[0], nums[1], 0)).getUTCDate();
  if (nums[1] < 1 || nums[1] > 12 || nums[2] < 1 || nums[2] > monthDays || nums[3] > 23 || nums[4] > 59 || nums[5] > 60) return undefined;
  const ms = frac ? Math.round(Number(frac) * 1000) : 0;
  let date: Date;
  if (zone) {
    const iso = `${y}-${mo}-${d}T${h}:${mi}:${se}.${String(ms).padStart(3, '0')}${zone === 'Z' ? 'Z' : zone.length === 5 ? zone.slice(0, 3) + ':' + zone.slice(3) : zone}`;
    date = new Date(iso);
  } else {
    date = new Date(nums[0], nums[1] - 1, nums[2], nums[3], nums[4], nums[5], ms);
  }
  if (Number.isNaN(date.getTime())) return undefined;
  // Reject dates that rolled over (2026-02-31).
  if (!zone && date.getDate() !== nums[2]) return undefined;
  return date;
}

/** ISO 8601 UTC, as every command prints times; milliseconds only when there are some. */
export function isoUtc(d: Date | number): string {
  const date = typeof d === 'number' ? new Date(d) : d;
  return date.toISOString().replace(/\.000Z$/, 'Z');
}
