/**
 * The `spotikit` command line: log in once, then hand access tokens to shell
 * scripts the way `gcloud auth print-access-token` does.
 *
 * ```sh
 * deno run -A jsr:@spotikit/auth/cli login --scope user-read-private
 * curl -H "Authorization: Bearer $(deno run -A jsr:@spotikit/auth/cli token)" \
 *   https://api.spotify.com/v1/me
 * ```
 *
 * Messages go to standard error and data to standard output. Exit codes: 0
 * success, 1 failure, 2 wrong usage, 3 login required, 130 cancelled (Ctrl+C).
 *
 * @example Run the CLI from code
 * ```ts
 * import { main } from "@spotikit/auth/cli";
 *
 * Deno.exit(await main(["status", "--json"]));
 * ```
 *
 * @module
 */

import { SpotifyAuthError, SpotifyLoginRequiredError } from "./errors.ts";
import { FileTokenStore } from "./file_token_store.ts";
import { consentExpiresAt, createSpotifyAuth, type SpotifyAuthOptions } from "./session.ts";
import type { AccountsEmulator } from "./emulator.ts";
import type { TokenRecord } from "./token_store.ts";
import { formatDuration } from "./_timing.ts";
import { optionalEnv } from "./_env.ts";

/** Exit codes of the CLI. */
export const EXIT = { ok: 0, failure: 1, usage: 2, loginRequired: 3, cancelled: 130 } as const;

const COMMANDS = ["login", "token", "status", "logout", "emulator"] as const;
type Command = typeof COMMANDS[number];

const CONFIG_FLAGS = `Options:
  --client-id ID        the app's client id (default: $SPOTIFY_CLIENT_ID, then $SPOTIPY_CLIENT_ID)
  --user LABEL          keep this account's token apart from others (default: none)
  --token-dir DIR       where tokens are kept (default: $SPOTIKIT_TOKEN_DIR, then ~/.config/spotikit)
  --accounts-url URL    a Spotify Accounts compatible server, such as the emulator
                        (default: $SPOTIKIT_ACCOUNTS_URL, then https://accounts.spotify.com)
  --json                print data as JSON
  -h, --help            show this help

The client secret is read from $SPOTIFY_CLIENT_SECRET (or $SPOTIPY_CLIENT_SECRET) only, never
from the command line, where other users could see it; with it, login uses the authorization
code flow, without it PKCE.`;

const HELP: Record<Command | "main", string> = {
  main: `spotikit: Spotify logins for scripts

Usage: spotikit <command> [options]

Commands:
  login      log in through the browser and keep the token
  token      print a valid access token, refreshing it when needed
  status     show the stored login: scopes, expiry, consent age (never the token)
  logout     delete the stored token
  emulator   run a local Spotify Accounts emulator for development

Run "spotikit <command> --help" for a command's options.
Exit codes: 0 success, 1 failure, 2 wrong usage, 3 login required, 130 cancelled.`,
  login: `Usage: spotikit login [options]

Opens Spotify's consent page in the browser, waits for the redirect on the loopback
listener, and stores the token. Ctrl+C cancels and closes the listener.

  --scope SCOPES        scopes to ask for, separated by spaces or commas
  --redirect-uri URI    as registered in the Spotify dashboard
                        (default: $SPOTIFY_REDIRECT_URI, then http://127.0.0.1:8888/callback)
  --no-browser          print the address instead of opening a browser, and accept the
                        address the browser was sent to pasted here (for SSH sessions)
  --timeout SECONDS     how long to wait for the browser (default: 300)
${CONFIG_FLAGS}`,
  token: `Usage: spotikit token [options]

Prints the access token and a newline on standard output, refreshing it when it expires
within a minute, so that $(spotikit token) works in scripts. Never opens a browser:
exits 3 when a login is needed.

  --scope SCOPES        fail with exit code 3 unless the token has these scopes
${CONFIG_FLAGS}`,
  status: `Usage: spotikit status [options]

Shows the stored login: client id, user label, scopes, when the access token expires,
and how old the consent is (Spotify stops refreshing six months after it). Never shows
the token. Exits 3 when there is no stored login.

${CONFIG_FLAGS}`,
  logout: `Usage: spotikit logout [options]

Deletes the stored token.

${CONFIG_FLAGS}`,
  emulator: `Usage: spotikit emulator [options]

Runs a local Spotify Accounts emulator on 127.0.0.1 until Ctrl+C, and prints its
endpoints and a client to use with it.

  --port PORT           the port (default: 0, any free port)
  --auto-approve        approve every login without showing the consent page
  --json                print the endpoints and client as JSON
  -h, --help            show this help`,
};

