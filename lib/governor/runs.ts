// The runs the governor serves: the directories under the state root that
// hold a task log.

import fs from 'node:fs';
import path from 'node:path';
import { RUN_NAME_RE } from '../run.js';

/** Runs (their directories) under the state root: those with a task log. */
export function listRuns(stateRoot: string): Array<{ run: string; dir: string }> {
  let names: string[] = [];
  try {
    names = fs.readdirSync(stateRoot);
  } catch {
    return [];
  }
  return names
    // Only what could be a run: a stray directory ('x y', '.old') is not one, whatever it holds.
    .filter((n) => RUN_NAME_RE.test(n) && fs.existsSync(path.join(stateRoot, n, 'tasklog.journal')))
    .sort()
    .map((n) => ({ run: n, dir: path.join(stateRoot, n) }));
}
