// deno bench reports the mean, min, max, p75 and p99 but no median. For the
// benchmarks that have a budget, the measured section is also timed here per
// iteration, and a table of medians and quartiles is printed when the bench
// process unloads (warm-up iterations, the first 10 % of each series, are
// left out).

const series = new Map<string, number[]>();

/**
 * `BENCH_SMOKE=1 deno task bench` runs every benchmark a few times only: a
 * check for CI that the benchmarks (and the assertions in them) still run,
 * not a measurement.
 */
export const SMOKE: { n?: number; warmup?: number } = Deno.env.get("BENCH_SMOKE") === "1"
  ? { n: 5, warmup: 1 }
  : {};

/**
 * Runs `fn` between `b.start()` and `b.end()` and keeps its duration in
 * milliseconds under `name`; `per` divides it (for a batch of `per` calls).
 */
export async function timed(
  name: string,
  b: Deno.BenchContext,
  fn: () => Promise<unknown> | unknown,
  per = 1,
): Promise<void> {
  b.start();
  const started = performance.now();
  await fn();
  const elapsed = performance.now() - started;
  b.end();
  let list = series.get(name);
  if (!list) series.set(name, list = []);
  list.push(elapsed / per);
}

/** Sorted-sample quantile, linear interpolation. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

/** A duration in ms as µs or ms with three significant figures. */
export function formatMs(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toPrecision(3)} µs`;
  return `${ms.toPrecision(3)} ms`;
}

/** Prints the median table of everything {@linkcode timed} kept. */
export function printSeries(title: string): void {
  if (series.size === 0) return;
  const rows = [...series].map(([name, all]) => {
    const kept = all.slice(Math.floor(all.length / 10)).sort((a, b) => a - b);
    return `| ${name} | ${kept.length} | ${formatMs(quantile(kept, 0.5))} | ${
      formatMs(quantile(kept, 0.25))
    } – ${formatMs(quantile(kept, 0.75))} | ${formatMs(kept[0]!)} – ${
      formatMs(kept[kept.length - 1]!)
    } |`;
  });
  console.log(
    [
      "",
      `${title}: per-iteration samples (first 10 % dropped as warm-up)`,
      "",
      "| benchmark | n | median | IQR (p25 – p75) | min – max |",
      "| --- | --- | --- | --- | --- |",
      ...rows,
      "",
    ].join("\n"),
  );
}

globalThis.addEventListener(
  "unload",
  () => printSeries(new URL(Deno.mainModule).pathname.split("/").slice(-2).join("/")),
);
