// Policy: what an action may do. Rules come from the config as "ACTION:GLOB"
// or "GLOB" (any action). A shell command is parsed (unbash) and a rule is
// matched against every simple command in it, and against every command a
// wrapper (env, sudo, timeout...), sh -c or eval runs; a file action is
// matched by the paths it reads or writes. deny is checked first, then
// approve, then allow; an action no rule allows waits for a human. finish and
// note are always allowed.
// This is a guard against the obvious, not a sandbox: the unit's hardening is.

import path from 'node:path';
import { forEachChild, parse, type Command, type SyntaxNode } from 'unbash';
import type { PolicyConfig } from '../config/schema.js';
import { patchPaths, type Action } from './schema.js';

export type Decision = 'deny' | 'approve' | 'allow';

export interface Verdict {
  decision: Decision;
  /** The rule that decided, or null when none matched. */
  rule: string | null;
}

/** A glob as a regular expression: * and ** match anything (slashes and spaces too), ? one character. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      while (glob[i + 1] === '*') i++;
      re += '.*';
    } else if (c === '?') re += '.';
    else re += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

// ---- rules ----

interface Rule {
  text: string;
  action: string | null;
  glob: RegExp;
  /** The words of the glob that are options (-rf, --force), and where: a command's normal form puts them there. */
  options: { at: number; token: string }[];
}

const RULE_ACTIONS = new Set(['shell', 'read_file', 'write_file', 'view', 'search', 'edit', 'apply_patch']);

function parseRule(text: string): Rule {
  const m = /^([a-z_]+):(.*)$/s.exec(text);
  const [action, glob] = m && RULE_ACTIONS.has(m[1] as string) ? [m[1] as string, m[2] as string] : [null, text];
  const options = glob
    .trim()
    .split(/\s+/)
    .map((token, at) => ({ token, at }))
    .filter((o) => o.at > 0 && /^--?[A-Za-z0-9][\w-]*$/.test(o.token));
  return { text, action, glob: globToRegExp(glob), options };
}

// ---- how commands take options ----

/**
 * How a command takes its options: `short` as getopt has it (a colon after a
 * letter that takes an argument), `long` as words: "signal=s" is another
 * spelling of -s, "rcfile:" takes an argument, "posix" is a flag. Long options
 * may be abbreviated, as GNU getopt allows. `same` maps letters that mean the
 * same (rm's -R is -r).
 */
interface Spec {
  short: string;
  long: string;
  same?: Record<string, string>;
  plus?: boolean;
}

const NONE: Spec = { short: '', long: '' };
const SHELL: Spec = { short: 'abcefhiklmnprstuvxBCEHPTo:O:', long: 'init-file: rcfile: login noprofile norc posix restricted verbose debugger noediting', plus: true };
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash']);
const SU: Spec = { short: 'c:g:G:lmps:Pw:f', long: 'command=c session-command: group=g supp-group=G login=l preserve-environment=m shell=s pty=P whitelist-environment=w' };

