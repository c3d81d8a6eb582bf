#!/usr/bin/env node
// sw-agent: the agent (run), and the queue and approval commands for humans
// and scripts (ids on stdout, --json for data).

import { Command, Option } from 'commander';
import { action, choiceArg, createProgram, intArg, main, optsOf, outputFor, withCommonOptions } from '../lib/cli.js';
import { usageError } from '../lib/exit.js';
import { readDecision } from '../lib/governor/decision.js';
import { initNotify } from '../lib/notify.js';
import { table, type Output } from '../lib/output.js';
import { listRejected, rejectedDir } from '../lib/queue/reject.js';
import { memoryStatus } from '../lib/agent/memory.js';
import { TASK_STATUSES, TASK_ID_RE, byRunOrder, type Task } from '../lib/queue/task.js';
import { validateRunName, type RunPaths } from '../lib/run.js';
import { workspaceDir } from '../lib/config/index.js';
import { setupRun, type SetupOptions } from '../lib/setup.js';
import { requireRun, runExists } from '../lib/state/index.js';
import { TaskLog, describeCorrupt } from '../lib/tasklog/index.js';
import { formatDuration, plural } from '../lib/units.js';
import { escalatedAt, protection, writability, type Escalated } from '../lib/health.js';
import { Agent } from '../lib/agent/loop.js';
import { createBackend } from '../lib/agent/llm/index.js';
import { describeAction } from '../lib/agent/schema.js';
import { addTask, agentProcess, cancelTask, ensureRun, parseTaskTimeout, decideApproval, findTask, listApprovals, listTasks, readAgentState, setPaused, taskCounts, type Approval } from '../lib/agent/state.js';
import { parseTranscript, readTranscript, transcriptFile } from '../lib/agent/transcript.js';

/** The keys a task's defaults come from. */
const TASK_KEYS = ['agent.max_attempts', 'agent.task_timeout'];

function setup(runArg: string, out: Output, sub: string, opts: Omit<SetupOptions, 'out' | 'command'>) {
  return setupRun(runArg, { ...opts, out, command: `sw-agent ${sub} ${runArg} ...` });
}

/** Text with its control characters (ESC, BEL, backspace...) written as \xNN, and newlines too unless kept. */
function visible(text: string, keepLines: boolean): string {
  const re = keepLines ? /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g : /[\x00-\x1f\x7f-\x9f]/g;
  return text.replace(re, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function checkTaskId(id: string): void {
  if (!TASK_ID_RE.test(id)) throw usageError(`invalid task id '${id}'`);
}

/** Attempts started per task, from the task log. */
async function attemptsStarted(paths: RunPaths): Promise<Map<string, number>> {
  const log = TaskLog.forRun(paths);
  if (!log.exists()) return new Map();
  const snap = await log.snapshot();
  try {
    const rows = snap.db.exec('SELECT task_id, count(*) FROM task_attempts GROUP BY task_id')[0]?.values ?? [];
    return new Map(rows.map((r) => [String(r[0]), Number(r[1])]));
  } finally {
    snap.db.close();
  }
}

function taskJson(t: Task, attempts: number): Record<string, unknown> {
  return {
    id: t.id,
    title: t.title,
    status: t.status,
    attempts,
    attempt: t.attempt,
    max_attempts: t.max_attempts,
    priority: t.priority,
    verify: t.verify,
    timeout_ms: t.timeout,
    created: t.created,
    updated: t.updated,
    source: t.source,
    reason: t.reason,
  };
}

function cmdRun(program: Command): void {
  withCommonOptions(program.command('run').description('the agent: work through the queue until stopped (the main process of selfware@RUN)').argument('<run>', 'run name'), { json: false }).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const out = outputFor(cmd);
      const { paths, config, file } = await setup(runArg, out, 'run', { writes: true, creates: true, strict: true });
      await initNotify();
      const backend = await createBackend(config, file);
      return new Agent(paths, config, { out, backend }).run();
    }),
  );
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function cmdInit(program: Command): void {
  withCommonOptions(program.command('init').description('create a run (its state directory, checkpoint repository, task log and workspace); nothing else creates one but its first start').argument('<run>', 'run name')).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      const { paths, config, file } = await setup(runArg, out, 'init', { writes: true, creates: true, needs: ['workspace'] });
      const existed = runExists(paths);
      await ensureRun(paths, config);
      if (o.json) out.json({ run: paths.run, created: !existed, state_dir: paths.runDir, config_file: file, workspace: workspaceDir(config, paths) });
      else out.print(paths.runDir);
      out.info(existed ? `run '${paths.run}' exists already in ${paths.runDir}` : `created run '${paths.run}' in ${paths.runDir}${file ? '' : ` (no ${paths.configFile}: every default applies)`}`);
    }),
  );
}

