// The report's charts as inline SVG: pure functions from the report's series
// to an <svg> string, each spanning the window on its x axis. No script, no
// external reference: they render in a browser and in a mail client alike.

import type { Report, Tier } from './types.js';

export const COLORS = {
  completed: '#2e9e44',
  failed: '#d64541',
  tokens: '#3b6fd6',
  vram: '#8a3ffc',
  ram: '#0f8b8d',
  warning: '#fbe3a6',
  critical: '#f6bcb7',
  axis: '#999999',
  grid: '#e6e6e6',
  text: '#555555',
} as const;

export const CHECKPOINT_COLORS: Record<string, string> = {
  routine: '#7a869a',
  task: '#6aa84f',
  'pre-op': '#e08e0b',
  shutdown: '#1f4e9c',
  recovery: '#e4572e',
  manual: '#b565a7',
};

const W = 860;
const H = 190;
const M = { left: 52, right: 14, top: 12, bottom: 26 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const r1 = (x: number): string => String(Math.round(x * 10) / 10);

/** Round tick values covering 0..max. */
export function niceTicks(max: number, count = 4): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag) as number;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Math.round(v * 1e6) / 1e6);
  if ((out[out.length - 1] as number) < max) out.push(Math.round((out.length * step) * 1e6) / 1e6);
  return out;
}

