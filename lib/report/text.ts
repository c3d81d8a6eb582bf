// The report as plain text (the terminal, the mail's text part) and as
// Markdown (chat tools). Both come from the same sections.

import { formatBytes, formatDuration, plural } from '../units.js';
import { problems } from './check.js';
import { humanMs, pct } from './human.js';
import type { Report } from './types.js';
import { windowMs } from './window.js';

/** "2026-11-21 08:00 UTC" from an ISO time. */
function when(iso: string | null): string {
  if (!iso) return '-';
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

const num = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(1)}M` : x >= 1e4 ? `${(x / 1e3).toFixed(1)}k` : String(x));
const ago = (s: number | null): string => (s === null ? '-' : `${formatDuration(s * 1000)} ago`);
const list = (o: Record<string, number>, unit: (v: number) => string = String): string =>
  Object.entries(o)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${unit(v)}`)
    .join(', ') || 'none';
const mb = (x: number | null): string => (x === null ? '-' : formatBytes(x * 1048576));

/** How the completions' rate reads: per hour once the run has existed an hour of the window, else the span itself. */
/** What the prompts cost: evaluated against kept from the call before (prefix reuse). */
export function promptText(l: Report['llm']): string {
  if (l.prompt.reuse_ratio === null) return l.calls === 0 ? '-' : '- (no call said what it evaluated: the scripted backend and some endpoints cannot)';
  return `${num(l.prompt.evaluated)} tokens evaluated, ${num(l.prompt.reused)} reused (${Math.round(l.prompt.reuse_ratio * 1000) / 10}% of the prompts)`;
}

export function rateText(t: Report['tasks']): string {
  if (t.per_hour !== null) return `${t.per_hour} an hour`;
  return t.span_s > 0 ? `in ${formatDuration(t.span_s * 1000)}` : 'the agent never ran';
}

/** "4 ended: 2 completed, 2 failed (1 retried); 4 started". */
function memoryText(m: Report['memory']): string {
  const n = (x: number | null, what: string): string => (x === null ? `${what} unreadable` : plural(x, what === 'notes' ? 'note' : 'outcome'));
  return `${n(m.notes, 'notes')}, ${n(m.outcomes, 'outcomes')}${m.set_aside.length ? `; ${plural(m.set_aside.length, 'file')} set aside: ${m.set_aside.join(', ')}` : ''}`;
}

function attemptsText(a: Report['attempts']): string {
  const ended = a.completed + a.failed + a.cancelled;
  return `${ended} ended: ${a.completed} completed, ${a.failed} failed${a.retried ? ` (${a.retried} retried)` : ''}${a.looping ? ` (${a.looping} of them looping)` : ''}${a.cancelled ? `, ${a.cancelled} cancelled` : ''}; ${a.started} started`;
}

/** Why the report has no model speed or latency although there were calls: only the scripted backend (which has no model) answered, or no call recorded a speed. Null when there is nothing to explain. */
export function noSpeedReason(l: Report['llm']): string | null {
  if (l.tokens_per_s !== null || l.calls === 0) return null;
  const names = Object.keys(l.backends);
  return names.length === 1 && names[0] === 'scripted' ? 'scripted backend' : 'no call recorded a speed';
}

/** What an Alerts section with nothing in it says: "all 6 checks OK". */
export function allWell(r: Report): string {
  return `all ${plural(r.alerts.length, 'check')} OK`;
}

interface Section {
  title: string;
  rows: Array<[string, string]>;
}

