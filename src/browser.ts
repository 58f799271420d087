/**
 * Opens the system browser at a URL.
 *
 * @module
 */

import { abortable } from "./_timing.ts";
import { optionalEnv } from "./_env.ts";
import { SpotifyAuthError } from "./errors.ts";

/** Options for {@linkcode browserCommands}. */
export interface BrowserCommandsOptions {
  /**
   * The operating system.
   *
   * @default {Deno.build.os}
   */
  os?: typeof Deno.build.os | undefined;
  /**
   * The `$BROWSER` value: commands separated by `:`, each with `%s` where the
   * URL goes (appended when there is none).
   *
   * @default {Deno.env.get("BROWSER")}
   */
  browser?: string | undefined;
  /**
   * Whether a graphical session is present (Linux and BSD only).
   *
   * @default {Boolean(Deno.env.get("DISPLAY") || Deno.env.get("WAYLAND_DISPLAY"))}
   */
  display?: boolean | undefined;
}

/**
 * Lists the commands that would open a URL in a browser, in the order they
 * are tried: each as `[program, ...args]`. The URL is always a single
 * argument, never parsed by a shell, so `&` and `?` in it are safe; on
 * Windows, `rundll32 url.dll,FileProtocolHandler` is used because `cmd /c
 * start` would cut the URL at its first `&`.
 *
 * @param url The URL to open.
 * @param options Operating system, `$BROWSER` and display (all detected when omitted).
 * @returns The candidate commands; empty when none can work (a Linux server
 * with no `$BROWSER` and no display).
 *
 * @example Windows keeps the whole URL
 * ```ts
 * import { browserCommands } from "@spotikit/auth";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * deepStrictEqual(browserCommands("https://x.test/?a=1&b=2", { os: "windows", browser: "" }), [
 *   ["rundll32", "url.dll,FileProtocolHandler", "https://x.test/?a=1&b=2"],
 * ]);
 * ```
 */
export function browserCommands(
  url: string | URL,
  options: BrowserCommandsOptions = {},
): string[][] {
  const href = String(url);
  const os = options.os ?? Deno.build.os;
  const browser = options.browser ?? optionalEnv("BROWSER");
  const commands: string[][] = [];
  for (const entry of (browser ?? "").split(":")) {
    const words = entry.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    commands.push(
      words.some((word) => word.includes("%s"))
        ? words.map((word) => word.replaceAll("%s", href))
        : [...words, href],
    );
  }
  switch (os) {
    case "darwin":
      commands.push(["open", href]);
      break;
    case "windows":
      commands.push(["rundll32", "url.dll,FileProtocolHandler", href]);
      break;
    default: {
      const display = options.display ??
        Boolean(optionalEnv("DISPLAY") || optionalEnv("WAYLAND_DISPLAY"));
      // Without a display xdg-open falls back to text browsers that would
      // fight the login prompt for the terminal.
      if (display) commands.push(["xdg-open", href]);
    }
  }
  return commands;
}

/** Options for {@linkcode openBrowser}. */
export interface OpenBrowserOptions extends BrowserCommandsOptions {
  /**
   * How long to wait for a launcher to report failure, in milliseconds. A
   * launcher still running after that (some run the browser itself) is taken
   * to have worked and is left running.
   *
   * @default {3000}
   */
  grace?: number | undefined;
  /**
   * Stops waiting for the launcher.
   *
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
}

/**
 * Opens a URL in the user's browser: `$BROWSER` first, then `open` (macOS),
 * `rundll32` (Windows) or `xdg-open` (Linux with a display).
 *
 * @param url The URL to open.
 * @param options Launcher settings.
 * @throws {SpotifyAuthError} When no launcher worked; the message says why, so
 * the caller can show the URL instead.
 *
 * @example Open a page, or show its address
 * ```ts
 * import { openBrowser } from "@spotikit/auth";
 *
 * const url = "https://accounts.spotify.com/";
 * await openBrowser(url).catch(() => console.error(`Open ${url} in a browser.`));
 * ```
 */
export async function openBrowser(
  url: string | URL,
  options: OpenBrowserOptions = {},
): Promise<void> {
  const { grace = 3000, signal } = options;
  const commands = browserCommands(url, options);
  if (commands.length === 0) {
    throw new SpotifyAuthError(
      "Cannot open a browser: there is no display (DISPLAY and WAYLAND_DISPLAY are unset) and BROWSER is not set",
    );
  }
  const failures: string[] = [];
  for (const [program, ...args] of commands) {
    signal?.throwIfAborted();
    const failure = await launch(program!, args, grace, signal);
    if (failure === undefined) return;
    failures.push(`${program} ${failure}`);
  }
  throw new SpotifyAuthError(`Cannot open a browser: ${failures.join("; ")}`);
}

/** Runs one launcher; returns why it failed, or `undefined` when it worked. */
async function launch(
  program: string,
  args: string[],
  grace: number,
  signal: AbortSignal | undefined,
): Promise<string | undefined> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "null" })
      .spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "is not installed";
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return `may not be run (allow it with --allow-run=${program})`;
    }
    return `failed to start (${error instanceof Error ? error.message : String(error)})`;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stillRunning = new Promise<"running">((resolve) => {
    timer = setTimeout(() => resolve("running"), grace);
  });
  const outcome = await abortable(Promise.race([child.status, stillRunning]), signal)
    .catch(() => "running" as const);
  clearTimeout(timer);
  if (outcome === "running") {
    child.unref();
    return undefined;
  }
  return outcome.success ? undefined : `exited with code ${outcome.code}`;
}
