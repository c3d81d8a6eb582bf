// The runner of `make test`: the files run in the order given, two at a time.
// (`node --test FILE...` sorts the files it is given, so the two longest
// could not be made to start first; run() keeps the order.) TAP on standard
// output, exit status 1 if any test failed.
//   node dist/test/runner.js FILE...

import { run } from 'node:test';
import { tap } from 'node:test/reporters';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node dist/test/runner.js FILE...');
  process.exit(64);
}
const stream = run({ files, concurrency: 2, timeout: 1_800_000 });
stream.on('test:fail', () => {
  process.exitCode = 1;
});
stream.compose(tap).pipe(process.stdout);
