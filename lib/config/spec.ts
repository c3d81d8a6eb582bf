// A small schema language for the YAML config: each key's type, default,
// bounds and documentation. Validation against parsed YAML is in validate.ts,
// loaded only when a config file exists (the yaml parser is slow to load).

interface Base {
  doc: string;
}
export type Spec =
  | (Base & { kind: 'int'; default: number | null; min?: number; max?: number; nullable?: boolean })
  | (Base & { kind: 'number'; default: number; min?: number; max?: number })
  | (Base & { kind: 'bool'; default: boolean })
  | (Base & { kind: 'string'; default: string | null; nullable?: boolean; pattern?: RegExp; patternDoc?: string })
  | (Base & { kind: 'enum'; values: readonly string[]; default: string })
  /** Milliseconds in the parsed config; "90s", "5m", "1h30m", or a number of seconds in YAML. */
  | (Base & { kind: 'duration'; default: number | null; min?: number; max?: number; nullable?: boolean })
  /** Bytes; "512MiB", "2G" or an integer in YAML. */
  | (Base & { kind: 'bytes'; default: number | null; nullable?: boolean; min?: number; max?: number })
  | (Base & { kind: 'list'; of: Spec; default: unknown[] })
  /** A mapping with free keys, each value of one spec. */
  | (Base & { kind: 'map'; of: Spec; default: Record<string, unknown>; keyPattern?: RegExp })
  | (Base & { kind: 'object'; fields: Record<string, Spec> });

export interface ConfigIssue {
  line: number;
  col: number;
  key: string;
  message: string;
}

/** The defaults of a spec, as the parsed config would hold them. */
export function defaultsOf(spec: Spec): unknown {
  if (spec.kind === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, s] of Object.entries(spec.fields)) out[k] = defaultsOf(s);
    return out;
  }
  if (spec.kind === 'list') return structuredClone(spec.default);
  if (spec.kind === 'map') return structuredClone(spec.default);
  return spec.default;
}

/** Edit distance, for "did you mean". */
export function levenshtein(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0] as number;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j] as number;
      dp[j] = Math.min((dp[j] as number) + 1, (dp[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length] as number;
}

export function didYouMean(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

