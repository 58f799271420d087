import assert from "node:assert/strict";
import {
  type AccountsEmulator,
  DEFAULT_EMULATOR_CLIENT,
  type EmulatorClient,
  startAccountsEmulator,
} from "../src/emulator.ts";

// RFC 7636 Appendix B.
const VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

const CLIENT_ID = DEFAULT_EMULATOR_CLIENT.clientId;
const CLIENT_SECRET = DEFAULT_EMULATOR_CLIENT.clientSecret;
const REDIRECT_URI = "http://127.0.0.1:8888/callback";

const OTHER_CLIENT: EmulatorClient = {
  clientId: "other-app",
  clientSecret: "other-secret",
  redirectUris: [REDIRECT_URI],
};

function basic(id: string, secret: string): string {
  return `Basic ${btoa(`${id}:${secret}`)}`;
}

/** GET /authorize with `params`, without following the redirect. */
function authorize(
  emulator: AccountsEmulator,
  params: Record<string, string>,
): Promise<Response> {
  const url = emulator.authorizeEndpoint;
  url.search = new URLSearchParams(params).toString();
  return fetch(url, { redirect: "manual" });
}

function postToken(
  emulator: AccountsEmulator,
  params: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(emulator.tokenEndpoint, {
    method: "POST",
    headers,
    body: new URLSearchParams(params),
  });
}

function postDecision(
  emulator: AccountsEmulator,
  requestId: string,
  decision: string,
): Promise<Response> {
  return fetch(new URL("/authorize/decision", emulator.url), {
    method: "POST",
    body: new URLSearchParams({ request_id: requestId, decision }),
    redirect: "manual",
  });
}

/** Asserts a redirect without a body and returns its `Location`. */
async function redirectLocation(response: Response, status: number): Promise<URL> {
  await response.body?.cancel();
  assert.equal(response.status, status);
  const location = response.headers.get("location");
  assert.ok(location !== null, "the response has no Location header");
  return new URL(location);
}

/** The query of a redirect, as a plain object, so that unexpected parameters fail the test. */
function queryOf(url: URL): Record<string, string> {
  return Object.fromEntries(url.searchParams);
}

/** Asserts an HTML error page: given status, no redirect, and `text` in the page. */
async function assertErrorPage(response: Response, status: number, text: string): Promise<void> {
  const body = await response.text();
  assert.equal(response.status, status);
  assert.equal(response.headers.get("location"), null);
  assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  assert.ok(body.includes(text), `the page does not contain ${JSON.stringify(text)}`);
}

async function assertTokenError(
  response: Response,
  error: string,
  description: string,
): Promise<void> {
  const body = await response.json();
  assert.equal(response.status, 400);
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.deepEqual(body, { error, error_description: description });
}

async function tokenBody(response: Response): Promise<Record<string, unknown>> {
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.equal(response.headers.get("cache-control"), "no-store");
  return body;
}

/** Gets a code from an auto-approving emulator. */
async function getCode(
  emulator: AccountsEmulator,
  params: Record<string, string> = {},
): Promise<string> {
  const response = await authorize(emulator, {
    client_id: CLIENT_ID,
    response_type: "code",
    redirect_uri: REDIRECT_URI,
    ...params,
  });
  const code = (await redirectLocation(response, 302)).searchParams.get("code");
  assert.ok(code !== null, "the redirect has no code");
  return code;
}

function getPkceCode(
  emulator: AccountsEmulator,
  params: Record<string, string> = {},
): Promise<string> {
  return getCode(emulator, { code_challenge_method: "S256", code_challenge: CHALLENGE, ...params });
}

function exchangePkceCode(
  emulator: AccountsEmulator,
  code: string,
  params: Record<string, string> = {},
): Promise<Response> {
  return postToken(emulator, {
    grant_type: "authorization_code",
    code,
    redirect_uri: REDIRECT_URI,
    client_id: CLIENT_ID,
    code_verifier: VERIFIER,
    ...params,
  });
}

function exchangeSecretCode(
  emulator: AccountsEmulator,
  code: string,
  secret: string = CLIENT_SECRET,
): Promise<Response> {
  return postToken(
    emulator,
    { grant_type: "authorization_code", code, redirect_uri: REDIRECT_URI },
    { authorization: basic(CLIENT_ID, secret) },
  );
}

