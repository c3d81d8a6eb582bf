// Which runs exist, and a config with a mistake in it. A run exists when its
// config file or its state directory does: a typo in a run name is exit 66
// with a did-you-mean, never a new run. A config mistake stops only the agent
// (78): commands that read, and routine checkpoints, go on from the keys they
// need with one warning line, and the report says CRITICAL, naming it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ignoreHostDisk, makeEnv, sw, treeSnapshot, writeConfig } from '../helpers.js';
import { scriptedRun } from '../fixtures/agent.js';

test('a typo in a run name is 66 with a did-you-mean, and creates nothing; sw-agent init creates a run', { timeout: 60_000 }, async () => {
  const t = makeEnv();
  try {
    writeConfig(t, 'run1', 'agent:\n  max_attempts: 2\n');
    assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
    const before = treeSnapshot(t.dir);
    for (const [cmd, args] of [
      ['sw-agent', ['add', 'rnu1', 'do it']],
      ['sw-agent', ['list', 'rnu1']],
      ['sw-agent', ['status', 'rnu1']],
      ['sw-agent', ['pause', 'rnu1']],
      ['sw-agent', ['config', 'rnu1']],
      ['sw-checkpoint', ['create', 'rnu1']],
      ['sw-checkpoint', ['list', 'rnu1']],
      ['sw-recover', ['rnu1']],
      ['sw-report', ['rnu1']],
    ] as Array<[string, string[]]>) {
      const r = await sw(cmd, args, t);
      assert.equal(r.exitCode, 66, `${cmd} ${args.join(' ')}: ${r.stderr}`);
      assert.match(String(r.stderr), /no such run 'rnu1': did you mean 'run1'\?/, `${cmd} ${args.join(' ')}`);
    }
    assert.deepEqual(treeSnapshot(t.dir), before, 'nothing was created');
    const check = await sw('sw-report', ['rnu1', '--check'], t);
    assert.equal(check.exitCode, 3);
    assert.match(String(check.stdout), /^SELFWARE UNKNOWN - no such run 'rnu1': did you mean 'run1'\?/);

    // Explicit creation: sw-agent init (idempotent), and then the run is there for everyone.
    const init = await sw('sw-agent', ['init', 'run2', '--json'], t);
    assert.equal(init.exitCode, 0, String(init.stderr));
    const doc = JSON.parse(String(init.stdout));
    assert.equal(doc.created, true);
    assert.equal(doc.state_dir, path.join(t.stateDir, 'run2'));
    assert.ok(fs.existsSync(path.join(t.stateDir, 'run2', 'state.git', 'HEAD')));
    const twice = await sw('sw-agent', ['init', 'run2', '--json'], t);
    assert.equal(JSON.parse(String(twice.stdout)).created, false);
    assert.equal((await sw('sw-agent', ['add', 'run2', 'do it'], t)).exitCode, 0);
    // A config file alone makes a run: its state is made by the first command that needs it.
    writeConfig(t, 'run3', '');
    assert.equal((await sw('sw-agent', ['add', 'run3', 'do it'], t)).exitCode, 0);
  } finally {
    t.cleanup();
  }
});

test('a config mistake stops only the agent (78); reads, routine checkpoints and the report go on, and the report is CRITICAL naming it', { timeout: 90_000 }, async () => {
  const t = makeEnv();
  try {
    ignoreHostDisk(t);
    scriptedRun(t, { one: [{ action: 'finish', summary: 'done' }] }, 'report:\n  mail: ops@example.com\n');
    assert.equal((await sw('sw-agent', ['init', 'run1'], t)).exitCode, 0);
    assert.equal((await sw('sw-agent', ['add', 'run1', 'one'], t)).exitCode, 0);
    const cfg = path.join(t.configDir, 'run1.yaml');
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('llm:\n', 'llm:\n  backnd: llama\n'));
    const line = fs.readFileSync(cfg, 'utf8').split('\n').findIndex((l) => l.includes('backnd')) + 1;
    const where = `${cfg}:${line}:3: llm.backnd: unknown key (did you mean 'backend'?)`;

    const run = await sw('sw-agent', ['run', 'run1'], t);
    assert.equal(run.exitCode, 78, String(run.stderr));
    assert.equal(String(run.stderr).split('\n')[0], `sw-agent: ${where}`);

    for (const [cmd, args] of [
      ['sw-agent', ['status', 'run1']],
      ['sw-agent', ['list', 'run1']],
      ['sw-checkpoint', ['list', 'run1']],
      ['sw-checkpoint', ['create', 'run1', '--kind', 'routine']],
      ['sw-recover', ['run1', '--dry-run']],
      ['sw-report', ['run1']],
    ] as Array<[string, string[]]>) {
      const r = await sw(cmd, args, t);
      assert.equal(r.exitCode, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
      const warnings = String(r.stderr).split('\n').filter((l) => l.includes(where));
      assert.equal(warnings.length, 1, `${cmd} ${args.join(' ')}: one warning line naming the mistake:\n${r.stderr}`);
      assert.match(warnings[0] as string, /going on with the defaults for what it sets wrong \(sw-agent run refuses to start until it is fixed\)$/);
    }
    // The address is still read: the report unit's condition and the alert find it.
    assert.equal(String((await sw('sw-agent', ['config', 'run1', 'report.mail'], t)).stdout).trim(), 'ops@example.com');

    const check = await sw('sw-report', ['run1', '--check'], t);
    assert.equal(check.exitCode, 2, String(check.stdout));
    assert.match(String(check.stdout), new RegExp(`^SELFWARE CRITICAL - config ${cfg.replace(/[.]/g, '\\.')}:${line}:3: llm\\.backnd: unknown key`));
    const report = JSON.parse(String((await sw('sw-report', ['run1', '--json'], t)).stdout));
    assert.equal(report.verdict, 'CRITICAL');
    const alert = (report.alerts as Array<{ name: string; status: string; message: string }>).find((a) => a.name === 'config');
    assert.equal(alert?.status, 'CRITICAL');
    assert.match(alert?.message ?? '', /llm\.backnd: unknown key.*the agent will not start/);
    const status = JSON.parse(String((await sw('sw-agent', ['status', 'run1', '--json'], t)).stdout));
    assert.deepEqual(status.config.problems, [where]);

    // A mistake in a key a command needs stops that command: a checkpoint cannot guess the workspace.
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8') + 'workspace: relative/dir\n');
    const ck = await sw('sw-checkpoint', ['create', 'run1'], t);
    assert.equal(ck.exitCode, 78, String(ck.stderr));
    assert.match(String(ck.stderr), /workspace: expected an absolute path, got "relative\/dir"/);
    // So does a YAML syntax error on its line; one elsewhere does not.
    fs.writeFileSync(cfg, 'workspace: [/srv/ws\nreport:\n  mail: ops@example.com\n');
    assert.equal((await sw('sw-checkpoint', ['create', 'run1'], t)).exitCode, 78);
    fs.writeFileSync(cfg, 'report:\n  mail: ops@example.com\nagent: [1, 2\n');
    const syn = await sw('sw-checkpoint', ['create', 'run1', '--kind', 'routine'], t);
    assert.equal(syn.exitCode, 0, String(syn.stderr));
    assert.match(String(syn.stderr), /invalid YAML/);
    assert.equal(String((await sw('sw-agent', ['config', 'run1', 'report.mail'], t)).stdout).trim(), 'ops@example.com');
  } finally {
    t.cleanup();
  }
});
