// One interface for every language-model backend: local GGUF files through
// node-llama-cpp, an OpenAI-compatible endpoint, and a scripted one for dry
// runs and tests.

import type { Quant } from '../../config/schema.js';
import { sleep } from '../../sleep.js';

export type { Quant } from '../../config/schema.js';

/** Quantization levels, from the largest to the smallest. */
export const QUANT_LEVELS: readonly Quant[] = ['Q4_K_M', 'Q3_K_L', 'Q2_K'];

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface CompleteRequest {
  messages: ChatMessage[];
  /** The JSON schema the answer must satisfy (enforced by a grammar where the backend can). */
  schema: Record<string, unknown>;
  maxTokens: number;
  /** Called as tokens arrive, with how many came (the agent's watchdog pings on it). */
  onToken?: (count: number) => void;
  signal?: AbortSignal;
  /** What the answer is for (the scripted backend answers by task title, attempt and step). */
  task?: { id: string; title: string; attempt: number; step: number };
}

export interface CompleteResult {
  /** The raw answer (JSON text). */
  text: string;
  /** The prompt's tokens: those evaluated for this call and those kept from earlier ones. */
  tokensIn: number;
  /** Prompt tokens the model evaluated for this call; null where the backend cannot tell. */
  tokensEvaluated: number | null;
  /** Prompt tokens kept evaluated from an earlier call (a common prefix); null where the backend cannot tell. */
  tokensReused: number | null;
  /** Time to evaluate the prompt (to the first token); null where there is no model to measure. */
  evalMs: number | null;
  tokensOut: number;
  latencyMs: number;
  /** Generation speed; null where there is no model to measure (the scripted backend). */
  tokensPerS: number | null;
  model: string;
  quantization: Quant | null;
}

export interface LlmBackend {
  readonly name: 'llama' | 'openai' | 'scripted';
  /** A model is in memory (always true for backends without one). */
  readonly loaded: boolean;
  /** The level in use, or null where the backend has none. */
  readonly quantization: Quant | null;
  /**
   * Whether a level is a model of its own here (a GGUF file, a model name or
   * an endpoint configured for it); false: the server behind the backend
   * decides, and asking for the level switches nothing.
   */
  canSwitch(quant: Quant): boolean;
  /** Whether unload() frees the model's memory (false: a server keeps it, and cannot be told). */
  readonly canUnload: boolean;
  /** Load, or switch to, a quantization level; progress() is called while it works (start timeouts are extended on it). */
  load(quant: Quant, progress?: () => void): Promise<void>;
  /** Free the model's memory; the next load or complete brings it back. */
  unload(): Promise<void>;
  complete(req: CompleteRequest): Promise<CompleteResult>;
  dispose(): Promise<void>;
  /** The prompt's tokens by the loaded model's own tokenizer; absent where there is none (then estimateTokens). */
  countTokens?(text: string): number | null;
  /**
   * Tokens evaluated and generated so far, over the backend's life: the
   * agent's watchdog is fed only while this advances during a request.
   * Absent where the backend cannot see the model work (an endpoint
   * evaluates the prompt unseen): then the request's own timeout bounds it.
   */
  progress?(): number;
  /**
   * Save what the model has evaluated into dir, for the next load to go on
   * from (a planned stop, an unload); null when nothing is loaded or evaluated.
   */
  saveState?(dir: string): Promise<SavedState | null>;
  /** Load the state saved in dir if it is the loaded model's; the files are consumed either way. */
  restoreState?(dir: string): Promise<RestoredState>;
}

export interface SavedState {
  file: string;
  bytes: number;
  tokens: number;
  ms: number;
}

/** A saved state loaded (its tokens need no evaluation), none there (reason null), or one set aside and why. */
export type RestoredState = { loaded: true; tokens: number; bytes: number; ms: number; saved: string } | { loaded: false; reason: string | null };

/** A backend that cannot be reached (exit 69 after the configured patience). */
export class LlmUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LlmUnavailableError';
  }
}

/** The error an aborted request rejects with (the agent tells it from a failure by name). */
export function abortError(reason?: unknown): Error {
  const e = new Error('the request was aborted', reason === undefined ? undefined : { cause: reason });
  e.name = 'AbortError';
  return e;
}

/** Wait ms; an abort of signal rejects at once with abortError. */
export async function sleepOrAbort(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, signal);
  if (signal?.aborted) throw abortError(signal.reason);
}
