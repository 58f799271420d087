import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import {
  defaultTokenDirectory,
  FileTokenStore,
  SpotifyTokenStoreError,
  type TokenRecord,
} from "../mod.ts";

const record: TokenRecord = {
  token: {
    accessToken: "at",
    tokenType: "Bearer",
    scope: ["user-read-private"],
    expiresAt: 1_700_000_000_000,
    refreshToken: "rt",
  },
  consentedAt: 1_690_000_000_000,
};

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "spotikit-store-" });
  try {
    await fn(`${dir}/tokens`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("FileTokenStore round-trips a record per app and user", () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    strictEqual(await store.get({ clientId: "app" }), undefined);
    await store.set({ clientId: "app" }, record);
    const other = { ...record, token: { ...record.token, accessToken: "other" } };
    await store.set({ clientId: "app", user: "work" }, other);
    await store.set({ clientId: "app2" }, other);
    deepStrictEqual(await store.get({ clientId: "app" }), record);
    deepStrictEqual(await store.get({ clientId: "app", user: "work" }), other);
    await store.delete({ clientId: "app" });
    strictEqual(await store.get({ clientId: "app" }), undefined);
    await store.delete({ clientId: "app" });
    deepStrictEqual(await store.get({ clientId: "app2" }), other);
  }));

Deno.test("FileTokenStore writes a versioned JSON file and leaves no temporary file", () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    await store.set({ clientId: "app", user: "me" }, record);
    deepStrictEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), ["app.me.json"]);
    deepStrictEqual(JSON.parse(await Deno.readTextFile(`${dir}/app.me.json`)), {
      version: 1,
      ...record,
    });
  }));

Deno.test("FileTokenStore names files so that distinct keys never share one", () => {
  const store = new FileTokenStore({ directory: "/t" });
  strictEqual(store.path({ clientId: "a.b", user: "c" }), "/t/a%2eb.c.json");
  strictEqual(store.path({ clientId: "a", user: "b.c" }), "/t/a.b%2ec.json");
  strictEqual(store.path({ clientId: "../x" }), "/t/%2e%2e%2fx.default.json");
  strictEqual(store.path({ clientId: "a", user: "€" }), "/t/a.%e2%82%ac.json");
  strictEqual(store.path({ clientId: "App", user: "Work" }), "/t/%41pp.%57ork.json");
});

Deno.test("FileTokenStore makes the directory 0700 and the file 0600", {
  ignore: Deno.build.os === "windows",
}, () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    await store.set({ clientId: "app" }, record);
    strictEqual((await Deno.stat(dir)).mode! & 0o777, 0o700);
    strictEqual((await Deno.stat(store.path({ clientId: "app" }))).mode! & 0o777, 0o600);
    await store.set({ clientId: "app" }, record);
    strictEqual((await Deno.stat(store.path({ clientId: "app" }))).mode! & 0o777, 0o600);
  }));

Deno.test("FileTokenStore reports a corrupt file by path and leaves it alone", () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    const path = store.path({ clientId: "app" });
    await Deno.mkdir(dir, { recursive: true });
    for (
      const [content, message] of <[string, string][]> [
        [
          '{"version": 1, "tok',
          `Cannot read the token at ${path}: it is not valid JSON. It was left as it is; delete it to log in again.`,
        ],
        [
          '{"version": 7}',
          `Cannot read the token at ${path}: its format version is 7, and this version of @spotikit/auth reads 1. It was left as it is; upgrade @spotikit/auth or delete it to log in again.`,
        ],
        [
          JSON.stringify({ version: 1, token: { ...record.token, expiresAt: "soon" } }),
          `Cannot read the token at ${path}: expiresAt is not a number. It was left as it is; delete it to log in again.`,
        ],
      ]
    ) {
      await Deno.writeTextFile(path, content, { mode: 0o600 });
      await rejects(store.get({ clientId: "app" }), (error) => {
        ok(error instanceof SpotifyTokenStoreError);
        strictEqual(error.message, message);
        return true;
      });
      strictEqual(await Deno.readTextFile(path), content);
    }
  }));

Deno.test("FileTokenStore says which directory it cannot create", () =>
  withDir(async (dir) => {
    await Deno.mkdir(dir.replace(/\/tokens$/, ""), { recursive: true });
    await Deno.writeTextFile(dir, "a file where the directory should be");
    const store = new FileTokenStore({ directory: `${dir}/inner` });
    await rejects(store.set({ clientId: "app" }, record), (error) => {
      ok(error instanceof SpotifyTokenStoreError);
      ok(
        error.message.startsWith(`Cannot create the token directory ${dir}/inner: `),
        error.message,
      );
      return true;
    });
  }));

