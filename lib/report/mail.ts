// The report by mail: one MIME multipart/alternative message (the text
// report and the HTML page with its charts), handed to the system's sendmail
// with -odi so that it is delivered (or queued) before we return.

import fs from 'node:fs';
import os from 'node:os';
import { unavailableError } from '../exit.js';
import { ORDER, problems, worst } from './check.js';
import { renderHtml } from './html.js';
import { headline, renderText } from './text.js';
import type { Report } from './types.js';

/** "[selfware run1] OK: 41 tasks, 95% success"; for several runs the worst first. */
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
}

/** Send; returns the Message-ID. Exit 69 when sendmail is missing or refuses. */
export async function mailReport(reports: Report[], opts: MailOptions): Promise<{ messageId: string; subject: string }> {
  try {
    fs.accessSync(opts.sendmail, fs.constants.X_OK);
  } catch {
    throw unavailableError(`cannot mail the report: ${opts.sendmail} is missing or not executable (install an MTA, such as exim4-daemon-light, or a relay, such as msmtp-mta; or set report.sendmail)`);
  }
  // Loaded here, not at start-up: every --check and report would pay for it.
  const { createTransport } = await import('nodemailer');
  const transport = createTransport({ sendmail: true, path: opts.sendmail, newline: 'unix', args: ['-odi', ...(opts.from ? ['-f', opts.from] : [])] });
  const subj = subject(reports);
  try {
    const info = await transport.sendMail({
      ...(opts.from ? { from: `selfware <${opts.from}>` } : {}),
      to: opts.to,
      subject: subj,
      text: renderText(reports),
      html: renderHtml(reports, { title: subj }),
      headers: { 'X-Selfware-Verdict': worst(reports.map((r) => r.verdict)) },
    });
    return { messageId: String(info.messageId), subject: subj };
  } catch (e) {
    throw unavailableError(`cannot mail the report to ${opts.to}: ${opts.sendmail}: ${(e as Error).message.trim()}`);
  }
}