/** Reads the pending request id from a consent page. */
async function consentRequestId(response: Response): Promise<string> {
  const page = await response.text();
  assert.equal(response.status, 200);
  const match = /name="request_id" value="([^"]+)"/.exec(page);
  assert.ok(match?.[1] !== undefined, "the consent page has no request_id field");
  return match[1];
}

function assertOpaqueToken(value: unknown): void {
  assert.equal(typeof value, "string");
  assert.match(value as string, /^[A-Za-z0-9_-]{43,}$/);
}

Deno.test("startAccountsEmulator() listens on 127.0.0.1 and reports its endpoints", async () => {
  await using emulator = await startAccountsEmulator();
  const { url } = emulator;
  assert.equal(url.hostname, "127.0.0.1");
  assert.notEqual(url.port, "");
  assert.equal(url.href, `http://127.0.0.1:${url.port}/`);
  assert.equal(emulator.authorizeEndpoint.href, `http://127.0.0.1:${url.port}/authorize`);
  assert.equal(emulator.tokenEndpoint.href, `http://127.0.0.1:${url.port}/api/token`);
  assert.deepEqual(emulator.clients, [DEFAULT_EMULATOR_CLIENT]);
  assert.equal(emulator.tokenRequests, 0);
});

Deno.test({
  name: "startAccountsEmulator() listens on ::1",
  ignore: Deno.permissions.querySync({ name: "net", host: "[::1]" }).state !== "granted",
  async fn() {
    await using emulator = await startAccountsEmulator({ hostname: "::1", autoApprove: true });
    assert.match(emulator.url.href, /^http:\/\/\[::1\]:[0-9]+\/$/);
    const code = await getPkceCode(emulator);
    assert.equal((await exchangePkceCode(emulator, code)).status, 200);
  },
});

Deno.test("startAccountsEmulator() rejects invalid options", async (t) => {
  await t.step("a hostname that is not loopback", async () => {
    await assert.rejects(
      // @ts-expect-error: testing a value the types forbid
      startAccountsEmulator({ hostname: "0.0.0.0" }),
      new TypeError(
        'Cannot start the accounts emulator: hostname "0.0.0.0" is not a loopback address; use "127.0.0.1" or "::1"',
      ),
    );
  });
  await t.step("a port out of range", async () => {
    await assert.rejects(
      startAccountsEmulator({ port: 70000 }),
      new RangeError(
        "Cannot start the accounts emulator: port 70000 is not an integer from 0 to 65535",
      ),
    );
  });
  await t.step("a client registered twice", async () => {
    await assert.rejects(
      startAccountsEmulator({ clients: [OTHER_CLIENT, OTHER_CLIENT] }),
      new TypeError(
        'Cannot start the accounts emulator: client id "other-app" is registered twice',
      ),
    );
  });
  await t.step("an aborted signal", async () => {
    const reason = new Error("stop");
    await assert.rejects(
      startAccountsEmulator({ signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
  });
});

Deno.test("startAccountsEmulator() reports a port in use", async () => {
  await using first = await startAccountsEmulator();
  const port = Number(first.url.port);
  await assert.rejects(
    startAccountsEmulator({ port }),
    (error) =>
      error instanceof Deno.errors.AddrInUse &&
      error.message ===
        `Cannot start the accounts emulator: port ${port} on 127.0.0.1 is already in use`,
  );
});

Deno.test("startAccountsEmulator() shuts down on close() and on abort", async (t) => {
  await t.step("close() is idempotent", async () => {
    const emulator = await startAccountsEmulator();
    const closing = emulator.close();
    assert.equal(emulator.close(), closing);
    await closing;
    await assert.rejects(fetch(emulator.tokenEndpoint, { method: "POST" }), TypeError);
  });
  await t.step("aborting the signal closes the server", async () => {
    const controller = new AbortController();
    const emulator = await startAccountsEmulator({ signal: controller.signal });
    controller.abort();
    await emulator.close();
    await assert.rejects(fetch(emulator.tokenEndpoint, { method: "POST" }), TypeError);
  });
});

Deno.test("startAccountsEmulator() shows an error page for an unknown client", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  await t.step("unknown client_id", async () => {
    const response = await authorize(emulator, {
      client_id: "nobody",
      response_type: "code",
      redirect_uri: REDIRECT_URI,
      state: "s",
    });
    await assertErrorPage(response, 400, "INVALID_CLIENT: Invalid client");
  });
  await t.step("missing client_id", async () => {
    const response = await authorize(emulator, {
      response_type: "code",
      redirect_uri: REDIRECT_URI,
    });
    await assertErrorPage(response, 400, "INVALID_CLIENT: Invalid client");
  });
});

Deno.test("startAccountsEmulator() rejects an unregistered redirect URI", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  for (
    const redirectUri of [
      "http://127.0.0.1:8888/other",
      "http://localhost:8888/callback",
      "https://127.0.0.1:8888/callback",
      "http://127.0.0.1:8888/callback/",
    ]
  ) {
    await t.step(redirectUri, async () => {
      const response = await authorize(emulator, {
        client_id: CLIENT_ID,
        response_type: "code",
        redirect_uri: redirectUri,
        state: "s",
      });
      await assertErrorPage(response, 400, "INVALID_CLIENT: Invalid redirect URI");
    });
  }
  await t.step("missing redirect_uri", async () => {
    const response = await authorize(emulator, { client_id: CLIENT_ID, response_type: "code" });
    await assertErrorPage(response, 400, "INVALID_CLIENT: Invalid redirect URI");
  });
});

Deno.test("startAccountsEmulator() accepts any port on a loopback redirect URI registered without one", async (t) => {
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    clients: [{
      clientId: "app",
      clientSecret: "secret",
      redirectUris: [
        "http://127.0.0.1/callback",
        "http://[::1]/callback",
        "http://localhost/callback",
        "http://127.0.0.1:8888/fixed",
      ],
    }],
  });
  const request = (redirectUri: string) =>
    authorize(emulator, { client_id: "app", response_type: "code", redirect_uri: redirectUri });

  for (const redirectUri of ["http://127.0.0.1:54321/callback", "http://[::1]:1234/callback"]) {
    await t.step(`accepts ${redirectUri}`, async () => {
      const location = await redirectLocation(await request(redirectUri), 302);
      assert.equal(`${location.origin}${location.pathname}`, redirectUri);
      assert.ok(location.searchParams.has("code"));
    });
  }
  for (
    const redirectUri of [
      "http://127.0.0.1:9999/fixed",
      "http://127.0.0.1:54321/other",
      "http://localhost:54321/callback",
      "http://127.0.0.1:0x50/callback",
    ]
  ) {
    await t.step(`rejects ${redirectUri}`, async () => {
      await assertErrorPage(
        await request(redirectUri),
        400,
        "INVALID_CLIENT: Invalid redirect URI",
      );
    });
  }
});