function cmdAdd(program: Command): void {
  withCommonOptions(
    program
      .command('add')
      .description('queue a task and print its id')
      .argument('<run>', 'run name')
      .argument('[prompt]', "what to do; '-' reads it from standard input")
      .option('--title <text>', 'a short title (default: the first line of the prompt)')
      .option('--verify <command>', 'a shell command that exits 0 when the task is done')
      .option('--priority <n>', 'higher runs first (default 0)', intArg(-1_000_000, 1_000_000))
      .option('--max-attempts <n>', 'attempts before the task fails (default from the config)', intArg(1, 100))
      .option('--timeout <duration>', 'time an attempt may take, such as 30m (at most 4h)'),
  ).action(
    action(async (runArg: string, promptArg: string | undefined, _o: unknown, cmd: Command) => {
      const o = optsOf<{ title?: string; verify?: string; priority?: number; maxAttempts?: number; timeout?: string }>(cmd);
      const out = outputFor(cmd);
      if (o.timeout !== undefined) parseTaskTimeout(o.timeout);
      // Usage mistakes first: they are 64 whether or not the run exists.
      const noPrompt = 'give a prompt (or - to read it from standard input)';
      if ((promptArg === undefined || promptArg.trim() === '') && !o.title) throw usageError(noPrompt);
      validateRunName(runArg);
      let prompt = promptArg;
      if (prompt === '-') prompt = await readStdin();
      if (prompt === undefined || prompt.trim() === '') {
        if (!o.title) throw usageError(noPrompt);
        prompt = o.title;
      }
      const { paths, config } = await setup(runArg, out, 'add', { writes: true, needs: [...TASK_KEYS, 'workspace'] });
      await ensureRun(paths, config);
      const t = await addTask(paths, config, { prompt, title: o.title, verify: o.verify ?? null, priority: o.priority, maxAttempts: o.maxAttempts, timeout: o.timeout });
      if (o.json) out.json(taskJson(t, 0));
      else out.print(t.id);
      out.info(`queued task ${t.id}: ${t.title}`);
    }),
  );
}

function cmdList(program: Command): void {
  withCommonOptions(
    program
      .command('list')
      .description('list the tasks')
      .argument('<run>', 'run name')
      .addOption(new Option('--status <status>', `only tasks in this state: ${TASK_STATUSES.join(', ')}`).argParser(choiceArg(TASK_STATUSES))),
  ).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ status?: string }>(cmd);
      const out = outputFor(cmd);
      const { paths, config } = await setup(runArg, out, 'list', { writes: false });
      requireRun(paths);
      const { tasks, invalid, archived, archiveProblems } = await listTasks(paths, config);
      // Only reported here: the agent (or sw-recover) sets them aside in queue/rejected/.
      for (const bad of invalid) out.warn(`not a task: ${bad.error}`);
      for (const p of archiveProblems) out.warn(`archive: ${p}`);
      const rejected = listRejected(paths.stateDir);
      if (rejected.length > 0) out.warn(`${plural(rejected.length, 'file')} set aside in ${rejectedDir(paths.stateDir)} (each with its .reason)`);
      const attempts = await attemptsStarted(paths);
      const shown = tasks
        .filter((t) => !o.status || t.status === o.status)
        .sort(byRunOrder);
      if (o.json) {
        out.json({
          tasks: shown.map((t) => ({ ...taskJson(t, attempts.get(t.id) ?? 0), archived: archived.has(t.id) })),
          invalid: invalid.map((b) => ({ file: b.file, error: b.error })),
          rejected: rejected.map((r) => ({ file: r.file, time: r.time, reason: r.reason })),
        });
        return;
      }
      const rows = [['ID', 'STATUS', 'ATTEMPTS', 'PRIORITY', 'TITLE']];
      for (const t of shown) rows.push([t.id, t.status, `${attempts.get(t.id) ?? 0}/${t.max_attempts}`, String(t.priority), t.title]);
      out.print(table(rows));
    }),
  );
}

