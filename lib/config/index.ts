// A run's configuration: /etc/selfware/<run>.yaml, every key with a default,
// validated with file:line:col errors (exit 78). A missing file means defaults.

import { EXIT, configError } from '../exit.js';
import { BadFileError, MAX_DEPTH, readTextFile, yamlTooDeep } from '../safefile.js';
import type { RunPaths } from '../run.js';
import { RUN_CHECKS, RUN_SCHEMA, type RunConfig } from './schema.js';
import { defaultsOf, type ConfigIssue, type Spec } from './spec.js';
import type { Validator } from './validate.js';

export type { RunConfig } from './schema.js';
export { RUN_SCHEMA } from './schema.js';

export interface LoadedConfig<T> {
  config: T;
  /** The file read, or null when it does not exist and defaults apply. */
  file: string | null;
  /** What is wrong with the file, one "file:line:col: key: message" line each (lenient loads only). */
  problems: string[];
}

/** Cross-field checks: return issues as [key, message]. */
export type ConfigCheck<T> = (config: T) => Array<[string, string]>;

/**
 * Parse and validate YAML text against a schema; issues come back sorted by
 * position. After a YAML syntax error the issues are the syntax errors alone,
 * and the config is the best reading of what parsed (invalid values at their
 * defaults), for commands that go on from the keys they need.
 */
export async function parseConfigText<T>(
  text: string,
  schema: Spec,
  checks: ConfigCheck<T>[] = [],
): Promise<{ config: T; issues: ConfigIssue[]; syntax: boolean; valueIssues: ConfigIssue[]; located: (key: string) => KeyPlace }> {
  const { parseDocument, LineCounter, isMap, isScalar } = await import('yaml');
  const { Validator } = await import('./validate.js');
  // Nesting measured before the parser, which recurses, sees the text.
  const deep = await yamlTooDeep(text);
  if (deep) return { config: defaultsOf(schema) as T, issues: [{ ...deep, key: '', message: `invalid YAML: nested deeper than ${MAX_DEPTH} levels` }], syntax: true, valueIssues: [], located: () => null };
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const issues: ConfigIssue[] = [];
  for (const e of doc.errors) {
    const lp = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
    issues.push({ line: lp.line, col: lp.col, key: '', message: `invalid YAML: ${e.message.split('\n')[0]}` });
  }
  const syntax = issues.length > 0;
  const v = new Validator(lc);
  const root = doc.contents;
  let config: T;
  if (root === null || (isScalar(root) && root.value === null)) config = defaultsOf(schema) as T;
  else config = v.value(schema, root, '') as T;
  if (!syntax && v.issues.length === 0) {
    for (const check of checks) {
      for (const [key, message] of check(config)) v.issue(findKeyNode(doc.contents, key.split('.'), isMap, isScalar), key, message);
    }
  }
  if (!syntax) issues.push(...v.issues);
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
  const located = (key: string): KeyPlace => {
    const node = findKeyNode(doc.contents, key.split('.'), isMap, isScalar) as { range?: [number, number, number] } | undefined;
    if (!node?.range) return null;
    return { from: lc.linePos(node.range[0]).line, to: lc.linePos(Math.max(node.range[0], node.range[1] - 1)).line };
  };
  return { config, issues, syntax, valueIssues: v.issues, located };
}

/** The lines a key's value spans in the file, or null when the file does not set it. */
export type KeyPlace = { from: number; to: number } | null;

function findKeyNode(
  root: unknown,
  keys: string[],
  isMap: (n: unknown) => boolean,
  isScalar: (n: unknown) => boolean,
): Parameters<Validator['issue']>[0] | undefined {
  let node = root as { items?: Array<{ key: { value?: unknown }; value: unknown }> } | null;
  let keyNode: unknown;
  for (const k of keys) {
    if (!node || !isMap(node)) return undefined;
    const pair = node.items?.find((p) => isScalar(p.key) && String(p.key.value) === k);
    if (!pair) return undefined;
    keyNode = pair.value ?? pair.key;
    node = pair.value as typeof node;
  }
  return keyNode as Parameters<Validator['issue']>[0];
}

export interface LoadOptions {
  /**
   * Go on past mistakes in the file: keys that read right keep their values,
   * the rest their defaults, and `problems` says what is wrong. Only a
   * mistake that touches a key in `needs` still throws (exit 78).
   */
  lenient?: boolean;
  /** Keys (or sections, such as "checkpoint.retention") the caller cannot do without. */
  needs?: string[];
}

/** Does a mistake at `key` (a key, a section, or '' for the whole file) touch `need`? */
function touches(key: string, need: string): boolean {
  return key === '' || key === need || key.startsWith(need + '.') || need.startsWith(key + '.');
}

/** Read and validate a config file; a missing file means defaults. Errors exit 78 naming file:line:col (see LoadOptions). */
export async function loadConfigFile<T>(file: string, schema: Spec, checks: ConfigCheck<T>[] = [], opts: LoadOptions = {}): Promise<LoadedConfig<T>> {
  const needs = opts.needs ?? [];
  let text: string;
  try {
    // Bounded and checked: a config is a file a human names (often a link), never a device or a FIFO.
    text = readTextFile(file, 'config', { code: EXIT.CONFIG, follow: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { config: defaultsOf(schema) as T, file: null, problems: [] };
    const line =
      e instanceof BadFileError ? e.message : `${file}: cannot read: ${code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code)}`;
    if (!opts.lenient || needs.length > 0) throw configError(line);
    return { config: defaultsOf(schema) as T, file, problems: [line] };
  }
  const { config, issues, syntax, valueIssues, located } = await parseConfigText<T>(text, schema, checks);
  const line = (i: ConfigIssue): string => `${file}:${i.line}:${i.col}: ${i.key ? i.key + ': ' : ''}${i.message}`;
  const lines = issues.map(line);
  if (issues.length > 0) {
    const fatal = !opts.lenient
      ? lines
      : needs.flatMap((need) => {
          const wrong = valueIssues.filter((i) => touches(i.key, need)).map(line);
          if (!syntax) return wrong;
          if (wrong.length > 0) return [`${lines[0]} (so '${need}' cannot be read)`];
          // After a syntax error, a needed key is trusted only where it parsed without an error on
          // its lines (or the line after, where an unclosed value is reported), or where the file never sets it.
          const place = located(need);
          const name = need.split('.').pop() as string;
          const broken = place
            ? issues.some((i) => i.line >= place.from && i.line <= place.to + 1)
            : new RegExp(`^[ \\t-]*${name}[ \\t]*:`, 'm').test(text);
          return broken ? [`${lines[0]} (so '${need}' cannot be read)`] : [];
        });
    if (fatal.length > 0) throw configError(fatal[0] as string, [...new Set(fatal.slice(1))]);
  }
  return { config, file, problems: lines };
}

/** The run's config from /etc/selfware/<run>.yaml. */
export async function loadRunConfig(paths: RunPaths, opts: LoadOptions = {}): Promise<LoadedConfig<RunConfig>> {
  return loadConfigFile<RunConfig>(paths.configFile, RUN_SCHEMA, RUN_CHECKS, opts);
}

/** One line for a config that loaded with mistakes: the first, how many more, and what they mean. */
export function configWarning(problems: string[]): string {
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  return `${problems[0]}${more}; going on with the defaults for what it sets wrong (sw-agent run refuses to start until it is fixed)`;
}

/** The workspace directory: the config's, or <state dir>/<run>/workspace. */
export function workspaceDir(config: RunConfig, paths: RunPaths): string {
  return config.workspace ?? paths.defaultWorkspace;
}
