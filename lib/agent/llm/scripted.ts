// The scripted backend: answers from a YAML file instead of a model, for dry
// runs, demos and tests. `tasks: {<task title>: [action, action, ...]}`;
// step k of an attempt gets the k-th action. An entry may also carry
// `delay_ms` (answer after that long, tokens flowing meanwhile) and
// `stall_ms` (one token, then none for that long: an inference that hangs).

import fs from 'node:fs';
import { configError } from '../../exit.js';
import { LIMITS } from '../schema.js';
import { abortError, sleepOrAbort, type CompleteRequest, type CompleteResult, type LlmBackend, type Quant } from './types.js';

interface Entry {
  answer: Record<string, unknown>;
  delayMs: number;
  stallMs: number;
}

export interface Script {
  tasks: Map<string, Entry[]>;
}

/** Parse a script file; errors name file:line (exit 78, it is configuration). */
export async function loadScript(file: string): Promise<Script> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw configError(`${file}: cannot read the script: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const { parseDocument, LineCounter, isMap, isSeq } = await import('yaml');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const at = (node: unknown): string => {
    const r = (node as { range?: number[] } | null)?.range;
    const p = lc.linePos(r?.[0] ?? 0);
    return `${file}:${p.line}:${p.col}`;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0] as (typeof doc.errors)[number];
    const p = lc.linePos(e.pos[0]);
    throw configError(`${file}:${p.line}:${p.col}: invalid YAML: ${e.message.split('\n')[0]}`);
  }
  const root = doc.contents;
  const tasksNode = isMap(root) ? root.get('tasks', true) : null;
  if (!isMap(tasksNode)) throw configError(`${at(root)}: a script is {tasks: {<task title>: [action, ...]}}`);
  const tasks = new Map<string, Entry[]>();
  for (const pair of tasksNode.items) {
    const title = String((pair.key as { value?: unknown }).value);
    const seq = pair.value;
    if (!isSeq(seq)) throw configError(`${at(pair.key)}: ${title}: expected a list of actions`);
    const entries: Entry[] = [];
    for (const item of seq.items) {
      const v = (item as { toJSON(): unknown }).toJSON() as Record<string, unknown> | null;
      if (!v || typeof v !== 'object' || typeof v.action !== 'string') throw configError(`${at(item)}: ${title}: expected an action such as {action: shell, command: ...}`);
      const { delay_ms: delay, stall_ms: stall, ...answer } = v;
      entries.push({ answer, delayMs: typeof delay === 'number' ? delay : 0, stallMs: typeof stall === 'number' ? stall : 0 });
    }
    tasks.set(title, entries);
  }
  return { tasks };
}

export class ScriptedBackend implements LlmBackend {
  readonly name = 'scripted' as const;
  private level: Quant | null = null;
  private isLoaded = false;
  constructor(
    private readonly script: Script,
    private readonly file: string,
  ) {}

  get loaded(): boolean {
    return this.isLoaded;
  }
  get quantization(): Quant | null {
    return this.level;
  }

  async load(quant: Quant, progress?: () => void): Promise<void> {
    progress?.();
    this.level = quant;
    this.isLoaded = true;
  }

  async unload(): Promise<void> {
    this.isLoaded = false;
  }

  async dispose(): Promise<void> {
    this.isLoaded = false;
  }

  async complete(req: CompleteRequest): Promise<CompleteResult> {
    if (!this.isLoaded && this.level) this.isLoaded = true;
    const started = Date.now();
    const title = req.task?.title ?? '';
    const step = req.task?.step ?? 1;
    const entries = this.script.tasks.get(title);
    const entry: Entry = entries?.[step - 1] ?? {
      answer: { action: 'finish', summary: entries ? 'the script has no more steps for this task' : `the script has no entry for '${title}'` },
      delayMs: 0,
      stallMs: 0,
    };
    const text = JSON.stringify(entry.answer);
    const tokensOut = Math.max(1, Math.ceil(text.length / 4));
    if (entry.stallMs > 0) {
      // One token, then nothing: an inference that hangs mid-answer.
      req.onToken?.(1);
      await sleepOrAbort(entry.stallMs, req.signal);
    }
    if (entry.delayMs > 0) {
      // Tokens "flow" in ten chunks over the delay.
      for (let i = 0; i < 10; i++) {
        await sleepOrAbort(entry.delayMs / 10, req.signal);
        req.onToken?.(Math.ceil(tokensOut / 10));
      }
    } else req.onToken?.(tokensOut);
    if (req.signal?.aborted) throw abortError();
    const latencyMs = Date.now() - started;
    const tokensIn = Math.ceil(req.messages.reduce((n, m) => n + m.content.length, 0) / 4);
    return {
      text: text.length > LIMITS.content * 2 ? text.slice(0, LIMITS.content * 2) : text,
      tokensIn,
      tokensOut,
      latencyMs,
      // No model generated these tokens: a speed would be the script's, and a report would show it as the model's.
      tokensPerS: null,
      model: `script:${this.file}`,
      quantization: this.level,
    };
  }
}
