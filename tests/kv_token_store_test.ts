import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import {
  KvTokenStore,
  type SpotifyToken,
  SpotifyTokenStoreError,
  type TokenRecord,
} from "../src/kv_token_store.ts";

const token: SpotifyToken = {
  accessToken: "access-1",
  tokenType: "Bearer",
  scope: ["user-read-private"],
  expiresAt: 1_800_000_000_000,
  refreshToken: "refresh-1",
};
const record: TokenRecord = { token, consentedAt: 1_790_000_000_000 };

/** Opens a KV in a fresh temp dir, and closes and removes both afterwards. */
async function withKv(fn: (kv: Deno.Kv, path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "spotikit_kv_" });
  const path = `${dir}/kv.sqlite3`;
  const kv = await Deno.openKv(path);
  try {
    await fn(kv, path);
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A record for `n`, so that every key gets a different one. */
function recordFor(n: number): TokenRecord {
  return { token: { ...token, accessToken: `access-${n}` }, consentedAt: n };
}

Deno.test("KvTokenStore keeps one record per client id and user", async (t) => {
  await withKv(async (kv) => {
    const store = new KvTokenStore(kv);

    await t.step("get() of nothing is undefined", async () => {
      strictEqual(await store.get({ clientId: "app-1" }), undefined);
    });

    await t.step("set() then get() returns the record", async () => {
      await store.set({ clientId: "app-1" }, record);
      deepStrictEqual(await store.get({ clientId: "app-1" }), record);
    });

    await t.step("a record without consentedAt or refreshToken round-trips", async () => {
      const { refreshToken: _, ...withoutRefresh } = token;
      const bare: TokenRecord = { token: withoutRefresh };
      await store.set({ clientId: "app-1", user: "bot" }, bare);
      deepStrictEqual(await store.get({ clientId: "app-1", user: "bot" }), bare);
      await store.delete({ clientId: "app-1", user: "bot" });
    });

    await t.step("two users and two client ids do not collide", async () => {
      const keys = [
        { clientId: "app-1" },
        { clientId: "app-1", user: "work" },
        { clientId: "app-1", user: "" },
        { clientId: "app-2" },
        { clientId: "app-2", user: "work" },
      ];
      for (const [i, key] of keys.entries()) await store.set(key, recordFor(i));
      for (const [i, key] of keys.entries()) deepStrictEqual(await store.get(key), recordFor(i));
    });

    await t.step("entries are versioned, at the documented keys", async () => {
      deepStrictEqual((await kv.get(["spotikit", "tokens", "app-1"])).value, {
        version: 1,
        ...recordFor(0),
      });
      deepStrictEqual((await kv.get(["spotikit", "tokens", "app-1", "work"])).value, {
        version: 1,
        ...recordFor(1),
      });
    });

    await t.step("delete() removes only its key; deleting nothing is fine", async () => {
      await store.delete({ clientId: "app-1", user: "work" });
      strictEqual(await store.get({ clientId: "app-1", user: "work" }), undefined);
      deepStrictEqual(await store.get({ clientId: "app-1" }), recordFor(0));
      deepStrictEqual(await store.get({ clientId: "app-2", user: "work" }), recordFor(4));
      await store.delete({ clientId: "app-1", user: "work" });
      await store.delete({ clientId: "nobody" });
    });

    await t.step("a custom prefix keeps records apart", async () => {
      const other = new KvTokenStore(kv, { prefix: ["my-app"], lockPrefix: ["my-app-locks"] });
      strictEqual(await other.get({ clientId: "app-1" }), undefined);
      await other.set({ clientId: "app-1" }, recordFor(9));
      deepStrictEqual((await kv.get(["my-app", "app-1"])).value, { version: 1, ...recordFor(9) });
      deepStrictEqual(await store.get({ clientId: "app-1" }), recordFor(0));
    });
  });
});

Deno.test("KvTokenStore.get() refuses a corrupt entry, names its key and leaves it", async (t) => {
  await withKv(async (kv) => {
    const store = new KvTokenStore(kv);
    const key = { clientId: "app-1", user: "work" };
    const kvKey = ["spotikit", "tokens", "app-1", "work"];
    const where = 'Deno KV key ["spotikit","tokens","app-1","work"]';
    const cases: [string, unknown, string][] = [
      ["not an object", "garbage", "its format version is undefined"],
      ["no token", { version: 1 }, "it has no token"],
      ["a broken token", { version: 1, token: { ...token, expiresAt: "soon" } }, "expiresAt"],
      ["an unknown version", { version: 2, token }, "its format version is 2, and this version"],
      ["no version", { token }, "its format version is undefined"],
    ];
    for (const [name, value, problem] of cases) {
      await t.step(`an entry with ${name}`, async () => {
        await kv.set(kvKey, value);
        await rejects(store.get(key), (error) => {
          ok(error instanceof SpotifyTokenStoreError);
          strictEqual(error.name, "SpotifyTokenStoreError");
          ok(error.message.startsWith(`Cannot read the token at ${where}: `), error.message);
          ok(error.message.includes(problem), error.message);
          ok(error.message.includes("It was left as it is"), error.message);
          return true;
        });
        deepStrictEqual((await kv.get(kvKey)).value, value);
      });
    }
  });
});

Deno.test("KvTokenStore wraps KV errors with the key and the cause", async () => {
  await withKv(async (_kv, path) => {
    const closed = await Deno.openKv(path);
    closed.close();
    const store = new KvTokenStore(closed);
    const key = { clientId: "app-1" };
    const where = 'Deno KV key ["spotikit","tokens","app-1"]';
    for (
      const [what, call] of [
        ["read the token", () => store.get(key)],
        ["write the token", () => store.set(key, record)],
        ["delete the token", () => store.delete(key)],
        ["take the lock", () => store.lock(key, () => Promise.resolve())],
      ] as const
    ) {
      await rejects(call(), (error) => {
        ok(error instanceof SpotifyTokenStoreError);
        const at = what === "take the lock" ? where.replace("tokens", "locks") : where;
        ok(error.message.startsWith(`Cannot ${what} at ${at}: `), error.message);
        ok(error.cause instanceof Error);
        return true;
      });
    }
  });
});

Deno.test("KvTokenStore rejects with the signal's reason when aborted before an operation", async () => {
  await withKv(async (kv) => {
    const store = new KvTokenStore(kv);
    const key = { clientId: "app-1" };
    const reason = new Error("Stopped by the test");
    const signal = AbortSignal.abort(reason);
    let ran = false;
    await rejects(store.get(key, { signal }), (error) => error === reason);
    await rejects(store.set(key, record, { signal }), (error) => error === reason);
    await rejects(store.delete(key, { signal }), (error) => error === reason);
    await rejects(
      store.lock(key, () => Promise.resolve(ran = true), { signal }),
      (error) => error === reason,
    );
    strictEqual(ran, false);
    strictEqual((await kv.get(["spotikit", "tokens", "app-1"])).versionstamp, null);
    strictEqual((await kv.get(["spotikit", "locks", "app-1"])).versionstamp, null);
  });
});

Deno.test("new KvTokenStore() refuses a bad lockTtl, pollInterval or overlapping prefixes", async () => {
  await withKv((kv) => {
    for (const lockTtl of [0, -1, 1.5, Infinity]) {
      throws(() => new KvTokenStore(kv, { lockTtl }), {
        name: "RangeError",
        message:
          `Cannot create a KvTokenStore with lockTtl ${lockTtl}: it must be a positive integer of milliseconds`,
      });
    }
    throws(() => new KvTokenStore(kv, { pollInterval: 0 }), { name: "RangeError" });
    for (
      const [prefix, lockPrefix] of [[["a"], ["a"]], [["a"], ["a", "b"]], [["a", "b"], ["a"]]]
    ) {
      throws(() => new KvTokenStore(kv, { prefix, lockPrefix }), {
        name: "TypeError",
        message: `Cannot create a KvTokenStore with prefix ${
          JSON.stringify(prefix)
        } and lockPrefix ${JSON.stringify(lockPrefix)}: neither may start with the other`,
      });
    }
    new KvTokenStore(kv, { prefix: ["a", 1], lockPrefix: ["a", "1"] });
    return Promise.resolve();
  });
});

Deno.test("KvTokenStore.lock() runs one holder at a time within a process", async (t) => {
  await withKv(async (kv, path) => {
    // Two handles on one file, as two parts of a program might open it.
    const kv2 = await Deno.openKv(path);
    try {
      const stores = [new KvTokenStore(kv), new KvTokenStore(kv2)];
      const key = { clientId: "app-1" };
      const lockKey = ["spotikit", "locks", "app-1"];

      await t.step("50 read-increment-writes with an await in between lose nothing", async () => {
        let inside = 0;
        let maxInside = 0;
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            stores[i % 2]!.lock(key, async () => {
              maxInside = Math.max(maxInside, ++inside);
              const counter = await kv.get<number>(["counter"]);
              await kv.get(lockKey);
              await kv.set(["counter"], (counter.value ?? 0) + 1);
              inside--;
              return i;
            })),
        );
        deepStrictEqual(results, Array.from({ length: 50 }, (_, i) => i));
        strictEqual((await kv.get(["counter"])).value, 50);
        strictEqual(maxInside, 1);
        strictEqual((await kv.get(lockKey)).versionstamp, null);
      });

      await t.step("the lock is released when fn throws, and the error passes", async () => {
        const failure = new Error("fn failed");
        await rejects(stores[0]!.lock(key, () => Promise.reject(failure)), (e) => e === failure);
        strictEqual((await kv.get(lockKey)).versionstamp, null);
        strictEqual(await stores[1]!.lock(key, () => Promise.resolve("next")), "next");
      });

      await t.step("locks on different keys do not wait for each other", async () => {
        const inner = await stores[0]!.lock(
          key,
          () => stores[1]!.lock({ clientId: "app-1", user: "work" }, () => Promise.resolve(1)),
        );
        strictEqual(inner, 1);
      });
    } finally {
      kv2.close();
    }
  });
});