function cmdShow(program: Command): void {
  withCommonOptions(program.command('show').description('show a task and its transcript').argument('<run>', 'run name').argument('<task>', 'task id')).action(
    action(async (runArg: string, id: string, _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      checkTaskId(id);
      const { paths, config } = await setup(runArg, out, 'show', { writes: false });
      requireRun(paths);
      const found = await findTask(paths, config, id);
      const t = found.task;
      const lines = found.archive ? parseTranscript(found.transcript ?? '') : readTranscript(transcriptFile(paths.stateDir, id));
      const attempts = (await attemptsStarted(paths)).get(id) ?? 0;
      if (o.json) {
        out.json({ ...taskJson(t, attempts), prompt: t.prompt, transcript: lines, archived: found.archive });
        return;
      }
      out.print(
        table(
          [
            ['id:', t.id],
            ['title:', t.title],
            ['status:', `${t.status}${t.reason ? ` (${t.reason})` : ''}`],
            ['attempt:', `${t.attempt} of ${t.max_attempts} (${attempts} started)`],
            ['priority:', String(t.priority)],
            ['verify:', t.verify ?? '-'],
            ['timeout:', formatDuration(t.timeout)],
            ['created:', t.created],
            ...(found.archive ? [['archived:', found.archive]] : []),
          ],
          1,
        ),
      );
      // What a model wrote (and a task file holds) may carry terminal control sequences: shown escaped, never sent to the terminal.
      const shown = (x: string, keepLines = false): string => visible(x, keepLines);
      out.print(`\n${shown(t.prompt, true)}\n`);
      for (const l of lines) {
        if (l.type === 'attempt') out.print(`--- attempt ${l.attempt} (${l.ts})${l.reset ? `: ${l.reset}` : ''}`);
        else if (l.type === 'step') {
          const what = l.action ? describeAction(l.action) : 'no valid action';
          const res = l.observation.error ? `error: ${l.observation.error}` : l.observation.exit_code !== null ? `exit ${l.observation.exit_code}` : 'ok';
          out.print(shown(`step ${l.step}: ${what} -> ${res}`));
        } else if (l.type === 'verify') out.print(shown(`verify: ${l.command} -> ${l.observation.ok ? 'passed' : `failed (${l.observation.error ?? `exit ${l.observation.exit_code}`})`}`));
        else if (l.type === 'end') out.print(shown(`end of attempt ${l.attempt}: ${l.outcome}${l.reason ? ` (${l.reason})` : ''}`));
      }
    }),
  );
}

function cmdCancel(program: Command): void {
  withCommonOptions(program.command('cancel').description('cancel a task (a running one stops at its next step)').argument('<run>', 'run name').argument('<task>', 'task id'), { json: false }).action(
    action(async (runArg: string, id: string, _o: unknown, cmd: Command) => {
      const out = outputFor(cmd);
      checkTaskId(id);
      const { paths, config } = await setup(runArg, out, 'cancel', { writes: true, needs: TASK_KEYS });
      requireRun(paths);
      await cancelTask(paths, config, id);
      out.info(`task ${id} cancelled`);
    }),
  );
}

function cmdPause(program: Command): void {
  withCommonOptions(program.command('pause').description('pause the run: the agent starts no new step').argument('<run>', 'run name').option('--reason <text>', 'why, for status and the report'), { json: false }).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ reason?: string }>(cmd);
      const out = outputFor(cmd);
      const { paths } = await setup(runArg, out, 'pause', { writes: true });
      requireRun(paths);
      await setPaused(paths, true, o.reason ?? 'paused by a human');
      out.info(`run '${paths.run}' paused`);
    }),
  );
}

function cmdResume(program: Command): void {
  withCommonOptions(program.command('resume').description('resume a paused run').argument('<run>', 'run name'), { json: false }).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const out = outputFor(cmd);
      const { paths } = await setup(runArg, out, 'resume', { writes: true });
      requireRun(paths);
      await setPaused(paths, false, null);
      out.info(`run '${paths.run}' resumed`);
    }),
  );
}

