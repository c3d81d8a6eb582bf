// The HTML report: self-contained, escaped, well formed, its charts drawn from
// the data; then rendered by a real headless Chromium and the screenshot's
// pixels counted for the charts' colours.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execa } from 'execa';
import { renderHtml } from '../../lib/report/html.js';
import { humanBytes, humanCount, humanDuration, humanMs } from '../../lib/report/human.js';
import { COLORS, PLOT, checkpointsChart, niceTicks, resourcesChart, tasksChart, timeTicks, tokensChart } from '../../lib/report/svg.js';
import type { Alert, Report, Tier } from '../../lib/report/types.js';

// ---- Fixtures ----

const HOUR = 3_600_000;
const iso = (t: number): string => new Date(t).toISOString().replace(/\.000Z$/, 'Z');
const HOSTILE = '<script>alert(1)</script>';

/** A deterministic pseudo-random sequence (mulberry32), so fixtures are the same every run. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A report with nothing in it: the agent never ran, no series. */
function emptyReport(since: number, until: number): Report {
  return {
    version: 1,
    run: 'idle',
    host: 'gpu-box',
    generated_at: iso(until),
    since: iso(since),
    until: iso(until),
    hours: (until - since) / HOUR,
    verdict: 'UNKNOWN',
    summary: 'no tasks',
    run_started: null,
    agent: { running: false, pid: null, status: null, task: null, paused: false, session_started: null, uptime_s: null, last_seen: null },
    sessions: { started: 0, clean_ends: 0, unclean_ends: 0 },
    restarts: 0,
    systemd: null,
    recoveries: { count: 0, by_reason: {}, restored: 0, duration_ms: null, list: [] },
    escalations: [],
    iterations: 0,
    tasks: { completed: 0, failed: 0, cancelled: 0, success_rate: null, span_s: 0, per_hour: null, failure_reasons: [] },
    attempts: { started: 0, completed: 0, failed: 0, retried: 0, cancelled: 0, looping: 0, failure_reasons: [] },
    llm: { calls: 0, errors: 0, tokens_in: 0, tokens_out: 0, backends: {}, tokens_per_s: null, latency_ms: null, by_quantization: [], prompt: { evaluated: 0, reused: 0, reuse_ratio: null }, prompt_tokens_per_s: null },
    checkpoints: { created: 0, pruned: 0, by_kind: {}, last: null, age_s: null, kept: 0, disk_bytes: 0, failing: null, unprotected: null },
    config: { file: null, problems: [] },
    writable: { ok: true, owner: null, count: 0, problems: [], message: null },
    escalated: null,
    governor: { decisions: 0, tier_s: { normal: 0, warning: 0, critical: 0 }, quantization_s: {}, current: null, changes: [] },
    resources: {
      samples: 0,
      peaks: { vram_used_mb: null, vram_total_mb: null, vram_pct: null, ram_used_mb: null, ram_total_mb: null, ram_pct: null, swap_used_mb: null, gpu_temp: null, cpu_load: null, disk_free_pct: null },
    },
    queue: { pending: 0, in_progress: 0, completed: 0, failed: 0, cancelled: 0, invalid: 0, invalid_files: [], rejected: 0, rejected_files: [] },
    approvals: { pending: [] },
    memory: { notes: 0, outcomes: 0, set_aside: [] },
    alerts: [
      { name: 'success_rate', status: 'OK', message: 'no task finished in the last 1h', value: null, warning: 0.5, critical: 0.25, worse: 'below', uom: '', label: 'success', min: 0, max: 1 },
      { name: 'progress', status: 'UNKNOWN', message: 'the agent never ran', value: null, warning: 1800, critical: 3600, worse: 'above', uom: 's', label: 'progress_age', min: 0, max: null },
    ],
    totals: { sessions: 0, tasks_completed: 0, tasks_failed: 0, tasks_cancelled: 0, attempts_completed: 0, attempts_failed: 0, attempts_cancelled: 0, steps: 0, llm_calls: 0, llm_errors: 0, tokens_in: 0, tokens_out: 0, checkpoints: 0, recoveries: 0, escalations: 0 },
    series: { start: iso(since), bucket_s: 3600, buckets: [], resources: [], tiers: [], checkpoints: [] },
    warnings: [],
    tasklog_damage: [],
  };
}

interface Shape {
  since: number;
  hours: number;
  /** Tier stretches as [start hour, end hour, tier]; the rest is normal. */
  tiers: Array<[number, number, Tier]>;
  /** Hours with the agent down: no tasks, no calls, no samples. */
  down: [number, number];
  /** The bucket with the most tasks, and how many. */
  peak: { bucket: number; completed: number; failed: number };
  checkpoints: Array<[number, string]>;
  seed: number;
}

