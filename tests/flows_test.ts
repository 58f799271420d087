import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert/strict";
import {
  authorizationCodeFlow,
  clientCredentialsFlow,
  createAuthorizeUrl,
  createCodeChallenge,
  createCodeVerifier,
  createState,
  exchangeCode,
  pkceFlow,
  refreshToken,
  SpotifyCallbackServerError,
  SpotifyOAuthError,
  startCallbackServer,
} from "../mod.ts";
import { type AccountsEmulator, startAccountsEmulator } from "../src/emulator.ts";
import { consent, decide, type Visit, visit } from "./_user_agent.ts";

const client = {
  clientId: "test-client",
  clientSecret: "test-secret",
  redirectUris: ["http://127.0.0.1/callback", "http://[::1]/callback"],
};

function endpoints(emulator: AccountsEmulator) {
  return {
    clientId: client.clientId,
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
  };
}

/** Runs the login's browser side in the background and keeps what the browser showed. */
function browser(decision: "approve" | "deny" = "approve") {
  const pages: Visit[] = [];
  let authorizeUrl: URL | undefined;
  let done: Promise<void> = Promise.resolve();
  return {
    pages,
    get authorizeUrl() {
      return authorizeUrl!;
    },
    get done() {
      return done;
    },
    open: (url: URL) => {
      authorizeUrl = url;
      done = consent(url, decision).then((page) => void pages.push(page));
    },
  };
}

Deno.test("pkceFlow() logs in through the listener and returns the granted token", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const user = browser();
  const before = Date.now();
  const token = await pkceFlow({
    ...endpoints(emulator),
    redirectUri: "http://127.0.0.1/callback",
    scope: "user-read-private, playlist-read-private",
    openBrowser: user.open,
  });
  await user.done;
  deepStrictEqual(Object.keys(token).sort(), [
    "accessToken",
    "expiresAt",
    "refreshToken",
    "scope",
    "tokenType",
  ]);
  strictEqual(token.tokenType, "Bearer");
  deepStrictEqual(token.scope, ["playlist-read-private", "user-read-private"]);
  ok(token.expiresAt >= before + 3_600_000 && token.expiresAt <= Date.now() + 3_600_000);
  deepStrictEqual(JSON.parse(JSON.stringify(token)), token);

  const sent = user.authorizeUrl.searchParams;
  strictEqual(sent.get("code_challenge_method"), "S256");
  match(sent.get("redirect_uri")!, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
  strictEqual(user.pages[0]!.status, 200);
  match(user.pages[0]!.body, /Logged in to Spotify/);
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("authorizationCodeFlow() logs in with the client secret", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const user = browser();
  const token = await authorizationCodeFlow({
    ...endpoints(emulator),
    clientSecret: client.clientSecret,
    redirectUri: "http://127.0.0.1/callback",
    scope: ["user-library-read"],
    openBrowser: user.open,
  });
  await user.done;
  deepStrictEqual(token.scope, ["user-library-read"]);
  ok(token.refreshToken);
  strictEqual(user.authorizeUrl.searchParams.has("code_challenge"), false);
});

Deno.test("clientCredentialsFlow() gets an app token with no refresh token", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const token = await clientCredentialsFlow({
    clientId: client.clientId,
    clientSecret: client.clientSecret,
    tokenEndpoint: emulator.tokenEndpoint,
    now: () => 0,
  });
  deepStrictEqual({ ...token, accessToken: "" }, {
    accessToken: "",
    tokenType: "Bearer",
    scope: [],
    expiresAt: 3_600_000,
  });
});

Deno.test("refreshToken() stores the rotated refresh token of a PKCE login", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const user = browser();
  const first = await pkceFlow({
    ...endpoints(emulator),
    redirectUri: "http://127.0.0.1/callback",
    scope: "user-read-email",
    openBrowser: user.open,
  });
  await user.done;
  const second = await refreshToken(first, { ...endpoints(emulator) });
  ok(second.refreshToken && second.refreshToken !== first.refreshToken);
  ok(second.accessToken !== first.accessToken);
  deepStrictEqual(second.scope, ["user-read-email"]);
  // The old refresh token was revoked by the rotation.
  await rejects(refreshToken(first, { ...endpoints(emulator) }), (error) => {
    return error instanceof SpotifyOAuthError && error.error === "invalid_grant" &&
      error.status === 400;
  });
  ok(await refreshToken(second, { ...endpoints(emulator) }));
});

