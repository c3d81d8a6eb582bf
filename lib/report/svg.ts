// The report's charts as inline SVG: pure functions from a Report's series to
// an SVG string, every chart spanning series.start → until (the window, or
// the part of it the run existed in). No scripts, no external references;
// every text from data escaped.

import { plural } from '../units.js';
import { bucketWords } from './human.js';
import type { Report, Tier } from './types.js';

/** The part of a Report the charts read. */
export type ChartInput = Pick<Report, 'since' | 'until' | 'series'>;

/** Colours the page and its tests share; the chart ones appear nowhere else on the page. */
export const COLORS = {
  completed: '#2f9e44',
  failed: '#e03131',
  retried: '#f59f00',
  tokens: '#0c8599',
  vram: '#7048e8',
  ram: '#1c7ed6',
  tierWarning: '#ffeec2',
  tierCritical: '#ffd8d8',
  grid: '#e9ecef',
  axis: '#adb5bd',
  text: '#495057',
} as const;

/** Marker shape and colour of each checkpoint kind; other kinds get `other`. */
const CHECKPOINT_KINDS: Record<string, { color: string; shape: 'tick' | 'square' | 'triangle' | 'diamond' | 'circle' }> = {
  routine: { color: '#868e96', shape: 'tick' },
  shutdown: { color: '#1971c2', shape: 'square' },
  recovery: { color: '#e8590c', shape: 'triangle' },
  manual: { color: '#9c36b5', shape: 'diamond' },
  other: { color: '#343a40', shape: 'circle' },
};

const FONT = `-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif`;
const W = 860;
const M = { left: 46, right: 16, top: 26, bottom: 24 };
/** The plot area's left and right edge in the charts' viewBox (0 0 860 h), for tests that place marks. */
export const PLOT = { width: W, x0: M.left, x1: W - M.right } as const;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Text for HTML and XML, attribute values included. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** A coordinate rounded to one decimal, as SVG text ("12.3", "4", never "-0"). */
function n1(v: number): string {
  const r = Math.round(v * 10) / 10;
  return String(r === 0 ? 0 : r);
}

function ms(iso: string): number {
  return Date.parse(iso);
}

/** Where the charts start: series.start when it lies in the window, else the window's start. */
function startOf(input: ChartInput): number {
  const since = ms(input.since);
  const start = ms(input.series.start);
  return Number.isFinite(start) && (!Number.isFinite(since) || start >= since) && !(start >= ms(input.until)) ? start : since;
}

/** The charts' start as text, for their titles. */
function startText(input: ChartInput): string {
  const t = startOf(input);
  return Number.isFinite(t) ? new Date(t).toISOString().replace(/\.000Z$/, 'Z') : input.since;
}

/** The charts' span in epoch ms; a broken or empty one becomes an hour, so nothing divides by zero. */
function span(input: ChartInput): { t0: number; t1: number } {
  let t0 = startOf(input);
  let t1 = ms(input.until);
  if (!Number.isFinite(t0) && !Number.isFinite(t1)) t0 = t1 = 0;
  else if (!Number.isFinite(t0)) t0 = t1 - HOUR;
  else if (!Number.isFinite(t1)) t1 = t0 + HOUR;
  if (t1 <= t0) t1 = t0 + HOUR;
  return { t0, t1 };
}

interface Frame {
  t0: number;
  t1: number;
  h: number;
  /** Plot area. */
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  x(t: number): number;
}

function frame(input: ChartInput, h: number, bottom = M.bottom): Frame {
  const { t0, t1 } = span(input);
  const x0 = M.left;
  const x1 = W - M.right;
  const y0 = M.top;
  const y1 = h - bottom;
  return { t0, t1, h, x0, x1, y0, y1, x: (t: number) => x0 + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * (x1 - x0) };
}

const TIME_STEPS = [1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 2 * 60_000, 5 * 60_000, 10 * 60_000, 15 * 60_000, 30 * 60_000, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY];

