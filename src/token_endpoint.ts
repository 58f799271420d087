/**
 * Requests to the token endpoint: client authentication, strict validation of
 * the response, errors that say what to do.
 *
 * @module
 */

import { SpotifyNetworkError, SpotifyOAuthError, SpotifyResponseError } from "./errors.ts";
import type { SpotifyToken } from "./token.ts";
import { checkTimeout, formatDuration } from "./_timing.ts";

/** Spotify's token endpoint. */
export const SPOTIFY_TOKEN_ENDPOINT = "https://accounts.spotify.com/api/token";

/** Options shared by everything that talks to the token endpoint. */
export interface TokenEndpointOptions {
  /**
   * The token endpoint.
   *
   * @default {"https://accounts.spotify.com/api/token"}
   */
  tokenEndpoint?: string | URL | undefined;
  /**
   * The `fetch` to use, for proxies, logging or tests.
   *
   * @default {globalThis.fetch}
   */
  fetch?: typeof fetch | undefined;
  /**
   * The clock, used to turn `expires_in` into `expiresAt`.
   *
   * @default {Date.now}
   */
  now?: (() => number) | undefined;
  /**
   * Aborts the request; the call rejects with the signal's reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
  /**
   * How long one request to the token endpoint may take, in milliseconds,
   * before it fails with {@linkcode SpotifyNetworkError}.
   *
   * @default {30000}
   */
  requestTimeout?: number | undefined;
}

/** Who the client is, and how it proves it. */
export interface ClientAuth {
  /** The app's client id. */
  clientId: string;
  /**
   * The client secret, sent with HTTP Basic authentication; without it, the
   * client id goes in the body (public clients, PKCE).
   */
  clientSecret?: string | undefined;
}

// Longer than any token Spotify issues; a bigger value is a broken server.
const MAX_EXPIRES_IN = 366 * 24 * 3600;

/**
 * Sends one token request and validates the answer. `fallback` fills in what a
 * refresh response may leave out (the refresh token, the scope).
 */
export async function requestToken(
  params: Record<string, string>,
  auth: ClientAuth,
  options: TokenEndpointOptions,
  fallback: Partial<Pick<SpotifyToken, "refreshToken" | "scope">> = {},
): Promise<SpotifyToken> {
  const { fetch: fetchFn = globalThis.fetch, now = Date.now, signal, requestTimeout = 30_000 } =
    options;
  checkTimeout("requestTimeout", requestTimeout);
  const endpoint = new URL(options.tokenEndpoint ?? SPOTIFY_TOKEN_ENDPOINT);
  const body = new URLSearchParams(params);
  const headers = new Headers({
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
  });
  if (auth.clientSecret !== undefined) {
    headers.set("authorization", basicAuth(auth.clientId, auth.clientSecret));
  } else {
    body.set("client_id", auth.clientId);
  }

  // The token cannot have been issued before it was asked for, so expiry
  // counts from here: never later than the server's own clock.
  const sentAt = now();
  const timedOut = new AbortController();
  const timer = setTimeout(() => timedOut.abort(), requestTimeout);
  const requestSignal = signal ? AbortSignal.any([signal, timedOut.signal]) : timedOut.signal;
  const failure = (doing: string, error: unknown): unknown => {
    if (signal?.aborted) return signal.reason;
    return new SpotifyNetworkError(
      timedOut.signal.aborted
        ? `The token endpoint ${endpoint.href} did not answer within ${
          formatDuration(requestTimeout)
        }. Try again later.`
        : `Cannot ${doing} the token endpoint ${endpoint.href}: ${
          error instanceof Error ? error.message : String(error)
        }. Check the network connection and try again.`,
      { cause: error },
    );
  };
  let response: Response;
  let text: string;
  try {
    try {
      response = await fetchFn(endpoint, { method: "POST", headers, body, signal: requestSignal });
    } catch (error) {
      throw failure("reach", error);
    }
    try {
      text = await response.text();
    } catch (error) {
      throw failure("read the answer of", error);
    }
  } finally {
    clearTimeout(timer);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }

  if (!response.ok) {
    if (isRecord(json) && typeof json.error === "string" && json.error) {
      throw new SpotifyOAuthError(
        json.error,
        typeof json.error_description === "string" ? json.error_description : undefined,
        { status: response.status, response },
      );
    }
    throw new SpotifyResponseError(
      `The token endpoint ${endpoint.href} answered ${response.status} ${response.statusText} without an OAuth error${
        json === undefined ? ` (the body is not JSON: ${describeBody(response, text)})` : ""
      }. ${
        response.status >= 500 || response.status === 429
          ? "The server is busy or failing; try again later."
          : "Check tokenEndpoint."
      }`,
      response.status,
      { response },
    );
  }

  if (!isRecord(json)) {
    throw invalid(
      endpoint,
      response,
      `the body is not a JSON object (${describeBody(response, text)})`,
    );
  }
  const { access_token, token_type, expires_in, scope, refresh_token } = json;
  if (typeof access_token !== "string" || !access_token) {
    throw invalid(endpoint, response, "access_token is missing or not a non-empty string");
  }
  if (typeof token_type !== "string" || token_type.toLowerCase() !== "bearer") {
    throw invalid(endpoint, response, `token_type is ${JSON.stringify(token_type)}, not "Bearer"`);
  }
  if (
    typeof expires_in !== "number" || !Number.isFinite(expires_in) || expires_in <= 0 ||
    expires_in > MAX_EXPIRES_IN
  ) {
    throw invalid(
      endpoint,
      response,
      `expires_in is ${
        JSON.stringify(expires_in)
      }, not a number of seconds from 1 to ${MAX_EXPIRES_IN}`,
    );
  }
  if (scope !== undefined && scope !== null && typeof scope !== "string") {
    throw invalid(endpoint, response, "scope is not a string");
  }
  if (
    refresh_token !== undefined && refresh_token !== null &&
    (typeof refresh_token !== "string" || !refresh_token)
  ) {
    throw invalid(endpoint, response, "refresh_token is not a non-empty string");
  }

  const token: SpotifyToken = {
    accessToken: access_token,
    tokenType: "Bearer",
    scope: typeof scope === "string"
      ? [...new Set(scope.split(/\s+/).filter(Boolean))].sort()
      : fallback.scope ?? [],
    expiresAt: sentAt + Math.floor(expires_in * 1000),
  };
  const refreshToken = typeof refresh_token === "string" ? refresh_token : fallback.refreshToken;
  if (refreshToken !== undefined) token.refreshToken = refreshToken;
  return token;
}

function basicAuth(clientId: string, clientSecret: string): string {
  // RFC 6749 §2.3.1: form-encode each part before joining them.
  const form = (s: string) => new URLSearchParams({ s }).toString().slice(2);
  const bytes = new TextEncoder().encode(`${form(clientId)}:${form(clientSecret)}`);
  return `Basic ${bytes.toBase64()}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Never quotes the body: a malformed success response may still hold a token.
function describeBody(response: Response, text: string): string {
  const type = response.headers.get("content-type");
  return `${text.length} bytes${type ? ` of ${type}` : ""}`;
}

function invalid(endpoint: URL, response: Response, problem: string): SpotifyResponseError {
  return new SpotifyResponseError(
    `The token endpoint ${endpoint.href} answered ${response.status} with an invalid token response: ${problem}. Check tokenEndpoint; if it is Spotify's, try again later.`,
    response.status,
    { response },
  );
}
