// End to end in a real browser: headless Chromium, driven over the DevTools
// protocol, shows the emulator's consent page, a test clicks Approve or Deny
// the way a person would, and Chromium follows the redirect to the loopback
// listener of pkceFlow() (in this process) or of `spotikit login` (a real
// subprocess). Only loopback networking.
//
// Set E2E_SCREENSHOT=/path/to/file.png to keep a screenshot of the success page.

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { pkceFlow, SpotifyOAuthError, type SpotifyToken } from "../mod.ts";
import {
  type AccountsEmulator,
  DEFAULT_EMULATOR_CLIENT,
  startAccountsEmulator,
} from "../src/emulator.ts";
import { ignoreChromiumTests, launchChromium, type Page } from "./_chromium.ts";
import { lines } from "./_process.ts";

const cli = new URL("../src/cli.ts", import.meta.url).pathname;
const clientId = DEFAULT_EMULATOR_CLIENT.clientId;
const redirectUri = "http://127.0.0.1/callback";
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

type Outcome = { token: SpotifyToken } | { error: unknown };

/**
 * Starts pkceFlow() with an opener that sends Chromium to the consent page,
 * and resolves once Chromium has loaded it. The opener only starts the
 * navigation: the flow goes on to wait on its listener while Chromium loads
 * the page. Disposing of the login cancels the flow if it is still running
 * and waits for it to end (so its listener is closed).
 */
async function startLogin(page: Page, emulator: AccountsEmulator) {
  const cancel = new AbortController();
  const opened = Promise.withResolvers<{ url: URL; loaded: Promise<void> }>();
  const outcome: Promise<Outcome> = pkceFlow({
    clientId,
    redirectUri,
    scope: ["user-read-private", "user-top-read"],
    authorizeEndpoint: emulator.authorizeEndpoint,
    tokenEndpoint: emulator.tokenEndpoint,
    timeout: 15_000,
    signal: cancel.signal,
    openBrowser: (url) => {
      const loaded = page.navigate(url);
      loaded.catch(() => {}); // awaited below
      opened.resolve({ url, loaded });
    },
  }).then((token) => ({ token }), (error) => ({ error }));
  const login = {
    outcome,
    async [Symbol.asyncDispose]() {
      cancel.abort(new Error("The test ended before the login"));
      await outcome;
    },
  };
  try {
    const { url, loaded } = await Promise.race([
      opened.promise,
      outcome.then((result) => {
        throw new Error(`pkceFlow() ended before opening the browser: ${Deno.inspect(result)}`);
      }),
    ]);
    await loaded;
    return { ...login, authorizeUrl: url };
  } catch (error) {
    await login[Symbol.asyncDispose]();
    throw error;
  }
}

/** Checks that Chromium shows the emulator's consent page for `authorizeUrl`. */
async function assertConsentPage(page: Page, authorizeUrl: URL): Promise<void> {
  strictEqual(await page.url(), authorizeUrl.href);
  const text = await page.text();
  match(text, /spotikit-emulator wants to connect to your Spotify account/);
  match(text, /user-read-private/);
  match(text, /Approve/);
  match(text, /Deny/);
}

/** Checks that Chromium is on the listener named in the authorize URL's `redirect_uri`. */
async function assertOnListener(page: Page, authorizeUrl: URL): Promise<URL> {
  const listener = new URL(authorizeUrl.searchParams.get("redirect_uri")!);
  strictEqual(listener.hostname, "127.0.0.1");
  const landed = new URL(await page.url());
  strictEqual(landed.origin, listener.origin);
  strictEqual(landed.pathname, "/callback");
  strictEqual(landed.searchParams.get("state"), authorizeUrl.searchParams.get("state"));
  return landed;
}

