import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import {
  createSpotifyAuth,
  FileTokenStore,
  MemoryTokenStore,
  pkceFlow,
  SpotifyLoginRequiredError,
  SpotifyNetworkError,
  SpotifyResponseError,
  type SpotifyToken,
  type TokenStore,
} from "../mod.ts";
import { type AccountsEmulator, startAccountsEmulator } from "../src/emulator.ts";
import { createClient } from "redis";
import { KvTokenStore } from "../src/kv_token_store.ts";
import { RedisTokenStore } from "../src/redis_token_store.ts";
import { ignoreRedisTests, startRedis } from "./_redis.ts";
import { consent } from "./_user_agent.ts";
import { lines } from "./_process.ts";

const client = {
  clientId: "session-client",
  clientSecret: "session-secret",
  redirectUris: ["http://127.0.0.1/callback"],
};
const key = { clientId: client.clientId };
const HOUR = 3_600_000;

/** A real PKCE login at the emulator, for a token to start from. */
async function loginAt(
  emulator: AccountsEmulator,
  scope = "user-read-private",
): Promise<SpotifyToken> {
  let done = Promise.resolve();
  const token = await pkceFlow({
    clientId: client.clientId,
    redirectUri: "http://127.0.0.1/callback",
    scope,
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
    openBrowser: (url) => void (done = consent(url).then(() => {})),
  });
  await done;
  return token;
}

function sessionAt(
  emulator: AccountsEmulator,
  store: TokenStore,
  extra: Parameters<typeof createSpotifyAuth>[0] = {},
) {
  return createSpotifyAuth({
    clientId: client.clientId,
    redirectUri: "http://127.0.0.1/callback",
    scope: "user-read-private",
    store,
    interactive: false,
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
    ...extra,
  });
}

/** A store holding an expired token from a real login. */
async function expiredStore(
  emulator: AccountsEmulator,
): Promise<{ store: MemoryTokenStore; token: SpotifyToken }> {
  const token = { ...(await loginAt(emulator)), expiresAt: Date.now() - 1 };
  const store = new MemoryTokenStore();
  await store.set(key, { token, consentedAt: Date.now() });
  return { store, token };
}

Deno.test("getAccessToken() without a stored token and no terminal says to log in", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const auth = sessionAt(emulator, new MemoryTokenStore(), { user: "alice" });
  await rejects(auth.getAccessToken(), (error) => {
    ok(error instanceof SpotifyLoginRequiredError);
    strictEqual(
      error.message,
      'No Spotify login is stored for client session-client (user "alice"). Log in again from a terminal: call login(), or run the script there so that it opens the browser.',
    );
    return true;
  });
  strictEqual(emulator.tokenRequests, 0);
});

Deno.test("an interactive session logs in once, stores the token, then serves it", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const store = new MemoryTokenStore();
  let logins = 0;
  let done = Promise.resolve();
  const auth = sessionAt(emulator, store, {
    interactive: true,
    now: () => 5_000,
    openBrowser: (url) => {
      logins++;
      done = consent(url).then(() => {});
    },
  });
  const [a, b] = await Promise.all([auth.getAccessToken(), auth.getAccessToken()]);
  await done;
  strictEqual(a, b);
  strictEqual(logins, 1);
  const stored = await store.get(key);
  strictEqual(stored?.token.accessToken, a);
  strictEqual(stored?.consentedAt, 5_000);
  strictEqual(
    await createSpotifyAuth({ clientId: client.clientId, store, now: () => 5_000 })
      .getAccessToken(),
    a,
  );
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("1,000 concurrent getAccessToken() calls on an expired token make one request", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store, token } = await expiredStore(emulator);
  const before = emulator.tokenRequests;
  const auth = sessionAt(emulator, store);
  const tokens = await Promise.all(Array.from({ length: 1000 }, () => auth.getAccessToken()));
  strictEqual(emulator.tokenRequests - before, 1);
  strictEqual(new Set(tokens).size, 1);
  ok(tokens[0] !== token.accessToken);
  const stored = await store.get(key);
  strictEqual(stored?.token.accessToken, tokens[0]);
  ok(stored?.token.refreshToken && stored.token.refreshToken !== token.refreshToken, "rotated");
});

