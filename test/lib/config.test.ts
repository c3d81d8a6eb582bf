import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfigFile, loadRunConfig, parseConfigText, RUN_SCHEMA, workspaceDir, type RunConfig } from '../../lib/config/index.js';
import { defaultsOf, didYouMean, levenshtein, type Spec } from '../../lib/config/spec.js';
import { MAX_DURATION_MS } from '../../lib/config/validate.js';
import { GOVERNOR_SCHEMA } from '../../lib/governor/config.js';
import { EXIT, SwError } from '../../lib/exit.js';
import { runPaths } from '../../lib/run.js';
import { execa } from 'execa';
import { ROOT, makeEnv, sw } from '../helpers.js';

const parse = (text: string) => parseConfigText<RunConfig>(text, RUN_SCHEMA);

test('a missing file means every default', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const paths = runPaths('run1', t.env);
    const { config, file } = await loadRunConfig(paths);
    assert.equal(file, null);
    assert.deepEqual(config, defaultsOf(RUN_SCHEMA));
    assert.equal(config.checkpoint.retention.keep_last, 12);
    assert.equal(workspaceDir(config, paths), path.join(t.stateDir, 'run1', 'workspace'));
  } finally {
    t.cleanup();
  }
});

test('an empty file and a partial file fill in defaults', { timeout: 60_000 }, async () => {
  assert.deepEqual((await parse('')).config, defaultsOf(RUN_SCHEMA));
  assert.deepEqual((await parse('# only a comment\n')).config, defaultsOf(RUN_SCHEMA));
  const { config, issues } = await parse('checkpoint:\n  retention:\n    keep_daily: 3\n');
  assert.deepEqual(issues, []);
  assert.equal(config.checkpoint.retention.keep_daily, 3);
  assert.equal(config.checkpoint.retention.keep_last, 12);
  assert.equal(config.tasklog.compact_bytes, 1024 * 1024);
});

test('sizes and paths are parsed', { timeout: 60_000 }, async () => {
  const { config, issues } = await parse('workspace: /srv/ws\ntasklog:\n  compact_bytes: 4MiB\n');
  assert.deepEqual(issues, []);
  assert.equal(config.workspace, '/srv/ws');
  assert.equal(config.tasklog.compact_bytes, 4 * 1024 * 1024);
});

test('a wrong type names line, column, key, expectation and value', { timeout: 60_000 }, async () => {
  const { issues } = await parse('checkpoint:\n  retention:\n    keep_last: -3\n');
  assert.equal(issues.length, 1);
  assert.deepEqual(issues[0], { line: 3, col: 16, key: 'checkpoint.retention.keep_last', message: 'expected an integer from 0 to 100000, got -3' });
  const s = await parse('checkpoint:\n  retention:\n    keep_hourly: lots\n');
  assert.equal(s.issues[0]?.message, 'expected an integer from 0 to 100000, got "lots"');
  const r = await parse('workspace: relative/dir\n');
  assert.equal(r.issues[0]?.key, 'workspace');
  assert.match(r.issues[0]?.message ?? '', /expected an absolute path, got "relative\/dir"/);
  const m = await parse('checkpoint: 5\n');
  assert.equal(m.issues[0]?.message, 'expected a mapping, got 5');
});

test('unknown keys are errors with a did-you-mean', { timeout: 60_000 }, async () => {
  const { issues } = await parse('checkpoint:\n  retension:\n    keep_last: 1\n');
  assert.equal(issues.length, 1);
  assert.equal(issues[0]?.key, 'checkpoint.retension');
  assert.equal(issues[0]?.message, "unknown key (did you mean 'retention'?)");
  assert.equal(issues[0]?.line, 2);
  const far = await parse('zzzzzz: 1\n');
  assert.equal(far.issues[0]?.message, 'unknown key');
});

test('YAML syntax errors and duplicate keys carry their position', { timeout: 60_000 }, async () => {
  const bad = await parse('checkpoint:\n  retention: [1, 2\n');
  assert.ok(bad.issues.length >= 1);
  assert.match(bad.issues[0]?.message ?? '', /^invalid YAML: /);
  const dup = await parse('workspace: /a\nworkspace: /b\n');
  assert.match(dup.issues[0]?.message ?? '', /invalid YAML: .*unique/i);
  assert.equal(dup.issues[0]?.line, 2);
});

test('a top level that is not a mapping is refused', { timeout: 60_000 }, async () => {
  const { issues } = await parse('- a\n- b\n');
  assert.equal(issues[0]?.message, 'expected a mapping, got a list');
});

