/**
 * Reads an authorization callback URL: the code, or why there is none. Used
 * by the loopback listener and by the paste fallback alike.
 *
 * @module
 */

import { SpotifyAuthError, SpotifyOAuthError, SpotifyStateError } from "./errors.ts";

/**
 * Extracts the authorization code from the URL Spotify redirected the
 * browser to, after checking that its `state` is the one this login sent.
 * Extra parameters (such as `iss`) are ignored.
 *
 * The state is checked before anything else, so an error that did not come
 * from this login is never reported as if it did.
 *
 * @param url The full redirected URL, as the listener saw it or as the user
 * pasted it.
 * @param expectedState The state this login put in the authorize URL.
 * @returns The authorization code.
 * @throws {TypeError} When `url` is not an absolute URL.
 * @throws {SpotifyStateError} When `state` is missing, repeated or different.
 * @throws {SpotifyOAuthError} When the callback carries `?error=`, such as
 * `access_denied`.
 * @throws {SpotifyAuthError} When the callback has no code, or more than one.
 *
 * @example Read a callback
 * ```ts
 * import { parseCallbackUrl } from "@spotikit/auth";
 * import { strictEqual } from "node:assert/strict";
 *
 * const code = parseCallbackUrl("http://127.0.0.1:8888/callback?code=AQB&state=s1", "s1");
 * strictEqual(code, "AQB");
 * ```
 */
export function parseCallbackUrl(url: string | URL, expectedState: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      "Cannot read the callback: it is not a URL; copy the whole address from the browser's address bar, starting with http",
    );
  }
  const params = parsed.searchParams;
  const states = params.getAll("state");
  if (states.length !== 1 || !sameString(states[0]!, expectedState)) {
    throw new SpotifyStateError(expectedState, states.length ? states.join(", ") : undefined);
  }
  const error = params.get("error");
  if (error !== null) {
    throw new SpotifyOAuthError(
      error || "unknown_error",
      params.get("error_description") ?? undefined,
    );
  }
  const codes = params.getAll("code");
  if (codes.length !== 1 || !codes[0]) {
    throw new SpotifyAuthError(
      codes.length > 1
        ? "The callback carries more than one code, so none can be trusted. Start the login again."
        : "The callback carries neither a code nor an error. Copy the whole address the browser was redirected to, or start the login again.",
    );
  }
  return codes[0];
}

// Constant time, so the listener does not tell a local attacker how much of
// a guessed state was right.
function sameString(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
