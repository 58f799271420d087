// Hostile-input generator and runners for the loopback listener fuzz suite
// (listener_fuzz_test.ts). Everything random comes from one seeded PRNG and
// is drawn when a case is generated, in index order, so a seed replays the
// same cases whatever the timing of the responses. Traffic goes to
// 127.0.0.1 only, and every request is bounded in time.

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** A small deterministic PRNG: sfc32, seeded through splitmix32. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const splitmix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = splitmix();
    this.#b = splitmix();
    this.#c = splitmix();
    this.#d = splitmix();
    for (let i = 0; i < 12; i++) this.next();
  }

  /** A float in [0, 1). */
  next(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  string(length: number, alphabet = ALNUM): string {
    let out = "";
    for (let i = 0; i < length; i++) out += alphabet[Math.floor(this.next() * alphabet.length)];
    return out;
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    let roll = this.next() * entries.reduce((sum, [, w]) => sum + w, 0);
    for (const [key, weight] of entries) {
      roll -= weight;
      if (roll < 0) return key;
    }
    return entries[entries.length - 1]![0];
  }
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** The seed: `SPOTIKIT_FUZZ_SEED` when set (to replay a run), else a random one. */
export function fuzzSeed(): number {
  const text = Deno.env.get("SPOTIKIT_FUZZ_SEED");
  if (text === undefined || text === "") return crypto.getRandomValues(new Uint32Array(1))[0]!;
  const seed = Number(text);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(
      `Cannot use SPOTIKIT_FUZZ_SEED "${text}": it must be an integer from 0 to 4294967295`,
    );
  }
  return seed;
}

/** How many fuzz requests to send: `SPOTIKIT_FUZZ_REQUESTS`, default 1,000. */
export function fuzzRequestCount(): number {
  const text = Deno.env.get("SPOTIKIT_FUZZ_REQUESTS");
  if (text === undefined || text === "") return 1_000;
  const count = Number(text);
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
    throw new RangeError(
      `Cannot use SPOTIKIT_FUZZ_REQUESTS "${text}": it must be an integer from 1 to 1000000`,
    );
  }
  return count;
}

// ---------------------------------------------------------------------------
// Cases

/** What a case attacks; the summary counts requests by kind. */
export type FuzzKind =
  | "random-path"
  | "junk-method"
  | "redirect-query"
  | "bad-percent"
  | "huge-query"
  | "duplicate-params"
  | "missing-state"
  | "wrong-state"
  | "error-html"
  | "header-flood"
  | "cut-off"
  | "pipelined"
  | "slow-write"
  | "odd-host";

/** Relative weights of the kinds in the mix. */
export const KIND_WEIGHTS: Readonly<Record<FuzzKind, number>> = {
  "random-path": 12,
  "junk-method": 6,
  "redirect-query": 12,
  "bad-percent": 8,
  "huge-query": 4,
  "duplicate-params": 6,
  "missing-state": 5,
  "wrong-state": 8,
  "error-html": 8,
  "header-flood": 5,
  "cut-off": 10,
  "pipelined": 6,
  "slow-write": 4,
  "odd-host": 4,
};

/** A well-formed request, sent with `fetch`; `status` is the one the listener must answer. */
export interface FetchCase {
  transport: "fetch";
  kind: FuzzKind;
  index: number;
  method: string;
  /** Path and query, starting with "/". */
  target: string;
  body?: string | undefined;
  headers?: Record<string, string> | undefined;
  status: number;
}

/**
 * Bytes written on one TCP connection. `pauses[i]` ms pass before chunk `i`
 * is written (slow writes). `end`: "read" reads responses until the server
 * closes; "close" drops the connection right after the last chunk;
 * "half-close" shuts the write side, then reads until the server closes.
 */
export interface RawCase {
  transport: "raw";
  kind: FuzzKind;
  index: number;
  chunks: Uint8Array[];
  pauses: number[];
  end: "read" | "close" | "half-close";
  /** Statuses the listener (or Deno's HTTP layer in front of it) may answer. */
  allowed: readonly number[];
  /** For well-formed requests read to the end: how many responses must come back. */
  responses?: number | undefined;
}

export type FuzzCase = FetchCase | RawCase;

/** What the generator must know about the listener. */
export interface FuzzTarget {
  port: number;
  /** The redirect URI's path, such as "/callback". */
  path: string;
  /** Never used by a fuzz case (checked). */
  realState: string;
  realCode: string;
}

