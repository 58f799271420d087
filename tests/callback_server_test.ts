import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert/strict";
import {
  createState,
  SpotifyAuthError,
  SpotifyCallbackServerError,
  SpotifyOAuthError,
  startCallbackServer,
} from "../mod.ts";
import { listeningAddresses } from "./_sockets.ts";

async function get(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(url, init);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

Deno.test("startCallbackServer() binds a free port when the redirect URI has none", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  match(server.redirectUri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
  const port = Number(new URL(server.redirectUri).port);
  ok(port > 0);
  strictEqual((await get(`http://127.0.0.1:${port}/other`)).status, 404);
});

Deno.test("startCallbackServer() returns the code and shows a success page", async () => {
  const server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback?app=1" });
  strictEqual(server.redirectUri.endsWith("/callback?app=1"), true);
  const state = createState();
  const waiting = server.waitForCode(state);
  const page = await get(`${server.redirectUri.split("?")[0]}?code=AQB-code&state=${state}&iss=x`);
  strictEqual(page.status, 200);
  strictEqual(page.headers.get("content-type"), "text/html; charset=utf-8");
  strictEqual(page.headers.get("cache-control"), "no-store");
  strictEqual(page.headers.get("referrer-policy"), "no-referrer");
  match(page.headers.get("content-security-policy")!, /default-src 'none'/);
  match(page.body, /<h1>Logged in to Spotify<\/h1>/);
  match(page.body, /You can close this tab/);
  strictEqual(await waiting, "AQB-code");
});

Deno.test("startCallbackServer() closes the port once the callback is in", async () => {
  const server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  await (await fetch(`${server.redirectUri}?code=c&state=${state}`)).body?.cancel();
  await waiting;
  await rejects(fetch(`${server.redirectUri}?code=c&state=${state}`), TypeError);
});

Deno.test("startCallbackServer() answers a favicon with 404 and keeps waiting", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  const favicon = await get(new URL("/favicon.ico", server.redirectUri).href);
  strictEqual(favicon.status, 404);
  match(favicon.body, /only receives the redirect at the end of a Spotify login/);
  const post = await get(`${server.redirectUri}?code=c&state=${state}`, { method: "POST" });
  strictEqual(post.status, 405);
  strictEqual(post.headers.get("allow"), "GET");
  await (await fetch(`${server.redirectUri}?code=real&state=${state}`)).body?.cancel();
  strictEqual(await waiting, "real");
});

Deno.test("startCallbackServer() refuses a missing or wrong state and keeps waiting", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  for (
    const query of ["?code=forged", "?code=forged&state=other", `?error=access_denied&state=x`]
  ) {
    const page = await get(server.redirectUri + query);
    strictEqual(page.status, 400);
    match(page.body, /This login link is not for this program/);
  }
  await (await fetch(`${server.redirectUri}?code=real&state=${state}`)).body?.cancel();
  strictEqual(await waiting, "real");
});

Deno.test("startCallbackServer() turns ?error=access_denied into SpotifyOAuthError", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  waiting.catch(() => {});
  const page = await get(`${server.redirectUri}?error=access_denied&state=${state}`);
  strictEqual(page.status, 400);
  match(page.body, /<h1>Spotify login cancelled<\/h1>/);
  await rejects(waiting, (error) => {
    ok(error instanceof SpotifyOAuthError);
    strictEqual(error.error, "access_denied");
    return true;
  });
});

Deno.test("startCallbackServer() escapes what the error page reflects", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  waiting.catch(() => {});
  const payload = `<script>alert("x")</script>'&`;
  const query = new URLSearchParams({ error: `bad<b>`, error_description: payload, state });
  const page = await get(`${server.redirectUri}?${query}`);
  match(page.body, /<h1>Spotify login failed<\/h1>/);
  strictEqual(page.body.includes("<script"), false);
  strictEqual(page.body.includes("<b>"), false);
  ok(
    page.body.includes(
      "bad&#60;b&#62;: &#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;&#39;&#38;",
    ),
  );
  await rejects(
    waiting,
    (error) => error instanceof SpotifyOAuthError && error.errorDescription === payload,
  );
});

Deno.test("startCallbackServer() ends the login when the right state comes without a code", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state);
  waiting.catch(() => {});
  strictEqual((await get(`${server.redirectUri}?state=${state}`)).status, 400);
  await rejects(
    waiting,
    (error) => error instanceof SpotifyAuthError && /neither a code/.test(error.message),
  );
});

Deno.test("startCallbackServer() listens on [::1] for an IPv6 redirect URI", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://[::1]/callback" });
  match(server.redirectUri, /^http:\/\/\[::1\]:\d+\/callback$/);
  const state = createState();
  const waiting = server.waitForCode(state);
  const port = new URL(server.redirectUri).port;
  await rejects(fetch(`http://127.0.0.1:${port}/callback?code=v4&state=${state}`), TypeError);
  await (await fetch(`${server.redirectUri}?code=v6&state=${state}`)).body?.cancel();
  strictEqual(await waiting, "v6");
});

Deno.test("startCallbackServer() binds the loopback address and nothing else", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  for (
    const [redirectUri, address] of [["http://127.0.0.1/cb", "127.0.0.1"], [
      "http://[::1]/cb",
      "[::1]",
    ]]
  ) {
    await using server = await startCallbackServer({ redirectUri: redirectUri! });
    deepStrictEqual(await listeningAddresses(Number(new URL(server.redirectUri).port)), [address]);
  }
});

