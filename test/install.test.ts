// make install / make uninstall with PREFIX, DESTDIR and UNITDIR, and
// `npm i -g .`: each gives working commands (the installed agent runs a task
// on the tiny GGUF, node-llama-cpp loading from the installed tree); install
// leaves out what this machine never loads; uninstall removes exactly what
// install added.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ROOT, makeEnv, type TestEnv } from './helpers.js';
import { walk } from '../lib/fsutil.js';
import { transcript, waitFor } from './fixtures/agent.js';
import { tinyLlamaConfig, tinyModels } from './fixtures/gguf.js';

function files(dir: string): string[] {
  const out: string[] = [];
  walk(dir, (p, st) => {
    if (!st.isDirectory()) out.push(path.relative(dir, p));
  });
  return out;
}

const COMMANDS = ['sw-checkpoint'];

/** node-llama-cpp's name for this machine: its prebuilt binary packages are @node-llama-cpp/<name>[-gpu]. */
const LLAMA_PLATFORM = `${({ darwin: 'mac', win32: 'win' } as Record<string, string>)[process.platform] ?? process.platform}-${process.arch === 'arm' ? 'armv7l' : process.arch}`;

/**
 * The installed sw-agent (the copy in DESTDIR) runs a task on the tiny GGUF to
 * its end; returns the task's transcript. The install is outside the
 * repository, so node-llama-cpp can only come from the installed node_modules.
 */
async function installedAgentRunsATask(t: TestEnv, libdir: string): Promise<Array<Record<string, unknown>>> {
  const bin = (c: string): string => path.join(libdir, 'dist/bin', `${c}.cjs`);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...t.env };
  delete env.NODE_PATH;
  fs.writeFileSync(path.join(t.configDir, 'run1.yaml'), tinyLlamaConfig(tinyModels(path.join(t.dir, 'models')), { llm: ['max_tokens: 200', 'threads: 1'] }));
  // A random model may never say finish: the task's time limit ends it then.
  const add = await execa(process.execPath, [bin('sw-agent'), 'add', 'run1', '--verify', 'true', '--timeout', '10s', 'Write notes.md.'], { env, extendEnv: false, reject: false });
  assert.equal(add.exitCode, 0, add.stderr);
  const id = add.stdout.trim();
  let output = '';
  const agent = execa(process.execPath, [bin('sw-agent'), 'run', 'run1', '-v'], { env, extendEnv: false, reject: false, cwd: t.dir, buffer: false, all: true });
  agent.all?.on('data', (d: Buffer) => (output += d.toString()));
  try {
    await waitFor('the task ended', async () => {
      if (agent.exitCode !== null) assert.fail(`the installed sw-agent exited ${agent.exitCode}:\n${output}`);
      const l = await execa(process.execPath, [bin('sw-agent'), 'list', 'run1', '--json'], { env, extendEnv: false, reject: false });
      const status = l.exitCode === 0 ? (JSON.parse(l.stdout) as { tasks: Array<{ id: string; status: string }> }).tasks.find((x) => x.id === id)?.status : undefined;
      return status === 'completed' || status === 'failed';
    }, 60_000);
    agent.kill('SIGTERM');
    const r = await agent;
    assert.equal(r.exitCode, 0, output);
    assert.match(output, /agent ready: .*llama backend at Q4_K_M/, output);
  } finally {
    if (agent.pid !== undefined && agent.exitCode === null) process.kill(agent.pid, 'SIGKILL');
  }
  return transcript(t, id);
}

test('make install PREFIX= DESTDIR= UNITDIR=, then make uninstall', { timeout: 300_000 }, async () => {
  // Two installs (each copies node_modules, ~800 MB) and a model run: minutes on a loaded 2-core CI box.
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
    assert.match(inst.stdout, /^installed size: \d+(\.\d+)?[KMG]$/m, 'install says how much it installed');
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
    const nm = 'opt/selfware/lib/selfware/node_modules/';
    for (const dev of ['eslint/', 'esbuild/', '@esbuild/', 'typescript/']) {
      assert.ok(!installed.some((f) => f.startsWith(nm + dev)), `no ${dev}: a dev dependency (typescript: node-llama-cpp's optional peer, for its CLI)`);
    }
    // node-llama-cpp's binaries for this machine only; on linux-x64 the CPU, CUDA, CUDA-ext and Vulkan ones.
    const llamaBins = fs.readdirSync(path.join(dest, nm, '@node-llama-cpp')).sort();
    assert.ok(llamaBins.includes(LLAMA_PLATFORM), `${LLAMA_PLATFORM} in ${llamaBins.join(' ')}`);
    assert.deepEqual(llamaBins.filter((b) => b !== LLAMA_PLATFORM && !b.startsWith(`${LLAMA_PLATFORM}-`)), [], 'no other system\'s binaries');
    if (LLAMA_PLATFORM === 'linux-x64') assert.deepEqual(llamaBins, ['linux-x64', 'linux-x64-cuda', 'linux-x64-cuda-ext', 'linux-x64-vulkan']);
    assert.ok(!installed.includes(nm + 'node-llama-cpp/llama/gitRelease.bundle'), 'no llama.cpp sources to build from');
    assert.deepEqual(installed.filter((f) => f.startsWith(nm + 'sql.js/dist/')).sort(), [nm + 'sql.js/dist/sql-wasm.js', nm + 'sql.js/dist/sql-wasm.wasm']);
    assert.deepEqual(installed.filter((f) => f.startsWith(nm) && /\.(js\.map|d\.ts)$/.test(f)), [], 'no source maps or type declarations');
    // The installed agent runs a task on the tiny GGUF: the model loads and answers.
    assert.ok(path.relative(ROOT, dest).startsWith('..'), 'the install is outside the repository and its node_modules');
    const steps = (await installedAgentRunsATask(t, path.join(dest, 'opt/selfware/lib/selfware'))).filter((l) => l.type === 'step');
    assert.ok(steps.some((s) => ((s.llm as { tokens_out?: number } | undefined)?.tokens_out ?? 0) > 0), JSON.stringify(steps));
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

test('npm i -g . gives working commands', { timeout: 60_000 }, async () => {
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
    const init = await execa(path.join(prefix, 'bin', 'sw-agent'), ['init', 'run1'], { env: { ...process.env, ...t.env }, reject: false });
    assert.equal(init.exitCode, 0, init.stderr);
    const c = await execa(path.join(prefix, 'bin', 'sw-checkpoint'), ['create', 'run1'], { env: { ...process.env, ...t.env }, reject: false });
    assert.equal(c.exitCode, 0, c.stderr);
  } finally {
    t.cleanup();
  }
});
