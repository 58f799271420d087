/**
 * Fault suite for FileTokenStore: writers killed at random moments, a
 * read-only directory, a full disk, and files that are not what they should
 * be (wrong mode, symbolic link, corrupt JSON).
 *
 * Environment:
 * - `SPOTIKIT_KILLS`: how many writers to kill (default 50; the full run is 1000).
 * - `SPOTIKIT_SEED`: the PRNG seed of the kill moments (default: random, printed).
 * - `SPOTIKIT_RO_METHOD`: force how the directory is made read-only
 *   (`mount`, `chattr`, `setpriv` or `chmod`); default: the first that works.
 *
 * The mounts need root, or `sudo -n` without a password.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { FileTokenStore } from "../../src/file_token_store.ts";
import { SpotifyTokenStoreError, type TokenRecord } from "../../src/token_store.ts";
import {
  checkRecord,
  makeRecord,
  SIZE_CLASSES,
  type SizeClass,
  WRITER_KEY,
} from "./fixtures/store_writer.ts";

const WRITER = new URL("./fixtures/store_writer.ts", import.meta.url).pathname;
const POSIX = Deno.build.os !== "windows";
// From `id`, so that the suite needs no --allow-sys.
const UID = POSIX ? await idOf("-u") : undefined;
const GID = POSIX ? await idOf("-g") : undefined;
const IS_ROOT = UID === 0;
const NOBODY = 65534;
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Helpers

async function idOf(flag: "-u" | "-g"): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("id", { args: [flag], stdout: "piped", stderr: "null" })
      .output();
    const id = Number(new TextDecoder().decode(out.stdout).trim());
    return out.success && Number.isInteger(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Mulberry32: a small seeded PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function envInt(name: string, fallback: number, max: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${name} must be an integer from 0 to ${max}, not "${raw}"`);
  }
  return value;
}

/** Runs a command (through `sudo -n` when it needs root and we are not); never throws. */
async function sh(
  command: string,
  args: string[],
  options: { privileged?: boolean; env?: Record<string, string> } = {},
): Promise<{ ok: boolean; stdout: string; output: string }> {
  const [cmd, argv] = options.privileged && !IS_ROOT
    ? ["sudo", ["-n", command, ...args]]
    : [command, args];
  try {
    const out = await new Deno.Command(cmd, {
      args: argv,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(options.env ? { env: options.env } : {}),
    }).output();
    const stdout = decoder.decode(out.stdout);
    return { ok: out.success, stdout, output: `${stdout}${decoder.decode(out.stderr)}`.trim() };
  } catch (error) {
    return { ok: false, stdout: "", output: `${cmd}: ${(error as Error).message}` };
  }
}

async function isMounted(dir: string): Promise<boolean> {
  const real = await Deno.realPath(dir).catch(() => dir);
  const info = await Deno.readTextFile("/proc/self/mountinfo").catch(() => "");
  return info.split("\n").some((line) => {
    const point = line.split(" ")[4];
    return point === dir || point === real;
  });
}

/**
 * Mounts a tmpfs of `size` on a fresh directory for `fn`, and unmounts it
 * afterwards whatever happens; throws if anything is left mounted.
 */
