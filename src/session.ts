/**
 * A session: hands back a valid access token on every call, from the store,
 * by refreshing, or by logging in, and refreshes once however many callers
 * and processes ask at the same time.
 *
 * @module
 */

import { abortable, formatDuration } from "./_timing.ts";
import { optionalEnv } from "./_env.ts";
import { afterAmbiguousRetry, SpotifyLoginRequiredError, SpotifyOAuthError } from "./errors.ts";
import { FileTokenStore } from "./file_token_store.ts";
import type { InteractiveFlowOptions } from "./flows.ts";
import { normalizeScopes, type ScopeInput } from "./scopes.ts";
import { isTokenExpired, redactSecrets, type SpotifyToken } from "./token.ts";
import { keyName, type TokenKey, type TokenRecord, type TokenStore } from "./token_store.ts";

/** Which flow a session uses to get a token. */
export type SpotifyAuthFlow = "pkce" | "authorization_code" | "client_credentials";

/** What {@linkcode SpotifyAuthOptions.onConsentExpiring} is told. */
export interface ConsentExpiringInfo {
  /** When the user consented (epoch ms). */
  consentedAt: number;
  /** When the refresh token stops working and a new login is needed (epoch ms). */
  expiresAt: number;
}

/** Options for {@linkcode createSpotifyAuth}. Every option has an environment fallback or a default. */
export interface SpotifyAuthOptions {
  /**
   * The app's client id.
   *
   * @default {Deno.env.get("SPOTIFY_CLIENT_ID") ?? Deno.env.get("SPOTIPY_CLIENT_ID")}
   */
  clientId?: string | undefined;
  /**
   * The client secret; leave it out for PKCE.
   *
   * @default {Deno.env.get("SPOTIFY_CLIENT_SECRET") ?? Deno.env.get("SPOTIPY_CLIENT_SECRET")}
   */
  clientSecret?: string | undefined;
  /**
   * The redirect URI for logins; only needed when a login happens.
   *
   * @default {Deno.env.get("SPOTIFY_REDIRECT_URI") ?? Deno.env.get("SPOTIPY_REDIRECT_URI")}
   */
  redirectUri?: string | URL | undefined;
  /**
   * The scopes the token must have; a stored token without one of them
   * needs a new login.
   *
   * @default {[]}
   */
  scope?: ScopeInput | undefined;
  /**
   * A label for the user, so that several accounts can be kept for one app.
   *
   * @default {undefined}
   */
  user?: string | undefined;
  /**
   * The flow: `"client_credentials"` for an app token with no user;
   * otherwise `"authorization_code"` when there is a client secret, `"pkce"`
   * when there is none.
   *
   * @default {clientSecret ? "authorization_code" : "pkce"}
   */
  flow?: SpotifyAuthFlow | undefined;
  /**
   * Where tokens are kept between runs.
   *
   * @default {new FileTokenStore()}
   */
  store?: TokenStore | undefined;
  /**
   * Whether a missing token may start a login in the browser; when `false`,
   * {@linkcode SpotifyLoginRequiredError} is thrown instead.
   *
   * @default {Deno.stdin.isTerminal()}
   */
  interactive?: boolean | undefined;
  /**
   * How long before expiry a token is refreshed, in milliseconds.
   *
   * @default {60000}
   */
  margin?: number | undefined;
  /**
   * Called once per session when the refresh token is within `warnBefore` of
   * the six months after consent at which Spotify stops accepting it.
   *
   * @default {undefined}
   */
  onConsentExpiring?: ((info: ConsentExpiringInfo) => void) | undefined;
  /**
   * How early {@linkcode SpotifyAuthOptions.onConsentExpiring} is called, in milliseconds.
   *
   * @default {14 days}
   */
  warnBefore?: number | undefined;
  /**
   * The clock (epoch ms), for expiry.
   *
   * @default {Date.now}
   */
  now?: (() => number) | undefined;
  /**
   * The `fetch` used for the token endpoint.
   *
   * @default {globalThis.fetch}
   */
  fetch?: typeof fetch | undefined;
  /**
   * The token endpoint.
   *
   * @default {"https://accounts.spotify.com/api/token"}
   */
  tokenEndpoint?: string | URL | undefined;
  /**
   * How long one token request may take, in milliseconds. A refresh, with
   * its retries and the wait for another process's lock, is given up after
   * `(retries + 2) × requestTimeout + retries × maxRetryDelay` (140 s by
   * default).
   *
   * @default {30000}
   */
  requestTimeout?: number | undefined;
  /**
   * How many times a token request is repeated after a 429, a 5xx or a
   * broken connection.
   *
   * @default {2}
   */
  retries?: number | undefined;
  /**
   * The longest wait before a retry, in milliseconds.
   *
   * @default {10000}
   */
  maxRetryDelay?: number | undefined;
  /**
   * The authorization endpoint.
   *
   * @default {"https://accounts.spotify.com/authorize"}
   */
  authorizeEndpoint?: string | URL | undefined;
  /**
   * How a login reaches the user; see {@linkcode InteractiveFlowOptions.openBrowser}.
   *
   * @default {true}
   */
  openBrowser?: InteractiveFlowOptions["openBrowser"];
  /**
   * How long a login waits for the browser, in milliseconds.
   *
   * @default {300000}
   */
  timeout?: number | undefined;
  /**
   * Show Spotify's consent dialog on every login.
   *
   * @default {false}
   */
  showDialog?: boolean | undefined;
}

