/**
 * The token object every flow returns.
 *
 * @module
 */

/**
 * A Spotify token: a plain object that survives `JSON.stringify` and
 * `JSON.parse` unchanged, so any store can keep it.
 *
 * @example Use a token with the Web API
 * ```ts
 * import type { SpotifyToken } from "@spotikit/auth";
 *
 * declare const token: SpotifyToken;
 * const me = await fetch("https://api.spotify.com/v1/me", {
 *   headers: { authorization: `Bearer ${token.accessToken}` },
 * });
 * ```
 */
export interface SpotifyToken {
  /** The access token to send as `Authorization: Bearer …`. */
  accessToken: string;
  /** Always `"Bearer"` (Spotify also sends `"bearer"`; it is normalised). */
  tokenType: "Bearer";
  /** The scopes Spotify granted, sorted; may differ from those requested. */
  scope: string[];
  /** When the access token expires, in milliseconds since the epoch. */
  expiresAt: number;
  /** The refresh token; absent for client credentials. */
  refreshToken?: string;
}

/** Options for {@linkcode isTokenExpired}. */
export interface IsTokenExpiredOptions {
  /**
   * How long before its expiry a token already counts as expired, in
   * milliseconds, so that it does not expire on its way to Spotify.
   *
   * @default {60000}
   */
  margin?: number | undefined;
  /**
   * The clock, in milliseconds since the epoch.
   *
   * @default {Date.now}
   */
  now?: (() => number) | undefined;
}

/**
 * Tells whether a token's access token has expired, or will within the margin.
 *
 * @param token The token.
 * @param options The margin and the clock.
 * @returns `true` when the token must be refreshed before use.
 *
 * @example Refresh when needed
 * ```ts
 * import { isTokenExpired, refreshToken, type SpotifyToken } from "@spotikit/auth";
 *
 * declare let token: SpotifyToken;
 * if (isTokenExpired(token)) token = await refreshToken(token, { clientId: "abc" });
 * ```
 */
export function isTokenExpired(token: SpotifyToken, options: IsTokenExpiredOptions = {}): boolean {
  const { margin = 60_000, now = Date.now } = options;
  return now() + margin >= token.expiresAt;
}

// Custom inspection for Deno and Node: console.log(token) shows the shape of
// a token, never its secrets. Non-enumerable, so JSON and structuredClone
// ignore it and the token stays a plain object.
const INSPECT_SYMBOLS = [
  Symbol.for("Deno.customInspect"),
  Symbol.for("nodejs.util.inspect.custom"),
];

function inspectToken(this: SpotifyToken): string {
  const refresh = this.refreshToken === undefined ? "" : `, refreshToken: "[redacted]"`;
  return `SpotifyToken { accessToken: "[redacted]", tokenType: "${this.tokenType}", scope: ${
    JSON.stringify(this.scope)
  }, expiresAt: ${this.expiresAt} (${new Date(this.expiresAt).toISOString()})${refresh} }`;
}

/** Makes `console.log` and `Deno.inspect` of a token redact its secrets; returns the token. */
export function redactSecrets<T extends SpotifyToken>(token: T): T {
  for (const symbol of INSPECT_SYMBOLS) {
    Object.defineProperty(token, symbol, {
      value: inspectToken,
      enumerable: false,
      configurable: true,
      writable: true,
    });
  }
  return token;
}