/** The report's content, format-neutral. */
function sections(r: Report): Section[] {
  const out: Section[] = [];
  const a = r.agent;
  out.push({
    title: 'Run',
    rows: [
      ['started', r.run_started ? when(r.run_started) : 'the agent never ran'],
      [
        'agent',
        a.running
          ? `running since ${when(a.session_started)} (${formatDuration((a.uptime_s ?? 0) * 1000)}), pid ${a.pid}, ${a.status ?? '?'}${a.task ? ` on ${a.task}` : ''}${a.paused ? ', paused' : ''}`
          : `not running${a.last_seen ? `; last seen ${when(a.last_seen)}` : ''}`,
      ],
      ['sessions', `${plural(r.sessions.started, 'start')}, ${plural(r.restarts, 'restart')}${r.systemd ? ` (systemd: ${r.systemd.n_restarts ?? '?'} since the unit started; ${r.systemd.active_state})` : ''}, ${plural(r.sessions.unclean_ends, 'unclean end')}`],
      [
        'recoveries',
        r.recoveries.count
          ? `${r.recoveries.count} (${list(r.recoveries.by_reason)}), ${formatDuration(r.recoveries.duration_ms?.p50 ?? 0)} median, ${formatDuration(r.recoveries.duration_ms?.max ?? 0)} longest${r.recoveries.restored ? `, ${r.recoveries.restored} restored a checkpoint` : ''}`
          : 'none',
      ],
      ...(r.escalations.length ? ([['escalations', r.escalations.map((e) => `${when(e.time)}: ${e.reason ?? '?'}`).join('; ')]] as Array<[string, string]>) : []),
    ],
  });
  const t = r.tasks;
  const at = r.attempts;
  out.push({
    title: 'Tasks',
    rows: [
      ['completed', `${t.completed} (${rateText(t)})`],
      ['failed', `${t.failed}; success rate ${pct(t.success_rate)}`],
      ...(t.cancelled ? ([['cancelled', String(t.cancelled)]] as Array<[string, string]>) : []),
      ['attempts', attemptsText(at)],
      ['iterations', plural(r.iterations, 'step')],
      ...t.failure_reasons.map((f, i): [string, string] => [i === 0 ? 'top failures' : '', `${f.count}x ${f.reason}`]),
      // The reasons of the attempts retried, when there were some: the tasks' alone would hide them.
      ...(at.retried ? at.failure_reasons.map((f, i): [string, string] => [i === 0 ? 'failed attempts' : '', `${f.count}x ${f.reason}`]) : []),
    ],
  });
  const l = r.llm;
  const why = noSpeedReason(l);
  const unmeasured = why ? `- (${why})` : '-';
  out.push({
    title: 'LLM',
    rows: [
      ['calls', `${l.calls}${l.errors ? ` (${l.errors} failed)` : ''}`],
      ['tokens', `${num(l.tokens_in)} in, ${num(l.tokens_out)} out`],
      ['speed', l.tokens_per_s === null ? unmeasured : `${l.tokens_per_s} tokens/s average`],
      ['latency', l.latency_ms ? `${humanMs(l.latency_ms.p50)} median, ${humanMs(l.latency_ms.p99)} p99` : unmeasured],
      ['prompts', promptText(l)],
      ['prompt speed', l.prompt_tokens_per_s === null ? unmeasured : `${l.prompt_tokens_per_s} tokens/s evaluated`],
      ...(l.by_quantization.length > 1 ? ([['by level', l.by_quantization.map((q) => `${q.quantization} ${q.calls} calls${q.tokens_per_s === null ? '' : ` at ${q.tokens_per_s} tokens/s`}`).join(', ')]] as Array<[string, string]>) : []),
    ],
  });
  const c = r.checkpoints;
  out.push({
    title: 'Checkpoints',
    rows: [
      ['made', `${c.created}${c.created ? ` (${list(c.by_kind)})` : ''}, ${c.pruned} pruned, ${c.kept} kept`],
      ['last', c.last ? `${c.last.id} (${c.last.kind}), ${ago(c.age_s)}` : 'none'],
      ['disk', formatBytes(c.disk_bytes)],
    ],
  });
  const g = r.governor;
  const tierShown = Object.values(g.tier_s).some((v) => v > 0);
  out.push({
    title: 'Governor',
    rows: [
      ['now', g.current ? `${g.current.tier}, ${g.current.quantization ?? '-'}${g.current.actions.length ? `, ${g.current.actions.join(' ')}` : ''}` : 'no decision recorded'],
      ['tiers', tierShown ? list(g.tier_s, (v) => formatDuration(v * 1000)) : '-'],
      ['quantization', tierShown ? list(g.quantization_s, (v) => formatDuration(v * 1000)) : '-'],
      ...g.changes.slice(-8).map((ch, i): [string, string] => [i === 0 ? 'changes' : '', `${when(ch.time)} ${ch.tier}, ${ch.quantization ?? '-'}${ch.actions.length ? `, ${ch.actions.join(' ')}` : ''}${ch.reason && ch.reason !== 'normal' ? ` (${ch.reason})` : ''}`]),
      ...(g.changes.length > 8 ? ([['', `(${g.changes.length - 8} earlier changes not shown)`]] as Array<[string, string]>) : []),
    ],
  });
  const p = r.resources.peaks;
  out.push({
    title: 'Resource peaks',
    rows: r.resources.samples
      ? [
          ['VRAM', p.vram_used_mb === null ? 'no GPU readings' : `${mb(p.vram_used_mb)} of ${mb(p.vram_total_mb)} (${p.vram_pct}%)${p.gpu_temp === null ? '' : `, ${p.gpu_temp} °C`}`],
          ['RAM', `${mb(p.ram_used_mb)} of ${mb(p.ram_total_mb)} (${p.ram_pct}%), swap ${mb(p.swap_used_mb)}`],
          ['CPU', p.cpu_load === null ? '-' : `${p.cpu_load}%`],
          ['disk', p.disk_free_pct === null ? '-' : `${p.disk_free_pct}% free at the lowest`],
        ]
      : [['samples', 'none in this window (is sw-gpu-governor running?)']],
  });
  const q = r.queue;
  out.push({
    title: 'Queue now',
    rows: [
      ['tasks', `${q.pending} pending, ${q.in_progress} in progress, ${q.completed} completed, ${q.failed} failed, ${q.cancelled} cancelled${q.invalid ? `, ${q.invalid} unreadable` : ''}`],
      ...(r.approvals.pending.length
        ? r.approvals.pending.map((ap, i): [string, string] => [i === 0 ? 'approvals' : '', `${ap.id} for ${ap.task}, since ${when(ap.requested)}: ${ap.action}`])
        : ([['approvals', 'none waiting']] as Array<[string, string]>)),
      ['memory', memoryText(r.memory)],
    ],
  });
  // An OK alert is not an alert: only the others are listed.
  const bad = problems(r.alerts);
  out.push({ title: 'Alerts', rows: bad.length ? bad.map((al): [string, string] => [al.status, al.message]) : [['none', allWell(r)]] });
  if (r.warnings.length) out.push({ title: 'Warnings', rows: r.warnings.map((w): [string, string] => ['', w]) });
  return out;
}

