#!/usr/bin/env node
// sw-report: what a run did and whether it is healthy, from its task log:
// a report (text, Markdown, JSON, HTML with charts, Prometheus metrics), a
// mail, or a Monitoring Plugins check.

import { Command, Option } from 'commander';
import { action, choiceArg, createProgram, main, optsOf, outputFor, withCommonOptions } from '../lib/cli.js';
import { configWarning, loadRunConfig, type RunConfig } from '../lib/config/index.js';
import { EXIT, configError, describeError, errnoText, exitCodeFor, ioError, noInputError, usageError } from '../lib/exit.js';
import { writeFileAtomic } from '../lib/fsutil.js';
import { loadGovernorConfig } from '../lib/governor/config.js';
import { listRuns } from '../lib/governor/sample.js';
import { requireDefined, roots, runPaths, validateRunName } from '../lib/run.js';
import { STATUS_CODE, checkLine, pluginText } from '../lib/report/check.js';
import { collect } from '../lib/report/collect.js';
import { windowOf } from '../lib/report/window.js';
import { renderHtml } from '../lib/report/html.js';
import { mailReport } from '../lib/report/mail.js';
import { renderPrometheus } from '../lib/report/prometheus.js';
import { renderMarkdown, renderText } from '../lib/report/text.js';
import type { Report } from '../lib/report/types.js';

const FORMATS = ['text', 'markdown', 'json', 'html', 'prometheus'] as const;
type Format = (typeof FORMATS)[number];

interface Opts {
  all?: boolean;
  since: string;
  until?: string;
  format?: Format;
  mail?: string | boolean;
  check?: boolean;
  output?: string;
  json?: boolean;
}

function render(format: Format, reports: Report[], all: boolean): string {
  switch (format) {
    case 'json':
      return JSON.stringify(all ? { runs: reports } : reports[0], null, 2) + '\n';
    case 'markdown':
      return renderMarkdown(reports);
    case 'html':
      return renderHtml(reports);
    case 'prometheus':
      return renderPrometheus(reports);
    default:
      return renderText(reports);
  }
}

/** A check that cannot judge: UNKNOWN, one line on standard output. */
function unknownLine(message: string, code: number): string {
  return `SELFWARE UNKNOWN - ${pluginText(message)} (exit ${code})`;
}