Deno.test("refreshToken() keeps the refresh token of a secret-flow login", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const user = browser();
  const options = { ...endpoints(emulator), clientSecret: client.clientSecret };
  const first = await authorizationCodeFlow({
    ...options,
    redirectUri: "http://127.0.0.1/callback",
    openBrowser: user.open,
  });
  await user.done;
  const second = await refreshToken(first, options);
  strictEqual(second.refreshToken, first.refreshToken);
  ok(second.accessToken !== first.accessToken);
  ok(await refreshToken(first, options));
});

Deno.test("pkceFlow() rejects with access_denied when the user clicks Deny", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const user = browser("deny");
  await rejects(
    pkceFlow({
      ...endpoints(emulator),
      redirectUri: "http://127.0.0.1/callback",
      openBrowser: user.open,
    }),
    (error) => {
      ok(error instanceof SpotifyOAuthError);
      strictEqual(error.error, "access_denied");
      return true;
    },
  );
  await user.done;
  match(user.pages[0]!.body, /Spotify login cancelled/);
  strictEqual(emulator.tokenRequests, 0);
});

Deno.test("pkceFlow() ignores a forged callback and a favicon, then completes", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const pages: Visit[] = [];
  let done = Promise.resolve();
  const token = await pkceFlow({
    ...endpoints(emulator),
    redirectUri: "http://127.0.0.1/callback",
    openBrowser: (url) => {
      const redirectUri = url.searchParams.get("redirect_uri")!;
      done = (async () => {
        pages.push(await visit(new URL("/favicon.ico", redirectUri).href));
        pages.push(await visit(`${redirectUri}?code=forged`));
        pages.push(await visit(`${redirectUri}?code=forged&state=guess`));
        pages.push(await consent(url));
      })();
    },
  });
  await done;
  deepStrictEqual(pages.map((page) => page.status), [404, 400, 400, 200]);
  ok(token.accessToken);
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("authorizationCodeFlow() with a wrong secret fails with invalid_client", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const user = browser();
  await rejects(
    authorizationCodeFlow({
      ...endpoints(emulator),
      clientSecret: "wrong",
      redirectUri: "http://127.0.0.1/callback",
      openBrowser: user.open,
    }),
    (error) => {
      ok(error instanceof SpotifyOAuthError);
      deepStrictEqual([error.error, error.errorDescription, error.status], [
        "invalid_client",
        "Invalid client secret",
        400,
      ]);
      strictEqual(
        error.message,
        "Spotify's token endpoint answered 400 (invalid_client: Invalid client secret). Check the client id and client secret in the Spotify developer dashboard.",
      );
      ok(!error.message.includes("wrong"), "the message must not quote the secret");
      return true;
    },
  );
  await user.done;
});

/** The steps of a PKCE login by hand, to tamper with the exchange. */
async function codeFor(emulator: AccountsEmulator, verifier: string) {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  const url = createAuthorizeUrl({
    clientId: client.clientId,
    redirectUri: server.redirectUri,
    state,
    codeChallenge: await createCodeChallenge(verifier),
    authorizeEndpoint: emulator.authorizeEndpoint,
  });
  await consent(url);
  return { code: await waiting, redirectUri: server.redirectUri };
}

Deno.test("exchangeCode() with the wrong PKCE verifier fails with invalid_grant", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { code, redirectUri } = await codeFor(emulator, createCodeVerifier());
  await rejects(
    exchangeCode(code, { ...endpoints(emulator), redirectUri, codeVerifier: createCodeVerifier() }),
    (error) => {
      ok(error instanceof SpotifyOAuthError);
      deepStrictEqual([error.error, error.errorDescription], [
        "invalid_grant",
        "code_verifier was incorrect",
      ]);
      return true;
    },
  );
});

Deno.test("exchangeCode() refuses a code used twice", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const verifier = createCodeVerifier();
  const { code, redirectUri } = await codeFor(emulator, verifier);
  const options = { ...endpoints(emulator), redirectUri, codeVerifier: verifier };
  ok(await exchangeCode(code, options));
  await rejects(exchangeCode(code, options), (error) => {
    ok(error instanceof SpotifyOAuthError);
    deepStrictEqual([error.error, error.errorDescription], [
      "invalid_grant",
      "Invalid authorization code",
    ]);
    return true;
  });
});

Deno.test("pkceFlow() logs in on [::1]", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const user = browser();
  const token = await pkceFlow({
    ...endpoints(emulator),
    redirectUri: "http://[::1]/callback",
    openBrowser: user.open,
  });
  await user.done;
  ok(token.accessToken);
  match(user.authorizeUrl.searchParams.get("redirect_uri")!, /^http:\/\/\[::1\]:\d+\/callback$/);
});

