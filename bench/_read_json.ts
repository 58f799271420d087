// Baseline for bench/cold_cli.ts: a bare `deno run` that reads a JSON file
// and prints one field, as `spotikit token` does with a cached token.
//
//   deno run --allow-read bench/_read_json.ts FILE

const [path] = Deno.args;
if (!path) throw new TypeError("Usage: deno run --allow-read bench/_read_json.ts FILE");
console.log(JSON.parse(await Deno.readTextFile(path)).token.accessToken);