const fmtTick = (v: number): string => (v >= 1e6 ? `${r1(v / 1e6)}M` : v >= 1e4 ? `${r1(v / 1e3)}k` : String(v));
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Time ticks in UTC: hours for a day or two, days for a week or a few, weeks beyond. */
export function timeTicks(since: number, until: number): Array<{ t: number; label: string }> {
  const span = until - since;
  const H1 = 3_600_000;
  const D1 = 24 * H1;
  const step = span <= 3 * H1 ? H1 / 2 : span <= 12 * H1 ? 2 * H1 : span <= 2 * D1 ? 6 * H1 : span <= 16 * D1 ? D1 : 7 * D1;
  const out: Array<{ t: number; label: string }> = [];
  for (let t = Math.ceil(since / step) * step; t <= until; t += step) {
    const d = new Date(t);
    const hm = `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
    const day = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    out.push({ t, label: step >= D1 ? day : hm === '00:00' ? day : hm });
  }
  // Too many labels for the width: keep every k-th.
  const k = Math.ceil(out.length / 12);
  return out.filter((_, i) => i % k === 0);
}

interface Frame {
  since: number;
  until: number;
  x(t: number): number;
  y(v: number): number;
  yMax: number;
}

function frame(r: Report, yMax: number): Frame {
  const since = Date.parse(r.since);
  const until = Date.parse(r.until);
  const span = Math.max(1, until - since);
  return {
    since,
    until,
    yMax,
    x: (t) => M.left + ((Math.min(Math.max(t, since), until) - since) / span) * PW,
    y: (v) => M.top + PH - (Math.min(v, yMax) / yMax) * PH,
  };
}

function open(kind: string, title: string, height = H): string {
  return `<svg class="chart" data-chart="${kind}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="100%" role="img" font-family="sans-serif" font-size="11"><title>${esc(title)}</title>`;
}

/** Labels at the right edge end there rather than spill over it. */
const anchor = (x: number): string => (x > W - M.right - 20 ? 'end' : 'middle');

function axes(f: Frame, ticks: number[], unit = ''): string {
  let s = '';
  for (const v of ticks) {
    const y = r1(f.y(v));
    s += `<line x1="${M.left}" y1="${y}" x2="${W - M.right}" y2="${y}" stroke="${COLORS.grid}"/>`;
    s += `<text x="${M.left - 6}" y="${r1(f.y(v) + 4)}" text-anchor="end" fill="${COLORS.text}">${esc(fmtTick(v) + unit)}</text>`;
  }
  s += `<line x1="${M.left}" y1="${M.top + PH}" x2="${W - M.right}" y2="${M.top + PH}" stroke="${COLORS.axis}"/>`;
  for (const tk of timeTicks(f.since, f.until)) {
    const x = r1(f.x(tk.t));
    s += `<line x1="${x}" y1="${M.top + PH}" x2="${x}" y2="${M.top + PH + 4}" stroke="${COLORS.axis}"/>`;
    s += `<text x="${x}" y="${M.top + PH + 16}" text-anchor="${anchor(f.x(tk.t))}" fill="${COLORS.text}">${esc(tk.label)}</text>`;
  }
  return s;
}

function empty(kind: string, title: string): string {
  return `${open(kind, title, 60)}<rect x="0.5" y="0.5" width="${W - 1}" height="59" fill="#fafafa" stroke="${COLORS.grid}"/><text x="${W / 2}" y="34" text-anchor="middle" fill="${COLORS.text}">no data in this window</text></svg>`;
}

function legend(items: Array<[string, string]>, x: number, y: number): string {
  let s = '';
  let at = x;
  for (const [color, label] of items) {
    s += `<rect x="${at}" y="${y - 9}" width="10" height="10" fill="${color}"/><text x="${at + 14}" y="${y}" fill="${COLORS.text}">${esc(label)}</text>`;
    at += 24 + label.length * 6.5;
  }
  return s;
}

/** Tasks per bucket: completed (green) under failed (red). */
export function tasksChart(r: Report): string {
  const b = r.series.buckets;
  const title = `Task attempts finished per ${r.series.bucket_s === 3600 ? 'hour' : `${r.series.bucket_s / 3600} hours`}`;
  const max = Math.max(0, ...b.map((x) => x.completed + x.failed));
  if (!b.length || max === 0) return empty('tasks', title);
  const ticks = niceTicks(max);
  const f = frame(r, ticks[ticks.length - 1] as number);
  let s = open('tasks', title) + axes(f, ticks);
  const bw = Math.max(1, (PW * r.series.bucket_s * 1000) / (f.until - f.since));
  for (const x of b) {
    const t = Date.parse(x.start);
    const x0 = f.x(t) + (bw > 3 ? 0.5 : 0);
    const w = Math.max(0.6, Math.min(bw - (bw > 3 ? 1 : 0), W - M.right - x0));
    if (x.completed > 0) {
      const y = f.y(x.completed);
      s += `<rect class="completed" x="${r1(x0)}" y="${r1(y)}" width="${r1(w)}" height="${r1(M.top + PH - y)}" fill="${COLORS.completed}"/>`;
    }
    if (x.failed > 0) {
      const y0 = f.y(x.completed);
      const y1 = f.y(x.completed + x.failed);
      s += `<rect class="failed" x="${r1(x0)}" y="${r1(y1)}" width="${r1(w)}" height="${r1(y0 - y1)}" fill="${COLORS.failed}"/>`;
    }
  }
  return `${s}${legend([[COLORS.completed, 'completed'], [COLORS.failed, 'failed']], W - M.right - 170, M.top + 8)}</svg>`;
}

/** A polyline with gaps where a value is missing. */
function line(points: Array<[number, number | null]>, f: Frame, color: string, cls: string): string {
  let s = '';
  let run: string[] = [];
  const flush = (): void => {
    if (run.length === 1) s += `<circle class="${cls}" cx="${run[0]?.split(',')[0]}" cy="${run[0]?.split(',')[1]}" r="2" fill="${color}"/>`;
    else if (run.length > 1) s += `<polyline class="${cls}" points="${run.join(' ')}" fill="none" stroke="${color}" stroke-width="1.6" stroke-linejoin="round"/>`;
    run = [];
  };
  for (const [t, v] of points) {
    if (v === null) flush();
    else run.push(`${r1(f.x(t))},${r1(f.y(v))}`);
  }
  flush();
  return s;
}

/** Mean tokens per second of each bucket. */
export function tokensChart(r: Report): string {
  const b = r.series.buckets;
  const title = 'Model speed (tokens/s, mean of each bucket)';
  const vals = b.map((x) => x.tokens_per_s).filter((v): v is number => v !== null);
  if (!vals.length) return empty('tokens', title);
  const ticks = niceTicks(Math.max(...vals));
  const f = frame(r, ticks[ticks.length - 1] as number);
  const half = (r.series.bucket_s * 1000) / 2;
  return `${open('tokens', title)}${axes(f, ticks)}${line(
    b.map((x) => [Date.parse(x.start) + half, x.tokens_per_s]),
    f,
    COLORS.tokens,
    'tokens',
  )}</svg>`;
}

/** VRAM and RAM % used over the governor's tier bands. */
export function resourcesChart(r: Report): string {
  const title = 'VRAM and RAM used (%), over the governor tier';
  const pts = r.series.resources;
  if (!pts.length && !r.series.tiers.some((x) => x.tier !== 'normal')) return empty('resources', title);
  const f = frame(r, 100);
  let s = open('resources', title);
  for (const band of r.series.tiers) {
    if (band.tier === 'normal') continue;
    const x0 = f.x(Date.parse(band.start));
    const x1 = f.x(Date.parse(band.end));
    s += `<rect class="tier-${band.tier}" x="${r1(x0)}" y="${M.top}" width="${r1(Math.max(0.6, x1 - x0))}" height="${PH}" fill="${COLORS[band.tier as Exclude<Tier, 'normal'>]}"/>`;
  }
  s += axes(f, [0, 25, 50, 75, 100], '%');
  s += line(pts.map((p) => [Date.parse(p.time), p.vram_pct]), f, COLORS.vram, 'vram');
  s += line(pts.map((p) => [Date.parse(p.time), p.ram_pct]), f, COLORS.ram, 'ram');
  return `${s}${legend([[COLORS.vram, 'VRAM'], [COLORS.ram, 'RAM'], [COLORS.warning, 'warning'], [COLORS.critical, 'critical']], W - M.right - 290, M.top + 8)}</svg>`;
}

/** One tick per checkpoint on the timeline, coloured by kind. */
export function checkpointsChart(r: Report): string {
  const title = 'Checkpoints';
  const cks = r.series.checkpoints;
  if (!cks.length) return empty('checkpoints', title);
  const h = 74;
  const f = frame(r, 1);
  const top = 12;
  const bottom = 36;
  let s = `${open('checkpoints', title, h)}<line x1="${M.left}" y1="${bottom}" x2="${W - M.right}" y2="${bottom}" stroke="${COLORS.axis}"/>`;
  for (const c of cks) {
    const x = r1(f.x(Date.parse(c.time)));
    s += `<line class="ck-${esc(c.kind)}" x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="${CHECKPOINT_COLORS[c.kind] ?? COLORS.axis}" stroke-width="1.5"/>`;
  }
  for (const tk of timeTicks(f.since, f.until)) s += `<text x="${r1(f.x(tk.t))}" y="${bottom + 13}" text-anchor="${anchor(f.x(tk.t))}" fill="${COLORS.text}">${esc(tk.label)}</text>`;
  const kinds = [...new Set(cks.map((c) => c.kind))].sort();
  s += legend(
    kinds.map((k): [string, string] => [CHECKPOINT_COLORS[k] ?? COLORS.axis, `${k} (${cks.filter((c) => c.kind === k).length})`]),
    M.left,
    h - 6,
  );
  return `${s}</svg>`;
}
