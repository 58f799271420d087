import { deepStrictEqual, rejects } from "node:assert/strict";
import { browserCommands, openBrowser, SpotifyAuthError } from "../mod.ts";

const url = "https://accounts.spotify.com/authorize?client_id=a&state=b&scope=c";

Deno.test("browserCommands() uses each platform's launcher with the URL as one argument", () => {
  deepStrictEqual(browserCommands(url, { os: "linux", browser: "", display: true }), [[
    "xdg-open",
    url,
  ]]);
  deepStrictEqual(browserCommands(url, { os: "darwin", browser: "" }), [["open", url]]);
  deepStrictEqual(browserCommands(url, { os: "windows", browser: "" }), [
    ["rundll32", "url.dll,FileProtocolHandler", url],
  ]);
});

Deno.test("browserCommands() tries $BROWSER first, with %s or the URL appended", () => {
  deepStrictEqual(
    browserCommands(url, {
      os: "linux",
      browser: "firefox --new-tab:chromium %s --incognito",
      display: true,
    }),
    [["firefox", "--new-tab", url], ["chromium", url, "--incognito"], ["xdg-open", url]],
  );
});

Deno.test("browserCommands() has no xdg-open without a display", () => {
  deepStrictEqual(browserCommands(url, { os: "linux", browser: "", display: false }), []);
  deepStrictEqual(browserCommands(url, { os: "linux", browser: "w3m", display: false }), [[
    "w3m",
    url,
  ]]);
});

Deno.test("openBrowser() resolves when the launcher succeeds", async () => {
  await openBrowser(url, { os: "linux", browser: "true", display: false });
});

Deno.test("openBrowser() says why each launcher failed", async () => {
  await rejects(
    openBrowser(url, { os: "linux", browser: "spotikit-no-such-browser:false", display: false }),
    (error) =>
      error instanceof SpotifyAuthError &&
      error.message ===
        "Cannot open a browser: spotikit-no-such-browser is not installed; false exited with code 1",
  );
  await rejects(openBrowser(url, { os: "linux", browser: "", display: false }), {
    message:
      "Cannot open a browser: there is no display (DISPLAY and WAYLAND_DISPLAY are unset) and BROWSER is not set",
  });
});
