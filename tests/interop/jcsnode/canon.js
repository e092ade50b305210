// Reads one JSON text per line on stdin and writes its RFC 8785 form per line, using
// erdtman/canonicalize (an implementation independent of Filiera's). A line that does not
// parse is answered "!error" so the line numbers stay aligned.
'use strict';
const canonicalize = require('canonicalize');
const readline = require('readline');

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
rl.on('line', (line) => {
  try {
    out.push(canonicalize(JSON.parse(line)));
  } catch (e) {
    out.push('!error ' + e.message);
  }
});
rl.on('close', () => {
  process.stdout.write(out.join('\n') + '\n');
});
