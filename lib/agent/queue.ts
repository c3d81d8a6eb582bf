// The agent's queue: its runnable tasks (files dropped in adopted, bad ones
// set aside), the next task, a task changed under the state lock, the pass
// that archives finished tasks, and what the agent does while the queue is
// empty (the idle checkpoint, warning, unload and task).

import fs from 'node:fs';
import path from 'node:path';
import { describeError } from '../exit.js';
import { archiveFinished, type ArchivePass } from '../queue/archive.js';
import { DirCache } from '../queue/dircache.js';
import { SETTLE_MS, rejectionEvent, setAsideInvalid, type SetAsideResult } from '../queue/reject.js';
import { queueDir, readQueue, runOrder, taskFile, writeTask, type Task } from '../queue/task.js';
import { lockState, stateGit } from '../state/index.js';
import { formatDuration, plural } from '../units.js';
import type { Model } from './model.js';
import type { Session } from './session.js';
import { addTask, logTaskAdded, readTask, taskDefaults } from './state.js';

export class TaskQueue {
  private readonly s: Session;
  private readonly model: Model;
  /** The queue's runnable tasks, read again only when queue/ changed (lib/queue/dircache.ts). */
  private readonly queueCache: DirCache<Task[]>;
  /** Bad queue entries that cannot be set aside, warned about once. */
  private warnedFiles = new Set<string>();
  private known: Set<string> | null = null;
  /** When the agent last moved finished tasks into the archive (0: not yet this session). */
  private lastArchive = 0;
  private idleSince: number | null = null;
  private idleWarned = false;

  constructor(s: Session, model: Model) {
    this.s = s;
    this.model = model;
    this.queueCache = new DirCache(queueDir(s.paths.stateDir));
  }

  /** Paused: idle again after the pause starts a new idle spell. */
  pauseIdle(): void {
    this.idleSince = null;
  }

  /** A task runs: the next empty queue starts a new idle spell, warned about again. */
  endIdle(): void {
    this.idleSince = null;
    this.idleWarned = false;
  }

  async idle(): Promise<void> {
    const { config, backend, out, log } = this.s;
    const now = Date.now();
    if (this.idleSince === null) {
      this.idleSince = now;
      await this.s.updateState({ status: 'idle', task: null, attempt: null, step: null });
      // The idle state protected at once (skipped when nothing changed), timer or no timer: an
      // idle run is then one whose state is what its newest checkpoint holds.
      await this.s.checkpoint('routine', 'idle');
    }
    this.s.setStatus('idle: the queue is empty');
    if (!this.idleWarned && now - this.idleSince >= config.agent.idle_warning) {
      this.idleWarned = true;
      out.warn(`the queue has been empty for ${formatDuration(now - this.idleSince)}`);
    }
    if (backend.loaded && backend.canUnload && now - this.model.lastRequestAt >= config.llm.idle_unload) {
      try {
        await this.model.unloadModel();
      } catch (e) {
        this.model.lastRequestAt = now;
        out.warn(`cannot unload the idle model: ${describeError(e)}; trying again in ${formatDuration(config.llm.idle_unload)}`);
        return;
      }
      log.append({ t: 'model_unloaded', session: this.s.id, reason: 'idle' });
      out.info(`model unloaded after ${formatDuration(now - this.model.lastRequestAt)} without a request; it is loaded again on demand`);
      await this.s.updateState({ model_loaded: false });
    }
    const idleTask = config.agent.idle_task;
    if (idleTask && now - this.idleSince >= config.agent.idle_task_after) {
      const t = await addTask(this.s.paths, config, { prompt: idleTask, title: 'idle task', source: 'idle' });
      out.info(`queued the idle task ${t.id}`);
      this.idleSince = now;
    }
  }

  /**
   * The queue, read again only when its directory changed (or while an entry
   * waits to settle). New dropped-in files are adopted; entries that are not
   * valid tasks are set aside in queue/rejected/, so no file can stop the run.
   */
  private async queue(): Promise<Task[]> {
    const tasks = await this.queueCache.get(async () => {
      const defaults = taskDefaults(this.s.config);
      let q = await readQueue(this.s.paths.stateDir, defaults);
      const aside = q.invalid.length > 0 ? await this.setAside() : { waiting: false, seen: new Set<string>() };
      const adopted = await this.adopt(q.tasks);
      if (q.invalid.length > 0 || adopted.count > 0) q = await readQueue(this.s.paths.stateDir, defaults);
      // A task not adopted yet (its file is still settling) does not run.
      const value = q.tasks.filter((t) => this.known?.has(t.id));
      // Entries that wait to settle or appeared meanwhile: look again next time even if the directory is unchanged.
      const again = aside.waiting || adopted.waiting || q.invalid.some((e) => !aside.seen.has(e.error)) || value.length < q.tasks.length;
      return { value, again };
    });
    return tasks ?? [];
  }

