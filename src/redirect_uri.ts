/**
 * Checks a redirect URI against Spotify's rules before anything is started,
 * so a mistake is reported here with its fix rather than as Spotify's
 * `INVALID_CLIENT: Invalid redirect URI` page in the browser.
 *
 * @module
 */

/** Where the loopback listener of a redirect URI binds. */
export interface LoopbackAddress {
  /** The IP literal to bind: `127.0.0.1` or `::1`. */
  hostname: "127.0.0.1" | "::1";
  /**
   * The port written in the URI, or `undefined` when it has none: then any
   * port works (RFC 8252 §7.3) and the listener binds a free one.
   */
  port: number | undefined;
}

/** A redirect URI that passed {@linkcode parseRedirectUri}. */
export interface RedirectUri {
  /** The URI, parsed. */
  url: URL;
  /** Where to listen for the callback, or `undefined` when the URI is not loopback `http://`. */
  loopback: LoopbackAddress | undefined;
}

// URL drops a port equal to the scheme's default (":80"), so the written port
// is read from the text itself.
const HTTP_AUTHORITY = /^http:\/\/(?:\[[^\]]*\]|[^/?#:]*)(?::(\d*))?(?:[/?#]|$)/i;
const CANONICAL_LOOPBACK = /^http:\/\/(127\.0\.0\.1|\[::1\])(?::([^/?#]*))?(?:[/?#]|$)/i;

/**
 * Parses a redirect URI and checks it against Spotify's rules: `https://`
 * anywhere, `http://` only on the loopback IP literals `127.0.0.1` and
 * `[::1]`, never `localhost`, no fragment, no user info.
 *
 * @param uri The redirect URI, as registered in the Spotify dashboard.
 * @returns The parsed URI and, for loopback `http://` URIs, where to listen.
 * @throws {TypeError} When Spotify would refuse the URI; the message says
 * which URI to register instead.
 *
 * @example A URI without a port listens on any free port
 * ```ts
 * import { parseRedirectUri } from "@spotikit/auth";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * deepStrictEqual(parseRedirectUri("http://127.0.0.1/callback").loopback, {
 *   hostname: "127.0.0.1",
 *   port: undefined,
 * });
 * ```
 */
export function parseRedirectUri(uri: string | URL): RedirectUri {
  const text = String(uri);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(
      `Cannot use redirect URI "${text}": it is not an absolute URL; register and use one such as http://127.0.0.1:8888/callback`,
    );
  }
  if (url.hash || text.includes("#")) {
    throw new TypeError(
      `Cannot use redirect URI "${text}": it must not contain a fragment (#); remove it here and in the Spotify dashboard`,
    );
  }
  if (url.username || url.password) {
    throw new TypeError(
      `Cannot use redirect URI "${text}": it must not contain a user name or password`,
    );
  }
  if (url.protocol !== "http:") return { url, loopback: undefined };

  const written = HTTP_AUTHORITY.exec(text)?.[1];
  const port = written ? Number(written) : undefined;
  const suggestion = `http://127.0.0.1${written ? `:${written}` : ""}${url.pathname}${url.search}`;
  if (url.hostname === "localhost" || url.hostname.endsWith(".localhost")) {
    throw new TypeError(
      `Cannot use redirect URI "${text}": Spotify refuses "localhost" in redirect URIs. Register ${suggestion} in the Spotify dashboard and use it instead`,
    );
  }
  if (url.hostname !== "127.0.0.1" && url.hostname !== "[::1]") {
    throw new TypeError(
      `Cannot use redirect URI "${text}": Spotify accepts http:// only on the loopback addresses 127.0.0.1 and [::1]; use https://${url.host}${url.pathname} or ${suggestion}`,
    );
  }
  // Spotify matches the text as registered, and the listener splices its
  // port into that text, so the host must be written in its canonical form.
  const canonical = CANONICAL_LOOPBACK.exec(text);
  if (!canonical || (canonical[2] !== undefined && !/^\d{1,5}$/.test(canonical[2]))) {
    throw new TypeError(
      `Cannot use redirect URI "${text}": write the loopback address as 127.0.0.1 or [::1] followed by an optional port number, as in ${suggestion}`,
    );
  }
  if (port !== undefined && (port < 1 || port > 65535)) {
    throw new TypeError(`Cannot use redirect URI "${text}": port ${port} is not from 1 to 65535`);
  }
  return {
    url,
    loopback: { hostname: url.hostname === "[::1]" ? "::1" : "127.0.0.1", port },
  };
}
