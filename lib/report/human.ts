// Numbers and words for humans, as the report's text, HTML and charts show them:
// 1.2k, 3h 20m, 4.2 s, 58 MiB. (lib/units.ts formats for the command line.)

export const trim1 = (v: number): string => String(Math.round(v * 10) / 10);

/** A ratio from 0 to 1 as "95.2%", for the text and the check line. */
export const pct = (x: number | null): string => (x === null ? '-' : `${Math.round(x * 1000) / 10}%`);

/** A chart's bucket length in words: "2 seconds", "minute", "hour", "6 hours", "day", "2 days". */
export function bucketWords(s: number): string {
  if (s % 86400 === 0) return s === 86400 ? 'day' : `${s / 86400} days`;
  if (s % 3600 === 0) return s === 3600 ? 'hour' : `${s / 3600} hours`;
  if (s % 60 === 0) return s === 60 ? 'minute' : `${s / 60} minutes`;
  return s === 1 ? 'second' : `${s} seconds`;
}

/** 950, 1.2k, 12k, 3.4M. */
export function humanCount(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${a >= 1e10 ? Math.round(n / 1e9) : trim1(n / 1e9)}G`;
  if (a >= 1e6) return `${a >= 1e7 ? Math.round(n / 1e6) : trim1(n / 1e6)}M`;
  if (a >= 1e3) return `${a >= 1e4 ? Math.round(n / 1e3) : trim1(n / 1e3)}k`;
  return Number.isInteger(n) ? String(n) : trim1(n);
}

/** Seconds as "45s", "3m 20s", "3h 20m", "2d 4h"; two units at most. */
export function humanDuration(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '–';
  if (s > 0 && s < 1) return `${Math.round(s * 1000)} ms`;
  const secs = Math.round(s);
  const parts = [Math.floor(secs / 86400), Math.floor(secs / 3600) % 24, Math.floor(secs / 60) % 60, secs % 60];
  const units = ['d', 'h', 'm', 's'];
  const i = parts.findIndex((v) => v > 0);
  if (i < 0) return '0s';
  const out = [`${parts[i]}${units[i]}`];
  if (i < 3 && (parts[i + 1] as number) > 0) out.push(`${parts[i + 1]}${units[i + 1]}`);
  return out.join(' ');
}

/** Milliseconds: "250 ms", "4.2 s", "14.8 s", from a minute on as humanDuration. */
export function humanMs(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${trim1(ms / 1000)} s`;
  return humanDuration(ms / 1000);
}

/** "512 B", "58 MiB", "1.2 GiB". */
export function humanBytes(b: number | null): string {
  if (b === null || !Number.isFinite(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = b;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(v) : Math.abs(v) < 10 ? trim1(v) : Math.round(v)} ${units[i]}`;
}
