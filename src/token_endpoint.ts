/**
 * Requests to the token endpoint: client authentication, strict validation of
 * the response, errors that say what to do.
 *
 * @module
 */

import {
  afterAmbiguousRetry,
  SpotifyNetworkError,
  SpotifyOAuthError,
  SpotifyResponseError,
} from "./errors.ts";
import { redactSecrets, type SpotifyToken } from "./token.ts";
import { checkTimeout, delay, formatDuration } from "./_timing.ts";

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
  /**
   * How many times a request is repeated after a 429, a 5xx or a broken
   * connection, with exponential backoff and jitter, or after the
   * `Retry-After` the server asked for.
   *
   * @default {2}
   */
  retries?: number | undefined;
  /**
   * The longest wait before a retry, in milliseconds; a server that asks
   * for longer (`Retry-After`) gets the error back at once instead.
   *
   * @default {10000}
   */
  maxRetryDelay?: number | undefined;
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

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);

/** Exponential backoff with jitter: 150–300 ms, then 300–600 ms, … */
function backoff(attempt: number): number {
  const ceiling = 300 * 2 ** attempt;
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** A `Retry-After` header in milliseconds, if it is a number of seconds or a date. */
function retryAfter(header: string | null): number | undefined {
  if (header === null) return undefined;
  if (/^\d+(\.\d+)?$/.test(header.trim())) return Number(header) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
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
  const {
    fetch: fetchFn = globalThis.fetch,
    now = Date.now,
    signal,
    requestTimeout = 30_000,
    retries = 2,
    maxRetryDelay = 10_000,
  } = options;
  checkTimeout("requestTimeout", requestTimeout);
  if (!Number.isInteger(retries) || retries < 0) {
    throw new RangeError(`Cannot use retries ${retries}: it must be a whole number from 0`);
  }
  if (typeof maxRetryDelay !== "number" || !(maxRetryDelay >= 0) || maxRetryDelay > 2 ** 31 - 1) {
    throw new RangeError(
      `Cannot use maxRetryDelay ${maxRetryDelay}: it must be a number of milliseconds from 0 to 2147483647`,
    );
  }
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

  // One request, bounded by requestTimeout. A failure that a retry may cure
  // comes back as `retryable`; aborts and timeouts are final.
  const send = async (): Promise<
    { response: Response; text: string } | { failure: unknown; retryable: boolean }
  > => {
    const timedOut = new AbortController();
    const timer = setTimeout(() => timedOut.abort(), requestTimeout);
    const requestSignal = signal ? AbortSignal.any([signal, timedOut.signal]) : timedOut.signal;
    const failed = (doing: string, error: unknown) => {
      if (signal?.aborted) return { failure: signal.reason, retryable: false };
      if (timedOut.signal.aborted) {
        return {
          failure: new SpotifyNetworkError(
            `The token endpoint ${endpoint.href} did not answer within ${
              formatDuration(requestTimeout)
            }. Try again later.`,
            { cause: error },
          ),
          retryable: false,
        };
      }
      return {
        failure: new SpotifyNetworkError(
          `Cannot ${doing} the token endpoint ${endpoint.href}: ${
            error instanceof Error ? error.message : String(error)
          }. Check the network connection and try again.`,
          { cause: error },
        ),
        retryable: true,
      };
    };
    try {
      let response: Response;
      try {
        response = await fetchFn(endpoint, {
          method: "POST",
          headers,
          body,
          signal: requestSignal,
        });
      } catch (error) {
        return failed("reach", error);
      }
      try {
        return { response, text: await response.text() };
      } catch (error) {
        return failed("read the answer of", error);
      }
    } finally {
      clearTimeout(timer);
    }
  };

  let sentAt: number;
  let result: Awaited<ReturnType<typeof send>>;
  // Set once a failed attempt may have reached the server (a 500, a broken
  // connection): a later invalid_grant may then mean that attempt used the
  // refresh token, not that the token is dead.
  let ambiguous = false;
  for (let attempt = 0;; attempt++) {
    // The token cannot have been issued before it was asked for, so expiry
    // counts from here: never later than the server's own clock.
    sentAt = now();
    result = await send();
    // The server's Retry-After is honoured, or the error returned at once when
    // it asks for more than maxRetryDelay; our own backoff is capped by it.
    const asked = "failure" in result
      ? undefined
      : retryAfter(result.response.headers.get("retry-after"));
    const wait = "failure" in result
      ? result.retryable ? Math.min(backoff(attempt), maxRetryDelay) : undefined
      : RETRY_STATUSES.has(result.response.status)
      ? asked ?? Math.min(backoff(attempt), maxRetryDelay)
      : undefined;
    if (wait === undefined || attempt >= retries || wait > maxRetryDelay) break;
    if ("failure" in result || ![429, 503].includes(result.response.status)) ambiguous = true;
    await delay(wait, signal);
  }
  if ("failure" in result) throw result.failure;
  const { response, text } = result;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }

  if (!response.ok) {
    if (isRecord(json) && typeof json.error === "string" && json.error) {
      const error = new SpotifyOAuthError(
        json.error,
        typeof json.error_description === "string" ? json.error_description : undefined,
        { status: response.status, response },
      );
      if (ambiguous) afterAmbiguousRetry.add(error);
      throw error;
    }
    const retryAfterHeader = response.headers.get("retry-after");
    throw new SpotifyResponseError(
      `The token endpoint ${endpoint.href} answered ${response.status} ${response.statusText} without an OAuth error${
        json === undefined ? ` (the body is not JSON: ${describeBody(response, text)})` : ""
      }. ${
        response.status >= 500 || response.status === 429
          ? `The server is busy or failing; try again ${
            retryAfterHeader ? `after ${retryAfterHeader} seconds` : "later"
          }.`
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
  return redactSecrets(token);
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
