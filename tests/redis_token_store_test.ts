import assert from "node:assert/strict";
import { createClient, createClientPool, type RedisClientType, RESP_TYPES } from "redis";
import {
  RedisTokenStore,
  type RedisTokenStoreClient,
  SpotifyTokenStoreError,
  type TokenKey,
  type TokenRecord,
} from "../src/redis_token_store.ts";
import { ignoreRedisTests, type RedisServer, startRedis } from "./_redis.ts";

// One redis-server for the whole file; every step uses its own client and
// its own keys.

const record = (accessToken: string): TokenRecord => ({
  token: {
    accessToken,
    tokenType: "Bearer",
    scope: ["user-read-private"],
    expiresAt: 1_900_000_000_000,
    refreshToken: `refresh-${accessToken}`,
  },
  consentedAt: 1_800_000_000_000,
});

type Client = RedisClientType;

async function withClient<T>(server: RedisServer, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = createClient({ url: server.url });
  client.on("error", (error) => console.error("redis client:", error));
  await client.connect();
  try {
    return await fn(client);
  } finally {
    client.destroy();
  }
}

// Compile-time only (never called): the clients node-redis users have fit.
const clientsFit = (): RedisTokenStoreClient[] => {
  return [
    createClient(),
    createClient({ RESP: 2 }),
    createClient().withTypeMapping({ [36]: Buffer }),
    createClientPool(),
  ];
};
void clientsFit;