Deno.test("two sessions sharing a store in one process refresh once", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store } = await expiredStore(emulator);
  const before = emulator.tokenRequests;
  const [a, b] = [sessionAt(emulator, store), sessionAt(emulator, store)];
  const tokens = await Promise.all([a.getAccessToken(), b.getAccessToken(), a.getAccessToken()]);
  strictEqual(emulator.tokenRequests - before, 1);
  strictEqual(new Set(tokens).size, 1);
});

Deno.test("invalid_grant deletes the dead token and asks for a new login", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store, token } = await expiredStore(emulator);
  emulator.revokeRefreshToken(token.refreshToken!);
  const auth = sessionAt(emulator, store);
  await rejects(auth.getAccessToken(), (error) => {
    ok(error instanceof SpotifyLoginRequiredError);
    strictEqual(
      error.message,
      "Spotify no longer accepts the stored refresh token for client session-client (access was revoked, or it is six months since consent); it was deleted. Log in again from a terminal: call login(), or run the script there so that it opens the browser.",
    );
    strictEqual((error.cause as { error: string }).error, "invalid_grant");
    return true;
  });
  strictEqual(await store.get(key), undefined);
  await rejects(auth.getAccessToken(), { message: /^No Spotify login is stored/ });
});

Deno.test("a failed refresh leaves the stored token as it was", async (t) => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store } = await expiredStore(emulator);
  const before = await store.get(key);
  const cases: [string, typeof fetch, new (...args: never[]) => Error][] = [
    ["503", () => Promise.resolve(new Response("busy", { status: 503 })), SpotifyResponseError],
    ["network", () => Promise.reject(new TypeError("connection reset")), SpotifyNetworkError],
  ];
  for (const [name, fetch, type] of cases) {
    await t.step(name, async () => {
      await rejects(sessionAt(emulator, store, { fetch }).getAccessToken(), type);
      deepStrictEqual(await store.get(key), before);
    });
  }
  ok(await sessionAt(emulator, store).getAccessToken(), "the kept refresh token still works");
});

Deno.test("a stored token without a requested scope triggers a new login", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const store = new MemoryTokenStore();
  await store.set(key, { token: await loginAt(emulator, "user-read-private"), consentedAt: 1 });
  await rejects(
    sessionAt(emulator, store, { scope: "user-read-private user-top-read" }).getAccessToken(),
    { message: /lacks the scope user-top-read\./ },
  );
  let asked: string | null = null;
  let done = Promise.resolve();
  const auth = sessionAt(emulator, store, {
    scope: "user-read-private user-top-read",
    interactive: true,
    openBrowser: (url) => {
      asked = url.searchParams.get("scope");
      done = consent(url).then(() => {});
    },
  });
  const token = await auth.getToken();
  await done;
  strictEqual(asked, "user-read-private user-top-read");
  deepStrictEqual(token.scope, ["user-read-private", "user-top-read"]);
  deepStrictEqual((await store.get(key))?.token.scope, ["user-read-private", "user-top-read"]);
});

Deno.test("a client credentials session caches its token and renews it on expiry", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  let clock = 0;
  const auth = sessionAt(emulator, new MemoryTokenStore(), {
    flow: "client_credentials",
    clientSecret: client.clientSecret,
    scope: undefined,
    now: () => clock,
  });
  const first = await auth.getAccessToken();
  strictEqual(await auth.getAccessToken(), first);
  strictEqual(emulator.tokenRequests, 1);
  clock = HOUR - 30_000; // within the 60 s margin
  const second = await auth.getAccessToken();
  ok(second !== first);
  strictEqual(emulator.tokenRequests, 2);
});

Deno.test("onConsentExpiring warns once when the refresh token nears six months", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const token = await loginAt(emulator);
  const consentedAt = Date.UTC(2026, 0, 15);
  const store = new MemoryTokenStore();
  await store.set(key, { token, consentedAt });
  const warnings: unknown[] = [];
  const onConsentExpiring = (info: unknown) => void warnings.push(info);
  const early = sessionAt(emulator, store, { onConsentExpiring, now: () => Date.UTC(2026, 5, 30) });
  await early.getAccessToken();
  deepStrictEqual(warnings, []);
  const late = sessionAt(emulator, store, {
    onConsentExpiring,
    now: () => Date.UTC(2026, 6, 5),
    margin: -Infinity, // the token itself counts as fresh here
  });
  await late.getAccessToken();
  await late.getAccessToken();
  deepStrictEqual(warnings, [{ consentedAt, expiresAt: Date.UTC(2026, 6, 15) }]);
});

