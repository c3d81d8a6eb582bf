// The README's first command, `make demo` (test/fixtures/demo.sh), as a user
// sees it in a log or a pipe: it ends well, writes no colour codes when its
// output is not a terminal, keeps the agent's own lines out of its output
// (they go to the logs, shown once the agent has stopped), and shows the kill
// mid-task, the recovery and the resumed task in that order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ROOT, makeEnv } from './helpers.js';

test('make demo: no colour codes into a pipe, the agent never interleaves, the kill, recovery and resume in order', { timeout: 240_000 }, async () => {
  const t = makeEnv('demo');
  const dir = path.join(t.dir, 'demo');
  const child = execa('bash', [path.join(ROOT, 'test/fixtures/demo.sh')], { reject: false, all: true, env: { ...process.env, DEMO_DIR: dir }, timeout: 230_000 });
  t.track(child.pid);
  try {
    const r = await child;
    // What a user sees: both streams, as the terminal (or the log) gets them.
    const out = String(r.all);
    assert.equal(r.exitCode, 0, out);
    assert.doesNotMatch(out, /\x1b/, 'no escape sequence');
    // The headings, in order.
    const order = ['Queue three tasks', 'Start the agent', 'Kill it mid-task with SIGKILL', 'What systemd runs before every start: sw-recover', 'Start again: it resumes where it stood', 'The morning report'];
    let at = -1;
    for (const h of order) {
      const i = out.indexOf(h, at + 1);
      assert.ok(i > at, `'${h}' after the one before it`);
      at = i;
    }
    // The kill landed mid-task: recovery put that task back, and the next agent resumed it.
    // (Which attempt it was on depends on the random model: the first task may finish, or fail, fast.)
    assert.match(out, /task \S+: in_progress \(attempt (\d)\) -> pending \(attempt \1\)/);
    assert.match(out, /resuming (at step \d+|after step \d+)/);
    // The agent's lines are in its logs; in the demo's own output only under "what the agent logged", indented.
    const logs = fs.readdirSync(dir).filter((n) => /^agent-\d+\.log$/.test(n));
    assert.deepEqual(logs.sort(), ['agent-1.log', 'agent-2.log']);
    for (const line of out.split('\n')) assert.doesNotMatch(line, /^sw-agent: (agent ready|task .* completed in|SIGTERM)/, `an agent line outside its log: ${line}`);
    assert.match(fs.readFileSync(path.join(dir, 'agent-2.log'), 'utf8'), /agent ready/);
  } finally {
    t.cleanup();
  }
});
