/**
 * A token store over Deno KV, with a lock that many processes and machines
 * respect: `@spotikit/auth/kv`.
 *
 * It is a separate entrypoint so that the main module never needs Deno's
 * unstable KV types. Run with `--unstable-kv` (or `"unstable": ["kv"]` in
 * `deno.json`). `Deno.openKv()` opens a local SQLite file by default; the same
 * code serves any number of instances on a shared KV, such as Deno Deploy's.
 *
 * On a local SQLite file shared by several processes, two things differ
 * from Deno Deploy: `kv.watch()` does not see other processes' writes, so a
 * waiter there notices a release at its next poll (`pollInterval`); and a
 * write that races another process's write can fail with "database is
 * locked", which this store retries a few times before it reports it.
 *
 * @example Keep tokens in Deno KV
 * ```ts
 * import { KvTokenStore } from "@spotikit/auth/kv";
 *
 * using kv = await Deno.openKv();
 * const store = new KvTokenStore(kv);
 * const key = { clientId: "your-client-id" };
 * const record = await store.lock(key, () => store.get(key));
 * console.log(record?.token.expiresAt);
 * ```
 *
 * @module
 */

import { delay } from "./_timing.ts";
import { checkStoredRecord, SpotifyTokenStoreError, type TokenKey } from "./token_store.ts";
import type { TokenRecord, TokenStore, TokenStoreOptions } from "./token_store.ts";

export { SpotifyTokenStoreError } from "./token_store.ts";
export type { TokenKey, TokenRecord, TokenStore, TokenStoreOptions } from "./token_store.ts";
export type { SpotifyToken } from "./token.ts";
export { SpotifyAuthError } from "./errors.ts";

/** Options for {@linkcode KvTokenStore}. */
export interface KvTokenStoreOptions {
  /**
   * Where records live: the record of the default user of a client id is at
   * `[...prefix, clientId]`, that of a named user at
   * `[...prefix, clientId, user]`.
   *
   * @default {["spotikit", "tokens"]}
   */
  prefix?: Deno.KvKey | undefined;
  /**
   * Where locks live, keyed like records: `[...lockPrefix, clientId]` and
   * `[...lockPrefix, clientId, user]`. It must not start with `prefix` nor
   * `prefix` with it, so that a lock is never taken for a record.
   *
   * @default {["spotikit", "locks"]}
   */
  lockPrefix?: Deno.KvKey | undefined;
  /**
   * How long a lock lasts, in milliseconds, if its holder never releases it
   * (it crashed, or lost its connection). A holder whose work takes longer
   * may lose the lock to a waiter, so keep it well above the time a token
   * refresh takes. Hosts that share a KV must keep their clocks within a
   * small fraction of it.
   *
   * @default {90000}
   */
  lockTtl?: number | undefined;
  /**
   * How often, in milliseconds, a waiter re-reads a lock that is taken.
   * Waiters also watch the lock with `kv.watch()`, which on Deno Deploy sees
   * every release at once; on a local SQLite file it sees only releases by
   * the same process (denoland/deno#21640), so waiters in other processes
   * see a release within this interval (jittered down to half of it).
   *
   * @default {1000}
   */
  pollInterval?: number | undefined;
}

/** What a record entry holds. */
interface StoredRecord {
  version: 1;
  token: TokenRecord["token"];
  consentedAt?: number;
}

/** What a lock entry holds. */
interface StoredLock {
  version: 1;
  /** A random id of the holder. */
  owner: string;
  /** When the lock lapses (epoch ms), whether or not KV has deleted it yet. */
  deadline: number;
}

/**
 * Keeps tokens in Deno KV, one entry per client id and user, and locks them
 * across every process and machine that shares the KV, so that only one of
 * them refreshes a token at a time.
 *
 * An entry holds `{ version: 1, token, consentedAt }`; a lock entry holds a
 * random owner id and its deadline, and is written with `expireIn` so that
 * KV deletes it after `lockTtl` even if its holder never does.
 *
 * @example A session whose token is shared by every instance of a server
 * ```ts
 * import { createSpotifyAuth } from "@spotikit/auth";
 * import { KvTokenStore } from "@spotikit/auth/kv";
 *
 * const kv = await Deno.openKv();
 * const auth = createSpotifyAuth({
 *   clientId: "your-client-id",
 *   store: new KvTokenStore(kv, { prefix: ["my-app", "spotify"] }),
 * });
 * ```
 */
export class KvTokenStore implements TokenStore {
  #kv: Deno.Kv;
  #prefix: Deno.KvKey;
  #lockPrefix: Deno.KvKey;
  #lockTtl: number;
  #pollInterval: number;
  /** Per lock key, the last call of this store in line for it. */
  #queues = new Map<string, Promise<void>>();

