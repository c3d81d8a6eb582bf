// The one JSON action the model answers with at each step, as a JSON schema
// (node-llama-cpp turns it into a grammar, so even a random model answers
// with one of these shapes), and its validation after parsing.
//
// The grammar makes every property of an object required, so an action with
// optional fields (view's lines, search's path) is two shapes in the schema.

export type Action =
  | { action: 'shell'; command: string }
  | { action: 'read_file'; path: string }
  | { action: 'write_file'; path: string; content: string }
  | { action: 'view'; path: string; start?: number; end?: number }
  | { action: 'search'; pattern: string; path?: string }
  | { action: 'edit'; path: string; old: string; new: string }
  | { action: 'apply_patch'; patch: string }
  | { action: 'note'; text: string }
  | { action: 'finish'; summary: string };

export type ActionName = Action['action'];

export const ACTION_NAMES = ['shell', 'read_file', 'write_file', 'view', 'search', 'edit', 'apply_patch', 'note', 'finish'] as const;

export const LIMITS = { command: 4000, path: 1000, content: 200_000, summary: 4000, pattern: 1000, old: 50_000, patch: 200_000, note: 500, line: 10_000_000 } as const;

const str = (min: number, max: number): { type: 'string'; minLength: number; maxLength: number } => ({ type: 'string', minLength: min, maxLength: max });
const shape = (name: string, props: Record<string, unknown>): Record<string, unknown> => ({ type: 'object', properties: { action: { const: name }, ...props }, required: ['action', ...Object.keys(props)] });

/** The schema in the subset node-llama-cpp's grammar understands (oneOf, const, string lengths, integers). */
export const ACTION_SCHEMA = {
  oneOf: [
    shape('shell', { command: str(1, LIMITS.command) }),
    shape('read_file', { path: str(1, LIMITS.path) }),
    shape('write_file', { path: str(1, LIMITS.path), content: str(0, LIMITS.content) }),
    shape('view', { path: str(1, LIMITS.path) }),
    shape('view', { path: str(1, LIMITS.path), start: { type: 'integer' }, end: { type: 'integer' } }),
    shape('search', { pattern: str(1, LIMITS.pattern) }),
    shape('search', { pattern: str(1, LIMITS.pattern), path: str(1, LIMITS.path) }),
    shape('edit', { path: str(1, LIMITS.path), old: str(1, LIMITS.old), new: str(0, LIMITS.old) }),
    shape('apply_patch', { patch: str(1, LIMITS.patch) }),
    shape('note', { text: str(1, LIMITS.note) }),
    shape('finish', { summary: str(0, LIMITS.summary) }),
  ],
};

/** How each action is written, for the prompt and for errors. */
export const ACTION_USAGE: Record<ActionName, string> = {
  shell: '{"action":"shell","command":"..."}',
  read_file: '{"action":"read_file","path":"..."}',
  write_file: '{"action":"write_file","path":"...","content":"..."}',
  view: '{"action":"view","path":"..."} or {"action":"view","path":"...","start":N,"end":M}',
  search: '{"action":"search","pattern":"..."} or {"action":"search","pattern":"...","path":"..."}',
  edit: '{"action":"edit","path":"...","old":"...","new":"..."}',
  apply_patch: '{"action":"apply_patch","patch":"..."}',
  note: '{"action":"note","text":"..."}',
  finish: '{"action":"finish","summary":"..."}',
};

