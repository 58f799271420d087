// Faults at the token endpoint, played by the emulator: every case ends in a
// typed error or a bounded retry, and a stored refresh token survives all.
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import {
  clientCredentialsFlow,
  createSpotifyAuth,
  MemoryTokenStore,
  pkceFlow,
  SpotifyNetworkError,
  SpotifyOAuthError,
  SpotifyResponseError,
} from "../../mod.ts";
import {
  type AccountsEmulator,
  startAccountsEmulator,
  type TokenFault,
} from "../../src/emulator.ts";
import { consent } from "../_user_agent.ts";

const client = {
  clientId: "faults-client",
  clientSecret: "faults-secret",
  redirectUris: ["http://127.0.0.1/callback"],
};

function appToken(emulator: AccountsEmulator, extra: Record<string, unknown> = {}) {
  return clientCredentialsFlow({
    clientId: client.clientId,
    clientSecret: client.clientSecret,
    tokenEndpoint: emulator.tokenEndpoint,
    ...extra,
  });
}

const json = (body: unknown, status = 200): TokenFault => ({ status, body: JSON.stringify(body) });
const valid = { access_token: "x", token_type: "Bearer", expires_in: 3600 };

Deno.test("429 with Retry-After is honoured, then the request succeeds", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  emulator.injectTokenFaults({ status: 429, headers: { "retry-after": "1" } });
  const started = performance.now();
  ok(await appToken(emulator));
  ok(performance.now() - started >= 1000, "waited the second Spotify asked for");
  strictEqual(emulator.tokenRequests, 2);
});

Deno.test("429 asking for longer than maxRetryDelay fails at once and says how long", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  emulator.injectTokenFaults({ status: 429, headers: { "retry-after": "60" } });
  await rejects(appToken(emulator), (error) => {
    ok(error instanceof SpotifyResponseError);
    strictEqual(error.status, 429);
    ok(error.message.endsWith("The server is busy or failing; try again after 60 seconds."));
    return true;
  });
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("5xx answers are retried with backoff, a bounded number of times", async (t) => {
  for (const status of [500, 502, 503]) {
    await t.step(`${status} then success`, async () => {
      await using emulator = await startAccountsEmulator({ clients: [client] });
      emulator.injectTokenFaults({ status, body: "<html>down</html>" });
      ok(await appToken(emulator));
      strictEqual(emulator.tokenRequests, 2);
    });
    await t.step(`${status} three times`, async () => {
      await using emulator = await startAccountsEmulator({ clients: [client] });
      const fault = { status, body: "<html>down</html>", headers: { "content-type": "text/html" } };
      emulator.injectTokenFaults(fault, fault, fault, fault);
      await rejects(appToken(emulator), (error) => {
        ok(error instanceof SpotifyResponseError);
        strictEqual(error.status, status);
        ok(error.message.includes("the body is not JSON: 17 bytes of text/html"), error.message);
        return true;
      });
      strictEqual(emulator.tokenRequests, 3, "one request and two retries");
    });
  }
});

Deno.test("a connection reset is retried, and reported when it persists", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  emulator.injectTokenFaults({ reset: true });
  ok(await appToken(emulator));
  strictEqual(emulator.tokenRequests, 2);
  emulator.injectTokenFaults({ reset: true }, { reset: true }, { reset: true });
  await rejects(appToken(emulator), (error) => {
    ok(error instanceof SpotifyNetworkError);
    ok(
      error.message.startsWith(
        `Cannot read the answer of the token endpoint ${emulator.tokenEndpoint.href}`,
      ),
    );
    return true;
  });
  strictEqual(emulator.tokenRequests, 5);
});