Deno.test("pkceFlow() uses the port written in the redirect URI", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  await using emulator = await startAccountsEmulator({
    clients: [{ ...client, redirectUris: [redirectUri] }],
    autoApprove: true,
  });
  const user = browser();
  const token = await pkceFlow({ ...endpoints(emulator), redirectUri, openBrowser: user.open });
  await user.done;
  ok(token.accessToken);
  strictEqual(user.authorizeUrl.searchParams.get("redirect_uri"), redirectUri);
});

Deno.test("pkceFlow() fails at once when the redirect URI's port is in use", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let opened = false;
  await rejects(
    pkceFlow({
      clientId: "c",
      redirectUri: `http://127.0.0.1:${taken.addr.port}/callback`,
      openBrowser: () => void (opened = true),
    }),
    (error) => {
      ok(error instanceof SpotifyCallbackServerError);
      ok(error.message.includes(`port ${taken.addr.port} on 127.0.0.1 is already in use`));
      return true;
    },
  );
  strictEqual(opened, false);
});

Deno.test("pkceFlow() refuses localhost before anything starts", async () => {
  await rejects(
    pkceFlow({
      clientId: "c",
      redirectUri: "http://localhost:8888/callback",
      openBrowser: () => {},
    }),
    {
      name: "TypeError",
      message:
        'Cannot use redirect URI "http://localhost:8888/callback": Spotify refuses "localhost" in redirect URIs. Register http://127.0.0.1:8888/callback in the Spotify dashboard and use it instead',
    },
  );
});

Deno.test("pkceFlow() times out when Spotify shows INVALID_CLIENT instead of redirecting", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  let page: Promise<Visit> = Promise.resolve({ status: 0, url: "", body: "" });
  await rejects(
    pkceFlow({
      ...endpoints(emulator),
      redirectUri: "http://127.0.0.1/not-registered",
      timeout: 200,
      openBrowser: (url) => void (page = visit(url.href)),
    }),
    (error) => {
      ok(error instanceof DOMException);
      strictEqual(error.name, "TimeoutError");
      match(
        error.message,
        /^Timed out after 200 ms waiting for the browser .* "INVALID_CLIENT: Invalid redirect URI"/,
      );
      return true;
    },
  );
  match((await page).body, /INVALID_CLIENT: Invalid redirect URI/);
});

Deno.test("pkceFlow() rejects with the abort reason and closes the listener", async () => {
  const controller = new AbortController();
  const reason = new Error("Ctrl+C");
  let redirectUri = "";
  await rejects(
    pkceFlow({
      clientId: "c",
      redirectUri: "http://127.0.0.1/callback",
      signal: controller.signal,
      openBrowser: (url) => {
        redirectUri = url.searchParams.get("redirect_uri")!;
        controller.abort(reason);
      },
    }),
    (error) => error === reason,
  );
  await rejects(fetch(redirectUri), TypeError);
});

Deno.test("pkceFlow() passes on an error thrown by the openBrowser function", async () => {
  await rejects(
    pkceFlow({
      clientId: "c",
      redirectUri: "http://127.0.0.1/callback",
      openBrowser: () => Promise.reject(new Error("no user agent")),
    }),
    { message: "no user agent" },
  );
});

Deno.test("decide() sees the emulator's consent page before the redirect", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const url = createAuthorizeUrl({
    clientId: client.clientId,
    redirectUri: "http://127.0.0.1:1234/callback",
    state: "s",
    authorizeEndpoint: emulator.authorizeEndpoint,
  });
  const location = new URL(await decide(url, "deny"));
  deepStrictEqual(Object.fromEntries(location.searchParams), {
    error: "access_denied",
    state: "s",
  });
});

Deno.test("pkceFlow() times out even when the openBrowser function never returns", async () => {
  await rejects(
    pkceFlow({
      clientId: "c",
      redirectUri: "http://127.0.0.1/callback",
      timeout: 50,
      openBrowser: () => new Promise(() => {}),
    }),
    { name: "TimeoutError", message: /^Timed out after 50 ms waiting for the browser/ },
  );
});

Deno.test("pkceFlow() aborts even when the openBrowser function never returns", async () => {
  const controller = new AbortController();
  const login = pkceFlow({
    clientId: "c",
    redirectUri: "http://127.0.0.1/callback",
    signal: controller.signal,
    openBrowser: () => {
      queueMicrotask(() => controller.abort(new Error("stop")));
      return new Promise(() => {});
    },
  });
  await rejects(login, { message: "stop" });
});

Deno.test("pkceFlow() refuses a timeout a timer cannot keep", async () => {
  await rejects(
    pkceFlow({ clientId: "c", redirectUri: "http://127.0.0.1/callback", timeout: Infinity }),
    { name: "RangeError", message: /^Cannot use timeout Infinity/ },
  );
});
