// Shared pieces of the benchmarks: a scripted browser, canned token
// responses, and the hand-rolled baselines (loopback exchanges and a PKCE
// login with the same HTTP calls as pkceFlow() but no validation at all), so
// that the library's figures can be read as ratios.

import type { AccountsEmulator } from "../src/emulator.ts";

/** The emulator's default client accepts this on any port (RFC 8252 §7.3). */
export const REDIRECT_URI = "http://127.0.0.1/callback";
/** The emulator's default client id. */
export const CLIENT_ID = "spotikit-emulator";

/** RFC 7636 Appendix B: a verifier and its S256 challenge. */
export const RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/** The S256 challenge of {@linkcode RFC_VERIFIER}. */
export const RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/**
 * The "browser" of an auto-approving emulator: load the authorize URL without
 * following its redirect, then load the redirect (the loopback listener).
 */
export async function followRedirect(url: URL): Promise<void> {
  const r = await fetch(url, { redirect: "manual" });
  await r.body?.cancel();
  const location = r.headers.get("location");
  if (location === null) throw new Error(`No redirect from ${url.origin} (status ${r.status})`);
  await (await fetch(location)).body?.cancel();
}

/** The body of a successful PKCE token response, as Spotify sends it. */
export const TOKEN_RESPONSE_BODY = JSON.stringify({
  access_token: "BQD".padEnd(300, "x"),
  token_type: "Bearer",
  expires_in: 3600,
  refresh_token: "AQC".padEnd(130, "y"),
  scope: "playlist-read-private user-read-private",
});

/** A `fetch` that answers every request with a fresh copy of a 200 token response. */
// The request (URL, headers, form body) is built by the caller and not sent.
export const cannedFetch: typeof fetch = () => {
  return Promise.resolve(
    new Response(TOKEN_RESPONSE_BODY, {
      status: 200,
      headers: { "content-type": "application/json" },
    }),
  );
};

/** A token that is valid for an hour from now. */
export function validToken(now = Date.now()): {
  accessToken: string;
  tokenType: "Bearer";
  scope: string[];
  expiresAt: number;
  refreshToken: string;
} {
  return {
    accessToken: "BQD".padEnd(300, "x"),
    tokenType: "Bearer",
    scope: ["playlist-read-private", "user-read-private"],
    expiresAt: now + 3_600_000,
    refreshToken: "AQC".padEnd(130, "y"),
  };
}

/**
 * Baseline: a loopback listener on port 0 that takes one request, with no
 * path, method or state checks; then closes.
 */
export async function bareLoopbackExchange(): Promise<void> {
  const controller = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen() {},
  }, () => new Response("ok"));
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/callback?code=c&state=s`);
  await response.body?.cancel();
  controller.abort();
  await server.finished;
}

/** Baseline: start a loopback listener on port 0 and close it. */
export async function bareListenerStartClose(): Promise<void> {
  const controller = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen() {},
  }, () => new Response("ok"));
  controller.abort();
  await server.finished;
}

/**
 * Baseline: the HTTP calls of a PKCE login (listener up, authorize, callback,
 * listener down, token request) with a fixed verifier and no checks of any
 * kind: no redirect URI rules, no state, no response validation.
 */
export async function bareLogin(emulator: AccountsEmulator): Promise<string> {
  const controller = new AbortController();
  const { promise: code, resolve } = Promise.withResolvers<string>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen() {},
  }, (request) => {
    resolve(new URL(request.url).searchParams.get("code") ?? "");
    return new Response("ok");
  });
  const redirectUri = `http://127.0.0.1:${server.addr.port}/callback`;
  const authorize = new URL(emulator.authorizeEndpoint);
  authorize.search = new URLSearchParams({
    client_id: CLIENT_ID,
    response_type: "code",
    redirect_uri: redirectUri,
    state: "s",
    code_challenge_method: "S256",
    code_challenge: RFC_CHALLENGE,
  }).toString();
  await followRedirect(authorize);
  const received = await code;
  controller.abort();
  await server.finished;
  const response = await fetch(emulator.tokenEndpoint, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: received,
      redirect_uri: redirectUri,
      client_id: CLIENT_ID,
      code_verifier: RFC_VERIFIER,
    }),
  });
  const json = await response.json();
  return json.access_token;
}