const VALUE_FLAGS = new Set([
  "client-id",
  "user",
  "token-dir",
  "accounts-url",
  "scope",
  "redirect-uri",
  "timeout",
  "port",
]);
const BOOLEAN_FLAGS = new Set(["json", "help", "no-browser", "auto-approve"]);
const ALLOWED: Record<Command, string[]> = {
  login: [
    "client-id",
    "user",
    "token-dir",
    "accounts-url",
    "json",
    "help",
    "scope",
    "redirect-uri",
    "no-browser",
    "timeout",
  ],
  token: ["client-id", "user", "token-dir", "accounts-url", "json", "help", "scope"],
  status: ["client-id", "user", "token-dir", "accounts-url", "json", "help"],
  logout: ["client-id", "user", "token-dir", "accounts-url", "json", "help"],
  emulator: ["port", "auto-approve", "json", "help"],
};

class UsageError extends Error {}
/** A failure the CLI explains in one line, exit code 1. */
class CliFailure extends Error {}

/** Where the CLI writes; standard output and error by default. */
export interface CliIo {
  /** Data. */
  stdout: { writeSync(bytes: Uint8Array): number };
  /** Messages. */
  stderr: { writeSync(bytes: Uint8Array): number; isTerminal(): boolean };
}

/**
 * Runs the CLI with the given arguments and returns its exit code.
 *
 * @param args The arguments, without the program name.
 * @param io Where output goes.
 * @returns The exit code: 0 success, 1 failure, 2 wrong usage, 3 login
 * required, 130 cancelled.
 *
 * @example Print a token from code, as the CLI would
 * ```ts
 * import { main } from "@spotikit/auth/cli";
 *
 * const code = await main(["token", "--client-id", "your-client-id"]);
 * ```
 */
export async function main(
  args: string[],
  io: CliIo = { stdout: Deno.stdout, stderr: Deno.stderr },
): Promise<number> {
  const out = (text: string) => write(io.stdout, text);
  const err = (text: string) => write(io.stderr, text);
  let command: Command | undefined;
  let flags: Map<string, string | true>;
  try {
    ({ command, flags } = parse(args));
  } catch (error) {
    err(`${(error as Error).message}\n${HELP.main}\n`);
    return EXIT.usage;
  }
  if (!command) {
    (flags.has("help") ? out : err)(`${HELP.main}\n`);
    return flags.has("help") ? EXIT.ok : EXIT.usage;
  }
  if (flags.has("help")) {
    out(`${HELP[command]}\n`);
    return EXIT.ok;
  }

  const cancel = new AbortController();
  const onSigint = () => cancel.abort(new DOMException("Cancelled with Ctrl+C", "AbortError"));
  // Only the commands that wait on a person catch Ctrl+C; the rest end at once anyway.
  const catchSigint = command === "login" || command === "emulator";
  if (catchSigint) Deno.addSignalListener("SIGINT", onSigint);
  try {
    if (command === "emulator") return await runEmulator(flags, out, err, cancel.signal);
    return await runAuth(command, flags, out, err, io.stderr.isTerminal(), cancel.signal);
  } catch (error) {
    if (cancel.signal.aborted) {
      err("Cancelled; nothing was stored.\n");
      return EXIT.cancelled;
    }
    if (error instanceof UsageError || error instanceof TypeError || error instanceof RangeError) {
      err(`${error.message}\n`);
      return EXIT.usage;
    }
    if (error instanceof SpotifyLoginRequiredError) {
      err(`${error.message}\n`);
      return EXIT.loginRequired;
    }
    if (
      error instanceof SpotifyAuthError || error instanceof DOMException ||
      error instanceof CliFailure
    ) {
      err(`${error.message}\n`);
      return EXIT.failure;
    }
    throw error;
  } finally {
    if (catchSigint) Deno.removeSignalListener("SIGINT", onSigint);
  }
}

