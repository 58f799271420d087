/**
 * Token stores: where a session keeps its token between runs.
 *
 * @module
 */

import { SpotifyAuthError } from "./errors.ts";
import { redactSecrets, type SpotifyToken } from "./token.ts";

/**
 * Which token a store entry holds: one per app and user, so two apps or two
 * people on one machine never share a token (as they do with spotipy's single
 * `.cache` file).
 *
 * @example The key of a second account
 * ```ts
 * import type { TokenKey } from "@spotikit/auth";
 *
 * const key: TokenKey = { clientId: "your-client-id", user: "work" };
 * ```
 */
export interface TokenKey {
  /** The app's client id. */
  clientId: string;
  /**
   * A label for the user, chosen by the caller; `undefined` is the default user.
   *
   * @default {undefined}
   */
  user?: string | undefined;
}

/**
 * What a store keeps for a key: the token and when the user consented, which
 * is when the refresh token's six-month life began.
 *
 * @example A record for a fresh login
 * ```ts
 * import type { SpotifyToken, TokenRecord } from "@spotikit/auth";
 *
 * declare const token: SpotifyToken;
 * const record: TokenRecord = { token, consentedAt: Date.now() };
 * ```
 */
export interface TokenRecord {
  /** The token. */
  token: SpotifyToken;
  /**
   * When the user logged in (epoch ms); refreshes keep it. `undefined` for
   * client credentials, which involve no user.
   */
  consentedAt?: number | undefined;
}

/** Options every store operation takes. */
export interface TokenStoreOptions {
  /**
   * Aborts the operation; it rejects with the signal's reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
}

/**
 * Where tokens live between runs. Implement it to keep tokens anywhere; the
 * package ships memory, file, Deno KV and Redis stores.
 *
 * @example A store over a `Map`
 * ```ts
 * import type { TokenKey, TokenRecord, TokenStore } from "@spotikit/auth";
 *
 * const map = new Map<string, TokenRecord>();
 * const name = (key: TokenKey) => JSON.stringify([key.clientId, key.user ?? null]);
 * const store: TokenStore = {
 *   get: (key) => Promise.resolve(map.get(name(key))),
 *   set: (key, record) => void map.set(name(key), record) ?? Promise.resolve(),
 *   delete: (key) => void map.delete(name(key)) ?? Promise.resolve(),
 * };
 * ```
 */
export interface TokenStore {
  /**
   * Reads the record for a key.
   *
   * @param key The app and user.
   * @param options Abort signal.
   * @returns The record, or `undefined` when there is none.
   * @throws {SpotifyTokenStoreError} When a record exists but cannot be read.
   */
  get(key: TokenKey, options?: TokenStoreOptions): Promise<TokenRecord | undefined>;
  /**
   * Writes the record for a key, replacing the old one whole or not at all.
   *
   * @param key The app and user.
   * @param record The record.
   * @param options Abort signal.
   */
  set(key: TokenKey, record: TokenRecord, options?: TokenStoreOptions): Promise<void>;
  /**
   * Deletes the record for a key; deleting nothing is not an error.
   *
   * @param key The app and user.
   * @param options Abort signal.
   */
  delete(key: TokenKey, options?: TokenStoreOptions): Promise<void>;
  /**
   * Runs `fn` while holding a lock on the key that other holders of the same
   * store (other processes, other machines) respect, so that only one of
   * them refreshes a token at a time. Stores without it are locked within
   * the process only.
   *
   * @param key The app and user.
   * @param fn What to do under the lock.
   * @param options Abort signal for the wait.
   * @returns What `fn` returned.
   */
  lock?<T>(key: TokenKey, fn: () => Promise<T>, options?: TokenStoreOptions): Promise<T>;
}

/**
 * A store could not read or write a record: a corrupt or unreadable file, a
 * read-only directory, a database error. The message names where, and the
 * record is left as it was.
 *
 * @example Report a broken token file
 * ```ts
 * import { FileTokenStore, SpotifyTokenStoreError } from "@spotikit/auth";
 *
 * const store = new FileTokenStore();
 * try {
 *   await store.get({ clientId: "your-client-id" });
 * } catch (error) {
 *   if (error instanceof SpotifyTokenStoreError) console.error(error.message);
 *   else throw error;
 * }
 * ```
 */
export class SpotifyTokenStoreError extends SpotifyAuthError {}

/** The version of the stored form, `{ version, token, consentedAt }`, that stores write. */
export const RECORD_VERSION = 1;

/** Checks a stored value: the version first, then the record; `where` names it in messages. */
export function checkStoredRecord(value: unknown, where: string): TokenRecord {
  const version = (value as { version?: unknown } | null)?.version;
  if (version !== RECORD_VERSION) {
    throw new SpotifyTokenStoreError(
      `Cannot read the token at ${where}: its format version is ${
        JSON.stringify(version) ?? "undefined"
      }, and this version of @spotikit/auth reads ${RECORD_VERSION}. It was left as it is; upgrade @spotikit/auth or delete it to log in again.`,
    );
  }
  return validateRecord(value, where);
}

/** Parses a stored record written as JSON text; see {@linkcode checkStoredRecord}. */
export function parseStoredRecord(text: string, where: string): TokenRecord {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SpotifyTokenStoreError(
      `Cannot read the token at ${where}: it is not valid JSON. It was left as it is; delete it to log in again.`,
    );
  }
  return checkStoredRecord(json, where);
}