export function headline(r: Report): string {
  const bad = problems(r.alerts);
  return `${r.verdict}: ${bad.length ? `${bad.map((a) => a.message).join('; ')}; ` : ''}${r.summary}`;
}

export function renderText(reports: Report[]): string {
  return reports
    .map((r) => {
      const lines = [`selfware ${r.run} on ${r.host}, ${when(r.since)} to ${when(r.until)} (${formatDuration(windowMs(r))})`, headline(r)];
      for (const s of sections(r)) {
        lines.push('', s.title);
        const w = Math.max(...s.rows.map(([k]) => k.length), 0);
        for (const [k, v] of s.rows) lines.push(`  ${k ? `${k}:`.padEnd(w + 2) : ''.padEnd(w + 2)}${v}`.trimEnd());
      }
      return lines.join('\n') + '\n';
    })
    .join('\n');
}

const mdEscape = (x: string): string => x.replace(/([\\`*_{}[\]<>|#])/g, '\\$1');

export function renderMarkdown(reports: Report[]): string {
  return reports
    .map((r) => {
      const lines = [`## selfware ${mdEscape(r.run)}: ${r.verdict}`, '', `${mdEscape(headline(r))}  `, `${mdEscape(r.host)}, ${when(r.since)} to ${when(r.until)} (${formatDuration(windowMs(r))})`];
      for (const s of sections(r)) {
        lines.push('', `**${s.title}**`, '');
        // A key over several rows (governor changes, approvals) becomes a nested list.
        let keyed = false;
        s.rows.forEach(([k, v], i) => {
          if (k === '') lines.push(`${keyed ? '  ' : ''}- ${mdEscape(v)}`);
          else if (s.rows[i + 1]?.[0] === '') lines.push(`- ${mdEscape(k)}:`, `  - ${mdEscape(v)}`);
          else lines.push(`- ${mdEscape(k)}: ${mdEscape(v)}`);
          keyed ||= k !== '';
        });
      }
      return lines.join('\n') + '\n';
    })
    .join('\n');
}
