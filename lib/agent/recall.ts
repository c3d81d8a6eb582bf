// The run's memory as the agent uses it (lib/agent/memory.ts keeps the
// files): what an attempt is given of it, a note the model keeps, and an
// attempt's outcome remembered.

import type { Task } from '../queue/task.js';
import { lockState } from '../state/index.js';
import { appendNote, appendOutcome, boundMemory, memorySection, repoMap } from './memory.js';
import { tokenCounter } from './prompt.js';
import type { Session } from './session.js';
import { failedObservation, type Observation } from './tools.js';

/**
 * What an attempt is given besides its task: the run's memory (notes and
 * outcomes, newest first) and a map of the repository, within
 * agent.memory_budget tokens (the map at most a third). Memory files that
 * cannot be read are set aside (under the state lock) and said.
 */
export async function attemptContext(s: Session): Promise<string> {
  const budget = s.config.agent.memory_budget;
  if (budget <= 0) return '';
  const count = tokenCounter(s.backend);
  const map = await repoMap(s.ws, Math.floor(budget / 3), count);
  const lock = await lockState(s.paths);
  let mem: ReturnType<typeof memorySection>;
  try {
    mem = memorySection(s.paths.stateDir, budget - (map ? count(map) : 0), count);
  } finally {
    lock.release();
  }
  for (const p of mem.problems) s.out.warn(`memory: ${p}`);
  return [mem.text, map ? `The repository:\n${map}` : ''].filter((x) => x !== '').join('\n\n');
}

/** An attempt's outcome in the run's memory, and the memory kept within its limits. */
export function rememberOutcome(s: Session, task: Task, outcome: string, reason: string | null, steps: number, detail: string | null): void {
  try {
    appendOutcome(s.paths.stateDir, { time: new Date(), task: task.id, attempt: task.attempt, outcome: outcome === 'completed' ? 'done' : outcome, reason, steps, detail });
    const b = boundMemory(s.paths.stateDir, { notes: s.config.agent.memory_notes, outcomes: s.config.agent.memory_outcomes });
    for (const p of b.problems) s.out.warn(`memory: ${p}`);
  } catch (e) {
    s.out.warn(`memory: cannot record the outcome of task ${task.id}: ${(e as Error).message}`);
  }
}

/** A note for the run's memory (state/memory/notes.md), which later tasks are given. */
export function note(s: Session, task: Task, text: string): Observation {
  const started = Date.now();
  try {
    const line = appendNote(s.paths.stateDir, { time: new Date(), task: task.id, text });
    if (line === null) return failedObservation('the note is empty', { durationMs: Date.now() - started });
    return { ok: true, exit_code: null, signal: null, output: `noted in state/memory/notes.md; later tasks of this run are given it:\n${line}`, cut: 0, timed_out: false, duration_ms: Date.now() - started };
  } catch (e) {
    return failedObservation(`the note could not be kept: ${(e as Error).message}`, { durationMs: Date.now() - started });
  }
}