/** Ticks on the time axis, UTC: seconds for a short run ("13:40:05"), hours for a day ("06:00", the date at midnight), days for a week. */
export function timeTicks(t0: number, t1: number, maxTicks = 8): Array<{ t: number; label: string }> {
  const len = t1 - t0;
  const step = TIME_STEPS.find((s) => len / s <= maxTicks) ?? Math.ceil(len / maxTicks / DAY) * DAY;
  const out: Array<{ t: number; label: string }> = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1 && out.length <= maxTicks + 1; t += step) {
    const d = new Date(t);
    const date = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    const hm = `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
    const sec = d.getUTCSeconds();
    out.push({ t, label: step >= DAY || (hm === '00:00' && sec === 0) ? date : step < 60_000 ? `${hm}:${String(sec).padStart(2, '0')}` : hm });
  }
  return out;
}

/** Round ticks from 0 to at least max (1, 2, 2.5 or 5 times a power of ten); whole steps when `integer`. */
export function niceTicks(max: number, integer = false, count = 4): number[] {
  const top = Number.isFinite(max) && max > 0 ? max : 1;
  const raw = top / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  let step = ([1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow) as number;
  if (integer) step = Math.max(1, Math.ceil(step));
  const ticks: number[] = [];
  for (let i = 0; ticks.length === 0 || (ticks[ticks.length - 1] as number) < top; i++) ticks.push(Math.round(i * step * 1e6) / 1e6);
  return ticks;
}

/** Short labels for axis values: 950, 1.2k, 12k, 3.4M. */
function shortNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  return trim(v);
}

function trim(v: number): string {
  const a = Math.abs(v);
  return String(a >= 100 ? Math.round(v) : a >= 10 ? Math.round(v * 10) / 10 : Math.round(v * 100) / 100);
}

function open(kind: string, h: number, title: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${kind}" viewBox="0 0 ${W} ${h}" width="100%" ` +
    `role="img" font-family="${escapeXml(FONT)}" font-size="11" style="display:block;max-width:100%;height:auto">` +
    `<title>${escapeXml(title)}</title>`
  );
}

function timeAxis(f: Frame): string {
  let s = `<g fill="${COLORS.text}" text-anchor="middle">`;
  for (const { t, label } of timeTicks(f.t0, f.t1)) {
    const x = n1(f.x(t));
    s += `<line x1="${x}" y1="${n1(f.y1)}" x2="${x}" y2="${n1(f.y1 + 4)}" stroke="${COLORS.axis}"/>`;
    // A label at the right edge ends there rather than spill over it.
    const anchor = f.x(t) > f.x1 - 18 ? ' text-anchor="end"' : '';
    s += `<text x="${x}" y="${n1(f.y1 + 15)}"${anchor}>${escapeXml(label)}</text>`;
  }
  s += `</g><line x1="${f.x0}" y1="${n1(f.y1)}" x2="${f.x1}" y2="${n1(f.y1)}" stroke="${COLORS.axis}"/>`;
  return s;
}

/** Horizontal grid lines and labels for ticks; returns the SVG and the value → y function. */
function valueAxis(f: Frame, ticks: number[], fmt: (v: number) => string): { svg: string; y: (v: number) => number } {
  const top = ticks[ticks.length - 1] as number;
  const y = (v: number) => f.y1 - (Math.min(Math.max(v, 0), top) / top) * (f.y1 - f.y0);
  let svg = `<g fill="${COLORS.text}" text-anchor="end">`;
  for (const v of ticks) {
    const yy = n1(y(v));
    if (v > 0) svg += `<line x1="${f.x0}" y1="${yy}" x2="${f.x1}" y2="${yy}" stroke="${COLORS.grid}"/>`;
    svg += `<text x="${f.x0 - 6}" y="${n1(y(v) + 4)}">${escapeXml(fmt(v))}</text>`;
  }
  return { svg: svg + '</g>', y };
}

/** Lines through points, broken where a value is missing or where samples stop for a while. */
function polylines(f: Frame, pts: Array<{ t: number; v: number | null }>, y: (v: number) => number, color: string, maxGap: number, name: string): string {
  const runs: Array<Array<{ t: number; v: number }>> = [];
  let cur: Array<{ t: number; v: number }> = [];
  let prevT = -Infinity;
  for (const p of pts) {
    if (p.v === null || !Number.isFinite(p.v) || !Number.isFinite(p.t) || p.t - prevT > maxGap) {
      if (cur.length) runs.push(cur);
      cur = [];
    }
    if (p.v !== null && Number.isFinite(p.v) && Number.isFinite(p.t)) cur.push({ t: p.t, v: p.v });
    prevT = p.t;
  }
  if (cur.length) runs.push(cur);
  let s = `<g data-series="${name}">`;
  for (const run of runs) {
    if (run.length === 1) {
      const p = run[0] as { t: number; v: number };
      s += `<circle cx="${n1(f.x(p.t))}" cy="${n1(y(p.v))}" r="2.5" fill="${color}"/>`;
    } else {
      s += `<polyline fill="none" stroke="${color}" stroke-width="1.8" stroke-linejoin="round" points="${run.map((p) => `${n1(f.x(p.t))},${n1(y(p.v))}`).join(' ')}"/>`;
    }
  }
  return s + '</g>';
}