/** Parse and check an answer: an Action, or why it is not one (the model is told and asked again). */
export function parseAction(text: string): { action: Action } | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { error: `not JSON: ${JSON.stringify(text.slice(0, 200))}` };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { error: 'not a JSON object' };
  const o = v as Record<string, unknown>;
  const str = (k: string, min: number, max: number): string | null => {
    const x = o[k];
    return typeof x === 'string' && x.length >= min && x.length <= max ? x : null;
  };
  const int = (k: string): number | null | undefined => {
    const x = o[k];
    if (x === undefined) return undefined;
    return typeof x === 'number' && Number.isInteger(x) && Math.abs(x) <= LIMITS.line ? x : null;
  };
  const only = (allowed: string[]): boolean => Object.keys(o).every((k) => allowed.includes(k));
  const usage = (name: ActionName): { error: string } => ({ error: `${name} needs exactly ${ACTION_USAGE[name]}` });
  switch (o.action) {
    case 'shell': {
      const command = str('command', 1, LIMITS.command);
      if (command === null || !only(['action', 'command'])) return usage('shell');
      return { action: { action: 'shell', command } };
    }
    case 'read_file': {
      const p = str('path', 1, LIMITS.path);
      if (p === null || !only(['action', 'path'])) return usage('read_file');
      return { action: { action: 'read_file', path: p } };
    }
    case 'write_file': {
      const p = str('path', 1, LIMITS.path);
      const content = str('content', 0, LIMITS.content);
      if (p === null || content === null || !only(['action', 'path', 'content'])) return usage('write_file');
      return { action: { action: 'write_file', path: p, content } };
    }
    case 'view': {
      const p = str('path', 1, LIMITS.path);
      const start = int('start');
      const end = int('end');
      if (p === null || start === null || end === null || !only(['action', 'path', 'start', 'end'])) return usage('view');
      if ((start === undefined) !== (end === undefined)) return { error: 'view takes both start and end, or neither' };
      return { action: start === undefined || end === undefined ? { action: 'view', path: p } : { action: 'view', path: p, start, end } };
    }
    case 'search': {
      const pattern = str('pattern', 1, LIMITS.pattern);
      const p = o.path === undefined ? undefined : str('path', 1, LIMITS.path);
      if (pattern === null || p === null || !only(['action', 'pattern', 'path'])) return usage('search');
      return { action: p === undefined ? { action: 'search', pattern } : { action: 'search', pattern, path: p } };
    }
    case 'edit': {
      const p = str('path', 1, LIMITS.path);
      const old = str('old', 1, LIMITS.old);
      const nw = str('new', 0, LIMITS.old);
      if (p === null || old === null || nw === null || !only(['action', 'path', 'old', 'new'])) return usage('edit');
      return { action: { action: 'edit', path: p, old, new: nw } };
    }
    case 'apply_patch': {
      const patch = str('patch', 1, LIMITS.patch);
      if (patch === null || !only(['action', 'patch'])) return usage('apply_patch');
      return { action: { action: 'apply_patch', patch } };
    }
    case 'note': {
      const t = str('text', 1, LIMITS.note);
      if (t === null || t.trim() === '' || !only(['action', 'text'])) return usage('note');
      return { action: { action: 'note', text: t } };
    }
    case 'finish': {
      const summary = str('summary', 0, LIMITS.summary);
      if (summary === null || !only(['action', 'summary'])) return usage('finish');
      return { action: { action: 'finish', summary } };
    }
    default:
      return { error: `unknown action ${JSON.stringify(o.action)}; use one of ${ACTION_NAMES.join(', ')}` };
  }
}

/** One line describing an action, for logs, STATUS and approvals. */
export function describeAction(a: Action): string {
  const cut = (s: string, n = 120): string => (s.length > n ? s.slice(0, n - 3) + '...' : s).replace(/\s+/g, ' ');
  switch (a.action) {
    case 'shell':
      return `shell: ${cut(a.command)}`;
    case 'read_file':
      return `read_file: ${cut(a.path)}`;
    case 'write_file':
      return `write_file: ${cut(a.path)} (${a.content.length} bytes)`;
    case 'view':
      return `view: ${cut(a.path)}${a.start !== undefined ? ` lines ${a.start}-${a.end}` : ''}`;
    case 'search':
      return `search: ${cut(a.pattern, 80)}${a.path !== undefined ? ` in ${cut(a.path, 60)}` : ''}`;
    case 'edit':
      return `edit: ${cut(a.path)} (${a.old.split('\n').length} lines replaced by ${a.new === '' ? 0 : a.new.split('\n').length})`;
    case 'apply_patch':
      return `apply_patch: ${cut(patchPaths(a.patch).join(', ') || '(no file named)')}`;
    case 'note':
      return `note: ${cut(a.text)}`;
    case 'finish':
      return `finish: ${cut(a.summary)}`;
  }
}

/**
 * The path a diff's `---`/`+++` header names: a timestamp after a tab left
 * out, a C-quoted name unquoted, the a/ or b/ prefix taken off; /dev/null as
 * it is.
 */
export function diffPath(header: string): string {
  let s = header.replace(/\t.*$/, '').trim();
  if (s.startsWith('"') && s.endsWith('"')) {
    try {
      s = JSON.parse(s) as string;
    } catch {
      /* kept as written */
    }
  }
  return s === '/dev/null' ? s : s.replace(/^[ab]\//, '');
}

/**
 * The workspace paths a unified diff names (old and new sides, renames and
 * copies; a/ and b/ prefixes taken off, /dev/null left out), in order, once.
 */
export function patchPaths(patch: string): string[] {
  const out: string[] = [];
  const add = (p: string): void => {
    const s = diffPath(p);
    if (s === '/dev/null' || s === '') return;
    if (!out.includes(s)) out.push(s);
  };
  for (const line of patch.split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^(?:---|\+\+\+) (.+)$/.exec(line))) add(m[1] as string);
    else if ((m = /^(?:rename|copy) (?:from|to) (.+)$/.exec(line))) add(`a/${m[1] as string}`);
    else if ((m = /^diff --git (\S+) (\S+)$/.exec(line))) {
      add(m[1] as string);
      add(m[2] as string);
    }
  }
  return out;
}