async function withTmpfs<T>(
  size: string,
  fn: (dir: string, remountReadOnly: () => Promise<void>) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "spotikit-tmpfs-" });
  let mounted = false;
  try {
    const owner = UID !== undefined && GID !== undefined ? `,uid=${UID},gid=${GID}` : "";
    const mount = await sh("mount", [
      "-t",
      "tmpfs",
      "-o",
      `size=${size},mode=0700${owner}`,
      "tmpfs",
      dir,
    ], { privileged: true });
    if (!mount.ok) throw new Error(`Cannot mount a tmpfs on ${dir}: ${mount.output}`);
    mounted = true;
    return await fn(dir, async () => {
      const ro = await sh("mount", ["-o", "remount,ro", dir], { privileged: true });
      if (!ro.ok) throw new Error(`Cannot remount ${dir} read-only: ${ro.output}`);
    });
  } finally {
    if (mounted) {
      let umount = await sh("umount", [dir], { privileged: true });
      if (!umount.ok) umount = await sh("umount", ["-l", dir], { privileged: true });
      if (!umount.ok || await isMounted(dir)) {
        // deno-lint-ignore no-unsafe-finally
        throw new Error(`Left ${dir} mounted: ${umount.output}`);
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
}

async function withTempDir<T>(fn: (root: string) => Promise<T>): Promise<T> {
  const root = await Deno.makeTempDir({ prefix: "spotikit-faults-" });
  try {
    return await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function temporaries(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.endsWith(".tmp")) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

/** Asserts a SpotifyTokenStoreError whose message starts with `prefix` (which names the path). */
function storeError(prefix: string, path: string): (error: unknown) => boolean {
  return (error) => {
    ok(error instanceof SpotifyTokenStoreError, `not a SpotifyTokenStoreError: ${error}`);
    ok(
      error.message.startsWith(prefix),
      `message does not start with "${prefix}": ${error.message}`,
    );
    ok(error.message.includes(path), `message does not name ${path}: ${error.message}`);
    return true;
  };
}

// ---------------------------------------------------------------------------
// What this machine can do, found once when the module loads.

type ReadOnlyMethod = "mount" | "chattr" | "setpriv" | "chmod";

async function probeMount(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "tmpfs mounts need Linux";
  try {
    await withTmpfs("64k", async (_dir, remountReadOnly) => await remountReadOnly());
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

async function probeChattr(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "chattr needs Linux";
  const dir = await Deno.makeTempDir({ prefix: "spotikit-chattr-" });
  try {
    const set = await sh("chattr", ["+i", dir], { privileged: true });
    if (!set.ok) return `chattr +i failed: ${set.output}`;
    try {
      await Deno.writeTextFile(`${dir}/probe`, "x");
      return "chattr +i did not stop a write (file system without the immutable flag?)";
    } catch {
      return undefined;
    } finally {
      await sh("chattr", ["-i", dir], { privileged: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function probeSetpriv(): Promise<string | undefined> {
  if (!IS_ROOT) return "setpriv to another user needs root";
  const r = await sh("setpriv", [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    "--clear-groups",
    "true",
  ]);
  return r.ok ? undefined : `setpriv failed: ${r.output}`;
}

const mountProblem = await probeMount();
const readOnly: { method?: ReadOnlyMethod; tried: string[] } = { tried: [] };
{
  const forced = Deno.env.get("SPOTIKIT_RO_METHOD");
  const candidates: [ReadOnlyMethod, () => Promise<string | undefined>][] = [
    ["mount", () => Promise.resolve(mountProblem)],
    ["chattr", probeChattr],
    ["setpriv", probeSetpriv],
    ["chmod", () => Promise.resolve(IS_ROOT ? "root ignores permission bits" : undefined)],
  ];
  for (const [method, probe] of candidates) {
    if (forced && forced !== method) continue;
    const problem = POSIX ? await probe() : "needs a POSIX system";
    if (problem === undefined) {
      readOnly.method = method;
      break;
    }
    readOnly.tried.push(`${method}: ${problem}`);
  }
  if (!readOnly.method) {
    console.log(`read-only directory test skipped; tried ${readOnly.tried.join("; ")}`);
  }
  if (mountProblem) console.log(`full-disk test skipped: ${mountProblem}`);
}

// ---------------------------------------------------------------------------
// 1. Kill test

/**
 * Starts a writer, waits for "started", lets it write for `delayMs`, then
 * kills it with SIGKILL and waits for it to be gone.
 */
async function runAndKill(dir: string, delayMs: number): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-config",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      WRITER,
      "loop",
      dir,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  // Not a sleep: a writer that never says "started" is killed, so the read ends.
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 15_000);
  let out = "";
  try {
    for (let reads = 0; reads < 100 && !out.includes("started\n"); reads++) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
  } finally {
    clearTimeout(watchdog);
  }
  if (out.includes("started\n")) {
    // This timer is the point of the test, not a wait for an event: it picks
    // a random moment in the writer's loop (open, write, fsync, rename, or
    // between two writes) at which to kill it.
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // Already gone; the status says how.
  }
  await reader.cancel();
  const status = await child.status;
  const errors = await stderr;
  if (!out.includes("started\n") || status.signal !== "SIGKILL") {
    throw new Error(
      `The writer ${
        out.includes("started\n") ? "ended" : "did not start"
      } (code ${status.code}, signal ${status.signal}):\n${out}${errors}`,
    );
  }
}

Deno.test("FileTokenStore.set() leaves the old or the new token, never a torn file, when killed", {
  ignore: !POSIX,
}, () =>
  withTempDir(async (root) => {
    const kills = envInt("SPOTIKIT_KILLS", 50, 100_000);
    const seed = envInt("SPOTIKIT_SEED", Math.floor(Math.random() * 2 ** 31), 2 ** 32 - 1);
    console.log(`kill test: seed ${seed} (replay with SPOTIKIT_SEED=${seed}), ${kills} kills`);
    const random = mulberry32(seed);
    const dir = `${root}/tokens`;
    const store = new FileTokenStore({ directory: dir });
    const path = store.path(WRITER_KEY);
    const tokenName = path.slice(dir.length + 1);
    const survived: Record<SizeClass, number> = { small: 0, medium: 0, large: 0 };
    const torn: string[] = [];
    let absent = 0;
    let written = false;
    let highest = -1;
    const start = performance.now();
    for (let k = 0; k < kills; k++) {
      const delay = random() * 30;
      await runAndKill(dir, delay);
      const where = `kill ${k} (after ${delay.toFixed(2)} ms)`;
      let record: TokenRecord | undefined;
      try {
        record = await store.get(WRITER_KEY);
      } catch (error) {
        torn.push(`${where}: ${(error as Error).message}`);
        continue;
      }
      if (record === undefined) {
        // Absent is fine only before the first write ever landed: the
        // writer replaces the file, it never removes it.
        if (written) torn.push(`${where}: the token file vanished`);
        else absent++;
        continue;
      }
      written = true;
      const check = await checkRecord(record);
      if ("problem" in check) torn.push(`${where}: ${check.problem}`);
      else {
        survived[check.size]++;
        highest = Math.max(highest, check.seq);
      }
    }
    const seconds = (performance.now() - start) / 1000;
    const left = await temporaries(dir);
    const others = [...Deno.readDirSync(dir)]
      .map((entry) => entry.name)
      .filter((name) => name !== tokenName && !left.includes(name));
    const sizes = Object.fromEntries(
      Object.entries(SIZE_CLASSES).map(([name, padding]) => [`${name} (${padding} B pad)`, 0]),
    );
    for (const [name, count] of Object.entries(survived)) {
      sizes[`${name} (${SIZE_CLASSES[name as SizeClass]} B pad)`] = count;
    }
    console.log(
      [
        `kills: ${kills}, seed ${seed}`,
        `torn or invalid files: ${torn.length}`,
        `files absent: ${absent}`,
        `surviving record sizes: ${JSON.stringify(sizes)}`,
        `highest record number seen: ${highest}`,
        `temporary files left: ${left.length}`,
        `duration: ${seconds.toFixed(1)} s (${
          ((seconds * 1000) / Math.max(kills, 1)).toFixed(1)
        } ms per kill)`,
      ].join("\n"),
    );
    deepStrictEqual(torn, []);
    deepStrictEqual(others, [], "unexpected files in the token directory");

    // Leftover temporaries: a later set() removes those older than a minute
    // and keeps a recent one (which may belong to a live writer).
    await Deno.mkdir(dir, { recursive: true });
    const aged = [...left];
    if (aged.length === 0) {
      // No kill landed mid-write; plant one so the clean-up is still checked.
      aged.push(`${tokenName}.planted-old.tmp`);
      await Deno.writeTextFile(`${dir}/${aged[0]}`, "{", { mode: 0o600 });
    }
    const old = new Date(Date.now() - 120_000);
    for (const name of aged) await Deno.utime(`${dir}/${name}`, old, old);
    const recent = `${tokenName}.planted-recent.tmp`;
    await Deno.writeTextFile(`${dir}/${recent}`, "{", { mode: 0o600 });
    const last = await makeRecord(999_999, "small");
    await store.set(WRITER_KEY, last);
    deepStrictEqual(await temporaries(dir), [recent]);
    deepStrictEqual(await store.get(WRITER_KEY), last);
  }));

// ---------------------------------------------------------------------------
// 2. Faults

Deno.test({
  name: `FileTokenStore.set() in a read-only directory fails by path and keeps the old token (${
    readOnly.method ?? "skipped"
  })`,
  ignore: !readOnly.method,
  fn: async () => {
    const method = readOnly.method!;
    const old = await makeRecord(1, "small");
    const next = await makeRecord(2, "medium");
    console.log(`read-only directory made with: ${method}`);

    // Checks done the same way whichever method made the directory read-only.
    const expectRefused = async (
      store: FileTokenStore,
      setNext: () => Promise<void>,
      canDelete: boolean,
    ) => {
      const path = store.path(WRITER_KEY);
      let message = "";
      await rejects(setNext(), (error) => {
        message = (error as Error).message;
        return storeError(`Cannot write the token file ${path}: `, path)(error);
      });
      console.log(`set() refused with: ${message}`);
      deepStrictEqual(await store.get(WRITER_KEY), old);
      deepStrictEqual(await temporaries(store.directory), []);
      if (canDelete) {
        await rejects(
          store.delete(WRITER_KEY),
          storeError(`Cannot delete the token file ${path}: `, path),
        );
        deepStrictEqual(await store.get(WRITER_KEY), old);
      }
    };

    if (method === "mount") {
      await withTmpfs("1m", async (mnt, remountReadOnly) => {
        const store = new FileTokenStore({ directory: `${mnt}/tokens` });
        await store.set(WRITER_KEY, old);
        await remountReadOnly();
        await expectRefused(store, () => store.set(WRITER_KEY, next), true);
      });
      return;
    }
    await withTempDir(async (root) => {
      const store = new FileTokenStore({ directory: `${root}/tokens` });
      await store.set(WRITER_KEY, old);
      if (method === "chattr") {
        const set = await sh("chattr", ["+i", store.directory], { privileged: true });
        ok(set.ok, set.output);
        try {
          await expectRefused(store, () => store.set(WRITER_KEY, next), true);
        } finally {
          const unset = await sh("chattr", ["-i", store.directory], { privileged: true });
          ok(unset.ok, unset.output);
        }
      } else if (method === "chmod") {
        await Deno.chmod(store.directory, 0o500);
        try {
          await expectRefused(store, () => store.set(WRITER_KEY, next), true);
        } finally {
          await Deno.chmod(store.directory, 0o700);
        }
      } else {
        // setpriv: the writer runs as nobody against root's 0755 directory.
        await Deno.chmod(root, 0o755);
        await Deno.chmod(store.directory, 0o755);
        const denoDir = `${root}/deno-dir`;
        await Deno.mkdir(denoDir);
        await Deno.chown(denoDir, NOBODY, NOBODY);
        const setAsNobody = async () => {
          const run = await sh("setpriv", [
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            "--clear-groups",
            Deno.execPath(),
            "run",
            "--no-config",
            `--allow-read=${store.directory}`,
            `--allow-write=${store.directory}`,
            WRITER,
            "set",
            store.directory,
            "2",
            "medium",
          ], { env: { DENO_DIR: denoDir, HOME: root, NO_COLOR: "1" } });
          ok(run.ok, run.output);
          const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!);
          if (result.ok) return;
          ok(result.isStoreError, `not a SpotifyTokenStoreError: ${run.stdout}`);
          throw new SpotifyTokenStoreError(result.message);
        };
        await expectRefused(store, setAsNobody, false);
      }
    });
  },
});

Deno.test({
  name:
    "FileTokenStore.set() on a full disk fails by path, keeps the old token, leaves no temp file",
  ignore: mountProblem !== undefined,
  fn: () =>
    withTmpfs("64k", async (mnt) => {
      const store = new FileTokenStore({ directory: `${mnt}/tokens` });
      const path = store.path(WRITER_KEY);
      const old = await makeRecord(1, "small");
      await store.set(WRITER_KEY, old);
      // Fill the file system, then give one page back, so that the new
      // record's (about 4.4 KB) first write succeeds in part and a later one
      // fails.
      const filler = `${mnt}/filler`;
      let filled = 0;
      {
        using file = await Deno.open(filler, { write: true, createNew: true });
        const chunk = new Uint8Array(4096);
        for (let i = 0; i < 1024; i++) {
          try {
            filled += await file.write(chunk);
          } catch (error) {
            ok(/No space left on device/.test((error as Error).message), String(error));
            break;
          }
        }
        await file.truncate(Math.max(0, filled - 4096));
      }
      ok(filled > 0 && filled < 64 * 1024, `filled ${filled} bytes`);
      await rejects(
        store.set(WRITER_KEY, await makeRecord(2, "medium")),
        storeError(`Cannot write the token file ${path}: No space left on device`, path),
      );
      deepStrictEqual(await store.get(WRITER_KEY), old);
      deepStrictEqual(await temporaries(store.directory), []);
      // With room again, the same write goes through: space was the only fault.
      await Deno.remove(filler);
      const next = await makeRecord(2, "medium");
      await store.set(WRITER_KEY, next);
      deepStrictEqual(await store.get(WRITER_KEY), next);
    }),
});

Deno.test("FileTokenStore.get() refuses a token file others may read, and leaves it", {
  ignore: !POSIX,
}, () =>
  withTempDir(async (root) => {
    const store = new FileTokenStore({ directory: `${root}/tokens` });
    const path = store.path(WRITER_KEY);
    const record = await makeRecord(1, "small");
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o666]) {
      await store.set(WRITER_KEY, record);
      await Deno.chmod(path, mode);
      const before = await Deno.readTextFile(path);
      await rejects(store.get(WRITER_KEY), (error) => {
        ok(error instanceof SpotifyTokenStoreError);
        strictEqual(
          error.message,
          `Cannot use the token file ${path}: other users may read or write it (mode ${
            mode.toString(8)
          }). Run chmod 600 ${path} if only you ever had access, or delete it and log in again.`,
        );
        return true;
      });
      strictEqual((await Deno.lstat(path)).mode! & 0o777, mode);
      strictEqual(await Deno.readTextFile(path), before);
    }
    // The owner's own bits are the owner's business.
    for (const mode of [0o400, 0o700]) {
      await Deno.chmod(path, mode);
      deepStrictEqual(await store.get(WRITER_KEY), record);
    }
  }));

Deno.test("FileTokenStore refuses a symbolic link at the token path and never writes through it", {
  ignore: !POSIX,
}, () =>
  withTempDir(async (root) => {
    const store = new FileTokenStore({ directory: `${root}/tokens` });
    await Deno.mkdir(store.directory, { recursive: true });
    const path = store.path(WRITER_KEY);
    const target = `${root}/elsewhere.json`;
    const content = `${JSON.stringify({ version: 1, ...await makeRecord(1, "small") })}\n`;
    await Deno.writeTextFile(target, content, { mode: 0o600 });
    await Deno.symlink(target, path);
    await rejects(
      store.get(WRITER_KEY),
      (error) => {
        ok(error instanceof SpotifyTokenStoreError);
        strictEqual(
          error.message,
          `Cannot read the token file ${path}: it is a symbolic link, and a token file must be one. It was left as it is; remove it to log in again.`,
        );
        return true;
      },
    );
    ok((await Deno.lstat(path)).isSymlink);
    strictEqual(await Deno.readLink(path), target);
    // A dangling link is refused the same way, not taken for "no token".
    await Deno.remove(target);
    await rejects(store.get(WRITER_KEY), storeError(`Cannot read the token file ${path}: `, path));
    // set() replaces the link itself; whatever it pointed at is never written.
    await Deno.writeTextFile(target, content, { mode: 0o600 });
    await store.set(WRITER_KEY, await makeRecord(2, "small"));
    strictEqual(await Deno.readTextFile(target), content);
  }));

Deno.test("FileTokenStore.get() reports a corrupt or torn file by path and leaves it untouched", {
  ignore: !POSIX,
}, () =>
  withTempDir(async (root) => {
    const store = new FileTokenStore({ directory: `${root}/tokens` });
    await Deno.mkdir(store.directory, { recursive: true });
    const path = store.path(WRITER_KEY);
    const whole = `${JSON.stringify({ version: 1, ...await makeRecord(3, "large") }, null, 2)}\n`;
    const cases: [string, string][] = [
      ["", "it is not valid JSON"],
      [whole.slice(0, whole.length >> 1), "it is not valid JSON"],
      [whole.slice(0, 4096), "it is not valid JSON"],
      ["\0".repeat(4096), "it is not valid JSON"],
      ["null", "its format version is undefined"],
      ['{"version": 1}', "it has no token"],
      [whole.replace(/"accessToken": "[0-9a-f]+"/, '"accessToken": ""'), "accessToken is missing"],
    ];
    for (const [content, problem] of cases) {
      await Deno.writeTextFile(path, content, { mode: 0o600 });
      const old = new Date(Date.now() - 3_600_000);
      await Deno.utime(path, old, old);
      const before = await Deno.lstat(path);
      await rejects(store.get(WRITER_KEY), (error) => {
        ok(error instanceof SpotifyTokenStoreError, String(error));
        ok(error.message.includes(path), error.message);
        ok(error.message.includes(problem), `${problem} not in: ${error.message}`);
        return true;
      });
      const after = await Deno.lstat(path);
      strictEqual(await Deno.readTextFile(path), content);
      deepStrictEqual([after.mtime, after.mode, after.ino], [
        before.mtime,
        before.mode,
        before.ino,
      ]);
      deepStrictEqual(await temporaries(store.directory), []);
    }
    // A directory where the file should be is named, not mistaken for "no token".
    await Deno.remove(path);
    await Deno.mkdir(path);
    await rejects(store.get(WRITER_KEY), storeError(`Cannot read the token file ${path}: `, path));
  }));