interface Problem {
  severity: 'CRITICAL' | 'WARNING';
  what: string;
  message: string;
}

function cmdStatus(program: Command): void {
  withCommonOptions(
    program.command('status').description("the agent's state, the queue, approvals, the governor's decision, checkpoints, and every problem that needs a human").argument('<run>', 'run name'),
  ).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      const { paths, config, file, problems: configProblems } = await setup(runArg, out, 'status', { writes: false });
      requireRun(paths);
      const ws = workspaceDir(config, paths);
      const holder = agentProcess(paths);
      const running = holder !== null;
      const st = readAgentState(paths);
      const { counts, invalid } = await taskCounts(paths, config);
      const pending = listApprovals(paths).filter((a) => a.status === 'pending');
      const gov = readDecision(paths.roots.runtimeDir);
      const [prot, { escalated, damage }] = await Promise.all([protection(paths, ws), escalation(paths)]);
      const { w, problem: unwritable } = writability(paths, ws);
      const govPause = gov.decision && (gov.decision.actions.includes('pause') || gov.decision.actions.includes('unload')) ? gov.decision : null;
      const now = Date.now();
      const ago = (t: number | string): string => `${formatDuration(Math.max(0, now - (typeof t === 'string' ? Date.parse(t) : t)))} ago`;

      const problems: Problem[] = [];
      if (configProblems.length) problems.push({ severity: 'CRITICAL', what: 'config', message: `${configProblems[0]}${configProblems.length > 1 ? ` (and ${configProblems.length - 1} more)` : ''}: the agent will not start until it is fixed` });
      if (unwritable) problems.push({ severity: 'CRITICAL', what: 'writable', message: unwritable });
      if (prot.failing) {
        const f = prot.failing;
        problems.push({ severity: 'CRITICAL', what: 'checkpoints', message: `checkpoints failing since ${ago(f.since)} (${plural(f.count, 'attempt')}, the last ${f.last.kind}): ${f.last.reason}` });
      }
      if (prot.error) problems.push({ severity: 'WARNING', what: 'checkpoints', message: `cannot tell what the newest checkpoint protects: ${prot.error}` });
      // Changes left unprotected too long while the agent works, by the report's thresholds.
      const unprotectedMs = running && !prot.failing && prot.pending?.paths.length && prot.pending.since !== null ? now - prot.pending.since : 0;
      const th = config.report.check.checkpoint_age;
      if (unprotectedMs > th.warning) {
        const pp = prot.pending as NonNullable<typeof prot.pending>;
        problems.push({ severity: unprotectedMs > th.critical ? 'CRITICAL' : 'WARNING', what: 'checkpoints', message: `${plural(pp.paths.length, 'change')} left unprotected for ${formatDuration(unprotectedMs)} (${pp.paths[0] ?? ''}${pp.paths.length > 1 ? ` and ${pp.paths.length - 1} more` : ''})` });
      }
      if (escalated) problems.push({ severity: 'CRITICAL', what: 'escalation', message: `escalated ${ago(escalated.time)}: ${escalated.reason ?? 'too many failures'}; systemd does not restart it until a human starts it again` });
      for (const bad of invalid) problems.push({ severity: 'WARNING', what: 'queue', message: `ignored: ${bad.error.startsWith(bad.file) ? bad.error : `${bad.file}: ${bad.error}`}` });
      // Set aside until a human fixes or removes them: someone's task is not being done.
      const rejected = listRejected(paths.stateDir);
      for (const r of rejected) problems.push({ severity: 'WARNING', what: 'queue', message: `set aside${r.time ? ` ${ago(r.time)}` : ''}: ${r.file}${r.reason ? `: ${r.reason}` : ''}` });
      for (const d of damage) problems.push({ severity: 'WARNING', what: 'tasklog', message: `task log damaged: ${d}; sw-recover repairs what can be` });
      // The run's memory: a file set aside is not given to the tasks until a human deals with it.
      const memory = memoryStatus(paths.stateDir);
      for (const f of memory.set_aside) problems.push({ severity: 'WARNING', what: 'memory', message: `set aside: state/memory/${f}; read it, fix and move it back, or delete it` });
      for (const [k, v] of [['notes.md', memory.notes], ['outcomes.md', memory.outcomes]] as const) if (v === null) problems.push({ severity: 'WARNING', what: 'memory', message: `state/memory/${k} cannot be read as text; the agent sets it aside at its next task` });

      const pend = prot.pending;
      const checkpoints = {
        last: pend?.checkpoint ?? null,
        failing: prot.failing,
        unprotected: pend ? { paths: pend.paths.length, since: pend.since === null ? null : new Date(pend.since).toISOString(), sample: pend.paths.slice(0, 5) } : null,
      };
      const doc = {
        run: paths.run,
        agent: { ...st, running, pid: holder?.pid ?? null },
        paused: st.paused ? { by: 'human', reason: st.pause_reason } : govPause ? { by: 'governor', reason: govPause.reasons.join('; ') } : null,
        escalated: escalated ? { time: new Date(escalated.time).toISOString(), reason: escalated.reason } : null,
        queue: counts,
        queue_invalid: invalid.map((b) => ({ file: b.file, error: b.error })),
        queue_rejected: rejected,
        approvals_pending: pending.map((a) => a.id),
        memory,
        governor: gov.decision ? { tier: gov.decision.tier, quantization: gov.decision.quantization, actions: gov.decision.actions, time: gov.decision.time } : null,
        checkpoints,
        config: { file, problems: configProblems },
        writable: { ok: !unwritable, owner: w?.owner.name ?? null, count: w?.count ?? 0, problems: w?.problems ?? [] },
        problems,
      };
      if (o.json) {
        out.json(doc);
        return;
      }
      const ckLine = (): string => {
        if (!pend) return prot.error ? `cannot tell (${prot.error})` : '-';
        const last = pend.checkpoint ? `last ${pend.checkpoint.id} (${pend.checkpoint.kind}) ${ago(pend.checkpoint.time)}` : 'none yet';
        const state = pend.paths.length === 0 ? 'nothing changed since' : `${plural(pend.paths.length, 'change')} since${pend.since !== null ? `, the oldest ${ago(pend.since)}` : ''}`;
        return `${last}; ${state}${prot.failing ? '; FAILING' : ''}`;
      };
      const rows = [
        ['agent:', running ? `running (pid ${holder?.pid ?? '?'}), ${st.status}` : 'not running'],
        ['paused:', st.paused ? `yes${st.pause_reason ? ` (${st.pause_reason})` : ''}` : govPause ? `by the governor (${govPause.reasons.join('; ')})` : 'no'],
        ['task:', st.task ? `${st.task}, attempt ${st.attempt ?? '?'}, step ${st.step ?? 0}` : '-'],
        ['model:', `${config.llm.backend}${st.quantization ? ` at ${st.quantization}` : ''}${st.model_loaded ? '' : ' (not loaded)'}`],
        ['queue:', TASK_STATUSES.map((s) => `${counts[s]} ${s.replace('_', ' ')}`).join(', ') + (invalid.length ? `; ${plural(invalid.length, 'file')} ignored` : '') + (rejected.length ? `; ${plural(rejected.length, 'file')} set aside` : '')],
        ['approvals:', pending.length ? pending.map((a) => a.id).join(', ') : 'none pending'],
        ['governor:', gov.decision ? `${gov.decision.tier}, ${gov.decision.quantization}${gov.decision.actions.length ? `, ${gov.decision.actions.join(' ')}` : ''}` : gov.stale ? 'decision stale' : 'no decision'],
        ['checkpoints:', ckLine()],
        ['problems:', problems.length ? `${problems.length}` : 'none'],
      ];
      out.print(table(rows, 1));
      for (const p of problems) out.print(`  ${p.severity} ${p.what}: ${p.message}`);
    }),
  );
}

