// For bench/cold_cli.ts --explain: the performance.now() at which an entry
// module with no imports starts to run, to subtract from bench/_cli_phases.ts.

console.log(JSON.stringify({ loadedAt: performance.now(), mainMs: 0, code: 0 }));
