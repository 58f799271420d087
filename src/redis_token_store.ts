/**
 * A token store in Redis, for fleets of machines that share one Spotify
 * login: every machine reads the same token, and the lock makes sure only one
 * of them refreshes it when it expires.
 *
 * This is its own entrypoint (`@spotikit/auth/redis`) so that only callers who
 * use Redis load the Redis client. Bring your own connected client from the
 * `redis` package (node-redis); the store never connects or closes it.
 *
 * @example A session whose token lives in Redis
 * ```ts
 * import { createClient } from "redis";
 * import { createSpotifyAuth } from "@spotikit/auth";
 * import { RedisTokenStore } from "@spotikit/auth/redis";
 *
 * const client = createClient({ url: "redis://127.0.0.1:6379" });
 * client.on("error", (error) => console.error("Redis:", error));
 * await client.connect();
 *
 * const auth = createSpotifyAuth({
 *   clientId: "your-client-id",
 *   store: new RedisTokenStore(client),
 * });
 * ```
 *
 * @module
 */

import { delay } from "./_timing.ts";
import {
  parseStoredRecord,
  RECORD_VERSION,
  SpotifyTokenStoreError,
  type TokenKey,
  type TokenRecord,
  type TokenStore,
  type TokenStoreOptions,
} from "./token_store.ts";

// Re-exported so that this entrypoint documents (and lets callers name)
// everything its signatures mention without importing the main module.
export { SpotifyAuthError } from "./errors.ts";
export type { SpotifyToken } from "./token.ts";
export {
  SpotifyTokenStoreError,
  type TokenKey,
  type TokenRecord,
  type TokenStore,
  type TokenStoreOptions,
} from "./token_store.ts";

/** Compare-and-delete: releases a lock only while it is still ours. */
// How long lock() waits for Redis to confirm a release.
const RELEASE_WAIT = 2_000;

const RELEASE_SCRIPT =
  'if redis.call("get",KEYS[1])==ARGV[1] then return redis.call("del",KEYS[1]) end return 0';

// Waiting for a lock held elsewhere: exponential backoff from 10 ms to 250 ms
// with jitter, never past the holder's remaining lease.
const MIN_BACKOFF = 10;
const MAX_BACKOFF = 250;

/**
 * The commands {@linkcode RedisTokenStore} sends, in the shape of the `redis`
 * package (node-redis 5 and later): a client from its `createClient()` fits,
 * whatever its RESP version, modules, scripts or type mapping, and so do a
 * client pool (`createClientPool()`) and a cluster (`createCluster()`).
 * Replies are checked at run time, so they are typed `unknown` here.
 *
 * @example A client for the store
 * ```ts
 * import { createClient } from "redis";
 * import type { RedisTokenStoreClient } from "@spotikit/auth/redis";
 *
 * const client: RedisTokenStoreClient = await createClient({ url: "redis://127.0.0.1:6379" })
 *   .connect();
 * ```
 */
export interface RedisTokenStoreClient {
  /**
   * `GET key`: the value, or `null`.
   *
   * @param key The Redis key.
   * @returns The reply.
   */
  get(key: string): Promise<unknown>;
  /**
   * `SET key value [NX] [PX ms]`: `"OK"`, or `null` when `NX` kept it from
   * writing.
   *
   * @param key The Redis key.
   * @param value The value.
   * @param options `NX` and the expiry, for locks.
   * @returns The reply.
   */
  set(key: string, value: string, options?: RedisSetOptions): Promise<unknown>;
  /**
   * `DEL key`.
   *
   * @param key The Redis key.
   * @returns The reply.
   */
  del(key: string): Promise<unknown>;
  /**
   * `EVAL script numkeys key… arg…`.
   *
   * @param script The Lua script.
   * @param options Its keys and arguments.
   * @returns The reply.
   */
  eval(script: string, options: RedisEvalOptions): Promise<unknown>;
  /**
   * `PTTL key`: the milliseconds left, `-1` without expiry, `-2` without key.
   *
   * @param key The Redis key.
   * @returns The reply.
   */
  pTTL(key: string): Promise<unknown>;
}