/** `deno run -A src/cli.ts …`, with stdin kept open until it exits, and disposed of by killing it. */
function spawnCli(args: string[], stdin: "piped" | "null" = "null") {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, ...args],
    stdin,
    stdout: "piped",
    stderr: "piped",
    // Nothing from the developer's environment may change the login.
    env: {
      NO_COLOR: "1",
      BROWSER: "",
      SPOTIFY_CLIENT_ID: "",
      SPOTIFY_CLIENT_SECRET: "",
      SPOTIFY_REDIRECT_URI: "",
      SPOTIPY_CLIENT_ID: "",
      SPOTIPY_CLIENT_SECRET: "",
      SPOTIPY_REDIRECT_URI: "",
      SPOTIKIT_ACCOUNTS_URL: "",
      SPOTIKIT_TOKEN_DIR: "",
    },
  }).spawn();
  const stdout = lines(child.stdout);
  const stderr = lines(child.stderr);
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    return status;
  });
  const finish = async () => {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }
    const result = await status;
    if (stdin === "piped") await child.stdin.close().catch(() => {});
    await Promise.all([stdout.finished, stderr.finished]);
    return result;
  };
  return {
    stdout,
    stderr,
    /** Waits for the exit (stdin stays open until then), then closes stdin and drains the output. */
    async exited(): Promise<Deno.CommandStatus> {
      await status;
      return finish();
    },
    [Symbol.asyncDispose]: async () => void await finish(),
  };
}

function loginArgs(emulator: AccountsEmulator, tokenDir: string): string[] {
  return [
    "login",
    "--no-browser",
    "--redirect-uri",
    redirectUri,
    "--scope",
    "user-read-private",
    "--timeout",
    "15",
    "--accounts-url",
    emulator.url.origin,
    "--token-dir",
    tokenDir,
    "--client-id",
    clientId,
  ];
}

/** Reads the address `spotikit login --no-browser` prints, and has Chromium load it. */
async function openPrintedAddress(
  page: Page,
  login: ReturnType<typeof spawnCli>,
  emulator: AccountsEmulator,
): Promise<URL> {
  const printed = await login.stderr.waitFor(
    /Open this address in a browser to log in to Spotify:\n\n {2}(\S+)\n\n/,
  );
  const authorizeUrl = new URL(printed[1]!);
  strictEqual(authorizeUrl.origin, emulator.url.origin);
  strictEqual(authorizeUrl.pathname, "/authorize");
  await page.navigate(authorizeUrl);
  return authorizeUrl;
}

/** The token files in `dir` (lock files left out: the store may leave one behind). */
async function tokenFiles(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir)))
    .map((entry) => entry.name)
    .filter((name) => name.endsWith(".json"));
}

