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

function expected(spec: Spec): string {
  const range = (min?: number, max?: number): string =>
    min !== undefined && max !== undefined
      ? ` from ${min} to ${max}`
      : min !== undefined
        ? ` >= ${min}`
        : max !== undefined
          ? ` <= ${max}`
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
      return `a duration such as 30s, 5m or 1h30m${spec.min !== undefined || spec.max !== undefined ? ` (${range(spec.min === undefined ? undefined : spec.min / 1000, spec.max === undefined ? undefined : spec.max / 1000).trim()} seconds)` : ''}`;
    case 'bytes':
      return 'a size such as 512MiB or 2G';
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
        if (ms === undefined) return bad();
        if ((spec.min !== undefined && ms < spec.min) || (spec.max !== undefined && ms > spec.max)) return bad();
        return ms;
      }
      case 'bytes': {
        if (v === null && spec.nullable) return null;
        if (typeof v !== 'string' && typeof v !== 'number') return bad();
        const b = parseBytes(v);
        if (b === undefined) return bad();
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
