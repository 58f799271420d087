import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import {
  clientCredentialsFlow,
  exchangeCode,
  refreshToken,
  SpotifyNetworkError,
  SpotifyOAuthError,
  SpotifyResponseError,
  type SpotifyToken,
} from "../mod.ts";

const endpoint = "http://127.0.0.1:9/api/token";
const now = () => 1_000_000;

interface Seen {
  url: string;
  headers: Headers;
  body: URLSearchParams;
}

/** A fetch that records the request and answers with the given body and status. */
function answer(body: unknown, init: ResponseInit = {}): { fetch: typeof fetch; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetchFn: typeof fetch = async (input, requestInit) => {
    const request = new Request(input, requestInit);
    seen.push({
      url: request.url,
      headers: request.headers,
      body: new URLSearchParams(await request.text()),
    });
    const text = typeof body === "string" ? body : JSON.stringify(body);
    return new Response(text, {
      status: 200,
      headers: { "content-type": typeof body === "string" ? "text/html" : "application/json" },
      ...init,
    });
  };
  return { fetch: fetchFn, seen };
}

const valid = {
  access_token: "at-1",
  token_type: "Bearer",
  expires_in: 3600,
  refresh_token: "rt-1",
  scope: "user-read-private playlist-read-private",
};

Deno.test("exchangeCode() with a secret sends Basic auth and parses the token", async () => {
  const { fetch, seen } = answer(valid);
  const token = await exchangeCode("code-1", {
    clientId: "id",
    clientSecret: "secret",
    redirectUri: "http://127.0.0.1:8888/callback",
    tokenEndpoint: endpoint,
    fetch,
    now,
  });
  deepStrictEqual(token, {
    accessToken: "at-1",
    tokenType: "Bearer",
    scope: ["playlist-read-private", "user-read-private"],
    expiresAt: 1_000_000 + 3_600_000,
    refreshToken: "rt-1",
  });
  strictEqual(seen[0]!.url, endpoint);
  strictEqual(seen[0]!.headers.get("authorization"), `Basic ${btoa("id:secret")}`);
  strictEqual(seen[0]!.headers.get("content-type"), "application/x-www-form-urlencoded");
  deepStrictEqual(Object.fromEntries(seen[0]!.body), {
    grant_type: "authorization_code",
    code: "code-1",
    redirect_uri: "http://127.0.0.1:8888/callback",
  });
});

Deno.test("exchangeCode() with PKCE sends client_id and code_verifier, no secret", async () => {
  const { fetch, seen } = answer(valid);
  await exchangeCode("code-1", {
    clientId: "id",
    redirectUri: "http://127.0.0.1:8888/callback",
    codeVerifier: "v".repeat(43),
    tokenEndpoint: endpoint,
    fetch,
  });
  strictEqual(seen[0]!.headers.get("authorization"), null);
  deepStrictEqual(Object.fromEntries(seen[0]!.body), {
    grant_type: "authorization_code",
    code: "code-1",
    redirect_uri: "http://127.0.0.1:8888/callback",
    code_verifier: "v".repeat(43),
    client_id: "id",
  });
});

Deno.test("clientCredentialsFlow() accepts a lowercase bearer and no scope", async () => {
  const { fetch, seen } = answer({ access_token: "app", token_type: "bearer", expires_in: 3600 });
  const token = await clientCredentialsFlow({
    clientId: "id",
    clientSecret: "s",
    tokenEndpoint: endpoint,
    fetch,
    now,
  });
  deepStrictEqual(token, {
    accessToken: "app",
    tokenType: "Bearer",
    scope: [],
    expiresAt: 4_600_000,
  });
  deepStrictEqual(Object.fromEntries(seen[0]!.body), { grant_type: "client_credentials" });
});

const old: SpotifyToken = {
  accessToken: "old-at",
  tokenType: "Bearer",
  scope: ["user-read-private"],
  expiresAt: 0,
  refreshToken: "old-rt",
};

Deno.test("refreshToken() keeps the old refresh token and scope when none come back", async () => {
  const { fetch, seen } = answer({
    access_token: "new-at",
    token_type: "Bearer",
    expires_in: 3600,
  });
  const token = await refreshToken(old, { clientId: "id", tokenEndpoint: endpoint, fetch, now });
  deepStrictEqual(token, {
    accessToken: "new-at",
    tokenType: "Bearer",
    scope: ["user-read-private"],
    expiresAt: 4_600_000,
    refreshToken: "old-rt",
  });
  deepStrictEqual(Object.fromEntries(seen[0]!.body), {
    grant_type: "refresh_token",
    refresh_token: "old-rt",
    client_id: "id",
  });
  strictEqual(old.accessToken, "old-at");
});

Deno.test("refreshToken() stores a rotated refresh token", async () => {
  const { fetch } = answer({ ...valid, refresh_token: "rotated" });
  const token = await refreshToken(old, { clientId: "id", tokenEndpoint: endpoint, fetch });
  strictEqual(token.refreshToken, "rotated");
});

