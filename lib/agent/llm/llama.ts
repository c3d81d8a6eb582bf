// The llama backend: local GGUF files (one per quantization level) through
// node-llama-cpp, answers constrained by a JSON-schema grammar.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChatHistoryItem, GbnfJsonSchema, Llama, LlamaChat, LlamaContext, LlamaContextSequence, LlamaGrammar, LlamaModel, Token, TokenBias } from 'node-llama-cpp';
import type { LlmConfig } from '../../config/schema.js';
import { fsyncDir } from '../../fsutil.js';
import { abortError, type ChatMessage, type CompleteRequest, type CompleteResult, type LlmBackend, type Quant, type RestoredState, type SavedState } from './types.js';

export interface LlamaBackendOptions {
  /** Where llama.cpp's own errors go (default: stderr); nothing else is logged. */
  log?: (message: string) => void;
}

// node-llama-cpp is an ES module with top-level await: a static import would
// become require() in the commands' CommonJS bundles and fail, so it is
// imported when first needed (which also keeps its native code out of runs
// on other backends).
type NodeLlamaCpp = typeof import('node-llama-cpp');
let nodeLlamaCpp: Promise<NodeLlamaCpp> | null = null;
const lib = (): Promise<NodeLlamaCpp> => (nodeLlamaCpp ??= import('node-llama-cpp'));

/**
 * llm.threads as a count: 0 means all cores but one. More threads than cores
 * make llama.cpp's workers spin-wait for each other (4 threads on 2 cores:
 * ~4 tokens/s instead of ~1,000); bench/tokens.ts compares the setting with
 * the best one on the machine at hand.
 */
export function resolveThreads(threads: number): number {
  // All cores but one: measured on a 2-core VM, 1 thread gave ~1,700 tok/s on
  // the tiny model and 2 threads ~57 (llama.cpp's threads spin-wait for each
  // other, and a busy core stalls them all); the agent, git and the tools
  // need a core too. bench/tokens.ts sweeps the settings on a machine.
  return threads > 0 ? threads : Math.max(1, os.availableParallelism() - 1);
}

/**
 * SentencePiece byte tokens <0x80>..<0xFF>. A model that emits one on its own
 * writes broken UTF-8 (U+FFFD in the answer), and the grammar's string limits
 * count bytes the text then does not hold; a trained model needs them only for
 * characters its vocabulary lacks. BPE vocabularies (Qwen) spell no token this
 * way, so nothing is banned there.
 */
function highByteTokens(model: LlamaModel): Token[] {
  const tokens = model.fileInfo.metadata?.tokenizer?.ggml?.tokens ?? [];
  const out: Token[] = [];
  tokens.forEach((t, i) => {
    if (/^<0x[89A-F][0-9A-F]>$/.test(t)) out.push(i as Token);
  });
  return out;
}

/** The agent's transcript as node-llama-cpp's chat history, ending in the model turn to complete. */
function toHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === 'system' ? { type: 'system', text: m.content } : m.role === 'user' ? { type: 'user', text: m.content } : { type: 'model', response: [m.content] },
  );
  history.push({ type: 'model', response: [] });
  return history;
}

/** The saved state's files in the directory the agent gives (one pair a run). */
export const STATE_FILE = 'sequence.state';
export const STATE_META = 'sequence.json';

interface StateIdentity {
  model: string;
  size: number;
  mtime_ms: number;
  head_sha256: string;
  quantization: Quant;
  context: number;
}

interface StateMeta extends StateIdentity {
  tokens: number;
  bytes: number;
  saved_at: string;
}

export class LlamaBackend implements LlmBackend {
  readonly name = 'llama' as const;
  private readonly config: LlmConfig;
  private readonly log: (message: string) => void;
  private llama: Promise<Llama> | null = null;
  private model: LlamaModel | null = null;
  private context: LlamaContext | null = null;
  /**
   * The one sequence of the context and the chat on it, kept from call to
   * call: the sequence holds what it evaluated, and the chat evaluates only
   * where the new prompt departs from it (the agent's prompts grow by
   * appending, lib/agent/transcript.ts). Gone with the context.
   */
  private sequence: LlamaContextSequence | null = null;
  private chat: LlamaChat | null = null;
  private bias: TokenBias | null = null;
  /** The level in use: loaded, or to load on the next request. */
  private level: Quant;
  // Grammars belong to the Llama instance, not the model, so they outlive a
  // switch of level; compiling one per request would cost more than the answer.
  private grammars = new WeakMap<object, Promise<LlamaGrammar>>();
  // One context holds one sequence, and a level switch must not free the
  // model under a running answer: everything runs one at a time.
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;
  /** The chat format node-llama-cpp chose from the model's template ("ChatML" for Qwen and the tiny test model), after a request. */
  chatWrapperName: string | null = null;