/** Fuzz codes and states carry these prefixes, so a page that reflects one is caught. */
export const CODE_PREFIX = "fzc-";
export const STATE_PREFIX = "fzs-";
/** Every HTML payload the fuzzer sends contains this tag. */
export const HTML_MARKER = "<fz-x";

const FETCH_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"] as const;
// Valid tokens fetch will send as they are (not the forbidden CONNECT/TRACE/TRACK).
const TOKEN_METHODS = ["PROPFIND", "FUZZ", "get", "Get", "X-Y", "M-SEARCH", "PURGE", "A", "~!#$"];
// Methods only a raw socket can send: invalid tokens, forbidden names, oddities.
const RAW_METHODS = [
  "CONNECT",
  "TRACE",
  "G ET",
  "GET\t",
  "",
  "GE\x00T",
  "\u00c9T",
  "GET/",
  "G".repeat(300),
  "(){}",
  "PRI",
];

const HTML_PAYLOADS = [
  `${HTML_MARKER}><script>alert(1)</script>`,
  `"><img src=x onerror=alert(1)>${HTML_MARKER}>`,
  `'-alert(1)-'${HTML_MARKER} a='`,
  `\`\${alert(1)}\`${HTML_MARKER}>`,
  `&amp;&lt;script&gt;${HTML_MARKER}>&#x3c;`,
  `</p></main>${HTML_MARKER}><svg onload=alert(1)>`,
  `javascript:alert(1)//${HTML_MARKER}>`,
];

const BAD_PERCENT = [
  "%",
  "%%",
  "%G1",
  "%1",
  "%zz",
  "%C3%28", // invalid UTF-8 sequence
  "%ED%A0%80", // lone high surrogate, UTF-8 encoded
  "%ED%B0%80", // lone low surrogate
  "%uD800", // IE-style escape
  "%F4%90%80%80", // above U+10FFFF
  "%C0%AF", // overlong "/"
  "%00",
  "%FF%FE",
  "%E2%82", // truncated
  "%25%",
];

const encoder = new TextEncoder();
function latin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  return bytes;
}

/** Fresh state values, never the real one. */
function fuzzState(rng: Prng, target: FuzzTarget): string {
  const state = STATE_PREFIX + rng.string(rng.int(1, 40));
  if (state === target.realState) throw new Error("A fuzz state equals the real state");
  return state;
}

function fuzzCode(rng: Prng, index: number, target: FuzzTarget): string {
  const code = `${CODE_PREFIX}${index}-${rng.string(rng.int(1, 24))}`;
  if (code === target.realCode) throw new Error("A fuzz code equals the real code");
  return code;
}

function randomPath(rng: Prng, target: FuzzTarget): string {
  return rng.pick<() => string>([
    () => target.path,
    () => target.path + "/",
    () => target.path.toUpperCase(),
    () => `${target.path}%2F`,
    () => `/x/..${target.path}`,
    () => `/${rng.string(rng.int(0, 30))}`,
    () => "/favicon.ico",
    () => "/",
    () => `/${rng.string(3)}/${rng.string(5)}/${rng.string(2)}`,
    () => `${target.path};jsessionid=${rng.string(8)}`,
    () => `//${rng.string(6)}`,
    () => `/%2e%2e${target.path}`,
  ])();
}

