// The one JSON action the model answers with at each step, as a JSON schema
// (node-llama-cpp turns it into a grammar, so even a random model answers
// with one of these shapes), and its validation after parsing.

export type Action =
  | { action: 'shell'; command: string }
  | { action: 'read_file'; path: string }
  | { action: 'write_file'; path: string; content: string }
  | { action: 'finish'; summary: string };

export const ACTION_NAMES = ['shell', 'read_file', 'write_file', 'finish'] as const;

export const LIMITS = { command: 4000, path: 1000, content: 200_000, summary: 4000 } as const;

/** The schema in the subset node-llama-cpp's grammar understands (oneOf, const, string lengths). */
export const ACTION_SCHEMA = {
  oneOf: [
    {
      type: 'object',
      properties: { action: { const: 'shell' }, command: { type: 'string', minLength: 1, maxLength: LIMITS.command } },
      required: ['action', 'command'],
    },
    {
      type: 'object',
      properties: { action: { const: 'read_file' }, path: { type: 'string', minLength: 1, maxLength: LIMITS.path } },
      required: ['action', 'path'],
    },
    {
      type: 'object',
      properties: {
        action: { const: 'write_file' },
        path: { type: 'string', minLength: 1, maxLength: LIMITS.path },
        content: { type: 'string', maxLength: LIMITS.content },
      },
      required: ['action', 'path', 'content'],
    },
    {
      type: 'object',
      properties: { action: { const: 'finish' }, summary: { type: 'string', maxLength: LIMITS.summary } },
      required: ['action', 'summary'],
    },
  ],
} as const;

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
  const extra = (allowed: string[]): string | null => Object.keys(o).find((k) => !allowed.includes(k)) ?? null;
  switch (o.action) {
    case 'shell': {
      const command = str('command', 1, LIMITS.command);
      if (command === null || extra(['action', 'command'])) return { error: 'shell needs exactly {"action":"shell","command":"..."}' };
      return { action: { action: 'shell', command } };
    }
    case 'read_file': {
      const p = str('path', 1, LIMITS.path);
      if (p === null || extra(['action', 'path'])) return { error: 'read_file needs exactly {"action":"read_file","path":"..."}' };
      return { action: { action: 'read_file', path: p } };
    }
    case 'write_file': {
      const p = str('path', 1, LIMITS.path);
      const content = str('content', 0, LIMITS.content);
      if (p === null || content === null || extra(['action', 'path', 'content'])) return { error: 'write_file needs exactly {"action":"write_file","path":"...","content":"..."}' };
      return { action: { action: 'write_file', path: p, content } };
    }
    case 'finish': {
      const summary = str('summary', 0, LIMITS.summary);
      if (summary === null || extra(['action', 'summary'])) return { error: 'finish needs exactly {"action":"finish","summary":"..."}' };
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
    case 'finish':
      return `finish: ${cut(a.summary)}`;
  }
}