  constructor(config: LlmConfig, opts: LlamaBackendOptions = {}) {
    this.config = config;
    this.level = config.quantization;
    this.log = opts.log ?? ((m) => process.stderr.write(`llama.cpp: ${m}\n`));
  }

  get loaded(): boolean {
    return this.model !== null;
  }

  readonly canUnload = true;

  canSwitch(quant: Quant): boolean {
    return !!this.config.models[quant];
  }

  get quantization(): Quant {
    return this.level;
  }

  /** The threads each context is created with. */
  get threads(): number {
    return resolveThreads(this.config.threads);
  }

  /** The loaded model's tokens for text (null when no model is loaded). */
  countTokens(text: string): number | null {
    return this.model ? this.model.tokenize(text, false).length : null;
  }

  /** Tokens evaluated and generated so far (the context's batches count them as they are dispatched). */
  progress(): number {
    const m = this.sequence?.tokenMeter;
    return this.progressBase + (m ? m.usedInputTokens + m.usedOutputTokens : 0);
  }
  /** What earlier sequences counted (a level switch or an unload replaces the sequence). */
  private progressBase = 0;

  load(quant: Quant, progress?: () => void): Promise<void> {
    return this.exclusive(() => this.loadNow(quant, progress));
  }

  unload(): Promise<void> {
    return this.exclusive(() => this.unloadNow());
  }

  complete(req: CompleteRequest): Promise<CompleteResult> {
    return this.exclusive(() => this.completeNow(req));
  }

  saveState(dir: string): Promise<SavedState | null> {
    return this.exclusive(() => this.saveStateNow(dir));
  }

  restoreState(dir: string): Promise<RestoredState> {
    return this.exclusive(() => this.restoreStateNow(dir));
  }

