/**
 * A local emulator of the Spotify Accounts service, for tests and offline demos.
 *
 * It serves the two endpoints a login needs, `GET /authorize` and
 * `POST /api/token`, on a loopback port, and answers the way Spotify does
 * wherever a client would notice: the same error codes and descriptions, the
 * same status codes (400 even for `invalid_client`), error pages instead of
 * redirects for an unknown client or redirect URI, PKCE checks, single-use
 * codes, rotating PKCE refresh tokens and lowercase `bearer` for client
 * credentials.
 *
 * The emulator shares no code with the rest of `@spotikit/auth`: it checks
 * PKCE, redirect URIs and client credentials on its own, so a bug in the
 * client cannot hide behind the same bug in the emulator.
 *
 * @example Log in with PKCE against the emulator
 * ```ts
 * import { startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * await using emulator = await startAccountsEmulator({ autoApprove: true });
 * const redirectUri = "http://127.0.0.1:8888/callback";
 *
 * const authorizeUrl = emulator.authorizeEndpoint;
 * authorizeUrl.search = new URLSearchParams({
 *   client_id: "spotikit-emulator",
 *   response_type: "code",
 *   redirect_uri: redirectUri,
 *   scope: "user-read-private",
 *   code_challenge_method: "S256",
 *   code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
 * }).toString();
 * const redirect = await fetch(authorizeUrl, { redirect: "manual" });
 * const code = new URL(redirect.headers.get("location")!).searchParams.get("code")!;
 *
 * const response = await fetch(emulator.tokenEndpoint, {
 *   method: "POST",
 *   body: new URLSearchParams({
 *     grant_type: "authorization_code",
 *     code,
 *     redirect_uri: redirectUri,
 *     client_id: "spotikit-emulator",
 *     code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
 *   }),
 * });
 * const token = await response.json();
 * console.log(token.access_token, token.scope); // "…", "user-read-private"
 * ```
 *
 * @module
 */

/**
 * An app registered with the emulator, like an app in Spotify's developer
 * dashboard.
 *
 * @example A client for a script that listens on any loopback port
 * ```ts
 * import { type EmulatorClient, startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * const client: EmulatorClient = {
 *   clientId: "my-app",
 *   clientSecret: "my-secret",
 *   redirectUris: ["http://127.0.0.1/callback"],
 * };
 * await using emulator = await startAccountsEmulator({ clients: [client] });
 * console.log(emulator.clients[0]?.clientId); // "my-app"
 * ```
 */
export interface EmulatorClient {
  /** The client id, sent as `client_id`. */
  clientId: string;
  /**
   * The client secret. Every Spotify app has one; the PKCE flow just does not
   * send it.
   */
  clientSecret: string;
  /**
   * The registered redirect URIs, compared as exact strings. A loopback URI
   * registered without a port (`http://127.0.0.1/callback`,
   * `http://[::1]/callback`) accepts any port (RFC 8252 §7.3).
   */
  redirectUris: string[];
}

/**
 * Options of {@linkcode startAccountsEmulator}.
 *
 * @example Short-lived codes and a fake clock
 * ```ts
 * import { startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * let time = 0;
 * await using emulator = await startAccountsEmulator({
 *   autoApprove: true,
 *   codeLifetime: 1_000,
 *   now: () => time,
 * });
 * time += 1_000; // codes issued before this point have expired
 * console.log(emulator.tokenRequests); // 0
 * ```
 */