Deno.test({
  name: "RedisTokenStore",
  ignore: ignoreRedisTests,
  async fn(t) {
    await using server = await startRedis();

    await t.step("new RedisTokenStore() rejects a lockTtl that is not a positive integer", () => {
      const client = createClient({ url: server.url });
      for (const lockTtl of [0, -1, 1.5, Number.NaN]) {
        assert.throws(() => new RedisTokenStore(client, { lockTtl }), {
          name: "RangeError",
          message:
            `Cannot create a RedisTokenStore: lockTtl must be a positive whole number of milliseconds, got ${lockTtl}`,
        });
      }
    });

    await t.step("redisKey() maps every TokenKey to its own key", () => {
      const store = new RedisTokenStore(createClient({ url: server.url }));
      assert.equal(store.redisKey({ clientId: "abc" }), "spotikit:token:abc");
      assert.equal(store.redisKey({ clientId: "abc", user: "work" }), "spotikit:token:abc:work");
      assert.equal(store.redisKey({ clientId: "abc", user: "" }), "spotikit:token:abc:");
      assert.equal(store.redisKey({ clientId: "abc:work" }), "spotikit:token:abc%3Awork");
      assert.equal(store.redisKey({ clientId: "a", user: "b#lock" }), "spotikit:token:a:b%23lock");
      assert.equal(
        store.lockKey({ clientId: "abc", user: "work" }),
        "spotikit:token:abc:work#lock",
      );
      const custom = new RedisTokenStore(createClient(), { prefix: "app:" });
      assert.equal(custom.redisKey({ clientId: "x y" }), "app:x%20y");
    });

    await t.step("set(), get() and delete() round-trip, and keys never collide", async () => {
      await withClient(server, async (client) => {
        const store = new RedisTokenStore(client, { prefix: "rt:" });
        const keys: TokenKey[] = [
          { clientId: "app" },
          { clientId: "app", user: "work" },
          { clientId: "app", user: "" },
          { clientId: "app:work" },
          { clientId: "other" },
          { clientId: "other", user: "work" },
        ];
        assert.equal(await store.get(keys[0]!), undefined);
        for (const [i, key] of keys.entries()) await store.set(key, record(`token-${i}`));
        for (const [i, key] of keys.entries()) {
          assert.deepEqual(await store.get(key), record(`token-${i}`));
        }

        // The stored value is the documented JSON.
        assert.deepEqual(JSON.parse(await client.get("rt:app:work") ?? "null"), {
          version: 1,
          ...record("token-1"),
        });

        // A client that maps strings to Buffers reads the same records.
        const buffers = new RedisTokenStore(
          client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }),
          { prefix: "rt:" },
        );
        assert.deepEqual(await buffers.get(keys[1]!), record("token-1"));

        // A record without consentedAt (client credentials) stays without it.
        await store.set(keys[0]!, { token: record("cc").token });
        assert.deepEqual(await store.get(keys[0]!), { token: record("cc").token });

        await store.delete(keys[1]!);
        assert.equal(await store.get(keys[1]!), undefined);
        assert.equal(await client.exists("rt:app:work"), 0);
        assert.deepEqual(await store.get(keys[2]!), record("token-2"));
        await store.delete(keys[1]!); // deleting nothing is fine
        for (const key of keys) await store.delete(key);
        assert.deepEqual(await client.keys("rt:*"), []);
      });
    });

    await t.step("get() rejects a corrupt value, names the key, and leaves it", async () => {
      await withClient(server, async (client) => {
        const store = new RedisTokenStore(client, { prefix: "bad:" });
        const cases: [string, string][] = [
          [
            "{not json",
            'Cannot read the token at Redis key "bad:app": it is not valid JSON. It was left as it is; delete it to log in again.',
          ],
          [
            JSON.stringify({ version: 2, ...record("x") }),
            'Cannot read the token at Redis key "bad:app": its format version is 2, and this version of @spotikit/auth reads 1. It was left as it is; upgrade @spotikit/auth or delete it to log in again.',
          ],
          [
            JSON.stringify(record("x")),
            'Cannot read the token at Redis key "bad:app": its format version is undefined, and this version of @spotikit/auth reads 1. It was left as it is; upgrade @spotikit/auth or delete it to log in again.',
          ],
          [
            JSON.stringify({ version: 1, token: { ...record("x").token, accessToken: "" } }),
            'Cannot read the token at Redis key "bad:app": accessToken is missing. It was left as it is; delete it to log in again.',
          ],
        ];
        for (const [value, message] of cases) {
          await client.set("bad:app", value);
          await assert.rejects(store.get({ clientId: "app" }), (error) => {
            assert.ok(error instanceof SpotifyTokenStoreError);
            assert.equal(error.message, message);
            return true;
          });
          assert.equal(await client.get("bad:app"), value);
        }
        await client.del("bad:app");
      });
    });

    await t.step(
      "commands that fail reject with SpotifyTokenStoreError and the cause",
      async () => {
        const client = createClient({ url: server.url });
        await client.connect();
        client.destroy();
        const store = new RedisTokenStore(client);
        const key = { clientId: "app", user: "me" };
        const check = (action: string) => (error: unknown) => {
          assert.ok(error instanceof SpotifyTokenStoreError);
          assert.ok(error.cause instanceof Error);
          assert.equal(
            error.message,
            `Cannot ${action} at Redis key "spotikit:token:app:me${
              action.startsWith("take") ? "#lock" : ""
            }": ${error.cause.message}. Check that the Redis client is connected and the server is reachable.`,
          );
          return true;
        };
        await assert.rejects(store.get(key), check("read the token"));
        await assert.rejects(store.set(key, record("x")), check("write the token"));
        await assert.rejects(store.delete(key), check("delete the token"));
        let ran = false;
        await assert.rejects(
          store.lock(key, () => Promise.resolve(ran = true)),
          check("take the lock"),
        );
        assert.equal(ran, false);
      },
    );

    await t.step("an aborted signal stops every operation before it starts", async () => {
      await withClient(server, async (client) => {
        const store = new RedisTokenStore(client, { prefix: "abort:" });
        const key = { clientId: "app" };
        await store.set(key, record("kept"));
        const reason = new Error("stop");
        const signal = AbortSignal.abort(reason);
        await assert.rejects(store.get(key, { signal }), (error) => error === reason);
        await assert.rejects(
          store.set(key, record("new"), { signal }),
          (error) => error === reason,
        );
        await assert.rejects(store.delete(key, { signal }), (error) => error === reason);
        let ran = false;
        await assert.rejects(
          store.lock(key, () => Promise.resolve(ran = true), { signal }),
          (error) => error === reason,
        );
        assert.equal(ran, false);
        assert.deepEqual(await store.get(key), record("kept"));
        assert.equal(await client.exists(store.lockKey(key)), 0);
        await store.delete(key);
      });
    });

    await t.step("lock() stops waiting when the signal aborts, and clears its timer", async () => {
      await withClient(server, async (client) => {
        const key = { clientId: "app" };
        const holder = new RedisTokenStore(client, { prefix: "wait:" });
        // The waiter's client tells us when it has seen the lock taken (its
        // PTTL came back): it is about to back off on a timer, and a
        // zero-delay timer set now fires first and aborts it.
        const controller = new AbortController();
        const reason = new Error("gave up");
        const watching: RedisTokenStoreClient = {
          get: (k) => client.get(k),
          set: (k, v, o) => client.set(k, v, o),
          del: (k) => client.del(k),
          eval: (s, o) => client.eval(s, o),
          pTTL: async (k) => {
            const remaining = await client.pTTL(k);
            setTimeout(() => controller.abort(reason), 0);
            return remaining;
          },
        };
        const waiter = new RedisTokenStore(watching, { prefix: "wait:" });
        const held = Promise.withResolvers<void>();
        const release = Promise.withResolvers<void>();
        const holding = holder.lock(key, () => {
          held.resolve();
          return release.promise;
        });
        await held.promise;

        // Timers left pending are seen by wrapping the globals while the
        // waiter runs (a timer that fired before the step ends would escape
        // the sanitizer).
        const pending = new Set<unknown>();
        const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout };
        globalThis.setTimeout = ((fn: () => void, ms?: number) => {
          const id = real.setTimeout(() => {
            pending.delete(id);
            fn();
          }, ms);
          pending.add(id);
          return id;
        }) as typeof setTimeout;
        globalThis.clearTimeout = ((id?: Parameters<typeof clearTimeout>[0]) => {
          pending.delete(id);
          real.clearTimeout(id);
        }) as typeof clearTimeout;
        let ran = false;
        try {
          await assert.rejects(
            waiter.lock(key, () => Promise.resolve(ran = true), { signal: controller.signal }),
            (error) => error === reason,
          );
        } finally {
          Object.assign(globalThis, real);
        }
        assert.equal(ran, false);
        assert.equal(pending.size, 0, "a timer was left pending after the abort");
        release.resolve();
        await holding;
        assert.equal(await client.exists(holder.lockKey(key)), 0);
      });
    });

    await t.step("lock() gives back a lock it got while the signal aborted", async () => {
      await withClient(server, async (client) => {
        const store = new RedisTokenStore(client, { prefix: "late:" });
        const key = { clientId: "app" };
        const controller = new AbortController();
        const reason = new Error("too late");
        let ran = false;
        // The SET is already on its way when the signal aborts.
        const locking = store.lock(key, () => Promise.resolve(ran = true), {
          signal: controller.signal,
        });
        controller.abort(reason);
        await assert.rejects(locking, (error) => error === reason);
        assert.equal(ran, false);
        assert.equal(await client.exists(store.lockKey(key)), 0);
      });
    });

    await t.step("lock() releases the lock when fn throws, and rethrows", async () => {
      await withClient(server, async (client) => {
        const store = new RedisTokenStore(client, { prefix: "throw:" });
        const key = { clientId: "app" };
        const error = new Error("refresh failed");
        await assert.rejects(store.lock(key, () => Promise.reject(error)), (e) => e === error);
        assert.equal(await client.exists(store.lockKey(key)), 0);
        assert.equal(await store.lock(key, () => Promise.resolve(42)), 42);
      });
    });

    await t.step("lock() lets 50 concurrent callers in one at a time", async () => {
      await withClient(server, async (client) => {
        const store = new RedisTokenStore(client, { prefix: "excl:" });
        const key = { clientId: "app" };
        let active = 0;
        let maxActive = 0;
        const started = performance.now();
        await Promise.all(Array.from({ length: 50 }, () =>
          store.lock(key, async () => {
            active++;
            maxActive = Math.max(maxActive, active);
            const value = Number(await client.get("excl:counter") ?? 0);
            await client.ping();
            await client.set("excl:counter", String(value + 1));
            active--;
          })));
        const elapsed = performance.now() - started;
        assert.equal(await client.get("excl:counter"), "50");
        assert.equal(maxActive, 1);
        assert.equal(await client.exists(store.lockKey(key)), 0);
        console.log(`50 in-process lock holders in ${elapsed.toFixed(0)} ms`);
      });
    });

    await t.step(
      "an expired lease is taken over, and its old holder does not release the new one",
      async () => {
        await withClient(server, async (client) => {
          const key = { clientId: "app" };
          const slow = new RedisTokenStore(client, { prefix: "lease:", lockTtl: 250 });
          const next = new RedisTokenStore(client, { prefix: "lease:", lockTtl: 10_000 });
          const lockKey = slow.lockKey(key);

          const slowHolds = Promise.withResolvers<void>();
          const slowDone = Promise.withResolvers<void>();
          const slowLock = slow.lock(key, () => {
            slowHolds.resolve();
            return slowDone.promise;
          });
          await slowHolds.promise;
          const slowOwner = await client.get(lockKey);
          assert.ok(slowOwner);

          // `next` waits until the 250 ms lease runs out, then takes the lock
          // while the slow holder is still inside fn.
          const nextHolds = Promise.withResolvers<void>();
          const nextDone = Promise.withResolvers<void>();
          const nextLock = next.lock(key, () => {
            nextHolds.resolve();
            return nextDone.promise;
          });
          await nextHolds.promise;
          const nextOwner = await client.get(lockKey);
          assert.ok(nextOwner);
          assert.notEqual(nextOwner, slowOwner);
          assert.ok(await client.pTTL(lockKey) > 250);

          // The slow holder finishes and releases: the new lease stays.
          slowDone.resolve();
          await slowLock;
          assert.equal(await client.get(lockKey), nextOwner);

          nextDone.resolve();
          await nextLock;
          assert.equal(await client.exists(lockKey), 0);
        });
      },
    );

    await t.step("lock() excludes holders in other processes", async () => {
      const workers = 4;
      const n = 50;
      const prefix = "cross:";
      const worker = new URL("./fixtures/redis_lock_worker.ts", import.meta.url);
      const started = performance.now();
      const children = Array.from({ length: workers }, () =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", worker.pathname, server.url, String(n), prefix],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn());
      try {
        const outputs = children.map((child) => readLines(child.stdout));
        const errors = children.map((child) => new Response(child.stderr).text());
        // All connected: start them together.
        for (const output of outputs) await output.next("ready");
        const go = performance.now();
        for (const child of children) {
          const writer = child.stdin.getWriter();
          await writer.write(new TextEncoder().encode("go\n"));
          await writer.close();
        }
        const reports = await Promise.all(outputs.map((output) => output.next()));
        await Promise.all(outputs.map((output) => output.close()));
        const statuses = await Promise.all(children.map((child) => child.status));
        const stderr = await Promise.all(errors);
        for (const [i, status] of statuses.entries()) {
          assert.equal(status.code, 0, `worker ${i} failed:\n${stderr[i]}`);
        }
        const figures = reports.map((line) =>
          JSON.parse(line) as { n: number; overlaps: number; elapsed: number; maxWait: number }
        );
        await withClient(server, async (client) => {
          assert.equal(await client.get(`${prefix}counter`), String(workers * n));
          assert.equal(await client.exists(`${prefix}cross-process#lock`), 0);
        });
        assert.deepEqual(figures.map((f) => f.overlaps), [0, 0, 0, 0]);
        console.log(
          `${workers} processes x ${n} lock holders: ${
            (performance.now() - go).toFixed(0)
          } ms after go (${(go - started).toFixed(0)} ms to start); per worker ${
            figures.map((f) =>
              `${f.elapsed.toFixed(0)} ms, longest wait ${f.maxWait.toFixed(0)} ms`
            )
              .join("; ")
          }`,
        );
      } finally {
        for (const child of children) {
          try {
            child.kill();
          } catch {
            // Already exited.
          }
        }
        await Promise.allSettled(children.map((child) => child.status));
      }
    });
  },
});

/** Reads a child's stdout line by line; `next(expected)` checks the line. */
function readLines(stream: ReadableStream<Uint8Array>) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(expected?: string): Promise<string> {
      while (!buffer.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`output ended after ${JSON.stringify(buffer)}`);
        buffer += value;
      }
      const end = buffer.indexOf("\n");
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (expected !== undefined) assert.equal(line, expected);
      return line;
    },
    /** Reads to the end (or stops reading), so the pipe is closed. */
    async close(): Promise<void> {
      await reader.cancel();
    },
  };
}