  /**
   * Set the bad entries of the queue aside, under the state lock. waiting:
   * some are left for a later look; seen: the errors of every bad entry
   * handled (those that cannot be moved are warned about once).
   */
  private async setAside(): Promise<{ waiting: boolean; seen: Set<string> }> {
    const { paths, out } = this.s;
    const lock = await lockState(paths);
    let res: SetAsideResult;
    try {
      const q = await readQueue(paths.stateDir, taskDefaults(this.s.config));
      res = setAsideInvalid(paths.stateDir, q.invalid, { settleMs: SETTLE_MS });
      for (const r of res.moved) this.s.log.append(rejectionEvent(paths.stateDir, r));
    } finally {
      lock.release();
    }
    const seen = new Set<string>();
    for (const r of res.moved) {
      seen.add(r.error);
      out.warn(`rejected ${r.error}; moved to ${r.to}`);
    }
    let waiting = false;
    for (const l of res.left) {
      seen.add(l.error);
      if (l.why.startsWith('it changed a moment ago')) waiting = true;
      else if (!this.warnedFiles.has(`${l.error}:${l.why}`)) {
        this.warnedFiles.add(`${l.error}:${l.why}`);
        out.warn(`ignoring ${l.error}: ${l.why}`);
      }
    }
    return { waiting, seen };
  }

  /**
   * Files dropped into queue/ by hand become tasks like `sw-agent add` ones:
   * written out in full and logged, once they have settled (a file still
   * being written is left for the next look).
   */
  private async adopt(tasks: Task[]): Promise<{ count: number; waiting: boolean }> {
    const { paths } = this.s;
    // Tasks `sw-agent add` queued since the agent last looked are in the log already.
    if (!this.known || tasks.some((t) => !this.known?.has(t.id))) {
      const snap = await this.s.log.snapshot();
      try {
        this.known = new Set((snap.db.exec('SELECT id FROM tasks')[0]?.values ?? []).map((v) => String(v[0])));
      } finally {
        snap.db.close();
      }
    }
    let count = 0;
    let waiting = false;
    const now = Date.now();
    for (const t of tasks) {
      if (this.known.has(t.id)) continue;
      const yml = path.join(queueDir(paths.stateDir), `${t.id}.yml`);
      let mtime: number;
      try {
        mtime = fs.lstatSync(fs.existsSync(taskFile(paths.stateDir, t.id)) ? taskFile(paths.stateDir, t.id) : yml).mtimeMs;
      } catch {
        continue;
      }
      if (Math.abs(now - mtime) < SETTLE_MS) {
        waiting = true;
        continue;
      }
      const lock = await lockState(paths);
      try {
        await writeTask(paths.stateDir, t);
        // A task dropped in as ID.yml lives on as ID.yaml.
        fs.rmSync(yml, { force: true });
        logTaskAdded(paths, t);
      } finally {
        lock.release();
      }
      this.known.add(t.id);
      count++;
      this.s.out.info(`adopted task ${t.id} from ${taskFile(paths.stateDir, t.id)}`);
    }
    return { count, waiting };
  }

  async nextTask(current: string | null): Promise<Task | null> {
    const tasks = await this.queue();
    // The task the agent was on when it stopped goes first: it resumes where it was.
    const resume = current ? tasks.find((t) => t.id === current && (t.status === 'pending' || t.status === 'in_progress')) : undefined;
    if (resume) return resume;
    const inProgress = tasks.find((t) => t.status === 'in_progress');
    if (inProgress) return inProgress;
    return runOrder(tasks)[0] ?? null;
  }

  /** Read the task again under the lock and change it; null if it was cancelled meanwhile. */
  async changeTask(id: string, change: (t: Task) => Task | null): Promise<Task | null> {
    const lock = await lockState(this.s.paths);
    try {
      const t = await readTask(this.s.paths, this.s.config, id);
      if (t.status === 'cancelled') return null;
      const next = change(t);
      if (next) await writeTask(this.s.paths.stateDir, next);
      return next ?? t;
    } finally {
      lock.release();
    }
  }

  /**
   * Move finished tasks the newest checkpoint holds into the archive
   * (lib/queue/archive.ts), at most every agent.archive_after (hourly at
   * most), between tasks. A failure is said and tried again next time.
   */
  async archivePass(): Promise<void> {
    const { paths, config, out } = this.s;
    const now = Date.now();
    if (now - this.lastArchive < Math.min(config.agent.archive_after, 3_600_000)) return;
    this.lastArchive = now;
    try {
      const lock = await lockState(paths);
      let r: ArchivePass;
      try {
        r = await archiveFinished(paths.stateDir, stateGit(paths), { defaults: taskDefaults(config), olderThanMs: config.agent.archive_after, keepMs: config.agent.archive_keep, now });
      } finally {
        lock.release();
      }
      if (r.archived.length > 0 || r.finished.length > 0 || r.dropped.length > 0) {
        this.s.log.append({ t: 'tasks_archived', session: this.s.id, count: r.archived.length, file: r.file ? path.relative(paths.stateDir, r.file) : null, finished: r.finished.length, dropped: r.dropped });
        if (r.file) out.info(`archived ${plural(r.archived.length, 'finished task')} in ${path.relative(paths.stateDir, r.file)}`);
        if (r.finished.length > 0) out.info(`removed the queue files of ${plural(r.finished.length, 'task')} an interrupted archiving had archived`);
        if (r.dropped.length > 0) out.info(`${plural(r.dropped.length, 'archive')} (${r.dropped[0]}${r.dropped.length > 1 ? ` to ${r.dropped[r.dropped.length - 1]}` : ''}) left state/ (past agent.archive_keep; the checkpoints holding them keep them)`);
      }
    } catch (e) {
      out.warn(`archiving finished tasks failed: ${describeError(e)}; trying again later`);
    }
  }
}