/** Commands that run another command, how they take options, and what comes between them and it. */
const WRAPPERS: Record<string, { spec: Spec; skip?: 'one' | 'number' | 'assignments' }> = {
  env: { spec: { short: 'i0u:C:S:v', long: 'ignore-environment=i null=0 unset=u chdir=C split-string=S debug=v block-signal default-signal ignore-signal list-signal-handling' }, skip: 'assignments' },
  sudo: { spec: { short: 'AbBC:D:Eeg:HiKklNnPp:R:r:Sst:T:U:u:Vva:c:', long: 'askpass=A background=b bell=B close-from=C chdir=D preserve-env edit=e group=g set-home=H host: login=i remove-timestamp=K reset-timestamp=k list=l no-update=N non-interactive=n preserve-groups=P prompt=p chroot=R role=r stdin=S shell=s type=t command-timeout=T other-user=U user=u validate=v' }, skip: 'assignments' },
  doas: { spec: { short: 'a:C:Lnsu:', long: '' } },
  nice: { spec: { short: 'n:', long: 'adjustment=n' } },
  ionice: { spec: { short: 'c:n:p:P:tu:', long: 'class=c classdata=n pid=p pgid=P ignore=t uid=u' } },
  timeout: { spec: { short: 'k:s:pv', long: 'foreground kill-after=k preserve-status=p signal=s verbose=v' }, skip: 'one' },
  xargs: { spec: { short: '0a:d:E:I:L:n:P:s:prtxo', long: 'null=0 arg-file=a delimiter=d eof replace max-lines max-args=n max-procs=P max-chars=s interactive=p no-run-if-empty=r verbose=t exit=x open-tty=o process-slot-var: show-limits' } },
  nohup: { spec: NONE },
  setsid: { spec: { short: 'cfw', long: 'ctty=c fork=f wait=w' } },
  stdbuf: { spec: { short: 'i:o:e:', long: 'input=i output=o error=e' } },
  time: { spec: { short: 'f:o:apvq', long: 'format=f output=o append=a portability=p verbose=v quiet=q' } },
  command: { spec: { short: 'pvV', long: '' } },
  builtin: { spec: NONE },
  exec: { spec: { short: 'cla:', long: '' } },
  chrt: { spec: { short: 'abdfioRrT:P:D:emvp', long: 'all-tasks=a batch=b deadline=d fifo=f idle=i other=o reset-on-fork=R rr=r sched-runtime=T sched-period=P sched-deadline=D ext=e max=m verbose=v pid=p' }, skip: 'number' },
  taskset: { spec: { short: 'acp', long: 'all-tasks=a cpu-list=c pid=p' }, skip: 'one' },
  busybox: { spec: NONE },
};

/** Other commands whose options the normal form must read right. */
const SPECS: Record<string, Spec> = {
  rm: { short: 'fiIrRdv', long: 'force=f interactive one-file-system no-preserve-root preserve-root recursive=r dir=d verbose=v', same: { R: 'r' } },
  git: { short: 'C:c:pP', long: 'git-dir: work-tree: namespace: exec-path config-env: super-prefix: list-cmds: paginate=p no-pager=P bare no-replace-objects literal-pathspecs' },
};

/** Commands whose operands are each acted on alone: the normal form is also made with each operand. */
const EACH_OPERAND = new Set(['rm', 'rmdir', 'shred', 'unlink']);

/** A table's entry for a command name (a command may be called "constructor"). */
function entry<T>(table: Record<string, T>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

function specOf(name: string): Spec {
  return entry(WRAPPERS, name)?.spec ?? (SHELLS.has(name) ? SHELL : entry(SPECS, name) ?? NONE);
}

function longOption(spec: Spec, name: string): { name: string; short?: string; arg: boolean } | undefined {
  const all = spec.long.split(' ').filter((e) => e !== '');
  const entries = all.map((e) => {
    const m = /^([\w-]+)(?:=(\w)|(:))?$/.exec(e) as RegExpExecArray;
    const short = m[2];
    return { name: m[1] as string, short, arg: m[3] === ':' || (short !== undefined && spec.short.includes(`${short}:`)) };
  });
  const exact = entries.find((e) => e.name === name);
  if (exact) return exact;
  const prefixed = entries.filter((e) => e.name.startsWith(name));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

interface Parsed {
  /** Options by canonical name (a letter, or --name when it has no letter), with their argument. */
  options: Map<string, string | true>;
  operands: string[];
  /** Where the operands start, when options stop at the first one. */
  rest: number;
}

/** Read a command's arguments as getopt would; `posix`: options stop at the first operand (how wrappers read theirs). */
function parseArgs(args: string[], spec: Spec, posix: boolean): Parsed {
  const options = new Map<string, string | true>();
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const w = args[i] as string;
    if (w === '--') return { options, operands: [...operands, ...args.slice(i + 1)], rest: i + 1 };
    if (!/^-./.test(w) && !(spec.plus === true && /^\+./.test(w))) {
      if (posix) return { options, operands: args.slice(i), rest: i };
      operands.push(w);
      continue;
    }
    if (w.startsWith('--')) {
      const eq = w.indexOf('=');
      const name = eq < 0 ? w.slice(2) : w.slice(2, eq);
      const e = longOption(spec, name);
      const value = eq >= 0 ? w.slice(eq + 1) : e?.arg ? (args[++i] ?? '') : true;
      options.set(e?.short ?? `--${e?.name ?? name}`, value);
      continue;
    }
    for (let j = 1; j < w.length; j++) {
      const c = w[j] as string;
      const key = spec.same?.[c] ?? c;
      if (spec.short.includes(`${c}:`)) {
        options.set(key, j + 1 < w.length ? w.slice(j + 1) : (args[++i] ?? ''));
        break;
      }
      options.set(key, true);
    }
  }
  return { options, operands, rest: args.length };
}

// ---- what a rule is matched against ----

/** One thing every rule is tried on: strings, and for a command the parts of its normal form. */
interface Unit {
  subjects: string[];
  command?: { name: string; spec: Spec; options: Set<string>; operands: string[] };
}

const collapse = (s: string): string => s.trim().replace(/\s+/g, ' ');
const basename = (word: string): string => path.posix.basename(word) || word;

/** A path with its doubled slashes and . and .. taken out, $HOME written ~; other words as they are. */
function normalWord(word: string): string {
  const m = /^([A-Za-z_][\w-]*=)?(.*)$/s.exec(word) as RegExpExecArray;
  const value = (m[2] as string).replace(/^\$(?:HOME\b|\{HOME(?:[^\w}][^}]*)?\})/, '~');
  const home = /^(~[^/]*)(\/.*)?$/s.exec(value);
  let out = value;
  if (home) out = (home[1] as string) + (home[2] ? path.posix.normalize(home[2]) : '');
  else if (value.startsWith('/')) out = path.posix.normalize(value);
  if (out.length > 1 && out.endsWith('/')) out = out.slice(0, -1);
  return (m[1] ?? '') + out;
}