export interface AccountsEmulatorOptions {
  /**
   * The registered apps.
   *
   * @default {[DEFAULT_EMULATOR_CLIENT]}
   */
  clients?: EmulatorClient[];
  /**
   * The loopback address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: "127.0.0.1" | "::1";
  /**
   * The port to listen on; `0` picks a free one.
   *
   * @default {0}
   */
  port?: number;
  /**
   * When `false`, `GET /authorize` shows a consent page with Approve and Deny
   * buttons; when `true`, it redirects with a code at once, as Spotify does
   * for a user who approved the app before.
   *
   * @default {false}
   */
  autoApprove?: boolean;
  /**
   * How long an authorization code (and a consent page) stays valid, in
   * milliseconds.
   *
   * @default {600_000}
   */
  codeLifetime?: number;
  /**
   * The `expires_in` of issued access tokens, in seconds.
   *
   * @default {3600}
   */
  accessTokenLifetime?: number;
  /**
   * The clock, in milliseconds since the epoch; replace it to test expiry.
   *
   * @default {Date.now}
   */
  now?: () => number;
  /**
   * Aborting it shuts the emulator down.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * A running emulator, returned by {@linkcode startAccountsEmulator}.
 *
 * @example Point a client at the emulator
 * ```ts
 * import { startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * await using emulator = await startAccountsEmulator();
 * console.log(emulator.authorizeEndpoint.href); // http://127.0.0.1:40123/authorize
 * console.log(emulator.tokenEndpoint.href); // http://127.0.0.1:40123/api/token
 * ```
 */
export interface AccountsEmulator extends AsyncDisposable {
  /** The origin, such as `http://127.0.0.1:40123/` or `http://[::1]:40123/`. */
  readonly url: URL;
  /** `<origin>/authorize`, where the user is sent to log in. */
  readonly authorizeEndpoint: URL;
  /** `<origin>/api/token`, where codes and refresh tokens are exchanged. */
  readonly tokenEndpoint: URL;
  /** The registered apps. */
  readonly clients: readonly EmulatorClient[];
  /** Number of `POST /api/token` requests received so far (any outcome). */
  readonly tokenRequests: number;
  /**
   * Makes a refresh token invalid, as a user revoking the app's access
   * would: later refreshes with it get `invalid_grant` "Refresh token revoked".
   *
   * @param refreshToken A refresh token this emulator issued.
   * @throws {TypeError} If this emulator never issued `refreshToken`.
   */
  revokeRefreshToken(refreshToken: string): void;
  /**
   * Queues faults for the token endpoint: each of the next `POST /api/token`
   * requests plays one of them (in order) instead of its normal answer, and
   * leaves every code and token as it was. For testing how a client copes
   * with rate limits, outages and broken answers.
   *
   * @param faults The faults, one per coming request.
   */
  injectTokenFaults(...faults: TokenFault[]): void;
  /**
   * Stops the server. Safe to call more than once.
   *
   * @returns A promise that resolves once the server has finished.
   */
  close(): Promise<void>;
}

/**
 * A fault the emulator's token endpoint plays instead of its normal answer;
 * see {@linkcode AccountsEmulator.injectTokenFaults}.
 *
 * - `{ status, body?, headers? }`: this response, such as a 429 with
 *   `Retry-After`, a 503, or a 200 whose body is not a valid token response.
 * - `{ reset: true }`: the status line and headers of a 200, then the
 *   connection breaks before the body.
 * - `{ hang: true }`: no answer at all, until the emulator closes.
 *
 * @example Rate-limit the next request, then answer normally
 * ```ts
 * import { startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * await using emulator = await startAccountsEmulator();
 * emulator.injectTokenFaults({ status: 429, headers: { "retry-after": "1" } });
 * ```
 */
export type TokenFault =
  | { status: number; body?: string | undefined; headers?: Record<string, string> | undefined }
  | { reset: true }
  | { hang: true };

/**
 * The app registered when {@linkcode AccountsEmulatorOptions.clients} is not
 * given. It accepts `http://127.0.0.1` and `http://[::1]` on any port with the
 * path `/callback`, and `http://127.0.0.1:8888/callback`.
 *
 * @example Use the default client's credentials
 * ```ts
 * import { DEFAULT_EMULATOR_CLIENT, startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * await using emulator = await startAccountsEmulator();
 * const response = await fetch(emulator.tokenEndpoint, {
 *   method: "POST",
 *   headers: {
 *     authorization: "Basic " +
 *       btoa(`${DEFAULT_EMULATOR_CLIENT.clientId}:${DEFAULT_EMULATOR_CLIENT.clientSecret}`),
 *   },
 *   body: new URLSearchParams({ grant_type: "client_credentials" }),
 * });
 * console.log(await response.json()); // { access_token: "…", token_type: "bearer", expires_in: 3600 }
 * ```
 */
export const DEFAULT_EMULATOR_CLIENT: EmulatorClient = Object.freeze({
  clientId: "spotikit-emulator",
  clientSecret: "spotikit-emulator-secret",
  // Frozen so that one test cannot change the default for the next.
  redirectUris: Object.freeze([
    "http://127.0.0.1/callback",
    "http://[::1]/callback",
    "http://127.0.0.1:8888/callback",
  ]) as string[],
});

/**
 * Starts a local Spotify Accounts emulator on a loopback address.
 *
 * `GET /authorize` checks the client, the redirect URI, the response type,
 * the scopes and the PKCE challenge like Spotify, then shows a consent page
 * (or, with `autoApprove`, redirects with a code at once). `POST /api/token`
 * handles the `authorization_code` (with or without PKCE), `refresh_token` and
 * `client_credentials` grants.
 *
 * @param options Clients, address, lifetimes, clock and signal.
 * @returns The running emulator; close it with `await using` or
 * {@linkcode AccountsEmulator.close}.
 * @throws {TypeError} If `hostname` is not a loopback address, a client id is
 * registered twice, or a redirect URI is not a URL.
 * @throws {RangeError} If `port`, `codeLifetime` or `accessTokenLifetime` is
 * out of range.
 * @throws {Deno.errors.AddrInUse} If the port is already in use.
 *
 * @example Approve a login on the consent page
 * ```ts
 * import { startAccountsEmulator } from "@spotikit/auth/emulator";
 *
 * await using emulator = await startAccountsEmulator();
 * const authorizeUrl = emulator.authorizeEndpoint;
 * authorizeUrl.search = new URLSearchParams({
 *   client_id: "spotikit-emulator",
 *   response_type: "code",
 *   redirect_uri: "http://127.0.0.1:8888/callback",
 *   state: "xyz",
 * }).toString();
 * // Open authorizeUrl in a browser and press "Approve": the browser is sent
 * // to http://127.0.0.1:8888/callback?code=…&state=xyz
 * ```
 */
export function startAccountsEmulator(
  options: AccountsEmulatorOptions = {},
): Promise<AccountsEmulator> {
  // Promise.try turns a synchronous throw into a rejection, as callers of an
  // async function expect.
  return Promise.try(() => listen(options));
}

// ---------------------------------------------------------------------------
// Protocol facts

/** Every scope Spotify knows in 2026, partner-only ones included. */
const KNOWN_SCOPES: ReadonlySet<string> = new Set([
  "ugc-image-upload",
  "user-read-playback-state",
  "user-modify-playback-state",
  "user-read-currently-playing",
  "app-remote-control",
  "streaming",
  "playlist-read-private",
  "playlist-read-collaborative",
  "playlist-modify-private",
  "playlist-modify-public",
  "user-follow-modify",
  "user-follow-read",
  "user-read-playback-position",
  "user-top-read",
  "user-read-recently-played",
  "user-library-modify",
  "user-library-read",
  "user-read-email",
  "user-read-private",
  "user-soa-link",
  "user-soa-unlink",
  "soa-manage-entitlements",
  "soa-manage-partner",
  "soa-create-partner",
]);

/** RFC 7636 §4.2: 43 to 128 unreserved characters. */
const CODE_CHALLENGE_PATTERN = /^[A-Za-z0-9\-._~]{43,128}$/;

/** A loopback redirect URI registered without a port: `http://127.0.0.1` or `http://[::1]`, then the rest. */
const PORTLESS_LOOPBACK_PATTERN = /^(http:\/\/(?:127\.0\.0\.1|\[::1\]))([/?#].*)?$/s;

const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------
// Pure helpers

/**
 * Whether `requested` may be used as the redirect URI of `client`: exact
 * string equality, or, for a loopback URI registered without a port, the same
 * URI with any port (RFC 8252 §7.3). `localhost` never matches an IP literal.
 */
function isRegisteredRedirectUri(client: EmulatorClient, requested: string): boolean {
  return client.redirectUris.some((registered) => {
    if (registered === requested) return true;
    const match = PORTLESS_LOOPBACK_PATTERN.exec(registered);
    if (match === null) return false;
    const origin = match[1] ?? "";
    const rest = match[2] ?? "";
    if (!requested.startsWith(`${origin}:`) || !requested.endsWith(rest)) return false;
    const port = requested.slice(origin.length + 1, requested.length - rest.length);
    return /^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535;
  });
}

/** Splits a `scope` parameter and normalizes it the way granted scopes are reported: unique and sorted. */
function parseScopes(scope: string): string[] {
  return [...new Set(scope.split(" ").filter((name) => name !== ""))].sort();
}

/** The media type of a `Content-Type` header, without parameters such as `charset`. */
function mediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/** A random opaque string with 256 bits of entropy, for codes, tokens and pending request ids. */
function randomToken(): string {
  return crypto.getRandomValues(new Uint8Array(32)).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
}

/** RFC 7636 §4.2 S256: BASE64URL(SHA256(ASCII(code_verifier))). */
async function s256(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return new Uint8Array(digest).toBase64({ alphabet: "base64url", omitPadding: true });
}

/** Decodes `Authorization: Basic base64(id:secret)`, or returns `undefined` if it is malformed. */
function parseBasicAuthorization(header: string): { id: string; secret: string } | undefined {
  const match = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
  if (match === null) return undefined;
  let decoded: string;
  try {
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.fromBase64(match[1] ?? ""),
    );
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(":");
  if (colon === -1) return undefined;
  return { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

// ---------------------------------------------------------------------------
// Responses

/**
 * Lets the consent form post to this origin and follow the redirect to any
 * http(s) redirect URI (browsers apply `form-action` to redirects too), and
 * nothing else.
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; " +
  "base-uri 'none'; frame-ancestors 'none'";

const PAGE_STYLE = `
body { font-family: system-ui, sans-serif; background: #121212; color: #fff; margin: 0; }
main { max-width: 28rem; margin: 4rem auto; padding: 2rem; background: #181818; border-radius: 0.5rem; }
.badge { color: #1ed760; font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.1em; }
h1 { font-size: 1.4rem; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; }
li { margin: 0.3rem 0; }
.note { color: #b3b3b3; font-size: 0.9rem; }
form { display: flex; gap: 1rem; margin-top: 2rem; }
button { flex: 1; padding: 0.8rem; border: 0; border-radius: 2rem; font-size: 1rem; font-weight: bold; cursor: pointer; }
#approve { background: #1ed760; color: #000; }
#deny { background: transparent; color: #fff; border: 1px solid #727272; }
`;

/** An HTML page; `body` must already be escaped. */
function htmlPage(status: number, title: string, body: string): Response {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<main>
<p class="badge">Spotify Accounts emulator</p>
${body}
</main>
</body>
</html>
`;
  return new Response(html, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": CONTENT_SECURITY_POLICY,
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "cache-control": "no-store",
    },
  });
}

/** The page Spotify shows instead of redirecting, when the redirect target cannot be trusted. */
function errorPage(status: number, message: string): Response {
  return htmlPage(status, "Error - Spotify Accounts emulator", `<h1>${escapeHtml(message)}</h1>`);
}

function consentPage(
  clientId: string,
  redirectUri: string,
  scopes: readonly string[],
  requestId: string,
): Response {
  const scopeList = scopes.length === 0
    ? "<p>It asks for no scopes: only what is public in your account.</p>"
    : `<p>It asks for:</p>\n<ul>\n${
      scopes.map((scope) => `<li><code>${escapeHtml(scope)}</code></li>`).join("\n")
    }\n</ul>`;
  return htmlPage(
    200,
    `Authorize ${clientId} - Spotify Accounts emulator`,
    `<h1><code>${escapeHtml(clientId)}</code> wants to connect to your Spotify account</h1>
${scopeList}
<p class="note">You will be sent back to <code>${escapeHtml(redirectUri)}</code>.</p>
<form method="post" action="/authorize/decision">
<input type="hidden" name="request_id" value="${escapeHtml(requestId)}">
<button name="decision" value="approve" id="approve">Approve</button>
<button name="decision" value="deny" id="deny">Deny</button>
</form>`,
  );
}

/** Redirects to `redirectUri` with `params` added to its query; `undefined` values are left out. */
function redirectWith(
  status: 302 | 303,
  redirectUri: string,
  params: Record<string, string | undefined>,
): Response {
  const location = new URL(redirectUri);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) location.searchParams.set(name, value);
  }
  return new Response(null, {
    status,
    headers: {
      location: location.href,
      "referrer-policy": "no-referrer",
      "cache-control": "no-store",
    },
  });
}

function tokenJson(status: number, body: Record<string, string | number>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
      pragma: "no-cache",
    },
  });
}

/** Spotify answers every token error with 400, `invalid_client` included. */
function tokenError(error: string, description: string): Response {
  return tokenJson(400, { error, error_description: description });
}

function plainText(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(text, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** Reads a form body, or cancels the body and returns `undefined` if it is not one. */
async function readForm(request: Request): Promise<URLSearchParams | undefined> {
  if (mediaType(request.headers.get("content-type")) !== FORM_CONTENT_TYPE) {
    await request.body?.cancel();
    return undefined;
  }
  return new URLSearchParams(await request.text());
}

// ---------------------------------------------------------------------------
// State

/** An authorization request shown on a consent page and waiting for the user's decision. */
interface PendingAuthorization {
  clientId: string;
  redirectUri: string;
  state: string | undefined;
  scopes: string[];
  codeChallenge: string | undefined;
  expiresAt: number;
}

/** What an authorization code stands for. */
interface CodeGrant {
  clientId: string;
  /** Exactly as sent to `/authorize`, real port included. */
  redirectUri: string;
  scopes: string[];
  codeChallenge: string | undefined;
  expiresAt: number;
}

interface RefreshGrant {
  clientId: string;
  scopes: string[];
  /** PKCE refresh tokens are replaced on every use; secret-flow ones are kept. */
  rotates: boolean;
  /** Used tokens stay known so that they fail like revoked ones, not like made-up ones. */
  status: "active" | "rotated" | "revoked";
}

type ClientAuthentication =
  | { client: EmulatorClient; authenticated: boolean }
  | { error: Response };

// ---------------------------------------------------------------------------
// Server

/** Checks the options a caller can get wrong at run time, such as values read from the environment. */
function checkOptions(
  { hostname, port, codeLifetime, accessTokenLifetime }: {
    hostname: string;
    port: number;
    codeLifetime: number;
    accessTokenLifetime: number;
  },
): void {
  if (hostname !== "127.0.0.1" && hostname !== "::1") {
    throw new TypeError(
      `Cannot start the accounts emulator: hostname "${hostname}" is not a loopback address; use "127.0.0.1" or "::1"`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot start the accounts emulator: port ${port} is not an integer from 0 to 65535`,
    );
  }
  if (!Number.isFinite(codeLifetime) || codeLifetime <= 0) {
    throw new RangeError(
      `Cannot start the accounts emulator: codeLifetime ${codeLifetime} is not a positive number of milliseconds`,
    );
  }
  if (!Number.isInteger(accessTokenLifetime) || accessTokenLifetime <= 0) {
    throw new RangeError(
      `Cannot start the accounts emulator: accessTokenLifetime ${accessTokenLifetime} is not a positive whole number of seconds`,
    );
  }
}

/** Copies and checks the clients, so that later changes by the caller do not affect the emulator. */
function registerClients(clients: readonly EmulatorClient[]): Map<string, EmulatorClient> {
  const byId = new Map<string, EmulatorClient>();
  for (const { clientId, clientSecret, redirectUris } of clients) {
    if (byId.has(clientId)) {
      throw new TypeError(
        `Cannot start the accounts emulator: client id "${clientId}" is registered twice`,
      );
    }
    for (const uri of redirectUris) {
      if (!URL.canParse(uri)) {
        throw new TypeError(
          `Cannot start the accounts emulator: redirect URI "${uri}" of client "${clientId}" is not an absolute URL`,
        );
      }
    }
    byId.set(
      clientId,
      Object.freeze({
        clientId,
        clientSecret,
        redirectUris: Object.freeze([...redirectUris]) as string[],
      }),
    );
  }
  return byId;
}

function listen(options: AccountsEmulatorOptions): AccountsEmulator {
  options.signal?.throwIfAborted();
  const {
    clients = [DEFAULT_EMULATOR_CLIENT],
    hostname = "127.0.0.1",
    port = 0,
    autoApprove = false,
    codeLifetime = 600_000,
    accessTokenLifetime = 3600,
    now = Date.now,
    signal,
  } = options;
  checkOptions({ hostname, port, codeLifetime, accessTokenLifetime });
  const clientsById = registerClients(clients);
  const registeredClients = Object.freeze([...clientsById.values()]);

  const pending = new Map<string, PendingAuthorization>();
  const codes = new Map<string, CodeGrant>();
  const refreshTokens = new Map<string, RefreshGrant>();
  let tokenRequests = 0;

  function issueCode(request: Omit<CodeGrant, "expiresAt">): string {
    const code = randomToken();
    codes.set(code, { ...request, expiresAt: now() + codeLifetime });
    return code;
  }

  function issueTokens(
    clientId: string,
    scopes: string[],
    rotates: boolean,
  ): Response {
    const refreshToken = randomToken();
    refreshTokens.set(refreshToken, { clientId, scopes, rotates, status: "active" });
    return tokenJson(200, {
      access_token: randomToken(),
      token_type: "Bearer",
      expires_in: accessTokenLifetime,
      refresh_token: refreshToken,
      scope: scopes.join(" "),
    });
  }

  function authorize(request: Request): Response {
    const params = new URL(request.url).searchParams;
    const client = clientsById.get(params.get("client_id") ?? "");
    if (client === undefined) return errorPage(400, "INVALID_CLIENT: Invalid client");
    const redirectUri = params.get("redirect_uri");
    if (redirectUri === null || !isRegisteredRedirectUri(client, redirectUri)) {
      return errorPage(400, "INVALID_CLIENT: Invalid redirect URI");
    }

    // From here on the redirect URI is trusted, so errors go back to the app.
    const state = params.get("state") ?? undefined;
    const fail = (error: string, description?: string): Response =>
      redirectWith(302, redirectUri, { error, error_description: description, state });

    if (params.get("response_type") !== "code") return fail("unsupported_response_type");
    const scopes = parseScopes(params.get("scope") ?? "");
    if (!scopes.every((scope) => KNOWN_SCOPES.has(scope))) return fail("invalid_scope");
    const codeChallenge = params.get("code_challenge") ?? undefined;
    const method = params.get("code_challenge_method");
    if (codeChallenge === undefined && method !== null) {
      // Otherwise the login would silently fall back to the secret flow.
      return fail("invalid_request", "code_challenge is missing");
    }
    if (codeChallenge !== undefined && method !== "S256") {
      return fail("invalid_request", "code_challenge_method must be S256");
    }
    if (codeChallenge !== undefined && !CODE_CHALLENGE_PATTERN.test(codeChallenge)) {
      return fail(
        "invalid_request",
        "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]",
      );
    }

    const grant = { clientId: client.clientId, redirectUri, scopes, codeChallenge };
    if (autoApprove) return redirectWith(302, redirectUri, { code: issueCode(grant), state });
    // The random id doubles as the form's CSRF token: only the page that shows it can answer.
    const requestId = randomToken();
    pending.set(requestId, { ...grant, state, expiresAt: now() + codeLifetime });
    return consentPage(client.clientId, redirectUri, scopes, requestId);
  }

  async function decide(request: Request): Promise<Response> {
    const form = await readForm(request);
    const decision = form?.get("decision");
    if (decision !== "approve" && decision !== "deny") {
      return errorPage(400, "Invalid decision: press Approve or Deny on the consent page");
    }
    const requestId = form?.get("request_id") ?? "";
    const authorization = pending.get(requestId);
    pending.delete(requestId);
    if (authorization === undefined || now() >= authorization.expiresAt) {
      return errorPage(
        400,
        "This login request is unknown, already answered or expired: start the login again",
      );
    }
    const { state, expiresAt: _, ...grant } = authorization;
    return decision === "approve"
      ? redirectWith(303, grant.redirectUri, { code: issueCode(grant), state })
      : redirectWith(303, grant.redirectUri, { error: "access_denied", state });
  }

  /**
   * Identifies the client from `Authorization: Basic` or from `client_id` in
   * the body. `authenticated` is true only when the right secret was sent; a
   * wrong secret is an error even where none is needed.
   */
  function authenticateClient(request: Request, form: URLSearchParams): ClientAuthentication {
    const header = request.headers.get("authorization");
    let clientId: string | null;
    let secret: string | null;
    if (header !== null) {
      const credentials = parseBasicAuthorization(header);
      if (credentials === undefined) {
        return { error: tokenError("invalid_client", "Invalid client") };
      }
      const bodyClientId = form.get("client_id");
      if (bodyClientId !== null && bodyClientId !== credentials.id) {
        return { error: tokenError("invalid_client", "Invalid client") };
      }
      clientId = credentials.id;
      secret = credentials.secret;
    } else {
      clientId = form.get("client_id");
      secret = form.get("client_secret");
    }
    const client = clientsById.get(clientId ?? "");
    if (client === undefined) return { error: tokenError("invalid_client", "Invalid client") };
    if (secret !== null && secret !== client.clientSecret) {
      return { error: tokenError("invalid_client", "Invalid client secret") };
    }
    return { client, authenticated: secret !== null };
  }

  async function exchangeCode(
    form: URLSearchParams,
    client: EmulatorClient,
    authenticated: boolean,
  ): Promise<Response> {
    const code = form.get("code") ?? "";
    const grant = codes.get(code);
    if (grant === undefined || grant.clientId !== client.clientId) {
      return tokenError("invalid_grant", "Invalid authorization code");
    }
    if (now() >= grant.expiresAt) {
      codes.delete(code);
      return tokenError("invalid_grant", "Invalid authorization code");
    }
    if (grant.codeChallenge === undefined && !authenticated) {
      return tokenError("invalid_client", "Invalid client");
    }
    // The right client has tried: the code is spent whatever happens next, so
    // a stolen code cannot be retried with guessed verifiers.
    codes.delete(code);
    if (form.get("redirect_uri") !== grant.redirectUri) {
      return tokenError("invalid_grant", "Invalid redirect URI");
    }
    if (grant.codeChallenge !== undefined) {
      const verifier = form.get("code_verifier");
      if (verifier === null) return tokenError("invalid_request", "code_verifier required");
      if (await s256(verifier) !== grant.codeChallenge) {
        return tokenError("invalid_grant", "code_verifier was incorrect");
      }
    }
    return issueTokens(client.clientId, grant.scopes, grant.codeChallenge !== undefined);
  }

  function refresh(
    form: URLSearchParams,
    client: EmulatorClient,
    authenticated: boolean,
  ): Response {
    const refreshToken = form.get("refresh_token") ?? "";
    const grant = refreshTokens.get(refreshToken);
    if (grant === undefined || grant.clientId !== client.clientId || grant.status === "rotated") {
      return tokenError("invalid_grant", "Invalid refresh token");
    }
    if (grant.status === "revoked") return tokenError("invalid_grant", "Refresh token revoked");
    if (!grant.rotates && !authenticated) return tokenError("invalid_client", "Invalid client");
    if (grant.rotates) {
      grant.status = "rotated";
      return issueTokens(client.clientId, grant.scopes, true);
    }
    // Secret-flow refresh tokens stay valid, so Spotify sends no new one.
    return tokenJson(200, {
      access_token: randomToken(),
      token_type: "Bearer",
      expires_in: accessTokenLifetime,
      scope: grant.scopes.join(" "),
    });
  }

  function clientCredentials(authenticated: boolean): Response {
    if (!authenticated) return tokenError("invalid_client", "Invalid client");
    // Spotify really does send lowercase "bearer" here, unlike the other grants.
    return tokenJson(200, {
      access_token: randomToken(),
      token_type: "bearer",
      expires_in: accessTokenLifetime,
    });
  }

  const faults: TokenFault[] = [];

  function playFault(fault: TokenFault): Response | Promise<Response> {
    if ("hang" in fault) {
      // Answered only so that the server can finish when the emulator closes.
      return new Promise((resolve) => {
        controller.signal.addEventListener(
          "abort",
          () => resolve(plainText(503, "Emulator closed")),
          { once: true },
        );
      });
    }
    if ("reset" in fault) {
      return new Response(
        new ReadableStream({
          pull(stream) {
            stream.error(new Error("connection reset by the emulator"));
          },
        }),
        { status: 200, headers: { "content-type": "application/json" } },
      );
    }
    return new Response(fault.body ?? "", {
      status: fault.status,
      headers: { "content-type": "application/json", ...fault.headers },
    });
  }

  async function token(request: Request): Promise<Response> {
    tokenRequests++;
    const fault = faults.shift();
    if (fault !== undefined) {
      await request.body?.cancel();
      return playFault(fault);
    }
    const form = await readForm(request);
    if (form === undefined) {
      return tokenError("invalid_request", `Content-Type must be ${FORM_CONTENT_TYPE}`);
    }
    const grantType = form.get("grant_type");
    if (grantType === null) {
      return tokenError("unsupported_grant_type", "grant_type parameter is missing");
    }
    if (!["authorization_code", "refresh_token", "client_credentials"].includes(grantType)) {
      return tokenError("unsupported_grant_type", "grant_type parameter is invalid");
    }
    const authentication = authenticateClient(request, form);
    if ("error" in authentication) return authentication.error;
    const { client, authenticated } = authentication;
    switch (grantType) {
      case "authorization_code":
        return await exchangeCode(form, client, authenticated);
      case "refresh_token":
        return refresh(form, client, authenticated);
      default:
        return clientCredentials(authenticated);
    }
  }

  const routes = new Map<
    string,
    { method: string; handle(request: Request): Promise<Response> | Response }
  >([
    ["/authorize", { method: "GET", handle: authorize }],
    ["/authorize/decision", { method: "POST", handle: decide }],
    ["/api/token", { method: "POST", handle: token }],
  ]);

  async function handler(request: Request): Promise<Response> {
    const route = routes.get(new URL(request.url).pathname);
    if (route === undefined) {
      await request.body?.cancel();
      return plainText(404, "Not found");
    }
    if (request.method !== route.method) {
      await request.body?.cancel();
      return plainText(405, "Method not allowed", { allow: route.method });
    }
    return await route.handle(request);
  }

  const controller = new AbortController();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      signal: controller.signal,
      onListen() {},
      // Library code stays quiet on the console; the error still reaches the client.
      onError(error) {
        return plainText(500, `Accounts emulator error: ${String(error)}`);
      },
    }, handler);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new Deno.errors.AddrInUse(
        `Cannot start the accounts emulator: port ${port} on ${hostname} is already in use`,
        { cause: error },
      );
    }
    throw error;
  }

  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const origin = `http://${host}:${server.addr.port}/`;

  let closed: Promise<void> | undefined;
  const onAbort = (): void => void close();
  function close(): Promise<void> {
    closed ??= (async () => {
      signal?.removeEventListener("abort", onAbort);
      controller.abort();
      await server.finished;
    })();
    return closed;
  }
  signal?.addEventListener("abort", onAbort, { once: true });

  return {
    // Fresh URL objects, so a caller that edits one (say, its search) does not change the next.
    get url() {
      return new URL(origin);
    },
    get authorizeEndpoint() {
      return new URL("/authorize", origin);
    },
    get tokenEndpoint() {
      return new URL("/api/token", origin);
    },
    clients: registeredClients,
    get tokenRequests() {
      return tokenRequests;
    },
    revokeRefreshToken(refreshToken: string): void {
      const grant = refreshTokens.get(refreshToken);
      if (grant === undefined) {
        throw new TypeError(
          "Cannot revoke the refresh token: this emulator did not issue it",
        );
      }
      grant.status = "revoked";
    },
    injectTokenFaults(...added: TokenFault[]): void {
      faults.push(...added);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