function legend(f: Frame, items: Array<{ label: string; swatch: string }>): string {
  // Right-aligned in the top margin; each item ~ its label's width at 6.5 px a character.
  let x = f.x1;
  let s = '';
  for (const it of [...items].reverse()) {
    const w = 16 + it.label.length * 6.5;
    x -= w + 10;
    s += `<g transform="translate(${n1(x)},6)">${it.swatch}<text x="16" y="9" fill="${COLORS.text}">${escapeXml(it.label)}</text></g>`;
  }
  return s;
}

const box = (color: string) => `<rect x="0" y="0" width="10" height="10" fill="${color}"/>`;
const stroke = (color: string) => `<line x1="0" y1="5" x2="12" y2="5" stroke="${color}" stroke-width="2.5"/>`;

/** Marker for a checkpoint of `kind` at (x, y), the strip's centre line. */
function marker(kind: string, x: number, y: number, legendSize = false): string {
  const k = CHECKPOINT_KINDS[kind] ?? (CHECKPOINT_KINDS.other as { color: string; shape: string });
  const c = k.color;
  const r = legendSize ? 4.5 : 5.5;
  switch (k.shape) {
    case 'tick':
      return `<line x1="${n1(x)}" y1="${n1(y - r - 3)}" x2="${n1(x)}" y2="${n1(y + r + 3)}" stroke="${c}" stroke-width="1.5"/>`;
    case 'square':
      return `<rect x="${n1(x - r + 1)}" y="${n1(y - r + 1)}" width="${n1(2 * r - 2)}" height="${n1(2 * r - 2)}" fill="${c}"/>`;
    case 'triangle':
      return `<path d="M${n1(x)} ${n1(y - r)}L${n1(x + r)} ${n1(y + r - 1)}L${n1(x - r)} ${n1(y + r - 1)}Z" fill="${c}"/>`;
    case 'diamond':
      return `<path d="M${n1(x)} ${n1(y - r)}L${n1(x + r)} ${n1(y)}L${n1(x)} ${n1(y + r)}L${n1(x - r)} ${n1(y)}Z" fill="${c}"/>`;
    default:
      return `<circle cx="${n1(x)}" cy="${n1(y)}" r="${n1(r - 1)}" fill="${c}"/>`;
  }
}

/** The stand-in for a chart with nothing to draw: a note rather than empty or broken axes. */
function noData(kind: string, title: string, note = 'no data in this window'): string {
  return (
    open(kind, 44, `${title}: ${note}`).replace('class="chart"', 'class="chart empty"') +
    `<rect x="0.5" y="0.5" width="${W - 1}" height="43" rx="4" fill="#f8f9fa" stroke="${COLORS.grid}"/>` +
    `<text x="${W / 2}" y="26" text-anchor="middle" fill="#868e96" font-size="12">${escapeXml(note)}</text></svg>`
  );
}

function bucketMs(input: ChartInput): number {
  const b = input.series.bucket_s;
  return Number.isFinite(b) && b > 0 ? b * 1000 : HOUR;
}

/** What a bar of the tasks chart stacks, bottom up: tasks completed, tasks failed for good, attempts failed and retried. */
const STACK = [
  { kind: 'completed', color: COLORS.completed },
  { kind: 'failed', color: COLORS.failed },
  { kind: 'retried', color: COLORS.retried },
] as const;