Deno.test({
  name: "A person approves in Chromium: pkceFlow() and spotikit login get a token",
  ignore: ignoreChromiumTests,
}, async (t) => {
  await using emulator = await startAccountsEmulator();
  await using chromium = await launchChromium();
  const page = await chromium.newPage();

  await t.step("pkceFlow() returns a token and Chromium shows the success page", async () => {
    await using login = await startLogin(page, emulator);
    const { authorizeUrl, outcome } = login;
    await assertConsentPage(page, authorizeUrl);

    await page.click("#approve");
    const landed = await assertOnListener(page, authorizeUrl);
    ok(landed.searchParams.get("code"), "the redirect carries a code");
    const text = await page.text();
    match(text, /Logged in to Spotify/);
    match(text, /You can close this tab and go back to the terminal\./);

    const screenshot = await page.screenshot();
    deepStrictEqual([...screenshot.subarray(0, 8)], PNG_SIGNATURE);
    const keep = Deno.env.get("E2E_SCREENSHOT");
    if (keep) await Deno.writeFile(keep, screenshot);

    const result = await outcome;
    ok("token" in result, `pkceFlow() failed: ${Deno.inspect(result)}`);
    const { token } = result;
    match(token.accessToken, /^\S{20,}$/);
    strictEqual(token.tokenType, "Bearer");
    deepStrictEqual(token.scope, ["user-read-private", "user-top-read"]);
    ok(token.refreshToken, "a PKCE login gets a refresh token");
    ok(token.expiresAt > Date.now());
    strictEqual(emulator.tokenRequests, 1);
  });

  const tokenDir = await Deno.makeTempDir({ prefix: "spotikit-e2e-" });
  try {
    let accessToken = "";
    await t.step("spotikit login --no-browser: Chromium approves, the CLI exits 0", async () => {
      const before = emulator.tokenRequests;
      await using login = spawnCli(loginArgs(emulator, tokenDir), "piped");
      const authorizeUrl = await openPrintedAddress(page, login, emulator);
      await assertConsentPage(page, authorizeUrl);

      await page.click("#approve");
      const landed = await assertOnListener(page, authorizeUrl);
      ok(landed.searchParams.get("code"), "the redirect carries a code");
      match(await page.text(), /Logged in to Spotify/);

      const { code } = await login.exited();
      strictEqual(code, 0, login.stderr.text);
      match(login.stderr.text, /^Logged in/m);
      strictEqual(login.stdout.text, "");
      strictEqual(emulator.tokenRequests - before, 1);
      const [file, ...others] = await tokenFiles(tokenDir);
      deepStrictEqual(others, []);
      const stored = await Deno.readTextFile(`${tokenDir}/${file}`);
      accessToken = /"accessToken":\s*"([^"]+)"/.exec(stored)?.[1] ?? "";
      ok(accessToken, `no access token in the stored file:\n${stored}`);
    });

    await t.step("spotikit token prints the stored access token only", async () => {
      const before = emulator.tokenRequests;
      await using token = spawnCli([
        "token",
        "--accounts-url",
        emulator.url.origin,
        "--token-dir",
        tokenDir,
        "--client-id",
        clientId,
      ]);
      const { code } = await token.exited();
      strictEqual(code, 0, token.stderr.text);
      strictEqual(token.stdout.text, `${accessToken}\n`);
      strictEqual(token.stderr.text, "");
      strictEqual(emulator.tokenRequests, before, "a fresh token is not refreshed");
    });
  } finally {
    await Deno.remove(tokenDir, { recursive: true });
  }
});

Deno.test({
  name: "A person denies in Chromium: pkceFlow() and spotikit login fail with access_denied",
  ignore: ignoreChromiumTests,
}, async (t) => {
  await using emulator = await startAccountsEmulator();
  await using chromium = await launchChromium();
  const page = await chromium.newPage();

  await t.step(
    "pkceFlow() throws SpotifyOAuthError and Chromium shows the cancel page",
    async () => {
      await using login = await startLogin(page, emulator);
      const { authorizeUrl, outcome } = login;
      await assertConsentPage(page, authorizeUrl);

      await page.click("#deny");
      const landed = await assertOnListener(page, authorizeUrl);
      strictEqual(landed.searchParams.get("error"), "access_denied");
      strictEqual(landed.searchParams.get("code"), null);
      const text = await page.text();
      match(text, /Spotify login cancelled/);
      match(text, /You declined the login\./);

      const result = await outcome;
      ok("error" in result, `pkceFlow() did not fail: ${Deno.inspect(result)}`);
      ok(result.error instanceof SpotifyOAuthError, Deno.inspect(result.error));
      strictEqual(result.error.error, "access_denied");
      strictEqual(emulator.tokenRequests, 0);
    },
  );

  await t.step("spotikit login --no-browser: Chromium denies, the CLI exits 1", async () => {
    const tokenDir = await Deno.makeTempDir({ prefix: "spotikit-e2e-" });
    try {
      await using login = spawnCli(loginArgs(emulator, tokenDir), "piped");
      const authorizeUrl = await openPrintedAddress(page, login, emulator);
      await assertConsentPage(page, authorizeUrl);

      await page.click("#deny");
      const landed = await assertOnListener(page, authorizeUrl);
      strictEqual(landed.searchParams.get("error"), "access_denied");
      match(await page.text(), /Spotify login cancelled/);

      const { code } = await login.exited();
      strictEqual(code, 1, login.stderr.text);
      match(login.stderr.text, /access_denied/);
      strictEqual(login.stdout.text, "");
      strictEqual(emulator.tokenRequests, 0);
      deepStrictEqual(await tokenFiles(tokenDir), []);
    } finally {
      await Deno.remove(tokenDir, { recursive: true });
    }
  });
});