Deno.test("startAccountsEmulator() shows a consent page with Approve and Deny buttons", async () => {
  await using emulator = await startAccountsEmulator();
  const response = await authorize(emulator, {
    client_id: CLIENT_ID,
    response_type: "code",
    redirect_uri: REDIRECT_URI,
    scope: "user-read-private playlist-read-private",
    state: "s",
  });
  const page = await response.text();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = response.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /form-action 'self' http: https:/);
  assert.ok(page.includes(CLIENT_ID));
  assert.ok(page.includes("<code>playlist-read-private</code>"));
  assert.ok(page.includes("<code>user-read-private</code>"));
  assert.ok(page.includes('<form method="post" action="/authorize/decision">'));
  assert.ok(page.includes('<button name="decision" value="approve" id="approve">Approve</button>'));
  assert.ok(page.includes('<button name="decision" value="deny" id="deny">Deny</button>'));
  assert.match(page, /<input type="hidden" name="request_id" value="[A-Za-z0-9_-]{43}">/);
});

Deno.test("startAccountsEmulator() escapes what the consent page reflects", async () => {
  const clientId = `<script>alert("id")</script>`;
  const redirectUri = `http://127.0.0.1:8888/callback?next="><script>alert('uri')</script>`;
  await using emulator = await startAccountsEmulator({
    clients: [{ clientId, clientSecret: "secret", redirectUris: [redirectUri] }],
  });
  const response = await authorize(emulator, {
    client_id: clientId,
    response_type: "code",
    redirect_uri: redirectUri,
  });
  const page = await response.text();
  assert.equal(response.status, 200);
  assert.ok(!page.includes("<script"), "the page contains an unescaped <script>");
  assert.ok(page.includes("&#60;script&#62;alert(&#34;id&#34;)&#60;/script&#62;"));
  assert.ok(page.includes("next=&#34;&#62;&#60;script&#62;alert(&#39;uri&#39;)"));
});