function commandUnit(words: string[], written: string): Unit {
  const name = basename(words[0] as string);
  const spec = specOf(name);
  const { options, operands } = parseArgs(words.slice(1), spec, entry(WRAPPERS, name) !== undefined || SHELLS.has(name));
  const subjects = [...new Set([collapse(written), words.join(' '), [name, ...words.slice(1)].join(' ')])];
  return { subjects, command: { name, spec, options: new Set(options.keys()), operands: operands.map(normalWord) } };
}

/**
 * A command's normal forms for a rule: its basename, the options the rule
 * names where the rule has them (when the command has them all, however
 * spelled), then its operands, paths normalised; for rm, also each operand alone.
 */
function normalForms(rule: Rule, c: NonNullable<Unit['command']>): string[] {
  const wanted = rule.options.flatMap((o) => [...parseArgs([o.token], c.spec, false).options.keys()]);
  if (!wanted.every((k) => c.options.has(k))) return [];
  const lists = EACH_OPERAND.has(c.name) && c.operands.length > 1 ? [c.operands, ...c.operands.map((o) => [o])] : [c.operands];
  return lists.map((operands) => {
    const words = [c.name, ...operands];
    for (const o of rule.options) words.splice(Math.min(o.at, words.length), 0, o.token);
    return words.join(' ');
  });
}

function matches(rule: Rule, unit: Unit): boolean {
  if (unit.subjects.some((s) => rule.glob.test(s))) return true;
  return unit.command !== undefined && normalForms(rule, unit.command).some((s) => rule.glob.test(s));
}

// ---- walking a shell command ----

/** Nesting of sh -c, eval and the like beyond which a command is refused. */
const MAX_DEPTH = 8;

interface Walk {
  /** Every simple command, and every command a wrapper runs: each must be allowed. */
  units: Unit[];
  /** Matched by deny and approve rules only: the whole command, function definitions. */
  extra: Unit[];
  error: string | null;
}

interface Scope {
  src: string;
  depth: number;
  /** $0, $1... of an sh -c script, when known. */
  positional: string[] | null;
  /** The script a shell reads on its standard input, when known (a here-document, echo ... |). */
  stdin: string | null;
}

function walkScript(w: Walk, script: string, depth: number, positional: string[] | null): void {
  if (depth > MAX_DEPTH) {
    w.error ??= `nested more than ${MAX_DEPTH} levels deep`;
    return;
  }
  try {
    visit(w, parse(script), { src: script, depth, positional, stdin: null });
  } catch (e) {
    w.error ??= (e as Error).message;
  }
}

