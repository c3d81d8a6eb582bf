// The report as one self-contained HTML page (the mail's HTML part, or
// --format html): the verdict, the figures as tables, and four inline SVG
// charts. No script, no external asset, simple CSS a mail client keeps.

import { formatDuration } from '../units.js';
import { checkpointsChart, esc, resourcesChart, tasksChart, tokensChart } from './svg.js';
import { headline, sections, when } from './text.js';
import type { Report, Status } from './types.js';

/** Badge colours, distinct from the charts' (the screenshot test counts those). */
const BADGE: Record<Status, string> = { OK: '#1e7e34', WARNING: '#b07800', CRITICAL: '#b3261e', UNKNOWN: '#6b7280' };

const STYLE = `
body{margin:0;padding:16px;background:#f4f5f7;color:#222;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.run{max-width:900px;margin:0 auto 24px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:16px 20px}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:15px;margin:18px 0 6px;border-bottom:1px solid #eee;padding-bottom:3px}
.meta{color:#666;margin:0 0 10px}
.badge{display:inline-block;color:#fff;font-weight:bold;border-radius:4px;padding:1px 8px;margin-right:8px}
table.figures{border-collapse:collapse;width:100%}
table.figures td{padding:2px 8px 2px 0;vertical-align:top}
table.figures td.k{color:#666;white-space:nowrap;width:9em}
.alert-WARNING{color:#8a5d00;font-weight:bold}
.alert-CRITICAL{color:#b3261e;font-weight:bold}
.alert-UNKNOWN{color:#555;font-weight:bold}
.chart{display:block;margin:4px 0 10px}
.grid{display:block}
.foot{color:#888;font-size:12px;margin-top:12px}
`;

function table(rows: Array<[string, string]>, alerts = false): string {
  return `<table class="figures">${rows
    .map(([k, v]) => `<tr><td class="k${alerts ? ` alert-${esc(k)}` : ''}">${esc(k)}</td><td>${esc(v)}</td></tr>`)
    .join('')}</table>`;
}

function runHtml(r: Report): string {
  const out: string[] = [];
  out.push(`<div class="run" id="run-${esc(r.run)}">`);
  out.push(`<h1><span class="badge" style="background:${BADGE[r.verdict]}">${esc(r.verdict)}</span>selfware ${esc(r.run)}</h1>`);
  out.push(`<p class="meta">${esc(headline(r))}<br>${esc(r.host)}, ${esc(when(r.since))} to ${esc(when(r.until))} (${esc(formatDuration(r.hours * 3_600_000))})</p>`);
  const secs = sections(r);
  const byTitle = new Map(secs.map((s) => [s.title, s]));
  const put = (title: string): void => {
    const s = byTitle.get(title);
    if (s) out.push(`<h2>${esc(s.title)}</h2>${table(s.rows, s.title === 'Alerts')}`);
  };
  put('Alerts');
  out.push(`<h2>Tasks</h2>${tasksChart(r)}`);
  const tasks = byTitle.get('Tasks');
  if (tasks) out.push(table(tasks.rows));
  out.push(`<h2>LLM</h2>${tokensChart(r)}`);
  const llm = byTitle.get('LLM');
  if (llm) out.push(table(llm.rows));
  out.push(`<h2>Resources and the governor</h2>${resourcesChart(r)}`);
  const gov = byTitle.get('Governor');
  const res = byTitle.get('Resource peaks');
  out.push(table([...(gov?.rows ?? []), ...(res?.rows ?? [])]));
  out.push(`<h2>Checkpoints</h2>${checkpointsChart(r)}`);
  const ck = byTitle.get('Checkpoints');
  if (ck) out.push(table(ck.rows));
  put('Run');
  put('Queue now');
  put('Warnings');
  out.push(`<p class="foot">sw-report, ${esc(when(r.generated_at))}. Times are UTC.</p></div>`);
  return out.join('\n');
}

export function renderHtml(reports: Report[], opts: { title?: string } = {}): string {
  const title = opts.title ?? (reports.length === 1 ? `selfware ${(reports[0] as Report).run}: ${(reports[0] as Report).verdict}` : `selfware: ${reports.length} runs`);
  const body = reports.length ? reports.map(runHtml).join('\n') : '<div class="run"><p>No runs.</p></div>';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}
