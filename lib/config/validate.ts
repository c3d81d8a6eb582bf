// Validation of parsed YAML nodes against a Spec, so that each error names
// file:line:col and the key.

import { isMap, isScalar, isSeq, type Node, type LineCounter, type Pair, type YAMLMap } from 'yaml';
import { parseBytes, parseDuration } from '../units.js';
import { defaultsOf, didYouMean, type ConfigIssue, type Spec } from './spec.js';

function describeValue(node: Node | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
    return s.length > 60 ? s.slice(0, 57) + '...' : s;
  }
  return 'an unsupported value';
}

/**
 * The most any duration may be, whatever its key's own bound: what a timer
 * (setTimeout) can wait, 2^31-1 ms (about 24.8 days). Longer would fire at once.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;
/** The most any size may be (1 PiB): beyond it a value is a mistake, whatever the key. */
export const MAX_BYTES = 1024 ** 5;

/** A duration bound as it would be written, whole (formatDuration rounds to two units): 7d, 24d20h31m23s, 0s. */
function fmtBound(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let s = Math.floor(ms / 1000);
  let out = '';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (s >= size) {
      out += `${Math.floor(s / size)}${unit}`;
      s %= size;
    }
  }
  return out;
}

/** A size bound as it would be written: 16MiB, 1PiB, 0. */
function fmtSize(n: number): string {
  for (const [unit, size] of [['PiB', 1024 ** 5], ['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}

function expected(spec: Spec): string {
  const range = (min?: number, max?: number, fmt: (n: number) => string = String): string =>
    min !== undefined && max !== undefined
      ? ` from ${fmt(min)} to ${fmt(max)}`
      : min !== undefined
        ? ` >= ${fmt(min)}`
        : max !== undefined
          ? ` <= ${fmt(max)}`
          : '';
  switch (spec.kind) {
    case 'int':
      return `an integer${range(spec.min, spec.max)}`;
    case 'number':
      return `a number${range(spec.min, spec.max)}`;
    case 'bool':
      return 'true or false';
    case 'string':
      return spec.patternDoc ?? 'a string';
    case 'enum':
      return `one of ${spec.values.join(', ')}`;
    case 'duration':
      return `a duration such as 30s, 5m or 1h30m (${range(spec.min ?? 0, Math.min(spec.max ?? MAX_DURATION_MS, MAX_DURATION_MS), (n) => (n === 0 ? '0s' : fmtBound(n))).trim()})`;
    case 'bytes':
      return `a size such as 512MiB or 2G (${range(spec.min ?? 0, Math.min(spec.max ?? MAX_BYTES, MAX_BYTES), fmtSize).trim()})`;
    case 'list':
      return 'a list';
    case 'map':
    case 'object':
      return 'a mapping';
  }
}

export class Validator {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly lc: LineCounter) {}

  private pos(node: Node | Pair | null | undefined): { line: number; col: number } {
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (!range) return { line: 1, col: 1 };
    return this.lc.linePos(range[0]);
  }

  issue(node: Node | null | undefined, key: string, message: string): void {
    const { line, col } = this.pos(node);
    this.issues.push({ line, col, key, message });
  }

  /** Validate node against spec; returns the typed value (the default where invalid). */
  value(spec: Spec, node: Node | null | undefined, key: string): unknown {
    if (node === null || node === undefined) return defaultsOf(spec);
    const bad = (): unknown => {
      this.issue(node, key, `expected ${expected(spec)}, got ${describeValue(node)}`);
      return defaultsOf(spec);
    };
    if (spec.kind === 'object') {
      if (isScalar(node) && node.value === null) return defaultsOf(spec);
      if (!isMap(node)) return bad();
      return this.object(spec.fields, node, key);
    }
    if (spec.kind === 'map') {
      if (isScalar(node) && node.value === null) return defaultsOf(spec);
      if (!isMap(node)) return bad();
      const out: Record<string, unknown> = {};
      for (const pair of node.items) {
        const k = isScalar(pair.key) ? String(pair.key.value) : '';
        const sub = key ? `${key}.${k}` : k;
        if (spec.keyPattern && !spec.keyPattern.test(k)) {
          this.issue(pair.key as Node, sub, `invalid key '${k}'`);
          continue;
        }
        out[k] = this.value(spec.of, pair.value as Node, sub);
      }
      return out;
    }
    if (spec.kind === 'list') {
      if (isScalar(node) && node.value === null) return defaultsOf(spec);
      if (!isSeq(node)) return bad();
      return node.items.map((item, i) => this.value(spec.of, item as Node, `${key}[${i}]`));
    }
    if (!isScalar(node)) return bad();
    const v = node.value;
    switch (spec.kind) {
      case 'int':
        if (v === null && spec.nullable) return null;
        if (typeof v !== 'number' || !Number.isInteger(v)) return bad();
        if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) return bad();
        return v;
      case 'number':
        if (typeof v !== 'number' || !Number.isFinite(v)) return bad();
        if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) return bad();
        return v;
      case 'bool':
        if (typeof v !== 'boolean') return bad();
        return v;
      case 'string':
        if (v === null && spec.nullable) return null;
        if (typeof v !== 'string' || v === '') return bad();
        if (spec.pattern && !spec.pattern.test(v)) return bad();
        return v;
      case 'enum':
        if (typeof v !== 'string' || !spec.values.includes(v)) return bad();
        return v;
      case 'duration': {
        if (v === null && spec.nullable) return null;
        if (typeof v !== 'string' && typeof v !== 'number') return bad();
        const ms = parseDuration(v);
        if (ms === undefined || !Number.isFinite(ms) || ms > MAX_DURATION_MS) return bad();
        if ((spec.min !== undefined && ms < spec.min) || (spec.max !== undefined && ms > spec.max)) return bad();
        return ms;
      }
      case 'bytes': {
        if (v === null && spec.nullable) return null;
        if (typeof v !== 'string' && typeof v !== 'number') return bad();
        const b = parseBytes(v);
        if (b === undefined || !Number.isSafeInteger(b) || b > MAX_BYTES) return bad();
        if ((spec.min !== undefined && b < spec.min) || (spec.max !== undefined && b > spec.max)) return bad();
        return b;
      }
    }
  }

  object(fields: Record<string, Spec>, node: YAMLMap, key: string): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    for (const pair of node.items) {
      const keyNode = pair.key as Node;
      const k = isScalar(keyNode) ? String(keyNode.value) : '';
      const sub = key ? `${key}.${k}` : k;
      const spec = fields[k];
      if (!spec) {
        const hint = didYouMean(k, Object.keys(fields));
        this.issue(keyNode, sub, `unknown key${hint ? ` (did you mean '${hint}'?)` : ''}`);
        continue;
      }
      seen.add(k);
      out[k] = this.value(spec, pair.value as Node, sub);
    }
    for (const [k, spec] of Object.entries(fields)) if (!seen.has(k)) out[k] = defaultsOf(spec);
    return out;
  }
}
