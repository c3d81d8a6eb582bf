// The report as one self-contained HTML page (the mail's HTML part, or
// --format html): the verdict, the figures as small tables, and four inline
// SVG charts. No script, no external asset, CSS simple enough for a mail client.

import { checkpointsChart, escapeXml as esc, resourcesChart, tasksChart, tokensChart } from './svg.js';
import type { Alert, Report, Status, Tier } from './types.js';
import { bucketWords, humanBytes, humanCount, humanDuration, humanMs, trim1 } from './human.js';
import { problems } from './check.js';
import { allWell, noSpeedReason } from './text.js';
import { windowMs } from './window.js';

const mib = (mb: number | null): string => (mb === null ? '–' : humanBytes(mb * 1048576));
/** A ratio from 0 to 1 as a percent. */
const ratio = (x: number | null): string => (x === null || !Number.isFinite(x) ? '–' : `${trim1(x * 100)}%`);
/** A value already in percent. */
const percent = (x: number | null): string => (x === null || !Number.isFinite(x) ? '–' : `${trim1(x)}%`);
const tps = (x: number | null): string => (x === null || !Number.isFinite(x) ? '–' : `${x.toFixed(1)} tokens/s`);

/** "2026-11-21 09:30" (UTC, as the page says once) from an ISO time. */
function when(iso: string | null): string {
  if (!iso) return '–';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return iso;
  return new Date(t).toISOString().slice(0, 16).replace('T', ' ');
}

// ---- Markup ----

/** Badge colours; none is a chart colour (the screenshot test counts those). */
const STATUS_COLOR: Record<Status, string> = { OK: '#237a3b', WARNING: '#b86e00', CRITICAL: '#b02a2a', UNKNOWN: '#6c757d' };
const TIER_COLOR: Record<Tier, string> = { normal: '#237a3b', warning: '#b86e00', critical: '#b02a2a' };

const FONT = `-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif`;

const STYLE = `
body{margin:0;padding:0;background:#f1f3f5;color:#212529;font-family:${FONT};font-size:14px;line-height:1.4}
.page{max-width:900px;margin:0 auto;padding:16px 12px}
.run{background:#ffffff;border:1px solid #dee2e6;border-radius:8px;padding:18px 20px;margin:0 0 20px}
h1{font-size:20px;margin:4px 0 12px}
h2{font-size:20px;margin:0}
h3{font-size:15px;margin:22px 0 6px;padding-bottom:3px;border-bottom:1px solid #e9ecef}
h4{font-size:13px;margin:0 0 4px;color:#495057;text-transform:uppercase;letter-spacing:.04em}
.meta{color:#6c757d;margin:4px 0 0}
.summary{font-size:16px;margin:10px 0 0}
.badge{display:inline-block;color:#ffffff;font-weight:bold;font-size:12px;border-radius:4px;padding:2px 8px;vertical-align:middle}
.cards{font-size:0}
.card{display:inline-block;vertical-align:top;width:264px;margin:0 12px 12px 0;padding:10px 12px;border:1px solid #e9ecef;border-radius:6px;background:#fcfcfd;font-size:13px}
table{border-collapse:collapse}
.kv{width:100%}
.kv td{padding:1px 0;vertical-align:top}
.kv td.k{color:#6c757d;padding-right:8px}
.kv td.v{text-align:right;font-variant-numeric:tabular-nums}
.list{width:100%;font-size:13px}
.list th{text-align:left;color:#6c757d;font-weight:normal;border-bottom:1px solid #dee2e6;padding:3px 8px 3px 0}
.list td{border-bottom:1px solid #f1f3f5;padding:3px 8px 3px 0;vertical-align:top}
.list td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sub{color:#6c757d;font-size:12px}
.foot{color:#868e96;font-size:12px;margin:8px 0 0}
svg.chart{display:block;margin:2px 0 4px}
`;

const badge = (s: Status): string => `<span class="badge" style="background:${STATUS_COLOR[s] ?? STATUS_COLOR.UNKNOWN}">${esc(s)}</span>`;
const tierLabel = (t: Tier): string => `<span style="color:${TIER_COLOR[t] ?? '#495057'};font-weight:bold">${esc(t)}</span>`;