Deno.test("a token endpoint that never answers fails after requestTimeout, without retries", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  emulator.injectTokenFaults({ hang: true });
  await rejects(appToken(emulator, { requestTimeout: 200 }), {
    name: "SpotifyNetworkError",
    message:
      `The token endpoint ${emulator.tokenEndpoint.href} did not answer within 200 ms. Try again later.`,
  });
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("an abort during a retry's wait rejects with the reason at once", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  emulator.injectTokenFaults({ status: 429, headers: { "retry-after": "5" } });
  const controller = new AbortController();
  const request = appToken(emulator, {
    signal: controller.signal,
    fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
      const response = await fetch(input, init);
      queueMicrotask(() => controller.abort(new Error("stop")));
      return response;
    },
  });
  await rejects(request, { message: "stop" });
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("broken token responses are refused with a typed error and no retry", async (t) => {
  const cases: [string, TokenFault, RegExp][] = [
    ["not JSON", { status: 200, body: "<html>ok</html>" }, /the body is not a JSON object/],
    ["no access_token", json({ ...valid, access_token: undefined }), /access_token is missing/],
    [
      "wrong token_type",
      json({ ...valid, token_type: "MAC" }),
      /token_type is "MAC", not "Bearer"/,
    ],
    ["negative expires_in", json({ ...valid, expires_in: -1 }), /expires_in is -1, not a number/],
    ["huge expires_in", json({ ...valid, expires_in: 1e10 }), /expires_in is 10000000000, not/],
  ];
  for (const [name, fault, message] of cases) {
    await t.step(name, async () => {
      await using emulator = await startAccountsEmulator({ clients: [client] });
      emulator.injectTokenFaults(fault);
      await rejects(appToken(emulator), (error) => {
        ok(error instanceof SpotifyResponseError);
        ok(message.test(error.message), error.message);
        return true;
      });
      strictEqual(emulator.tokenRequests, 1);
    });
  }
});

Deno.test("a stored refresh token survives every fault during a refresh", async (t) => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  let browser = Promise.resolve();
  const token = await pkceFlow({
    clientId: client.clientId,
    redirectUri: "http://127.0.0.1/callback",
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
    openBrowser: (url) => void (browser = consent(url).then(() => {})),
  });
  await browser;
  const key = { clientId: client.clientId };
  const store = new MemoryTokenStore();
  const record = { token: { ...token, expiresAt: 0 }, consentedAt: 1 };
  await store.set(key, record);
  const session = () =>
    createSpotifyAuth({
      clientId: client.clientId,
      store,
      interactive: false,
      tokenEndpoint: emulator.tokenEndpoint,
      requestTimeout: 200,
      maxRetryDelay: 1000,
    });
  const down = { status: 503, body: "" };
  const faults: [string, TokenFault[]][] = [
    ["429 for too long", [{ status: 429, headers: { "retry-after": "120" } }]],
    ["503 three times", [down, down, down]],
    ["connection resets", [{ reset: true }, { reset: true }, { reset: true }]],
    ["no answer", [{ hang: true }]],
    ["not JSON", [{ status: 200, body: "oops" }]],
    ["no access_token", [json({ token_type: "Bearer", expires_in: 3600 })]],
    ["wrong token_type", [json({ ...valid, token_type: "mac" })]],
    ["negative expires_in", [json({ ...valid, expires_in: -5 })]],
    // A 500 may have reached the server and rotated the token: the
    // invalid_grant that follows must not delete the stored one.
    ["500, then invalid_grant", [{ status: 500 }, json({ error: "invalid_grant" }, 400)]],
  ];
  for (const [name, played] of faults) {
    await t.step(name, async () => {
      emulator.injectTokenFaults(...played);
      await rejects(session().getAccessToken(), (error) => {
        ok(
          error instanceof SpotifyResponseError || error instanceof SpotifyNetworkError ||
            error instanceof SpotifyOAuthError,
          String(error),
        );
        return true;
      });
      deepStrictEqual(await store.get(key), record);
    });
  }
  await t.step("the kept refresh token still works", async () => {
    ok(await session().getAccessToken());
    ok((await store.get(key))?.token.expiresAt! > Date.now());
  });
});

Deno.test("retries beyond what maxRetryDelay would allow for backoff still all happen", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const down = { status: 503 };
  emulator.injectTokenFaults(down, down, down, down);
  ok(await appToken(emulator, { retries: 4, maxRetryDelay: 50 }));
  strictEqual(emulator.tokenRequests, 5);
});

Deno.test("retry options that make no sense are refused", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  await rejects(appToken(emulator, { maxRetryDelay: Number.NaN }), {
    name: "RangeError",
    message:
      "Cannot use maxRetryDelay NaN: it must be a number of milliseconds from 0 to 2147483647",
  });
  await rejects(appToken(emulator, { retries: -1 }), {
    name: "RangeError",
    message: "Cannot use retries -1: it must be a whole number from 0",
  });
  strictEqual(emulator.tokenRequests, 0);
});
