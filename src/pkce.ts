/**
 * PKCE (RFC 7636, S256 only) and `state` values.
 *
 * @module
 */

const VERIFIER_PATTERN = /^[A-Za-z0-9\-._~]{43,128}$/;

/** Options for {@linkcode createCodeVerifier}. */
export interface CreateCodeVerifierOptions {
  /**
   * Length of the verifier in characters, 43 to 128 (RFC 7636 §4.1).
   *
   * @default {64}
   */
  length?: number;
}

function randomBase64Url(bytes: number): string {
  return crypto.getRandomValues(new Uint8Array(bytes)).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
}

/**
 * Creates a PKCE code verifier: random base64url characters, so every one of
 * them carries 6 bits from `crypto.getRandomValues` (the 43-character minimum
 * holds 258 bits, above the 256 that RFC 7636 §7.1 asks for).
 *
 * @param options The verifier's length.
 * @returns A fresh code verifier.
 * @throws {RangeError} When `length` is not an integer from 43 to 128.
 *
 * @example Create a verifier and its challenge
 * ```ts
 * import { createCodeChallenge, createCodeVerifier } from "@spotikit/auth";
 *
 * const verifier = createCodeVerifier();
 * const challenge = await createCodeChallenge(verifier);
 * ```
 */
export function createCodeVerifier(options: CreateCodeVerifierOptions = {}): string {
  const { length = 64 } = options;
  if (!Number.isInteger(length) || length < 43 || length > 128) {
    throw new RangeError(
      `Cannot create a code verifier of length ${length}: it must be an integer from 43 to 128`,
    );
  }
  return randomBase64Url(Math.ceil(length * 3 / 4)).slice(0, length);
}

/**
 * Computes the S256 code challenge of a verifier:
 * `BASE64URL(SHA256(ASCII(verifier)))`. Spotify accepts only S256, and so do we.
 *
 * @param verifier A code verifier of 43 to 128 characters of `[A-Za-z0-9-._~]`.
 * @returns The code challenge.
 * @throws {TypeError} When the verifier is not valid per RFC 7636 §4.1.
 *
 * @example The RFC 7636 Appendix B vector
 * ```ts
 * import { createCodeChallenge } from "@spotikit/auth";
 * import { strictEqual } from "node:assert/strict";
 *
 * strictEqual(
 *   await createCodeChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
 *   "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
 * );
 * ```
 */
export async function createCodeChallenge(verifier: string): Promise<string> {
  if (typeof verifier !== "string" || !VERIFIER_PATTERN.test(verifier)) {
    throw new TypeError(
      "Cannot create a code challenge: the verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~'; use createCodeVerifier()",
    );
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return new Uint8Array(digest).toBase64({ alphabet: "base64url", omitPadding: true });
}

/**
 * Creates an unguessable `state` value: 256 random bits, base64url encoded.
 *
 * @returns A fresh state of 43 characters.
 *
 * @example Bind a login to its callback
 * ```ts
 * import { createState, parseCallbackUrl } from "@spotikit/auth";
 *
 * const state = createState();
 * const code = parseCallbackUrl(`http://127.0.0.1:8888/callback?code=abc&state=${state}`, state);
 * ```
 */
export function createState(): string {
  return randomBase64Url(32);
}
