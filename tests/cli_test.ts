import { deepStrictEqual, match, notStrictEqual, ok, strictEqual } from "node:assert/strict";
import { startAccountsEmulator } from "../src/emulator.ts";
import { lines } from "./_process.ts";

const cli = new URL("../src/cli.ts", import.meta.url).pathname;
const fakeBrowser = new URL("./fixtures/fake_browser.ts", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function spawn(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", SPOTIFY_CLIENT_ID: "", SPOTIFY_CLIENT_SECRET: "", ...env },
  }).spawn();
  return { child, stdout: lines(child.stdout), stderr: lines(child.stderr) };
}

async function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const { child, stdout, stderr } = spawn(args, env);
  const { code } = await child.status;
  await Promise.all([stdout.finished, stderr.finished]);
  return { code, stdout: stdout.text, stderr: stderr.text };
}

Deno.test("spotikit --help and wrong usage", async (t) => {
  await t.step("--help prints the commands and exits 0", async () => {
    const { code, stdout } = await run(["--help"]);
    strictEqual(code, 0);
    match(stdout, /^spotikit: Spotify logins for scripts\n\nUsage: spotikit <command> \[options\]/);
    for (const command of ["login", "token", "status", "logout", "emulator"]) {
      match(stdout, new RegExp(`\\n  ${command} `));
    }
  });
  await t.step("every command has --help", async () => {
    for (const command of ["login", "token", "status", "logout", "emulator"]) {
      const { code, stdout } = await run([command, "--help"]);
      strictEqual(code, 0);
      match(stdout, new RegExp(`^Usage: spotikit ${command} \\[options\\]`));
    }
  });
  await t.step("an unknown command, option or missing value exits 2", async () => {
    for (
      const [args, message] of [
        [["frobnicate"], 'Unknown command "frobnicate".'],
        [["token", "--verbose"], 'Unknown option "--verbose".'],
        [["token", "--client-id"], "--client-id needs a value."],
        [
          ["token", "--no-browser"],
          '"token" does not take --no-browser; see "spotikit token --help".',
        ],
        [[], "spotikit: Spotify logins for scripts"],
      ] as const
    ) {
      const { code, stdout, stderr } = await run([...args]);
      strictEqual(code, 2, stderr);
      strictEqual(stdout, "");
      ok(stderr.startsWith(message), stderr);
    }
  });
  await t.step("a missing client id names the variable", async () => {
    const { code, stderr } = await run(["token"]);
    strictEqual(code, 2);
    match(stderr, /pass clientId, or set SPOTIFY_CLIENT_ID \(SPOTIPY_CLIENT_ID also works\)/);
  });
});