/** The run's escalation, if it has not been started again since. */
/** From the task log: an escalation not yet followed by a start, and the log's damage (see sw-report's tasklog alert). */
async function escalation(paths: RunPaths): Promise<{ escalated: Escalated | null; damage: string[] }> {
  const log = TaskLog.forRun(paths);
  if (!log.exists()) return { escalated: null, damage: [] };
  const snap = await log.snapshot();
  try {
    return { escalated: escalatedAt(snap.db), damage: [...snap.damage, ...snap.corrupt.map((c) => `${describeCorrupt(paths.tasklogJournal, c)}; skipped`), ...snap.warnings] };
  } finally {
    snap.db.close();
  }
}

function approvalJson(a: Approval): Record<string, unknown> {
  return { id: a.id, task: a.task, attempt: a.attempt, step: a.step, action: a.action, rule: a.rule, status: a.status, requested: a.requested, timeout_at: a.timeout_at, decided: a.decided, by: a.by, reason: a.reason, checkpoint: a.checkpoint };
}

function cmdApprovals(program: Command): void {
  withCommonOptions(program.command('approvals').description('actions waiting for a human, and past decisions').argument('<run>', 'run name').option('--all', 'past decisions too')).action(
    action(async (runArg: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ all?: boolean }>(cmd);
      const out = outputFor(cmd);
      const { paths } = await setup(runArg, out, 'approvals', { writes: false });
      requireRun(paths);
      const list = listApprovals(paths).filter((a) => o.all || a.status === 'pending');
      if (o.json) {
        out.json({ approvals: list.map(approvalJson) });
        return;
      }
      const rows = [['ID', 'STATUS', 'REQUESTED', 'ACTION']];
      for (const a of list) rows.push([a.id, a.status, a.requested.replace(/\.\d+Z$/, 'Z'), describeAction(a.action)]);
      out.print(table(rows));
    }),
  );
}