/** Options for each call of a {@linkcode SpotifyAuth}. */
export interface SpotifyAuthCallOptions {
  /**
   * Aborts the call; it rejects with the signal's reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
}

/** A session; see {@linkcode createSpotifyAuth}. */
export interface SpotifyAuth {
  /** The store key of this session's token. */
  readonly key: TokenKey;
  /**
   * Returns a valid access token: the stored one, a refreshed one, or one
   * from a new login (when interactive).
   *
   * @param options Abort signal.
   * @returns The access token.
   * @throws {SpotifyLoginRequiredError} When a login is needed and the
   * session is not interactive, or the refresh token was revoked or expired.
   */
  getAccessToken(options?: SpotifyAuthCallOptions): Promise<string>;
  /**
   * Like {@linkcode SpotifyAuth.getAccessToken}, but returns the whole token.
   *
   * @param options Abort signal.
   * @returns The token.
   */
  getToken(options?: SpotifyAuthCallOptions): Promise<SpotifyToken>;
  /**
   * Logs in now, whatever is stored, and stores the new token.
   *
   * @param options Abort signal.
   * @returns The token.
   */
  login(options?: SpotifyAuthCallOptions): Promise<SpotifyToken>;
  /**
   * Deletes the stored token.
   *
   * @param options Abort signal.
   */
  logout(options?: SpotifyAuthCallOptions): Promise<void>;
}

const DAY = 24 * 3600_000;

/**
 * Creates a session that keeps a valid token across runs: it reads the
 * store, refreshes a token that is about to expire (once, however many
 * callers and processes ask at the same time), and logs in when there is no
 * token or it lacks a requested scope.
 *
 * A refresh that fails on the network or with a 5xx leaves the stored token
 * as it was. One that fails with `invalid_grant` (the user revoked access, or
 * the refresh token reached the six months after consent that Spotify allows)
 * deletes the dead token and asks for a new login, instead of failing the
 * same way on every run.
 *
 * @param options Client, scopes, store and flow; client id, secret and
 * redirect URI fall back to `SPOTIFY_*`, then `SPOTIPY_*`, environment variables.
 * @returns The session.
 * @throws {TypeError} When no client id is given or set in the environment;
 * the message names the variable.
 *
 * @example A script that logs in once, then runs for months without a browser
 * ```ts
 * import { createSpotifyAuth } from "@spotikit/auth";
 *
 * const auth = createSpotifyAuth({
 *   clientId: "your-client-id",
 *   redirectUri: "http://127.0.0.1:8888/callback",
 *   scope: ["user-read-private"],
 * });
 * const response = await fetch("https://api.spotify.com/v1/me", {
 *   headers: { authorization: `Bearer ${await auth.getAccessToken()}` },
 * });
 * ```
 */
export function createSpotifyAuth(options: SpotifyAuthOptions = {}): SpotifyAuth {
  const clientId = options.clientId ?? fromEnv("CLIENT_ID");
  if (!clientId) {
    throw new TypeError(
      "Missing the Spotify client id: pass clientId, or set SPOTIFY_CLIENT_ID (SPOTIPY_CLIENT_ID also works) and allow reading it with --allow-env",
    );
  }
  const clientSecret = options.clientSecret ?? fromEnv("CLIENT_SECRET");
  const flow = options.flow ?? (clientSecret ? "authorization_code" : "pkce");
  if (flow !== "pkce" && !clientSecret) {
    throw new TypeError(
      `Missing the Spotify client secret for the ${flow} flow: pass clientSecret, or set SPOTIFY_CLIENT_SECRET (SPOTIPY_CLIENT_SECRET also works)`,
    );
  }
  const key: TokenKey = { clientId, user: options.user };
  const scope = normalizeScopes(options.scope);
  const store = options.store ?? new FileTokenStore();
  const now = options.now ?? Date.now;
  const margin = options.margin ?? 60_000;
  const warnBefore = options.warnBefore ?? 14 * DAY;
  const endpoint = {
    fetch: options.fetch,
    now,
    tokenEndpoint: options.tokenEndpoint,
    requestTimeout: options.requestTimeout,
    retries: options.retries,
    maxRetryDelay: options.maxRetryDelay,
  };
  const secretForRefresh = flow === "authorization_code" ? clientSecret : undefined;

  let warned = false;
  // The last record read or written: while it is fresh, no store read is
  // needed (an access token stays valid until it expires, even when another
  // process refreshes it meanwhile).
  let cached: TokenRecord | undefined;

  const isFresh = (record: TokenRecord): boolean => !isTokenExpired(record.token, { margin, now });
  const hasScopes = (record: TokenRecord): boolean =>
    scope.every((name) => record.token.scope.includes(name));

  const warnIfConsentExpiring = (record: TokenRecord): void => {
    if (warned || !options.onConsentExpiring || record.consentedAt === undefined) return;
    const expiresAt = consentExpiresAt(record.consentedAt);
    if (now() < expiresAt - warnBefore) return;
    warned = true;
    options.onConsentExpiring({ consentedAt: record.consentedAt, expiresAt });
  };

  // Tokens from any store, including a caller's own, redact their secrets
  // when inspected.
  const read = async (signal: AbortSignal | undefined): Promise<TokenRecord | undefined> => {
    const record = await store.get(key, { signal });
    if (record) redactSecrets(record.token);
    return record;
  };

  // Every write goes through the lock, so that a login, a logout and a
  // refresh never interleave their reads and writes.
  const locked = <T>(fn: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> =>
    store.lock ? store.lock(key, fn, { signal }) : localLock(store, key, fn);
  const save = (record: TokenRecord, signal: AbortSignal | undefined) =>
    locked(async () => {
      await store.set(key, record, { signal });
      cached = record;
    }, signal);

  const who = `client ${clientId}${options.user === undefined ? "" : ` (user "${options.user}")`}`;

  const login = shared(async (signal): Promise<SpotifyToken> => {
    if (flow === "client_credentials") {
      const { clientCredentialsFlow } = await loadFlows();
      const token = await clientCredentialsFlow({
        ...endpoint,
        clientId,
        clientSecret: clientSecret!,
        signal,
      });
      await save({ token }, signal);
      return token;
    }
    const redirectUri = options.redirectUri ?? fromEnv("REDIRECT_URI");
    if (!redirectUri) {
      throw new TypeError(
        "Missing the redirect URI for the Spotify login: pass redirectUri, or set SPOTIFY_REDIRECT_URI (SPOTIPY_REDIRECT_URI also works), for example to http://127.0.0.1:8888/callback",
      );
    }
    // A record the store cannot read is the user's to inspect: fail before
    // the browser opens rather than overwrite it afterwards.
    await read(signal);
    const flowOptions: InteractiveFlowOptions = {
      ...endpoint,
      clientId,
      redirectUri,
      scope,
      signal,
      authorizeEndpoint: options.authorizeEndpoint,
      openBrowser: options.openBrowser,
      timeout: options.timeout,
      showDialog: options.showDialog,
    };
    const consentedAt = now();
    const { authorizationCodeFlow, pkceFlow } = await loadFlows();
    const token = flow === "authorization_code"
      ? await authorizationCodeFlow({ ...flowOptions, clientSecret: clientSecret! })
      : await pkceFlow(flowOptions);
    await save({ token, consentedAt }, signal);
    return token;
  });

  const loginRequired = (why: string, cause?: unknown): SpotifyLoginRequiredError =>
    new SpotifyLoginRequiredError(
      `${why} Log in again from a terminal: call login(), or run the script there so that it opens the browser.`,
      cause === undefined ? undefined : { cause },
    );

  const loginOrThrow = (
    why: string,
    signal: AbortSignal | undefined,
    cause?: unknown,
  ): Promise<SpotifyToken> => {
    const interactive = options.interactive ?? isTerminal();
    return interactive ? loginIfStillNeeded(signal) : Promise.reject(loginRequired(why, cause));
  };

  // A caller whose store read began before another caller's login finished
  // finds that login's token here instead of opening a second browser.
  const loginIfStillNeeded = async (signal: AbortSignal | undefined): Promise<SpotifyToken> => {
    const current = await read(signal);
    if (current && isFresh(current) && hasScopes(current)) {
      cached = current;
      return current.token;
    }
    return login(signal);
  };

  type Outcome = { token: SpotifyToken } | { login: string; cause?: unknown };

  // Under the store's lock: read again (another process may have refreshed
  // meanwhile), then refresh or fetch a new app token.
  const renewUnderLock = (signal: AbortSignal): Promise<Outcome> =>
    locked(async (): Promise<Outcome> => {
      const current = await read(signal);
      if (flow === "client_credentials") {
        if (current && isFresh(current)) return { token: current.token };
        const { clientCredentialsFlow } = await loadFlows();
        const token = await clientCredentialsFlow({
          ...endpoint,
          clientId,
          clientSecret: clientSecret!,
          signal,
        });
        await store.set(key, cached = { token }, { signal });
        return { token };
      }
      if (current === undefined || !hasScopes(current)) {
        return { login: `The stored Spotify login for ${who} was removed or changed meanwhile.` };
      }
      if (isFresh(current)) {
        cached = current;
        return { token: current.token };
      }
      if (!current.token.refreshToken) {
        return {
          login: `The stored Spotify login for ${who} has expired and has no refresh token.`,
        };
      }
      const { refreshToken } = await loadFlows();
      let token: SpotifyToken;
      try {
        token = await refreshToken(current.token, {
          ...endpoint,
          clientId,
          clientSecret: secretForRefresh,
          signal,
        });
      } catch (error) {
        // After a retry whose first attempt may have gone through, the token
        // may have been rotated by that attempt: keep it, and let a clean
        // attempt next time decide.
        if (
          error instanceof SpotifyOAuthError && error.error === "invalid_grant" &&
          !afterAmbiguousRetry.has(error)
        ) {
          // A lease that expired, or a store without a lock of its own, may
          // have let another process write a rotated token: that one lives.
          const latest = await read(signal);
          if (
            latest && latest.token.refreshToken !== current.token.refreshToken && hasScopes(latest)
          ) {
            cached = latest;
            return { token: latest.token };
          }
          // Dead for good: keeping it would fail the same way on every run.
          await store.delete(key, { signal });
          return {
            login:
              `Spotify no longer accepts the stored refresh token for ${who} (access was revoked, or it is six months since consent); it was deleted.`,
            cause: error,
          };
        }
        throw error;
      }
      const record = { token, consentedAt: current.consentedAt };
      cached = record;
      try {
        await store.set(key, record, { signal });
      } catch {
        // A rotated refresh token exists nowhere else: one more try.
        await store.set(key, record, { signal });
      }
      return { token };
    }, signal);

  // However many callers ask at once, this session renews once, and gives
  // up waiting for another process's lock after a bounded time.
  // Room for every attempt and wait of one refresh, plus as much again for
  // another process's lock.
  const requestTimeout = options.requestTimeout ?? 30_000;
  const retries = options.retries ?? 2;
  const renewLimit = Math.min(
    (retries + 2) * requestTimeout + retries * (options.maxRetryDelay ?? 10_000),
    2 ** 31 - 1, // the longest timer there is; NaN from bad options ends up here too
  ) || 2 ** 31 - 1;
  const renewShared = shared((signal) =>
    withTimeout(
      renewUnderLock,
      signal,
      renewLimit,
      `Timed out after ${
        formatDuration(renewLimit)
      } renewing the Spotify token for ${who} (is another process holding the store's lock?). The stored token was not changed; try again.`,
    )
  );
  const renew = async (signal: AbortSignal | undefined): Promise<SpotifyToken> => {
    const outcome = await renewShared(signal);
    return "token" in outcome ? outcome.token : loginOrThrow(outcome.login, signal, outcome.cause);
  };

  const getToken = async (callOptions: SpotifyAuthCallOptions = {}): Promise<SpotifyToken> => {
    const { signal } = callOptions;
    signal?.throwIfAborted();
    if (cached && isFresh(cached) && hasScopes(cached)) return cached.token;
    const record = await read(signal);
    if (flow === "client_credentials") {
      if (!record || !isFresh(record)) return renew(signal);
      cached = record;
      return record.token;
    }
    if (record === undefined) {
      return loginOrThrow(`No Spotify login is stored for ${who}.`, signal);
    }
    if (!hasScopes(record)) {
      const missing = scope.filter((name) => !record.token.scope.includes(name));
      return loginOrThrow(
        `The stored Spotify login for ${who} lacks the scope${missing.length > 1 ? "s" : ""} ${
          missing.join(", ")
        }.`,
        signal,
      );
    }
    warnIfConsentExpiring(record);
    if (!isFresh(record)) return renew(signal);
    cached = record;
    return record.token;
  };

  return {
    key,
    getToken,
    getAccessToken: async (callOptions) => (await getToken(callOptions)).accessToken,
    login: (callOptions = {}) => login(callOptions.signal),
    logout: ({ signal } = {}) =>
      locked(async () => {
        await store.delete(key, { signal });
        cached = undefined;
      }, signal),
  };
}

/**
 * One run of `start` shared by every caller who asks while it runs. A caller
 * who gives up stops waiting; when all have given up, the run is aborted, so
 * that nothing (a listener, a lock wait) outlives its last caller.
 */
function shared<T>(
  start: (signal: AbortSignal) => Promise<T>,
): (signal?: AbortSignal | undefined) => Promise<T> {
  interface Run {
    promise: Promise<T>;
    controller: AbortController;
    waiters: number;
  }
  let run: Run | undefined;
  return async (signal) => {
    signal?.throwIfAborted();
    if (!run) {
      const controller = new AbortController();
      const current: Run = { controller, waiters: 0, promise: Promise.resolve() as Promise<T> };
      current.promise = start(controller.signal).finally(() => {
        if (run === current) run = undefined;
      });
      current.promise.catch(() => {});
      run = current;
    }
    const current = run;
    current.waiters++;
    try {
      return await abortable(current.promise, signal);
    } finally {
      current.waiters--;
      if (signal?.aborted && current.waiters === 0 && run === current) {
        // A caller who comes next must start afresh, not join a dead run.
        run = undefined;
        current.controller.abort(signal.reason);
      }
    }
  };
}

/** Runs `fn` with a signal that also aborts, with a TimeoutError, after `ms`. */
async function withTimeout<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  signal: AbortSignal,
  ms: number,
  message: string,
): Promise<T> {
  const timedOut = new AbortController();
  const timer = setTimeout(() => timedOut.abort(new DOMException(message, "TimeoutError")), ms);
  try {
    return await fn(AbortSignal.any([signal, timedOut.signal]));
  } finally {
    clearTimeout(timer);
  }
}

// The flows (listener, browser, token endpoint) load only when a token must
// be fetched, so a run that finds a valid token in the store stays small.
const loadFlows = () => import("./flows.ts");

function fromEnv(name: string): string | undefined {
  return optionalEnv(`SPOTIFY_${name}`) ?? optionalEnv(`SPOTIPY_${name}`);
}

function isTerminal(): boolean {
  try {
    return Deno.stdin.isTerminal();
  } catch {
    return false;
  }
}

/** When Spotify stops accepting a refresh token: six months after consent. */
export function consentExpiresAt(consentedAt: number): number {
  const date = new Date(consentedAt);
  date.setUTCMonth(date.getUTCMonth() + 6);
  return date.getTime();
}

// Sessions in one process that share a store without a lock of its own
// still refresh one at a time.
const localLocks = new WeakMap<TokenStore, Map<string, Promise<unknown>>>();

async function localLock<T>(store: TokenStore, key: TokenKey, fn: () => Promise<T>): Promise<T> {
  let locks = localLocks.get(store);
  if (!locks) localLocks.set(store, locks = new Map());
  const name = keyName(key);
  const previous = locks.get(name) ?? Promise.resolve();
  const run = previous.catch(() => {}).then(fn);
  const tail = run.catch(() => {});
  locks.set(name, tail);
  try {
    return await run;
  } finally {
    if (locks.get(name) === tail) locks.delete(name);
  }
}