function visit(w: Walk, node: SyntaxNode, scope: Scope): void {
  let inner = scope;
  switch (node.type) {
    case 'Script':
      if (node.errors?.length) w.error ??= (node.errors[0] as { message: string }).message;
      if (node.source !== undefined) inner = { ...scope, src: node.source };
      break;
    case 'Pipeline':
      node.commands.forEach((c, i) => visit(w, c, { ...scope, stdin: i > 0 ? echoed(node.commands[i - 1] as SyntaxNode, scope) : null }));
      return;
    case 'Command':
      addCommand(w, node, scope);
      inner = { ...scope, stdin: null };
      break;
    case 'Function':
      w.extra.push({ subjects: [`${node.name.value}()${collapse(scope.src.slice(node.body.pos, node.body.end))}`] });
      break;
  }
  forEachChild(node, (child) => visit(w, child, inner));
}

/** The words of a simple command after quote removal, leading assignments left out; "$@" and "$1" of an sh -c script filled in. */
function wordsOf(node: Command, positional: string[] | null): string[] {
  const out: string[] = [];
  for (const a of node.name ? [node.name, ...node.args] : []) {
    const v = a.type === 'Word' ? a.value : a.text;
    const m = positional ? /^\$\{?([0-9@*])\}?$/.exec(v) : null;
    if (m && positional) out.push(...(/[@*]/.test(m[1] as string) ? positional.slice(1) : [positional[Number(m[1])] ?? '']));
    else out.push(v);
  }
  return out;
}

/** What echo or printf writes, when it feeds the next command of a pipeline. */
function echoed(node: SyntaxNode, scope: Scope): string | null {
  if (node.type !== 'Command') return null;
  const words = wordsOf(node, scope.positional);
  if (!['echo', 'printf'].includes(basename(words[0] ?? ''))) return null;
  const args = words.slice(1);
  while (/^-[neE]+$/.test(args[0] ?? '')) args.shift();
  return args.join(' ').replace(/\\n/g, '\n');
}

function hereText(node: Command): string | null {
  for (const r of node.redirects) {
    if (r.type === 'HereString' && r.target) return r.target.value;
    if (r.type === 'HereDoc') return r.body.text;
  }
  return null;
}

