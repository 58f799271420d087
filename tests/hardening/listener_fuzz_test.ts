// Hostile input against the loopback callback listener: a seeded fuzzer sends
// SPOTIKIT_FUZZ_REQUESTS requests (default 1,000; the full run is 10,000) at
// a listener that is waiting for a login, then the real callback, and checks
// that nothing crashed, nothing was accepted, nothing was reflected, the wait
// was not ended, and memory stayed bounded. Replay a run with
// SPOTIKIT_FUZZ_SEED=<the printed seed>.

import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert/strict";
import { createState, SpotifyOAuthError, startCallbackServer } from "../../mod.ts";
import {
  CODE_PREFIX,
  collectGarbage,
  fuzzRequestCount,
  fuzzSeed,
  type FuzzTarget,
  generateCase,
  Histogram,
  HTML_MARKER,
  mb,
  type MemorySample,
  parseResponses,
  Prng,
  runFetch,
  runPool,
  runRaw,
  sampleMemory,
  STATE_PREFIX,
} from "./_fuzz.ts";

const CONCURRENCY = 16;
const MIB = 1024 * 1024;
// Per request: a timer closes the socket (or aborts the fetch) after this.
// Loopback answers take milliseconds; hitting it counts as an anomaly.
const DEADLINE_MS = 5_000;
const PROBE_EVERY = 250;
const SAMPLE_EVERY = 100;

// Memory bounds. The listener keeps no per-request state (a counter and the
// last state error), so nothing it holds should grow with the number of
// requests. Heap samples are taken after a full collection (see
// collectGarbage), so they count live objects: runs of 1,000 and 10,000
// requests end 1.5-2 MiB above where they started (fetch's connection pool,
// compiled code) and the second half adds nothing. About 80% of the requests
// reach the handler, so a handler that kept ~1 KB per request would cross
// these bounds in a 10,000 run (checked: keeping each URL plus 2,000 bytes
// grew the heap 12.4 MiB, 4.6 MiB of it in the second half); the default run
// only catches leaks of ~8 KB per request or more.
//
// RSS covers both ends of every connection (this process is the client too)
// and the allocator keeps freed native buffers, so it is a coarse guard: up
// to 16 requests in flight, each with up to 1 MiB of header flood in our
// write buffer and ~64 KiB of request head in Deno's HTTP layer, observed
// peaks 40-110 MiB above the start; the bounds are about twice that. The
// start sample also includes the type checker when its cache was cold, so
// growth is measured from the lower of the start and middle samples.
const HEAP_GROWTH_LIMIT = 8 * MIB;
const HEAP_SECOND_HALF_LIMIT = 4 * MIB;
const RSS_PEAK_GROWTH_LIMIT = 256 * MIB;
const RSS_SECOND_HALF_LIMIT = 64 * MIB;