Deno.test("startAccountsEmulator() redirects with a code when the user approves", async (t) => {
  await using emulator = await startAccountsEmulator();
  const requestId = await consentRequestId(
    await authorize(emulator, {
      client_id: CLIENT_ID,
      response_type: "code",
      redirect_uri: REDIRECT_URI,
      scope: "user-read-email",
      state: "xyz",
    }),
  );

  let code = "";
  await t.step("approve redirects with a code and the state", async () => {
    const location = await redirectLocation(
      await postDecision(emulator, requestId, "approve"),
      303,
    );
    assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
    assert.deepEqual(Object.keys(queryOf(location)), ["code", "state"]);
    assert.equal(location.searchParams.get("state"), "xyz");
    code = location.searchParams.get("code") ?? "";
    assertOpaqueToken(code);
  });
  await t.step("the code carries the approved scopes", async () => {
    const body = await tokenBody(await exchangeSecretCode(emulator, code));
    assert.equal(body.scope, "user-read-email");
  });
  await t.step("the consent request cannot be answered twice", async () => {
    await assertErrorPage(
      await postDecision(emulator, requestId, "approve"),
      400,
      "This login request is unknown, already answered or expired: start the login again",
    );
  });
});

Deno.test("startAccountsEmulator() redirects with access_denied when the user denies", async () => {
  await using emulator = await startAccountsEmulator();
  const requestId = await consentRequestId(
    await authorize(emulator, {
      client_id: CLIENT_ID,
      response_type: "code",
      redirect_uri: REDIRECT_URI,
      state: "xyz",
    }),
  );
  const location = await redirectLocation(await postDecision(emulator, requestId, "deny"), 303);
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
  assert.deepEqual(queryOf(location), { error: "access_denied", state: "xyz" });
});

Deno.test("startAccountsEmulator() rejects an unknown or expired consent request", async (t) => {
  let time = 0;
  await using emulator = await startAccountsEmulator({ codeLifetime: 1_000, now: () => time });
  await t.step("unknown request id", async () => {
    await assertErrorPage(
      await postDecision(emulator, "made-up", "approve"),
      400,
      "This login request is unknown, already answered or expired: start the login again",
    );
  });
  await t.step("expired request id", async () => {
    const requestId = await consentRequestId(
      await authorize(emulator, {
        client_id: CLIENT_ID,
        response_type: "code",
        redirect_uri: REDIRECT_URI,
      }),
    );
    time += 1_000;
    await assertErrorPage(
      await postDecision(emulator, requestId, "approve"),
      400,
      "This login request is unknown, already answered or expired: start the login again",
    );
  });
  await t.step("unknown decision", async () => {
    await assertErrorPage(
      await postDecision(emulator, "made-up", "maybe"),
      400,
      "Invalid decision: press Approve or Deny on the consent page",
    );
  });
});

Deno.test("startAccountsEmulator() redirects with a code at once when autoApprove is set", async (t) => {
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    clients: [{
      clientId: "app",
      clientSecret: "secret",
      redirectUris: ["http://127.0.0.1/callback?app=1"],
    }],
  });
  await t.step("with state, keeping the redirect URI's own query", async () => {
    const response = await authorize(emulator, {
      client_id: "app",
      response_type: "code",
      redirect_uri: "http://127.0.0.1:4000/callback?app=1",
      state: "abc",
    });
    const location = await redirectLocation(response, 302);
    assert.equal(`${location.origin}${location.pathname}`, "http://127.0.0.1:4000/callback");
    assert.deepEqual(Object.keys(queryOf(location)), ["app", "code", "state"]);
    assert.equal(location.searchParams.get("app"), "1");
    assert.equal(location.searchParams.get("state"), "abc");
  });
  await t.step("without state", async () => {
    const response = await authorize(emulator, {
      client_id: "app",
      response_type: "code",
      redirect_uri: "http://127.0.0.1:4000/callback?app=1",
    });
    const location = await redirectLocation(response, 302);
    assert.deepEqual(Object.keys(queryOf(location)), ["app", "code"]);
  });
});

