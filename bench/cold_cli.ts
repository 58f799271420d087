// Cold process cost of `spotikit token` with a valid cached token: wall time
// and peak RSS of `deno run src/cli.ts token …`, next to a bare `deno run`
// that only reads a JSON file (bench/_read_json.ts), measured the same way in
// the same run, interleaved.
//
// Each run is `/usr/bin/time -v deno run …`: the peak RSS is time's "Maximum
// resident set size"; the wall time is measured here around the whole spawn
// (time's own clock has 10 ms steps), so it includes the same fork/exec
// overhead for every row. Both commands get the same permissions and the
// same project configuration (deno.json, deno.lock) as a user's run would.
//
//   deno run --allow-run --allow-read --allow-write --allow-env bench/cold_cli.ts [--runs 20] [--explain]
//
// --runs N    runs per command after the warm-up runs (default 20; CI smoke: 3)
// --explain   also measure the variants used to find where the time goes
//             (no project config, the CLI's --help, no V8 code cache) and the
//             in-process split: module graph, then main() (bench/_cli_phases.ts)
//
// Exits 1 when a run fails or prints the wrong token, not when a budget is missed.

import { FileTokenStore } from "../src/file_token_store.ts";
import { formatMs, quantile } from "./_samples.ts";

const BUDGET = { wallMs: 35, rssMb: 45 };
const TIME = "/usr/bin/time";

function parseArgs(args: string[]): { runs: number; explain: boolean } {
  let runs = 20;
  let explain = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--explain") explain = true;
    else if (arg === "--runs" || arg.startsWith("--runs=")) {
      const value = arg === "--runs" ? args[++i] : arg.slice("--runs=".length);
      runs = Number(value);
      if (!Number.isInteger(runs) || runs < 1) {
        throw new RangeError(`--runs must be a positive integer, not "${value}"`);
      }
    } else throw new TypeError(`Unknown argument "${arg}"`);
  }
  return { runs, explain };
}

interface Variant {
  name: string;
  /** The program to time; `deno` when not given. */
  program?: string;
  args: string[];
  /** What standard output must be, trimmed. */
  expect: string | RegExp;
  budget?: boolean;
}

interface Sample {
  wallMs: number;
  rssMb: number;
}

async function runOnce(variant: Variant, root: string): Promise<Sample> {
  const started = performance.now();
  const output = await new Deno.Command(TIME, {
    args: ["-v", variant.program ?? Deno.execPath(), ...variant.args],
    cwd: root,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wallMs = performance.now() - started;
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const stderr = new TextDecoder().decode(output.stderr);
  const ok = typeof variant.expect === "string"
    ? stdout === variant.expect
    : variant.expect.test(stdout);
  if (!output.success || !ok) {
    throw new Error(
      `${variant.name} failed (exit code ${output.code}):\n${stdout.slice(0, 200)}\n${stderr}`,
    );
  }
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
  if (!rss) throw new Error(`No "Maximum resident set size" in the output of ${TIME} -v`);
  return { wallMs, rssMb: Number(rss[1]) / 1024 };
}

function stats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    median: quantile(sorted, 0.5),
    p25: quantile(sorted, 0.25),
    p75: quantile(sorted, 0.75),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
  };
}