Deno.test("waitForCode() refuses a timeout a timer cannot keep", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  for (const timeout of [0, -1, Infinity, 2 ** 31, NaN]) {
    await rejects(server.waitForCode("s", { timeout }), {
      name: "RangeError",
      message:
        `Cannot use timeout ${timeout}: it must be a number of milliseconds from 1 to 2147483647 (about 24 days)`,
    });
  }
  const waiting = server.waitForCode("s", { timeout: 2 ** 31 - 1 });
  await server.close();
  await rejects(waiting, { name: "AbortError" });
});

Deno.test("startCallbackServer() binds the port written in the redirect URI", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  await using server = await startCallbackServer({ redirectUri: `http://127.0.0.1:${port}/cb` });
  strictEqual(server.redirectUri, `http://127.0.0.1:${port}/cb`);
});

Deno.test("startCallbackServer() fails at once, naming the port, when it is in use", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  await rejects(
    startCallbackServer({ redirectUri: `http://127.0.0.1:${port}/callback` }),
    (error) => {
      ok(error instanceof SpotifyCallbackServerError);
      strictEqual(
        error.message,
        `Cannot start the callback listener: port ${port} on 127.0.0.1 is already in use (another login, or another program). Stop that program, or register a redirect URI with another port, or http://127.0.0.1/callback without a port so that any free port works.`,
      );
      ok(error.cause instanceof Deno.errors.AddrInUse);
      return true;
    },
  );
});

Deno.test("startCallbackServer() refuses localhost with the URI to register instead", async () => {
  await rejects(startCallbackServer({ redirectUri: "http://localhost:8888/callback" }), {
    name: "TypeError",
    message:
      'Cannot use redirect URI "http://localhost:8888/callback": Spotify refuses "localhost" in redirect URIs. Register http://127.0.0.1:8888/callback in the Spotify dashboard and use it instead',
  });
});

Deno.test("startCallbackServer() has no listener for an https redirect URI", async () => {
  await rejects(startCallbackServer({ redirectUri: "https://example.com/callback" }), {
    name: "TypeError",
    message: /only http:\/\/127\.0\.0\.1 and http:\/\/\[::1\] URIs have a local listener/,
  });
});

Deno.test("waitForCode() times out with a TimeoutError that says what to check", async () => {
  const server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const state = createState();
  const waiting = server.waitForCode(state, { timeout: 50 });
  waiting.catch(() => {});
  const refused = await get(`${server.redirectUri}?code=x&state=wrong`);
  strictEqual(refused.status, 400);
  await rejects(waiting, (error) => {
    ok(error instanceof DOMException);
    strictEqual(error.name, "TimeoutError");
    strictEqual(
      error.message,
      `Timed out after 50 ms waiting for the browser to come back to ${server.redirectUri}. If the browser shows "INVALID_CLIENT: Invalid redirect URI", register that URI (or the same one without its port) in the Spotify dashboard. 1 callback was refused because the state did not match this login.`,
    );
    strictEqual((error.cause as { received: string }).received, "wrong");
    return true;
  });
  await rejects(fetch(server.redirectUri), TypeError);
});

Deno.test("waitForCode() rejects with the abort reason and closes the port", async () => {
  const controller = new AbortController();
  const server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const waiting = server.waitForCode(createState(), { signal: controller.signal });
  const reason = new Error("user pressed Ctrl+C");
  controller.abort(reason);
  await rejects(waiting, (error) => error === reason);
  await rejects(fetch(server.redirectUri), TypeError);
});

Deno.test("startCallbackServer() closes when its own signal aborts", async (t) => {
  await t.step("before the wait", async () => {
    const controller = new AbortController();
    const server = await startCallbackServer({
      redirectUri: "http://127.0.0.1/callback",
      signal: controller.signal,
    });
    controller.abort(new Error("stop"));
    await server.close();
    await rejects(server.waitForCode("s"), { message: "stop" });
  });
  await t.step("during the wait", async () => {
    const controller = new AbortController();
    const server = await startCallbackServer({
      redirectUri: "http://127.0.0.1/callback",
      signal: controller.signal,
    });
    const waiting = server.waitForCode("s");
    controller.abort(new Error("stop"));
    await rejects(waiting, { message: "stop" });
    await server.close();
  });
  await t.step("already aborted", async () => {
    await rejects(
      startCallbackServer({
        redirectUri: "http://127.0.0.1/callback",
        signal: AbortSignal.abort(new Error("early")),
      }),
      { message: "early" },
    );
  });
});

Deno.test("close() rejects a pending wait with an AbortError", async () => {
  const server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const waiting = server.waitForCode("s");
  await server.close();
  await rejects(waiting, {
    name: "AbortError",
    message: "The callback listener was closed before the login finished",
  });
});

Deno.test("waitForCode() serves one login only", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const first = server.waitForCode("s");
  first.catch(() => {});
  await rejects(server.waitForCode("s"), {
    name: "TypeError",
    message: "Cannot wait twice: a callback listener serves one login; start a new one",
  });
});

Deno.test("startCallbackServer() tells a callback that comes before the wait to start again", async () => {
  await using server = await startCallbackServer({ redirectUri: "http://127.0.0.1/callback" });
  const page = await get(`${server.redirectUri}?code=x&state=y`);
  deepStrictEqual([page.status, /No login in progress/.test(page.body)], [503, true]);
});