Deno.test("logout() deletes the stored token", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const store = new MemoryTokenStore();
  await store.set(key, { token: await loginAt(emulator), consentedAt: 1 });
  const auth = sessionAt(emulator, store);
  ok(await auth.getAccessToken());
  await auth.logout();
  strictEqual(await store.get(key), undefined);
  await rejects(auth.getAccessToken(), SpotifyLoginRequiredError);
});

Deno.test("createSpotifyAuth() reads SPOTIFY_*, then SPOTIPY_*, and names what is missing", () => {
  const names = [
    "SPOTIFY_CLIENT_ID",
    "SPOTIPY_CLIENT_ID",
    "SPOTIFY_CLIENT_SECRET",
    "SPOTIPY_CLIENT_SECRET",
  ];
  const saved = names.map((name) => [name, Deno.env.get(name)] as const);
  try {
    for (const name of names) Deno.env.delete(name);
    throws(() => createSpotifyAuth({ store: new MemoryTokenStore() }), {
      name: "TypeError",
      message:
        "Missing the Spotify client id: pass clientId, or set SPOTIFY_CLIENT_ID (SPOTIPY_CLIENT_ID also works) and allow reading it with --allow-env",
    });
    Deno.env.set("SPOTIPY_CLIENT_ID", "from-spotipy");
    strictEqual(createSpotifyAuth({ store: new MemoryTokenStore() }).key.clientId, "from-spotipy");
    Deno.env.set("SPOTIFY_CLIENT_ID", "from-spotify");
    strictEqual(createSpotifyAuth({ store: new MemoryTokenStore() }).key.clientId, "from-spotify");
    throws(() => createSpotifyAuth({ flow: "client_credentials", store: new MemoryTokenStore() }), {
      message:
        "Missing the Spotify client secret for the client_credentials flow: pass clientSecret, or set SPOTIFY_CLIENT_SECRET (SPOTIPY_CLIENT_SECRET also works)",
    });
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
});

Deno.test("login() without a redirect URI names the variable to set", async () => {
  const saved = ["SPOTIFY_REDIRECT_URI", "SPOTIPY_REDIRECT_URI"].map((n) =>
    [n, Deno.env.get(n)] as const
  );
  try {
    for (const [name] of saved) Deno.env.delete(name);
    const auth = createSpotifyAuth({
      clientId: "c",
      store: new MemoryTokenStore(),
      interactive: true,
    });
    await rejects(auth.login(), {
      name: "TypeError",
      message:
        "Missing the redirect URI for the Spotify login: pass redirectUri, or set SPOTIFY_REDIRECT_URI (SPOTIPY_REDIRECT_URI also works), for example to http://127.0.0.1:8888/callback",
    });
  } finally {
    for (const [name, value] of saved) if (value !== undefined) Deno.env.set(name, value);
  }
});

/**
 * Starts 4 processes on one store, lets them all ask for the token of an
 * expired login at once, and returns how many token requests the emulator saw.
 */
async function refreshAcrossProcesses(
  emulator: AccountsEmulator,
  store: TokenStore,
  spec: string,
  flags: string[],
): Promise<number> {
  const token = { ...(await loginAt(emulator)), expiresAt: 0 };
  await store.set(key, { token, consentedAt: 1 });
  const before = emulator.tokenRequests;
  const workers = Array.from({ length: 4 }, () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        ...flags,
        "tests/fixtures/session_worker.ts",
        spec,
        emulator.tokenEndpoint.href,
        client.clientId,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return { child, stdout: lines(child.stdout), stderr: lines(child.stderr) };
  });
  // All are started and waiting before any may look at the token.
  await Promise.all(workers.map((w) => w.stdout.waitFor(/^ready\n/)));
  await Promise.all(workers.map(async (w) => {
    const writer = w.child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
  }));
  const results = await Promise.all(workers.map(async (w) => {
    const status = await w.child.status;
    await Promise.all([w.stdout.finished, w.stderr.finished]);
    strictEqual(status.code, 0, w.stderr.text);
    return w.stdout.text.split("\n")[1];
  }));
  strictEqual(new Set(results).size, 1, "every process got the same token");
  strictEqual((await store.get(key))?.token.accessToken, results[0]);
  return emulator.tokenRequests - before;
}