/** Throws unless `value` is a record this package wrote; `where` names it in the message. */
export function validateRecord(value: unknown, where: string): TokenRecord {
  const fail = (problem: string): never => {
    throw new SpotifyTokenStoreError(
      `Cannot read the token at ${where}: ${problem}. It was left as it is; delete it to log in again.`,
    );
  };
  if (typeof value !== "object" || value === null) return fail("it is not a JSON object");
  const { token, consentedAt } = value as Record<string, unknown>;
  if (typeof token !== "object" || token === null) return fail("it has no token");
  const t = token as Record<string, unknown>;
  if (typeof t.accessToken !== "string" || !t.accessToken) return fail("accessToken is missing");
  if (t.tokenType !== "Bearer") return fail("tokenType is not Bearer");
  if (!Array.isArray(t.scope) || !t.scope.every((s) => typeof s === "string")) {
    return fail("scope is not a list of strings");
  }
  if (typeof t.expiresAt !== "number" || !Number.isFinite(t.expiresAt)) {
    return fail("expiresAt is not a number");
  }
  if (t.refreshToken !== undefined && (typeof t.refreshToken !== "string" || !t.refreshToken)) {
    return fail("refreshToken is not a string");
  }
  if (
    consentedAt !== undefined && (typeof consentedAt !== "number" || !Number.isFinite(consentedAt))
  ) {
    return fail("consentedAt is not a number");
  }
  const record: TokenRecord = {
    token: {
      accessToken: t.accessToken,
      tokenType: "Bearer",
      scope: [...t.scope],
      expiresAt: t.expiresAt,
    },
  };
  if (typeof t.refreshToken === "string") record.token.refreshToken = t.refreshToken;
  if (typeof consentedAt === "number") record.consentedAt = consentedAt;
  redactSecrets(record.token);
  return record;
}

/**
 * Keeps tokens in memory, for one process: tests, servers that log in at
 * start, and short scripts. Records are copied in and out, so callers cannot
 * change what is stored by accident.
 *
 * @example A session that forgets its token at exit
 * ```ts
 * import { createSpotifyAuth, MemoryTokenStore } from "@spotikit/auth";
 *
 * const auth = createSpotifyAuth({ clientId: "your-client-id", store: new MemoryTokenStore() });
 * ```
 */
export class MemoryTokenStore implements TokenStore {
  #records = new Map<string, TokenRecord>();

  /**
   * Reads a record.
   *
   * @param key The app and user.
   * @returns A copy of the record, or `undefined`.
   */
  get(key: TokenKey): Promise<TokenRecord | undefined> {
    const record = this.#records.get(keyName(key));
    if (!record) return Promise.resolve(undefined);
    const copy = structuredClone(record);
    redactSecrets(copy.token);
    return Promise.resolve(copy);
  }

  /**
   * Writes a record.
   *
   * @param key The app and user.
   * @param record The record.
   */
  set(key: TokenKey, record: TokenRecord): Promise<void> {
    this.#records.set(keyName(key), structuredClone(record));
    return Promise.resolve();
  }

  /**
   * Deletes a record.
   *
   * @param key The app and user.
   */
  delete(key: TokenKey): Promise<void> {
    this.#records.delete(keyName(key));
    return Promise.resolve();
  }
}

/** A string that names a key unambiguously. */
export function keyName(key: TokenKey): string {
  return JSON.stringify([key.clientId, key.user ?? null]);
}