Deno.test("FileTokenStore.lock() runs holders one at a time", () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    let inside = 0;
    let most = 0;
    let count = 0;
    await Promise.all(Array.from({ length: 20 }, () =>
      store.lock({ clientId: "app" }, async () => {
        most = Math.max(most, ++inside);
        const seen = count;
        await Deno.readDir(dir)[Symbol.asyncIterator]().next();
        count = seen + 1;
        inside--;
      })));
    deepStrictEqual([count, most], [20, 1]);
  }));

Deno.test("FileTokenStore.lock() gives up its wait when aborted", () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    const release = Promise.withResolvers<void>();
    const entered = Promise.withResolvers<void>();
    const holder = store.lock({ clientId: "app" }, () => {
      entered.resolve();
      return release.promise;
    });
    await entered.promise;
    const controller = new AbortController();
    const waiter = store.lock({ clientId: "app" }, () => Promise.resolve("ran"), {
      signal: controller.signal,
    });
    controller.abort(new Error("gave up"));
    await rejects(waiter, { message: "gave up" });
    release.resolve();
    await holder;
    strictEqual(await store.lock({ clientId: "app" }, () => Promise.resolve("again")), "again");
  }));

Deno.test("defaultTokenDirectory() follows XDG_CONFIG_HOME on Linux", {
  ignore: Deno.build.os !== "linux",
}, () => {
  const saved = Deno.env.get("XDG_CONFIG_HOME");
  try {
    Deno.env.set("XDG_CONFIG_HOME", "/cfg");
    strictEqual(defaultTokenDirectory(), "/cfg/spotikit");
    Deno.env.delete("XDG_CONFIG_HOME");
    strictEqual(defaultTokenDirectory(), `${Deno.env.get("HOME")}/.config/spotikit`);
  } finally {
    if (saved === undefined) Deno.env.delete("XDG_CONFIG_HOME");
    else Deno.env.set("XDG_CONFIG_HOME", saved);
  }
});

Deno.test("FileTokenStore refuses a token file others may read, and leaves it", {
  ignore: Deno.build.os === "windows",
}, () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    await store.set({ clientId: "app" }, record);
    const path = store.path({ clientId: "app" });
    await Deno.chmod(path, 0o644);
    await rejects(store.get({ clientId: "app" }), {
      name: "SpotifyTokenStoreError",
      message:
        `Cannot use the token file ${path}: other users may read or write it (mode 644). Run chmod 600 ${path} if only you ever had access, or delete it and log in again.`,
    });
    strictEqual((await Deno.stat(path)).mode! & 0o777, 0o644);
  }));

Deno.test("FileTokenStore refuses a symbolic link at the token path", {
  ignore: Deno.build.os === "windows",
}, () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    await Deno.mkdir(dir, { recursive: true });
    const target = `${dir}/elsewhere.json`;
    await Deno.writeTextFile(target, JSON.stringify({ version: 1, ...record }), { mode: 0o600 });
    const path = store.path({ clientId: "app" });
    await Deno.symlink(target, path);
    await rejects(store.get({ clientId: "app" }), {
      name: "SpotifyTokenStoreError",
      message:
        `Cannot read the token file ${path}: it is a symbolic link, and a token file must be one. It was left as it is; remove it to log in again.`,
    });
  }));

Deno.test("FileTokenStore removes temporary files a crashed writer left behind", () =>
  withDir(async (dir) => {
    const store = new FileTokenStore({ directory: dir });
    await Deno.mkdir(dir, { recursive: true });
    const path = store.path({ clientId: "app" });
    const abandoned = `${path}.dead.tmp`;
    const recent = `${path}.live.tmp`;
    await Deno.writeTextFile(abandoned, "{", { mode: 0o600 });
    await Deno.writeTextFile(recent, "{", { mode: 0o600 });
    await Deno.utime(abandoned, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    await store.set({ clientId: "app" }, record);
    deepStrictEqual(
      [...Deno.readDirSync(dir)].map((entry) => entry.name).sort(),
      ["app.default.json", "app.default.json.live.tmp"],
    );
  }));