/**
 * The `SET` options {@linkcode RedisTokenStore} passes when it takes a lock,
 * a subset of node-redis's `SetOptions`.
 *
 * @example Take a 30-second lease
 * ```ts
 * import type { RedisSetOptions } from "@spotikit/auth/redis";
 *
 * const options: RedisSetOptions = { condition: "NX", expiration: { type: "PX", value: 30_000 } };
 * ```
 */
export interface RedisSetOptions {
  /** Write only if the key does not exist. */
  condition: "NX";
  /** Expire after `value` milliseconds. */
  expiration: { type: "PX"; value: number };
}

/**
 * The `EVAL` options {@linkcode RedisTokenStore} passes when it releases a
 * lock, as node-redis's `EvalOptions`.
 *
 * @example Release a lock
 * ```ts
 * import type { RedisEvalOptions } from "@spotikit/auth/redis";
 *
 * const options: RedisEvalOptions = { keys: ["spotikit:token:abc#lock"], arguments: ["owner-id"] };
 * ```
 */
export interface RedisEvalOptions {
  /** `KEYS` in the script. */
  keys: string[];
  /** `ARGV` in the script. */
  arguments: string[];
}

/** Options for {@linkcode RedisTokenStore}. */
export interface RedisTokenStoreOptions {
  /**
   * Prepended to every key the store reads or writes, so that the tokens of
   * several deployments (or other data) can share one database.
   *
   * @default {"spotikit:token:"}
   */
  prefix?: string | undefined;
  /**
   * How long a lock is held at most, in milliseconds: if its holder crashes,
   * the others wait this long before one of them takes over. Make it longer
   * than a refresh can take (with the token endpoint's retries); a holder
   * still working when it runs out no longer excludes the others.
   *
   * @default {90_000}
   */
  lockTtl?: number | undefined;
}

/**
 * Keeps tokens in Redis, shared by every process and machine that uses the
 * same database and prefix, with a lock across all of them so that a fleet
 * refreshes an expiring token once.
 *
 * Keys: the default user's token is at `prefix + encodeURIComponent(clientId)`
 * and a named user's at `prefix + encodeURIComponent(clientId) + ":" +
 * encodeURIComponent(user)`; the lock on a token is at its key plus `#lock`.
 * `encodeURIComponent` escapes `:` and `#`, so no two keys collide (the user
 * `""` is not the default user). Values are JSON:
 * `{"version":1,"token":{…},"consentedAt":…}`, without an expiry.
 *
 * The lock is a lease: `SET lock owner NX PX lockTtl`, released with a Lua
 * compare-and-delete so that a holder whose lease ran out never deletes the
 * lease another holder took over. Waiters poll with a jittered backoff capped
 * by the lease's remaining time.
 *
 * @example Share a login across machines
 * ```ts
 * import { createClient } from "redis";
 * import { RedisTokenStore } from "@spotikit/auth/redis";
 *
 * const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
 * const store = new RedisTokenStore(client, { prefix: "myapp:spotify:" });
 *
 * const record = await store.get({ clientId: "your-client-id" });
 * console.log(record?.token.expiresAt);
 * client.destroy();
 * ```
 */
export class RedisTokenStore implements TokenStore {
  /** The client the store sends its commands through. */
  readonly client: RedisTokenStoreClient;
  /** The key prefix. */
  readonly prefix: string;
  /** The longest a lock is held, in milliseconds. */
  readonly lockTtl: number;

  /**
   * Creates a store over a client the caller has created and connected (and
   * will close); the store only sends commands through it.
   *
   * @param client A connected client from the `redis` package.
   * @param options Key prefix and lock lease time.
   * @throws {RangeError} When `lockTtl` is not a positive whole number of
   * milliseconds.
   *
   * @example A store with a shorter lock lease
   * ```ts
   * import { createClient } from "redis";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
   * const store = new RedisTokenStore(client, { lockTtl: 10_000 });
   * ```
   */
  constructor(client: RedisTokenStoreClient, options: RedisTokenStoreOptions = {}) {
    const { prefix = "spotikit:token:", lockTtl = 90_000 } = options;
    if (!Number.isSafeInteger(lockTtl) || lockTtl <= 0) {
      throw new RangeError(
        `Cannot create a RedisTokenStore: lockTtl must be a positive whole number of milliseconds, got ${lockTtl}`,
      );
    }
    this.client = client;
    this.prefix = prefix;
    this.lockTtl = lockTtl;
  }

