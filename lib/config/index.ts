// A run's configuration: /etc/selfware/<run>.yaml, every key with a default,
// validated with file:line:col errors (exit 78). A missing file means defaults.

import fs from 'node:fs';
import { configError } from '../exit.js';
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
}

/** Cross-field checks: return issues as [key, message]. */
export type ConfigCheck<T> = (config: T) => Array<[string, string]>;

/** Parse and validate YAML text against a schema; issues come back sorted by position. */
export async function parseConfigText<T>(text: string, schema: Spec, checks: ConfigCheck<T>[] = []): Promise<{ config: T; issues: ConfigIssue[] }> {
  const { parseDocument, LineCounter, isMap, isScalar } = await import('yaml');
  const { Validator } = await import('./validate.js');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const issues: ConfigIssue[] = [];
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const lp = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      issues.push({ line: lp.line, col: lp.col, key: '', message: `invalid YAML: ${e.message.split('\n')[0]}` });
    }
    return { config: defaultsOf(schema) as T, issues };
  }
  const v = new Validator(lc);
  const root = doc.contents;
  let config: T;
  if (root === null || (isScalar(root) && root.value === null)) config = defaultsOf(schema) as T;
  else config = v.value(schema, root, '') as T;
  if (v.issues.length === 0) {
    for (const check of checks) {
      for (const [key, message] of check(config)) v.issue(findKeyNode(doc.contents, key.split('.'), isMap, isScalar), key, message);
    }
  }
  issues.push(...v.issues);
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
  return { config, issues };
}

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

/** Read and validate a config file; a missing file means defaults. Errors exit 78 naming file:line:col. */
export async function loadConfigFile<T>(file: string, schema: Spec, checks: ConfigCheck<T>[] = []): Promise<LoadedConfig<T>> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { config: defaultsOf(schema) as T, file: null };
    throw configError(`${file}: cannot read: ${code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code)}`);
  }
  const { config, issues } = await parseConfigText<T>(text, schema, checks);
  if (issues.length > 0) {
    const lines = issues.map((i) => `${file}:${i.line}:${i.col}: ${i.key ? i.key + ': ' : ''}${i.message}`);
    throw configError(lines[0] as string, lines.slice(1));
  }
  return { config, file };
}

/** The run's config from /etc/selfware/<run>.yaml. */
export async function loadRunConfig(paths: RunPaths): Promise<LoadedConfig<RunConfig>> {
  return loadConfigFile<RunConfig>(paths.configFile, RUN_SCHEMA, RUN_CHECKS);
}

/** The workspace directory: the config's, or <state dir>/<run>/workspace. */
export function workspaceDir(config: RunConfig, paths: RunPaths): string {
  return config.workspace ?? paths.defaultWorkspace;
}