  /** What the saved state must match: the model file (path, size, time, a hash of its head), the level and the context size. */
  private identity(): StateIdentity {
    const file = this.config.models[this.level] ?? '';
    const st = fs.statSync(file);
    const fd = fs.openSync(file, 'r');
    const head = Buffer.alloc(Math.min(st.size, 1024 * 1024));
    try {
      fs.readSync(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
    return { model: file, size: st.size, mtime_ms: st.mtimeMs, head_sha256: crypto.createHash('sha256').update(head).digest('hex'), quantization: this.level, context: this.config.context };
  }

  private async saveStateNow(dir: string): Promise<SavedState | null> {
    const sequence = this.sequence;
    if (!this.model || !sequence || sequence.contextTokens.length === 0) return null;
    const t0 = performance.now();
    const id = this.identity();
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const bin = path.join(dir, STATE_FILE);
    const meta = path.join(dir, STATE_META);
    // The old pair goes first: a meta file never names a state file it was not written with.
    fs.rmSync(meta, { force: true });
    const tmp = `${bin}.tmp`;
    try {
      const { fileSize } = await sequence.saveStateToFile(tmp);
      const fd = fs.openSync(tmp, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, bin);
      const record: StateMeta = { ...id, tokens: sequence.contextTokens.length, bytes: fileSize, saved_at: new Date().toISOString() };
      fs.writeFileSync(`${meta}.tmp`, JSON.stringify(record) + '\n', { mode: 0o600 });
      const mfd = fs.openSync(`${meta}.tmp`, 'r');
      try {
        fs.fsyncSync(mfd);
      } finally {
        fs.closeSync(mfd);
      }
      fs.renameSync(`${meta}.tmp`, meta);
      fsyncDir(dir);
      return { file: bin, bytes: fileSize, tokens: record.tokens, ms: Math.round(performance.now() - t0) };
    } catch (e) {
      for (const f of [tmp, bin, `${meta}.tmp`, meta]) fs.rmSync(f, { force: true });
      throw e;
    }
  }

  private async restoreStateNow(dir: string): Promise<RestoredState> {
    const bin = path.join(dir, STATE_FILE);
    const meta = path.join(dir, STATE_META);
    if (!fs.existsSync(meta)) {
      // A state file without its record is a save that did not finish.
      if (fs.existsSync(bin) || fs.existsSync(`${bin}.tmp`)) {
        for (const f of [bin, `${bin}.tmp`]) fs.rmSync(f, { force: true });
        return { loaded: false, reason: `${bin}: no record of it (a save that did not finish)` };
      }
      return { loaded: false, reason: null };
    }
    // Consumed either way: what is saved next is the next stop's.
    const consume = (): void => {
      for (const f of [bin, meta, `${bin}.tmp`, `${meta}.tmp`]) fs.rmSync(f, { force: true });
    };
    try {
      const t0 = performance.now();
      if (!this.model || !this.context) return { loaded: false, reason: 'no model is loaded' };
      let rec: StateMeta;
      try {
        rec = JSON.parse(fs.readFileSync(meta, 'utf8')) as StateMeta;
      } catch (e) {
        return { loaded: false, reason: `${meta}: not a state record (${(e as Error).message})` };
      }
      const id = this.identity();
      for (const k of Object.keys(id) as Array<keyof StateIdentity>) {
        if (rec[k] !== id[k]) return { loaded: false, reason: `${meta}: saved for ${k} ${JSON.stringify(rec[k])}, now ${JSON.stringify(id[k])}` };
      }
      let size: number;
      try {
        size = fs.statSync(bin).size;
      } catch {
        return { loaded: false, reason: `${bin}: missing` };
      }
      if (size !== rec.bytes) return { loaded: false, reason: `${bin}: ${size} bytes, saved as ${rec.bytes}` };
      if (!Number.isInteger(rec.tokens) || rec.tokens <= 0 || rec.tokens > this.context.contextSize) return { loaded: false, reason: `${meta}: ${rec.tokens} tokens do not fit a ${this.context.contextSize}-token context` };
      const sequence = (this.sequence ??= this.context.getSequence());
      try {
        await sequence.loadStateFromFile(bin, { acceptRisk: true });
      } catch (e) {
        await sequence.clearHistory().catch(() => undefined);
        return { loaded: false, reason: `${bin}: ${(e as Error).message}` };
      }
      if (sequence.contextTokens.length !== rec.tokens) {
        await sequence.clearHistory();
        return { loaded: false, reason: `${bin}: held ${sequence.contextTokens.length} tokens, saved as ${rec.tokens}` };
      }
      return { loaded: true, tokens: rec.tokens, bytes: rec.bytes, ms: Math.round(performance.now() - t0), saved: rec.saved_at };
    } finally {
      consume();
    }
  }

  dispose(): Promise<void> {
    return this.exclusive(async () => {
      if (this.disposed) return;
      this.disposed = true;
      await this.unloadNow();
      const llama = this.llama;
      this.llama = null;
      this.grammars = new WeakMap();
      if (llama) await (await llama.catch(() => null))?.dispose();
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private getLlama(): Promise<Llama> {
    if (this.disposed) return Promise.reject(new Error('the llama backend was disposed'));
    this.llama ??= lib().then(({ getLlama, LlamaLogLevel }) =>
      getLlama({
        // 'auto' falls back to the CPU quietly where there is no GPU; false never probes one.
        gpu: this.config.gpu ? 'auto' : false,
        // Never compile llama.cpp at run time (minutes, network, a hardened
        // unit cannot): use the prebuilt binaries or a local build.
        build: 'never',
        // No cap, so a context's thread count is the count it runs with;
        // node-llama-cpp's default cap (at least 4) oversubscribes small machines.
        maxThreads: 0,
        logLevel: LlamaLogLevel.error,
        logger: (_level, message) => this.log(message.trimEnd()),
      }),
    );
    // A failed start (no binary) is retried on the next call, not remembered.
    this.llama.catch(() => {
      this.llama = null;
    });
    return this.llama;
  }

  private async loadNow(quant: Quant, progress?: () => void): Promise<void> {
    if (this.disposed) throw new Error('the llama backend was disposed');
    if (this.model && this.level === quant) return;
    const file = this.config.models[quant];
    if (!file) throw new Error(`cannot load ${quant}: no model file configured (llm.models.${quant})`);
    if (!fs.existsSync(file)) throw new Error(`cannot load ${quant}: model file '${file}' does not exist`);
    progress?.();
    // The old level goes first: the governor steps down because memory is short.
    await this.unloadNow();
    this.level = quant;
    const llama = await this.getLlama();
    progress?.();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: file, onLoadProgress: () => progress?.() });
    } catch (err) {
      throw new Error(`cannot load ${quant}: model file '${file}': ${(err as Error).message}`, { cause: err });
    }
    progress?.();
    try {
      this.context = await model.createContext({
        contextSize: this.config.context,
        threads: this.threads,
        sequences: 1,
        // A silently smaller context would overflow the transcript budget the agent computed from llm.context.
        failedCreationRemedy: false,
      });
    } catch (err) {
      await model.dispose();
      throw new Error(`cannot create a ${this.config.context}-token context for '${file}': ${(err as Error).message}`, { cause: err });
    }
    this.model = model;
    const { TokenBias } = await lib();
    this.bias = new TokenBias(model.tokenizer).set(highByteTokens(model), 'never');
    progress?.();
  }

  private async unloadNow(): Promise<void> {
    const { context, model, chat } = this;
    this.progressBase = this.progress();
    chat?.dispose();
    this.chat = null;
    this.sequence = null;
    this.context = null;
    this.model = null;
    this.bias = null;
    this.chatWrapperName = null;
    await context?.dispose();
    await model?.dispose();
  }

  private grammarFor(llama: Llama, schema: Record<string, unknown>): Promise<LlamaGrammar> {
    let g = this.grammars.get(schema);
    if (!g) {
      g = llama.createGrammarForJsonSchema<GbnfJsonSchema>(schema as GbnfJsonSchema);
      this.grammars.set(schema, g);
      g.catch(() => this.grammars.delete(schema));
    }
    return g;
  }

  private async completeNow(req: CompleteRequest): Promise<CompleteResult> {
    if (req.signal?.aborted) throw abortError(req.signal.reason);
    const t0 = performance.now();
    await this.loadNow(this.level);
    const context = this.context as LlamaContext;
    const model = this.model as LlamaModel;
    const grammar = await this.grammarFor(await this.getLlama(), req.schema);
    const { LlamaChat } = await lib();
    const sequence = (this.sequence ??= context.getSequence());
    const chat = (this.chat ??= new LlamaChat({ contextSequence: sequence }));
    this.chatWrapperName = chat.chatWrapper.wrapperName;
    const history = toHistory(req.messages);
    // The prompt as the chat will evaluate it (the same wrapper, the same tokenizer).
    const promptTokens = chat.chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer).length;
    const meter = sequence.tokenMeter;
    const inBefore = meter.usedInputTokens;
    const outBefore = meter.usedOutputTokens;
    const tEval = performance.now();
    let first = 0;
    let firstCount = 0;
    try {
      const res = await chat.generateResponse(history, {
        grammar,
        maxTokens: req.maxTokens,
        temperature: this.config.temperature,
        tokenBias: this.bias ?? undefined,
        signal: req.signal,
        onToken: (tokens) => {
          if (first === 0) {
            first = performance.now();
            firstCount = tokens.length;
          }
          req.onToken?.(tokens.length);
        },
      });
      const end = performance.now();
      // Everything the model sampled, end-of-turn tokens included: the work done.
      // (The prompt's last token is evaluated for its logits, so it counts as
      // an output token of the meter; every other prompt token as an input one.)
      const outputs = meter.usedOutputTokens - outBefore;
      const evaluated = Math.min(promptTokens, meter.usedInputTokens - inBefore + (outputs > 0 ? 1 : 0));
      const tokensOut = Math.max(0, outputs - 1);
      // The speed of generation alone: from the first token (the prompt is
      // evaluated by then) to the last; a one-token answer falls back to the whole call.
      const gen = first > 0 && end > first && tokensOut > firstCount ? { ms: end - first, n: tokensOut - firstCount } : { ms: end - t0, n: tokensOut };
      return {
        text: res.response,
        tokensIn: promptTokens,
        tokensEvaluated: evaluated,
        tokensReused: promptTokens - evaluated,
        evalMs: first > 0 ? Math.round(first - tEval) : null,
        tokensOut,
        latencyMs: Math.round(end - t0),
        tokensPerS: gen.ms > 0 ? gen.n / (gen.ms / 1000) : null,
        model: path.basename(this.config.models[this.level] ?? ''),
        quantization: this.level,
      };
    } catch (err) {
      // An answer cut short leaves the sequence as it stands; the next call evaluates from where it departs.
      if (req.signal?.aborted) throw abortError(req.signal.reason);
      throw err;
    }
  }
}