Deno.test("spotikit login, token, status and logout against the emulator", async (t) => {
  await using emulator = await startAccountsEmulator({});
  const dir = await Deno.makeTempDir({ prefix: "spotikit-cli-" });
  const env = {
    SPOTIKIT_ACCOUNTS_URL: emulator.url.href,
    SPOTIKIT_TOKEN_DIR: dir,
    SPOTIFY_CLIENT_ID: "spotikit-emulator",
    BROWSER: `${Deno.execPath()} run -A ${fakeBrowser}`,
  };
  try {
    await t.step("token before any login exits 3 and says what to run", async () => {
      const { code, stdout, stderr } = await run(["token"], env);
      strictEqual(code, 3);
      strictEqual(stdout, "");
      match(stderr, /^No Spotify login is stored for client spotikit-emulator\./);
    });
    await t.step("status before any login exits 3", async () => {
      const { code, stdout } = await run(["status"], env);
      strictEqual(code, 3);
      strictEqual(stdout, 'Not logged in (client spotikit-emulator). Run "spotikit login".\n');
    });

    let accessToken = "";
    await t.step("login opens the browser, which approves, and stores the token", async () => {
      const { code, stdout, stderr } = await run(
        [
          "login",
          "--redirect-uri",
          "http://127.0.0.1/callback",
          "--scope",
          "user-read-private,user-top-read",
        ],
        env,
      );
      strictEqual(code, 0, stderr);
      strictEqual(stdout, "");
      match(
        stderr,
        /^Opening Spotify's login page in your browser\. If it does not open, go to:\n\n {2}http:\/\/127\.0\.0\.1:\d+\/authorize\?/,
      );
      match(stderr, /\nLogged in to Spotify; scopes: user-read-private user-top-read\.\n$/);
      strictEqual((await Deno.stat(`${dir}/spotikit-emulator.default.json`)).mode! & 0o777, 0o600);
    });
    await t.step("token prints only the access token", async () => {
      const { code, stdout, stderr } = await run(["token"], env);
      strictEqual(code, 0, stderr);
      match(stdout, /^[A-Za-z0-9_-]{20,}\n$/);
      strictEqual(stderr, "");
      accessToken = stdout.trim();
      const stored = JSON.parse(await Deno.readTextFile(`${dir}/spotikit-emulator.default.json`));
      strictEqual(stored.token.accessToken, accessToken);
    });
    await t.step("token --scope with a scope the login lacks exits 3", async () => {
      const { code, stderr } = await run(["token", "--scope", "streaming"], env);
      strictEqual(code, 3);
      match(stderr, /lacks the scope streaming\./);
    });
    await t.step("status shows scopes and expiry, never a token", async () => {
      const text = await run(["status"], env);
      strictEqual(text.code, 0);
      match(
        text.stdout,
        /^Logged in \(client spotikit-emulator\)\n {2}scopes: {8}user-read-private user-top-read\n/,
      );
      const json = await run(["status", "--json"], env);
      const status = JSON.parse(json.stdout);
      deepStrictEqual(
        {
          ...status,
          expiresAt: typeof status.expiresAt,
          consentedAt: typeof status.consentedAt,
          refreshTokenExpiresAt: typeof status.refreshTokenExpiresAt,
        },
        {
          loggedIn: true,
          clientId: "spotikit-emulator",
          user: null,
          scope: ["user-read-private", "user-top-read"],
          expiresAt: "string",
          expired: false,
          canRefresh: true,
          consentedAt: "string",
          refreshTokenExpiresAt: "string",
        },
      );
      const stored = JSON.parse(await Deno.readTextFile(`${dir}/spotikit-emulator.default.json`));
      for (const output of [text.stdout, json.stdout, text.stderr, json.stderr]) {
        ok(!output.includes(accessToken) && !output.includes(stored.token.refreshToken));
      }
    });
    await t.step("token refreshes an expired token", async () => {
      const path = `${dir}/spotikit-emulator.default.json`;
      const stored = JSON.parse(await Deno.readTextFile(path));
      stored.token.expiresAt = 0;
      await Deno.writeTextFile(path, JSON.stringify(stored));
      const before = emulator.tokenRequests;
      const { code, stdout } = await run(["token"], env);
      strictEqual(code, 0);
      notStrictEqual(stdout.trim(), accessToken);
      strictEqual(emulator.tokenRequests - before, 1);
    });
    await t.step("logout deletes the token", async () => {
      const { code, stderr } = await run(["logout"], env);
      strictEqual(code, 0);
      strictEqual(stderr, "Logged out: the token of client spotikit-emulator was deleted.\n");
      strictEqual((await run(["token"], env)).code, 3);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spotikit login: Ctrl+C cancels the login with exit code 130", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spotikit-cli-" });
  try {
    const { child, stdout, stderr } = spawn(
      [
        "login",
        "--client-id",
        "c",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--token-dir",
        dir,
      ],
      { BROWSER: "true" },
    );
    const url = new URL((await stderr.waitFor(/go to:\n\n {2}(\S+)\n/))[1]!);
    await stderr.waitFor(/Waiting up to 5 minutes for the browser\. Ctrl\+C cancels\.\n/);
    const listener = url.searchParams.get("redirect_uri")!;
    const page = await fetch(listener);
    strictEqual(page.status, 400, "the listener is up while waiting");
    match(await page.text(), /This login link is not for this program/);
    child.kill("SIGINT");
    const { code } = await child.status;
    await Promise.all([stdout.finished, stderr.finished]);
    strictEqual(code, 130);
    match(stderr.text, /\nCancelled; nothing was stored\.\n$/);
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spotikit emulator prints its endpoints and stops on Ctrl+C", async () => {
  const { child, stdout, stderr } = spawn(["emulator", "--json", "--auto-approve"]);
  const info = JSON.parse((await stdout.waitFor(/^(\{.*\})\n/))[1]!);
  strictEqual(info.client.clientId, "spotikit-emulator");
  const page = await fetch(info.authorizeEndpoint);
  strictEqual(page.status, 400);
  match(await page.text(), /INVALID_CLIENT: Invalid client/);
  await stderr.waitFor(/Press Ctrl\+C to stop\.\n/);
  child.kill("SIGINT");
  const { code } = await child.status;
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(code, 0);
  match(stderr.text, /Emulator stopped\.\n$/);
});

Deno.test("spotikit emulator on a port in use fails in one line", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { code, stdout, stderr } = await run(["emulator", "--port", String(taken.addr.port)]);
  strictEqual(code, 1);
  strictEqual(stdout, "");
  strictEqual(
    stderr,
    `Cannot start the accounts emulator: port ${taken.addr.port} on 127.0.0.1 is already in use; pick another --port, or 0 for any free one.\n`,
  );
});