Deno.test("KvTokenStore.lock() stops waiting when aborted, and stops watching", async (t) => {
  await withKv(async (kv) => {
    const key = { clientId: "app-1" };
    const lockKey = ["spotikit", "locks", "app-1"];
    const holder = new KvTokenStore(kv);
    const holderIn = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const held = holder.lock(key, () => {
      holderIn.resolve();
      return release.promise;
    });
    await holderIn.promise;

    await t.step("a waiter on KV (another store) closes its watch", async () => {
      const watched = Promise.withResolvers<void>();
      // Tells the test when the waiter starts watching the lock.
      const spied = new Proxy(kv, {
        get(target, property) {
          if (property === "watch") {
            return (...args: Parameters<Deno.Kv["watch"]>) => {
              watched.resolve();
              return target.watch(...args);
            };
          }
          const value = Reflect.get(target, property, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const store = new KvTokenStore(spied, { pollInterval: 60_000 });
      const controller = new AbortController();
      const reason = new Error("Gave up waiting");
      let ran = false;
      const waiting = store.lock(key, () => Promise.resolve(ran = true), {
        signal: controller.signal,
      });
      await watched.promise;
      controller.abort(reason);
      await rejects(waiting, (error) => error === reason);
      strictEqual(ran, false);
    });

    await t.step("a waiter in line behind a call on the same store", async () => {
      const controller = new AbortController();
      const reason = new Error("Gave up waiting");
      let ran = false;
      const waiting = holder.lock(key, () => Promise.resolve(ran = true), {
        signal: controller.signal,
      });
      controller.abort(reason);
      await rejects(waiting, (error) => error === reason);
      strictEqual(ran, false);
    });

    await t.step("the holder keeps the lock, and the next call gets it after", async () => {
      ok((await kv.get(lockKey)).versionstamp !== null);
      const next = holder.lock(key, () => Promise.resolve("next"));
      release.resolve();
      await held;
      strictEqual(await next, "next");
      strictEqual((await kv.get(lockKey)).versionstamp, null);
    });
  });
});

Deno.test("KvTokenStore.lock() takes over a lease past its deadline", async (t) => {
  await withKv(async (kv, path) => {
    const key = { clientId: "app-1" };
    const lockKey = ["spotikit", "locks", "app-1"];
    const store = new KvTokenStore(kv, { pollInterval: 60_000 });
    // Fails the test instead of hanging it if a lease is never taken over.
    const bounded = () => ({ signal: AbortSignal.timeout(5_000) });

    await t.step("a lock left past its deadline is taken at once", async () => {
      // A holder that crashed; KV has not yet deleted its expired entry.
      await kv.set(lockKey, { version: 1, owner: "crashed", deadline: Date.now() - 1_000 });
      const started = Date.now();
      strictEqual(await store.lock(key, () => Promise.resolve("ran"), bounded()), "ran");
      ok(Date.now() - started < 1_000);
      strictEqual((await kv.get(lockKey)).versionstamp, null);
    });

    await t.step("a lock nobody releases is taken at its deadline", async () => {
      const deadline = Date.now() + 200;
      await kv.set(lockKey, { version: 1, owner: "stuck", deadline });
      await store.lock(key, () => {
        ok(Date.now() > deadline, `entered ${deadline - Date.now()} ms early`);
        return Promise.resolve();
      }, bounded());
      strictEqual((await kv.get(lockKey)).versionstamp, null);
    });

    await t.step("a holder that overran its lease does not release its successor", async () => {
      const kv2 = await Deno.openKv(path);
      try {
        const slow = new KvTokenStore(kv, { lockTtl: 100, pollInterval: 60_000 });
        const next = new KvTokenStore(kv2, { pollInterval: 60_000 });
        const slowIn = Promise.withResolvers<void>();
        const nextIn = Promise.withResolvers<void>();
        const slowDone = slow.lock(key, async () => {
          slowIn.resolve();
          await nextIn.promise; // overruns its 100 ms lease until the next holder is in
        });
        await slowIn.promise;
        await next.lock(key, async () => {
          nextIn.resolve();
          await slowDone;
          const entry = await kv.get<{ owner: string }>(lockKey);
          ok(entry.versionstamp !== null, "the slow holder deleted its successor's lock");
        }, bounded());
        strictEqual((await kv.get(lockKey)).versionstamp, null);
      } finally {
        kv2.close();
      }
    });
  });
});

Deno.test("KvTokenStore.lock() runs one holder at a time across processes", async () => {
  await withKv(async (kv, path) => {
    const workers = 4;
    const rounds = 25;
    const children = Array.from({ length: workers }, () =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--unstable-kv",
          "-A",
          new URL("./fixtures/kv_lock_worker.ts", import.meta.url).pathname,
          path,
          String(rounds),
          "5",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output());
    const reports = [];
    for (const output of await Promise.all(children)) {
      const stderr = new TextDecoder().decode(output.stderr);
      strictEqual(output.code, 0, stderr);
      reports.push(JSON.parse(new TextDecoder().decode(output.stdout).trim()));
    }
    strictEqual(reports.reduce((sum, report) => sum + report.acquisitions, 0), workers * rounds);
    strictEqual(reports.reduce((sum, report) => sum + report.overlaps, 0), 0);
    strictEqual((await kv.get(["test", "counter"])).value, workers * rounds);

    // Every enter is followed, in commit order, by the same worker's exit.
    const events = await Array.fromAsync(kv.list<string>({ prefix: ["test", "events"] }));
    events.sort((a, b) => a.versionstamp < b.versionstamp ? -1 : 1);
    strictEqual(events.length, 2 * workers * rounds);
    for (let i = 0; i < events.length; i += 2) {
      const [enter, exit] = [events[i]!, events[i + 1]!];
      strictEqual(enter.value, "enter");
      strictEqual(exit.value, "exit");
      deepStrictEqual(exit.key.slice(0, 4), enter.key.slice(0, 4));
    }
    strictEqual((await kv.get(["spotikit", "locks", "worker-test"])).versionstamp, null);
  });
});
