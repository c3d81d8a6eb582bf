#!/usr/bin/env node
// sw-checkpoint: create, list, show, diff, verify and prune a run's checkpoints.

import { Command, Option } from 'commander';
import { action, choiceArg, createProgram, intArg, main, optsOf, outputFor, withCommonOptions } from '../lib/cli.js';
import { workspaceDir } from '../lib/config/index.js';
import { setupRun } from '../lib/setup.js';
import { EXIT, usageError } from '../lib/exit.js';
import { table, type Output } from '../lib/output.js';
import {
  CHECKPOINT_REF_RE,
  KINDS,
  createCheckpoint,
  diffState,
  listCheckpoints,
  pruneRun,
  requireRun,
  resolveId,
  verifyCheckpoints,
  checkpointJson,
  type Kind,
  type PrunePlan,
  type PruneResult,
} from '../lib/state/index.js';
import { TaskLog } from '../lib/tasklog/index.js';
import { checkWritable, writableProblem } from '../lib/state/writable.js';
import { formatBytes, isoUtc, parseTime, plural } from '../lib/units.js';

/** Checkpoint ids are checked before anything is read: a usage error, not a missing run. */
function checkIds(ids: Array<string | undefined>): void {
  for (const id of ids) if (id !== undefined && !CHECKPOINT_REF_RE.test(id)) throw usageError(`invalid checkpoint id '${id}'`);
}

async function setup(runArg: string, out: Output, sub: string, opts: { writes: boolean; needs?: string[] }) {
  const { paths, config } = await setupRun(runArg, { ...opts, out, command: `sw-checkpoint ${sub} ${runArg} ...` });
  return { paths, config, ws: workspaceDir(config, paths) };
}

/** Times in tables: ISO 8601 UTC to the second. */
function shortTime(iso: string): string {
  return isoUtc(Math.floor(Date.parse(iso) / 1000) * 1000);
}

function cmdCreate(program: Command): void {
  withCommonOptions(
    program
      .command('create')
      .description('checkpoint state/ and the workspace; print the new id')
      .argument('<run>', 'run name')
      .addOption(new Option('--kind <kind>', `why: ${KINDS.join(', ')}`).default('manual').argParser(choiceArg(KINDS)))
      .option('-m, --message <text>', 'a note stored with the checkpoint')
      .option('--time <iso8601>', "the checkpoint's time instead of now (imports, tests)")
      .option('--force', 'create a routine checkpoint even when nothing changed'),
  ).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ kind: Kind; message?: string; time?: string; force?: boolean }>(cmd);
      const out = outputFor(cmd);
      let time: Date | undefined;
      if (o.time !== undefined) {
        time = parseTime(o.time);
        if (!time) throw usageError(`option '--time <iso8601>': expected a date and time such as 2026-11-21T09:30:00Z, got '${o.time}'`);
      }
      const { paths, config } = await setup(runArg, out, 'create', { writes: true, needs: ['workspace', 'tasklog.compact_bytes'] });
      const { result, initialised, compacted } = await createCheckpoint(paths, config, { kind: o.kind, message: o.message, time, force: o.force });
      if (initialised) out.info(`initialised run '${paths.run}' in ${paths.runDir}`);
      if (compacted !== null) out.verbose(`task log: folded ${compacted} events into ${paths.tasklogDb}`);
      if (result.skipped) {
        out.notice(`nothing changed since checkpoint ${result.latest.id}; routine checkpoint skipped`);
        if (o.json) out.json({ skipped: true, latest: result.latest.id });
        return EXIT.OK;
      }
      const c = result.checkpoint;
      if (o.json) out.json({ skipped: false, ...checkpointJson(c) });
      else out.print(c.id);
      out.info(`checkpoint ${c.id} (${c.kind}) created: state ${formatBytes(c.size.state)}, workspace ${formatBytes(c.size.workspace)}, task log at ${c.tasklog.position}`);
    }),
  );
}

function cmdList(program: Command): void {
  withCommonOptions(
    program
      .command('list')
      .description('list checkpoints, newest first')
      .argument('<run>', 'run name')
      .addOption(new Option('--kind <kind>', 'only checkpoints of this kind').argParser(choiceArg(KINDS))),
  ).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ kind?: Kind }>(cmd);
      const out = outputFor(cmd);
      const { paths } = await setup(runArg, out, 'list', { writes: false });
      const { checkpoints, broken } = await listCheckpoints(paths);
      const shown = checkpoints.filter((c) => !o.kind || c.kind === o.kind);
      for (const b of broken) out.warn(`checkpoint ${b.id} is unreadable: ${b.reason}`);
      if (o.json) {
        out.json({ checkpoints: shown.map(checkpointJson), broken });
        return;
      }
      const rows = [['ID', 'TIME', 'KIND', 'SIZE', 'MESSAGE']];
      for (const c of shown) rows.push([c.id, shortTime(c.time), c.kind, formatBytes(c.size.state + c.size.workspace), c.message.split('\n')[0] ?? '']);
      out.print(table(rows));
      out.info(plural(shown.length, 'checkpoint'));
    }),
  );
}

