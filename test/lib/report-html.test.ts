// The HTML report: self-contained, escaped, its charts drawn from the data;
// then rendered by a real headless Chromium and the screenshot's pixels
// checked for the charts' colours.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { execa } from 'execa';
import { collect } from '../../lib/report/collect.js';
import { renderHtml } from '../../lib/report/html.js';
import { COLORS, niceTicks, timeTicks } from '../../lib/report/svg.js';
import type { Report } from '../../lib/report/types.js';
import { RUN_SCHEMA, type RunConfig } from '../../lib/config/index.js';
import { defaultsOf } from '../../lib/config/spec.js';
import { runPaths } from '../../lib/run.js';
import { makeEnv } from '../helpers.js';
import { DAY, T0, T1, writeWeekLog } from '../fixtures/weeklog.js';

const config = defaultsOf(RUN_SCHEMA) as RunConfig;

async function weekReports(): Promise<{ day: Report; week: Report; none: Report; cleanup(): void }> {
  const t = makeEnv('report-html');
  await writeWeekLog(t.stateDir, 'week', { tasks: 2000, samples: 20_000 });
  const paths = runPaths('week', t.env);
  const day = await collect(paths, config, { since: T0 + 2 * DAY, until: T0 + 3 * DAY }, { now: T1, systemd: false });
  const week = await collect(paths, config, { since: T0, until: T1 }, { now: T1, systemd: false });
  const none = await collect(paths, config, { since: T1 + DAY, until: T1 + 2 * DAY }, { now: T1, systemd: false });
  return { day, week, none, cleanup: () => t.cleanup() };
}

/** The <svg data-chart=kind> element's text. */
function chart(html: string, kind: string): string {
  const m = new RegExp(`<svg[^>]*data-chart="${kind}"[\\s\\S]*?</svg>`).exec(html);
  assert.ok(m, `the ${kind} chart`);
  return m[0];
}