/** A row of a key-value card: [key, value as already-escaped HTML]. */
type Row = [string, string];

function card(title: string, rows: Row[]): string {
  const body = rows.map(([k, v]) => `<tr><td class="k">${esc(k)}</td><td class="v">${v}</td></tr>`).join('');
  return `<div class="card"><h4>${esc(title)}</h4><table class="kv">${body}</table></div>`;
}

/** A full-width table; cells are already-escaped HTML, `num` marks right-aligned columns. */
function list(head: string[], rows: string[][], num: number[] = []): string {
  const th = head.map((h, i) => `<th${num.includes(i) ? ' style="text-align:right"' : ''}>${esc(h)}</th>`).join('');
  const tr = rows.map((r) => `<tr>${r.map((c, i) => `<td${num.includes(i) ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`).join('');
  return `<table class="list"><tr>${th}</tr>${tr}</table>`;
}

/** The newest `max` of a list, and a line saying how many older ones were left out. */
function newest<T>(items: T[], max: number): { shown: T[]; note: string } {
  if (items.length <= max) return { shown: items, note: '' };
  return { shown: items.slice(-max), note: `<p class="sub">${items.length - max} earlier not shown.</p>` };
}

const byCount = (o: Record<string, number>, fmt: (v: number) => string = humanCount): Row[] =>
  Object.entries(o)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]): Row => [`  ${k}`, esc(fmt(v))]);

/** An alert's value or threshold in its unit: a 0–1 ratio as a percent, seconds as a duration. */
function alertValue(a: Alert, v: number | null): string {
  if (v === null || !Number.isFinite(v)) return '–';
  if (a.uom === 's') return humanDuration(v);
  if (a.uom === '%') return percent(v);
  if (a.uom === '' && a.min === 0 && a.max === 1) return ratio(v);
  return `${humanCount(v)}${a.uom}`;
}

function alertThreshold(a: Alert, v: number | null): string {
  if (v === null) return '–';
  return `${a.worse === 'below' ? '&lt;' : '&gt;'} ${esc(alertValue(a, v))}`;
}

function header(r: Report): string {
  const window = `${esc(when(r.since))} → ${esc(when(r.until))} UTC (${esc(humanDuration(windowMs(r) / 1000))})`;
  return (
    `<table style="width:100%"><tr><td style="vertical-align:middle"><h2>${esc(r.run)}</h2></td>` +
    `<td style="text-align:right;vertical-align:middle">${badge(r.verdict)}</td></tr></table>` +
    `<p class="meta">on <b>${esc(r.host)}</b> · ${window}</p>` +
    `<p class="summary">${esc(r.summary)}</p>`
  );
}

/** The alerts that are not OK (an OK alert is not an alert), or one line saying all is well. */
function alerts(r: Report): string {
  if (!r.alerts.length) return '';
  const bad = problems(r.alerts);
  if (!bad.length) return `<h3>Alerts</h3><p>None: ${esc(allWell(r))}.</p>`;
  const rows = bad.map((a) => [badge(a.status), esc(a.name), esc(a.message), esc(alertValue(a, a.value)), alertThreshold(a, a.warning), alertThreshold(a, a.critical)]);
  return `<h3>Alerts</h3>${list(['Status', 'Alert', '', 'Value', 'Warning', 'Critical'], rows, [3, 4, 5])}`;
}

function figures(r: Report): string {
  const a = r.agent;
  const cards: string[] = [];
  const run: Row[] = [
    ['started', esc(r.run_started ? when(r.run_started) : 'never ran')],
    ['agent', a.running ? `<b style="color:${STATUS_COLOR.OK}">running</b>${a.pid === null ? '' : ` <span class="sub">pid ${a.pid}</span>`}` : `<b style="color:${STATUS_COLOR.UNKNOWN}">not running</b>`],
  ];
  if (a.status !== null || a.paused) run.push(['status', esc(`${a.status ?? '–'}${a.paused ? ', paused' : ''}`)]);
  if (a.task !== null) run.push(['task', esc(a.task)]);
  if (a.running) run.push(['uptime', esc(humanDuration(a.uptime_s))]);
  else if (a.last_seen) run.push(['last seen', esc(when(a.last_seen))]);
  run.push(['sessions', `${r.sessions.started}${r.sessions.unclean_ends ? ` <span class="sub">(${r.sessions.unclean_ends} unclean)</span>` : ''}`]);
  run.push(['restarts', String(r.restarts)]);
  if (r.systemd) {
    run.push(['systemd', esc(r.systemd.active_state)]);
    run.push(['NRestarts', esc(r.systemd.n_restarts === null ? '–' : String(r.systemd.n_restarts))]);
  }
  cards.push(card('Run and agent', run));

  const t = r.tasks;
  const at = r.attempts;
  const taskRows: Row[] = [
    ['completed', esc(humanCount(t.completed))],
    ['failed', esc(humanCount(t.failed))],
    ['cancelled', esc(humanCount(t.cancelled))],
    ['success rate', `<b>${esc(ratio(t.success_rate))}</b>`],
    // A rate is not extrapolated from less than an hour: the span instead.
    ['per hour', t.per_hour !== null ? esc(trim1(t.per_hour)) : `–${t.span_s > 0 ? ` <span class="sub">(${t.completed} in ${esc(humanDuration(t.span_s))})</span>` : ''}`],
    ['attempts', `${esc(humanCount(at.completed + at.failed + at.cancelled))}${at.retried ? ` <span class="sub">(${esc(humanCount(at.retried))} retried)</span>` : ''}${at.looping ? ` <span class="sub">(${esc(humanCount(at.looping))} looping)</span>` : ''}`],
    ['iterations', esc(humanCount(r.iterations))],
  ];
  cards.push(card('Tasks', taskRows));

  const l = r.llm;
  const why = noSpeedReason(l);
  const unmeasured = why ? `– <span class="sub">(${esc(why)})</span>` : '–';
  cards.push(
    card('LLM', [
      ['calls', esc(humanCount(l.calls))],
      ['errors', `${esc(humanCount(l.errors))}${l.calls && l.errors ? ` <span class="sub">(${esc(ratio(l.errors / l.calls))})</span>` : ''}`],
      ['tokens in', esc(humanCount(l.tokens_in))],
      ['tokens out', esc(humanCount(l.tokens_out))],
      ['speed', l.tokens_per_s === null ? unmeasured : esc(tps(l.tokens_per_s))],
      ['latency p50', l.latency_ms ? esc(humanMs(l.latency_ms.p50)) : unmeasured],
      ['latency p99', l.latency_ms ? esc(humanMs(l.latency_ms.p99)) : unmeasured],
      ['prompt reuse', l.prompt.reuse_ratio === null ? '–' : `${esc(ratio(l.prompt.reuse_ratio))} <span class="sub">(${esc(humanCount(l.prompt.evaluated))} evaluated, ${esc(humanCount(l.prompt.reused))} reused)</span>`],
      ['prompt speed', l.prompt_tokens_per_s === null ? '–' : esc(tps(l.prompt_tokens_per_s))],
    ]),
  );

  const rec = r.recoveries;
  cards.push(
    card('Recoveries', [
      ['count', String(rec.count)],
      ...byCount(rec.by_reason),
      ['restored', String(rec.restored)],
      ['median', esc(humanMs(rec.duration_ms?.p50 ?? null))],
      ['longest', esc(humanMs(rec.duration_ms?.max ?? null))],
      ...(r.escalations.length ? ([['escalations', `<b style="color:${STATUS_COLOR.CRITICAL}">${r.escalations.length}</b>`]] as Row[]) : []),
    ]),
  );

  const c = r.checkpoints;
  cards.push(
    card('Checkpoints', [
      ['created', esc(humanCount(c.created))],
      ...byCount(c.by_kind),
      ['pruned', esc(humanCount(c.pruned))],
      ['kept', esc(humanCount(c.kept))],
      ['last', c.last ? `${esc(c.last.kind)} <span class="sub">${esc(when(c.last.time))}</span>` : '–'],
      ['age', esc(c.age_s === null ? '–' : humanDuration(c.age_s))],
      ['disk used', esc(humanBytes(c.disk_bytes))],
    ]),
  );

  const g = r.governor;
  const known = Object.values(g.tier_s).some((v) => v > 0);
  cards.push(
    card('Governor', [
      ['now', g.current ? `${tierLabel(g.current.tier)}${g.current.quantization ? ` ${esc(g.current.quantization)}` : ''}` : '–'],
      ['decisions', esc(humanCount(g.decisions))],
      ...(known ? (['normal', 'warning', 'critical'] as Tier[]).map((tier): Row => [`${tier} tier`, esc(humanDuration(g.tier_s[tier] ?? 0))]) : []),
      ...byCount(g.quantization_s, (v) => humanDuration(v)).map(([k, v]): Row => [`at ${k.trim()}`, v]),
    ]),
  );

  const p = r.resources.peaks;
  const of = (used: number | null, total: number | null, pct: number | null): string =>
    used === null ? '–' : `${esc(mib(used))}${total === null ? '' : ` <span class="sub">of ${esc(mib(total))}</span>`}${pct === null ? '' : ` (${esc(percent(pct))})`}`;
  cards.push(
    card('Resource peaks', [
      ['VRAM', of(p.vram_used_mb, p.vram_total_mb, p.vram_pct)],
      ['RAM', of(p.ram_used_mb, p.ram_total_mb, p.ram_pct)],
      ['swap', esc(mib(p.swap_used_mb))],
      ['GPU temp', esc(p.gpu_temp === null ? '–' : `${Math.round(p.gpu_temp)} °C`)],
      ['CPU load', esc(p.cpu_load === null ? '–' : trim1(p.cpu_load))],
      ['disk free, lowest', esc(percent(p.disk_free_pct))],
      ['samples', esc(humanCount(r.resources.samples))],
    ]),
  );

  const q = r.queue;
  cards.push(
    card('Queue now', [
      ['pending', String(q.pending)],
      ['in progress', String(q.in_progress)],
      ['completed', esc(humanCount(q.completed))],
      ['failed', esc(humanCount(q.failed))],
      ['cancelled', esc(humanCount(q.cancelled))],
      ...(q.invalid ? ([['unreadable', `<b style="color:${STATUS_COLOR.CRITICAL}">${q.invalid}</b>`]] as Row[]) : []),
      ['approvals waiting', r.approvals.pending.length ? `<b style="color:${STATUS_COLOR.WARNING}">${r.approvals.pending.length}</b>` : '0'],
      ['memory', `${r.memory.notes ?? '?'} notes, ${r.memory.outcomes ?? '?'} outcomes${r.memory.set_aside.length ? ` <b style="color:${STATUS_COLOR.WARNING}">${r.memory.set_aside.length} set aside</b>` : ''}`],
    ]),
  );
  // No whitespace between the inline blocks, so their widths add up exactly.
  return `<h3>Key figures</h3><div class="cards">${cards.join('')}</div>`;
}

function charts(r: Report): string {
  const why = noSpeedReason(r.llm);
  return [
    `<h3>Tasks finished per ${esc(bucketWords(r.series.bucket_s))} <span class="sub">and attempts retried</span></h3>${tasksChart(r)}`,
    `<h3>Model speed <span class="sub">tokens/s, mean of each ${esc(bucketWords(r.series.bucket_s))}</span></h3>${tokensChart(r, why ? `no model speed: ${why}` : undefined)}`,
    `<h3>VRAM and RAM used <span class="sub">over the governor's tier</span></h3>${resourcesChart(r)}`,
    `<h3>Checkpoints</h3>${checkpointsChart(r)}`,
  ].join('\n');
}

function details(r: Report): string {
  const out: string[] = [];
  if (r.tasks.failure_reasons.length) {
    const { shown, note } = newest(r.tasks.failure_reasons, 10);
    out.push(`<h3>Why tasks failed</h3>${list(['Tasks', 'Reason'], shown.map((f) => [esc(humanCount(f.count)), esc(f.reason)]), [0])}${note}`);
  }
  // The retried attempts' reasons too, which the tasks' alone would hide.
  if (r.attempts.retried && r.attempts.failure_reasons.length) {
    const { shown, note } = newest(r.attempts.failure_reasons, 10);
    out.push(`<h3>Why attempts failed <span class="sub">retried or not</span></h3>${list(['Attempts', 'Reason'], shown.map((f) => [esc(humanCount(f.count)), esc(f.reason)]), [0])}${note}`);
  }
  if (r.llm.by_quantization.length) {
    out.push(`<h3>Model calls by quantization</h3>${list(['Quantization', 'Calls', 'Speed'], r.llm.by_quantization.map((q) => [esc(q.quantization), esc(humanCount(q.calls)), esc(tps(q.tokens_per_s))]), [1, 2])}`);
  }
  if (r.governor.changes.length) {
    const { shown, note } = newest(r.governor.changes, 20);
    out.push(
      `<h3>Governor changes</h3>${note}${list(
        ['Time', 'Tier', 'Quantization', 'Actions', 'Reason'],
        shown.map((c) => [esc(when(c.time)), tierLabel(c.tier), esc(c.quantization ?? '–'), esc(c.actions.join(', ') || '–'), esc(c.reason ?? '–')]),
      )}`,
    );
  }
  if (r.recoveries.list.length) {
    const { shown, note } = newest(r.recoveries.list, 20);
    out.push(
      `<h3>Recoveries</h3>${note}${list(
        ['Time', 'Reason', 'Action', 'Checkpoint', 'Took', 'Requeued', ''],
        shown.map((x) => [
          esc(when(x.time)),
          esc(x.reason ?? '–'),
          esc(x.action ?? '–'),
          esc(x.checkpoint ?? '–'),
          esc(humanMs(x.duration_ms)),
          esc(x.requeued === null ? '–' : String(x.requeued)),
          x.ok ? `<span style="color:${STATUS_COLOR.OK}">ok</span>` : `<b style="color:${STATUS_COLOR.CRITICAL}">failed</b>`,
        ]),
        [4, 5],
      )}`,
    );
  }
  if (r.escalations.length) {
    out.push(`<h3>Escalations</h3>${list(['Time', 'Reason', 'Failures'], r.escalations.map((e) => [esc(when(e.time)), esc(e.reason ?? '–'), esc(e.failures === null ? '–' : String(e.failures))]), [2])}`);
  }
  if (r.approvals.pending.length) {
    out.push(`<h3>Approvals waiting</h3>${list(['Id', 'Task', 'Action', 'Requested'], r.approvals.pending.map((a) => [esc(a.id), esc(a.task), esc(a.action), esc(when(a.requested))]))}`);
  }
  if (r.warnings.length) {
    out.push(`<h3>Warnings</h3><ul>${r.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>`);
  }
  return out.join('\n');
}

/** The anchor of a run's section: its name with anything but [A-Za-z0-9_-] replaced. */
const anchor = (run: string): string => `run-${run.replace(/[^A-Za-z0-9_-]/g, '_')}`;

function runSection(r: Report): string {
  return [
    `<div class="run" id="${esc(anchor(r.run))}">`,
    header(r),
    alerts(r),
    figures(r),
    charts(r),
    details(r),
    `<p class="foot">Generated by sw-report at ${esc(when(r.generated_at))} UTC. Times are UTC.</p>`,
    '</div>',
  ].join('\n');
}

function overview(reports: Report[]): string {
  const rows = reports.map((r) => [badge(r.verdict), `<a href="#${esc(anchor(r.run))}" style="color:#1864ab">${esc(r.run)}</a>`, esc(r.host), esc(r.summary)]);
  return `<div class="run">${list(['', 'Run', 'Host', 'Summary'], rows)}</div>`;
}

/** One page for one or more runs (several with sw-report --all). */
export function renderHtml(reports: Report[], opts: { title?: string } = {}): string {
  const first = reports[0];
  const title = opts.title ?? (reports.length === 1 && first ? `selfware ${first.run}: ${first.verdict}` : `selfware: ${reports.length} runs`);
  const body = reports.length === 0 ? '<div class="run"><p>No runs.</p></div>' : [reports.length > 1 ? overview(reports) : '', ...reports.map(runSection)].join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body style="margin:0;padding:0;background:#f1f3f5">
<div class="page" style="max-width:900px;margin:0 auto;font-family:${esc(FONT)}">
<h1>${esc(title)}</h1>
${body}
</div>
</body>
</html>
`;
}
