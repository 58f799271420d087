// createSpotifyAuth().getAccessToken(): a valid cached token from memory and
// from a token file (the first read of a fresh session, and later reads of
// the same session), and 1,000 concurrent calls on an expired token, which
// must make exactly one token request.
//
// The emulator (for the refreshes) is started once for this file, outside
// every measured function, and closed when the bench process unloads.
//
//   deno task bench bench/session_bench.ts

import { startAccountsEmulator } from "../src/emulator.ts";
import { FileTokenStore } from "../src/file_token_store.ts";
import { pkceFlow } from "../src/flows.ts";
import { createSpotifyAuth, type SpotifyAuth } from "../src/session.ts";
import { MemoryTokenStore, type TokenRecord, type TokenStore } from "../src/token_store.ts";
import type { SpotifyToken } from "../src/token.ts";
import { CLIENT_ID, followRedirect, REDIRECT_URI, validToken } from "./_helpers.ts";
import { SMOKE, timed } from "./_samples.ts";

const key = { clientId: CLIENT_ID };
const directory = await Deno.makeTempDir({ prefix: "spotikit-bench-" });
const emulator = await startAccountsEmulator({ autoApprove: true });
globalThis.addEventListener("unload", () => {
  void emulator.close();
  Deno.removeSync(directory, { recursive: true });
});

function session(store: TokenStore): SpotifyAuth {
  return createSpotifyAuth({
    clientId: CLIENT_ID,
    scope: ["user-read-private"],
    store,
    interactive: false,
    tokenEndpoint: emulator.tokenEndpoint,
    authorizeEndpoint: emulator.authorizeEndpoint,
  });
}

// --- a valid cached token -----------------------------------------------------

const memoryStore = new MemoryTokenStore();
await memoryStore.set(key, { token: validToken(), consentedAt: Date.now() });
const memorySession = session(memoryStore);
await memorySession.getAccessToken();

const fileStore = new FileTokenStore({ directory });
await fileStore.set(key, { token: validToken(), consentedAt: Date.now() });
const fileSession = session(fileStore);
await fileSession.getAccessToken();

Deno.bench(
  "getAccessToken(), MemoryTokenStore, cached",
  { ...SMOKE, group: "cached" },
  async () => {
    await memorySession.getAccessToken();
  },
);

// The same, 1,000 calls per iteration, so that the median per call can be
// read without the cost of the timer itself.
Deno.bench(
  "getAccessToken() x1000, MemoryTokenStore, cached",
  { ...SMOKE, group: "cached x1000" },
  async (b) => {
    await timed(
      "getAccessToken(), MemoryTokenStore, cached (per call, batches of 1000)",
      b,
      async () => {
        for (let i = 0; i < 1000; i++) await memorySession.getAccessToken();
      },
      1000,
    );
  },
);

Deno.bench(
  "getAccessToken(), FileTokenStore, later reads (same session)",
  { ...SMOKE, group: "cached" },
  async () => {
    await fileSession.getAccessToken();
  },
);

Deno.bench(
  "getAccessToken(), FileTokenStore, first read (fresh session)",
  { ...SMOKE, group: "first read" },
  async (b) => {
    const fresh = session(new FileTokenStore({ directory }));
    await timed(
      "getAccessToken(), FileTokenStore, first read (fresh session)",
      b,
      () => fresh.getAccessToken(),
    );
  },
);

const tokenFile = fileStore.path(key);
Deno.bench(
  "baseline: Deno.readTextFile + JSON.parse of the token file",
  { ...SMOKE, group: "first read", baseline: true },
  async (b) => {
    await timed("baseline: Deno.readTextFile + JSON.parse of the token file", b, async () => {
      JSON.parse(await Deno.readTextFile(tokenFile)).token.accessToken;
    });
  },
);

// --- 1,000 concurrent calls on an expired token -------------------------------

/** A real login at the emulator, so that refreshes there succeed. */
let latest: SpotifyToken = await pkceFlow({
  clientId: CLIENT_ID,
  redirectUri: REDIRECT_URI,
  scope: ["user-read-private"],
  authorizeEndpoint: emulator.authorizeEndpoint,
  tokenEndpoint: emulator.tokenEndpoint,
  openBrowser: followRedirect,
});

const CALLERS = 1000;
const requestsPerRun: number[] = [];

/**
 * Stores the latest token (PKCE refresh tokens rotate) as expired, then makes
 * 1,000 concurrent calls from a fresh session; returns the token requests made.
 */
async function concurrentExpiry(
  store: TokenStore,
  measure: (fn: () => Promise<unknown>) => Promise<void>,
): Promise<number> {
  const expired: TokenRecord = {
    token: { ...latest, expiresAt: Date.now() - 1 },
    consentedAt: Date.now(),
  };
  await store.set(key, expired);
  const auth = session(store);
  const before = emulator.tokenRequests;
  let results: string[] = [];
  await measure(async () => {
    results = await Promise.all(Array.from({ length: CALLERS }, () => auth.getAccessToken()));
  });
  const requests = emulator.tokenRequests - before;
  const stored = await store.get(key);
  latest = stored!.token;
  if (requests !== 1) {
    throw new Error(`${CALLERS} concurrent getAccessToken() calls made ${requests} token requests`);
  }
  if (results.some((token) => token !== latest.accessToken)) {
    throw new Error("The concurrent callers did not all get the refreshed token");
  }
  requestsPerRun.push(requests);
  return requests;
}

// Once before the benches, so that the count is printed whatever happens next.
for (const [name, store] of [["memory", memoryStore], ["file", fileStore]] as const) {
  const requests = await concurrentExpiry(store, (fn) => fn().then(() => {}));
  console.log(
    `${CALLERS} concurrent getAccessToken() on an expired token (${name} store): ${requests} token request`,
  );
}
globalThis.addEventListener("unload", () => {
  console.log(
    `concurrent expiry: ${requestsPerRun.length} runs of ${CALLERS} callers, token requests per run: ${
      [...new Set(requestsPerRun)].join(", ")
    }`,
  );
});

Deno.bench(
  `${CALLERS} concurrent getAccessToken(), expired, MemoryTokenStore`,
  { ...SMOKE, group: "concurrent expiry" },
  async (b) => {
    await concurrentExpiry(
      memoryStore,
      (fn) => timed(`${CALLERS} concurrent getAccessToken(), expired, MemoryTokenStore`, b, fn),
    );
  },
);

Deno.bench(
  `${CALLERS} concurrent getAccessToken(), expired, FileTokenStore`,
  { ...SMOKE, group: "concurrent expiry" },
  async (b) => {
    await concurrentExpiry(
      fileStore,
      (fn) => timed(`${CALLERS} concurrent getAccessToken(), expired, FileTokenStore`, b, fn),
    );
  },
);