function parse(
  args: string[],
): { command: Command | undefined; flags: Map<string, string | true> } {
  const flags = new Map<string, string | true>();
  let command: Command | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h") {
      flags.set("help", true);
      continue;
    }
    if (!arg.startsWith("--")) {
      if (command) throw new UsageError(`Unexpected argument "${arg}".`);
      if (!(COMMANDS as readonly string[]).includes(arg)) {
        throw new UsageError(`Unknown command "${arg}".`);
      }
      command = arg as Command;
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (BOOLEAN_FLAGS.has(name)) {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value.`);
      flags.set(name, true);
    } else if (VALUE_FLAGS.has(name)) {
      if (flags.has(name)) throw new UsageError(`--${name} is given more than once.`);
      const value = inline ?? args[++i];
      if (value === undefined || (inline === undefined && value.startsWith("--"))) {
        throw new UsageError(`--${name} needs a value.`);
      }
      flags.set(name, value);
    } else {
      throw new UsageError(`Unknown option "--${name}".`);
    }
  }
  if (command) {
    for (const name of flags.keys()) {
      if (!ALLOWED[command].includes(name)) {
        throw new UsageError(
          `"${command}" does not take --${name}; see "spotikit ${command} --help".`,
        );
      }
    }
  }
  return { command, flags };
}

async function runAuth(
  command: Exclude<Command, "emulator">,
  flags: Map<string, string | true>,
  out: (text: string) => void,
  err: (text: string) => void,
  terminal: boolean,
  signal: AbortSignal,
): Promise<number> {
  const value = (name: string) => {
    const v = flags.get(name);
    return typeof v === "string" ? v : undefined;
  };
  const json = flags.has("json");
  const accounts = value("accounts-url") ?? optionalEnv("SPOTIKIT_ACCOUNTS_URL");
  const store = new FileTokenStore({
    directory: value("token-dir") ?? optionalEnv("SPOTIKIT_TOKEN_DIR"),
  });
  const timeoutFlag = value("timeout");
  const timeout = timeoutFlag === undefined ? 300_000 : Number(timeoutFlag) * 1000;
  if (!(timeout > 0)) {
    throw new UsageError(`--timeout must be a number of seconds, not "${timeoutFlag}".`);
  }
  const redirectUri = value("redirect-uri") ??
    (optionalEnv("SPOTIFY_REDIRECT_URI") || optionalEnv("SPOTIPY_REDIRECT_URI")
      ? undefined
      : "http://127.0.0.1:8888/callback");

  const opener = browserOpener(timeout, terminal, err, signal);
  const options: SpotifyAuthOptions = {
    clientId: value("client-id"),
    user: value("user"),
    scope: value("scope"),
    redirectUri,
    store,
    timeout,
    interactive: command === "login",
    openBrowser: flags.has("no-browser") ? false : (url) => opener.open(url),
  };
  if (accounts) {
    const base = new URL(accounts);
    options.authorizeEndpoint = new URL("/authorize", base);
    options.tokenEndpoint = new URL("/api/token", base);
  }
  if (flags.has("no-browser")) {
    err(`Waiting up to ${formatDuration(timeout)} for the login.\n`);
  }
  const auth = createSpotifyAuth(options);

  switch (command) {
    case "login": {
      const token = await auth.login({ signal }).finally(() => opener.stop());
      err(`Logged in to Spotify; scopes: ${token.scope.join(" ") || "(none)"}.\n`);
      if (json) out(`${JSON.stringify(describe(await store.get(auth.key), auth.key))}\n`);
      return EXIT.ok;
    }
    case "token": {
      const token = await auth.getToken({ signal });
      out(json ? `${JSON.stringify(token)}\n` : `${token.accessToken}\n`);
      return EXIT.ok;
    }
    case "status": {
      const record = await store.get(auth.key, { signal });
      const status = describe(record, auth.key);
      if (json) out(`${JSON.stringify(status)}\n`);
      else out(formatStatus(status));
      return record ? EXIT.ok : EXIT.loginRequired;
    }
    case "logout": {
      await auth.logout({ signal });
      err(
        `Logged out: the token of client ${auth.key.clientId}${
          auth.key.user ? ` (user "${auth.key.user}")` : ""
        } was deleted.\n`,
      );
      return EXIT.ok;
    }
  }
}

/** What `status` reports: never the tokens. */
interface Status {
  loggedIn: boolean;
  clientId: string;
  user: string | null;
  scope?: string[];
  expiresAt?: string;
  expired?: boolean;
  canRefresh?: boolean;
  consentedAt?: string | null;
  refreshTokenExpiresAt?: string | null;
}

function describe(
  record: TokenRecord | undefined,
  key: { clientId: string; user?: string | undefined },
): Status {
  const base = { clientId: key.clientId, user: key.user ?? null };
  if (!record) return { loggedIn: false, ...base };
  const { token, consentedAt } = record;
  return {
    loggedIn: true,
    ...base,
    scope: token.scope,
    expiresAt: new Date(token.expiresAt).toISOString(),
    expired: token.expiresAt <= Date.now(),
    canRefresh: token.refreshToken !== undefined,
    consentedAt: consentedAt === undefined ? null : new Date(consentedAt).toISOString(),
    refreshTokenExpiresAt: consentedAt === undefined
      ? null
      : new Date(consentExpiresAt(consentedAt)).toISOString(),
  };
}

function formatStatus(status: Status): string {
  const who = `client ${status.clientId}${status.user ? `, user "${status.user}"` : ""}`;
  if (!status.loggedIn) return `Not logged in (${who}). Run "spotikit login".\n`;
  const days = (iso: string) => Math.round((Date.parse(iso) - Date.now()) / 86_400_000);
  const lines = [
    `Logged in (${who})`,
    `  scopes:        ${status.scope!.join(" ") || "(none)"}`,
    `  access token:  ${status.expired ? "expired" : "expires"} ${status.expiresAt}${
      status.canRefresh ? " (refreshed when needed)" : ""
    }`,
  ];
  if (status.consentedAt) {
    lines.push(
      `  consent:       ${status.consentedAt} (${-days(status.consentedAt)} days ago)`,
      `  login needed:  by ${status.refreshTokenExpiresAt} (in ${
        days(status.refreshTokenExpiresAt!)
      } days)`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Opens the browser, says where to go if it does not, and shows the time left. */
function browserOpener(
  timeout: number,
  terminal: boolean,
  err: (text: string) => void,
  signal: AbortSignal,
): { open(url: URL): Promise<void>; stop(): void } {
  let timer: ReturnType<typeof setInterval> | undefined;
  // The login may end (the browser came back) while the launcher still runs.
  let stopped = false;
  return {
    async open(url) {
      err(
        `Opening Spotify's login page in your browser. If it does not open, go to:\n\n  ${url.href}\n\n`,
      );
      try {
        const { openBrowser } = await import("./browser.ts");
        await openBrowser(url, { signal });
      } catch (error) {
        err(
          `${
            (error as Error).message
          }.\nOpen the address above in a browser on this machine, or run again with --no-browser to paste the address you are sent to.\n`,
        );
      }
      if (stopped) return;
      if (!terminal) {
        err(`Waiting up to ${formatDuration(timeout)} for the browser. Ctrl+C cancels.\n`);
        return;
      }
      const deadline = Date.now() + timeout;
      const show = () => {
        const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
        const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
        err(`\r\x1b[2KWaiting for the browser: ${clock} left. Ctrl+C cancels.`);
      };
      show();
      timer = setInterval(show, 1000);
    },
    stop() {
      stopped = true;
      if (timer === undefined) return;
      clearInterval(timer);
      timer = undefined;
      err("\r\x1b[2K");
    },
  };
}

