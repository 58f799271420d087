/**
 * The whole thing offline, with no human and no Spotify account: a local
 * Accounts emulator, a PKCE login through the loopback listener, a token
 * stored on disk, then served from the store and refreshed.
 *
 * Run it with `deno task demo`.
 *
 * @module
 */

import { createSpotifyAuth, FileTokenStore } from "../mod.ts";
import { startAccountsEmulator } from "../src/emulator.ts";

const step = (text: string) => console.log(`\n> ${text}`);
const show = (text: string) => console.log(`  ${text}`);
// Enough of a token to tell two apart, never the whole secret.
const redact = (token: string | undefined) => token ? `${token.slice(0, 6)}…` : "(none)";

/** Plays the user's part in the browser: load the consent page, press Approve, follow the redirect. */
async function approveInBrowser(authorizeUrl: URL): Promise<void> {
  const consent = await fetch(authorizeUrl);
  const page = await consent.text();
  const requestId = /name="request_id" value="([^"]+)"/.exec(page)?.[1];
  if (!requestId) {
    throw new Error(`No consent page at ${authorizeUrl.origin} (status ${consent.status})`);
  }
  show(`browser: consent page shown (${consent.status}); pressing Approve`);
  const decision = await fetch(new URL("/authorize/decision", authorizeUrl), {
    method: "POST",
    body: new URLSearchParams({ request_id: requestId, decision: "approve" }),
    redirect: "manual",
  });
  await decision.body?.cancel();
  const callback = new URL(decision.headers.get("location")!);
  show(`browser: redirected to ${callback.origin}${callback.pathname}?code=…&state=…`);
  const landing = await fetch(callback);
  const title = /<h1>([^<]*)<\/h1>/.exec(await landing.text())?.[1];
  show(`browser: the listener answered ${landing.status} "${title}"`);
}

const directory = await Deno.makeTempDir({ prefix: "spotikit-demo-" });
try {
  step("Starting the Spotify Accounts emulator on 127.0.0.1");
  await using emulator = await startAccountsEmulator();
  show(`authorize: ${emulator.authorizeEndpoint.href}`);
  show(`token:     ${emulator.tokenEndpoint.href}`);

  const store = new FileTokenStore({ directory });
  const options = {
    clientId: "spotikit-emulator",
    redirectUri: "http://127.0.0.1/callback",
    scope: ["user-read-private", "playlist-read-private"],
    store,
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
  };

  step("Logging in with PKCE through the loopback listener");
  const auth = createSpotifyAuth({
    ...options,
    interactive: true,
    openBrowser: (url) => {
      show(`listener up at ${url.searchParams.get("redirect_uri")}`);
      show(`opening ${url.origin}${url.pathname}?client_id=…&code_challenge_method=S256&…`);
      return approveInBrowser(url);
    },
  });
  const token = await auth.login();
  show(
    `got a ${token.tokenType} token ${redact(token.accessToken)} with scopes: ${
      token.scope.join(" ")
    }`,
  );
  show(
    `expires at ${new Date(token.expiresAt).toISOString()}; refresh token ${
      redact(token.refreshToken)
    }`,
  );

  step("Stored on disk");
  const path = store.path(auth.key);
  show(`${path} (mode ${((await Deno.stat(path)).mode! & 0o777).toString(8)})`);

  step("A later run: the token comes from the store, no request");
  const before = emulator.tokenRequests;
  const later = createSpotifyAuth({ ...options, interactive: false });
  show(
    `access token ${redact(await later.getAccessToken())}; token requests made: ${
      emulator.tokenRequests - before
    }`,
  );

  step("Two hours later: the token has expired and is refreshed once");
  const twoHoursLater = createSpotifyAuth({
    ...options,
    interactive: false,
    now: () => Date.now() + 2 * 3600_000,
  });
  const tokens = await Promise.all(Array.from({ length: 100 }, () => twoHoursLater.getToken()));
  const refreshed = tokens[0]!;
  show(`100 concurrent calls, ${emulator.tokenRequests - before} token request`);
  show(
    `new access token ${redact(refreshed.accessToken)}; rotated refresh token ${
      redact(refreshed.refreshToken)
    }`,
  );
  const stored = await store.get(auth.key);
  show(
    `the store now holds ${redact(stored?.token.accessToken)} and ${
      redact(stored?.token.refreshToken)
    }`,
  );

  step("Done: everything ran against 127.0.0.1, nothing left running");
} finally {
  await Deno.remove(directory, { recursive: true });
}