  /**
   * The Redis key that holds a token.
   *
   * @param key The app and user.
   * @returns `prefix + encodeURIComponent(clientId)`, plus `":" +
   * encodeURIComponent(user)` for a named user.
   *
   * @example Where the default user's token is
   * ```ts
   * import { createClient } from "redis";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * const store = new RedisTokenStore(createClient());
   * store.redisKey({ clientId: "abc", user: "work" }); // "spotikit:token:abc:work"
   * ```
   */
  redisKey(key: TokenKey): string {
    const base = this.prefix + encodeURIComponent(key.clientId);
    return key.user === undefined ? base : `${base}:${encodeURIComponent(key.user)}`;
  }

  /**
   * The Redis key of the lock on a token.
   *
   * @param key The app and user.
   * @returns The token's key plus `#lock`.
   *
   * @example Where the lock on a token is
   * ```ts
   * import { createClient } from "redis";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * const store = new RedisTokenStore(createClient());
   * store.lockKey({ clientId: "abc" }); // "spotikit:token:abc#lock"
   * ```
   */
  lockKey(key: TokenKey): string {
    return `${this.redisKey(key)}#lock`;
  }

  /**
   * Reads a key's token.
   *
   * @param key The app and user.
   * @param options Abort signal, checked before the command is sent.
   * @returns The record, or `undefined` when the key does not exist.
   * @throws {SpotifyTokenStoreError} When the command fails, or the value is
   * not a record this package wrote (bad JSON, another format version, a
   * missing field); the message names the key, and the value is left as it
   * is.
   *
   * @example Read the stored token
   * ```ts
   * import { createClient } from "redis";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
   * const record = await new RedisTokenStore(client).get({ clientId: "your-client-id" });
   * ```
   */
  async get(key: TokenKey, options: TokenStoreOptions = {}): Promise<TokenRecord | undefined> {
    options.signal?.throwIfAborted();
    const redisKey = this.redisKey(key);
    const raw = await this.#command("read", redisKey, () => this.client.get(redisKey));
    if (raw === null || raw === undefined) return undefined;
    // A client with a type mapping may hand back a Buffer.
    const text = raw instanceof Uint8Array ? new TextDecoder().decode(raw) : String(raw);
    return parseStoredRecord(text, describe(redisKey));
  }

  /**
   * Writes a key's token, replacing the old one in one command.
   *
   * @param key The app and user.
   * @param record The record.
   * @param options Abort signal, checked before the command is sent.
   * @throws {SpotifyTokenStoreError} When the command fails; the message names
   * the key.
   *
   * @example Store a token
   * ```ts
   * import { createClient } from "redis";
   * import type { SpotifyToken } from "@spotikit/auth";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * declare const token: SpotifyToken;
   * const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
   * await new RedisTokenStore(client).set({ clientId: "your-client-id" }, { token });
   * ```
   */
  async set(key: TokenKey, record: TokenRecord, options: TokenStoreOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const redisKey = this.redisKey(key);
    const value = JSON.stringify({
      version: RECORD_VERSION,
      token: record.token,
      consentedAt: record.consentedAt,
    });
    await this.#command("write", redisKey, () => this.client.set(redisKey, value));
  }

  /**
   * Deletes a key's token; deleting nothing is not an error.
   *
   * @param key The app and user.
   * @param options Abort signal, checked before the command is sent.
   * @throws {SpotifyTokenStoreError} When the command fails; the message names
   * the key.
   *
   * @example Log out everywhere
   * ```ts
   * import { createClient } from "redis";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
   * await new RedisTokenStore(client).delete({ clientId: "your-client-id" });
   * ```
   */
  async delete(key: TokenKey, options: TokenStoreOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const redisKey = this.redisKey(key);
    await this.#command("delete", redisKey, () => this.client.del(redisKey));
  }