function addCommand(w: Walk, node: Command, scope: Scope): void {
  let words = wordsOf(node, scope.positional);
  let written = scope.src.slice(node.pos, node.end);
  const stdin = hereText(node) ?? scope.stdin;
  while (words.length > 0) {
    w.units.push(commandUnit(words, written));
    const next = runs(words, stdin);
    if (next === null) return;
    if ('script' in next) return walkScript(w, next.script, scope.depth + 1, next.positional ?? scope.positional);
    words = next.words;
    written = words.join(' ');
  }
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** What a command runs in turn: another command's words (a wrapper), a script (sh -c, eval, env -S, su -c, trap), or nothing. */
function runs(words: string[], stdin: string | null): { words: string[] } | { script: string; positional?: string[] } | null {
  const name = basename(words[0] as string);
  const args = words.slice(1);
  if (name === 'eval') return { script: args.join(' ') };
  if (name === 'trap') return args.length > 1 && !(args[0] as string).startsWith('-') ? { script: args[0] as string } : null;
  if (name === 'su') {
    const { options } = parseArgs(args, SU, false);
    const script = options.get('c') ?? options.get('--session-command');
    return typeof script === 'string' ? { script } : null;
  }
  if (SHELLS.has(name)) {
    const { options, operands } = parseArgs(args, SHELL, true);
    if (options.has('c')) return operands[0] === undefined ? null : { script: operands[0], positional: operands.slice(1) };
    if (stdin !== null && (operands.length === 0 || options.has('s'))) return { script: stdin, positional: [name, ...operands] };
    return null;
  }
  const wrapper = entry(WRAPPERS, name);
  if (!wrapper) return null;
  const { options, rest } = parseArgs(args, wrapper.spec, true);
  let inner = args.slice(rest);
  if (wrapper.skip === 'assignments') while (/^([A-Za-z_]\w*=|-$)/.test(inner[0] ?? '')) inner = inner.slice(1);
  if (wrapper.skip === 'one' || (wrapper.skip === 'number' && /^\d+$/.test(inner[0] ?? ''))) inner = inner.slice(1);
  const split = name === 'env' ? options.get('S') : undefined;
  if (typeof split === 'string') return { script: [split, ...inner.map(quote)].join(' ') };
  return inner.length > 0 ? { words: inner } : null;
}

// ---- actions ----

/** What a rule is matched against for one action, and which rule actions apply to it. */
interface Target {
  actions: readonly string[];
  units: Unit[];
  extra: Unit[];
  /** The old matching, for a command that cannot be parsed: one unit matching is enough to allow. */
  any: boolean;
}

/** The command as a string and cut at ; && || | and newlines: what rules saw before commands were parsed. */
function stringUnits(command: string): Unit[] {
  const parts = command.split(/;|&&|\|\||\||\n/).map(collapse).filter((s) => s !== '');
  return [collapse(command), ...parts].map((s) => ({ subjects: [s] }));
}

function shellTarget(command: string, strict: boolean): Target | { error: string } {
  const w: Walk = { units: [], extra: [{ subjects: [collapse(command)] }], error: null };
  walkScript(w, command, 0, null);
  if (w.error !== null) return strict ? { error: `a command that cannot be parsed: ${w.error}` } : { actions: ['shell'], units: stringUnits(command), extra: [], any: true };
  return { actions: ['shell'], units: w.units.length > 0 ? w.units : w.extra.slice(0, 1), extra: w.extra, any: false };
}

/** A path as written (without a leading ./) and normalised. */
function pathUnit(p: string): Unit {
  const written = p.replace(/^(\.\/)+/, '');
  const normal = path.posix.normalize(p).replace(/^\.\/|\/$/g, '') || '.';
  return { subjects: [...new Set([written, normal])] };
}

function fileTarget(actions: string[], paths: string[]): Target {
  return { actions, units: paths.map(pathUnit), extra: [], any: false };
}

function targetOf(a: Action, strict: boolean): Target | { error: string } | null {
  switch (a.action) {
    case 'shell':
      return shellTarget(a.command, strict);
    case 'read_file':
    case 'write_file':
      return fileTarget([a.action], [a.path]);
    case 'view':
      return fileTarget(['read_file', 'view'], [a.path]);
    case 'search':
      return fileTarget(['read_file', 'search'], [a.path ?? '.']);
    case 'edit':
      return fileTarget(['write_file', 'edit'], [a.path]);
    case 'apply_patch': {
      const paths = patchPaths(a.patch);
      if (paths.length === 0 && strict) return { error: 'a patch that names no file' };
      return fileTarget(['write_file', 'apply_patch'], paths);
    }
    default:
      return null;
  }
}

function applies(rule: Rule, t: Target): boolean {
  return rule.action === null || t.actions.includes(rule.action);
}

/** The first rule that matches any unit. */
function firstMatch(rules: Rule[], t: Target, units: Unit[]): string | null {
  return rules.find((r) => applies(r, t) && units.some((u) => matches(r, u)))?.text ?? null;
}

/** The allow rule of the first unit when every unit has one (one is enough for the old matching). */
function allowedBy(rules: Rule[], t: Target): string | null {
  if (t.any) return firstMatch(rules, t, t.units);
  const found = t.units.map((u) => firstMatch(rules, t, [u]));
  return found.length > 0 && found.every((r) => r !== null) ? found[0] ?? null : null;
}

export function evaluate(a: Action, policy: Pick<PolicyConfig, 'deny' | 'approve' | 'allow'>): Verdict {
  const t = targetOf(a, policy.deny.length > 0);
  if (t === null) return { decision: 'allow', rule: null };
  if ('error' in t) return { decision: 'deny', rule: `(${t.error})` };
  const deny = firstMatch(policy.deny.map(parseRule), t, [...t.units, ...t.extra]);
  if (deny) return { decision: 'deny', rule: deny };
  const approve = firstMatch(policy.approve.map(parseRule), t, [...t.units, ...t.extra]);
  if (approve) return { decision: 'approve', rule: approve };
  const allow = allowedBy(policy.allow.map(parseRule), t);
  if (allow) return { decision: 'allow', rule: allow };
  return { decision: 'approve', rule: null };
}