Deno.test("startAccountsEmulator() redirects authorization errors back with the state", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const request = async (params: Record<string, string>) =>
    queryOf(
      await redirectLocation(
        await authorize(emulator, {
          client_id: CLIENT_ID,
          response_type: "code",
          redirect_uri: REDIRECT_URI,
          state: "st",
          ...params,
        }),
        302,
      ),
    );

  await t.step("unsupported_response_type", async () => {
    assert.deepEqual(await request({ response_type: "token" }), {
      error: "unsupported_response_type",
      state: "st",
    });
  });
  await t.step("invalid_scope", async () => {
    assert.deepEqual(await request({ scope: "user-read-private user-read-everything" }), {
      error: "invalid_scope",
      state: "st",
    });
  });
  await t.step("partner-only scopes are known", async () => {
    const query = await request({ scope: "user-soa-link soa-manage-partner" });
    assert.deepEqual(Object.keys(query), ["code", "state"]);
  });
  await t.step("code_challenge_method other than S256", async () => {
    assert.deepEqual(await request({ code_challenge_method: "plain", code_challenge: VERIFIER }), {
      error: "invalid_request",
      error_description: "code_challenge_method must be S256",
      state: "st",
    });
  });
  await t.step("code_challenge too short", async () => {
    assert.deepEqual(await request({ code_challenge_method: "S256", code_challenge: "abc" }), {
      error: "invalid_request",
      error_description: "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]",
      state: "st",
    });
  });
  await t.step("code_challenge_method without code_challenge", async () => {
    assert.deepEqual(await request({ code_challenge_method: "S256" }), {
      error: "invalid_request",
      error_description: "code_challenge is missing",
      state: "st",
    });
  });
  await t.step("no state is echoed when none was sent", async () => {
    const response = await authorize(emulator, {
      client_id: CLIENT_ID,
      response_type: "token",
      redirect_uri: REDIRECT_URI,
    });
    assert.deepEqual(queryOf(await redirectLocation(response, 302)), {
      error: "unsupported_response_type",
    });
  });
});

Deno.test("startAccountsEmulator() exchanges a PKCE code for tokens", async () => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator, {
    scope: "user-read-private playlist-read-private user-read-private",
  });
  const response = await exchangePkceCode(emulator, code);
  const body = await tokenBody(response);
  assert.deepEqual(Object.keys(body).sort(), [
    "access_token",
    "expires_in",
    "refresh_token",
    "scope",
    "token_type",
  ]);
  assertOpaqueToken(body.access_token);
  assertOpaqueToken(body.refresh_token);
  assert.equal(body.token_type, "Bearer");
  assert.equal(body.expires_in, 3600);
  assert.equal(body.scope, "playlist-read-private user-read-private");
});

Deno.test("startAccountsEmulator() reports accessTokenLifetime as expires_in", async () => {
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    accessTokenLifetime: 60,
  });
  const body = await tokenBody(await exchangePkceCode(emulator, await getPkceCode(emulator)));
  assert.equal(body.expires_in, 60);
  assert.equal(body.scope, "");
});

Deno.test("startAccountsEmulator() rejects a wrong code_verifier and spends the code", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator);
  await t.step("wrong verifier", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, code, { code_verifier: "x".repeat(43) }),
      "invalid_grant",
      "code_verifier was incorrect",
    );
  });
  await t.step("the right verifier is too late", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, code),
      "invalid_grant",
      "Invalid authorization code",
    );
  });
});

Deno.test("startAccountsEmulator() requires a code_verifier for a PKCE code", async () => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator);
  await assertTokenError(
    await postToken(emulator, {
      grant_type: "authorization_code",
      code,
      redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID,
    }),
    "invalid_request",
    "code_verifier required",
  );
});

Deno.test("startAccountsEmulator() rejects a reused or unknown code", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator);
  assert.equal((await tokenBody(await exchangePkceCode(emulator, code))).token_type, "Bearer");
  await t.step("reused", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, code),
      "invalid_grant",
      "Invalid authorization code",
    );
  });
  await t.step("unknown", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, "made-up"),
      "invalid_grant",
      "Invalid authorization code",
    );
  });
  await t.step("missing", async () => {
    await assertTokenError(
      await postToken(emulator, {
        grant_type: "authorization_code",
        redirect_uri: REDIRECT_URI,
        client_id: CLIENT_ID,
        code_verifier: VERIFIER,
      }),
      "invalid_grant",
      "Invalid authorization code",
    );
  });
});