function decide(program: Command, name: 'approve' | 'reject'): void {
  const c = program.command(name).description(name === 'approve' ? 'let a waiting action run' : 'refuse a waiting action (the model is told)').argument('<run>', 'run name').argument('<id>', 'approval id');
  if (name === 'reject') c.option('--reason <text>', 'why, passed to the model');
  withCommonOptions(c, { json: false }).action(
    action(async (runArg: string, id: string, _o: unknown, cmd: Command) => {
      const o = optsOf<{ reason?: string }>(cmd);
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/.test(id)) throw usageError(`invalid approval id '${id}'`);
      const out = outputFor(cmd);
      const { paths } = await setup(runArg, out, name, { writes: true });
      requireRun(paths);
      await decideApproval(paths, id, name === 'approve' ? 'approved' : 'rejected', o.reason ?? null);
      out.info(`approval ${id} ${name === 'approve' ? 'approved' : 'rejected'}`);
    }),
  );
}

function cmdConfig(program: Command): void {
  withCommonOptions(
    program
      .command('config')
      .description("print the run's configuration in effect (the defaults with its file over them), or one key of it")
      .argument('<run>', 'run name')
      .argument('[key]', 'a key such as llm.backend or report.mail'),
  ).action(
    action(async (runArg: string, key: string | undefined, _o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      if (key !== undefined && !/^[a-z_]+(\.[A-Za-z0-9_]+)*$/.test(key)) throw usageError(`invalid config key '${key}'`);
      // One key is read exactly or not at all (scripts act on it: the report unit mails report.mail).
      const { config, file } = await setup(runArg, out, 'config', { writes: false, needs: key ? [key] : [] });
      let value: unknown = config;
      if (key) {
        for (const part of key.split('.')) {
          if (value === null || typeof value !== 'object' || !(part in (value as object))) throw usageError(`no config key '${key}'`);
          value = (value as Record<string, unknown>)[part];
        }
      }
      if (o.json) out.json(key ? value : { file, config });
      else if (value !== null && typeof value === 'object') out.print(JSON.stringify(value, null, 2));
      else out.print(value === null ? '' : String(value));
    }),
  );
}

function buildProgram(): Command {
  const program = createProgram('sw-agent', 'The selfware agent, and its queue and approvals.');
  cmdRun(program);
  cmdInit(program);
  cmdAdd(program);
  cmdList(program);
  cmdShow(program);
  cmdCancel(program);
  cmdPause(program);
  cmdResume(program);
  cmdStatus(program);
  cmdApprovals(program);
  decide(program, 'approve');
  decide(program, 'reject');
  cmdConfig(program);
  return program;
}

void main(buildProgram());
