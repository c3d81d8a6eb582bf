// The soak's model: an OpenAI-compatible chat endpoint (POST
// /v1/chat/completions, streamed as server-sent events) that behaves like a
// local model in time: a first-token delay, tokens at a set rate, now and
// then a very slow or stalled answer, and an outage on demand (the port
// refuses connections, as a crashed llama-server's would).
//
// It plays a careful but plain coder. A soak task's prompt says
// `SOAK <id> steps=<n> file=<path>`; step i appends the line `<id> s<i>` to
// that file of the workspace (one shell action per step, not idempotent:
// run twice, the line is there twice), then it finishes. When the agent says
// an action was interrupted (the agent was restarted while it ran), it checks
// before it repeats, as a real model is told to: the line is appended only if
// it is not there. Every step's command also appends to a ledger outside the
// workspace (`<id> s<i> a<attempt> first|retry`), so the harness knows each
// execution, whatever the workspace later says.
//
// The server keeps no state about tasks: what to answer is read from the
// conversation the agent sends, as a model's answer is.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { INTERRUPTED_NOTE } from '../../lib/agent/transcript.js';
import { sleep } from '../../test/helpers.js';

export interface ModelTiming {
  /** Tokens a second while streaming. */
  tokensPerS: number;
  /** Before the first token. */
  firstTokenMs: number;
  /** The chance of an answer a tenth as fast, and of one that stalls for stallMs before its first token. */
  slowChance: number;
  stallChance: number;
  stallMs: number;
}

export interface ModelStats {
  requests: number;
  answers: number;
  refused: number;
  slow: number;
  stalled: number;
  /** Answers cut off because the agent went away (killed) mid-stream. */
  cut: number;
  tokensOut: number;
}

interface Msg {
  role: string;
  content: string;
}

const TASK_RE = /SOAK (\S+) steps=(\d+) file=(\S+)/;
const STEP_RE = /# soak (\S+) s(\d+)$/;

/** What the careful coder answers next, from the conversation. */
export function nextAction(messages: Msg[], ledger: string): Record<string, string> {
  const prompt = messages.find((m) => m.role === 'user' && TASK_RE.test(m.content));
  const m = prompt ? TASK_RE.exec(prompt.content) : null;
  if (!m) return { action: 'finish', summary: 'not a soak task: nothing to do' };
  const [, id, nText, file] = m as unknown as [string, string, string, string];
  const steps = Number(nText);
  const attempt = Number(/This is attempt (\d+) of/.exec(prompt?.content ?? '')?.[1] ?? 1);
  // The newest step the conversation shows, and whether the agent said it was interrupted.
  let last = 0;
  let interrupted = false;
  for (let i = 0; i < messages.length; i++) {
    const msg = messages[i] as Msg;
    if (msg.role !== 'assistant') continue;
    let cmd = '';
    try {
      cmd = String((JSON.parse(msg.content) as { command?: string }).command ?? '');
    } catch {
      continue;
    }
    const s = STEP_RE.exec(cmd);
    if (!s || s[1] !== id) continue;
    last = Math.max(last, Number(s[2]));
    // The note comes as the action's observation (the agent recorded the step as ended by the restart).
    interrupted = messages[i + 1]?.role === 'user' && (messages[i + 1] as Msg).content.includes(INTERRUPTED_NOTE.slice(0, 60));
  }
  // Earlier steps summarised into the prompt ("Earlier steps of this attempt, in short") still count.
  for (const s of (prompt?.content ?? '').matchAll(/soak (\S+) s(\d+)/g)) if (s[1] === id) last = Math.max(last, Number(s[2]));
  const line = (i: number) => `${id} s${i}`;
  const q = (s: string) => `'${s}'`;
  if (interrupted) {
    const l = line(last);
    // Check first: the step may have run before the restart.
    return {
      action: 'shell',
      command: `mkdir -p "$(dirname ${file})" && if ! grep -qxF ${q(l)} ${file} 2>/dev/null; then echo ${q(`${l} a${attempt} retry`)} >> ${ledger}; echo ${q(l)} >> ${file}; fi # soak ${id} s${last}`,
    };
  }
  if (last >= steps) return { action: 'finish', summary: `${id}: ${steps} lines written to ${file}` };
  const i = last + 1;
  // The ledger first, then a pause (a kill lands mid-step), then the effect.
  return { action: 'shell', command: `mkdir -p "$(dirname ${file})" && echo ${q(`${line(i)} a${attempt} first`)} >> ${ledger} && sleep 0.05 && echo ${q(line(i))} >> ${file} # soak ${id} s${i}` };
}

export class SoakModel {
  private server: http.Server | null = null;
  port = 0;
  readonly stats: ModelStats = { requests: 0, answers: 0, refused: 0, slow: 0, stalled: 0, cut: 0, tokensOut: 0 };
  private rand: () => number;

  constructor(
    private readonly timing: ModelTiming,
    private readonly ledger: string,
    rand: () => number,
  ) {
    this.rand = rand;
  }

  get up(): boolean {
    return this.server !== null;
  }

  /** Listen (again) on the same port (0 the first time: any free one). */
  async start(): Promise<void> {
    if (this.server) return;
    const s = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (s.address() as AddressInfo).port;
    this.server = s;
  }

  /** Down: the port refuses connections, answers in flight are cut (a crashed server). */
  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = null;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      this.stats.requests++;
      if (req.method === 'GET' && (req.url ?? '').startsWith('/v1/models')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: [{ id: 'soak', object: 'model' }] }));
        return;
      }
      let messages: Msg[] = [];
      try {
        messages = (JSON.parse(body) as { messages?: Msg[] }).messages ?? [];
      } catch {
        res.writeHead(400).end('bad json');
        return;
      }
      void this.answer(messages, res);
    });
  }

  private async answer(messages: Msg[], res: http.ServerResponse): Promise<void> {
    const text = JSON.stringify(nextAction(messages, this.ledger));
    const pieces = text.match(/.{1,4}/gs) ?? [];
    let perTokenMs = 1000 / this.timing.tokensPerS;
    let first = this.timing.firstTokenMs;
    const r = this.rand();
    if (r < this.timing.stallChance) {
      first += this.timing.stallMs;
      this.stats.stalled++;
    } else if (r < this.timing.stallChance + this.timing.slowChance) {
      perTokenMs *= 10;
      this.stats.slow++;
    }
    let gone = false;
    res.on('close', () => (gone = !res.writableFinished));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    await sleep(first);
    // Tokens in bursts of a timer tick (10 ms), at the set rate overall.
    let owed = 0;
    for (const p of pieces) {
      if (gone || !this.server) break;
      res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: p } }] })}\n\n`);
      this.stats.tokensOut++;
      owed += perTokenMs;
      if (owed >= 10) {
        await sleep(owed);
        owed = 0;
      }
    }
    if (gone || !this.server) {
      this.stats.cut++;
      res.destroy();
      return;
    }
    const promptTokens = Math.ceil(messages.reduce((n, m) => n + m.content.length, 0) / 3.5);
    res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: pieces.length } })}\n\n`);
    res.end('data: [DONE]\n\n');
    this.stats.answers++;
  }
}

