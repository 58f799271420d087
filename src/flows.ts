/**
 * The flows: each one async function that returns a {@linkcode SpotifyToken}.
 *
 * @module
 */

import { createAuthorizeUrl } from "./authorize_url.ts";
import { openBrowser as launchBrowser } from "./browser.ts";
import { startCallbackServer } from "./callback_server.ts";
import { createCodeChallenge, createCodeVerifier, createState } from "./pkce.ts";
import { inputEnded, readPastedCode, say } from "./paste.ts";
import { parseRedirectUri } from "./redirect_uri.ts";
import { abortable, checkTimeout, formatDuration } from "./_timing.ts";
import type { ScopeInput } from "./scopes.ts";
import type { SpotifyToken } from "./token.ts";
import { requestToken, type TokenEndpointOptions } from "./token_endpoint.ts";

/** Options of the interactive flows ({@linkcode pkceFlow}, {@linkcode authorizationCodeFlow}). */
export interface InteractiveFlowOptions extends TokenEndpointOptions {
  /** The app's client id from the Spotify dashboard. */
  clientId: string;
  /**
   * The redirect URI registered in the Spotify dashboard. A loopback URI
   * (`http://127.0.0.1:8888/callback`, `http://[::1]:8888/callback`) gets a
   * local listener; one without a port gets a free port. Any other URI
   * (`https://…`) falls back to pasting the redirected address.
   */
  redirectUri: string | URL;
  /**
   * Scopes to ask for: an array, or one string separated by spaces or commas.
   *
   * @default {[]}
   */
  scope?: ScopeInput | undefined;
  /**
   * The state to send; it is always checked on the way back.
   *
   * @default {createState()}
   */
  state?: string | undefined;
  /**
   * Show Spotify's consent dialog even if the user approved the app before
   * (lets them switch accounts).
   *
   * @default {false}
   */
  showDialog?: boolean | undefined;
  /**
   * How long to wait for the user in the browser, in milliseconds; then the
   * login fails with a `TimeoutError`.
   *
   * @default {300000}
   */
  timeout?: number | undefined;
  /**
   * How the user gets to Spotify's consent page. `true` opens the system
   * browser (and prints the address when that fails); `false` prints the
   * address and also accepts the redirected address pasted on standard
   * input; a function is given the URL and sends a user agent there.
   *
   * @default {true}
   */
  openBrowser?: boolean | ((url: URL) => void | Promise<void>) | undefined;
  /**
   * The authorization endpoint.
   *
   * @default {"https://accounts.spotify.com/authorize"}
   */
  authorizeEndpoint?: string | URL | undefined;
}

/** Options for {@linkcode pkceFlow}. */
export interface PkceFlowOptions extends InteractiveFlowOptions {}

/** Options for {@linkcode authorizationCodeFlow}. */
export interface AuthorizationCodeFlowOptions extends InteractiveFlowOptions {
  /** The app's client secret. Keep it out of code that runs on users' machines; use {@linkcode pkceFlow} there. */
  clientSecret: string;
}

/** Options for {@linkcode clientCredentialsFlow}. */
export interface ClientCredentialsFlowOptions extends TokenEndpointOptions {
  /** The app's client id. */
  clientId: string;
  /** The app's client secret. */
  clientSecret: string;
}

/** Options for {@linkcode refreshToken}. */
export interface RefreshTokenOptions extends TokenEndpointOptions {
  /** The client id the token was issued to. */
  clientId: string;
  /**
   * The client secret, for tokens from {@linkcode authorizationCodeFlow};
   * leave it out for tokens from {@linkcode pkceFlow}.
   *
   * @default {undefined}
   */
  clientSecret?: string | undefined;
}

