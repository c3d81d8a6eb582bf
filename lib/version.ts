// The version of selfware, from package.json (two levels up from this file
// in dist/lib/, and from the bundled commands in dist/bin/).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function version(): string {
  if (cached) return cached;
  try {
    // The commands are CommonJS bundles (__filename); tests load lib/ as ES modules.
    const here = typeof __filename !== 'undefined' ? __filename : fileURLToPath(import.meta.url);
    const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(here), '../../package.json'), 'utf8')) as { version: string };
    cached = pkg.version;
  } catch {
    cached = 'unknown';
  }
  return cached;
}