/** A busy run: tasks every hour but while down, tokens/s per bucket, resource samples, tiers, checkpoints. */
function busyReport(s: Shape): Report {
  const r = emptyReport(s.since, s.since + s.hours * HOUR);
  const rand = rng(s.seed);
  const until = s.since + s.hours * HOUR;
  const down = (h: number): boolean => h >= s.down[0] && h < s.down[1];
  const tierAt = (h: number): Tier => s.tiers.find(([a, b]) => h >= a && h < b)?.[2] ?? 'normal';

  const buckets: Report['series']['buckets'] = [];
  for (let i = 0; i < s.hours; i++) {
    const off = down(i);
    let completed = off ? 0 : 1 + Math.floor(rand() * 5);
    let failed = off ? 0 : rand() < 0.35 ? 1 : 0;
    if (i === s.peak.bucket) ({ completed, failed } = s.peak);
    const tier = tierAt(i);
    buckets.push({ start: iso(s.since + i * HOUR), completed, failed, retried: 0, steps: off ? 0 : completed * 12 + failed * 20, tokens_per_s: off ? null : Math.round(((tier === 'critical' ? 21 : tier === 'warning' ? 38 : 55) + rand() * 6) * 10) / 10 });
  }
  const samples: Report['series']['resources'] = [];
  const n = Math.min(400, s.hours * 12);
  const step = (s.hours * HOUR) / n;
  for (let i = 0; i < n; i++) {
    const t = s.since + i * step;
    const h = (t - s.since) / HOUR;
    if (down(h)) continue;
    const tier = tierAt(h);
    const base = tier === 'critical' ? 93 : tier === 'warning' ? 84 : 62;
    samples.push({ time: iso(t), vram_pct: Math.round((base + rand() * 5) * 10) / 10, ram_pct: Math.round((45 + rand() * 10) * 10) / 10, cpu_load: Math.round(rand() * 400) / 100, tier });
  }
  const tiers: Report['series']['tiers'] = [];
  let at = 0;
  for (const [a, b, tier] of s.tiers) {
    if (a > at) tiers.push({ start: iso(s.since + at * HOUR), end: iso(s.since + a * HOUR), tier: 'normal' });
    tiers.push({ start: iso(s.since + a * HOUR), end: iso(s.since + b * HOUR), tier });
    at = b;
  }
  if (at < s.hours) tiers.push({ start: iso(s.since + at * HOUR), end: iso(until), tier: 'normal' });
  const cps = s.checkpoints.map(([h, kind]) => ({ time: iso(s.since + h * HOUR), kind })).sort((a, b) => a.time.localeCompare(b.time));

  const completed = buckets.reduce((a, b) => a + b.completed, 0);
  const failed = buckets.reduce((a, b) => a + b.failed, 0);
  const tierS = { normal: 0, warning: 0, critical: 0 };
  for (const t of tiers) tierS[t.tier] += (Date.parse(t.end) - Date.parse(t.start)) / 1000;
  const byKind: Record<string, number> = {};
  for (const c of cps) byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
  const last = cps[cps.length - 1];
  const changes = s.tiers.flatMap(([a, b, tier]) => [
    { time: iso(s.since + a * HOUR), tier, quantization: tier === 'critical' ? 'Q3_K_M' : 'Q4_K_M', actions: tier === 'critical' ? ['unload', 'throttle'] : ['throttle'], reason: `vram ${tier === 'critical' ? 93 : 84}%` },
    { time: iso(s.since + b * HOUR), tier: 'normal' as Tier, quantization: 'Q5_K_M', actions: [], reason: 'normal' },
  ]);
  return {
    ...r,
    run: 'run1',
    verdict: 'WARNING',
    summary: `${completed} tasks, ${Math.round((completed / (completed + failed)) * 100)}% success`,
    run_started: iso(s.since - 3 * 24 * HOUR),
    agent: { running: true, pid: 4242, status: 'working', task: 'fix "quotes" & <b>tags</b> in the parser', paused: false, session_started: iso(s.since + s.down[1] * HOUR), uptime_s: (until - (s.since + s.down[1] * HOUR)) / 1000, last_seen: iso(until - 20_000) },
    sessions: { started: 2, clean_ends: 0, unclean_ends: 1 },
    restarts: 1,
    systemd: { unit: 'selfware@run1.service', active_state: 'active', n_restarts: 1, result: 'success' },
    recoveries: {
      count: 2,
      by_reason: { hang: 1, crash: 1 },
      restored: 1,
      duration_ms: { p50: 4200, max: 95_000, total: 99_200 },
      list: [
        { time: iso(s.since + s.down[0] * HOUR), reason: 'hang', action: 'restart', checkpoint: null, duration_ms: 4200, requeued: 1, ok: true },
        { time: iso(s.since + s.down[1] * HOUR), reason: 'crash', action: 'restore', checkpoint: 'c0a1b2', duration_ms: 95_000, requeued: 2, ok: true },
      ],
    },
    escalations: [],
    iterations: buckets.reduce((a, b) => a + b.steps, 0),
    tasks: {
      completed,
      failed,
      cancelled: 1,
      success_rate: completed / (completed + failed),
      span_s: s.hours * 3600,
      per_hour: Math.round((completed / s.hours) * 10) / 10,
      failure_reasons: [
        { reason: 'tests failed after 3 attempts', count: Math.ceil(failed / 2) },
        { reason: HOSTILE, count: Math.floor(failed / 2) },
      ],
    },
    attempts: {
      started: completed + failed + 1,
      completed,
      failed,
      retried: 0,
      cancelled: 1,
      looping: 0,
      failure_reasons: [
        { reason: 'tests failed after 3 attempts', count: Math.ceil(failed / 2) },
        { reason: HOSTILE, count: Math.floor(failed / 2) },
      ],
    },
    llm: {
      calls: 1834,
      errors: 7,
      tokens_in: 2_841_000,
      tokens_out: 412_500,
      backends: { llama: 1834 },
      tokens_per_s: 51.3,
      latency_ms: { p50: 2300, p99: 14_800 },
      by_quantization: [
        { quantization: 'Q5_K_M', calls: 1400, tokens_per_s: 55.1 },
        { quantization: 'Q4_K_M', calls: 380, tokens_per_s: 40.2 },
        { quantization: 'Q3_K_M', calls: 54, tokens_per_s: 22.0 },
      ],
      prompt: { evaluated: 310_000, reused: 2_890_000, reuse_ratio: 0.903 },
      prompt_tokens_per_s: 820.5,
    },
    checkpoints: { created: cps.length, pruned: 12, by_kind: byKind, last: last ? { id: 'c9f8e7', time: last.time, kind: last.kind } : null, age_s: last ? (until - Date.parse(last.time)) / 1000 : null, kept: 40, disk_bytes: 58 * 1048576, failing: null, unprotected: null },
    config: { file: null, problems: [] },
    writable: { ok: true, owner: null, count: 0, problems: [], message: null },
    escalated: null,
    governor: {
      decisions: 288,
      tier_s: tierS,
      quantization_s: { Q5_K_M: tierS.normal, Q4_K_M: tierS.warning, Q3_K_M: tierS.critical },
      current: { time: iso(s.since + (s.tiers[s.tiers.length - 1]?.[1] ?? 0) * HOUR), tier: 'normal', quantization: 'Q5_K_M', actions: [], reason: 'normal' },
      changes,
    },
    resources: {
      samples: samples.length * 3,
      peaks: { vram_used_mb: 22_900, vram_total_mb: 24_576, vram_pct: 93.2, ram_used_mb: 30_100, ram_total_mb: 64_000, ram_pct: 47.0, swap_used_mb: 0, gpu_temp: 81, cpu_load: 3.9, disk_free_pct: 41 },
    },
    queue: { pending: 12, in_progress: 1, completed: 804, failed: 9, cancelled: 3, invalid: 0, invalid_files: [], rejected: 0, rejected_files: [] },
    approvals: { pending: [{ id: 'ap-17', task: 'T-0412', action: 'git push --force', requested: iso(until - 2 * HOUR) }] },
    memory: { notes: 12, outcomes: 200, set_aside: ['notes.md.bad-1796400000000'] },
    alerts: [
      { name: 'success_rate', status: 'OK', message: 'success rate 90% over 1h (9 of 10)', value: 0.9, warning: 0.5, critical: 0.25, worse: 'below', uom: '', label: 'success', min: 0, max: 1 },
      { name: 'progress', status: 'OK', message: 'a step 20s ago', value: 20, warning: 1800, critical: 3600, worse: 'above', uom: 's', label: 'progress_age', min: 0, max: null },
      { name: 'checkpoint_age', status: 'WARNING', message: `last checkpoint ${HOSTILE} 2h ago`, value: 7300, warning: 7200, critical: 21_600, worse: 'above', uom: 's', label: 'checkpoint_age', min: 0, max: null },
      { name: 'disk', status: 'OK', message: 'disk 41% free', value: 41, warning: 15, critical: 5, worse: 'below', uom: '%', label: 'disk_free', min: 0, max: 100 },
    ],
    series: { start: iso(s.since), bucket_s: 3600, buckets, resources: samples, tiers, checkpoints: cps },
    warnings: ['a torn record at the end of the task log (ignored)'],
  };
}

