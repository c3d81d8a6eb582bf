import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatDuration, isoUtc, parseBytes, parseDuration, parseTime } from '../../lib/units.js';

test('parseDuration', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1h 30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('2w'), 14 * 86_400_000);
  assert.equal(parseDuration('30'), 30_000);
  assert.equal(parseDuration(1.5), 1500);
  for (const bad of ['', 'abc', '5x', '-5s', '5s junk', 'h']) assert.equal(parseDuration(bad), undefined, bad);
  assert.equal(parseDuration(-1), undefined);
});

test('parseBytes', () => {
  assert.equal(parseBytes('512MiB'), 512 * 1024 * 1024);
  assert.equal(parseBytes('2G'), 2 * 1024 ** 3);
  assert.equal(parseBytes('1kb'), 1000);
  assert.equal(parseBytes('100'), 100);
  assert.equal(parseBytes(4096), 4096);
  for (const bad of ['', 'lots', '5 parsecs', '-1']) assert.equal(parseBytes(bad), undefined, bad);
  assert.equal(parseBytes(1.5), undefined);
});

test('formatting', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(50 * 1024 * 1024), '50.0 MiB');
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(90_061_000), '1d1h');
});

test('parseTime takes ISO 8601 and restic style, rejects junk', () => {
  assert.equal(parseTime('2026-11-21T09:30:00Z')?.toISOString(), '2026-11-21T09:30:00.000Z');
  assert.equal(parseTime('2026-11-21T09:30:00+02:00')?.toISOString(), '2026-11-21T07:30:00.000Z');
  assert.equal(parseTime('2026-11-21T09:30:00.250Z')?.toISOString(), '2026-11-21T09:30:00.250Z');
  const local = parseTime('2026-11-21 09:30:00');
  assert.equal(local?.getHours(), 9);
  assert.equal(local?.getMinutes(), 30);
  assert.equal(parseTime('2026-11-21')?.getDate(), 21);
  assert.equal(parseTime('2028-02-29T00:00:00Z')?.toISOString(), '2028-02-29T00:00:00.000Z', 'a leap day');
  for (const bad of ['', 'yesterday', '2026-13-01T00:00:00Z', '2026-02-31 10:00:00', '2026-02-31T00:00:00Z', '2026-04-31T00:00:00+02:00', '2026-02-29T00:00:00Z', '2026-11-21T25:00:00Z']) assert.equal(parseTime(bad), undefined, bad);
});

test('isoUtc keeps milliseconds only when there are some', () => {
  assert.equal(isoUtc(Date.UTC(2026, 0, 2, 3, 4, 5)), '2026-01-02T03:04:05Z');
  assert.equal(isoUtc(Date.UTC(2026, 0, 2, 3, 4, 5, 6)), '2026-01-02T03:04:05.006Z');
});
