#!/usr/bin/env node
// sw-recover: make a run whole after a crash (systemd's ExecStartPre=), or
// roll it back to a checkpoint (a human).

import { Command } from 'commander';
import { action, createProgram, main, optsOf, outputFor, withCommonOptions } from '../lib/cli.js';
import { EXIT, usageError } from '../lib/exit.js';
import { extendTimeout, initNotify, status } from '../lib/notify.js';
import { EXIT_ESCALATED, recordServiceExit, recover, type RecoverResult } from '../lib/recover/index.js';
import { runDefined, runPaths, validateRunName } from '../lib/run.js';
import { actAsOwner } from '../lib/owner.js';
import { setupRun } from '../lib/setup.js';
import { formatDuration, plural } from '../lib/units.js';
import { sleep } from '../lib/sleep.js';
import { CHECKPOINT_REF_RE } from '../lib/state/checkpoint.js';

const cause = (r: RecoverResult): string => (r.reason === 'hang' ? 'a hang' : r.reason === 'crash' ? 'a crash' : 'an unexplained stop');

/** ", 2 problems found (said above)": damage the recovery met, for the one line a human reads. */
const found = (r: RecoverResult): string => (r.problems.length > 0 ? `, ${plural(r.problems.length, 'problem')} found (said above)` : '');

function summary(r: RecoverResult): string {
  const n = r.reconciled.length;
  const tasks = `${plural(n, 'task')} reconciled`;
  switch (r.action) {
    case 'none':
      return r.detail;
    case 'reconcile':
      return `recovered after ${cause(r)}: state/ was valid, ${tasks}${found(r)}, checkpoint ${r.recovery_checkpoint ?? '-'}`;
    case 'restore':
      return `recovered after ${cause(r)}: restored checkpoint ${r.checkpoint}${r.rejected.length ? ` (${r.rejected.length} newer rejected)` : ''}, ${tasks}${found(r)}`;
    case 'fresh':
      return `recovered after ${cause(r)}: NO USABLE CHECKPOINT, started afresh from the config, ${tasks}${found(r)}`;
    case 'rollback':
      return `rolled back to checkpoint ${r.checkpoint}, ${tasks}`;
  }
}

function buildProgram(): Command {
  const program = createProgram('sw-recover', 'Validate, restore and reconcile a selfware run after a crash; decide the restart backoff; escalate.');
  withCommonOptions(program)
    .argument('<run>', 'run name')
    .option('--checkpoint <id>', 'roll state/ and the workspace back to this checkpoint (the agent must be stopped)')
    .option('--dry-run', 'print what would be done, change nothing')
    .option('--record-exit', "record how the service ended ($SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS), for ExecStopPost=")
    .action(
      action(async (runArg: string, _o: unknown, cmd: Command) => {
        const o = optsOf<{ checkpoint?: string; dryRun?: boolean; recordExit?: boolean }>(cmd);
        const out = outputFor(cmd);
        if (o.recordExit && (o.checkpoint || o.dryRun)) throw usageError('--record-exit goes alone');
        if (o.checkpoint !== undefined && !CHECKPOINT_REF_RE.test(o.checkpoint)) throw usageError(`option '--checkpoint <id>': invalid checkpoint id '${o.checkpoint}'`);
        if (o.recordExit) {
          const paths = runPaths(validateRunName(runArg));
          actAsOwner(paths, { writes: true });
          const done = runDefined(paths) && recordServiceExit(paths, process.env);
          out.verbose(done ? `recorded the service's end: ${process.env.SERVICE_RESULT ?? 'unknown'}` : 'no task log yet: nothing recorded');
          return EXIT.OK;
        }
        const dry = !!o.dryRun;
        const { paths, config } = await setupRun(runArg, {
          writes: !dry,
          needs: ['workspace', 'recovery', 'agent.max_attempts', 'agent.task_timeout'],
          out,
          command: `sw-recover ${runArg}`,
        });
        const run = paths.run;
        await initNotify();
        status(o.checkpoint ? `rolling back to ${o.checkpoint}` : 'recovering');
        const said = new Set<string>();
        const res = await recover(paths, config, {
          checkpoint: o.checkpoint,
          dryRun: o.dryRun,
          say: (level, text) => {
            said.add(text);
            if (level === 'warn') out.warn(text);
            else if (level === 'notice') out.notice(text);
            else out.info(text);
          },
        });
        // Every damage found and every repair made reaches the journal, not only --json.
        for (const p of res.problems) if (!said.has(p)) out.warn(p);
        for (const r of res.repairs) if (!said.has(r)) out.notice(r);
        for (const n of res.notes) out.info(n);
        if (o.json) out.json(res);
        else out.print((o.dryRun && res.action !== 'none' ? 'dry run: ' : '') + summary(res));
        if (res.escalated) {
          out.error(`escalating: ${res.escalation}; run '${run}' will not be restarted until someone starts it again`);
          return EXIT_ESCALATED;
        }
        if (res.backoff_ms > 0 && !o.dryRun && process.env.SELFWARE_BACKOFF === 'systemd') {
          // systemd 254+ spaces the restarts itself (RestartSteps=, see restart-steps.conf).
          out.notice(`not waiting ${formatDuration(res.backoff_ms)} (${plural(res.crashes, 'crash', 'crashes')} in a row): systemd spaces the restarts (RestartSteps=)`);
        } else if (res.backoff_ms > 0 && !o.dryRun) {
          out.notice(`waiting ${formatDuration(res.backoff_ms)} before the agent starts (${plural(res.crashes, 'crash', 'crashes')} in a row)`);
          extendTimeout(res.backoff_ms + 30_000);
          status(`backing off ${formatDuration(res.backoff_ms)} after ${plural(res.crashes, 'crash', 'crashes')}`);
          await sleep(res.backoff_ms);
        }
        return EXIT.OK;
      }),
    );
  return program;
}

void main(buildProgram());