const DAY0 = Date.parse('2026-11-20T08:00:00Z');
/** 24 h from 08:00: warning 12–15 and 16–17 (4 h), critical 15–16 (1 h), down 21–23, the most tasks in bucket 18. */
const day = busyReport({
  since: DAY0,
  hours: 24,
  tiers: [
    [4, 7, 'warning'],
    [7, 8, 'critical'],
    [8, 9, 'warning'],
  ],
  down: [13, 15],
  peak: { bucket: 18, completed: 9, failed: 3 },
  checkpoints: [
    ...Array.from({ length: 24 }, (_, h): [number, string] => [h + 0.5, 'routine']).filter(([h]) => h < 13 || h > 15),
    [12.9, 'shutdown'],
    [15.1, 'recovery'],
    [20.25, 'manual'],
  ],
  seed: 7,
});
const WEEK0 = Date.parse('2026-11-14T00:00:00Z');
const week = busyReport({
  since: WEEK0,
  hours: 168,
  tiers: [
    [20, 26, 'warning'],
    [26, 27, 'critical'],
    [90, 100, 'warning'],
  ],
  down: [60, 64],
  peak: { bucket: 101, completed: 12, failed: 1 },
  checkpoints: [...Array.from({ length: 168 }, (_, h): [number, string] => [h + 0.25, 'routine']), [59.9, 'shutdown'], [64.2, 'recovery'], [130, 'manual'], [131, 'pre-op']],
  seed: 11,
});
const none = emptyReport(DAY0, DAY0 + 24 * HOUR);

/** The demo's run: 40 seconds old at the end of a 24-hour window, scripted, in 2-second buckets, 6 checkpoints seconds apart. */
const SHORT_END = DAY0 + 24 * HOUR;
const SHORT_START = SHORT_END - 40_000;
const SHORT_CHECKPOINTS = [2, 9, 14, 21, 30, 37];
const short: Report = {
  ...emptyReport(DAY0, SHORT_END),
  run: 'demo',
  verdict: 'OK',
  summary: '3 tasks: 2 completed, 1 failed (4 attempts, 1 retried)',
  run_started: iso(SHORT_START + 1000),
  tasks: { completed: 2, failed: 1, cancelled: 0, success_rate: 0.6667, span_s: 39, per_hour: null, failure_reasons: [{ reason: 'verify failed: exit status 1', count: 1 }] },
  attempts: { started: 4, completed: 2, failed: 2, retried: 1, cancelled: 0, looping: 0, failure_reasons: [{ reason: 'verify failed: exit status 1', count: 2 }] },
  llm: { calls: 6, errors: 0, tokens_in: 1266, tokens_out: 63, backends: { scripted: 6 }, tokens_per_s: null, latency_ms: null, by_quantization: [{ quantization: 'Q4_K_M', calls: 6, tokens_per_s: null }], prompt: { evaluated: 0, reused: 0, reuse_ratio: null }, prompt_tokens_per_s: null },
  alerts: [{ name: 'success_rate', status: 'OK', message: 'success rate 66.7% over 1h (2 of 3 tasks)', value: 0.6667, warning: 0.5, critical: 0.25, worse: 'below', uom: '', label: 'success', min: 0, max: 1 }],
  series: {
    start: iso(SHORT_START),
    bucket_s: 2,
    buckets: Array.from({ length: 20 }, (_, i) => ({ start: iso(SHORT_START + i * 2000), completed: i === 3 || i === 15 ? 1 : 0, failed: i === 15 ? 1 : 0, retried: i === 9 ? 1 : 0, steps: i > 0 && i < 18 ? 1 : 0, tokens_per_s: null })),
    resources: [],
    tiers: [],
    checkpoints: SHORT_CHECKPOINTS.map((sec, i) => ({ time: iso(SHORT_START + sec * 1000), kind: i === 5 ? 'shutdown' : 'task' })),
  },
};