/** 1. Tasks finished per bucket: completed (green) under failed for good (red), under attempts retried (amber). */
export function tasksChart(input: ChartInput): string {
  const buckets = input.series.buckets.filter((b) => Number.isFinite(ms(b.start)));
  const val = (b: (typeof buckets)[number], k: (typeof STACK)[number]['kind']): number => Math.max(0, b[k] || 0);
  const total = (b: (typeof buckets)[number]) => STACK.reduce((a, st) => a + val(b, st.kind), 0);
  if (!buckets.some((b) => total(b) > 0)) return noData('tasks', 'Tasks finished');
  const f = frame(input, 210);
  const bms = bucketMs(input);
  const { svg: yAxis, y } = valueAxis(f, niceTicks(Math.max(...buckets.map(total)), true), shortNumber);
  const sums = Object.fromEntries(STACK.map((st) => [st.kind, buckets.reduce((a, b) => a + val(b, st.kind), 0)])) as Record<(typeof STACK)[number]['kind'], number>;
  let s = open(
    'tasks',
    f.h,
    `Tasks finished per ${bucketWords(bms / 1000)}, ${startText(input)} to ${input.until}: ${sums.completed} completed, ${sums.failed} failed${sums.retried ? `, and ${plural(sums.retried, 'attempt')} failed and retried` : ''}`,
  );
  s += yAxis + `<g shape-rendering="crispEdges">`;
  buckets.forEach((b, i) => {
    const start = ms(b.start);
    if (start + bms <= f.t0 || start >= f.t1) return;
    const xa = f.x(start);
    const xb = f.x(start + bms);
    const gap = Math.min(2, (xb - xa) * 0.2);
    const x = n1(xa + gap / 2);
    const w = n1(Math.max(0.5, xb - xa - gap));
    let below = 0;
    for (const st of STACK) {
      const v = val(b, st.kind);
      if (v <= 0) continue;
      const ya = y(below);
      const yb = y(below + v);
      s += `<rect data-bucket="${i}" data-kind="${st.kind}" data-value="${v}" x="${x}" y="${n1(yb)}" width="${w}" height="${n1(ya - yb)}" fill="${st.color}"/>`;
      below += v;
    }
  });
  s += '</g>' + timeAxis(f);
  s += legend(f, [
    { label: `completed (${sums.completed})`, swatch: box(COLORS.completed) },
    { label: `failed (${sums.failed})`, swatch: box(COLORS.failed) },
    ...(sums.retried ? [{ label: `attempts retried (${sums.retried})`, swatch: box(COLORS.retried) }] : []),
  ]);
  return s + '</svg>';
}

/** 2. Mean tokens per second of each bucket, a line with gaps where a bucket has none; `none` says why there is no speed at all. */
export function tokensChart(input: ChartInput, none?: string): string {
  const bms = bucketMs(input);
  const pts = input.series.buckets.map((b) => ({ t: ms(b.start) + bms / 2, v: b.tokens_per_s }));
  const vals = pts.filter((p) => p.v !== null && Number.isFinite(p.v) && Number.isFinite(p.t)).map((p) => p.v as number);
  if (vals.length === 0) return noData('tokens', 'Tokens per second', none);
  const f = frame(input, 170);
  const { svg: yAxis, y } = valueAxis(f, niceTicks(Math.max(...vals)), shortNumber);
  const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
  let s = open('tokens', f.h, `Tokens per second, mean of each ${bucketWords(bms / 1000)}, ${startText(input)} to ${input.until}: from ${trim(Math.min(...vals))} to ${trim(Math.max(...vals))}, ${trim(mean)} on average`);
  s += yAxis + timeAxis(f);
  // Consecutive buckets are bms apart; anything further apart is a gap.
  s += polylines(f, pts, y, COLORS.tokens, bms * 1.5, 'tokens_per_s');
  s += `<text x="${f.x0 - 40}" y="15" fill="${COLORS.text}">tokens/s</text>`;
  return s + '</svg>';
}

