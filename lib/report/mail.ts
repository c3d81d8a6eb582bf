// The report by mail: one MIME multipart/alternative message (the text
// report and the HTML page with its charts), composed by nodemailer and
// handed to the system's sendmail by us, so that when the MTA refuses it we
// can say what the MTA said, not only that it exited 1.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { errnoText, unavailableError } from '../exit.js';
import { formatDuration } from '../units.js';
import { ORDER, problems, worst } from './check.js';
import { renderHtml } from './html.js';
import { headline, renderText } from './text.js';
import type { Report } from './types.js';

/** "[selfware run1] OK: 3 tasks: 3 completed, 0 failed"; for several runs the worst first. */
export function subject(reports: Report[]): string {
  if (reports.length === 1) return `[selfware ${(reports[0] as Report).run}] ${headline(reports[0] as Report)}`;
  const sorted = [...reports].sort((a, b) => ORDER.indexOf(b.verdict) - ORDER.indexOf(a.verdict) || a.run.localeCompare(b.run));
  const bad = sorted.filter((r) => r.verdict !== 'OK');
  const what = bad.length
    ? bad.map((r) => `${r.run} ${r.verdict}: ${problems(r.alerts)[0]?.message ?? r.summary}`).join('; ')
    : reports.map((r) => `${r.run}: ${r.summary}`).join('; ');
  return `[selfware ${os.hostname()}] ${worst(reports.map((r) => r.verdict))}: ${reports.length} runs; ${what}`;
}

export interface MailOptions {
  to: string;
  from: string | null;
  sendmail: string;
  /** How long sendmail may take to deliver or queue the mail (-odi waits for it); default 5 minutes. */
  timeoutMs?: number;
}

/** The first non-empty line of text, cut to 300 characters, or null. */
function firstLine(text: string): string | null {
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '');
  if (line === undefined) return null;
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/**
 * Give message to sendmail on its standard input. Resolves once sendmail
 * exits 0; otherwise rejects with the MTA's own first line of error (its
 * standard error, else its standard output), or how it ended when it said nothing.
 */
function handToSendmail(sendmail: string, args: string[], message: Buffer, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(sendmail, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    let timedOut = false;
    // Enough for the first lines; an MTA that talks on and on is not kept in memory.
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 65_536) err += d.toString();
    });
    child.stdout.on('data', (d: Buffer) => {
      if (out.length < 65_536) out += d.toString();
    });
    let timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      // One that ignores SIGTERM is not waited for forever either.
      timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(errnoText(e)));
    });
    // A sendmail that exits before reading all of the message breaks the pipe:
    // what it says, and how it exits, are the news, not the EPIPE.
    child.stdin.on('error', () => undefined);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`did not take the mail within ${formatDuration(timeoutMs)}`));
      else if (code === 0) resolve();
      else reject(new Error(firstLine(err) ?? firstLine(out) ?? (signal ? `killed by ${signal}` : `exited with status ${code}`)));
    });
    child.stdin.end(message);
  });
}

/** Send; returns the Message-ID. Exit 69 when sendmail is missing or refuses, with what it said. */
export async function mailReport(reports: Report[], opts: MailOptions): Promise<{ messageId: string; subject: string }> {
  try {
    fs.accessSync(opts.sendmail, fs.constants.X_OK);
  } catch {
    throw unavailableError(`cannot mail the report: ${opts.sendmail} is missing or not executable (install an MTA, such as exim4-daemon-light, or a relay, such as msmtp-mta; or set report.sendmail)`);
  }
  // Loaded here, not at start-up: every --check and report would pay for it.
  const { createTransport } = await import('nodemailer');
  const composer = createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  const subj = subject(reports);
  const info = await composer.sendMail({
    ...(opts.from ? { from: `selfware <${opts.from}>` } : {}),
    to: opts.to,
    subject: subj,
    text: renderText(reports),
    html: renderHtml(reports, { title: subj }),
    headers: { 'X-Selfware-Verdict': worst(reports.map((r) => r.verdict)) },
  });
  // -t: the recipients from the To: header; -oi: a line of one dot does not end the
  // message; -odi: delivered (or queued) before sendmail returns; -f: the envelope sender.
  const args = ['-t', '-oi', '-odi', ...(opts.from ? ['-f', opts.from] : [])];
  try {
    await handToSendmail(opts.sendmail, args, info.message as Buffer, opts.timeoutMs ?? 5 * 60_000);
  } catch (e) {
    throw unavailableError(`cannot mail the report to ${opts.to}: ${opts.sendmail}: ${(e as Error).message}`);
  }
  return { messageId: String(info.messageId), subject: subj };
}