Deno.test("startAccountsEmulator() rejects an expired code", async () => {
  let time = 1_000_000;
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    codeLifetime: 1_000,
    now: () => time,
  });
  const early = await getPkceCode(emulator);
  const late = await getPkceCode(emulator);
  time += 999;
  assert.equal((await tokenBody(await exchangePkceCode(emulator, early))).token_type, "Bearer");
  time += 1;
  await assertTokenError(
    await exchangePkceCode(emulator, late),
    "invalid_grant",
    "Invalid authorization code",
  );
});

Deno.test("startAccountsEmulator() rejects a redirect_uri that differs from the authorize request", async () => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator, { redirect_uri: "http://127.0.0.1:54321/callback" });
  await assertTokenError(
    await exchangePkceCode(emulator, code, { redirect_uri: "http://127.0.0.1/callback" }),
    "invalid_grant",
    "Invalid redirect URI",
  );
});

Deno.test("startAccountsEmulator() rejects a code issued to another client", async (t) => {
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    clients: [DEFAULT_EMULATOR_CLIENT, OTHER_CLIENT],
  });
  const code = await getPkceCode(emulator);
  await t.step("the other client cannot use it", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, code, { client_id: OTHER_CLIENT.clientId }),
      "invalid_grant",
      "Invalid authorization code",
    );
  });
  await t.step("the attempt did not spend it", async () => {
    assert.equal((await tokenBody(await exchangePkceCode(emulator, code))).token_type, "Bearer");
  });
});

Deno.test("startAccountsEmulator() exchanges a code with the client secret", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  await t.step("in an Authorization: Basic header", async () => {
    const code = await getCode(emulator, { scope: "user-top-read" });
    const body = await tokenBody(await exchangeSecretCode(emulator, code));
    assertOpaqueToken(body.access_token);
    assertOpaqueToken(body.refresh_token);
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 3600);
    assert.equal(body.scope, "user-top-read");
  });
  await t.step("in the body", async () => {
    const code = await getCode(emulator);
    const response = await postToken(emulator, {
      grant_type: "authorization_code",
      code,
      redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    });
    assert.equal((await tokenBody(response)).token_type, "Bearer");
  });
  await t.step("a code without a challenge needs the secret", async () => {
    const code = await getCode(emulator);
    await assertTokenError(
      await postToken(emulator, {
        grant_type: "authorization_code",
        code,
        redirect_uri: REDIRECT_URI,
        client_id: CLIENT_ID,
      }),
      "invalid_client",
      "Invalid client",
    );
    // The client was not authenticated, so the code is still good.
    assert.equal((await tokenBody(await exchangeSecretCode(emulator, code))).token_type, "Bearer");
  });
  await t.step("a PKCE code also accepts the right secret", async () => {
    const code = await getPkceCode(emulator);
    const response = await exchangePkceCode(emulator, code, { client_secret: CLIENT_SECRET });
    assert.equal((await tokenBody(response)).token_type, "Bearer");
  });
});

Deno.test("startAccountsEmulator() rejects bad client credentials", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator);
  await t.step("wrong secret in Basic auth", async () => {
    await assertTokenError(
      await exchangeSecretCode(emulator, code, "wrong"),
      "invalid_client",
      "Invalid client secret",
    );
  });
  await t.step("wrong secret in the body of a PKCE exchange", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, code, { client_secret: "wrong" }),
      "invalid_client",
      "Invalid client secret",
    );
  });
  await t.step("unknown client", async () => {
    await assertTokenError(
      await exchangePkceCode(emulator, code, { client_id: "nobody" }),
      "invalid_client",
      "Invalid client",
    );
  });
  await t.step("no client at all", async () => {
    await assertTokenError(
      await postToken(emulator, { grant_type: "client_credentials" }),
      "invalid_client",
      "Invalid client",
    );
  });
  for (const header of ["Bearer abc", "Basic !!!", `Basic ${btoa("no-colon")}`]) {
    await t.step(`malformed Authorization: ${header}`, async () => {
      await assertTokenError(
        await postToken(emulator, { grant_type: "client_credentials" }, { authorization: header }),
        "invalid_client",
        "Invalid client",
      );
    });
  }
  await t.step("Basic auth and a different client_id in the body", async () => {
    await assertTokenError(
      await postToken(
        emulator,
        { grant_type: "client_credentials", client_id: "other-app" },
        { authorization: basic(CLIENT_ID, CLIENT_SECRET) },
      ),
      "invalid_client",
      "Invalid client",
    );
  });
  await t.step("none of these attempts spent the code", async () => {
    assert.equal((await tokenBody(await exchangePkceCode(emulator, code))).token_type, "Bearer");
  });
});

