import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { EXIT, SwError } from '../../lib/exit.js';
import { roots, runPaths, validateRunName } from '../../lib/run.js';

test('valid run names pass', () => {
  for (const n of ['run1', 'a', 'A.b_c-d', '9lives', 'x'.repeat(64)]) assert.equal(validateRunName(n), n);
});

test('invalid run names are usage errors (64) that name the value', () => {
  const cases: Array<[string | undefined, RegExp]> = [
    ['../x', /invalid run name '\.\.\/x'/],
    ['a/b', /invalid run name 'a\/b'/],
    ['', /invalid run name ''/],
    [undefined, /invalid run name ''/],
    ['x'.repeat(200), /\(200 characters\)/],
    ['x'.repeat(65), /invalid run name/],
    ['.hidden', /invalid run name/],
    ['-flag', /invalid run name/],
    ['sp ace', /invalid run name/],
    ['nul\0', /invalid run name/],
  ];
  for (const [name, re] of cases) {
    assert.throws(
      () => validateRunName(name),
      (e: unknown) => e instanceof SwError && e.code === EXIT.USAGE && re.test(e.message),
      String(name),
    );
  }
});

test('roots default to the FHS places and move with the environment', () => {
  assert.deepEqual(roots({}), { configDir: '/etc/selfware', stateDir: '/var/lib/selfware', runtimeDir: '/run/selfware' });
  const r = roots({ SELFWARE_CONFIG_DIR: '/tmp/c', SELFWARE_STATE_DIR: 'rel/s', SELFWARE_RUNTIME_DIR: '/tmp/r' });
  assert.equal(r.configDir, '/tmp/c');
  assert.equal(r.stateDir, path.resolve('rel/s'));
  const p = runPaths('run1', { SELFWARE_STATE_DIR: '/s', SELFWARE_CONFIG_DIR: '/c' });
  assert.equal(p.configFile, '/c/run1.yaml');
  assert.equal(p.stateDir, '/s/run1/state');
  assert.equal(p.tasklogJournal, '/s/run1/tasklog.journal');
  assert.throws(() => runPaths('../etc', {}), SwError);
});