async function runEmulator(
  flags: Map<string, string | true>,
  out: (text: string) => void,
  err: (text: string) => void,
  signal: AbortSignal,
): Promise<number> {
  // Loaded only here, so that the token path never parses the emulator.
  const { startAccountsEmulator, DEFAULT_EMULATOR_CLIENT } = await import("./emulator.ts");
  const portFlag = flags.get("port");
  const port = typeof portFlag === "string" ? Number(portFlag) : 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be a port number from 0 to 65535, not "${portFlag}".`);
  }
  let emulator: AccountsEmulator;
  try {
    emulator = await startAccountsEmulator({
      port,
      autoApprove: flags.has("auto-approve"),
      signal,
    });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    throw new CliFailure(`${error.message}; pick another --port, or 0 for any free one.`);
  }
  await using _ = emulator;
  const info = {
    url: emulator.url.href,
    authorizeEndpoint: emulator.authorizeEndpoint.href,
    tokenEndpoint: emulator.tokenEndpoint.href,
    client: DEFAULT_EMULATOR_CLIENT,
  };
  if (flags.has("json")) {
    out(`${JSON.stringify(info)}\n`);
  } else {
    out(
      `Spotify Accounts emulator running at ${info.url}
  authorize:      ${info.authorizeEndpoint}
  token:          ${info.tokenEndpoint}
  client id:      ${info.client.clientId}
  client secret:  ${info.client.clientSecret}
  redirect URIs:  ${info.client.redirectUris.join(", ")}

Try it:
  SPOTIKIT_ACCOUNTS_URL=${info.url} SPOTIFY_CLIENT_ID=${info.client.clientId} spotikit login
`,
    );
  }
  err("Press Ctrl+C to stop.\n");
  await new Promise<void>((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
  err("Emulator stopped.\n");
  return EXIT.ok;
}

function write(stream: { writeSync(bytes: Uint8Array): number }, text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