function randomQuery(rng: Prng, index: number, target: FuzzTarget): string {
  const keys = ["code", "state", "error", "error_description", "iss", "scope", "", "x", "CODE"];
  const parts: string[] = [];
  for (let i = rng.int(0, 6); i > 0; i--) {
    const key = rng.pick(keys);
    const value = key === "state"
      ? fuzzState(rng, target)
      : key === "code" || key === "CODE"
      ? fuzzCode(rng, index, target)
      : rng.string(rng.int(0, 20));
    parts.push(rng.chance(0.1) ? key : `${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
  }
  return parts.length ? `?${parts.join(rng.pick(["&", "&", "&", ";", "&&"]))}` : "";
}

/** The status the listener answers a well-formed request with (it never knows the state). */
export function expectedStatus(method: string, target: string, path: string): number {
  const url = new URL(target, "http://127.0.0.1");
  if (url.pathname !== path) return 404;
  // fetch upper-cases these six method names, whatever their case (Fetch
  // standard, "normalize a method"); other names go out as they are.
  const normalized = /^(delete|get|head|options|post|put)$/i.test(method)
    ? method.toUpperCase()
    : method;
  if (normalized !== "GET") return 405;
  return 400;
}

function fetchCase(
  kind: FuzzKind,
  index: number,
  target: FuzzTarget,
  method: string,
  path: string,
  init: { body?: string; headers?: Record<string, string> } = {},
): FetchCase {
  return {
    transport: "fetch",
    kind,
    index,
    method,
    target: path,
    body: init.body,
    headers: init.headers,
    status: expectedStatus(method, path, target.path),
  };
}

// Statuses Deno's HTTP layer or the listener may answer a malformed request
// with: 400 (parse error, or the listener's state page), 404, 405, 414, 431.
const MALFORMED = [400, 404, 405, 414, 431] as const;

function rawCase(
  kind: FuzzKind,
  index: number,
  text: string | Uint8Array | (string | Uint8Array)[],
  options: Partial<Pick<RawCase, "pauses" | "end" | "allowed" | "responses">> = {},
): RawCase {
  const pieces = Array.isArray(text) ? text : [text];
  const chunks = pieces.map((piece) => typeof piece === "string" ? latin1(piece) : piece);
  return {
    transport: "raw",
    kind,
    index,
    chunks,
    pauses: options.pauses ?? chunks.map(() => 0),
    end: options.end ?? "read",
    allowed: options.allowed ?? MALFORMED,
    responses: options.responses,
  };
}

/** An HTTP/1.1 request with the Host header a browser sends (`127.0.0.1:PORT`). */
function request(
  host: string,
  method: string,
  target: string,
  headers: string[] = [],
  body = "",
): string {
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${host}`, ...headers];
  if (body) lines.push(`Content-Length: ${encoder.encode(body).length}`);
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}

/** Generates case `index`; all randomness is drawn here, in index order. */
export function generateCase(rng: Prng, index: number, target: FuzzTarget): FuzzCase {
  const kind = rng.weighted(KIND_WEIGHTS);
  const state = () => fuzzState(rng, target);
  const code = () => fuzzCode(rng, index, target);
  const p = target.path;
  const host = `127.0.0.1:${target.port}`;
  switch (kind) {
    case "random-path": {
      const method = rng.pick(FETCH_METHODS);
      const path = randomPath(rng, target) + randomQuery(rng, index, target);
      const body = method !== "GET" && method !== "HEAD" && rng.chance(0.5)
        ? rng.string(rng.int(0, 4096))
        : undefined;
      return fetchCase(kind, index, target, method, path, body === undefined ? {} : { body });
    }
    case "junk-method": {
      if (rng.chance(0.5)) {
        return fetchCase(kind, index, target, rng.pick(TOKEN_METHODS), `${p}?code=${code()}`);
      }
      const method = rng.pick(RAW_METHODS);
      return rawCase(
        kind,
        index,
        request(host, method, `${p}?code=${code()}&state=${state()}`, ["Connection: close"]),
      );
    }
    case "redirect-query":
      return fetchCase(kind, index, target, "GET", p + randomQuery(rng, index, target));
    case "bad-percent": {
      const bad = () => rng.pick(BAD_PERCENT);
      const query = rng.pick<() => string>([
        () => `?code=${bad()}&state=${bad()}`,
        () => `?code=${code()}${bad()}&state=${state()}${bad()}`,
        () => `?${bad()}=${code()}&state${bad()}=${state()}`,
        () => `?code=${code()}&state=${bad()}`,
        () => `?error=${bad()}&error_description=${bad()}&state=${state()}`,
        () => `?code=${code()}\xff\xfe&state=${state()}\x80`,
      ])();
      const path = rng.chance(0.2) ? `${p}${bad()}` : p;
      return rawCase(kind, index, request(host, "GET", path + query, ["Connection: close"]));
    }
    case "huge-query": {
      // The request head limit of Deno's HTTP layer is about 64 KiB: sizes on
      // both sides of it, so some reach the listener and some stop before.
      const size = rng.pick([1_024, 8_192, 32_768, 60_000, 65_536, 70_000, 131_072]);
      const filler = rng.pick(["a", "%41", "&x=", "&state=" + state(), "&code=" + code()]);
      let query = `?code=${code()}&state=${state()}`;
      while (query.length < size) query += filler;
      return rawCase(
        kind,
        index,
        request(host, "GET", p + query.slice(0, size), ["Connection: close"]),
      );
    }
    case "duplicate-params": {
      const query = rng.pick<() => string>([
        () => `?code=${code()}&code=${code()}&state=${state()}`,
        () => `?code=${code()}&state=${state()}&state=${state()}`,
        () => `?code=${code()}&code=${code()}&state=${state()}&state=${state()}`,
        () => `?code=${code()}&state=${state()}&state=`,
        () => `?code=&code=${code()}&state=${state()}`,
        () => `?state=${state()}&code=${code()}&state=${state()}&error=x`,
      ])();
      return fetchCase(kind, index, target, "GET", p + query);
    }
    case "missing-state": {
      const query = rng.pick<() => string>([
        () => `?code=${code()}`,
        () => `?code=${code()}&state`,
        () => `?code=${code()}&state=`,
        () => `?code=${code()}&State=${state()}`,
        () => `?code=${code()}&st%61te=`,
        () => `?error=access_denied`,
        () => "",
        () => "?",
      ])();
      return fetchCase(kind, index, target, "GET", p + query);
    }
    case "wrong-state": {
      // Near misses of the real state too: a prefix, a suffix, another case.
      const near = rng.pick<() => string>([
        () => state(),
        () => target.realState.slice(0, -1),
        () => target.realState + "x",
        () =>
          target.realState.toUpperCase() === target.realState
            ? target.realState.toLowerCase()
            : target.realState.toUpperCase(),
        () => ` ${target.realState}`,
        () => encodeURIComponent(target.realState) + "%00",
      ])();
      const wrong = near === target.realState ? state() : near;
      return fetchCase(
        kind,
        index,
        target,
        "GET",
        `${p}?code=${code()}&state=${encodeURIComponent(wrong)}`,
      );
    }
    case "error-html": {
      const params = new URLSearchParams();
      params.set("error", rng.pick([rng.pick(HTML_PAYLOADS), "access_denied", ""]));
      params.set("error_description", rng.pick(HTML_PAYLOADS));
      if (rng.chance(0.8)) params.set("state", state());
      if (rng.chance(0.3)) params.set("code", code());
      return fetchCase(kind, index, target, "GET", `${p}?${params}`);
    }
    case "header-flood": {
      // Many headers, one huge value (written as bytes, so no megabyte
      // strings on the heap), or both; Deno's HTTP layer refuses heads over
      // about 64 KiB.
      const mode = rng.pick(["many", "huge", "both"]);
      const headers: string[] = [];
      if (mode !== "huge") {
        for (let i = rng.int(50, 2_000); i > 0; i--) {
          headers.push(`x-fz-${i}: ${rng.string(rng.int(1, 64))}`);
        }
      }
      if (rng.chance(0.3)) headers.push(`Cookie: ${"c=".repeat(4_000)}`);
      headers.push("Connection: close");
      const whole = request(host, "GET", `${p}?code=${code()}&state=${state()}`, headers);
      if (mode === "many") return rawCase(kind, index, whole);
      const size = rng.pick([8_192, 65_536, 262_144, 1_048_576]);
      const split = whole.indexOf("\r\n") + 2;
      return rawCase(kind, index, [
        `${whole.slice(0, split)}x-fz-big: `,
        new Uint8Array(size).fill(0x76),
        `\r\n${whole.slice(split)}`,
      ]);
    }
    case "cut-off": {
      const whole = request(
        host,
        rng.pick(["GET", "POST"]),
        `${p}?code=${code()}&state=${state()}`,
        ["Content-Type: application/x-www-form-urlencoded", "Content-Length: 200"],
      ) + "a".repeat(rng.int(0, 100));
      const cut = rng.pick<() => number>([
        () => rng.int(0, whole.indexOf(" HTTP/1.1")), // partial request line
        () => rng.int(whole.indexOf("\r\n") + 2, whole.indexOf("\r\n\r\n")), // partial headers
        () => whole.length, // headers complete, half a body (Content-Length says 200)
      ])();
      const end = rng.chance(0.7) ? "close" : "half-close";
      const h2 = rng.chance(0.05);
      return rawCase(
        kind,
        index,
        h2 ? "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".slice(0, rng.int(1, 24)) : whole.slice(0, cut),
        { end: h2 ? "close" : end, allowed: [400, 404, 405, 408] },
      );
    }
    case "pipelined": {
      const requests: string[] = [];
      for (let i = rng.int(2, 6); i > 0; i--) {
        const last = i === 1;
        const method = rng.pick(["GET", "GET", "POST", "OPTIONS"]);
        const target_ = rng.pick([
          `${p}?code=${code()}&state=${state()}`,
          `${p}?code=${code()}`,
          "/favicon.ico",
          `/${rng.string(5)}`,
        ]);
        const body = method === "POST" ? `code=${code()}&state=${state()}` : "";
        requests.push(request(host, method, target_, last ? ["Connection: close"] : [], body));
      }
      return rawCase(kind, index, requests.join(""), { responses: requests.length });
    }
    case "slow-write": {
      // The request itself is slow: its bytes trickle out with short awaited
      // pauses (at most 8 × 15 ms), so the listener sees partial reads.
      const whole = request(host, "GET", `${p}?code=${code()}&state=${state()}`, [
        `x-fz: ${rng.string(40)}`,
        "Connection: close",
      ]);
      const cuts = new Set<number>();
      for (let i = rng.int(1, 7); i > 0; i--) cuts.add(rng.int(1, whole.length - 1));
      const edges = [0, ...[...cuts].sort((a, b) => a - b), whole.length];
      const pieces = edges.slice(1).map((end, i) => whole.slice(edges[i]!, end));
      const pauses = pieces.map((_, i) => (i === 0 ? 0 : rng.int(1, 15)));
      const end = rng.chance(0.2) ? "close" : "read";
      return rawCase(kind, index, pieces, {
        pauses,
        end,
        responses: end === "read" ? 1 : undefined,
      });
    }
    case "odd-host": {
      const host = rng.pick([
        `127.0.0.1:${target.port}${p}?code=${code()}&state=${state()}#`,
        `127.0.0.1:${target.port}/${rng.string(4)}?`,
        "a b",
        "",
        "[::1",
        "evil.example",
        `127.0.0.1:${target.port}@evil.example`,
        "%00",
      ]);
      const lines = [
        `GET ${rng.pick(["/favicon.ico", p, "/"])}?code=${code()}&state=${state()} HTTP/1.1`,
        ...(rng.chance(0.1) ? [] : [`Host: ${host}`]),
        "Connection: close",
      ];
      // Deno builds request.url from the Host header; a Host that is no valid
      // authority makes `new URL(request.url)` throw in the handler, which
      // the listener's onError answers with 500 (reported, not a crash). A
      // listener that checks Host may answer 421 (Misdirected Request).
      return rawCase(kind, index, `${lines.join("\r\n")}\r\n\r\n`, {
        allowed: [...MALFORMED, 421, 500],
      });
    }
  }
}

// ---------------------------------------------------------------------------
// Runners

/** How a case ended. `statuses` holds one entry per response read. */
export interface Outcome {
  statuses: number[];
  bodies: string[];
  /** "ok", or what ended the exchange otherwise. */
  end:
    | "ok"
    | "client-closed"
    | "server-closed"
    | "reset"
    | "timeout"
    | "fetch-error"
    | "refused";
  error?: string | undefined;
  /** The last response said `Connection: close`: the server will answer no more on it. */
  announcedClose?: boolean | undefined;
}

const decoder = new TextDecoder("latin1");

/** Runs a well-formed request; the body is always read to the end. */
export async function runFetch(port: number, c: FetchCase, deadline: number): Promise<Outcome> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deadline);
  try {
    const response = await fetch(`http://127.0.0.1:${port}${c.target}`, {
      method: c.method,
      body: c.body ?? null,
      headers: c.headers ?? {},
      signal: controller.signal,
    });
    const body = await response.text();
    return { statuses: [response.status], bodies: [body], end: "ok" };
  } catch (error) {
    return {
      statuses: [],
      bodies: [],
      end: controller.signal.aborted ? "timeout" : "fetch-error",
      error: String(error),
    };
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

const MAX_READ = 4 * 1024 * 1024;

/**
 * Runs a raw case over one TCP connection to 127.0.0.1. A timer closes the
 * connection at `deadline` ms, so nothing waits longer; the connection is
 * closed on every path.
 */
export async function runRaw(port: number, c: RawCase, deadline: number): Promise<Outcome> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    // The listener is gone (closed after a wait ended): the caller reports it.
    return { statuses: [], bodies: [], end: "refused", error: String(error) };
  }
  let closed = false;
  let timedOut = false;
  const closeOnce = () => {
    if (closed) return;
    closed = true;
    conn.close();
  };
  const timer = setTimeout(() => {
    timedOut = true;
    closeOnce();
  }, deadline);
  const received: Uint8Array[] = [];
  let size = 0;
  let error: unknown;
  try {
    try {
      for (let i = 0; i < c.chunks.length; i++) {
        const pause = c.pauses[i] ?? 0;
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
        await writeAll(conn, c.chunks[i]!);
      }
    } catch (writeError) {
      // The server may answer (431, 400) and close before reading it all:
      // keep going and read what it said.
      error = writeError;
    }
    if (c.end === "close" && error === undefined) {
      return { statuses: [], bodies: [], end: "client-closed" };
    }
    if (c.end === "half-close" && error === undefined) await conn.closeWrite();
    const buffer = new Uint8Array(64 * 1024);
    while (size < MAX_READ) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received.push(buffer.slice(0, n));
      size += n;
    }
  } catch (readError) {
    error ??= readError;
  } finally {
    clearTimeout(timer);
    closeOnce();
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of received) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  const responses = parseResponses(decoder.decode(bytes));
  const statuses = responses.map((r) => r.status);
  const bodies = responses.map((r) => r.body);
  const announcedClose = responses[responses.length - 1]?.close ?? false;
  const base = { statuses, bodies, announcedClose };
  if (timedOut) return { ...base, end: "timeout", error: String(error) };
  if (error !== undefined) {
    return { ...base, end: statuses.length ? "ok" : "reset", error: String(error) };
  }
  return { ...base, end: statuses.length ? "ok" : "server-closed" };
}

