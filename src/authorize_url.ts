/**
 * Builds the URL of Spotify's consent page.
 *
 * @module
 */

import { normalizeScopes, type ScopeInput } from "./scopes.ts";

/** Spotify's authorization endpoint. */
export const SPOTIFY_AUTHORIZE_ENDPOINT = "https://accounts.spotify.com/authorize";

/** Options for {@linkcode createAuthorizeUrl}. */
export interface CreateAuthorizeUrlOptions {
  /** The app's client id from the Spotify dashboard. */
  clientId: string;
  /** The redirect URI, exactly as registered (with the listener's real port, if it chose one). */
  redirectUri: string | URL;
  /** The state to bind the callback to this login; see {@linkcode createState}. */
  state: string;
  /**
   * Scopes to ask for.
   *
   * @default {[]}
   */
  scope?: ScopeInput | undefined;
  /**
   * The PKCE S256 challenge; see {@linkcode createCodeChallenge}. Omit it for
   * the authorization code flow with a client secret.
   *
   * @default {undefined}
   */
  codeChallenge?: string | undefined;
  /**
   * Ask Spotify to show the consent dialog even when the user already approved.
   *
   * @default {false}
   */
  showDialog?: boolean | undefined;
  /**
   * The authorization endpoint.
   *
   * @default {"https://accounts.spotify.com/authorize"}
   */
  authorizeEndpoint?: string | URL | undefined;
}

/**
 * Creates the URL that sends the user to Spotify's consent page.
 *
 * @param options Client, redirect URI, state, scopes and PKCE challenge.
 * @returns The authorize URL.
 * @throws {TypeError} When `clientId` or `state` is empty.
 *
 * @example A PKCE authorize URL
 * ```ts
 * import { createAuthorizeUrl, createCodeChallenge, createCodeVerifier, createState } from "@spotikit/auth";
 *
 * const url = createAuthorizeUrl({
 *   clientId: "abc",
 *   redirectUri: "http://127.0.0.1:8888/callback",
 *   state: createState(),
 *   scope: ["user-read-private"],
 *   codeChallenge: await createCodeChallenge(createCodeVerifier()),
 * });
 * ```
 */
export function createAuthorizeUrl(options: CreateAuthorizeUrlOptions): URL {
  const { clientId, state, codeChallenge, showDialog = false } = options;
  if (!clientId) throw new TypeError("Cannot create an authorize URL: clientId is empty");
  if (!state) throw new TypeError("Cannot create an authorize URL: state is empty");
  const url = new URL(options.authorizeEndpoint ?? SPOTIFY_AUTHORIZE_ENDPOINT);
  // Built apart and assigned once: each searchParams.set() on a URL
  // re-serialises the whole URL.
  const params = new URLSearchParams(url.search);
  params.set("client_id", clientId);
  params.set("response_type", "code");
  params.set("redirect_uri", String(options.redirectUri));
  params.set("state", state);
  const scope = normalizeScopes(options.scope);
  if (scope.length > 0) params.set("scope", scope.join(" "));
  if (showDialog) params.set("show_dialog", "true");
  if (codeChallenge !== undefined) {
    params.set("code_challenge_method", "S256");
    params.set("code_challenge", codeChallenge);
  }
  url.search = params.toString();
  return url;
}
