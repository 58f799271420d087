import { strictEqual, throws } from "node:assert/strict";
import {
  parseCallbackUrl,
  SpotifyAuthError,
  SpotifyOAuthError,
  SpotifyStateError,
} from "../mod.ts";

const base = "http://127.0.0.1:8888/callback";

Deno.test("parseCallbackUrl() returns the code and ignores extra parameters", () => {
  strictEqual(
    parseCallbackUrl(`${base}?code=AQB&state=s1&iss=https%3A%2F%2Faccounts.spotify.com`, "s1"),
    "AQB",
  );
});

Deno.test("parseCallbackUrl() turns ?error= into SpotifyOAuthError", () => {
  throws(() => parseCallbackUrl(`${base}?error=access_denied&state=s1`, "s1"), (error) => {
    if (!(error instanceof SpotifyOAuthError)) return false;
    strictEqual(error.error, "access_denied");
    strictEqual(error.errorDescription, undefined);
    strictEqual(error.status, undefined);
    strictEqual(
      error.message,
      "Spotify refused the authorization (access_denied). The user declined the login; run it again to retry.",
    );
    return true;
  });
});

Deno.test("parseCallbackUrl() rejects a missing state with SpotifyStateError", () => {
  throws(() => parseCallbackUrl(`${base}?code=AQB`, "s1"), (error) => {
    if (!(error instanceof SpotifyStateError)) return false;
    strictEqual(error.expected, "s1");
    strictEqual(error.received, undefined);
    strictEqual(
      error.message,
      "The authorization callback has no state parameter, so it cannot be matched to this login. Start the login again from this program.",
    );
    return true;
  });
});

Deno.test("parseCallbackUrl() rejects a different or repeated state", () => {
  throws(() => parseCallbackUrl(`${base}?code=AQB&state=s2`, "s1"), (error) => {
    return error instanceof SpotifyStateError && error.expected === "s1" && error.received === "s2";
  });
  throws(() => parseCallbackUrl(`${base}?code=AQB&state=s1&state=s2`, "s1"), (error) => {
    return error instanceof SpotifyStateError && error.received === "s1, s2";
  });
});

Deno.test("parseCallbackUrl() checks the state before trusting an error", () => {
  throws(
    () => parseCallbackUrl(`${base}?error=access_denied&state=forged`, "s1"),
    SpotifyStateError,
  );
});

Deno.test("parseCallbackUrl() refuses a callback with no code or two codes", () => {
  throws(() => parseCallbackUrl(`${base}?state=s1`, "s1"), (error) => {
    return error instanceof SpotifyAuthError && !(error instanceof SpotifyOAuthError) &&
      /neither a code nor an error/.test(error.message);
  });
  throws(() => parseCallbackUrl(`${base}?code=a&code=b&state=s1`, "s1"), {
    message:
      "The callback carries more than one code, so none can be trusted. Start the login again.",
  });
});

Deno.test("parseCallbackUrl() says what to paste when given something that is not a URL", () => {
  throws(() => parseCallbackUrl("code=abc&state=s1", "s1"), {
    name: "TypeError",
    message:
      "Cannot read the callback: it is not a URL; copy the whole address from the browser's address bar, starting with http",
  });
});
