/**
 * Spotify OAuth for Deno scripts: log a user in with one awaited call, and
 * keep the token fresh, with nothing but web standards underneath.
 *
 * The interactive flows start a listener on the loopback redirect URI, open
 * the browser at Spotify's consent page, check `state`, and exchange the code
 * (with PKCE, or with the client secret). The building blocks they use are
 * exported too, for callers who run the steps themselves.
 *
 * @example Log in with PKCE
 * ```ts
 * import { pkceFlow, refreshToken, isTokenExpired } from "@spotikit/auth";
 *
 * let token = await pkceFlow({
 *   clientId: "your-client-id",
 *   redirectUri: "http://127.0.0.1:8888/callback",
 *   scope: ["user-read-private"],
 * });
 * if (isTokenExpired(token)) token = await refreshToken(token, { clientId: "your-client-id" });
 * ```
 *
 * @module
 */

export {
  authorizationCodeFlow,
  type AuthorizationCodeFlowOptions,
  clientCredentialsFlow,
  type ClientCredentialsFlowOptions,
  exchangeCode,
  type ExchangeCodeOptions,
  type InteractiveFlowOptions,
  pkceFlow,
  type PkceFlowOptions,
  refreshToken,
  type RefreshTokenOptions,
} from "./src/flows.ts";
export { isTokenExpired, type IsTokenExpiredOptions, type SpotifyToken } from "./src/token.ts";
export { SPOTIFY_TOKEN_ENDPOINT, type TokenEndpointOptions } from "./src/token_endpoint.ts";
export {
  createAuthorizeUrl,
  type CreateAuthorizeUrlOptions,
  SPOTIFY_AUTHORIZE_ENDPOINT,
} from "./src/authorize_url.ts";
export {
  createCodeChallenge,
  createCodeVerifier,
  type CreateCodeVerifierOptions,
  createState,
} from "./src/pkce.ts";
export { parseCallbackUrl } from "./src/callback.ts";
export {
  type CallbackServer,
  startCallbackServer,
  type StartCallbackServerOptions,
  type WaitForCodeOptions,
} from "./src/callback_server.ts";
export { type LoopbackAddress, parseRedirectUri, type RedirectUri } from "./src/redirect_uri.ts";
export {
  normalizeScopes,
  type ScopeInput,
  SPOTIFY_SCOPES,
  type SpotifyScope,
} from "./src/scopes.ts";
export {
  browserCommands,
  type BrowserCommandsOptions,
  openBrowser,
  type OpenBrowserOptions,
} from "./src/browser.ts";
export {
  SpotifyAuthError,
  SpotifyCallbackServerError,
  SpotifyLoginRequiredError,
  SpotifyNetworkError,
  SpotifyOAuthError,
  type SpotifyOAuthErrorOptions,
  SpotifyResponseError,
  SpotifyStateError,
} from "./src/errors.ts";
export {
  MemoryTokenStore,
  SpotifyTokenStoreError,
  type TokenKey,
  type TokenRecord,
  type TokenStore,
  type TokenStoreOptions,
} from "./src/token_store.ts";
export {
  defaultTokenDirectory,
  FileTokenStore,
  type FileTokenStoreOptions,
} from "./src/file_token_store.ts";
export {
  type ConsentExpiringInfo,
  createSpotifyAuth,
  type SpotifyAuth,
  type SpotifyAuthCallOptions,
  type SpotifyAuthFlow,
  type SpotifyAuthOptions,
} from "./src/session.ts";