Deno.test("several processes sharing a store refresh an expired token once", async (t) => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const dir = await Deno.makeTempDir({ prefix: "spotikit-session-" });
  try {
    await t.step("FileTokenStore", async () => {
      const directory = `${dir}/files`;
      const requests = await refreshAcrossProcesses(
        emulator,
        new FileTokenStore({ directory }),
        `file:${directory}`,
        [`--allow-read=${dir}`, `--allow-write=${dir}`],
      );
      strictEqual(requests, 1);
    });
    await t.step("KvTokenStore", async () => {
      const path = `${dir}/tokens.sqlite`;
      using kv = await Deno.openKv(path);
      const requests = await refreshAcrossProcesses(
        emulator,
        new KvTokenStore(kv),
        `kv:${path}`,
        ["--unstable-kv", `--allow-read=${dir}`, `--allow-write=${dir}`],
      );
      strictEqual(requests, 1);
    });
    await t.step({
      name: "RedisTokenStore",
      ignore: ignoreRedisTests,
      fn: async () => {
        await using server = await startRedis();
        const redis = createClient({ url: server.url });
        await redis.connect();
        try {
          const requests = await refreshAcrossProcesses(
            emulator,
            new RedisTokenStore(redis),
            `redis:${server.url}`,
            ["--allow-env"], // node-redis reads REDIS_DEBUG_MAINTENANCE
          );
          strictEqual(requests, 1);
        } finally {
          redis.destroy();
        }
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A fetch that passes requests on, but holds each answer until released. */
function gatedFetch() {
  const called = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<void>();
  const fetchFn: typeof fetch = async (input, init) => {
    called.resolve();
    const response = await fetch(input, init);
    await gate.promise;
    return response;
  };
  return { fetch: fetchFn, called: called.promise, release: () => gate.resolve() };
}

Deno.test("logout() during a refresh wins: nothing is written back", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store } = await expiredStore(emulator);
  const gated = gatedFetch();
  const auth = sessionAt(emulator, store, { fetch: gated.fetch });
  const refreshing = auth.getAccessToken();
  await gated.called;
  const loggingOut = auth.logout();
  gated.release();
  ok(await refreshing);
  await loggingOut;
  strictEqual(await store.get(key), undefined);
  await rejects(auth.getAccessToken(), SpotifyLoginRequiredError);
});

Deno.test("login() during a refresh wins: its token is the one stored", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store } = await expiredStore(emulator);
  const gated = gatedFetch();
  let done = Promise.resolve();
  const auth = sessionAt(emulator, store, { fetch: gated.fetch });
  const refreshing = auth.getAccessToken();
  await gated.called;
  const consentedAt = Date.now() + 1;
  const exchanged = Promise.withResolvers<void>();
  const other = sessionAt(emulator, store, {
    now: () => consentedAt,
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      exchanged.resolve();
      return response;
    },
    openBrowser: (url) => void (done = consent(url).then(() => {})),
  });
  const loggingIn = other.login();
  // The login has its token before the refresh has written the older one.
  await exchanged.promise;
  gated.release();
  await refreshing;
  const token = await loggingIn;
  await done;
  const stored = await store.get(key);
  strictEqual(stored?.token.refreshToken, token.refreshToken);
  strictEqual(stored?.consentedAt, consentedAt);
});