function cmdShow(program: Command): void {
  withCommonOptions(
    program.command('show').description('show one checkpoint').argument('<run>', 'run name').argument('<id>', 'checkpoint id, unique prefix, or latest'),
  ).action(
    action(async (runArg: string, id: string, _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      checkIds([id]);
      const { paths } = await setup(runArg, out, 'show', { writes: false });
      const { checkpoints } = await listCheckpoints(paths);
      const c = resolveId(checkpoints, id);
      if (o.json) {
        out.json(checkpointJson(c));
        return;
      }
      const rows = [
        ['id:', c.id],
        ['kind:', c.kind],
        ['time:', c.time],
        ['sequence:', String(c.seq)],
        ['message:', c.message || '-'],
        ['state:', `commit ${c.commit} (tree ${c.tree.slice(0, 12)}), ${formatBytes(c.size.state)}`],
        [
          'workspace:',
          c.workspace.commit
            ? `snapshot ${c.workspace.commit} of HEAD ${c.workspace.head ? c.workspace.head.slice(0, 12) : '(none)'} on ${c.workspace.branch ?? '(detached)'}, ${formatBytes(c.size.workspace)}`
            : '(none)',
        ],
        ['task log:', `position ${c.tasklog.position} of log ${c.tasklog.log}`],
        ['checksum:', c.checksum],
      ];
      out.print(table(rows, 1));
    }),
  );
}

function cmdDiff(program: Command): void {
  withCommonOptions(
    program
      .command('diff')
      .description('what changed in state/ between two checkpoints, or since one')
      .argument('<run>', 'run name')
      .argument('<id>', 'checkpoint id')
      .argument('[id2]', 'second checkpoint id (default: the files in state/ now)'),
  ).action(
    action(async (runArg: string, id: string, id2: string | undefined, _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      checkIds([id, id2]);
      const { paths } = await setup(runArg, out, 'diff', { writes: false });
      const { checkpoints } = await listCheckpoints(paths);
      const a = resolveId(checkpoints, id);
      const b = id2 === undefined ? null : resolveId(checkpoints, id2);
      const entries = await diffState(paths, a, b);
      if (o.json) {
        out.json({ from: a.id, to: b ? b.id : null, files: entries });
        return;
      }
      const sign = { added: '+', removed: '-', modified: 'M', 'type-changed': 'T' } as const;
      for (const e of entries) {
        const lines = e.added === null ? ' (binary)' : ` (+${e.added} -${e.removed})`;
        out.print(`${sign[e.status]}    ${e.path}${e.status === 'modified' ? lines : ''}`);
      }
      const n = (s: string): number => entries.filter((e) => e.status === s).length;
      out.info(`${a.id} -> ${b ? b.id : 'state/ now'}: ${n('added')} added, ${n('removed')} removed, ${n('modified') + n('type-changed')} modified`);
    }),
  );
}

function cmdVerify(program: Command): void {
  withCommonOptions(
    program
      .command('verify')
      .description('check checkpoints: git objects, checksum, task-log position (exit 1 if any is invalid)')
      .argument('<run>', 'run name')
      .argument('[id...]', 'checkpoints to check (default: all)'),
  ).action(
    action(async (runArg: string, ids: string[], _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      checkIds(ids);
      const { paths, ws } = await setup(runArg, out, 'verify', { writes: false, needs: ['workspace'] });
      const { checkpoints, broken } = await listCheckpoints(paths);
      const chosen = ids.length > 0 ? [...new Map(ids.map((i) => resolveId(checkpoints, i)).map((c) => [c.id, c])).values()] : checkpoints;
      const reports = await verifyCheckpoints(paths, ws, chosen, ids.length > 0 ? [] : broken);
      const log = await TaskLog.forRun(paths).verify();
      // Valid checkpoints are worth little if the next one cannot be made.
      const w = checkWritable(paths, ws);
      const unwritable = writableProblem(w, paths.runDir);
      const invalid = reports.filter((r) => !r.valid);
      if (o.json) {
        out.json({
          valid: invalid.length === 0 && log.ok && !unwritable,
          checkpoints: reports,
          tasklog: log,
          writable: { ok: !unwritable, owner: w?.owner.name ?? null, count: w?.count ?? 0, problems: w?.problems ?? [] },
        });
      } else {
        for (const r of reports) {
          if (r.valid) out.print(`${r.id}  valid`);
          else for (const e of r.errors) out.print(`${r.id}  invalid: ${e}`);
        }
        out.print(`tasklog   ${log.ok ? 'valid' : 'invalid'}: ${log.events} events in the journal, position ${log.position}`);
        for (const p of log.problems) out.print(`tasklog   invalid: ${p}`);
        for (const n of log.notes) out.info(n);
        out.print(`run       ${unwritable ? 'unwritable' : 'writable'} by its owner${w ? ` (${w.owner.name})` : ''}`);
        for (const p of w?.problems ?? []) out.print(`run       unwritable: '${p.path}' is ${p.why}`);
        if (w && w.count > w.problems.length) out.print(`run       unwritable: ${w.count - w.problems.length} more`);
      }
      if (invalid.length > 0 || !log.ok || unwritable) {
        const names = invalid.map((r) => r.id);
        if (!log.ok) names.push('the task log');
        if (unwritable) names.push(`the run (${plural(w?.count ?? 0, 'path')} its owner cannot write)`);
        out.error(`${names.length} invalid: ${names.join(', ')}`);
        if (unwritable) out.error(unwritable);
        return EXIT.FAIL;
      }
      out.info(`${plural(reports.length, 'checkpoint')} and the task log are valid`);
    }),
  );
}

