import { deepStrictEqual, throws } from "node:assert/strict";
import { normalizeScopes, SPOTIFY_SCOPES } from "../mod.ts";

Deno.test("normalizeScopes() splits on commas and spaces, dedupes and sorts", () => {
  deepStrictEqual(normalizeScopes("user-read-private, playlist-read-private"), [
    "playlist-read-private",
    "user-read-private",
  ]);
  deepStrictEqual(normalizeScopes("  a,,b\tc \n a "), ["a", "b", "c"]);
  deepStrictEqual(normalizeScopes(["b", " a ", "a,c"]), ["a", "b", "c"]);
});

Deno.test("normalizeScopes() treats nothing as no scopes", () => {
  deepStrictEqual(normalizeScopes(undefined), []);
  deepStrictEqual(normalizeScopes(""), []);
  deepStrictEqual(normalizeScopes([]), []);
});

Deno.test("normalizeScopes() refuses a non-string scope", () => {
  throws(() => normalizeScopes([1 as unknown as string]), {
    name: "TypeError",
    message: "Cannot use scope 1: scopes must be strings",
  });
});

Deno.test("SPOTIFY_SCOPES lists the 24 scopes of 2026 once each", () => {
  deepStrictEqual(normalizeScopes(SPOTIFY_SCOPES).length, 24);
});
