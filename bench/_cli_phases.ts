// For bench/cold_cli.ts --explain: where a cold `spotikit token` spends its
// time inside the process. Prints one JSON line: `loadedAt`, the
// performance.now() at which this entry module starts to run (the CLI's
// whole static module graph loaded and evaluated), and `mainMs`, how long
// main() then takes for the command given, with its output discarded.
//
//   deno run --allow-read --allow-env bench/_cli_phases.ts token --client-id ID --token-dir DIR

import { main } from "../src/cli.ts";

const loadedAt = performance.now();
const sink = { writeSync: (bytes: Uint8Array) => bytes.length, isTerminal: () => false };
const code = await main(Deno.args, { stdout: sink, stderr: sink });
const mainMs = performance.now() - loadedAt;
console.log(JSON.stringify({ loadedAt, mainMs, code }));