async function main(): Promise<number> {
  const { runs, explain } = parseArgs(Deno.args);
  try {
    await Deno.stat(TIME);
  } catch {
    console.error(`${TIME} is missing; install it with: apt-get install -y time`);
    return 1;
  }
  const root = new URL("..", import.meta.url).pathname;
  const directory = await Deno.makeTempDir({ prefix: "spotikit-cold-" });
  try {
    // A valid cached token, written the way the CLI's own store writes it.
    const store = new FileTokenStore({ directory });
    const key = { clientId: "bench-cli" };
    const accessToken = `BQD${"x".repeat(297)}`;
    await store.set(key, {
      token: {
        accessToken,
        tokenType: "Bearer",
        scope: ["user-read-private"],
        expiresAt: Date.now() + 3_600_000,
        refreshToken: `AQC${"y".repeat(127)}`,
      },
      consentedAt: Date.now(),
    });
    const permissions = ["--allow-read", "--allow-env"];
    // Nothing listens on port 9: a run that tried to refresh would fail.
    const cli = [
      "token",
      "--client-id",
      key.clientId,
      "--token-dir",
      directory,
      "--accounts-url",
      "http://127.0.0.1:9/",
    ];
    const variants: Variant[] = [
      {
        name: "deno run src/cli.ts token (cached token)",
        args: ["run", ...permissions, "src/cli.ts", ...cli],
        expect: accessToken,
        budget: true,
      },
      {
        name: "baseline: deno run bench/_read_json.ts",
        args: ["run", ...permissions, "bench/_read_json.ts", store.path(key)],
        expect: accessToken,
      },
      {
        // What every row pays for the spawn and for time itself.
        name: "spawn overhead: /usr/bin/time -v /bin/true",
        program: "/bin/true",
        args: [],
        expect: "",
      },
    ];
    if (explain) {
      variants.push(
        {
          name: "explain: deno run --no-config src/cli.ts token",
          args: ["run", "--no-config", ...permissions, "src/cli.ts", ...cli],
          expect: accessToken,
        },
        {
          name: "explain: deno run --no-config bench/_read_json.ts",
          args: ["run", "--no-config", ...permissions, "bench/_read_json.ts", store.path(key)],
          expect: accessToken,
        },
        {
          name: "explain: deno run src/cli.ts token --help (graph only)",
          args: ["run", ...permissions, "src/cli.ts", "token", "--help"],
          expect: /^Usage: spotikit token/,
        },
        {
          name: "explain: deno run --no-code-cache src/cli.ts token",
          args: ["run", "--no-code-cache", ...permissions, "src/cli.ts", ...cli],
          expect: accessToken,
        },
      );
    }

    // Warm-up: the module graph is resolved and emitted, and V8's code cache
    // written, before anything is measured.
    for (const variant of variants) {
      for (let i = 0; i < 2; i++) await runOnce(variant, root);
    }

    const samples = new Map<Variant, Sample[]>(variants.map((v) => [v, []]));
    for (let i = 0; i < runs; i++) {
      for (const variant of variants) samples.get(variant)!.push(await runOnce(variant, root));
    }

    const mb = (n: number) => `${n.toFixed(1)} MB`;
    const median = (variant: Variant, field: keyof Sample) =>
      stats(samples.get(variant)!.map((s) => s[field])).median;
    const rows = variants.map((variant) => {
      const list = samples.get(variant)!;
      const wall = stats(list.map((s) => s.wallMs));
      const rss = stats(list.map((s) => s.rssMb));
      const budget = variant.budget ? `≤ ${BUDGET.wallMs} ms, ≤ ${BUDGET.rssMb} MB` : "";
      const met = variant.budget
        ? `wall ${wall.median <= BUDGET.wallMs ? "yes" : "NO"}, RSS ${
          rss.median <= BUDGET.rssMb ? "yes" : "NO"
        }`
        : "";
      return `| ${variant.name} | ${list.length} | ${formatMs(wall.median)} | ${
        formatMs(wall.p25)
      } – ${formatMs(wall.p75)} | ${formatMs(wall.min)} – ${formatMs(wall.max)} | ${
        mb(rss.median)
      } | ${mb(rss.min)} – ${mb(rss.max)} | ${variant.budget ? budget : ""} | ${met} |`;
    });
    console.log(
      [
        `Cold process, ${runs} runs per command after 2 warm-up runs each, interleaved; ${Deno.execPath()} ${Deno.version.deno}`,
        `wall: measured around the spawn of ${TIME} -v; RSS: its "Maximum resident set size" (MB = 1024 KiB)`,
        "",
        "| command | runs | wall median | wall IQR | wall min – max | RSS median | RSS min – max | budget | met? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ...rows,
        "",
        `CLI minus baseline (medians): ${
          formatMs(median(variants[0]!, "wallMs") - median(variants[1]!, "wallMs"))
        } wall, ${mb(median(variants[0]!, "rssMb") - median(variants[1]!, "rssMb"))} RSS; ` +
        `baseline minus spawn overhead: ${
          formatMs(median(variants[1]!, "wallMs") - median(variants[2]!, "wallMs"))
        } wall`,
      ].join("\n"),
    );
    if (explain) await explainPhases(permissions, cli, root, runs);
    return 0;
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

/** In-process split of the CLI's cold run: module graph, then main(). */
async function explainPhases(
  permissions: string[],
  cli: string[],
  root: string,
  runs: number,
): Promise<void> {
  const probe = async (script: string) => {
    const loaded: number[] = [];
    const mains: number[] = [];
    for (let i = 0; i < runs + 2; i++) {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...permissions, script, ...cli],
        cwd: root,
        env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const result = JSON.parse(new TextDecoder().decode(output.stdout));
      if (!output.success || result.code !== 0) throw new Error(`${script} failed`);
      if (i < 2) continue; // warm-up
      loaded.push(result.loadedAt);
      mains.push(result.mainMs);
    }
    return { loaded: stats(loaded).median, main: stats(mains).median };
  };
  const empty = await probe("bench/_empty_phases.ts");
  const cliRun = await probe("bench/_cli_phases.ts");
  console.log(
    [
      "",
      `In-process phases (medians of ${runs} runs; performance.now() counts from the runtime's start):`,
      "",
      "| phase | median |",
      "| --- | --- |",
      `| entry module runs, no imports | ${formatMs(empty.loaded)} |`,
      `| entry module runs, after importing src/cli.ts | ${formatMs(cliRun.loaded)} |`,
      `| = the CLI's module graph (load + evaluate) | ${formatMs(cliRun.loaded - empty.loaded)} |`,
      `| main(["token", …]) with a cached token, cold | ${formatMs(cliRun.main)} |`,
    ].join("\n"),
  );
}

Deno.exit(await main());
