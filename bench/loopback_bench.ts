// Over real loopback sockets: the callback listener (start, one callback,
// close) and a whole PKCE login against the Accounts emulator, each next to
// a hand-rolled baseline that makes the same HTTP calls with no checks.
//
// The emulator is started once for this file, outside every measured
// function, and closed when the bench process unloads.
//
//   deno task bench bench/loopback_bench.ts

import { startCallbackServer } from "../src/callback_server.ts";
import { startAccountsEmulator } from "../src/emulator.ts";
import { pkceFlow } from "../src/flows.ts";
import { createState } from "../src/pkce.ts";
import {
  bareListenerStartClose,
  bareLogin,
  bareLoopbackExchange,
  CLIENT_ID,
  followRedirect,
  REDIRECT_URI,
} from "./_helpers.ts";
import { SMOKE, timed } from "./_samples.ts";

const emulator = await startAccountsEmulator({ autoApprove: true });
globalThis.addEventListener("unload", () => void emulator.close());

// --- listener ---------------------------------------------------------------

Deno.bench(
  "startCallbackServer() + close()",
  { ...SMOKE, group: "listener start+close" },
  async (b) => {
    await timed("startCallbackServer() + close()", b, async () => {
      const server = await startCallbackServer({ redirectUri: REDIRECT_URI });
      await server.close();
    });
  },
);

Deno.bench(
  "baseline: Deno.serve(port 0) + abort",
  { ...SMOKE, group: "listener start+close", baseline: true },
  async (b) => {
    await timed("baseline: Deno.serve(port 0) + abort", b, bareListenerStartClose);
  },
);

Deno.bench(
  "startCallbackServer() + one callback + close",
  { ...SMOKE, group: "listener callback" },
  async (b) => {
    await timed("startCallbackServer() + one callback + close", b, async () => {
      const server = await startCallbackServer({ redirectUri: REDIRECT_URI });
      const state = createState();
      const waiting = server.waitForCode(state, { timeout: 10_000 });
      const page = await fetch(`${server.redirectUri}?code=abc&state=${state}`);
      await page.body?.cancel();
      if (await waiting !== "abc") throw new Error("Wrong code");
      await server.close();
    });
  },
);

Deno.bench(
  "baseline: Deno.serve(port 0) + fetch + abort",
  { ...SMOKE, group: "listener callback", baseline: true },
  async (b) => {
    await timed("baseline: Deno.serve(port 0) + fetch + abort", b, bareLoopbackExchange);
  },
);

// --- full PKCE login --------------------------------------------------------

Deno.bench("pkceFlow() against the emulator", { ...SMOKE, group: "pkce login" }, async (b) => {
  await timed("pkceFlow() against the emulator", b, async () => {
    const token = await pkceFlow({
      clientId: CLIENT_ID,
      redirectUri: REDIRECT_URI,
      scope: ["user-read-private"],
      authorizeEndpoint: emulator.authorizeEndpoint,
      tokenEndpoint: emulator.tokenEndpoint,
      openBrowser: followRedirect,
    });
    if (!token.refreshToken) throw new Error("No refresh token");
  });
});

Deno.bench(
  "baseline: same HTTP calls, no checks",
  { ...SMOKE, group: "pkce login", baseline: true },
  async (b) => {
    await timed("baseline: PKCE login, same HTTP calls, no checks", b, async () => {
      if (!await bareLogin(emulator)) throw new Error("No access token");
    });
  },
);