async function page(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(url);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

Deno.test("startCallbackServer() survives hostile requests and still takes the real callback", async () => {
  const seed = fuzzSeed();
  const count = fuzzRequestCount();
  console.log(
    `listener fuzz: seed=${seed} requests=${count} (replay: SPOTIKIT_FUZZ_SEED=${seed} SPOTIKIT_FUZZ_REQUESTS=${count})`,
  );

  const uncaught: unknown[] = [];
  const onError = (event: ErrorEvent) => uncaught.push(event.error);
  const onRejection = (event: PromiseRejectionEvent) => uncaught.push(event.reason);
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    const before = sampleMemory(true);
    const peak: MemorySample = { ...before };
    const track = (collect = false) => {
      const now = sampleMemory(collect);
      peak.rss = Math.max(peak.rss, now.rss);
      peak.heapUsed = Math.max(peak.heapUsed, now.heapUsed);
      return now;
    };

    await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
    const port = Number(new URL(server.redirectUri).port);
    const path = new URL(server.redirectUri).pathname;
    const realState = createState();
    const realCode = `REAL-${crypto.randomUUID()}`;
    const waiting = server.waitForCode(realState, { timeout: 600_000 });
    let settled: string | undefined;
    waiting.then(
      (code) => settled = `resolved with ${JSON.stringify(code)}`,
      (error) => settled = `rejected with ${error}`,
    );

    const rng = new Prng(seed);
    const target: FuzzTarget = { port, path, realState, realCode };
    const kinds = new Histogram();
    const transports = new Histogram();
    const statuses = new Histogram();
    const ends = new Histogram();
    const byKind = new Histogram();
    const anomalies: string[] = [];
    const anomaly = (text: string) => anomalies.push(text);
    let accepted = 0;
    let pipelinesCutShort = 0;
    let reflected = 0;
    let settledAt = -1;
    let probes = 0;
    let listenerDown = 0;
    let done = 0;
    let middle: MemorySample | undefined;

    // The listener still answers, and still waits: a 404 for another path, and
    // the state page (not 503 "No login in progress") for the redirect path.
    const probe = async () => {
      probes++;
      try {
        const other = await page(`http://127.0.0.1:${port}/favicon.ico`);
        const callback = await page(`http://127.0.0.1:${port}${path}`);
        if (
          other.status !== 404 || callback.status !== 400 ||
          !callback.body.includes("This login link is not for this program")
        ) {
          listenerDown++;
          anomaly(`probe ${probes}: ${other.status}/${callback.status}`);
        }
      } catch (error) {
        listenerDown++;
        anomaly(`probe ${probes}: ${error}`);
      }
    };

    const started = performance.now();
    await runPool(count, CONCURRENCY, async (index) => {
      const c = generateCase(rng, index, target);
      kinds.add(c.kind);
      transports.add(c.transport);
      const outcome = c.transport === "fetch"
        ? await runFetch(port, c, DEADLINE_MS)
        : await runRaw(port, c, DEADLINE_MS);
      ends.add(outcome.end);
      // Raw answers without a listener page came from Deno's HTTP layer
      // (marked "*"): the request never reached the handler.
      const labels = outcome.statuses.map((status, i) =>
        c.transport === "raw" && !outcome.bodies[i]?.includes("<h1>") ? `${status}*` : `${status}`
      );
      byKind.add(
        `${c.kind}/${
          c.kind === "pipelined"
            ? `${outcome.statuses.length}-of-${c.transport === "raw" ? c.responses : 0}-answered`
            : labels.length
            ? labels.join("+")
            : outcome.end
        }`,
      );
      for (const label of labels) statuses.add(label);
      const label = `#${index} ${c.kind} ${c.transport}`;
      if (c.transport === "fetch") {
        if (outcome.end !== "ok" || outcome.statuses[0] !== c.status) {
          anomaly(
            `${label} ${c.method} ${
              c.target.slice(0, 120)
            }: expected ${c.status}, got ${outcome.end} ${outcome.statuses} ${outcome.error ?? ""}`,
          );
        }
      } else {
        const wrong = outcome.statuses.filter((status) => !c.allowed.includes(status));
        // A server may stop answering a pipeline if it says so (RFC 9112
        // §9.3.2: the client retries the rest); Deno does after some
        // sequences of requests whose bodies the handler did not read.
        const answered = outcome.statuses.length;
        const cutShort = c.responses !== undefined && answered > 0 && answered < c.responses &&
          outcome.announcedClose === true;
        if (cutShort) pipelinesCutShort++;
        const missing = c.responses !== undefined && answered !== c.responses && !cutShort;
        if (wrong.length || missing || outcome.end === "timeout") {
          anomaly(`${label}: ${outcome.end} ${outcome.statuses} ${outcome.error ?? ""}`);
        }
      }
      accepted += outcome.statuses.filter((status) => status >= 200 && status < 300).length;
      for (const body of outcome.bodies) {
        if (
          body.includes(CODE_PREFIX) || body.includes(STATE_PREFIX) ||
          body.includes(HTML_MARKER) || body.includes(realState.slice(0, 16)) ||
          /<script|<img|<svg/i.test(body)
        ) {
          reflected++;
          anomaly(`${label}: reflected input in ${body.slice(0, 200)}`);
        }
      }
      if (settled !== undefined && settledAt < 0) settledAt = index;
      done++;
      if (done % SAMPLE_EVERY === 0) track();
      if (done === Math.ceil(count / 2)) middle = track(true);
      if (index % PROBE_EVERY === PROBE_EVERY - 1) await probe();
    });
    await probe();
    const fuzzMs = performance.now() - started;
    const during = track();

    // The real callback, after everything else. Failures are kept for the
    // assertions, after the summary.
    const real = await page(`http://127.0.0.1:${port}${path}?code=${realCode}&state=${realState}`)
      .catch((error) => ({ status: 0, body: String(error) }));
    const code = await waiting.catch((error) => `(wait rejected: ${error})`);
    const after = track(true);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);

    console.log(
      `listener fuzz summary: seed=${seed} sent=${count} transport{${transports}} kinds{${kinds}} ` +
        `statuses{${statuses}} (*: from Deno's HTTP layer) ends{${ends}} accepted_with_wrong_or_missing_state=${accepted} ` +
        `pipelines_cut_short_with_connection_close=${pipelinesCutShort} ` +
        `reflected=${reflected} wait_ended_early=${settledAt >= 0 ? `at #${settledAt}` : "no"} ` +
        `probes=${probes - listenerDown}/${probes} anomalies=${anomalies.length} ` +
        `uncaught=${uncaught.length} real=${real.status}/${code === realCode ? "code ok" : code} ` +
        `rss_mb{before:${mb(before.rss)},middle:${mb(middle?.rss ?? 0)},end_of_fuzz:${
          mb(during.rss)
        },after:${mb(after.rss)},peak:${mb(peak.rss)}} ` +
        `heap_mb{before:${mb(before.heapUsed)},middle:${mb(middle?.heapUsed ?? 0)},end_of_fuzz:${
          mb(during.heapUsed)
        },after:${mb(after.heapUsed)},peak:${mb(peak.heapUsed)}} ` +
        `gc=${collectGarbage ? "yes" : "no"} fuzz=${(fuzzMs / 1000).toFixed(1)}s total=${seconds}s`,
    );
    console.log(`listener fuzz by kind/outcome: ${byKind}`);
    if (anomalies.length) console.log(anomalies.slice(0, 20).join("\n"));

    strictEqual(uncaught.length, 0, `uncaught errors: ${uncaught.join("; ")}`);
    strictEqual(listenerDown, 0, "the listener stopped answering");
    strictEqual(accepted, 0, "a fuzz request was accepted");
    strictEqual(settledAt, -1, `a fuzz request ended the wait: ${settled}`);
    strictEqual(reflected, 0, "a page reflected request input");
    deepStrictEqual(anomalies, [], "unexpected statuses or timeouts");
    strictEqual(real.status, 200, real.body);
    match(real.body, /<h1>Logged in to Spotify<\/h1>/);
    strictEqual(code, realCode);
    // The port is closed once the login is in.
    await rejects(fetch(`http://127.0.0.1:${port}/favicon.ico`), TypeError);
    // Without gc() the heap samples hold garbage: only the RSS bounds apply.
    const start = { rss: Math.min(before.rss, middle!.rss), heapUsed: before.heapUsed };
    ok(
      peak.rss - start.rss < RSS_PEAK_GROWTH_LIMIT,
      `rss grew by ${mb(peak.rss - start.rss)} MiB at its peak`,
    );
    ok(
      after.rss - middle!.rss < RSS_SECOND_HALF_LIMIT,
      `rss grew by ${mb(after.rss - middle!.rss)} MiB in the second half`,
    );
    if (collectGarbage) {
      ok(
        after.heapUsed - before.heapUsed < HEAP_GROWTH_LIMIT,
        `live heap grew by ${mb(after.heapUsed - before.heapUsed)} MiB`,
      );
      ok(
        after.heapUsed - middle!.heapUsed < HEAP_SECOND_HALF_LIMIT,
        `live heap grew by ${mb(after.heapUsed - middle!.heapUsed)} MiB in the second half`,
      );
    }
  } finally {
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
});