/**
 * Logs a user in with the authorization code flow with PKCE: no client
 * secret, so it is the flow for scripts and apps that run on users' machines.
 *
 * It checks the redirect URI, starts the loopback listener, opens the browser
 * at Spotify's consent page, waits for the redirect, checks `state`, and
 * exchanges the code with the PKCE verifier.
 *
 * @param options Client id, redirect URI, scopes and how to reach the user.
 * @returns The token, with a refresh token.
 * @throws {TypeError} When the redirect URI is one Spotify refuses (the
 * message says what to register instead).
 * @throws {SpotifyOAuthError} When the user declines (`access_denied`) or
 * Spotify refuses the code.
 * @throws {SpotifyCallbackServerError} When the listener's port is in use.
 * @throws {SpotifyLoginRequiredError} When the address had to be pasted and
 * standard input ended first.
 * @throws {DOMException} A `TimeoutError` after `timeout`, or the abort reason.
 *
 * @example Log in from a script
 * ```ts
 * import { pkceFlow } from "@spotikit/auth";
 *
 * const token = await pkceFlow({
 *   clientId: "your-client-id",
 *   redirectUri: "http://127.0.0.1:8888/callback",
 *   scope: ["user-read-private"],
 * });
 * console.log(`Logged in; the token expires at ${new Date(token.expiresAt)}`);
 * ```
 */
export async function pkceFlow(options: PkceFlowOptions): Promise<SpotifyToken> {
  const verifier = createCodeVerifier();
  const challenge = await createCodeChallenge(verifier);
  const { code, redirectUri } = await authorize(options, challenge);
  return exchangeCode(code, {
    clientId: options.clientId,
    redirectUri,
    codeVerifier: verifier,
    ...endpointOptions(options),
  });
}

/**
 * Logs a user in with the authorization code flow and the client secret: for
 * code that keeps the secret to itself (a server, your own machine).
 *
 * @param options Client id and secret, redirect URI, scopes and how to reach the user.
 * @returns The token, with a refresh token.
 * @throws {TypeError} When the redirect URI is one Spotify refuses.
 * @throws {SpotifyOAuthError} When the user declines, or Spotify refuses the
 * secret (`invalid_client`) or the code (`invalid_grant`).
 * @throws {SpotifyCallbackServerError} When the listener's port is in use.
 * @throws {SpotifyLoginRequiredError} When the address had to be pasted and
 * standard input ended first.
 * @throws {DOMException} A `TimeoutError` after `timeout`, or the abort reason.
 *
 * @example Log in with a client secret
 * ```ts
 * import { authorizationCodeFlow } from "@spotikit/auth";
 *
 * const token = await authorizationCodeFlow({
 *   clientId: Deno.env.get("SPOTIFY_CLIENT_ID")!,
 *   clientSecret: Deno.env.get("SPOTIFY_CLIENT_SECRET")!,
 *   redirectUri: "http://127.0.0.1:8888/callback",
 *   scope: "playlist-read-private",
 * });
 * ```
 */
export async function authorizationCodeFlow(
  options: AuthorizationCodeFlowOptions,
): Promise<SpotifyToken> {
  if (!options.clientSecret) {
    throw new TypeError(
      "Cannot use authorizationCodeFlow() without a clientSecret; use pkceFlow() for a client without one",
    );
  }
  const { code, redirectUri } = await authorize(options, undefined);
  return exchangeCode(code, {
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    redirectUri,
    ...endpointOptions(options),
  });
}

/** Options for {@linkcode exchangeCode}. */
export interface ExchangeCodeOptions extends TokenEndpointOptions {
  /** The client id the code was issued to. */
  clientId: string;
  /**
   * The client secret, for the authorization code flow without PKCE.
   *
   * @default {undefined}
   */
  clientSecret?: string | undefined;
  /** The redirect URI sent in the authorize URL, exactly (with the listener's real port). */
  redirectUri: string | URL;
  /**
   * The PKCE verifier whose challenge was in the authorize URL.
   *
   * @default {undefined}
   */
  codeVerifier?: string | undefined;
}

