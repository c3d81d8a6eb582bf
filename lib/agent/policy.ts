// Policy: what an action may do. Rules come from the config as "ACTION:GLOB"
// or "GLOB" (any action); the glob matches a shell command (the whole of it,
// or any one of its parts between ; && || | and newlines) or a file path
// relative to the workspace. deny is checked first, then approve, then allow;
// an action no rule matches waits for a human. finish is always allowed.
// This is a guard against the obvious, not a sandbox: the unit's hardening is.

import type { PolicyConfig } from '../config/schema.js';
import type { Action } from './schema.js';

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

const ACTIONS = new Set(['shell', 'read_file', 'write_file']);

function parseRule(rule: string): { action: string | null; glob: RegExp } {
  const m = /^([a-z_]+):(.*)$/s.exec(rule);
  if (m && ACTIONS.has(m[1] as string)) return { action: m[1] as string, glob: globToRegExp(m[2] as string) };
  return { action: null, glob: globToRegExp(rule) };
}

/** The strings a rule is matched against. */
function subjects(a: Action): string[] {
  if (a.action === 'shell') {
    const whole = a.command.trim().replace(/\s+/g, ' ');
    const parts = a.command
      .split(/;|&&|\|\||\||\n/)
      .map((s) => s.trim().replace(/\s+/g, ' '))
      .filter((s) => s !== '');
    return [whole, ...parts];
  }
  if (a.action === 'read_file' || a.action === 'write_file') return [a.path.replace(/^\.\//, '')];
  return [];
}

function match(rules: string[], a: Action): string | null {
  const subs = subjects(a);
  for (const rule of rules) {
    const r = parseRule(rule);
    if (r.action !== null && r.action !== a.action) continue;
    if (subs.some((s) => r.glob.test(s))) return rule;
  }
  return null;
}

export function evaluate(a: Action, policy: Pick<PolicyConfig, 'deny' | 'approve' | 'allow'>): Verdict {
  if (a.action === 'finish') return { decision: 'allow', rule: null };
  const deny = match(policy.deny, a);
  if (deny) return { decision: 'deny', rule: deny };
  const approve = match(policy.approve, a);
  if (approve) return { decision: 'approve', rule: approve };
  const allow = match(policy.allow, a);
  if (allow) return { decision: 'allow', rule: allow };
  return { decision: 'approve', rule: null };
}
