// No error message, toString, inspect output or log line may hold a secret:
// every secret that crossed the wire in these scenarios is recorded, then
// searched for in everything a user could see.
import { ok, rejects, strictEqual } from "node:assert/strict";
import {
  authorizationCodeFlow,
  createSpotifyAuth,
  exchangeCode,
  FileTokenStore,
  MemoryTokenStore,
  pkceFlow,
  refreshToken,
  type SpotifyToken,
} from "../../mod.ts";
import { startAccountsEmulator } from "../../src/emulator.ts";

const client = {
  clientId: "secrets-client",
  clientSecret: "client-secret-9f8e7d6c5b4a",
  redirectUris: ["http://127.0.0.1/callback"],
};

Deno.test("no secret shows up in errors, inspect output or the browser's pages", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const secrets = new Set<string>([client.clientSecret]);
  const shown: string[] = [];
  const codes: string[] = [];

  // Records what crossed the wire: codes, verifiers, tokens, the secret.
  const recording: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const sent = new URLSearchParams(await request.clone().text());
    for (const name of ["code", "code_verifier", "refresh_token"]) {
      const value = sent.get(name);
      if (value) secrets.add(value);
    }
    const response = await fetch(request);
    const body = await response.clone().text();
    try {
      const json = JSON.parse(body);
      for (const name of ["access_token", "refresh_token"]) if (json[name]) secrets.add(json[name]);
    } catch {
      // Not JSON: nothing to record.
    }
    return response;
  };
  const show = (value: unknown) => {
    shown.push(String(value), Deno.inspect(value, { depth: Infinity, colors: false }));
    if (value instanceof Error) {
      shown.push(value.message, JSON.stringify(value));
      if (value.cause !== undefined) show(value.cause);
    }
  };
  const browser = (url: URL) => {
    const params = url.searchParams;
    for (const name of ["state", "code_challenge"]) {
      const value = params.get(name);
      if (value) secrets.add(value);
    }
    return (async () => {
      const consent = await fetch(url, { redirect: "manual" });
      await consent.body?.cancel();
      const location = consent.headers.get("location")!;
      const code = new URL(location).searchParams.get("code");
      if (code) {
        secrets.add(code);
        codes.push(code);
      }
      const page = await fetch(location);
      shown.push(await page.text());
    })();
  };
  const endpoints = {
    clientId: client.clientId,
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
    fetch: recording,
    redirectUri: "http://127.0.0.1/callback",
  };

  // A login, and the token as a user would print it.
  let opened = Promise.resolve();
  const token: SpotifyToken = await pkceFlow({
    ...endpoints,
    openBrowser: (url) => void (opened = browser(url)),
  });
  await opened;
  show(token);
  show({ token });

  // The same code twice: invalid_grant.
  let codeLogin = Promise.resolve();
  await authorizationCodeFlow({
    ...endpoints,
    clientSecret: client.clientSecret,
    openBrowser: (url) => void (codeLogin = browser(url)),
  });
  await codeLogin;
  await exchangeCode(codes.at(-1)!, { ...endpoints, clientSecret: client.clientSecret }).catch(
    show,
  );

  // A wrong secret, a revoked refresh token.
  await authorizationCodeFlow({
    ...endpoints,
    clientSecret: `${client.clientSecret}-wrong`,
    openBrowser: (url) => void (codeLogin = browser(url)),
  }).catch(show);
  await codeLogin;
  emulator.revokeRefreshToken(token.refreshToken!);
  await refreshToken(token, endpoints).catch(show);

  // A malformed answer that carries a token.
  emulator.injectTokenFaults({
    status: 200,
    body: JSON.stringify({
      access_token: "leaked-access-token-123",
      token_type: "mac",
      expires_in: 60,
    }),
  });
  secrets.add("leaked-access-token-123");
  await refreshToken({ ...token, refreshToken: "made-up-refresh-token-456" }, endpoints)
    .catch(show);

  // A session whose refresh token is dead, and a store file that is corrupt.
  const store = new MemoryTokenStore();
  await store.set({ clientId: client.clientId }, { token: { ...token, expiresAt: 0 } });
  const session = createSpotifyAuth({ ...endpoints, store, interactive: false });
  await session.getAccessToken().catch(show);
  const dir = await Deno.makeTempDir({ prefix: "spotikit-secrets-" });
  try {
    const file = new FileTokenStore({ directory: dir });
    await Deno.writeTextFile(
      file.path({ clientId: client.clientId }),
      `{"version":1,"token":{"accessToken":"${token.accessToken}"`,
      { mode: 0o600 },
    );
    await file.get({ clientId: client.clientId }).catch(show);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  ok(secrets.size >= 8, `recorded ${secrets.size} secrets`);
  strictEqual(shown.length > 20, true);
  for (const secret of secrets) {
    for (const text of shown) {
      ok(
        !text.includes(secret),
        `a secret (${secret.length} chars) appears in: ${text.slice(0, 300)}`,
      );
    }
  }
});

Deno.test("errors from every flow still say what happened", async () => {
  // The redaction must not cost the user the facts: status and error code stay.
  await using emulator = await startAccountsEmulator({ clients: [client] });
  await rejects(
    refreshToken(
      { accessToken: "a", tokenType: "Bearer", scope: [], expiresAt: 0, refreshToken: "nope" },
      { clientId: client.clientId, tokenEndpoint: emulator.tokenEndpoint },
    ),
    {
      name: "SpotifyOAuthError",
      message:
        "Spotify's token endpoint answered 400 (invalid_grant: Invalid refresh token). The code or refresh token is invalid, used or expired; log in again.",
    },
  );
});