// ---- Helpers ----

/** The <svg data-chart=kind> element of a page. */
function chart(html: string, kind: string): string {
  const m = new RegExp(`<svg[^>]*data-chart="${kind}"[\\s\\S]*?</svg>`).exec(html);
  assert.ok(m, `the ${kind} chart`);
  return m[0];
}

/** The attributes of every <tag ...> in markup. */
function elements(markup: string, tag: string): Array<Record<string, string>> {
  return [...markup.matchAll(new RegExp(`<${tag}\\b([^>]*)>`, 'g'))].map((m) => Object.fromEntries([...(m[1] as string).matchAll(/([\w:-]+)="([^"]*)"/g)].map((a) => [a[1] as string, a[2] as string])));
}

const VOID = new Set(['meta', 'br', 'link', 'img', 'hr', 'input', 'wbr', 'col']);

/**
 * A minimal XML check: every tag closed in order, attributes double-quoted,
 * no raw < or stray & in text or attribute values. HTML void elements are
 * allowed outside SVG (`xml` false); inside an SVG every element must close.
 */
function wellFormed(markup: string, xml: boolean): void {
  const stack: string[] = [];
  const src = markup.replace(/^<!DOCTYPE html>/i, '');
  const tokenRe = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<|&(?!(?:amp|lt|gt|quot|#39|#\d+|#x[0-9a-f]+);)/gi;
  let m: RegExpExecArray | null;
  while ((m = tokenRe.exec(src)) !== null) {
    if (m[0] === '<') assert.fail(`a raw < or a malformed tag at ${m.index}: ${src.slice(m.index, m.index + 60)}`);
    if (m[0] === '&') assert.fail(`a stray & at ${m.index}: ${src.slice(m.index - 20, m.index + 20)}`);
    if (m[0].startsWith('<!--')) continue;
    const [, close, name, attrs, self] = m as unknown as [string, string, string, string, string];
    for (const a of attrs.matchAll(/="([^"]*)"/g)) assert.doesNotMatch(a[1] as string, /&(?!(?:amp|lt|gt|quot|#39);)/, `an unescaped & in <${name}${attrs}>`);
    if (self) continue;
    if (!xml && !close && VOID.has(name.toLowerCase())) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes what was opened (open: ${stack.join(' > ')})`);
    else stack.push(name);
  }
  assert.deepEqual(stack, [], 'every element closed');
}

// ---- Tests ----

test('numbers for humans', () => {
  assert.equal(humanCount(950), '950');
  assert.equal(humanCount(1234), '1.2k');
  assert.equal(humanCount(41_200), '41k');
  assert.equal(humanCount(2_841_000), '2.8M');
  assert.equal(humanDuration(12_000), '3h 20m');
  assert.equal(humanDuration(3 * 3600), '3h');
  assert.equal(humanDuration(90), '1m 30s');
  assert.equal(humanDuration(2 * 86400 + 4 * 3600 + 59), '2d 4h');
  assert.equal(humanDuration(0), '0s');
  assert.equal(humanMs(250), '250 ms');
  assert.equal(humanMs(4200), '4.2 s');
  assert.equal(humanMs(95_000), '1m 35s');
  assert.equal(humanBytes(58 * 1048576), '58 MiB');
  assert.equal(humanBytes(1.25 * 1024 ** 3), '1.3 GiB');
  assert.equal(humanBytes(512), '512 B');
});

test('ticks: round values, hours for a day, days for a week', () => {
  assert.deepEqual(niceTicks(12, true), [0, 5, 10, 15]);
  assert.deepEqual(niceTicks(100), [0, 25, 50, 75, 100]);
  assert.deepEqual(niceTicks(61.7), [0, 20, 40, 60, 80]);
  assert.deepEqual(niceTicks(0, true), [0, 1]);
  assert.deepEqual(niceTicks(3, true), [0, 1, 2, 3]);
  assert.deepEqual(
    timeTicks(DAY0, DAY0 + 24 * HOUR).map((x) => x.label),
    ['09:00', '12:00', '15:00', '18:00', '21:00', 'Nov 21', '03:00', '06:00'],
  );
  assert.deepEqual(
    timeTicks(WEEK0, WEEK0 + 168 * HOUR).map((x) => x.label),
    ['Nov 14', 'Nov 15', 'Nov 16', 'Nov 17', 'Nov 18', 'Nov 19', 'Nov 20', 'Nov 21'],
  );
  // Seconds for a 40-second run; a 10-minute one in minutes.
  assert.deepEqual(
    timeTicks(SHORT_START, SHORT_END).map((x) => x.label),
    ['07:59:20', '07:59:25', '07:59:30', '07:59:35', '07:59:40', '07:59:45', '07:59:50', '07:59:55', '08:00:00'],
  );
  assert.deepEqual(
    timeTicks(SHORT_END - 10 * 60_000, SHORT_END).map((x) => x.label),
    ['07:50', '07:52', '07:54', '07:56', '07:58', '08:00'],
  );
});

test('the page is self-contained, escaped, well formed, and has no NaN', () => {
  const hostileRun = { ...day, run: `r1"><img src=x onerror=alert(1)>`, host: '<b>h</b>' };
  const pages = { day: renderHtml([day]), week: renderHtml([week]), none: renderHtml([none]), hostile: renderHtml([hostileRun]), all: renderHtml([day, week, none], { title: 'selfware & co' }), zero: renderHtml([]) };
  for (const [name, html] of Object.entries(pages)) {
    assert.doesNotMatch(html, /NaN|undefined|Infinity|\[object /, `${name}: no NaN, undefined or Infinity`);
    // The SVG namespace is a name, never fetched; any other URL would be.
    assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org\/2000\/svg")/, `${name}: no external URL`);
    assert.doesNotMatch(html, /<link|<script|<img|<iframe|<object|<[^>]*\ssrc=|url\(|@import/i, `${name}: nothing fetched, no script`);
    for (const href of html.matchAll(/href="([^"]*)"/g)) assert.match(href[1] as string, /^#run-[\w-]+$/, `${name}: only in-page links`);
    wellFormed(html, false);
    for (const svg of html.match(/<svg[\s\S]*?<\/svg>/g) ?? []) {
      wellFormed(svg, true);
      assert.match(svg, /^<svg [^>]*class="chart[^"]*" data-chart="(tasks|tokens|resources|checkpoints)" viewBox="0 0 \d+ \d+" width="100%"[^>]*><title>[^<]+<\/title>/, `${name}: each chart opens with its hooks, viewBox and a title`);
      assert.doesNotMatch(svg, /\d\.\d\d/, `${name}: coordinates rounded to one decimal`);
    }
  }
  assert.match(pages.day, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/, 'the hostile failure reason, escaped');
  assert.match(pages.day, /last checkpoint &lt;script&gt;alert\(1\)&lt;\/script&gt; 2h ago/, 'the alert message, escaped');
  assert.match(pages.day, /fix &quot;quotes&quot; &amp; &lt;b&gt;tags&lt;\/b&gt; in the parser/, 'the task title, escaped');
  assert.match(pages.hostile, /<h2>r1&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;<\/h2>/, 'the run name, escaped');
  assert.match(pages.hostile, /&lt;b&gt;h&lt;\/b&gt;/, 'the host, escaped');
  // Several runs: an overview linking to each, and each run's four charts.
  assert.equal((pages.all.match(/<div class="run" id="run-/g) ?? []).length, 3);
  assert.equal((pages.all.match(/<svg /g) ?? []).length, 12);
  assert.match(pages.all, /<title>selfware &amp; co<\/title>/);
  assert.ok(Buffer.byteLength(pages.week) < 200_000, `a week's page stays small: ${Buffer.byteLength(pages.week)} bytes`);
});

test('the header and the figures', () => {
  const html = renderHtml([day]);
  assert.match(html, /<span class="badge" style="background:#[0-9a-f]{6}">WARNING<\/span>/);
  assert.match(html, /2026-11-20 08:00 → 2026-11-21 08:00 UTC \(1d\)/);
  assert.match(html, new RegExp(`<p class="summary">${day.summary}</p>`));
  const cell = (k: string): string => {
    const m = new RegExp(`<td class="k">${k}</td><td class="v">(.*?)</td>`).exec(html);
    assert.ok(m, `the ${k} row`);
    return m[1] as string;
  };
  assert.equal(cell('completed'), String(day.tasks.completed));
  assert.equal(cell('success rate'), `<b>${Math.round((day.tasks.success_rate ?? 0) * 1000) / 10}%</b>`);
  assert.equal(cell('NRestarts'), '1');
  assert.equal(cell('tokens in'), '2.8M');
  assert.equal(cell('speed'), '51.3 tokens/s');
  assert.equal(cell('latency p99'), '14.8 s');
  assert.equal(cell('disk used'), '58 MiB');
  assert.equal(cell('warning tier'), '4h');
  assert.equal(cell('critical tier'), '1h');
  assert.equal(cell('at Q4_K_M'), '4h');
  assert.equal(cell('longest'), '1m 35s');
  assert.match(cell('VRAM'), /^22 GiB <span class="sub">of 24 GiB<\/span> \(93\.2%\)$/);
  // Alerts: only those that are not OK, the value and thresholds in their unit.
  assert.match(html, /<td class="n">2h 1m<\/td><td class="n">&gt; 2h<\/td><td class="n">&gt; 6h<\/td>/);
  assert.doesNotMatch(html, /success rate 90%|disk 41% free/, 'an OK alert is not listed');
  assert.match(renderHtml([{ ...day, alerts: day.alerts.map((a) => ({ ...a, status: 'OK' as const })) }]), /<h3>Alerts<\/h3><p>None: all 4 checks OK\.<\/p>/);
  // A ratio as a percent.
  const low = { ...(day.alerts[0] as Alert), status: 'WARNING' as const, value: 0.4 };
  assert.match(renderHtml([{ ...day, alerts: [low] }]), /<td class="n">40%<\/td><td class="n">&lt; 50%<\/td><td class="n">&lt; 25%<\/td>/);
  // Without systemd, no NRestarts row.
  assert.doesNotMatch(renderHtml([{ ...day, systemd: null }]), /NRestarts/);
});

test('the tasks chart: one stacked bar per bucket, heights in proportion, the tallest where most finished', () => {
  for (const r of [day, week]) {
    const svg = chart(renderHtml([r]), 'tasks');
    const rects = elements(svg, 'rect').filter((a) => a['data-kind']);
    const bars = rects.map((a) => ({ i: Number(a['data-bucket']), kind: a['data-kind'], x: Number(a.x), y: Number(a.y), w: Number(a.width), h: Number(a.height) }));
    const b = r.series.buckets;
    assert.equal(bars.filter((x) => x.kind === 'completed').length, b.filter((x) => x.completed > 0).length, 'a completed bar for each bucket with some');
    assert.equal(bars.filter((x) => x.kind === 'failed').length, b.filter((x) => x.failed > 0).length, 'a failed bar for each bucket with some');
    // Height per task is the same for every bar (rounding to 0.1 aside).
    const perTask = bars.map((x) => x.h / (x.kind === 'completed' ? (b[x.i]?.completed as number) : (b[x.i]?.failed as number)));
    assert.ok(Math.max(...perTask) - Math.min(...perTask) < 0.1, `heights follow the counts: ${Math.min(...perTask)}..${Math.max(...perTask)}`);
    // Failed sits on completed: its bottom is completed's top.
    for (const f of bars.filter((x) => x.kind === 'failed')) {
      const c = bars.find((x) => x.kind === 'completed' && x.i === f.i);
      if (c) assert.ok(Math.abs(f.y + f.h - c.y) < 0.15, `bucket ${f.i}: stacked`);
    }
    // The tallest stack is the bucket with the most tasks.
    const top = Math.min(...bars.map((x) => x.y));
    const most = Math.max(...b.map((x) => x.completed + x.failed));
    assert.deepEqual([...new Set(bars.filter((x) => x.y === top).map((x) => x.i))], b.map((x, i) => (x.completed + x.failed === most ? i : -1)).filter((i) => i >= 0));
    // Bucket i sits at its place on the since → until axis.
    const slot = (PLOT.x1 - PLOT.x0) / b.length;
    for (const x of bars) {
      assert.ok(x.x >= PLOT.x0 + x.i * slot - 0.1 && x.x + x.w <= PLOT.x0 + (x.i + 1) * slot + 0.1, `bucket ${x.i} at x ${x.x}, width ${x.w}`);
      assert.ok(x.w > 0.5 * slot, `bucket ${x.i}: a visible bar`);
    }
  }
  // A week: 168 buckets, days on the axis.
  assert.equal(week.series.buckets.length, 168);
  assert.match(chart(renderHtml([week]), 'tasks'), />Nov 17</);
  assert.match(chart(renderHtml([day]), 'tasks'), />15:00</);
});

test('the resources chart: tier bands at the right place, lines broken where the agent was down', () => {
  const svg = chart(renderHtml([day]), 'resources');
  const bands = elements(svg, 'rect').filter((a) => a['data-tier']);
  const px = (h: number): number => PLOT.x0 + (h / 24) * (PLOT.x1 - PLOT.x0);
  const expected: Array<[string, number, number]> = [
    ['warning', 4, 7],
    ['critical', 7, 8],
    ['warning', 8, 9],
  ];
  assert.equal(bands.length, expected.length, 'a band for each warning or critical stretch, none for normal');
  expected.forEach(([tier, a, b], i) => {
    const band = bands[i] as Record<string, string>;
    assert.equal(band['data-tier'], tier);
    assert.ok(Math.abs(Number(band.x) - px(a)) < 0.1, `${tier} band from ${a}h: x ${band.x}, expected ${px(a)}`);
    assert.ok(Math.abs(Number(band.width) - (px(b) - px(a))) < 0.15, `${tier} band to ${b}h`);
    assert.equal(band.fill, tier === 'critical' ? COLORS.tierCritical : COLORS.tierWarning);
  });
  // Both lines, each broken once by the two hours down (13–15).
  for (const s of ['vram_pct', 'ram_pct']) {
    const g = new RegExp(`<g data-series="${s}">([\\s\\S]*?)</g>`).exec(svg);
    assert.ok(g, s);
    assert.equal((g[1]?.match(/<polyline/g) ?? []).length, 2, `${s}: two runs around the gap`);
  }
  // Every y within 0–100 %: between the plot's top and bottom.
  for (const pl of elements(svg, 'polyline')) for (const p of (pl.points as string).split(' ')) assert.ok(Number(p.split(',')[1]) >= 26 && Number(p.split(',')[1]) <= 186, `y ${p}`);
});

test('the tokens and checkpoints charts', () => {
  const tok = chart(renderHtml([day]), 'tokens');
  assert.equal((tok.match(/<polyline/g) ?? []).length, 2, 'the tokens/s line has a gap where no call was made');
  const cps = chart(renderHtml([day]), 'checkpoints');
  const marks = elements(cps, 'g').filter((a) => a['data-kind']);
  assert.equal(marks.length, day.series.checkpoints.length, 'one mark per checkpoint');
  assert.deepEqual([...new Set(marks.map((m) => m['data-kind']))].sort(), ['manual', 'recovery', 'routine', 'shutdown']);
  assert.match(cps, />recovery \(1\)</, 'a legend with the count of each kind');
  // Kinds differ by shape: a recovery is a path (triangle), a shutdown a square, routine a tick.
  assert.match(cps, /<g data-kind="recovery"[^>]*><path /);
  assert.match(cps, /<g data-kind="shutdown"[^>]*><rect /);
  assert.match(cps, /<g data-kind="routine"[^>]*><line /);
  assert.match(chart(renderHtml([week]), 'checkpoints'), /<g data-kind="pre-op"[^>]*><circle /, 'an unknown kind still gets a mark');
  // One point: a dot, not an invisible line.
  const one = { ...none, series: { ...none.series, buckets: [{ start: none.since, completed: 1, failed: 0, retried: 0, steps: 3, tokens_per_s: 42 }], resources: [{ time: none.since, vram_pct: 50, ram_pct: 30, cpu_load: 1, tier: 'normal' as Tier }] } };
  assert.match(tokensChart(one), /<circle [^>]*fill="#0c8599"/);
  assert.equal((tokensChart(one).match(/<circle /g) ?? []).length, 1);
  assert.equal((resourcesChart(one).match(/<circle /g) ?? []).length, 2);
  assert.doesNotMatch(tasksChart(one) + tokensChart(one) + resourcesChart(one), /NaN|Infinity|undefined/);
  // A zero-length or broken window draws, without dividing by zero.
  const broken = { ...one, until: one.since };
  assert.doesNotMatch(tasksChart(broken) + tokensChart(broken) + resourcesChart(broken) + checkpointsChart({ ...broken, series: { ...broken.series, checkpoints: [{ time: 'garbage', kind: 'x' }] } }), /NaN|Infinity|undefined/);
});

test('an empty window: a note in place of each chart, nothing drawn', () => {
  const html = renderHtml([none]);
  for (const kind of ['tasks', 'tokens', 'resources', 'checkpoints']) {
    const svg = chart(html, kind);
    assert.match(svg, /class="chart empty"/);
    assert.match(svg, />no data in this window</);
    assert.doesNotMatch(svg, /<polyline|data-kind|data-tier/);
  }
  // Buckets with no task finished are as empty as none at all.
  const idle = { ...none, series: { ...none.series, buckets: day.series.buckets.map((b) => ({ ...b, completed: 0, failed: 0 })) } };
  assert.match(tasksChart(idle), /no data in this window/);
  assert.match(html, /never ran/);
});

test('a run younger than the window: the charts span its 40 seconds, each bucket a bar in its place, each checkpoint a mark of its own', () => {
  const html = renderHtml([short]);
  const span = (PLOT.x1 - PLOT.x0) / 40_000;
  // Tasks: bucket i of 20 at its place across the whole plot, not squeezed into the 24-hour axis's last pixel.
  const svg = chart(html, 'tasks');
  const bars = elements(svg, 'rect')
    .filter((a) => a['data-kind'])
    .map((a) => ({ i: Number(a['data-bucket']), kind: a['data-kind'], x: Number(a.x), y: Number(a.y), w: Number(a.width), h: Number(a.height) }));
  assert.deepEqual(
    bars.map((b) => `${b.i} ${b.kind}`),
    ['3 completed', '9 retried', '15 completed', '15 failed'],
  );
  const slot = (PLOT.x1 - PLOT.x0) / 20;
  for (const b of bars) {
    assert.ok(Math.abs(b.x - (PLOT.x0 + b.i * slot)) < 1.1 && b.w > 0.8 * slot && b.w <= slot, `bucket ${b.i}: x ${b.x}, width ${b.w}, slot ${slot}`);
  }
  assert.match(svg, /<title>Tasks finished per 2 seconds, 2026-11-21T07:59:20Z to 2026-11-21T08:00:00Z: 2 completed, 1 failed, and 1 attempt failed and retried<\/title>/);
  assert.match(svg, />attempts retried \(1\)</);
  assert.deepEqual(
    [...svg.matchAll(/>(\d\d:\d\d:\d\d)</g)].map((m) => m[1]),
    ['07:59:20', '07:59:25', '07:59:30', '07:59:35', '07:59:40', '07:59:45', '07:59:50', '07:59:55', '08:00:00'],
  );
  // Checkpoints: six marks, each at its second on the axis, far enough apart to be told apart.
  const cps = chart(html, 'checkpoints');
  const centres = [...cps.matchAll(/<g data-kind="(\w+)" data-time="([^"]+)">(<circle [^>]*>|<rect [^>]*>)/g)].map((m) => {
    const a = elements(m[3] as string, m[3]?.startsWith('<circle') ? 'circle' : 'rect')[0] as Record<string, string>;
    return { t: Date.parse(m[2] as string), x: a.cx !== undefined ? Number(a.cx) : Number(a.x) + Number(a.width) / 2 };
  });
  assert.equal(centres.length, 6);
  for (const c of centres) assert.ok(Math.abs(c.x - (PLOT.x0 + (c.t - SHORT_START) * span)) < 0.2, `a checkpoint at ${new Date(c.t).toISOString()}: x ${c.x}`);
  const xs = centres.map((c) => c.x).sort((a, b) => a - b);
  assert.ok(xs.slice(1).every((x, i) => x - (xs[i] as number) > 20), `marks apart: ${xs.join(', ')}`);
  // The scripted backend: the speed chart says why it is empty, the figures too.
  assert.match(chart(html, 'tokens'), />no model speed: scripted backend</);
  assert.match(html, /<td class="k">speed<\/td><td class="v">– <span class="sub">\(scripted backend\)<\/span><\/td>/);
  // No rate an hour from 39 seconds: the count and the span instead.
  assert.match(html, /<td class="k">per hour<\/td><td class="v">– <span class="sub">\(2 in 39s\)<\/span><\/td>/);
  assert.match(html, /<td class="k">attempts<\/td><td class="v">4 <span class="sub">\(1 retried\)<\/span><\/td>/);
  assert.match(html, /<h3>Alerts<\/h3><p>None: all 1 check OK\.<\/p>/);
  assert.doesNotMatch(html, /NaN|undefined|Infinity/);
  wellFormed(html, false);
});

test('the tasks chart stacks, bottom up, tasks completed, tasks failed for good and attempts retried', () => {
  const one = { ...short, series: { ...short.series, buckets: [{ start: short.series.start, completed: 2, failed: 1, retried: 1, steps: 9, tokens_per_s: null }] } };
  const bars = elements(tasksChart(one), 'rect')
    .filter((a) => a['data-kind'])
    .map((a) => ({ kind: a['data-kind'], y: Number(a.y), h: Number(a.height) }));
  assert.deepEqual(
    bars.map((b) => b.kind),
    ['completed', 'failed', 'retried'],
  );
  const [c, f, r] = bars as [(typeof bars)[number], (typeof bars)[number], (typeof bars)[number]];
  assert.ok(Math.abs(f.y + f.h - c.y) < 0.15 && Math.abs(r.y + r.h - f.y) < 0.15, JSON.stringify(bars));
  assert.ok(Math.abs(c.h - 2 * f.h) < 0.15 && Math.abs(r.h - f.h) < 0.15, 'heights in proportion');
  assert.match(tasksChart(one), new RegExp(`fill="${COLORS.retried}"`));
});

// ---- The real thing: headless Chromium ----

/** Decode an 8-bit RGB or RGBA, non-interlaced PNG: size and RGBA pixels. */
function decodePng(buf: Buffer): { w: number; h: number; px: Uint8Array } {
  assert.equal(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a PNG signature');
  let off = 8;
  let w = 0;
  let h = 0;
  let bpp = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      w = data.readUInt32BE(0);
      h = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth 8');
      assert.ok(data[9] === 2 || data[9] === 6, `colour type ${data[9]} (RGB or RGBA)`);
      assert.equal(data[12], 0, 'not interlaced');
      bpp = data[9] === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = w * bpp;
  assert.equal(raw.length, h * (stride + 1), 'the image data fills the image');
  let prev = new Uint8Array(stride);
  const px = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    const filter = raw[y * (stride + 1)] as number;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? (cur[i - bpp] as number) : 0;
      const b = prev[i] as number;
      const c = i >= bpp ? (prev[i - bpp] as number) : 0;
      const x = line[i] as number;
      let v: number;
      if (filter === 0) v = x;
      else if (filter === 1) v = x + a;
      else if (filter === 2) v = x + b;
      else if (filter === 3) v = x + ((a + b) >> 1);
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      } else assert.fail(`row ${y}: unknown filter ${filter}`);
      cur[i] = v & 0xff;
    }
    for (let xx = 0; xx < w; xx++) {
      const o = (y * w + xx) * 4;
      px[o] = cur[xx * bpp] as number;
      px[o + 1] = cur[xx * bpp + 1] as number;
      px[o + 2] = cur[xx * bpp + 2] as number;
      px[o + 3] = bpp === 4 ? (cur[xx * bpp + 3] as number) : 255;
    }
    prev = cur;
  }
  return { w, h, px };
}

/** Pixels within 3 of a colour on each channel. */
function countColor(img: { px: Uint8Array }, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
  let n = 0;
  for (let i = 0; i < img.px.length; i += 4) {
    if (Math.abs((img.px[i] as number) - r) <= 3 && Math.abs((img.px[i + 1] as number) - g) <= 3 && Math.abs((img.px[i + 2] as number) - b) <= 3) n++;
  }
  return n;
}

/** The screenshot's command line: Debian's chromium 120+ (--headless is the new headless mode). */
function chromiumArgs(html: string, png: string, profile: string): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--force-color-profile=srgb', '--force-device-scale-factor=1', `--user-data-dir=${profile}`, '--window-size=1000,3000', `--screenshot=${png}`, `file://${html}`];
}

test('headless Chromium renders the charts: the screenshot shows them in proportion, and none for an empty window', { timeout: 60_000 }, async () => {
  const which = await execa('sh', ['-c', 'command -v chromium'], { reject: false });
  assert.equal(which.exitCode, 0, 'chromium is not installed: run make deps-test, or apt-get install --no-install-recommends chromium');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'report-html-'));
  try {
    const shot = async (r: Report, name: string): Promise<ReturnType<typeof decodePng>> => {
      const html = path.join(dir, `${name}.html`);
      const png = path.join(dir, `${name}.png`);
      fs.writeFileSync(html, renderHtml([r]));
      const c = await execa('chromium', chromiumArgs(html, png, path.join(dir, `profile-${name}`)), { reject: false, timeout: 25_000 });
      assert.ok(fs.existsSync(png), `chromium made no screenshot (exit ${c.exitCode}): ${c.stderr.split('\n').filter((l) => !/dbus|unexpected operator/.test(l)).join('\n')}`);
      return decodePng(fs.readFileSync(png));
    };
    const img = await shot(day, 'day');
    if (process.env.SW_TEST_KEEP === '1') fs.copyFileSync(path.join(dir, 'day.png'), '/tmp/report-24h.png');
    assert.equal(img.w, 1000, 'the window width');
    const n = {
      completed: countColor(img, COLORS.completed),
      failed: countColor(img, COLORS.failed),
      warning: countColor(img, COLORS.tierWarning),
      critical: countColor(img, COLORS.tierCritical),
      tokens: countColor(img, COLORS.tokens),
      vram: countColor(img, COLORS.vram),
      ram: countColor(img, COLORS.ram),
    };
    const seen = JSON.stringify(n);
    // Bars: area in proportion to the tasks (same width, height per task), so green:red is completed:failed.
    const want = day.tasks.completed / day.tasks.failed;
    assert.ok(n.completed > 5000, `completed bars drawn: ${seen}`);
    assert.ok(n.failed > 300, `failed bars drawn: ${seen}`);
    assert.ok(Math.abs(n.completed / n.failed / want - 1) < 0.25, `green:red ${(n.completed / n.failed).toFixed(2)}, tasks ${want.toFixed(2)} (${day.tasks.completed} completed, ${day.tasks.failed} failed): ${seen}`);
    // Bands: 4 h of warning against 1 h of critical.
    assert.ok(n.critical > 2000, `the critical band: ${seen}`);
    assert.ok(Math.abs(n.warning / n.critical / 4 - 1) < 0.25, `warning:critical ${(n.warning / n.critical).toFixed(2)}, expected 4: ${seen}`);
    assert.ok(n.tokens > 400 && n.vram > 400 && n.ram > 400, `the lines: ${seen}`);

    const blank = await shot(none, 'none');
    for (const [name, hex] of Object.entries({ completed: COLORS.completed, failed: COLORS.failed, warning: COLORS.tierWarning, critical: COLORS.tierCritical, tokens: COLORS.tokens, vram: COLORS.vram, ram: COLORS.ram })) {
      const k = countColor(blank, hex);
      assert.ok(k === 0, `an empty window's page has no ${name} pixels, found ${k}`);
    }
  } finally {
    if (process.env.SW_TEST_KEEP === '1') process.stderr.write(`kept test directory ${dir}\n`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
});