/**
 * Exchanges an authorization code for a token: the last step of a login,
 * for callers who run the earlier steps themselves.
 *
 * @param code The code from {@linkcode parseCallbackUrl} or
 * {@linkcode CallbackServer.waitForCode}.
 * @param options The client, the redirect URI and the PKCE verifier or client secret.
 * @returns The token.
 * @throws {SpotifyOAuthError} `invalid_grant` when the code is used, expired,
 * or does not match the verifier or redirect URI; `invalid_client` for a
 * wrong secret.
 * @throws {SpotifyNetworkError} When the token endpoint cannot be reached.
 * @throws {SpotifyResponseError} When the answer is not a valid token response.
 *
 * @example Finish a login whose redirect was pasted
 * ```ts
 * import { exchangeCode, parseCallbackUrl } from "@spotikit/auth";
 *
 * declare const pasted: string, state: string, verifier: string;
 * const code = parseCallbackUrl(pasted, state);
 * const token = await exchangeCode(code, {
 *   clientId: "your-client-id",
 *   redirectUri: "https://example.com/callback",
 *   codeVerifier: verifier,
 * });
 * ```
 */
export function exchangeCode(code: string, options: ExchangeCodeOptions): Promise<SpotifyToken> {
  if (!code) return Promise.reject(new TypeError("Cannot exchange an empty authorization code"));
  const params: Record<string, string> = {
    grant_type: "authorization_code",
    code,
    redirect_uri: String(options.redirectUri),
  };
  if (options.codeVerifier !== undefined) params.code_verifier = options.codeVerifier;
  return requestToken(
    params,
    { clientId: options.clientId, clientSecret: options.clientSecret },
    options,
  );
}

/**
 * Gets an app token with the client credentials flow: no user, so no user
 * data and no refresh token; ask for a new token when it expires.
 *
 * @param options Client id and secret.
 * @returns The token, without a refresh token or scopes.
 * @throws {SpotifyOAuthError} When Spotify refuses the client (`invalid_client`).
 * @throws {SpotifyNetworkError} When the token endpoint cannot be reached.
 * @throws {SpotifyResponseError} When the answer is not a valid token response.
 *
 * @example Search the catalogue as the app
 * ```ts
 * import { clientCredentialsFlow } from "@spotikit/auth";
 *
 * const token = await clientCredentialsFlow({
 *   clientId: Deno.env.get("SPOTIFY_CLIENT_ID")!,
 *   clientSecret: Deno.env.get("SPOTIFY_CLIENT_SECRET")!,
 * });
 * ```
 */
export function clientCredentialsFlow(
  options: ClientCredentialsFlowOptions,
): Promise<SpotifyToken> {
  if (!options.clientId || !options.clientSecret) {
    return Promise.reject(
      new TypeError("Cannot use clientCredentialsFlow() without both clientId and clientSecret"),
    );
  }
  return requestToken(
    { grant_type: "client_credentials" },
    { clientId: options.clientId, clientSecret: options.clientSecret },
    options,
  );
}

/**
 * Exchanges a token's refresh token for a new access token. When Spotify
 * sends a new refresh token (PKCE refresh tokens rotate, and the old one
 * stops working), the result carries it; when it sends none, the old one is
 * kept. The token passed in is not changed.
 *
 * @param token A token with a refresh token.
 * @param options The client id, and the client secret for tokens from the
 * secret flow.
 * @returns The refreshed token.
 * @throws {TypeError} When the token has no refresh token.
 * @throws {SpotifyOAuthError} `invalid_grant` when the refresh token was
 * revoked or expired: log in again.
 * @throws {SpotifyNetworkError} When the token endpoint cannot be reached;
 * the old refresh token is still good.
 *
 * @example Refresh a PKCE token
 * ```ts
 * import { isTokenExpired, refreshToken, type SpotifyToken } from "@spotikit/auth";
 *
 * declare let token: SpotifyToken;
 * if (isTokenExpired(token)) token = await refreshToken(token, { clientId: "your-client-id" });
 * ```
 */
