// The openai backend: any OpenAI-compatible chat-completions endpoint
// (llama-server, vLLM, Ollama). Answers stream, so tokens flow while the model
// works (the agent's watchdog pings on them); the action schema goes as
// response_format json_schema. Failures are retried with backoff; a circuit
// breaker stops hammering an endpoint that keeps failing; an endpoint down for
// longer than `patience` makes the agent exit 69 so systemd restarts it.

import type { LlmConfig } from '../../config/schema.js';
import { LlmUnavailableError, abortError, sleepOrAbort, type CompleteRequest, type CompleteResult, type LlmBackend, type Quant } from './types.js';

/** A failure worth retrying later (network, 5xx, 429, a timeout, an open breaker). */
export class TransientLlmError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
    this.name = 'TransientLlmError';
  }
}

type BreakerState = 'closed' | 'open' | 'half-open';

export interface OpenAiOptions {
  fetch?: typeof fetch;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export class OpenAiBackend implements LlmBackend {
  readonly name = 'openai' as const;
  private level: Quant | null = null;
  private breaker: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  /** When the current run of failures began (null while the endpoint works). */
  private unavailableSince: number | null = null;
  private readonly fetchFn: typeof fetch;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(
    private readonly config: LlmConfig,
    opts: OpenAiOptions = {},
  ) {
    this.fetchFn = opts.fetch ?? fetch;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? sleepOrAbort;
  }

  get loaded(): boolean {
    return !this.unloaded;
  }
  /** The level in use: null while the server decides (no model name or endpoint configured for a level). */
  get quantization(): Quant | null {
    return this.level;
  }
  get breakerState(): BreakerState {
    return this.breaker;
  }

  /** A level is a model of its own when a model name or an endpoint is configured for it. */
  canSwitch(quant: Quant): boolean {
    return !!(this.config.model_names[quant] || this.config.endpoints[quant]);
  }

  /** Only Ollama can be told to drop a model from memory. */
  get canUnload(): boolean {
    return this.config.server === 'ollama';
  }

  /** The model name requests carry: the level's, else llm.model. */
  get modelName(): string {
    return (this.level && this.config.model_names[this.level]) || this.config.model;
  }

  /** The base URL requests go to: the level's, else llm.endpoint. */
  get endpoint(): string {
    return (this.level && this.config.endpoints[this.level]) || this.config.endpoint;
  }

  /**
   * Switch to a level the config maps to a model name or an endpoint (on
   * Ollama, the old model is unloaded first: the governor steps down because
   * memory is short); a level it does not map changes nothing: the server decides.
   */
  async load(quant: Quant): Promise<void> {
    if (!this.canSwitch(quant)) {
      this.unloaded = false;
      return;
    }
    if (this.level !== null && this.level !== quant && !this.unloaded && this.canUnload) {
      const old = this.modelName;
      const next = this.config.model_names[quant] || this.config.model;
      if (old !== next) await this.ollamaUnload(old);
    }
    this.level = quant;
    this.unloaded = false;
  }

  async unload(): Promise<void> {
    if (!this.canUnload) return;
    await this.ollamaUnload(this.modelName);
    this.unloaded = true;
  }

  async dispose(): Promise<void> {}

  private unloaded = false;

  /** Ollama's native API: a generate request with keep_alive 0 drops the model from memory at once. */
  private async ollamaUnload(model: string): Promise<void> {
    const root = this.endpoint.replace(/\/+$/, '').replace(/\/v1$/, '');
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), Math.min(this.config.request_timeout, 30_000));
    try {
      const res = await this.fetchFn(`${root}/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, keep_alive: 0 }), signal: ctrl.signal });
      const body = (await res.text().catch(() => '')).slice(0, 200).replace(/\s+/g, ' ');
      if (!res.ok) throw new Error(`${root}/api/generate answered ${res.status}: ${body}`);
    } catch (e) {
      if (ctrl.signal.aborted) throw new Error(`${root}/api/generate: no answer to the unload of ${model} within ${Math.min(this.config.request_timeout, 30_000)} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private recordFailure(now: number): void {
    this.failures++;
    if (this.unavailableSince === null) this.unavailableSince = now;
    if (this.breaker === 'half-open' || this.failures >= this.config.breaker_threshold) {
      this.breaker = 'open';
      this.openedAt = now;
    }
  }

  /** Unavailable past patience: exit 69; otherwise: try again after a while. */
  private giveUp(message: string): never {
    const now = this.now();
    if (this.unavailableSince !== null && now - this.unavailableSince >= this.config.patience) {
      throw new LlmUnavailableError(`${this.endpoint} unavailable for ${Math.round((now - this.unavailableSince) / 1000)} s: ${message}`);
    }
    const wait = this.breaker === 'open' ? Math.max(1000, this.openedAt + this.config.breaker_cooldown - now) : 1000;
    throw new TransientLlmError(message, wait);
  }

  private succeed(): void {
    this.failures = 0;
    this.breaker = 'closed';
    this.unavailableSince = null;
  }

  async complete(req: CompleteRequest): Promise<CompleteResult> {
    let lastError = '';
    for (let attempt = 0; attempt <= this.config.retries; attempt++) {
      if (req.signal?.aborted) throw abortError();
      if (this.breaker === 'open') {
        if (this.now() < this.openedAt + this.config.breaker_cooldown) this.giveUp(`circuit breaker open after ${this.failures} failures in a row${lastError ? ` (${lastError})` : ''}`);
        this.breaker = 'half-open';
      }
      try {
        const r = await this.once(req);
        this.succeed();
        return r;
      } catch (e) {
        if ((e as Error).name === 'AbortError' && req.signal?.aborted) throw e;
        if (e instanceof FatalLlmError) throw e;
        lastError = (e as Error).message;
        const now = this.now();
        this.recordFailure(now);
        if ((this.breaker as BreakerState) === 'open' || now - (this.unavailableSince ?? now) >= this.config.patience) break;
        if (attempt < this.config.retries) await this.sleep(Math.min(30_000, 500 * 2 ** attempt), req.signal);
      }
    }
    this.giveUp(lastError);
  }

  private async once(req: CompleteRequest): Promise<CompleteResult> {
    const started = this.now();
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), this.config.request_timeout);
    const onAbort = (): void => ctrl.abort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
    const key = this.config.api_key_env ? process.env[this.config.api_key_env] : undefined;
    if (key) headers.authorization = `Bearer ${key}`;
    try {
      const res = await this.fetchFn(`${this.endpoint.replace(/\/+$/, '')}/chat/completions`, {
        method: 'POST',
        headers,
        signal: ctrl.signal,
        body: JSON.stringify({
          model: this.modelName,
          messages: req.messages,
          max_tokens: req.maxTokens,
          temperature: this.config.temperature,
          stream: true,
          stream_options: { include_usage: true },
          response_format: { type: 'json_schema', json_schema: { name: 'action', strict: true, schema: req.schema } },
        }),
      });
      if (!res.ok) {
        const body = (await res.text().catch(() => '')).slice(0, 300).replace(/\s+/g, ' ');
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
          throw new FatalLlmError(`${this.endpoint} answered ${res.status}: ${body}`);
        }
        throw new Error(`${this.endpoint} answered ${res.status}: ${body}`);
      }
      let text = '';
      let tokensIn = 0;
      let tokensOut = 0;
      let chunks = 0;
      let firstToken = 0;
      // What the server says of its prompt cache (OpenAI's usage.prompt_tokens_details, llama-server's timings); null: it said nothing.
      let cached: number | null = null;
      let evaluatedN: number | null = null;
      let promptMs: number | null = null;
      const count = (x: unknown): number | null => (typeof x === 'number' && Number.isInteger(x) && x >= 0 ? x : null);
      const reader = res.body?.getReader();
      if (!reader) throw new Error('no response body');
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') continue;
          let ev: {
            choices?: Array<{ delta?: { content?: string } }>;
            usage?: { prompt_tokens?: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } | null };
            timings?: { prompt_n?: number; prompt_ms?: number; cache_n?: number };
          };
          try {
            ev = JSON.parse(data);
          } catch {
            continue;
          }
          const piece = ev.choices?.[0]?.delta?.content;
          if (piece) {
            if (!firstToken) firstToken = this.now();
            text += piece;
            chunks++;
            req.onToken?.(1);
          }
          if (ev.usage) {
            tokensIn = ev.usage.prompt_tokens ?? tokensIn;
            tokensOut = ev.usage.completion_tokens ?? tokensOut;
            cached = count(ev.usage.prompt_tokens_details?.cached_tokens) ?? cached;
          }
          // llama-server's own figures: prompt tokens evaluated, those taken from its cache, and the time.
          if (ev.timings) {
            evaluatedN = count(ev.timings.prompt_n) ?? evaluatedN;
            cached = count(ev.timings.cache_n) ?? cached;
            promptMs = typeof ev.timings.prompt_ms === 'number' && Number.isFinite(ev.timings.prompt_ms) && ev.timings.prompt_ms >= 0 ? ev.timings.prompt_ms : promptMs;
          }
        }
      }
      if (tokensOut === 0) tokensOut = chunks;
      const told = tokensIn > 0;
      if (tokensIn === 0) tokensIn = Math.ceil(req.messages.reduce((n, m) => n + m.content.length, 0) / 3.5);
      const latencyMs = this.now() - started;
      const genMs = firstToken ? this.now() - firstToken : latencyMs;
      // Evaluation and reuse only as the server told them, never guessed.
      const tokensEvaluated = evaluatedN ?? (cached !== null && told ? Math.max(0, tokensIn - cached) : null);
      const tokensReused = cached ?? (evaluatedN !== null && told ? Math.max(0, tokensIn - evaluatedN) : null);
      return {
        text, tokensIn, tokensEvaluated, tokensReused, evalMs: promptMs === null ? null : Math.round(promptMs), tokensOut, latencyMs,
        tokensPerS: genMs > 0 ? (tokensOut * 1000) / genMs : null, model: this.modelName, quantization: this.level,
      }; // prettier-ignore
    } catch (e) {
      if (ctrl.signal.aborted && !req.signal?.aborted) throw new Error(`${this.endpoint}: no answer within ${this.config.request_timeout} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** A request the endpoint refuses as such (4xx): retrying cannot help. */
export class FatalLlmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FatalLlmError';
  }
}