Deno.test("when every caller gives up, the refresh request is aborted", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store } = await expiredStore(emulator);
  const requestAborted = Promise.withResolvers<unknown>();
  const called = Promise.withResolvers<void>();
  const hanging: typeof fetch = (_input, init) => {
    called.resolve();
    init?.signal?.addEventListener("abort", () => requestAborted.resolve(init.signal!.reason));
    return new Promise(() => {});
  };
  const auth = sessionAt(emulator, store, { fetch: hanging });
  const [a, b] = [new AbortController(), new AbortController()];
  const first = auth.getAccessToken({ signal: a.signal });
  const second = auth.getAccessToken({ signal: b.signal });
  await called.promise;
  a.abort(new Error("a gave up"));
  await rejects(first, { message: "a gave up" });
  b.abort(new Error("b gave up"));
  await rejects(second, { message: "b gave up" });
  deepStrictEqual(await requestAborted.promise, new Error("b gave up"));
  ok(await store.get(key), "the stored token is untouched");
});

Deno.test("login() refuses to overwrite a token file it cannot read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spotikit-session-" });
  try {
    const store = new FileTokenStore({ directory: dir });
    const path = store.path(key);
    await Deno.writeTextFile(path, "{ not json", { mode: 0o600 });
    let opened = false;
    const auth = createSpotifyAuth({
      clientId: client.clientId,
      redirectUri: "http://127.0.0.1/callback",
      store,
      openBrowser: () => void (opened = true),
    });
    await rejects(auth.login(), {
      name: "SpotifyTokenStoreError",
      message: new RegExp(`^Cannot read the token at ${path}`),
    });
    strictEqual(opened, false);
    strictEqual(await Deno.readTextFile(path), "{ not json");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a caller who comes after everyone gave up starts a fresh refresh", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { store: inner } = await expiredStore(emulator);
  // The lock is held elsewhere until the gate opens; the given-up refresh
  // is still queued for it when the next caller arrives.
  const gate = Promise.withResolvers<void>();
  const waiting = Promise.withResolvers<void>();
  let queue = Promise.resolve();
  const store: TokenStore = {
    get: (key) => inner.get(key),
    set: (key, record) => inner.set(key, record),
    delete: (key) => inner.delete(key),
    lock: async (_key, fn) => {
      waiting.resolve();
      await gate.promise;
      const run = queue.then(fn);
      queue = run.then(() => {}, () => {});
      return await run;
    },
  };
  const auth = sessionAt(emulator, store);
  const controller = new AbortController();
  const gaveUp = auth.getAccessToken({ signal: controller.signal });
  await waiting.promise;
  controller.abort(new Error("gave up"));
  await rejects(gaveUp, { message: "gave up" });
  const next = auth.getAccessToken();
  gate.resolve();
  ok(await next, "the next caller is not handed the old abort");
});

Deno.test("a caller whose store read was stale does not open a second login", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const inner = new MemoryTokenStore();
  let hold: Promise<void> | undefined;
  // Answers with what the store held when asked, however late it answers.
  const store: TokenStore = {
    get: async (key) => {
      const wait = hold;
      const answer = await inner.get(key);
      if (wait) await wait;
      return answer;
    },
    set: (key, record) => inner.set(key, record),
    delete: (key) => inner.delete(key),
  };
  let logins = 0;
  let done = Promise.resolve();
  const auth = sessionAt(emulator, store, {
    interactive: true,
    openBrowser: (url) => {
      logins++;
      done = consent(url).then(() => {});
    },
  });
  const release = Promise.withResolvers<void>();
  hold = release.promise;
  const late = auth.getToken();
  hold = undefined;
  const first = await auth.getToken();
  await done;
  release.resolve();
  strictEqual((await late).accessToken, first.accessToken);
  strictEqual(logins, 1);
});

Deno.test("tokens from a caller's own store redact their secrets too", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const token = await loginAt(emulator);
  const map = new Map<string, unknown>();
  const store: TokenStore = {
    get: () => Promise.resolve(structuredClone(map.get("t")) as never),
    set: (_key, record) => Promise.resolve(void map.set("t", structuredClone(record))),
    delete: () => Promise.resolve(void map.delete("t")),
  };
  await store.set(key, { token: structuredClone(token), consentedAt: 1 });
  const shown = Deno.inspect(await sessionAt(emulator, store).getToken());
  ok(shown.includes('accessToken: "[redacted]"'), shown);
  ok(!shown.includes(token.accessToken));
});