export function refreshToken(
  token: SpotifyToken,
  options: RefreshTokenOptions,
): Promise<SpotifyToken> {
  if (!token.refreshToken) {
    return Promise.reject(
      new TypeError(
        "Cannot refresh a token without a refresh token; client credentials tokens are replaced with clientCredentialsFlow(), others need a new login",
      ),
    );
  }
  return requestToken(
    { grant_type: "refresh_token", refresh_token: token.refreshToken },
    { clientId: options.clientId, clientSecret: options.clientSecret },
    options,
    { refreshToken: token.refreshToken, scope: token.scope },
  );
}

// Only what the token endpoint needs: a secret in a shared options object
// must never reach a PKCE exchange.
function endpointOptions(options: TokenEndpointOptions): TokenEndpointOptions {
  const { tokenEndpoint, fetch, now, signal, requestTimeout, retries, maxRetryDelay } = options;
  return { tokenEndpoint, fetch, now, signal, requestTimeout, retries, maxRetryDelay };
}

/** Sends the user to the consent page and waits for the code. */
async function authorize(
  options: InteractiveFlowOptions,
  codeChallenge: string | undefined,
): Promise<{ code: string; redirectUri: string }> {
  if (!options.clientId) throw new TypeError("Cannot log in: clientId is empty");
  const { loopback } = parseRedirectUri(options.redirectUri);
  const { signal, timeout = 300_000, openBrowser = true } = options;
  checkTimeout("timeout", timeout);
  signal?.throwIfAborted();
  const state = options.state ?? createState();

  await using server = loopback
    ? await startCallbackServer({ redirectUri: options.redirectUri, signal })
    : undefined;
  const redirectUri = server?.redirectUri ?? String(options.redirectUri);
  const url = createAuthorizeUrl({
    clientId: options.clientId,
    redirectUri,
    state,
    scope: options.scope,
    showDialog: options.showDialog,
    codeChallenge,
    authorizeEndpoint: options.authorizeEndpoint,
  });

  // Aborted when the login ends, however it ends, to stop whatever still waits.
  const done = new AbortController();
  const waitSignal = signal ? AbortSignal.any([signal, done.signal]) : done.signal;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // What ends the login whatever the browser opener or the paste prompt do:
    // the listener (which has its own timeout), or else a timer of our own.
    const deadline = server?.waitForCode(state, { timeout, signal: waitSignal }) ??
      abortable(
        new Promise<never>((_, reject) => {
          timer = setTimeout(() =>
            reject(
              new DOMException(
                `Timed out after ${
                  formatDuration(timeout)
                } waiting for the redirected address to be pasted. Run the login again.`,
                "TimeoutError",
              ),
            ), timeout);
        }),
        waitSignal,
      );
    deadline.catch(() => {});

    const viaUser = (async () => {
      let paste = !server;
      if (typeof openBrowser === "function") {
        await openBrowser(url);
      } else if (openBrowser) {
        try {
          await launchBrowser(url, { signal: waitSignal });
        } catch (error) {
          if (waitSignal.aborted) throw error;
          say(`${error instanceof Error ? error.message : String(error)}.\n`);
          showUrl(url);
          paste = true;
        }
      } else {
        showUrl(url);
        paste = true;
      }
      if (!paste) return deadline;
      const pasted = await readPastedCode(state, waitSignal);
      if (pasted !== "ended" && pasted !== "closed") return pasted;
      // Nothing more can be pasted, but the browser may still come back.
      if (server) return deadline;
      throw inputEnded(pasted);
    })();
    viaUser.catch(() => {});

    const code = await Promise.race([deadline, viaUser]);
    return { code, redirectUri };
  } finally {
    clearTimeout(timer);
    done.abort();
  }
}

function showUrl(url: URL): void {
  say(`Open this address in a browser to log in to Spotify:\n\n  ${url.href}\n\n`);
}