Deno.test("startAccountsEmulator() rotates PKCE refresh tokens", async (t) => {
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    clients: [DEFAULT_EMULATOR_CLIENT, OTHER_CLIENT],
  });
  const code = await getPkceCode(emulator, { scope: "streaming user-read-email" });
  const first = await tokenBody(await exchangePkceCode(emulator, code));
  const refresh = (refreshToken: unknown) =>
    postToken(emulator, {
      grant_type: "refresh_token",
      refresh_token: String(refreshToken),
      client_id: CLIENT_ID,
    });

  let second: Record<string, unknown> = {};
  await t.step("a refresh returns a new refresh token", async () => {
    second = await tokenBody(await refresh(first.refresh_token));
    assert.deepEqual(Object.keys(second).sort(), [
      "access_token",
      "expires_in",
      "refresh_token",
      "scope",
      "token_type",
    ]);
    assertOpaqueToken(second.refresh_token);
    assert.notEqual(second.refresh_token, first.refresh_token);
    assert.notEqual(second.access_token, first.access_token);
    assert.equal(second.token_type, "Bearer");
    assert.equal(second.expires_in, 3600);
    assert.equal(second.scope, "streaming user-read-email");
  });
  await t.step("the old refresh token is now invalid", async () => {
    await assertTokenError(
      await refresh(first.refresh_token),
      "invalid_grant",
      "Invalid refresh token",
    );
  });
  await t.step("the new refresh token works", async () => {
    const third = await tokenBody(await refresh(second.refresh_token));
    assert.equal(third.scope, "streaming user-read-email");
  });
  await t.step("another client cannot use it", async () => {
    await assertTokenError(
      await postToken(emulator, {
        grant_type: "refresh_token",
        refresh_token: String(second.refresh_token),
        client_id: OTHER_CLIENT.clientId,
      }),
      "invalid_grant",
      "Invalid refresh token",
    );
  });
  await t.step("an unknown refresh token", async () => {
    await assertTokenError(await refresh("made-up"), "invalid_grant", "Invalid refresh token");
  });
});

Deno.test("startAccountsEmulator() keeps secret-flow refresh tokens", async (t) => {
  await using emulator = await startAccountsEmulator({
    autoApprove: true,
    clients: [DEFAULT_EMULATOR_CLIENT, OTHER_CLIENT],
  });
  const code = await getCode(emulator, { scope: "user-library-read" });
  const first = await tokenBody(await exchangeSecretCode(emulator, code));
  const refresh = (id = CLIENT_ID, secret = CLIENT_SECRET) =>
    postToken(
      emulator,
      { grant_type: "refresh_token", refresh_token: String(first.refresh_token) },
      { authorization: basic(id, secret) },
    );

  await t.step("a refresh returns no refresh token", async () => {
    const body = await tokenBody(await refresh());
    assert.deepEqual(Object.keys(body).sort(), [
      "access_token",
      "expires_in",
      "scope",
      "token_type",
    ]);
    assertOpaqueToken(body.access_token);
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 3600);
    assert.equal(body.scope, "user-library-read");
  });
  await t.step("the refresh token still works", async () => {
    assert.equal((await tokenBody(await refresh())).scope, "user-library-read");
  });
  await t.step("client_id alone is not enough", async () => {
    await assertTokenError(
      await postToken(emulator, {
        grant_type: "refresh_token",
        refresh_token: String(first.refresh_token),
        client_id: CLIENT_ID,
      }),
      "invalid_client",
      "Invalid client",
    );
  });
  await t.step("another client cannot use it", async () => {
    await assertTokenError(
      await refresh(OTHER_CLIENT.clientId, OTHER_CLIENT.clientSecret),
      "invalid_grant",
      "Invalid refresh token",
    );
  });
});