  /**
   * Runs `fn` while holding the key's lock, which every store on the same
   * database and prefix respects, on any machine. While another holder has
   * it, waits (polling with a jittered backoff capped by the lease's
   * remaining time) until it is released or its lease runs out.
   *
   * The signal aborts the wait only: once `fn` has started it runs to the
   * end, and the lock is released after it, whether it returns or throws. If
   * releasing fails (the connection is gone), the lease runs out by itself
   * after `lockTtl`, and `fn`'s result or error stands.
   *
   * @typeParam T What `fn` resolves to.
   * @param key The app and user.
   * @param fn What to do under the lock.
   * @param options Abort signal for the wait.
   * @returns What `fn` returned.
   * @throws {SpotifyTokenStoreError} When a command to take the lock fails;
   * the message names the lock's key.
   * @throws The signal's reason, when it aborts before the lock is taken.
   * @throws Whatever `fn` throws.
   *
   * @example Refresh once across a fleet
   * ```ts
   * import { createClient } from "redis";
   * import { RedisTokenStore } from "@spotikit/auth/redis";
   *
   * const client = await createClient({ url: "redis://127.0.0.1:6379" }).connect();
   * const store = new RedisTokenStore(client);
   * const key = { clientId: "your-client-id" };
   * await store.lock(key, async () => {
   *   const record = await store.get(key);
   *   // Refresh here unless another machine just did, then store.set(key, …).
   * }, { signal: AbortSignal.timeout(60_000) });
   * ```
   */
  async lock<T>(key: TokenKey, fn: () => Promise<T>, options: TokenStoreOptions = {}): Promise<T> {
    const { signal } = options;
    signal?.throwIfAborted();
    const lockKey = this.lockKey(key);
    const owner = crypto.randomUUID();
    await this.#acquire(lockKey, owner, signal);
    try {
      return await fn();
    } finally {
      // Awaited, so that a process that exits next leaves no lease behind,
      // but only briefly: node-redis queues commands while it is offline,
      // and the lease ends by itself after lockTtl anyway.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#release(lockKey, owner),
        new Promise<void>((resolve) => timer = setTimeout(resolve, RELEASE_WAIT)),
      ]);
      clearTimeout(timer);
    }
  }

  async #acquire(lockKey: string, owner: string, signal: AbortSignal | undefined): Promise<void> {
    for (let backoff = MIN_BACKOFF;; backoff = Math.min(backoff * 2, MAX_BACKOFF)) {
      const reply = await this.#command("lock", lockKey, () =>
        this.client.set(lockKey, owner, {
          condition: "NX",
          expiration: { type: "PX", value: this.lockTtl },
        }));
      const acquired = reply !== null && reply !== undefined;
      // A command in flight cannot be cancelled: if the signal aborted
      // meanwhile, give back what it got before rejecting.
      if (signal?.aborted) {
        if (acquired) await this.#release(lockKey, owner);
        throw signal.reason;
      }
      if (acquired) return;
      const remaining = Number(
        await this.#command("lock", lockKey, () => this.client.pTTL(lockKey)),
      );
      signal?.throwIfAborted();
      // -2: released since the SET, so retry at once; -1: a lock key without
      // expiry (not one of ours), so only the backoff applies.
      if (remaining === -2) continue;
      const jittered = backoff / 2 + Math.random() * (backoff / 2);
      await delay(remaining >= 0 ? Math.min(jittered, remaining + 1) : jittered, signal);
    }
  }

  async #release(lockKey: string, owner: string): Promise<void> {
    try {
      await this.client.eval(RELEASE_SCRIPT, { keys: [lockKey], arguments: [owner] });
    } catch {
      // The lease runs out by itself after lockTtl; the caller's result or
      // error matters more than a failed early release.
    }
  }

  async #command<T>(action: string, redisKey: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const what = action === "lock"
        ? `take the lock at ${describe(redisKey)}`
        : `${action} the token at ${describe(redisKey)}`;
      throw new SpotifyTokenStoreError(
        `Cannot ${what}: ${message}. Check that the Redis client is connected and the server is reachable.`,
        { cause: error },
      );
    }
  }
}

function describe(redisKey: string): string {
  return `Redis key ${JSON.stringify(redisKey)}`;
}

/** Resolves after `ms`, or rejects with the signal's reason (clearing the timer) once it aborts. */