// ---------------------------------------------------------------------------
// Pages: every reflected value is escaped, scripts are forbidden, and the
// state is never shown.

/** The directives of a Content-Security-Policy header. */
function cspDirectives(header: string | null): Map<string, string[]> {
  const directives = new Map<string, string[]>();
  for (const part of (header ?? "").split(";")) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name && !directives.has(name.toLowerCase())) {
      directives.set(name.toLowerCase(), values);
    }
  }
  return directives;
}

/** Fails unless the policy blocks every script: inline, external, eval, event handlers. */
function assertNoScripts(headers: Headers): void {
  const csp = cspDirectives(headers.get("content-security-policy"));
  ok(csp.size > 0, "no Content-Security-Policy header");
  // script-src-elem and script-src-attr fall back to script-src, which falls
  // back to default-src.
  const script = csp.get("script-src") ?? csp.get("default-src");
  deepStrictEqual(script, ["'none'"], "scripts are not forbidden");
  for (const name of ["script-src-elem", "script-src-attr", "object-src", "worker-src"]) {
    const values = csp.get(name);
    if (values) deepStrictEqual(values, ["'none'"], `${name} allows something`);
  }
  deepStrictEqual(csp.get("base-uri"), ["'none'"]);
  strictEqual(headers.get("content-type"), "text/html; charset=utf-8");
  strictEqual(headers.get("x-content-type-options"), "nosniff");
}