test('loadConfigFile throws exit 78 with file:line:col: key: message', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    const f = path.join(t.configDir, 'run1.yaml');
    fs.writeFileSync(f, 'tasklog:\n  compact_bytes: huge\n');
    await assert.rejects(loadConfigFile(f, RUN_SCHEMA), (e: unknown) => {
      assert.ok(e instanceof SwError);
      assert.equal(e.code, EXIT.CONFIG);
      assert.equal(e.message, `${f}:2:18: tasklog.compact_bytes: expected a size such as 512MiB or 2G (from 0 to 64MiB), got "huge"`);
      return true;
    });
    fs.chmodSync(f, 0o000);
    if (process.getuid?.() !== 0) {
      await assert.rejects(loadConfigFile(f, RUN_SCHEMA), /cannot read: permission denied/);
    } else {
      // Root reads anything: check as nobody, through the command.
      fs.chmodSync(t.dir, 0o755);
      fs.chmodSync(path.dirname(f), 0o755);
      const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.join(ROOT, 'dist/bin/sw-agent.cjs'), 'config', 'run1', 'report.mail'], {
        reject: false,
        env: { ...process.env, ...t.env },
      });
      assert.equal(r.exitCode, 78, String(r.stderr));
      assert.match(String(r.stderr), /run1\.yaml: cannot read: permission denied/);
    }
  } finally {
    t.cleanup();
  }
});

test('levenshtein and didYouMean', () => {
  assert.equal(levenshtein('kitten', 'sitting'), 3);
  assert.equal(levenshtein('', 'abc'), 3);
  assert.equal(didYouMean('keep_lst', ['keep_last', 'keep_daily']), 'keep_last');
  assert.equal(didYouMean('qqqqqqq', ['keep_last']), undefined);
});

test('units/example.yaml parses and holds the defaults (but the example model paths)', { timeout: 60_000 }, async () => {
  const { ROOT } = await import('../helpers.js');
  const file = path.join(ROOT, 'units', 'example.yaml');
  const { config } = await loadConfigFile<RunConfig>(file, RUN_SCHEMA);
  const dflt = defaultsOf(RUN_SCHEMA) as RunConfig;
  assert.ok(Object.keys(config.llm.models).length === 3);
  assert.deepEqual({ ...config, llm: { ...config.llm, models: {} } }, dflt);
});

test('every duration and size of the run and governor configs has a maximum, no duration past what a timer can wait', () => {
  const unbounded: string[] = [];
  const walk = (spec: Spec, key: string): void => {
    if (spec.kind === 'object') for (const [k, sub] of Object.entries(spec.fields)) walk(sub, key ? `${key}.${k}` : k);
    else if (spec.kind === 'map' || spec.kind === 'list') walk(spec.of, `${key}.*`);
    else if (spec.kind === 'duration' && (spec.max === undefined || spec.max > MAX_DURATION_MS)) unbounded.push(key);
    else if (spec.kind === 'bytes' && spec.max === undefined) unbounded.push(key);
  };
  walk(RUN_SCHEMA, '');
  walk(GOVERNOR_SCHEMA, 'governor');
  assert.deepEqual(unbounded, []);
});

test('an absurd duration or size is refused with file:line:col, key, bound and value (exit 78)', { timeout: 60_000 }, async () => {
  for (const [yaml, key, message] of [
    ['recovery:\n  window: 100000d\n', 'recovery.window', 'expected a duration such as 30s, 5m or 1h30m (from 1s to 7d), got "100000d"'],
    ['agent:\n  heartbeat: 1e300\n', 'agent.heartbeat', 'expected a duration such as 30s, 5m or 1h30m (from 1s to 1h), got 1e+300'],
    ['llm:\n  patience: 30d\n', 'llm.patience', 'expected a duration such as 30s, 5m or 1h30m (from 0s to 7d), got "30d"'],
    ['agent:\n  output_budget: 1TiB\n', 'agent.output_budget', 'expected a size such as 512MiB or 2G (from 0 to 16MiB), got "1TiB"'],
    ['agent:\n  rss_limit: 999999999999999999999\n', 'agent.rss_limit', 'expected a size such as 512MiB or 2G (from 0 to 1TiB), got 1e+21'],
  ] as const) {
    const { issues } = await parse(yaml);
    assert.equal(issues.length, 1, yaml);
    assert.deepEqual([issues[0]?.line, issues[0]?.key, issues[0]?.message], [2, key, message]);
  }
  // Past 2^31-1 ms even where a key's own bound would allow it (setTimeout would fire at once).
  const loose: Spec = { kind: 'object', doc: '', fields: { d: { kind: 'duration', default: 0, doc: '' }, b: { kind: 'bytes', default: 0, doc: '' } } };
  const l = await parseConfigText<{ d: number; b: number }>('d: 25d\nb: 2PiB\n', loose);
  assert.deepEqual(l.issues.map((i) => [i.key, i.message]), [
    ['d', 'expected a duration such as 30s, 5m or 1h30m (from 0s to 24d20h31m23s), got "25d"'],
    ['b', 'expected a size such as 512MiB or 2G (from 0 to 1PiB), got "2PiB"'],
  ]);
  assert.deepEqual((await parseConfigText<{ d: number }>('d: 24d\n', loose)).issues, []);
  const t = makeEnv();
  try {
    const f = path.join(t.configDir, 'run1.yaml');
    fs.writeFileSync(f, 'recovery:\n  window: 100000d\n');
    const r = await sw('sw-agent', ['config', 'run1', 'recovery.window'], t);
    assert.equal(r.exitCode, 78);
    assert.equal(String(r.stderr), `sw-agent: ${f}:2:11: recovery.window: expected a duration such as 30s, 5m or 1h30m (from 1s to 7d), got "100000d"`);
  } finally {
    t.cleanup();
  }
});