function cmdPrune(program: Command): void {
  withCommonOptions(
    program
      .command('prune')
      .description("remove checkpoints by the retention policy (restic's forget semantics) and free their space")
      .argument('<run>', 'run name')
      .option('--keep-last <n>', 'keep the newest n checkpoints', intArg())
      .option('--keep-hourly <n>', 'keep the newest checkpoint of each of the last n hours', intArg())
      .option('--keep-daily <n>', 'keep the newest checkpoint of each of the last n days', intArg())
      .option('--keep-weekly <n>', 'keep the newest checkpoint of each of the last n weeks', intArg())
      .option('--dry-run', 'print what would be removed, change nothing'),
  ).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ keepLast?: number; keepHourly?: number; keepDaily?: number; keepWeekly?: number; dryRun?: boolean }>(cmd);
      const out = outputFor(cmd);
      const { paths, config } = await setup(runArg, out, 'prune', { writes: true, needs: ['workspace', 'checkpoint.retention'] });
      requireRun(paths);
      const fromFlags = [o.keepLast, o.keepHourly, o.keepDaily, o.keepWeekly].some((v) => v !== undefined);
      const dflt = config.checkpoint.retention;
      // Flags replace the whole configured policy, as restic's flags do.
      const policy = fromFlags
        ? { keep_last: o.keepLast ?? 0, keep_hourly: o.keepHourly ?? 0, keep_daily: o.keepDaily ?? 0, keep_weekly: o.keepWeekly ?? 0 }
        : dflt;
      const res = await pruneRun(paths, config, policy, !!o.dryRun);
      printPrune(out, res, !!o.dryRun, !!o.json);
    }),
  );
}

function printPrune(out: Output, res: PrunePlan | PruneResult, dryRun: boolean, json: boolean): void {
  const freed = 'bytesFreed' in res ? res : null;
  if (json) {
    out.json({
      dry_run: dryRun,
      keep: res.keep.map((k) => ({ ...checkpointJson(k.checkpoint), reasons: k.reasons })),
      remove: res.remove.map(checkpointJson),
      bytes_before: freed?.bytesBefore ?? null,
      bytes_after: freed?.bytesAfter ?? null,
      bytes_freed: freed?.bytesFreed ?? null,
      forensics_removed: res.forensics,
    });
    return;
  }
  const rows = [['ID', 'TIME', 'KIND', 'ACTION', 'REASONS']];
  const all = [
    ...res.keep.map((k) => ({ c: k.checkpoint, act: 'keep', why: k.reasons.join(', ') })),
    ...res.remove.map((c) => ({ c, act: dryRun ? 'would remove' : 'removed', why: '' })),
  ].sort((a, b) => Date.parse(b.c.time) - Date.parse(a.c.time) || b.c.seq - a.c.seq);
  for (const r of all) rows.push([r.c.id, shortTime(r.c.time), r.c.kind, r.act, r.why]);
  out.print(table(rows));
  for (const f of res.forensics) out.info(`${dryRun ? 'would remove' : 'removed'} the week-old forensics copy ${f}`);
  if (freed) out.info(`kept ${res.keep.length}, removed ${res.remove.length}; freed ${formatBytes(Math.max(0, freed.bytesFreed))} (${formatBytes(freed.bytesBefore)} -> ${formatBytes(freed.bytesAfter)})`);
  else out.info(`would keep ${res.keep.length}, remove ${res.remove.length}`);
}

function buildProgram(): Command {
  const program = createProgram('sw-checkpoint', 'Create, list, show, diff, verify and prune the checkpoints of a selfware run.');
  cmdCreate(program);
  cmdList(program);
  cmdShow(program);
  cmdDiff(program);
  cmdVerify(program);
  cmdPrune(program);
  return program;
}

void main(buildProgram());
