import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { startAccountsEmulator } from "../src/emulator.ts";
import { consent, decide } from "./_user_agent.ts";
import { lines } from "./_process.ts";

const client = {
  clientId: "paste-client",
  clientSecret: "paste-secret",
  redirectUris: ["https://example.com/callback", "http://127.0.0.1/callback"],
};

function login(
  options: Record<string, unknown>,
  stdin: "piped" | "null",
  env: Record<string, string> = {},
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-run",
      "--allow-read",
      "tests/fixtures/login.ts",
      JSON.stringify(options),
    ],
    stdin,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  return { child, stdout: lines(child.stdout), stderr: lines(child.stderr) };
}

const addressLine = /Open this address in a browser to log in to Spotify:\n\n {2}(\S+)\n/;

Deno.test("pkceFlow() reads the redirected address pasted on standard input", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { child, stdout, stderr } = login({
    clientId: client.clientId,
    redirectUri: "https://example.com/callback",
    scope: "user-read-private",
    authorizeEndpoint: emulator.authorizeEndpoint.href,
    tokenEndpoint: emulator.tokenEndpoint.href,
    readAfter: true,
  }, "piped");
  const authorizeUrl = new URL((await stderr.waitFor(addressLine))[1]!);
  strictEqual(authorizeUrl.searchParams.get("redirect_uri"), "https://example.com/callback");
  const redirected = await decide(authorizeUrl);
  match(redirected, /^https:\/\/example\.com\/callback\?code=/);

  const writer = child.stdin.getWriter();
  // A line that is not a URL and a URL from another login are refused, and reading goes on.
  await writer.write(new TextEncoder().encode("not a url\n"));
  await stderr.waitFor(/Cannot read the callback: it is not a URL/);
  await writer.write(new TextEncoder().encode("https://example.com/callback?code=x&state=old\n"));
  await stderr.waitFor(/state does not match this login's/);
  await writer.write(new TextEncoder().encode(`${redirected}\n`));
  await stdout.waitFor(/^\{.*\}\n/);
  // Standard input is still there for the script after the login.
  await writer.write(new TextEncoder().encode("more input\n"));
  await writer.close();

  const status = await child.status;
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(status.code, 0, stderr.text);
  const [json, after] = stdout.text.split("\n");
  strictEqual(after, "after: more input");
  const token = JSON.parse(json!);
  deepStrictEqual(token.scope, ["user-read-private"]);
  ok(token.refreshToken);
  strictEqual(emulator.tokenRequests, 1);
});

Deno.test("pkceFlow() fails with SpotifyLoginRequiredError when standard input ends", async () => {
  const { child, stdout, stderr } = login({
    clientId: "c",
    redirectUri: "https://example.com/callback",
    tokenEndpoint: "http://127.0.0.1:9/api/token",
  }, "null");
  const status = await child.status;
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(status.code, 1);
  match(
    stderr.text,
    /SpotifyLoginRequiredError: Cannot finish the login: standard input ended before the redirected address was pasted \(is there no terminal\?\)\. Run the program in a terminal, or use a loopback redirect URI/,
  );
  strictEqual(stdout.text, "");
});

Deno.test("pkceFlow() opens $BROWSER, which comes back to the listener", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client] });
  const { child, stdout, stderr } = login(
    {
      clientId: client.clientId,
      redirectUri: "http://127.0.0.1/callback",
      authorizeEndpoint: emulator.authorizeEndpoint.href,
      tokenEndpoint: emulator.tokenEndpoint.href,
    },
    "null",
    { BROWSER: `${Deno.execPath()} run -A tests/fixtures/fake_browser.ts` },
  );
  const status = await child.status;
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(status.code, 0, stderr.text);
  ok(JSON.parse(stdout.text).accessToken);
  strictEqual(stderr.text, "");
});

Deno.test("pkceFlow() prints the address when the browser fails, and takes a paste or the listener", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { child, stdout, stderr } = login(
    {
      clientId: client.clientId,
      redirectUri: "http://127.0.0.1/callback",
      authorizeEndpoint: emulator.authorizeEndpoint.href,
      tokenEndpoint: emulator.tokenEndpoint.href,
    },
    "piped",
    { BROWSER: "false" },
  );
  const authorizeUrl = new URL((await stderr.waitFor(addressLine))[1]!);
  match(stderr.text, /^Cannot open a browser: false exited with code 1\.\n/);
  // Pasting works although the listener is up (an SSH session whose browser is elsewhere).
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(`${await decide(authorizeUrl)}\n`));
  const status = await child.status;
  await writer.close().catch(() => {});
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(status.code, 0, stderr.text);
  ok(JSON.parse(stdout.text).accessToken);
});

Deno.test("pkceFlow() with openBrowser: false still completes through the listener", async () => {
  await using emulator = await startAccountsEmulator({ clients: [client], autoApprove: true });
  const { child, stdout, stderr } = login({
    clientId: client.clientId,
    redirectUri: "http://127.0.0.1/callback",
    openBrowser: false,
    authorizeEndpoint: emulator.authorizeEndpoint.href,
    tokenEndpoint: emulator.tokenEndpoint.href,
  }, "piped");
  const authorizeUrl = new URL((await stderr.waitFor(addressLine))[1]!);
  const page = await consent(authorizeUrl);
  strictEqual(page.status, 200);
  const status = await child.status;
  await child.stdin.close().catch(() => {});
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(status.code, 0, stderr.text);
  ok(JSON.parse(stdout.text).accessToken);
});

Deno.test("pkceFlow() times out waiting for a paste that never comes", async () => {
  const { child, stdout, stderr } = login({
    clientId: "c",
    redirectUri: "https://example.com/callback",
    timeout: 200,
  }, "piped");
  const status = await child.status;
  await child.stdin.close();
  await Promise.all([stdout.finished, stderr.finished]);
  strictEqual(status.code, 1);
  match(
    stderr.text,
    /TimeoutError: Timed out after 200 ms waiting for the redirected address to be pasted\. Run the login again\.\n$/,
  );
});