/** Reads HTTP/1.x responses (with Content-Length bodies) one after another. */
export function parseResponses(
  text: string,
): { status: number; body: string; close: boolean }[] {
  const responses: { status: number; body: string; close: boolean }[] = [];
  let at = 0;
  while (at < text.length) {
    const head = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/.exec(text.slice(at, at + 200));
    if (!head) break;
    const headEnd = text.indexOf("\r\n\r\n", at);
    if (headEnd < 0) break;
    const headers = text.slice(at, headEnd + 2);
    const length = /\r\ncontent-length: *(\d+)/i.exec(headers);
    const bodyLength = length ? Number(length[1]) : text.length - headEnd - 4;
    const body = text.slice(headEnd + 4, headEnd + 4 + bodyLength);
    const close = /\r\nconnection: *close\r\n/i.test(headers);
    responses.push({ status: Number(head[1]), body, close });
    at = headEnd + 4 + bodyLength;
  }
  return responses;
}

/** Runs `count` jobs with at most `concurrency` in flight; job `i` starts in index order. */
export async function runPool(
  count: number,
  concurrency: number,
  job: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Counts by key, printed sorted. */
export class Histogram {
  readonly counts = new Map<string, number>();

  add(key: string | number, n = 1): void {
    this.counts.set(String(key), (this.counts.get(String(key)) ?? 0) + n);
  }

  get(key: string | number): number {
    return this.counts.get(String(key)) ?? 0;
  }

  toString(): string {
    return [...this.counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}:${v}`)
      .join(",");
  }
}

/** RSS and V8 heap, in bytes. */
export interface MemorySample {
  rss: number;
  heapUsed: number;
}

/**
 * V8's `gc()`, exposed at run time through `node:v8` (the test command has no
 * `--v8-flags=--expose-gc`), or undefined when that is not possible. With it,
 * heap samples count live objects, not garbage waiting for a collection.
 */
export const collectGarbage: (() => void) | undefined = (() => {
  try {
    setFlagsFromString("--expose-gc");
    const gc: unknown = runInNewContext("gc");
    return typeof gc === "function" ? gc as () => void : undefined;
  } catch {
    return undefined;
  }
})();

/** Samples memory; with `collect`, after a full garbage collection when possible. */
export function sampleMemory(collect = false): MemorySample {
  if (collect) collectGarbage?.();
  const { rss, heapUsed } = Deno.memoryUsage();
  return { rss, heapUsed };
}

export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
