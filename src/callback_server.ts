/**
 * The loopback listener that catches Spotify's redirect at the end of a login.
 *
 * @module
 */

import { parseCallbackUrl } from "./callback.ts";
import { type CallbackPage, PAGE_HEADERS, renderCallbackPage } from "./callback_page.ts";
import {
  SpotifyAuthError,
  SpotifyCallbackServerError,
  SpotifyOAuthError,
  SpotifyStateError,
} from "./errors.ts";
import { parseRedirectUri } from "./redirect_uri.ts";
import { checkTimeout, formatDuration } from "./_timing.ts";

/** Options for {@linkcode startCallbackServer}. */
export interface StartCallbackServerOptions {
  /**
   * The redirect URI: `http://127.0.0.1[:port]/path` or `http://[::1][:port]/path`.
   * Without a port, the listener binds a free one and reports it in
   * {@linkcode CallbackServer.redirectUri}.
   */
  redirectUri: string | URL;
  /**
   * Aborting closes the listener; a pending wait rejects with the signal's reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
}

/** Options for {@linkcode CallbackServer.waitForCode}. */
export interface WaitForCodeOptions {
  /**
   * How long to wait for the browser, in milliseconds. Spotify does not
   * redirect at all when the client id or redirect URI is wrong, so the wait
   * must end by itself.
   *
   * @default {300000}
   */
  timeout?: number | undefined;
  /**
   * Aborting ends the wait with the signal's reason and closes the listener.
   *
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
}

/** A running loopback listener; see {@linkcode startCallbackServer}. */
export interface CallbackServer extends AsyncDisposable {
  /**
   * The redirect URI to put in the authorize URL: the one given, with the
   * real port filled in when it had none.
   */
  readonly redirectUri: string;
  /**
   * Waits for the callback of the login that sent `expectedState`, then
   * closes the listener (RFC 8252 §8.3: the port is open only for the login).
   *
   * Requests to other paths get 404 and requests with another method 405;
   * callbacks whose state is missing or different get an error page and do
   * not end the wait, because anyone able to reach the port could send them.
   *
   * @param expectedState The state in the authorize URL.
   * @param options Timeout and abort signal.
   * @returns The authorization code.
   * @throws {SpotifyOAuthError} When the callback carries `?error=`.
   * @throws {SpotifyAuthError} When the callback has the right state but no code.
   * @throws {DOMException} A `TimeoutError` when the browser did not come back
   * in time, or the abort reason when a signal aborted.
   * @throws {TypeError} When called a second time.
   */
  waitForCode(expectedState: string, options?: WaitForCodeOptions): Promise<string>;
  /** Closes the listener; a pending wait rejects with an `AbortError`. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT = 5 * 60_000;

/**
 * Starts the loopback listener for a redirect URI, on its IP literal and port
 * only (never on other interfaces).
 *
 * @param options The redirect URI and an abort signal.
 * @returns The running listener.
 * @throws {TypeError} When the redirect URI is not a loopback `http://` URI
 * Spotify accepts (for `localhost`, the message gives the URI to register).
 * @throws {SpotifyCallbackServerError} When the port is in use or cannot be bound.
 *
 * @example Wait for one callback
 * ```ts
 * import { createState, startCallbackServer } from "@spotikit/auth";
 *
 * await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
 * const state = createState();
 * const waiting = server.waitForCode(state, { timeout: 10_000 });
 * const page = await fetch(`${server.redirectUri}?code=abc&state=${state}`);
 * await page.body?.cancel();
 * console.log(await waiting); // "abc"
 * ```
 */
export function startCallbackServer(options: StartCallbackServerOptions): Promise<CallbackServer> {
  try {
    return Promise.resolve(listen(options));
  } catch (error) {
    return Promise.reject(error);
  }
}

interface Waiter {
  state: string;
  resolve(code: string): void;
  reject(error: unknown): void;
}

function listen(options: StartCallbackServerOptions): CallbackServer {
  const { url, loopback } = parseRedirectUri(options.redirectUri);
  if (!loopback) {
    throw new TypeError(
      `Cannot listen for redirect URI "${url.href}": only http://127.0.0.1 and http://[::1] URIs have a local listener; for other URIs, paste the redirected URL instead`,
    );
  }
  options.signal?.throwIfAborted();

  const controller = new AbortController();
  // The Host header a browser sends for the redirect URI. Anything else is
  // refused: Deno builds request.url from Host, so a crafted one could
  // smuggle in another path, and a foreign name means DNS rebinding.
  const expectedHosts = new Set<string>();
  let waiter: Waiter | undefined;
  let waited = false;
  let rejectedStates = 0;
  let lastStateError: SpotifyStateError | undefined;

  const page = (status: number, content: CallbackPage, headers: HeadersInit = {}): Response =>
    new Response(renderCallbackPage(content), {
      status,
      headers: { ...PAGE_HEADERS, ...Object.fromEntries(new Headers(headers)) },
    });

  const handler = (request: Request): Response => {
    const requestUrl = URL.parse(request.url);
    const host = request.headers.get("host")?.toLowerCase();
    if (!requestUrl || !host || !expectedHosts.has(host) || !expectedHosts.has(requestUrl.host)) {
      return page(421, {
        ok: false,
        title: "Wrong address",
        message: "This address only receives the redirect at the end of a Spotify login.",
      });
    }
    if (requestUrl.pathname !== url.pathname) {
      return page(404, {
        ok: false,
        title: "Not found",
        message: "This address only receives the redirect at the end of a Spotify login.",
      });
    }
    if (request.method !== "GET") {
      return page(405, {
        ok: false,
        title: "Method not allowed",
        message: "The Spotify login redirect is a GET request.",
      }, { allow: "GET" });
    }
    if (!waiter) {
      return page(503, {
        ok: false,
        title: "No login in progress",
        message:
          "This program is not waiting for a Spotify login right now. Start the login again.",
      });
    }
    try {
      const code = parseCallbackUrl(requestUrl, waiter.state);
      waiter.resolve(code);
      return page(200, {
        ok: true,
        title: "Logged in to Spotify",
        message: "You can close this tab and go back to the terminal.",
      }, { connection: "close" });
    } catch (error) {
      if (error instanceof SpotifyStateError) {
        rejectedStates++;
        lastStateError = error;
        return page(400, {
          ok: false,
          title: "This login link is not for this program",
          message:
            "The redirect's state does not match the login this program is waiting for (an old tab, or a link someone else made). Nothing was done. Go back to the terminal and use the link it shows.",
        });
      }
      waiter.reject(error);
      const denied = error instanceof SpotifyOAuthError && error.error === "access_denied";
      return page(400, {
        ok: false,
        title: denied ? "Spotify login cancelled" : "Spotify login failed",
        message: denied
          ? "You declined the login. You can close this tab; run the program again to retry."
          : "The login did not complete. You can close this tab; the terminal says what to do next.",
        detail: error instanceof SpotifyOAuthError
          ? error.errorDescription ? `${error.error}: ${error.errorDescription}` : error.error
          : error instanceof SpotifyAuthError
          ? error.message
          : undefined,
      }, { connection: "close" });
    }
  };

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: loopback.hostname,
      port: loopback.port ?? 0,
      signal: controller.signal,
      onListen() {},
      onError: () =>
        page(500, {
          ok: false,
          title: "Internal error",
          message: "The listener failed to handle this request.",
        }),
      handler,
    });
  } catch (error) {
    throw bindError(error, url, loopback.hostname, loopback.port);
  }

