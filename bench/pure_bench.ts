// The pure protocol steps, with no I/O: PKCE values, the authorize URL, the
// callback URL and token response parsing (behind an injected fetch that
// answers with a canned Response). Each group has a hand-rolled baseline that
// does the same work without any validation.
//
//   deno task bench bench/pure_bench.ts

import { createAuthorizeUrl } from "../src/authorize_url.ts";
import { parseCallbackUrl } from "../src/callback.ts";
import { exchangeCode } from "../src/flows.ts";
import { createCodeChallenge, createCodeVerifier, createState } from "../src/pkce.ts";
import { requestToken } from "../src/token_endpoint.ts";
import { cannedFetch, RFC_CHALLENGE, RFC_VERIFIER, TOKEN_RESPONSE_BODY } from "./_helpers.ts";
import { SMOKE } from "./_samples.ts";

const TOKEN_ENDPOINT = "http://127.0.0.1:9/api/token";
const STATE = createState();
const CALLBACK = `http://127.0.0.1:8888/callback?code=${"AQB".padEnd(200, "z")}&state=${STATE}`;
const SCOPES = ["user-read-private", "playlist-read-private", "user-library-read"];

// --- PKCE -------------------------------------------------------------------

Deno.bench("createCodeVerifier()", { ...SMOKE, group: "verifier" }, () => {
  createCodeVerifier();
});

Deno.bench(
  "baseline: 48 random bytes, base64url",
  { ...SMOKE, group: "verifier", baseline: true },
  () => {
    crypto.getRandomValues(new Uint8Array(48)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
  },
);

Deno.bench("createCodeChallenge(verifier)", { ...SMOKE, group: "challenge" }, async () => {
  await createCodeChallenge(RFC_VERIFIER);
});

Deno.bench(
  "baseline: crypto.subtle.digest + base64url",
  { ...SMOKE, group: "challenge", baseline: true },
  async () => {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(RFC_VERIFIER));
    new Uint8Array(digest).toBase64({ alphabet: "base64url", omitPadding: true });
  },
);

Deno.bench(
  "createCodeVerifier() + createCodeChallenge()",
  { ...SMOKE, group: "challenge" },
  async () => {
    await createCodeChallenge(createCodeVerifier());
  },
);

// --- authorize URL ----------------------------------------------------------

Deno.bench("createAuthorizeUrl()", { ...SMOKE, group: "authorize_url" }, () => {
  createAuthorizeUrl({
    clientId: "spotikit-emulator",
    redirectUri: "http://127.0.0.1:8888/callback",
    state: STATE,
    scope: SCOPES,
    codeChallenge: RFC_CHALLENGE,
  });
});

Deno.bench(
  "baseline: new URL + URLSearchParams",
  { ...SMOKE, group: "authorize_url", baseline: true },
  () => {
    const url = new URL("https://accounts.spotify.com/authorize");
    url.search = new URLSearchParams({
      client_id: "spotikit-emulator",
      response_type: "code",
      redirect_uri: "http://127.0.0.1:8888/callback",
      state: STATE,
      scope: SCOPES.join(" "),
      code_challenge_method: "S256",
      code_challenge: RFC_CHALLENGE,
    }).toString();
  },
);

// --- callback URL -----------------------------------------------------------

Deno.bench("parseCallbackUrl()", { ...SMOKE, group: "callback" }, () => {
  parseCallbackUrl(CALLBACK, STATE);
});

Deno.bench(
  "baseline: new URL().searchParams.get",
  { ...SMOKE, group: "callback", baseline: true },
  () => {
    new URL(CALLBACK).searchParams.get("code");
  },
);

// --- token response ---------------------------------------------------------

const PARAMS = {
  grant_type: "authorization_code",
  code: "AQB".padEnd(200, "z"),
  redirect_uri: "http://127.0.0.1:8888/callback",
  code_verifier: RFC_VERIFIER,
};

Deno.bench("requestToken() with a canned Response", { ...SMOKE, group: "token" }, async () => {
  await requestToken(PARAMS, { clientId: "spotikit-emulator" }, {
    fetch: cannedFetch,
    tokenEndpoint: TOKEN_ENDPOINT,
  });
});

Deno.bench("exchangeCode() with a canned Response", { ...SMOKE, group: "token" }, async () => {
  await exchangeCode(PARAMS.code, {
    clientId: "spotikit-emulator",
    redirectUri: PARAMS.redirect_uri,
    codeVerifier: RFC_VERIFIER,
    fetch: cannedFetch,
    tokenEndpoint: TOKEN_ENDPOINT,
  });
});

Deno.bench(
  "baseline: form body + canned Response + json()",
  { ...SMOKE, group: "token", baseline: true },
  async () => {
    const body = new URLSearchParams({ ...PARAMS, client_id: "spotikit-emulator" });
    const response = await cannedFetch(TOKEN_ENDPOINT, { method: "POST", body });
    const json = await response.json();
    void json.access_token;
  },
);

Deno.bench("baseline: new Response + JSON.parse only", { ...SMOKE, group: "token" }, async () => {
  JSON.parse(await new Response(TOKEN_RESPONSE_BODY).text());
});