Deno.test("refreshToken() refuses a token without a refresh token", async () => {
  const { accessToken, tokenType, scope, expiresAt } = old;
  await rejects(refreshToken({ accessToken, tokenType, scope, expiresAt }, { clientId: "id" }), {
    name: "TypeError",
    message:
      "Cannot refresh a token without a refresh token; client credentials tokens are replaced with clientCredentialsFlow(), others need a new login",
  });
});

Deno.test("an OAuth error body becomes SpotifyOAuthError with status and description", async () => {
  const { fetch } = answer({ error: "invalid_grant", error_description: "Invalid refresh token" }, {
    status: 400,
  });
  await rejects(refreshToken(old, { clientId: "id", tokenEndpoint: endpoint, fetch }), (error) => {
    ok(error instanceof SpotifyOAuthError);
    strictEqual(error.error, "invalid_grant");
    strictEqual(error.errorDescription, "Invalid refresh token");
    strictEqual(error.status, 400);
    strictEqual(error.response?.status, 400);
    strictEqual(Object.keys(error).includes("response"), false);
    strictEqual(
      error.message,
      "Spotify's token endpoint answered 400 (invalid_grant: Invalid refresh token). The code or refresh token is invalid, used or expired; log in again.",
    );
    return true;
  });
});

Deno.test("a non-JSON error body becomes SpotifyResponseError with the status", async () => {
  const { fetch } = answer("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway" });
  await rejects(refreshToken(old, { clientId: "id", tokenEndpoint: endpoint, fetch }), (error) => {
    ok(error instanceof SpotifyResponseError);
    strictEqual(error.status, 502);
    strictEqual(
      error.message,
      `The token endpoint ${endpoint} answered 502 Bad Gateway without an OAuth error (the body is not JSON: 24 bytes of text/html). The server is busy or failing; try again later.`,
    );
    return true;
  });
});

Deno.test("malformed token responses are refused, never half-used", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ["not JSON", "oops", /the body is not a JSON object \(4 bytes of text\/html\)/],
    ["an array", [valid], /the body is not a JSON object/],
    ["no access_token", { ...valid, access_token: undefined }, /access_token is missing/],
    ["empty access_token", { ...valid, access_token: "" }, /access_token is missing/],
    ["wrong token_type", { ...valid, token_type: "mac" }, /token_type is "mac", not "Bearer"/],
    [
      "negative expires_in",
      { ...valid, expires_in: -5 },
      /expires_in is -5, not a number of seconds/,
    ],
    ["huge expires_in", { ...valid, expires_in: 1e12 }, /expires_in is 1000000000000/],
    ["string expires_in", { ...valid, expires_in: "3600" }, /expires_in is "3600"/],
    ["numeric scope", { ...valid, scope: 5 }, /scope is not a string/],
    [
      "empty refresh_token",
      { ...valid, refresh_token: "" },
      /refresh_token is not a non-empty string/,
    ],
  ];
  for (const [name, body, message] of cases) {
    await t.step(name, async () => {
      const { fetch } = answer(body);
      await rejects(
        exchangeCode("c", {
          clientId: "id",
          redirectUri: "https://e.com/cb",
          tokenEndpoint: endpoint,
          fetch,
        }),
        (error) => {
          ok(error instanceof SpotifyResponseError);
          strictEqual(error.status, 200);
          ok(message.test(error.message), error.message);
          ok(!error.message.includes("at-1"), "the message must not quote the token");
          return true;
        },
      );
    });
  }
});

Deno.test("an unreachable token endpoint gives SpotifyNetworkError", async () => {
  const fetch: typeof globalThis.fetch = () => Promise.reject(new TypeError("connection refused"));
  await rejects(refreshToken(old, { clientId: "id", tokenEndpoint: endpoint, fetch }), (error) => {
    ok(error instanceof SpotifyNetworkError);
    strictEqual(
      error.message,
      `Cannot reach the token endpoint ${endpoint}: connection refused. Check the network connection and try again.`,
    );
    return true;
  });
});

Deno.test("an aborted token request rejects with the abort reason", async () => {
  const reason = new Error("cancelled");
  await rejects(
    clientCredentialsFlow({
      clientId: "id",
      clientSecret: "s",
      tokenEndpoint: endpoint,
      signal: AbortSignal.abort(reason),
    }),
    (error) => error === reason,
  );
});

Deno.test("a token endpoint that never answers fails after requestTimeout", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const tokenEndpoint = `http://127.0.0.1:${listener.addr.port}/api/token`;
  await rejects(
    clientCredentialsFlow({
      clientId: "id",
      clientSecret: "s",
      tokenEndpoint,
      requestTimeout: 100,
    }),
    (error) => {
      ok(error instanceof SpotifyNetworkError);
      strictEqual(
        error.message,
        `The token endpoint ${tokenEndpoint} did not answer within 100 ms. Try again later.`,
      );
      return true;
    },
  );
  (await accepted).close();
});