  const port = server.addr.port;
  const literal = loopback.hostname === "::1" ? "[::1]" : loopback.hostname;
  expectedHosts.add(`${literal}:${port}`);
  if (port === 80) expectedHosts.add(literal);
  const redirectUri = loopback.port === undefined
    ? String(options.redirectUri).replace(/^(http:\/\/(?:127\.0\.0\.1|\[::1\]))/i, `$1:${port}`)
    : String(options.redirectUri);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (closing) return closing;
    controller.abort();
    closing = server.finished;
    options.signal?.removeEventListener("abort", onOuterAbort);
    waiter?.reject(
      new DOMException("The callback listener was closed before the login finished", "AbortError"),
    );
    return closing;
  };
  const onOuterAbort = (): void => {
    waiter?.reject(options.signal!.reason);
    void close();
  };
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });

  const waitForCode = (
    expectedState: string,
    waitOptions: WaitForCodeOptions = {},
  ): Promise<string> => {
    const { timeout = DEFAULT_TIMEOUT, signal } = waitOptions;
    try {
      if (waited) {
        throw new TypeError(
          "Cannot wait twice: a callback listener serves one login; start a new one",
        );
      }
      if (!expectedState) throw new TypeError("Cannot wait for a callback: expectedState is empty");
      checkTimeout("timeout", timeout);
    } catch (error) {
      return Promise.reject(error);
    }
    waited = true;
    if (closing) {
      return Promise.reject(
        options.signal?.reason ?? new DOMException("The callback listener is closed", "AbortError"),
      );
    }

    const { promise, resolve, reject } = Promise.withResolvers<string>();
    const timer = setTimeout(() => {
      waiter?.reject(
        new DOMException(timeoutMessage(timeout, redirectUri, rejectedStates), "TimeoutError"),
      );
    }, timeout);
    const onAbort = (): void => waiter?.reject(signal!.reason);
    // Settling closes the listener first, so a caller that has its code has
    // no socket left open.
    const settle = (finish: () => void) => {
      waiter = undefined;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      void close().then(finish, finish);
    };
    waiter = {
      state: expectedState,
      resolve: (code) => settle(() => resolve(code)),
      reject: (error) => {
        if (error instanceof DOMException && error.name === "TimeoutError" && lastStateError) {
          Object.defineProperty(error, "cause", { value: lastStateError });
        }
        settle(() => reject(error));
      },
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    return promise;
  };

  return {
    redirectUri,
    waitForCode,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function bindError(
  error: unknown,
  url: URL,
  hostname: string,
  port: number | undefined,
): SpotifyCallbackServerError {
  const address = hostname === "::1" ? `[::1]:${port ?? 0}` : `${hostname}:${port ?? 0}`;
  const anyPort = `http://${hostname === "::1" ? "[::1]" : hostname}${url.pathname}`;
  if (error instanceof Deno.errors.AddrInUse) {
    return new SpotifyCallbackServerError(
      `Cannot start the callback listener: port ${port} on ${hostname} is already in use (another login, or another program). Stop that program, or register a redirect URI with another port, or ${anyPort} without a port so that any free port works.`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return new SpotifyCallbackServerError(
      `Cannot start the callback listener on ${address}: permission denied; run Deno with --allow-net=${
        hostname === "::1" ? "[::1]" : hostname
      }.`,
      { cause: error },
    );
  }
  return new SpotifyCallbackServerError(
    `Cannot start the callback listener on ${address}: ${
      error instanceof Error ? error.message : String(error)
    }.${
      hostname === "::1"
        ? " If IPv6 is disabled on this machine, use http://127.0.0.1 instead."
        : ""
    }`,
    { cause: error },
  );
}

function timeoutMessage(timeout: number, redirectUri: string, rejectedStates: number): string {
  const rejected = rejectedStates
    ? ` ${rejectedStates} callback${
      rejectedStates === 1 ? " was" : "s were"
    } refused because the state did not match this login.`
    : "";
  return `Timed out after ${
    formatDuration(timeout)
  } waiting for the browser to come back to ${redirectUri}. If the browser shows "INVALID_CLIENT: Invalid redirect URI", register that URI (or the same one without its port) in the Spotify dashboard.${rejected}`;
}
