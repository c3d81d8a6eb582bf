// The scripted backend: answers from a YAML file instead of a model, for dry
// runs, demos and tests. `tasks: {<task title>: [action, action, ...]}`;
// step k of an attempt gets the k-th action; a key `<task title>#N` gives
// attempt N a list of its own. An entry may also carry
// `delay_ms` (answer after that long, tokens flowing meanwhile) and
// `stall_ms` (one token, then none for that long: an inference that hangs),
// and `hang_ms` (no token at all for that long: a prompt evaluation that hangs
// before the first token).

import { EXIT, SwError, configError, errnoText } from '../../exit.js';
import { checkYamlDepth, readTextFile } from '../../safefile.js';
import { LIMITS } from '../schema.js';
import { abortError, sleepOrAbort, type CompleteRequest, type CompleteResult, type LlmBackend, type Quant } from './types.js';

interface Entry {
  answer: Record<string, unknown>;
  delayMs: number;
  stallMs: number;
  hangMs: number;
}

export interface Script {
  tasks: Map<string, Entry[]>;
}

/** The longest delay_ms or stall_ms: what a timer can wait (2^31-1 ms, about 24.8 days). */
const MAX_WAIT_MS = 2 ** 31 - 1;

/**
 * Parse a script file; errors name file:line:col (exit 78, it is
 * configuration). The file is read by the rules every parsed file is (a
 * regular file or a link to one, at most 16 MiB, UTF-8 text, nested at most
 * 64 levels), so a FIFO, a device or a pathological file is refused at once,
 * never waited on.
 */
export async function loadScript(file: string): Promise<Script> {
  let text: string;
  try {
    text = readTextFile(file, 'script', { code: EXIT.CONFIG, follow: true });
    await checkYamlDepth(file, text, EXIT.CONFIG);
  } catch (e) {
    if (e instanceof SwError) throw e;
    throw configError(`${file}: cannot read the script: ${errnoText(e)}`);
  }
  const { parseDocument, LineCounter, isMap, isSeq, isScalar } = await import('yaml');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
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
    const key = pair.key as { value?: unknown } | null;
    if (!isScalar(key) || (typeof key.value !== 'string' && typeof key.value !== 'number')) throw configError(`${at(key)}: expected a task title, got ${isSeq(key) ? 'a list' : isMap(key) ? 'a mapping' : 'nothing'}`);
    const title = String(key.value);
    const seq = pair.value;
    if (!isSeq(seq)) throw configError(`${at(pair.value ?? pair.key)}: ${title}: expected a list of actions`);
    const entries: Entry[] = [];
    for (const item of seq.items) {
      let v: Record<string, unknown> | null;
      try {
        v = isMap(item) ? (item.toJS(doc, { maxAliasCount: 100 }) as Record<string, unknown>) : null;
      } catch (e) {
        throw configError(`${at(item)}: ${title}: ${(e as Error).message.split('\n')[0]}`);
      }
      if (!v || typeof v.action !== 'string') throw configError(`${at(item)}: ${title}: expected an action such as {action: shell, command: ...}`);
      const { delay_ms: delay, stall_ms: stall, hang_ms: hang, ...answer } = v;
      const wait = (k: string, x: unknown): number => {
        if (x === undefined || x === null) return 0;
        if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > MAX_WAIT_MS) {
          const node = (item as import('yaml').YAMLMap).get(k, true);
          throw configError(`${at(node ?? item)}: ${title}: ${k}: expected an integer from 0 to ${MAX_WAIT_MS}, got ${JSON.stringify(x)}`);
        }
        return x;
      };
      entries.push({ answer, delayMs: wait('delay_ms', delay), stallMs: wait('stall_ms', stall), hangMs: wait('hang_ms', hang) });
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

  /** A script plays any level; it has no memory to give back. */
  canSwitch(): boolean {
    return true;
  }
  readonly canUnload = false;

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

  /** The tokens "generated" so far (the script evaluates nothing, so a hang_ms shows as no progress). */
  progress(): number {
    return this.tokens;
  }
  private tokens = 0;

  async complete(req: CompleteRequest): Promise<CompleteResult> {
    if (!this.isLoaded && this.level) this.isLoaded = true;
    const started = Date.now();
    const title = req.task?.title ?? '';
    const step = req.task?.step ?? 1;
    // `TITLE#N` gives attempt N its own list (a retry that does something else); else TITLE's.
    const entries = this.script.tasks.get(`${title}#${req.task?.attempt ?? 1}`) ?? this.script.tasks.get(title);
    const entry: Entry = entries?.[step - 1] ?? {
      answer: { action: 'finish', summary: entries ? 'the script has no more steps for this task' : `the script has no entry for '${title}'` },
      delayMs: 0,
      stallMs: 0,
      hangMs: 0,
    };
    const text = JSON.stringify(entry.answer);
    const tokensOut = Math.max(1, Math.ceil(text.length / 4));
    const token = (n: number): void => {
      this.tokens += n;
      req.onToken?.(n);
    };
    // Nothing at all: a prompt evaluation that hangs before the first token.
    if (entry.hangMs > 0) await sleepOrAbort(entry.hangMs, req.signal);
    if (entry.stallMs > 0) {
      // One token, then nothing: an inference that hangs mid-answer.
      token(1);
      await sleepOrAbort(entry.stallMs, req.signal);
    }
    if (entry.delayMs > 0) {
      // Tokens "flow" in ten chunks over the delay.
      for (let i = 0; i < 10; i++) {
        await sleepOrAbort(entry.delayMs / 10, req.signal);
        token(Math.ceil(tokensOut / 10));
      }
    } else token(tokensOut);
    if (req.signal?.aborted) throw abortError();
    const latencyMs = Date.now() - started;
    const tokensIn = Math.ceil(req.messages.reduce((n, m) => n + m.content.length, 0) / 4);
    return {
      text: text.length > LIMITS.content * 2 ? text.slice(0, LIMITS.content * 2) : text,
      tokensIn,
      // No model evaluated the prompt: nothing to say of evaluation or reuse.
      tokensEvaluated: null,
      tokensReused: null,
      evalMs: null,
      tokensOut,
      latencyMs,
      // No model generated these tokens: a speed would be the script's, and a report would show it as the model's.
      tokensPerS: null,
      model: `script:${this.file}`,
      quantization: this.level,
    };
  }
}
