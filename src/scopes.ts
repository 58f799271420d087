/**
 * Spotify's authorization scopes and their normalisation.
 *
 * @module
 */

/**
 * Every scope Spotify knows (2026), partner-only ones last.
 *
 * @example Offer the scopes in a picker
 * ```ts
 * import { SPOTIFY_SCOPES } from "@spotikit/auth";
 *
 * for (const scope of SPOTIFY_SCOPES) console.log(scope);
 * ```
 */
export const SPOTIFY_SCOPES = [
  "ugc-image-upload",
  "user-read-playback-state",
  "user-modify-playback-state",
  "user-read-currently-playing",
  "app-remote-control",
  "streaming",
  "playlist-read-private",
  "playlist-read-collaborative",
  "playlist-modify-private",
  "playlist-modify-public",
  "user-follow-modify",
  "user-follow-read",
  "user-read-playback-position",
  "user-top-read",
  "user-read-recently-played",
  "user-library-modify",
  "user-library-read",
  "user-read-email",
  "user-read-private",
  "user-soa-link",
  "user-soa-unlink",
  "soa-manage-entitlements",
  "soa-manage-partner",
  "soa-create-partner",
] as const;

/**
 * The name of a Spotify scope.
 *
 * @example Type a list of scopes
 * ```ts
 * import type { SpotifyScope } from "@spotikit/auth";
 *
 * const scopes: SpotifyScope[] = ["user-read-private", "playlist-read-private"];
 * ```
 */
export type SpotifyScope = typeof SPOTIFY_SCOPES[number];

/**
 * Scopes as callers give them: an array, or one string separated by spaces
 * and/or commas. Names Spotify does not know are accepted (Spotify adds
 * scopes), so the type leaves room for any string while still suggesting the
 * known names.
 *
 * @example Both forms
 * ```ts
 * import type { ScopeInput } from "@spotikit/auth";
 *
 * const a: ScopeInput = ["user-read-private", "user-read-email"];
 * const b: ScopeInput = "user-read-private, user-read-email";
 * ```
 */
// deno-lint-ignore ban-types
export type ScopeInput = string | readonly (SpotifyScope | (string & {}))[];

/**
 * Turns scopes in any accepted form into a sorted list of unique names.
 *
 * Unlike spotipy, `"a, b"` becomes `["a", "b"]`, not `" b a"`: commas and
 * runs of whitespace both separate, and empty names are dropped.
 *
 * @param scope An array of names, or one string separated by spaces and/or
 * commas; `undefined` means no scopes.
 * @returns The names, trimmed, unique and sorted.
 *
 * @example Normalise a comma-separated string
 * ```ts
 * import { normalizeScopes } from "@spotikit/auth";
 * import { deepStrictEqual } from "node:assert/strict";
 *
 * deepStrictEqual(normalizeScopes("user-read-private, playlist-read-private user-read-private"), [
 *   "playlist-read-private",
 *   "user-read-private",
 * ]);
 * ```
 */
export function normalizeScopes(scope: ScopeInput | undefined): string[] {
  if (scope === undefined) return [];
  const parts = typeof scope === "string" ? [scope] : scope;
  const names = new Set<string>();
  for (const part of parts) {
    if (typeof part !== "string") {
      throw new TypeError(`Cannot use scope ${String(part)}: scopes must be strings`);
    }
    for (const name of part.split(/[\s,]+/)) if (name) names.add(name);
  }
  return [...names].sort();
}
