// Man pages: mandoc -Tlint clean, and each command's SYNOPSIS says what its
// --help says (the same options, the same arguments), as git's t0450 does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { DIST, ROOT, makeEnv } from './helpers.js';

const MAN = path.join(ROOT, 'man');
const pages = fs.readdirSync(MAN).filter((f) => /\.[1-8]$/.test(f));

async function render(page: string): Promise<string> {
  const r = await execa('mandoc', ['-Tascii', '-Owidth=400', path.join(MAN, page)]);
  return r.stdout.replace(/.\x08/g, '');
}

function section(text: string, name: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l === name);
  const end = lines.findIndex((l, i) => i > start && /^[A-Z][A-Z ]+$/.test(l));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

interface Usage {
  options: Set<string>;
  args: string[];
}

/** Each option of --help as its names (-q and --quiet are one option), checked against a SYNOPSIS's names. */
function sameOptions(synopsis: Set<string>, help: string[][], what: string): void {
  for (const names of help) assert.ok(names.some((n) => synopsis.has(n)), `${what}: SYNOPSIS lacks ${names.join('/')}`);
  for (const n of synopsis) assert.ok(help.some((names) => names.includes(n)), `${what}: SYNOPSIS has ${n}, --help does not`);
}

/** Options and arguments of one SYNOPSIS line: "[--kind kind]" -> --kind; "run" -> <run>; "[id...]" -> [id...]. */
function fromSynopsis(line: string, skip: number): Usage {
  const options = new Set<string>();
  for (const m of line.matchAll(/(?<![\w-])(--?[A-Za-z][\w-]*)/g)) options.add(m[1] as string);
  // Arguments: words outside brackets after the command (and subcommand), and [word] / [word...] groups without a dash.
  const tokens = line.trim().split(/\s+/).slice(skip);
  const args: string[] = [];
  let depth = 0;
  for (const tok of tokens) {
    const opening = (tok.match(/\[/g) ?? []).length;
    const closing = (tok.match(/\]/g) ?? []).length;
    if (depth === 0 && opening === 0 && !tok.startsWith('-')) args.push(`<${tok}>`);
    else if (depth === 0 && /^\[[a-z][\w]*(\.\.\.)?\]$/.test(tok)) args.push(tok.replace(/\.\.\.\]$/, '...]'));
    depth += opening - closing;
  }
  return { options, args };
}

function fromHelp(help: string): { groups: string[][]; args: string[] } {
  const usage = /^Usage: \S+(?: [a-z][\w-]*)? (.*)$/m.exec(help)?.[1] ?? '';
  const args = usage
    .split(/\s+/)
    .filter((w) => w !== '[options]' && w !== '[command]' && w !== '')
    .map((w) => w.replace(/^\[(\w+)\.\.\.\]$/, '[$1...]'));
  const groups: string[][] = [];
  const optSection = help.split(/^Options:$/m)[1]?.split(/^Commands:$/m)[0] ?? '';
  for (const line of optSection.split('\n')) {
    const m = /^\s+(-[^\s,]+)(?:, (--[^\s]+))?/.exec(line);
    if (!m) continue;
    const names = [m[1] as string, ...(m[2] ? [m[2]] : [])];
    if (names.includes('--help')) continue;
    groups.push(names);
  }
  return { groups, args };
}

test('man pages are mandoc -Tlint clean', { timeout: 60_000 }, async () => {
  assert.ok(pages.length > 0);
  const r = await execa('mandoc', ['-Tlint', '-Wwarning', ...pages.map((p) => path.join(MAN, p))], { reject: false });
  assert.equal(r.stdout + r.stderr, '', 'mandoc -Tlint');
  assert.equal(r.exitCode, 0);
});

for (const page of pages.filter((p) => p.startsWith('sw-'))) {
  const cmd = page.replace(/\.[1-8]$/, '');
  test(`${page}: SYNOPSIS matches --help`, { timeout: 60_000 }, async () => {
    const t = makeEnv();
    try {
      const bin = path.join(DIST, 'bin', `${cmd}.cjs`);
      assert.ok(fs.existsSync(bin), `${cmd} is built`);
      const synopsis = section(await render(page), 'SYNOPSIS')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith(cmd));
      const rootHelp = (await execa(process.execPath, [bin, '--help'], { env: t.env })).stdout;
      const subs = (rootHelp.split(/^Commands:$/m)[1] ?? '')
        .split('\n')
        .map((l) => /^  ([a-z][\w-]*) /.exec(l)?.[1])
        .filter((s): s is string => !!s);
      const seen = new Set<string>();
      for (const line of synopsis) {
        const word = line.split(/\s+/)[1] ?? '';
        if (subs.length > 0 && subs.includes(word)) {
          seen.add(word);
          const help = (await execa(process.execPath, [bin, word, '--help'], { env: t.env })).stdout;
          const want = fromHelp(help);
          const got = fromSynopsis(line, 2);
          sameOptions(got.options, want.groups, `${cmd} ${word}`);
          assert.deepEqual(got.args, want.args, `${cmd} ${word}: arguments`);
        } else if (subs.length === 0 && !/^\[-/.test(word)) {
          const want = fromHelp(rootHelp);
          const got = fromSynopsis(line, 1);
          sameOptions(got.options, want.groups.filter((g) => !g.includes('--version')), cmd);
          assert.deepEqual(got.args, want.args, `${cmd}: arguments`);
          seen.add('');
        }
      }
      if (subs.length > 0) assert.deepEqual([...seen].sort(), [...subs].sort(), `${cmd}: every subcommand has a SYNOPSIS line`);
      else assert.ok(seen.has(''), `${cmd}: a SYNOPSIS line`);
    } finally {
      t.cleanup();
    }
  });
}