/** The tags of a page, in order: injected markup would add some. */
function tags(body: string): string[] {
  return [...body.matchAll(/<\/?[a-z!][^>]*>/gi)].map((m) => m[0].replace(/\s.*$/s, ">"));
}

function reference(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const PAYLOADS = [
  `<script>alert(1)</script>`,
  `"><script>alert(document.domain)</script>`,
  `' onmouseover='alert(1)' x='`,
  "`${alert(1)}`<img src=x onerror=alert(1)>",
  `&lt;script&gt; &amp; &#60;script&#62; &`,
  `</p></main><svg/onload=alert(1)>`,
  `<scr<script>ipt>alert(1)</scr</script>ipt>`,
  `<!-- --><style>body{display:none}</style><meta http-equiv="refresh" content="0;url=x">`,
  "` ' \" & < >",
  "\u2028</title><script>alert(1)</script>",
];

Deno.test("startCallbackServer() escapes error and error_description on the error page", async (t) => {
  // The layout of an error page with a harmless detail: pages with payloads
  // must have exactly the same tags.
  let baseline: string[] | undefined;
  for (const [i, payload] of ["plain", ...PAYLOADS].entries()) {
    for (const field of ["error", "error_description"] as const) {
      await t.step(`${field} #${i}`, async () => {
        await using server = await startCallbackServer({
          redirectUri: "http://127.0.0.1/callback",
        });
        const state = createState();
        const waiting = server.waitForCode(state, { timeout: 10_000 });
        waiting.catch(() => {});
        const query = new URLSearchParams({
          error: field === "error" ? payload : "server_error",
          error_description: field === "error_description" ? payload : "detail",
          state,
        });
        const response = await page(`${server.redirectUri}?${query}`);
        strictEqual(response.status, 400);
        match(response.body, /<h1>Spotify login failed<\/h1>/);
        assertNoScripts(response.headers);
        baseline ??= tags(response.body);
        deepStrictEqual(tags(response.body), baseline, "the payload added markup");
        if (/[&<>"'`]/.test(payload)) {
          strictEqual(response.body.includes(payload), false, "the raw payload is in the page");
        }
        ok(response.body.includes(reference(payload)), "the escaped payload is missing");
        strictEqual(response.body.includes("`"), false, "a raw backtick in the page");
        strictEqual(response.body.includes(state), false, "the state is in the page");
        await rejects(waiting, (error) => {
          ok(error instanceof SpotifyOAuthError);
          strictEqual(field === "error" ? error.error : error.errorDescription, payload);
          return true;
        });
      });
    }
  }
});

Deno.test("startCallbackServer() never shows the state or the code on any page", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const base = server.redirectUri;
  const state = createState();
  const wrong = createState();
  const code = `code-${crypto.randomUUID()}`;
  const pages = [
    // 503: before the wait starts.
    await page(`${base}?code=${code}&state=${state}`),
  ];
  const waiting = server.waitForCode(state, { timeout: 10_000 });
  pages.push(
    await page(`${new URL("/favicon.ico", base)}?code=${code}&state=${state}`),
    await (async () => {
      const response = await fetch(`${base}?code=${code}&state=${state}`, { method: "POST" });
      return { status: response.status, headers: response.headers, body: await response.text() };
    })(),
    await page(`${base}?code=${code}&state=${wrong}`),
    await page(`${base}?code=${code}&state=${state}&state=${state}`),
    await page(`${base}?code=${code}&state=${state}`),
  );
  deepStrictEqual(pages.map((p) => p.status), [503, 404, 405, 400, 400, 200]);
  for (const { headers, body } of pages) {
    assertNoScripts(headers);
    for (const secret of [state, wrong, code]) {
      strictEqual(body.includes(secret), false, `a page shows ${secret}`);
    }
  }
  strictEqual(await waiting, code);
});

// ---------------------------------------------------------------------------
// Bug: the path check can be bypassed with the Host header.
//
// Deno builds `request.url` as "http://" + Host header + request target, and
// the listener checks `new URL(request.url).pathname`. A Host header carrying
// a path, a query and a "#" turns a request for /favicon.ico into the
// callback: `GET /favicon.ico` with `Host: 127.0.0.1:PORT/callback?code=…&
// state=…#` parses as http://127.0.0.1:PORT/callback?code=…&state=…#/favicon.ico.
// The state check still holds (the sender must know the state), so no login
// can be forged, but "requests to other paths get 404" is not true, and the
// listener accepts any Host (no defence against DNS rebinding; a Host that is
// no authority, such as "a b", makes the handler throw, answered with 500).

Deno.test("startCallbackServer() answers 404 to another path whatever the Host header says", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const { port } = new URL(server.redirectUri);
  const state = createState();
  const waiting = server.waitForCode(state, { timeout: 10_000 });
  waiting.catch(() => {});
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  const request =
    `GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1:${port}/callback?code=forged&state=${state}#\r\nConnection: close\r\n\r\n`;
  await conn.write(new TextEncoder().encode(request));
  const chunks: Uint8Array[] = [];
  const timer = setTimeout(() => conn.close(), 5_000);
  try {
    const buffer = new Uint8Array(16 * 1024);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(buffer.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
  const text = new TextDecoder().decode(
    new Uint8Array(chunks.flatMap((chunk) => [...chunk])),
  );
  const [response] = parseResponses(text);
  // 404 (another path) is today's contract; 400 or 421 if the listener
  // refuses a Host that is not the redirect URI's host and port.
  ok(
    response && [400, 404, 421].includes(response.status),
    `a request for /favicon.ico got ${response?.status}: ${response?.body.match(/<h1>.*<\/h1>/)}`,
  );
  await (await fetch(`${server.redirectUri}?code=real&state=${state}`)).body?.cancel();
  strictEqual(await waiting, "real");
});