/** Tags balance (the SVG and HTML parse as XML would, void elements aside). */
function balanced(markup: string): void {
  const stack: string[] = [];
  const VOID = new Set(['meta', 'br', 'link', 'img', 'hr', 'input']);
  for (const m of markup.replace(/<!DOCTYPE[^>]*>/i, '').matchAll(/<(\/?)([a-zA-Z][\w-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m as unknown as [string, string, string, string];
    if (self || VOID.has(name.toLowerCase())) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes what was opened`);
    else stack.push(name);
  }
  assert.deepEqual(stack, [], 'every tag closed');
}

test('the page is self-contained, escaped, well formed, and its charts follow the data', async () => {
  const { day, week, none, cleanup } = await weekReports();
  try {
    const hostile = { ...day, run: 'r<1>', tasks: { ...day.tasks, failure_reasons: [{ reason: '<script>alert(1)</script> & "x"', count: 3 }] } };
    const html = renderHtml([hostile]);
    assert.doesNotMatch(html, /<script/i, 'no script, and the hostile reason is escaped');
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; &quot;x&quot;/);
    assert.match(html, /selfware r&lt;1&gt;/);
    assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no external reference');
    assert.doesNotMatch(html, /<link|<img|url\(/i);
    for (const r of [day, week, none]) {
      const page = renderHtml([r]);
      assert.doesNotMatch(page, /NaN|undefined|Infinity/);
      balanced(page);
    }
    // Tasks: one bar (or two, stacked) per bucket with attempts, the tallest where the most finished.
    const tasks = chart(renderHtml([day]), 'tasks');
    const bars = [...tasks.matchAll(/<rect class="(completed|failed)" x="([\d.]+)" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"/g)].map((m) => ({ kind: m[1], x: Number(m[2]), y: Number(m[3]), h: Number(m[4]) }));
    const withData = day.series.buckets.filter((b) => b.completed + b.failed > 0);
    assert.equal(bars.filter((b) => b.kind === 'completed').length, day.series.buckets.filter((b) => b.completed > 0).length);
    assert.equal(bars.filter((b) => b.kind === 'failed').length, day.series.buckets.filter((b) => b.failed > 0).length);
    const top = Math.min(...bars.map((b) => b.y));
    const most = Math.max(...withData.map((b) => b.completed + b.failed));
    const xs = new Set(bars.filter((b) => b.y === top).map((b) => b.x));
    const expect = new Set(
      day.series.buckets
        .map((b, i) => ({ b, i }))
        .filter(({ b }) => b.completed + b.failed === most)
        .map(({ i }) => Math.round((52 + (i * 3600 * 1000 * (860 - 52 - 14)) / DAY + 0.5) * 10) / 10),
    );
    assert.deepEqual(xs, expect, 'the tallest bars are the buckets with the most attempts');
    // Heights are proportional: completed bar height / count is the same for every bucket.
    const perTask = bars.filter((b) => b.kind === 'completed').map((b, i) => b.h / (day.series.buckets.filter((x) => x.completed > 0)[i]?.completed ?? 1));
    assert.ok(Math.max(...perTask) - Math.min(...perTask) < 0.2, `bar heights follow the counts: ${perTask.join(', ')}`);
    // Tier bands where the governor was at warning and critical, at the right place.
    const res = chart(renderHtml([day]), 'resources');
    const band = (tier: string): { x: number; w: number } => {
      const m = new RegExp(`<rect class="tier-${tier}" x="([\\d.]+)" y="[\\d.]+" width="([\\d.]+)"`).exec(res);
      assert.ok(m, `a ${tier} band`);
      return { x: Number(m[1]), w: Number(m[2]) };
    };
    const px = (ms: number): number => 52 + ((ms - (T0 + 2 * DAY)) / DAY) * (860 - 52 - 14);
    assert.ok(Math.abs(band('warning').x - px(T0 + 2 * DAY + 3 * 3_600_000)) < 0.2);
    assert.ok(Math.abs(band('critical').x - px(T0 + 2 * DAY + 3.5 * 3_600_000)) < 0.2);
    assert.ok(Math.abs(band('critical').w - (px(T0 + 2 * DAY + 5 * 3_600_000) - px(T0 + 2 * DAY + 3.5 * 3_600_000))) < 0.2);
    // The checkpoint strip: one tick per checkpoint.
    assert.equal((chart(renderHtml([day]), 'checkpoints').match(/<line class="ck-/g) ?? []).length, day.series.checkpoints.length);
    // A week: 168 hourly buckets; days on the axis.
    assert.equal(week.series.buckets.length, 168);
    assert.match(chart(renderHtml([week]), 'tasks'), />Nov 3</);
    // No data: the note, not a broken chart.
    for (const kind of ['tasks', 'tokens', 'resources', 'checkpoints']) assert.match(chart(renderHtml([none]), kind), /no data in this window/);
  } finally {
    cleanup();
  }
});

test('ticks: round values and readable times', () => {
  assert.deepEqual(niceTicks(13), [0, 5, 10, 15]);
  assert.deepEqual(niceTicks(100), [0, 25, 50, 75, 100]);
  assert.deepEqual(niceTicks(0), [0, 1]);
  assert.deepEqual(
    timeTicks(Date.parse('2026-11-21T00:00:00Z'), Date.parse('2026-11-22T00:00:00Z')).map((x) => x.label),
    ['Nov 21', '06:00', '12:00', '18:00', 'Nov 22'],
  );
  assert.deepEqual(
    timeTicks(T0, T1).map((x) => x.label),
    ['Nov 1', 'Nov 2', 'Nov 3', 'Nov 4', 'Nov 5', 'Nov 6', 'Nov 7', 'Nov 8'],
  );
});

/** Decode an 8-bit RGB or RGBA PNG (filters 0-4): width, height, and RGBA pixels. */
function decodePng(buf: Buffer): { w: number; h: number; px: Uint8Array } {
  assert.equal(buf.subarray(1, 4).toString(), 'PNG');
  let off = 8;
  let w = 0;
  let h = 0;
  let colorType = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString();
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      w = data.readUInt32BE(0);
      h = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth 8');
      colorType = data[9] as number;
      assert.ok(colorType === 2 || colorType === 6, `colour type ${colorType}`);
      assert.equal(data[12], 0, 'not interlaced');
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const bpp = colorType === 6 ? 4 : 3;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = w * bpp;
  const cur = new Uint8Array(stride);
  const prev = new Uint8Array(stride);
  const px = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)] as number;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? (cur[i - bpp] as number) : 0;
      const b = prev[i] as number;
      const c = i >= bpp ? (prev[i - bpp] as number) : 0;
      const x = line[i] as number;
      let v: number;
      if (f === 0) v = x;
      else if (f === 1) v = x + a;
      else if (f === 2) v = x + b;
      else if (f === 3) v = x + ((a + b) >> 1);
      else {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      cur[i] = v & 0xff;
    }
    for (let xx = 0; xx < w; xx++) {
      px.set([cur[xx * bpp] as number, cur[xx * bpp + 1] as number, cur[xx * bpp + 2] as number, bpp === 4 ? (cur[xx * bpp + 3] as number) : 255], (y * w + xx) * 4);
    }
    prev.set(cur);
  }
  return { w, h, px };
}

function countColor(img: { px: Uint8Array }, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
  let n = 0;
  for (let i = 0; i < img.px.length; i += 4) if (Math.abs((img.px[i] as number) - r) <= 2 && Math.abs((img.px[i + 1] as number) - g) <= 2 && Math.abs((img.px[i + 2] as number) - b) <= 2) n++;
  return n;
}

test('headless Chromium renders the charts: the screenshot shows them, and none for an empty window', async () => {
  const which = await execa('sh', ['-c', 'command -v chromium'], { reject: false });
  assert.equal(which.exitCode, 0, 'chromium is not installed: make deps-test installs it (apt-get install chromium)');
  const { day, none, cleanup } = await weekReports();
  const dir = fs.mkdtempSync('/tmp/report-shot-');
  try {
    const shot = async (r: Report, name: string): Promise<ReturnType<typeof decodePng>> => {
      const html = path.join(dir, `${name}.html`);
      const png = path.join(dir, `${name}.png`);
      fs.writeFileSync(html, renderHtml([r]));
      const c = await execa('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--user-data-dir=${path.join(dir, 'profile')}`, '--window-size=1000,2400', `--screenshot=${png}`, `file://${html}`], { reject: false, timeout: 60_000 });
      assert.ok(fs.existsSync(png), `no screenshot: ${c.stderr}`);
      return decodePng(fs.readFileSync(png));
    };
    const img = await shot(day, 'day');
    if (process.env.SW_TEST_KEEP === '1') fs.copyFileSync(path.join(dir, 'day.png'), '/tmp/report-day.png');
    assert.equal(img.w, 1000);
    const green = countColor(img, COLORS.completed);
    const red = countColor(img, COLORS.failed);
    const warn = countColor(img, COLORS.warning);
    const crit = countColor(img, COLORS.critical);
    const tokens = countColor(img, COLORS.tokens);
    const vram = countColor(img, COLORS.vram);
    assert.ok(green > 5000, `completed bars: ${green} green pixels`);
    assert.ok(red > 200 && red < green, `failed bars: ${red} red pixels, fewer than green (${day.tasks.failed} failed, ${day.tasks.completed} completed)`);
    assert.ok(crit > 1000 && warn > 300 && crit > warn, `tier bands: critical ${crit}, warning ${warn} (90 and 30 minutes)`);
    assert.ok(tokens > 300, `the tokens/s line: ${tokens} pixels`);
    assert.ok(vram > 300, `the VRAM line: ${vram} pixels`);
    const blank = await shot(none, 'none');
    for (const [name, hex] of Object.entries({ completed: COLORS.completed, failed: COLORS.failed, warning: COLORS.warning, critical: COLORS.critical, tokens: COLORS.tokens, vram: COLORS.vram })) {
      assert.ok(countColor(blank, hex) < 50, `no ${name} in an empty window's page: ${countColor(blank, hex)}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    cleanup();
  }
});