Deno.test("AccountsEmulator.revokeRefreshToken() makes later refreshes fail", async (t) => {
  await using emulator = await startAccountsEmulator({ autoApprove: true });
  const code = await getPkceCode(emulator);
  const { refresh_token: refreshToken } = await tokenBody(await exchangePkceCode(emulator, code));
  await t.step("a revoked refresh token gets invalid_grant", async () => {
    emulator.revokeRefreshToken(String(refreshToken));
    await assertTokenError(
      await postToken(emulator, {
        grant_type: "refresh_token",
        refresh_token: String(refreshToken),
        client_id: CLIENT_ID,
      }),
      "invalid_grant",
      "Refresh token revoked",
    );
  });
  await t.step("revoking a token the emulator never issued throws", () => {
    assert.throws(
      () => emulator.revokeRefreshToken("made-up"),
      new TypeError("Cannot revoke the refresh token: this emulator did not issue it"),
    );
  });
});

Deno.test("startAccountsEmulator() issues client credentials tokens", async (t) => {
  await using emulator = await startAccountsEmulator();
  await t.step("with Basic auth", async () => {
    const body = await tokenBody(
      await postToken(
        emulator,
        { grant_type: "client_credentials" },
        { authorization: basic(CLIENT_ID, CLIENT_SECRET) },
      ),
    );
    assert.deepEqual(Object.keys(body).sort(), ["access_token", "expires_in", "token_type"]);
    assertOpaqueToken(body.access_token);
    assert.equal(body.token_type, "bearer");
    assert.equal(body.expires_in, 3600);
  });
  await t.step("the secret is required", async () => {
    await assertTokenError(
      await postToken(emulator, { grant_type: "client_credentials", client_id: CLIENT_ID }),
      "invalid_client",
      "Invalid client",
    );
  });
});

Deno.test("startAccountsEmulator() checks grant_type", async (t) => {
  await using emulator = await startAccountsEmulator();
  const auth = { authorization: basic(CLIENT_ID, CLIENT_SECRET) };
  await t.step("missing", async () => {
    await assertTokenError(
      await postToken(emulator, {}, auth),
      "unsupported_grant_type",
      "grant_type parameter is missing",
    );
  });
  await t.step("unknown", async () => {
    await assertTokenError(
      await postToken(emulator, { grant_type: "password" }, auth),
      "unsupported_grant_type",
      "grant_type parameter is invalid",
    );
  });
});

Deno.test("startAccountsEmulator() accepts only form bodies at the token endpoint", async () => {
  await using emulator = await startAccountsEmulator();
  const response = await fetch(emulator.tokenEndpoint, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: basic(CLIENT_ID, CLIENT_SECRET) },
    body: JSON.stringify({ grant_type: "client_credentials" }),
  });
  await assertTokenError(
    response,
    "invalid_request",
    "Content-Type must be application/x-www-form-urlencoded",
  );
});

Deno.test("AccountsEmulator.tokenRequests counts every token request", async () => {
  await using emulator = await startAccountsEmulator();
  assert.equal(emulator.tokenRequests, 0);
  await (await postToken(emulator, { grant_type: "password" })).body?.cancel();
  await (await fetch(emulator.tokenEndpoint, { method: "POST", body: "{}" })).body?.cancel();
  await (await postToken(
    emulator,
    { grant_type: "client_credentials" },
    { authorization: basic(CLIENT_ID, CLIENT_SECRET) },
  )).body?.cancel();
  assert.equal(emulator.tokenRequests, 3);
  // Other endpoints and other methods are not token requests.
  await (await fetch(emulator.tokenEndpoint)).body?.cancel();
  await (await fetch(new URL("/authorize", emulator.url))).body?.cancel();
  assert.equal(emulator.tokenRequests, 3);
});

Deno.test("startAccountsEmulator() answers unknown paths with 404 and wrong methods with 405", async (t) => {
  await using emulator = await startAccountsEmulator();
  await t.step("unknown path", async () => {
    const response = await fetch(new URL("/api/nothing", emulator.url), {
      method: "POST",
      body: "x",
    });
    assert.equal(response.status, 404);
    assert.equal(await response.text(), "Not found");
  });
  for (
    const [path, method, allow] of [
      ["/api/token", "GET", "POST"],
      ["/authorize", "POST", "GET"],
      ["/authorize/decision", "GET", "POST"],
    ] as const
  ) {
    await t.step(`${method} ${path}`, async () => {
      const response = await fetch(new URL(path, emulator.url), { method });
      assert.equal(response.status, 405);
      assert.equal(response.headers.get("allow"), allow);
      assert.equal(await response.text(), "Method not allowed");
    });
  }
});
