// The report in one phrase, for the mail's subject, the check line when all
// is well, and the page's header: tasks first, then attempts when a task was
// tried again, so that the two are never added up as one.

import { plural } from '../units.js';
import type { Report } from './types.js';

/** "3 tasks: 2 completed, 1 failed (4 attempts, 1 retried)", or what there is to say when no task finished. */
export function summaryOf(r: Pick<Report, 'tasks' | 'attempts' | 'iterations'>): string {
  const t = r.tasks;
  const a = r.attempts;
  const done = t.completed + t.failed + t.cancelled;
  if (done === 0) {
    const parts = ['no task finished'];
    if (a.retried) parts.push(`${plural(a.retried, 'attempt')} failed and retried`);
    if (r.iterations) parts.push(plural(r.iterations, 'step'));
    return parts.join(', ');
  }
  const ended = a.completed + a.failed + a.cancelled;
  const tries = a.retried ? ` (${plural(ended, 'attempt')}, ${a.retried} retried)` : '';
  return `${plural(done, 'task')}: ${t.completed} completed, ${t.failed} failed${t.cancelled ? `, ${t.cancelled} cancelled` : ''}${tries}`;
}
