/**
 * The errors a caller of `@spotikit/auth` may want to catch.
 *
 * Misuse (a malformed redirect URI, a verifier of the wrong length) throws the
 * built-in `TypeError` or `RangeError`; what can go wrong at run time, even
 * with correct code, throws one of these classes.
 *
 * @module
 */

/**
 * Base class of every error this package throws on purpose at run time.
 *
 * @example Catch anything from a login
 * ```ts
 * import { pkceFlow, SpotifyAuthError } from "@spotikit/auth";
 *
 * try {
 *   await pkceFlow({ clientId: "abc", redirectUri: "http://127.0.0.1:8888/callback" });
 * } catch (error) {
 *   if (error instanceof SpotifyAuthError) console.error(error.message);
 *   else throw error;
 * }
 * ```
 */
export class SpotifyAuthError extends Error {
  /**
   * Creates an error.
   *
   * @param message What happened and what to do next.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Options for {@linkcode SpotifyOAuthError}. */
export interface SpotifyOAuthErrorOptions extends ErrorOptions {
  /**
   * The HTTP status of the response that carried the error; `undefined` when
   * the error came through the authorization callback.
   *
   * @default {undefined}
   */
  status?: number | undefined;
  /**
   * The raw response, kept for debugging; not enumerable, so it never shows
   * up in logs.
   *
   * @default {undefined}
   */
  response?: Response | undefined;
}

/**
 * An OAuth error that Spotify (or a compatible server) reported: from the
 * authorization callback (`?error=access_denied`) or from the token endpoint
 * (`{"error": "invalid_grant", ...}`).
 *
 * @example Tell a denied login from other failures
 * ```ts
 * import { pkceFlow, SpotifyOAuthError } from "@spotikit/auth";
 *
 * try {
 *   await pkceFlow({ clientId: "abc", redirectUri: "http://127.0.0.1:8888/callback" });
 * } catch (error) {
 *   if (error instanceof SpotifyOAuthError && error.error === "access_denied") {
 *     console.error("You declined the login.");
 *   } else {
 *     throw error;
 *   }
 * }
 * ```
 */
export class SpotifyOAuthError extends SpotifyAuthError {
  /** The OAuth error code, such as `access_denied` or `invalid_grant`. */
  readonly error: string;
  /** The server's human-readable description, when it sent one. */
  readonly errorDescription: string | undefined;
  /** HTTP status of the token endpoint's response; `undefined` for callback errors. */
  readonly status: number | undefined;
  /** The raw response (not enumerable); `undefined` for callback errors. */
  declare readonly response: Response | undefined;

  /**
   * Creates an error from an OAuth error code and description.
   *
   * @param error The OAuth error code.
   * @param errorDescription The server's description, if any.
   * @param options The HTTP status, the raw response and a cause.
   */
  constructor(
    error: string,
    errorDescription?: string,
    options: SpotifyOAuthErrorOptions = {},
  ) {
    super(oauthErrorMessage(error, errorDescription, options.status), options);
    this.error = error;
    this.errorDescription = errorDescription;
    this.status = options.status;
    Object.defineProperty(this, "response", { value: options.response, enumerable: false });
  }
}

function oauthErrorMessage(
  error: string,
  description: string | undefined,
  status: number | undefined,
): string {
  const where = status === undefined
    ? "Spotify refused the authorization"
    : `Spotify's token endpoint answered ${status}`;
  const said = description ? `${error}: ${description}` : error;
  return `${where} (${said}). ${oauthErrorAdvice(error)}`;
}

function oauthErrorAdvice(error: string): string {
  switch (error) {
    case "access_denied":
      return "The user declined the login; run it again to retry.";
    case "invalid_client":
      return "Check the client id and client secret in the Spotify developer dashboard.";
    case "invalid_grant":
      return "The code or refresh token is invalid, used or expired; log in again.";
    case "invalid_scope":
      return "Request only scopes that Spotify knows.";
    case "invalid_request":
      return "The request was malformed; check the options passed to the flow.";
    default:
      return "See Spotify's authorization guide for this error.";
  }
}

/**
 * The `state` in an authorization callback was missing or not the one this
 * login sent: the redirect did not come from this login (a stale browser tab,
 * or a forged request), so its code must not be used.
 *
 * @example Inspect a rejected callback
 * ```ts
 * import { parseCallbackUrl, SpotifyStateError } from "@spotikit/auth";
 *
 * try {
 *   parseCallbackUrl("http://127.0.0.1:8888/callback?code=abc&state=other", "expected");
 * } catch (error) {
 *   if (error instanceof SpotifyStateError) console.error(error.expected, error.received);
 * }
 * ```
 */
export class SpotifyStateError extends SpotifyAuthError {
  /** The state this login sent. */
  readonly expected: string;
  /** The state that came back, or `undefined` when there was none. */
  readonly received: string | undefined;