/** 3. VRAM and RAM percent over background bands of the governor's warning and critical tiers. */
export function resourcesChart(input: ChartInput): string {
  const samples = input.series.resources.map((r) => ({ ...r, t: ms(r.time) })).filter((r) => Number.isFinite(r.t));
  const hasValue = samples.some((r) => (r.vram_pct !== null && Number.isFinite(r.vram_pct)) || (r.ram_pct !== null && Number.isFinite(r.ram_pct)));
  const bands = input.series.tiers.filter((b) => b.tier !== 'normal' && Number.isFinite(ms(b.start)) && Number.isFinite(ms(b.end)));
  if (!hasValue && bands.length === 0) return noData('resources', 'VRAM and RAM use');
  const f = frame(input, 210);
  const y = (v: number) => f.y1 - (Math.min(Math.max(v, 0), 100) / 100) * (f.y1 - f.y0);
  const peak = (k: 'vram_pct' | 'ram_pct') => {
    const v = samples.map((r) => r[k]).filter((x): x is number => x !== null && Number.isFinite(x));
    return v.length ? `${Math.round(Math.max(...v))}%` : 'none';
  };
  let s = open('resources', f.h, `VRAM and RAM use in percent, ${startText(input)} to ${input.until}, over the governor's tiers: VRAM peak ${peak('vram_pct')}, RAM peak ${peak('ram_pct')}`);
  s += `<g shape-rendering="crispEdges">`;
  for (const b of bands) {
    const xa = f.x(ms(b.start));
    const xb = f.x(ms(b.end));
    if (xb - xa <= 0) continue;
    const color = b.tier === 'critical' ? COLORS.tierCritical : COLORS.tierWarning;
    s += `<rect data-tier="${escapeXml(b.tier)}" data-start="${escapeXml(b.start)}" data-end="${escapeXml(b.end)}" x="${n1(xa)}" y="${f.y0}" width="${n1(xb - xa)}" height="${n1(f.y1 - f.y0)}" fill="${color}"/>`;
  }
  s += '</g>';
  s += valueAxis(f, [0, 25, 50, 75, 100], (v) => `${v}%`).svg + timeAxis(f);
  // Samples are thinned to the peaks of each stretch: a break several times the usual spacing means none were taken.
  const dts = samples
    .slice(1)
    .map((r, i) => r.t - (samples[i] as { t: number }).t)
    .filter((d) => d > 0)
    .sort((a, b) => a - b);
  const median = dts.length ? (dts[Math.floor(dts.length / 2)] as number) : f.t1 - f.t0;
  const maxGap = Math.max(median * 4, 5 * 60_000);
  s += polylines(f, samples.map((r) => ({ t: r.t, v: r.ram_pct })), y, COLORS.ram, maxGap, 'ram_pct');
  s += polylines(f, samples.map((r) => ({ t: r.t, v: r.vram_pct })), y, COLORS.vram, maxGap, 'vram_pct');
  const tiers = new Set<Tier>(bands.map((b) => b.tier));
  s += legend(f, [
    { label: 'VRAM', swatch: stroke(COLORS.vram) },
    { label: 'RAM', swatch: stroke(COLORS.ram) },
    ...(tiers.has('warning') ? [{ label: 'warning tier', swatch: box(COLORS.tierWarning) }] : []),
    ...(tiers.has('critical') ? [{ label: 'critical tier', swatch: box(COLORS.tierCritical) }] : []),
  ]);
  return s + '</svg>';
}

/** 4. Checkpoints on the timeline, one marker each, shaped and coloured by kind. */
export function checkpointsChart(input: ChartInput): string {
  const cps = input.series.checkpoints.map((c) => ({ ...c, t: ms(c.time) })).filter((c) => Number.isFinite(c.t));
  if (cps.length === 0) return noData('checkpoints', 'Checkpoints');
  const f = frame(input, 78);
  const counts = new Map<string, number>();
  for (const c of cps) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
  const title = [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
  let s = open('checkpoints', f.h, `Checkpoints, ${startText(input)} to ${input.until}: ${title}`);
  const mid = (f.y0 + f.y1) / 2;
  s += `<line x1="${f.x0}" y1="${n1(mid)}" x2="${f.x1}" y2="${n1(mid)}" stroke="${COLORS.grid}" stroke-width="6"/>`;
  s += timeAxis(f);
  // Routine ticks first, so the rarer kinds stay on top.
  const order = (k: string) => (k === 'routine' ? 0 : 1);
  for (const c of [...cps].sort((a, b) => order(a.kind) - order(b.kind))) {
    s += `<g data-kind="${escapeXml(c.kind)}" data-time="${escapeXml(c.time)}">${marker(c.kind, f.x(c.t), mid)}</g>`;
  }
  s += legend(
    f,
    [...counts].map(([k, n]) => ({ label: `${k} (${n})`, swatch: marker(k, 5, 5, true) })),
  );
  return s + '</svg>';
}