function buildProgram(): Command {
  const program = createProgram(
    'sw-report',
    'Report what a run did and whether it is healthy, from its task log: text, Markdown, JSON, HTML with charts, Prometheus metrics, a mail, or a Monitoring Plugins check.',
  );
  withCommonOptions(
    program
      .argument('[run]', 'run name (omit with --all)')
      .option('--all', 'every run on this host')
      .option('--since <when>', 'start of the window: a duration back from --until (30m, 24h, 7d) or an ISO 8601 time', '24h')
      .option('--until <when>', 'end of the window: an ISO 8601 time or a duration back from now (default: now)')
      .addOption(new Option('--format <format>', `output format: ${FORMATS.join(', ')}`).argParser(choiceArg(FORMATS)))
      .option('--mail [address]', "mail the report (text and HTML) to address, or to the run's report.mail")
      .option('--check', 'a Monitoring Plugins check: one line, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN')
      .option('-o, --output <file>', 'write the report to file (replaced atomically) instead of standard output'),
  ).action(
    action(async (runArg: string | undefined, _o: unknown, cmd: Command) => {
      const o = optsOf<Opts>(cmd);
      const out = outputFor(cmd);
      // Usage mistakes: exit 64, or under --check UNKNOWN like everything else.
      const setup = (): { run: string | undefined; win: ReturnType<typeof windowOf>; format: Format } => {
        if (typeof o.mail === 'string' && !/^[^@\s]+@[^@\s]+$/.test(o.mail)) {
          throw usageError(`invalid --mail address '${o.mail}': expected a mail address such as ops@example.com (the run name goes before --mail)`);
        }
        if (o.json && o.format && o.format !== 'json') throw usageError(`--json and --format ${o.format} disagree`);
        if (o.all && runArg !== undefined) throw usageError(`give a run name or --all, not both`);
        if (!o.all && runArg === undefined) throw usageError('missing run name (or --all for every run)');
        if (o.check && (o.mail !== undefined || o.format || o.output || o.json)) throw usageError('--check prints one line: it does not take --mail, --format, --json or --output');
        return { run: runArg === undefined ? undefined : validateRunName(runArg), win: windowOf(o, Date.now()), format: o.json ? 'json' : (o.format ?? 'text') };
      };

      const gather = async (run: string | undefined, win: ReturnType<typeof windowOf>): Promise<Array<{ report: Report; config: RunConfig }>> => {
        const r = roots();
        // A mistake in a config stops no report: the report says it (CRITICAL), and goes on from the keys that read right.
        const { config: gov, problems: govProblems } = await loadGovernorConfig(r, { lenient: true });
        if (govProblems.length && !o.check) out.warn(configWarning(govProblems).replace(/ \(sw-agent run .*\)$/, ''));
        const names = run !== undefined ? [run] : listRuns(r.stateDir).map((x) => x.run);
        const got: Array<{ report: Report; config: RunConfig }> = [];
        for (const name of names) {
          const paths = runPaths(name);
          requireDefined(paths);
          const { config, file, problems } = await loadRunConfig(paths, { lenient: true });
          if (problems.length && !o.check) out.warn(configWarning(problems));
          got.push({ report: await collect(paths, config, win, { disk: gov.disk, configFile: file, configProblems: problems }), config });
        }
        return got;
      };

      if (o.check) {
        // Monitoring Plugins: whatever goes wrong is UNKNOWN (3), still one line.
        let line: string;
        let status: keyof typeof STATUS_CODE;
        try {
          const { run, win } = setup();
          const got = await gather(run, win);
          if (!got.length) throw noInputError(`no runs under ${roots().stateDir}`);
          ({ line, status } = checkLine(got.map((g) => g.report), { all: o.all === true }));
        } catch (e) {
          line = unknownLine(describeError(e).split('\n')[0] ?? '', exitCodeFor(e));
          status = 'UNKNOWN';
        }
        process.stdout.write(line + '\n');
        return STATUS_CODE[status];
      }

      const { run, win, format } = setup();
      const got = await gather(run, win);
      const reports = got.map((g) => g.report);
      for (const rep of reports) for (const w of rep.warnings) out.warn(`${rep.run}: ${w}`);

      if (o.mail !== undefined) {
        // One mail per address: a run's report goes to --mail's address or to its report.mail.
        // Runs that share the address, the sender and the sendmail share a mail.
        const byAddr = new Map<string, { to: string; reports: Report[]; config: RunConfig }>();
        for (const g of got) {
          const to = typeof o.mail === 'string' ? o.mail : g.config.report.mail;
          if (!to) continue;
          const key = JSON.stringify([to, g.config.report.from, g.config.report.sendmail]);
          const entry = byAddr.get(key) ?? { to, reports: [], config: g.config };
          entry.reports.push(g.report);
          byAddr.set(key, entry);
        }
        if (!byAddr.size) {
          const where = run !== undefined ? runPaths(run).configFile : `the runs' configurations`;
          throw configError(`no address to mail to: give --mail ADDRESS or set report.mail in ${where}`);
        }
        for (const { to, reports: rs, config } of byAddr.values()) {
          const sent = await mailReport(rs, { to, from: config.report.from, sendmail: config.report.sendmail });
          out.info(`mailed to ${to}: ${sent.subject}`);
        }
        if (!o.output && !o.format && !o.json) return EXIT.OK;
      }
      if (!got.length && format !== 'prometheus' && format !== 'json') out.notice(`no runs under ${roots().stateDir}`);

      const text = render(format, reports, o.all === true);
      if (o.output) {
        try {
          writeFileAtomic(o.output, text, { mode: 0o644 });
        } catch (e) {
          throw ioError(`cannot write '${o.output}': ${errnoText(e)}`, e);
        }
      }
      else process.stdout.write(text);
      return EXIT.OK;
    }),
  );
  return program;
}

// Under --check even a mistake commander finds in the options is UNKNOWN (3), on one line.
void main(buildProgram(), process.argv, {
  onUsageError: (message, argv) => {
    const args = argv.slice(2);
    const end = args.indexOf('--');
    if (!(end < 0 ? args : args.slice(0, end)).includes('--check')) return undefined;
    process.stdout.write(unknownLine(message, EXIT.USAGE) + '\n');
    return STATUS_CODE.UNKNOWN;
  },
});
