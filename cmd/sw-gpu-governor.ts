#!/usr/bin/env node
// sw-gpu-governor: watch VRAM, RAM, disk, CPU and GPU temperature; decide
// quantization, unload, pause and throttle; publish the decision for agents.

import { Command } from 'commander';
import { action, createProgram, main, optsOf, outputFor, withCommonOptions } from '../lib/cli.js';
import { EXIT, noInputError } from '../lib/exit.js';
import { loadGovernorConfig } from '../lib/governor/config.js';
import { decideOnce, runGovernor, sample } from '../lib/governor/index.js';
import { hostRoots } from '../lib/governor/proc.js';
import { RESOURCES } from '../lib/governor/decide.js';
import { decisionFile, readDecision, type Decision } from '../lib/governor/decision.js';
import { initNotify, ready, status, stopping, watchdog, watchdogIntervalMs } from '../lib/notify.js';
import { table, type Output } from '../lib/output.js';
import { roots } from '../lib/run.js';
import { formatBytes } from '../lib/units.js';

const UNIT: Record<string, string> = { vram: '% used', ram: '% used', disk: '% free', cpu: '% others', gpu_temp: ' °C' };

function printDecision(out: Output, d: Decision): void {
  const r = d.readings as Record<string, { value: number | null; tier: string }> & {
    gpus: Array<{ index: number; name: string; vram_used_mb: number; vram_total_mb: number; temp_c: number | null; util_pct: number | null }>;
    gpu_note: string | null;
    disks: Array<{ path: string; runs: string[]; free_bytes: number }>;
    cpu_load_pct?: number | null;
    cpu_own_pct?: number | null;
    cpu_runs?: Array<{ run: string; pct: number | null }>;
  };
  const rows: string[][] = [
    ['tier:', d.tier],
    ['quantization:', d.quantization],
    ['actions:', d.actions.length ? d.actions.join(', ') + (d.context_limit ? ` (context ${d.context_limit} tokens)` : '') : 'none'],
  ];
  for (const k of RESOURCES) {
    const v = r[k];
    let extra = '';
    if (k === 'vram') extra = r.gpus.length ? r.gpus.map((g) => `GPU ${g.index} ${g.name}: ${formatBytes(g.vram_used_mb * 1048576)} of ${formatBytes(g.vram_total_mb * 1048576)}${g.util_pct !== null ? `, ${g.util_pct}% busy` : ''}`).join('; ') : `no GPU (${r.gpu_note ?? 'none'})`;
    if (k === 'cpu' && r.cpu_load_pct !== undefined && r.cpu_load_pct !== null) {
      const runs = (r.cpu_runs ?? []).map((x) => `${x.run} ${x.pct ?? '-'}%`).join(', ');
      extra = `own ${r.cpu_own_pct ?? '-'}%${runs ? ` (${runs})` : ''}, all ${r.cpu_load_pct}%`;
    }
    if (k === 'disk') extra = r.disks.map((x) => `${x.path}${x.runs.length ? ` (${x.runs.join(', ')})` : ''}: ${formatBytes(x.free_bytes)} free`).join('; ');
    rows.push([`${k}:`, v && v.value !== null ? `${v.value}${UNIT[k]} (${v.tier})` : '-', extra]);
  }
  out.print(table(rows, 2));
  if (d.reasons.length) out.info(`because: ${d.reasons.join('; ')}`);
}

function statusLine(d: Decision): string {
  const r = d.readings as Record<string, { value: number | null }>;
  const v = (k: string, u: string): string | null => (r[k]?.value !== null && r[k]?.value !== undefined ? `${k} ${r[k]?.value}${u}` : null);
  return [d.tier, d.quantization, d.actions.join(' ') || null, v('vram', '%'), v('ram', '%'), v('disk', '% free'), v('cpu', '% others')].filter((x) => x).join(', ');
}

function buildProgram(): Command {
  const program = createProgram('sw-gpu-governor', 'Watch GPU, RAM, disk, CPU and temperature; decide quantization, unload, pause and throttle for selfware runs.');
  withCommonOptions(program.command('run').description('the daemon: sample, decide and publish until stopped'), { json: false }).action(
    action(async (_o: unknown, cmd: Command) => {
      const out = outputFor(cmd);
      const r = roots();
      const { config, file } = await loadGovernorConfig(r);
      await initNotify();
      const wd = watchdogIntervalMs();
      if (wd > 0 && config.nvidia_smi_timeout > wd / 2) {
        out.warn(`nvidia_smi_timeout ${config.nvidia_smi_timeout} ms is over half the watchdog (${wd} ms); using ${Math.floor(wd / 2)} ms`);
        config.nvidia_smi_timeout = Math.floor(wd / 2);
      }
      const ctrl = new AbortController();
      const stop = (sig: string): void => {
        out.notice(`${sig}: stopping`);
        stopping();
        ctrl.abort();
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      let first = true;
      out.info(`governor started (${file ?? 'default configuration'}); publishing to ${decisionFile(r.runtimeDir)} every ${config.interval} ms`);
      await runGovernor(config, r, {
        signal: ctrl.signal,
        host: hostRoots(),
        // Between samples too, so an interval longer than the watchdog is no hang.
        keepalive: watchdog,
        keepaliveMs: wd > 0 ? Math.floor(wd / 2) : 0,
        warn: (l) => out.warn(l),
        // Each transition once, at err (into critical) or warning (the rest, the way back to normal too).
        transition: (d, line) => (d.tier === 'critical' ? out.error(line) : out.warn(line)),
        tick: (d) => {
          if (first) {
            ready(statusLine(d));
            first = false;
          } else status(statusLine(d));
          watchdog();
        },
      });
      return EXIT.OK;
    }),
  );
  withCommonOptions(program.command('once').description('one sample and the decision from it alone (no dwell, no cpu_sustain; the CPU load is that of the next half second), for scripts and cron')).action(
    action(async (_o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      const r = roots();
      const { config } = await loadGovernorConfig(r);
      const d = decideOnce(await sample({ nvidiaSmi: config.nvidia_smi, nvidiaSmiTimeout: config.nvidia_smi_timeout, stateRoot: r.stateDir, host: hostRoots() }), config);
      if (o.json) out.json(d);
      else printDecision(out, d);
    }),
  );
  withCommonOptions(program.command('status').description('the decision the daemon publishes now')).action(
    action(async (_o: unknown, cmd: Command) => {
      const o = optsOf(cmd);
      const out = outputFor(cmd);
      const r = roots();
      const { decision, stale } = readDecision(r.runtimeDir);
      if (!decision) throw noInputError(stale ? `the decision in ${decisionFile(r.runtimeDir)} is stale: is sw-gpu-governor running?` : `no decision at ${decisionFile(r.runtimeDir)}: is sw-gpu-governor running?`);
      if (o.json) out.json(decision);
      else {
        out.print(`decided ${decision.time}`);
        printDecision(out, decision);
      }
    }),
  );
  return program;
}

void main(buildProgram());
