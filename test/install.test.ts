// make install / make uninstall with PREFIX, DESTDIR and UNITDIR, and
// `npm i -g .`: each gives working commands; uninstall removes exactly what
// install added.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ROOT, makeEnv } from './helpers.js';
import { walk } from '../lib/fsutil.js';

function files(dir: string): string[] {
  const out: string[] = [];
  walk(dir, (p, st) => {
    if (!st.isDirectory()) out.push(path.relative(dir, p));
  });
  return out;
}

const COMMANDS = ['sw-checkpoint'];

test('make install PREFIX= DESTDIR= UNITDIR=, then make uninstall', async () => {
  const t = makeEnv('install');
  try {
    const dest = path.join(t.dir, 'dest');
    fs.mkdirSync(path.join(dest, 'opt', 'selfware', 'keep'), { recursive: true });
    fs.writeFileSync(path.join(dest, 'opt', 'selfware', 'keep', 'mine'), 'not ours');
    const before = files(dest);
    const vars = ['PREFIX=/opt/selfware', `DESTDIR=${dest}`, 'UNITDIR=/usr/lib/systemd/system'];
    // systemd 252 (this machine): no RestartSteps= drop-in.
    const old = await execa('make', ['-s', 'install', ...vars, 'SYSTEMD_VERSION=252'], { cwd: ROOT, reject: false });
    assert.equal(old.exitCode, 0, old.stderr);
    assert.ok(!fs.existsSync(path.join(dest, 'usr/lib/systemd/system/selfware@.service.d')), 'no drop-in on 252');
    // systemd 254 and later: the drop-in that lets systemd space the restarts.
    const inst = await execa('make', ['-s', 'install', ...vars, 'SYSTEMD_VERSION=255'], { cwd: ROOT, reject: false });
    assert.equal(inst.exitCode, 0, inst.stderr);
    assert.match(inst.stdout, /systemd 255: restarts spaced by RestartSteps=/);
    const dropIn = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/selfware@.service.d/restart-steps.conf'), 'utf8');
    assert.match(dropIn, /^RestartSteps=6$/m);
    assert.match(dropIn, /^RestartMaxDelaySec=60s$/m);
    assert.match(dropIn, /^Environment=SELFWARE_BACKOFF=systemd$/m);
    const installed = files(dest);
    for (const c of COMMANDS) {
      assert.ok(installed.includes(`opt/selfware/bin/${c}`), c);
      const wrapper = fs.readFileSync(path.join(dest, 'opt/selfware/bin', c), 'utf8');
      assert.match(wrapper, new RegExp(`^#!/bin/sh\\nexec /\\S+/node /opt/selfware/lib/selfware/dist/bin/${c}\\.cjs "\\$@"\\n$`), 'absolute paths without DESTDIR');
    }
    assert.ok(installed.includes('opt/selfware/share/man/man1/sw-checkpoint.1'));
    assert.ok(installed.includes('opt/selfware/share/man/man8/sw-recover.8'));
    assert.ok(installed.includes('etc/selfware/example.yaml.sample'));
    // Units land in UNITDIR whatever the PREFIX, naming this install's absolute paths.
    for (const u of ['selfware@.service', 'selfware-checkpoint@.service', 'selfware-checkpoint@.timer', 'selfware-retention@.timer', 'selfware-report@.timer', 'selfware-alert@.service', 'sw-gpu-governor.service']) {
      assert.ok(installed.includes(`usr/lib/systemd/system/${u}`), u);
    }
    const unit = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/selfware@.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/opt\/selfware\/bin\/sw-agent run %i$/m);
    assert.match(unit, /^ExecStartPre=-\/opt\/selfware\/bin\/sw-recover %i$/m);
    assert.doesNotMatch(unit, /\/usr\/local\//);
    // Every installed unit names real paths: no @PLACEHOLDER@ left for a sed that never ran.
    for (const f of installed.filter((x) => x.startsWith('usr/lib/systemd/system/'))) {
      assert.doesNotMatch(fs.readFileSync(path.join(dest, f), 'utf8'), /@[A-Z][A-Z0-9_]*@/, f);
    }
    const alert = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/selfware-alert@.service'), 'utf8');
    assert.match(alert, /^ExecStart=\/opt\/selfware\/libexec\/selfware\/selfware-alert %i$/m);
    assert.ok(installed.includes('opt/selfware/libexec/selfware/selfware-alert'));
    assert.ok(installed.some((f) => f.startsWith('opt/selfware/lib/selfware/node_modules/sql.js/')));
    assert.ok(!installed.some((f) => f.startsWith('opt/selfware/lib/selfware/node_modules/eslint/')), 'no dev dependencies');
    // The installed command runs (through the DESTDIR copy of its files).
    const bin = path.join(dest, 'opt/selfware/lib/selfware/dist/bin/sw-checkpoint.cjs');
    const v = await execa(process.execPath, [bin, '--version']);
    assert.match(v.stdout, /^\d+\.\d+\.\d+$/);
    const c = await execa(process.execPath, [bin, 'create', 'run1', '-q'], { env: t.env, reject: false });
    assert.equal(c.exitCode, 0, c.stderr);
    assert.match(c.stdout, /^[0-9a-f]{8}$/);
    const un = await execa('make', ['-s', 'uninstall', ...vars, 'SYSTEMD_VERSION=255'], { cwd: ROOT, reject: false });
    assert.equal(un.exitCode, 0, un.stderr);
    assert.deepEqual(files(dest), before, 'uninstall removes exactly what install added');
  } finally {
    t.cleanup();
  }
});

test('npm i -g . gives working commands', async () => {
  const t = makeEnv('npm-g');
  try {
    const prefix = path.join(t.dir, 'npm-prefix');
    const r = await execa('npm', ['i', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '.'], { cwd: ROOT, reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    for (const c of COMMANDS) {
      const bin = path.join(prefix, 'bin', c);
      assert.ok(fs.existsSync(bin), `${bin} exists`);
      const v = await execa(bin, ['--version'], { reject: false });
      assert.equal(v.exitCode, 0, v.stderr);
      assert.match(v.stdout, /^\d+\.\d+\.\d+$/);
    }
    const c = await execa(path.join(prefix, 'bin', 'sw-checkpoint'), ['create', 'run1'], { env: { ...process.env, ...t.env }, reject: false });
    assert.equal(c.exitCode, 0, c.stderr);
  } finally {
    t.cleanup();
  }
});