  /**
   * Creates a store over a KV that the caller opened and will close.
   *
   * @param kv The KV, from `Deno.openKv()`.
   * @param options Key prefixes, lock lifetime and poll interval.
   * @throws {RangeError} When `lockTtl` or `pollInterval` is not a positive
   * integer.
   * @throws {TypeError} When `prefix` and `lockPrefix` overlap.
   *
   * @example A store with a short lock
   * ```ts
   * import { KvTokenStore } from "@spotikit/auth/kv";
   *
   * const kv = await Deno.openKv("./tokens.sqlite3");
   * const store = new KvTokenStore(kv, { lockTtl: 10_000 });
   * ```
   */
  constructor(kv: Deno.Kv, options: KvTokenStoreOptions = {}) {
    const {
      prefix = ["spotikit", "tokens"],
      lockPrefix = ["spotikit", "locks"],
      lockTtl = 90_000,
      pollInterval = 1_000,
    } = options;
    for (const [name, value] of [["lockTtl", lockTtl], ["pollInterval", pollInterval]] as const) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new RangeError(
          `Cannot create a KvTokenStore with ${name} ${value}: it must be a positive integer of milliseconds`,
        );
      }
    }
    if (startsWith(prefix, lockPrefix) || startsWith(lockPrefix, prefix)) {
      throw new TypeError(
        `Cannot create a KvTokenStore with prefix ${formatKey(prefix)} and lockPrefix ${
          formatKey(lockPrefix)
        }: neither may start with the other`,
      );
    }
    this.#kv = kv;
    this.#prefix = [...prefix];
    this.#lockPrefix = [...lockPrefix];
    this.#lockTtl = lockTtl;
    this.#pollInterval = pollInterval;
  }

  /**
   * Reads the record for a key.
   *
   * @param key The app and user.
   * @param options Abort signal.
   * @returns The record, or `undefined` when there is none.
   * @throws {SpotifyTokenStoreError} When the entry is not a record this
   * package wrote, or KV fails; the message names the KV key.
   *
   * @example Read the default user's token
   * ```ts
   * import { KvTokenStore } from "@spotikit/auth/kv";
   *
   * const store = new KvTokenStore(await Deno.openKv());
   * const record = await store.get({ clientId: "your-client-id" });
   * ```
   */
  async get(key: TokenKey, options: TokenStoreOptions = {}): Promise<TokenRecord | undefined> {
    options.signal?.throwIfAborted();
    const kvKey = this.#recordKey(key);
    let entry: Deno.KvEntryMaybe<unknown>;
    try {
      entry = await this.#kv.get(kvKey);
    } catch (error) {
      throw kvError("read the token", kvKey, error);
    }
    if (entry.versionstamp === null) return undefined;
    const where = `Deno KV key ${formatKey(kvKey)}`;
    return checkStoredRecord(entry.value, where);
  }

  /**
   * Writes the record for a key, replacing the old one whole.
   *
   * @param key The app and user.
   * @param record The record.
   * @param options Abort signal.
   * @returns Once KV has committed the write.
   * @throws {SpotifyTokenStoreError} When KV fails (for instance, a value over
   * its size limit); the message names the KV key.
   *
   * @example Keep a fresh token
   * ```ts
   * import type { SpotifyToken } from "@spotikit/auth";
   * import { KvTokenStore } from "@spotikit/auth/kv";
   *
   * declare const token: SpotifyToken;
   * const store = new KvTokenStore(await Deno.openKv());
   * await store.set({ clientId: "your-client-id" }, { token, consentedAt: Date.now() });
   * ```
   */
  async set(key: TokenKey, record: TokenRecord, options: TokenStoreOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const kvKey = this.#recordKey(key);
    const value: StoredRecord = { version: 1, token: record.token };
    if (record.consentedAt !== undefined) value.consentedAt = record.consentedAt;
    try {
      await retryWhenBusy(() => this.#kv.set(kvKey, value), options.signal);
    } catch (error) {
      if (options.signal?.aborted && error === options.signal.reason) throw error;
      throw kvError("write the token", kvKey, error);
    }
  }

  /**
   * Deletes the record for a key; deleting nothing is not an error.
   *
   * @param key The app and user.
   * @param options Abort signal.
   * @returns Once KV has committed the deletion.
   * @throws {SpotifyTokenStoreError} When KV fails; the message names the KV
   * key.
   *
   * @example Log a user out
   * ```ts
   * import { KvTokenStore } from "@spotikit/auth/kv";
   *
   * const store = new KvTokenStore(await Deno.openKv());
   * await store.delete({ clientId: "your-client-id", user: "work" });
   * ```
   */
  async delete(key: TokenKey, options: TokenStoreOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const kvKey = this.#recordKey(key);
    try {
      await retryWhenBusy(() => this.#kv.delete(kvKey), options.signal);
    } catch (error) {
      if (options.signal?.aborted && error === options.signal.reason) throw error;
      throw kvError("delete the token", kvKey, error);
    }
  }

  /**
   * Runs `fn` while holding the key's lock, which every store on the same KV
   * and `lockPrefix` respects, in this process or another.
   *
   * Taking the lock creates its entry only if there is none (an atomic check
   * that it is absent), with a random owner id, a deadline `lockTtl` ahead
   * and `expireIn: lockTtl`. While it is taken, the caller waits for a change
   * (`kv.watch()`), for the next poll, or for the deadline, whichever comes
   * first, then tries again; a lock past its deadline counts as free (KV
   * deletes expired entries lazily) and is taken over by an atomic check on
   * its versionstamp. The release deletes the lock only if it is still the
   * one this call took, so a lock taken over after its deadline stays with
   * its new holder. If the release fails, the lock lapses at its deadline.
   * Calls on one store for one key first line up in the process, so that
   * only one of them at a time waits on KV.
   *
   * @typeParam T What `fn` returns.
   * @param key The app and user.
   * @param fn What to do under the lock; it should finish within `lockTtl`.
   * @param options Abort signal for the wait; once `fn` runs, it is `fn`'s to
   * honour.
   * @returns What `fn` returned.
   * @throws {SpotifyTokenStoreError} When KV fails while taking the lock; the
   * message names the lock's KV key.
   * @throws {unknown} The signal's reason, when it aborts before `fn` runs;
   * whatever `fn` throws.
   *
   * @example Refresh once, however many processes ask
   * ```ts
   * import { isTokenExpired, refreshToken } from "@spotikit/auth";
   * import { KvTokenStore } from "@spotikit/auth/kv";
   *
   * const store = new KvTokenStore(await Deno.openKv());
   * const key = { clientId: "your-client-id" };
   * const token = await store.lock(key, async () => {
   *   const record = await store.get(key);
   *   if (!record) throw new Error("Log in first");
   *   if (!isTokenExpired(record.token)) return record.token;
   *   const token = await refreshToken(record.token, { clientId: key.clientId });
   *   await store.set(key, { ...record, token });
   *   return token;
   * }, { signal: AbortSignal.timeout(60_000) });
   * ```
   */
  async lock<T>(key: TokenKey, fn: () => Promise<T>, options: TokenStoreOptions = {}): Promise<T> {
    const { signal } = options;
    signal?.throwIfAborted();
    const lockKey = this.#lockKey(key);
    // Calls on this store line up here first, so that only one at a time
    // waits on KV instead of all of them waking at every release.
    const name = formatKey(lockKey);
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const turn = Promise.withResolvers<void>();
    const tail = previous.then(() => turn.promise);
    this.#queues.set(name, tail);
    try {
      await untilAborted(previous, signal);
      return await this.#lockKv(lockKey, fn, signal);
    } finally {
      turn.resolve();
      if (this.#queues.get(name) === tail) this.#queues.delete(name);
    }
  }

  /** Takes the lock entry, runs `fn`, and releases the entry if it is still ours. */
  async #lockKv<T>(
    lockKey: Deno.KvKey,
    fn: () => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const owner = crypto.randomUUID();
    let held: string | undefined;
    try {
      while (held === undefined) {
        signal?.throwIfAborted();
        const now = Date.now();
        const current = await this.#kv.get(lockKey);
        if (lockOwner(current.value) === owner && current.versionstamp !== null) {
          // A commit reported as failed did go through after all.
          held = current.versionstamp;
          break;
        }
        const deadline = lockDeadline(current.value);
        if (current.versionstamp !== null && deadline > now) {
          await this.#waitForChange(lockKey, current.versionstamp, deadline, signal);
          continue;
        }
        const value: StoredLock = { version: 1, owner, deadline: now + this.#lockTtl };
        try {
          const commit = await this.#kv.atomic()
            .check({ key: lockKey, versionstamp: current.versionstamp })
            .set(lockKey, value, { expireIn: this.#lockTtl })
            .commit();
          if (commit.ok) held = commit.versionstamp;
        } catch (error) {
          // Another process wrote at the same moment; read the lock again.
          if (!isBusy(error)) throw error;
          await delay(busyDelay(), signal);
        }
      }
    } catch (error) {
      if (signal?.aborted && error === signal.reason) throw error;
      if (error instanceof SpotifyTokenStoreError) throw error;
      throw kvError("take the lock", lockKey, error);
    }
    try {
      signal?.throwIfAborted();
      return await fn();
    } finally {
      try {
        await retryWhenBusy(() =>
          this.#kv.atomic()
            .check({ key: lockKey, versionstamp: held })
            .delete(lockKey)
            .commit()
        );
      } catch {
        // The lock lapses at its deadline; `fn`'s outcome matters more.
      }
    }
  }

  /**
   * Resolves when the lock entry's versionstamp is no longer `seen`, at the
   * next poll, or at `deadline`, whichever comes first; rejects with the
   * signal's reason. Always stops watching and clears its timer.
   */
  async #waitForChange(
    lockKey: Deno.KvKey,
    seen: string,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    signal?.throwIfAborted();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const poll = this.#pollInterval * (0.5 + Math.random() / 2);
    // One millisecond past the deadline, so that the lock then counts as free.
    const timer = setTimeout(resolve, Math.max(0, Math.min(deadline + 1 - Date.now(), poll)));
    const onAbort = (): void => reject(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const reader = this.#kv.watch([lockKey]).getReader();
    const watching = (async (): Promise<void> => {
      while (true) {
        const { done, value } = await reader.read();
        if (done || value[0]?.versionstamp !== seen) return;
      }
    })().then(resolve, (error) => reject(kvError("watch the lock", lockKey, error)));
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      await reader.cancel().catch(() => {});
      await watching;
    }
  }

  #recordKey(key: TokenKey): Deno.KvKey {
    return entryKey(this.#prefix, key);
  }

  #lockKey(key: TokenKey): Deno.KvKey {
    return entryKey(this.#lockPrefix, key);
  }
}

/** `[...prefix, clientId]`, plus the user when there is one. */
function entryKey(prefix: Deno.KvKey, key: TokenKey): Deno.KvKey {
  if (typeof key.clientId !== "string") {
    throw new TypeError(
      `Cannot use the token key: clientId ${String(key.clientId)} is not a string`,
    );
  }
  if (key.user !== undefined && typeof key.user !== "string") {
    throw new TypeError(`Cannot use the token key: user ${String(key.user)} is not a string`);
  }
  return key.user === undefined ? [...prefix, key.clientId] : [...prefix, key.clientId, key.user];
}

/** The owner of a lock entry's value, if it has one. */
function lockOwner(value: unknown): unknown {
  return typeof value === "object" && value !== null
    ? (value as Record<string, unknown>).owner
    : undefined;
}

/** The deadline of a lock entry's value; `-Infinity` when it has none, so it counts as free. */
function lockDeadline(value: unknown): number {
  if (typeof value !== "object" || value === null) return -Infinity;
  const { deadline } = value as Record<string, unknown>;
  return typeof deadline === "number" && Number.isFinite(deadline) ? deadline : -Infinity;
}

/**
 * Whether a KV error is SQLite's `SQLITE_BUSY`: on a local file, a write that
 * raced another process's write fails with it, and was not applied.
 */
function isBusy(error: unknown): boolean {
  return error instanceof Error && /database is locked/i.test(error.message);
}

/** 5 to 20 ms, as Deno KV itself waits between its own busy retries. */
function busyDelay(): number {
  return 5 + Math.random() * 15;
}

/** Runs a KV write, again after a short wait while SQLite is busy, up to 10 times. */
async function retryWhenBusy<T>(write: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (!isBusy(error) || attempt >= 10) throw error;
    }
    await delay(busyDelay(), signal);
  }
}

/** Waits for `promise`, or rejects with the signal's reason when it aborts first. */
function untilAborted(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

/** Waits `ms`, or rejects with the signal's reason when it aborts. */

function startsWith(key: Deno.KvKey, prefix: Deno.KvKey): boolean {
  return prefix.length <= key.length &&
    prefix.every((part, i) => formatPart(part) === formatPart(key[i]!));
}

function kvError(what: string, key: Deno.KvKey, cause: unknown): SpotifyTokenStoreError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new SpotifyTokenStoreError(
    `Cannot ${what} at Deno KV key ${formatKey(key)}: ${reason}`,
    { cause },
  );
}

/** A KV key as text, every part typed: `["spotikit","tokens","abc"]`. */
function formatKey(key: Deno.KvKey): string {
  return `[${key.map(formatPart).join(",")}]`;
}

function formatPart(part: Deno.KvKeyPart): string {
  if (typeof part === "string") return JSON.stringify(part);
  if (typeof part === "bigint") return `${part}n`;
  if (part instanceof Uint8Array) return `Uint8Array(${part.join(",")})`;
  return String(part);
}
