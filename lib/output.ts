// All printing goes through here: data on stdout, diagnostics on stderr, with
// levels, --json, colour only on a TTY, and sd-daemon priority prefixes when
// stderr is the journal (so `journalctl -p err` finds the errors).

import fs from 'node:fs';
import pc from 'picocolors';
import type { Writable } from 'node:stream';

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  debug?: boolean;
}

export interface OutputStreams {
  stdout: Writable & { isTTY?: boolean; fd?: number };
  stderr: Writable & { isTTY?: boolean; fd?: number };
  env: NodeJS.ProcessEnv;
}

/** sd-daemon(3) priorities. */
export const PRIORITY = { err: 3, warning: 4, notice: 5, info: 6, debug: 7 } as const;

/**
 * True when fd's file is the journal stream systemd set up: JOURNAL_STREAM holds
 * "device:inode" of it (systemd.exec(5)); a redirected stderr does not match.
 */
export function isJournalStream(env: NodeJS.ProcessEnv, fd: number | undefined): boolean {
  const js = env.JOURNAL_STREAM;
  if (!js || fd === undefined) return false;
  const [dev, ino] = js.split(':');
  try {
    const st = fs.fstatSync(fd);
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

export class Output {
  readonly prog: string;
  readonly opts: Required<OutputOptions>;
  private readonly streams: OutputStreams;
  readonly journal: boolean;
  private readonly colors: ReturnType<typeof pc.createColors>;

  constructor(prog: string, opts: OutputOptions = {}, streams?: Partial<OutputStreams>) {
    this.prog = prog;
    this.opts = { json: !!opts.json, quiet: !!opts.quiet, verbose: !!opts.verbose || !!opts.debug, debug: !!opts.debug };
    this.streams = {
      stdout: streams?.stdout ?? process.stdout,
      stderr: streams?.stderr ?? process.stderr,
      env: streams?.env ?? process.env,
    };
    const env = this.streams.env;
    const errFd = this.streams.stderr.fd ?? (this.streams.stderr === process.stderr ? 2 : undefined);
    this.journal = isJournalStream(env, errFd);
    const tty = !!this.streams.stderr.isTTY;
    const colour = tty && !this.journal && !this.opts.json && !('NO_COLOR' in env && env.NO_COLOR !== '');
    this.colors = pc.createColors(colour);
  }

  private line(priority: number, text: string, tag?: string): void {
    for (const one of text.split('\n')) {
      let s: string;
      // The journal knows the unit, not which selfware command wrote the line.
      if (this.journal) s = `<${priority}>${this.prog}: ${tag ? tag + ': ' : ''}${one}`;
      else s = `${this.prog}: ${tag ? tag + ': ' : ''}${one}`;
      this.streams.stderr.write(s + '\n');
    }
  }

  /** A fatal or serious problem; always shown. Under --json, a JSON object. */
  error(message: string, code?: number): void {
    if (this.opts.json && code !== undefined) {
      this.streams.stderr.write(JSON.stringify({ type: 'error', code, message }) + '\n');
      return;
    }
    if (this.journal) return this.line(PRIORITY.err, message);
    this.streams.stderr.write(`${this.colors.red(this.prog + ':')} ${message}\n`);
  }

  warn(message: string): void {
    if (this.journal) return this.line(PRIORITY.warning, message, 'warning');
    this.streams.stderr.write(`${this.prog}: ${this.colors.yellow('warning:')} ${message}\n`);
  }

  /** Shown even with --quiet: a notable event (a recovery, a skipped checkpoint). */
  notice(message: string): void {
    this.line(PRIORITY.notice, message);
  }

  info(message: string): void {
    if (this.opts.quiet) return;
    this.line(PRIORITY.info, message);
  }

  verbose(message: string): void {
    if (!this.opts.verbose || this.opts.quiet) return;
    this.line(PRIORITY.info, message);
  }

  debug(message: string): void {
    if (!this.opts.debug) return;
    this.line(PRIORITY.debug, message, 'debug');
  }

  /** One line (or block) of data on stdout. */
  print(text: string): void {
    this.streams.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }

  /** One JSON document on stdout. */
  json(value: unknown): void {
    this.streams.stdout.write(JSON.stringify(value) + '\n');
  }
}

/** Left-aligned columns for tabular text output. */
export function table(rows: string[][], gap = 2): string {
  if (rows.length === 0) return '';
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, visibleLength(c))));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - visibleLength(c) + gap)))
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

const ANSI = /\x1b\[[0-9;]*m/g;
function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}