  /**
   * Creates an error for a missing or mismatched state.
   *
   * @param expected The state this login sent.
   * @param received The state that came back, if any.
   * @param options Standard error options (`cause`).
   */
  constructor(expected: string, received: string | undefined, options?: ErrorOptions) {
    super(
      received === undefined
        ? "The authorization callback has no state parameter, so it cannot be matched to this login. Start the login again from this program."
        : "The authorization callback's state does not match this login's (a stale browser tab or a forged request). Start the login again from this program.",
      options,
    );
    this.expected = expected;
    this.received = received;
  }
}

/**
 * A server answered with something that is not a valid OAuth response: a
 * non-JSON body, a token response missing `access_token`, a wrong
 * `token_type`, and so on.
 *
 * @example Report a broken token endpoint
 * ```ts
 * import { clientCredentialsFlow, SpotifyResponseError } from "@spotikit/auth";
 *
 * try {
 *   await clientCredentialsFlow({ clientId: "abc", clientSecret: "xyz" });
 * } catch (error) {
 *   if (error instanceof SpotifyResponseError) console.error(error.status, error.message);
 *   else throw error;
 * }
 * ```
 */
export class SpotifyResponseError extends SpotifyAuthError {
  /** HTTP status of the offending response. */
  readonly status: number;
  /** The raw response (not enumerable). */
  declare readonly response: Response | undefined;

  /**
   * Creates an error for an invalid response.
   *
   * @param message What is wrong with the response.
   * @param status The HTTP status of the response.
   * @param options The raw response and a cause.
   */
  constructor(
    message: string,
    status: number,
    options: ErrorOptions & { response?: Response | undefined } = {},
  ) {
    super(message, options);
    this.status = status;
    Object.defineProperty(this, "response", { value: options.response, enumerable: false });
  }
}

/**
 * The loopback callback listener could not start: the port is taken, or the
 * address cannot be bound.
 *
 * @example Suggest another port
 * ```ts
 * import { SpotifyCallbackServerError, startCallbackServer } from "@spotikit/auth";
 *
 * try {
 *   await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1:8888/callback" });
 * } catch (error) {
 *   if (error instanceof SpotifyCallbackServerError) console.error(error.message);
 *   else throw error;
 * }
 * ```
 */
export class SpotifyCallbackServerError extends SpotifyAuthError {}

/**
 * A login needs a person, and none can be reached: for example the redirected
 * URL had to be pasted, but standard input ended without one.
 *
 * @example Fall back when nobody can log in
 * ```ts
 * import { pkceFlow, SpotifyLoginRequiredError } from "@spotikit/auth";
 *
 * try {
 *   await pkceFlow({ clientId: "abc", redirectUri: "https://example.com/callback" });
 * } catch (error) {
 *   if (error instanceof SpotifyLoginRequiredError) console.error(error.message);
 *   else throw error;
 * }
 * ```
 */
export class SpotifyLoginRequiredError extends SpotifyAuthError {}

/**
 * The token endpoint could not be reached: DNS, connection refused or reset,
 * TLS. Nothing was changed on the server's side that the caller can see, so
 * a stored token stays valid and the call can be retried later.
 *
 * @example Retry later on a network failure
 * ```ts
 * import { clientCredentialsFlow, SpotifyNetworkError } from "@spotikit/auth";
 *
 * try {
 *   await clientCredentialsFlow({ clientId: "abc", clientSecret: "xyz" });
 * } catch (error) {
 *   if (error instanceof SpotifyNetworkError) console.error("Offline? Try again later.");
 *   else throw error;
 * }
 * ```
 */
export class SpotifyNetworkError extends SpotifyAuthError {}

/**
 * OAuth errors that came after a retried attempt which may have reached the
 * server: an `invalid_grant` then may mean the first attempt used a rotating
 * refresh token, not that the login is dead. Internal; not exported by mod.ts.
 */
export const afterAmbiguousRetry: WeakSet<SpotifyOAuthError> = new WeakSet();
