/**
 * A token store of one JSON file per app and user in the user's config
 * directory, written atomically and readable only by the user.
 *
 * @module
 */

import { abortable } from "./_timing.ts";
import {
  parseStoredRecord,
  RECORD_VERSION,
  SpotifyTokenStoreError,
  type TokenKey,
  type TokenRecord,
  type TokenStore,
  type TokenStoreOptions,
} from "./token_store.ts";

/** Options for {@linkcode FileTokenStore}. */
export interface FileTokenStoreOptions {
  /**
   * The directory of the token files; created with mode `0700` if missing.
   *
   * @default {defaultTokenDirectory()}
   */
  directory?: string | undefined;
}

/**
 * Where tokens go by default: `spotikit/` in the user's config directory,
 * `$XDG_CONFIG_HOME` or `~/.config` on Linux, `~/Library/Application Support`
 * on macOS, `%APPDATA%` on Windows.
 *
 * @returns The directory path.
 * @throws {TypeError} When the environment has no home or config directory.
 *
 * @example Show where tokens are kept
 * ```ts
 * import { defaultTokenDirectory } from "@spotikit/auth";
 *
 * console.log(defaultTokenDirectory()); // e.g. /home/me/.config/spotikit
 * ```
 */
export function defaultTokenDirectory(): string {
  const env = (name: string) => {
    try {
      return Deno.env.get(name) || undefined;
    } catch (error) {
      throw new TypeError(
        `Cannot find the config directory for the token files without reading ${name}: run Deno with --allow-env=${name} (or --allow-env), or pass directory to FileTokenStore`,
        { cause: error },
      );
    }
  };
  let base: string | undefined;
  switch (Deno.build.os) {
    case "windows":
      base = env("APPDATA");
      break;
    case "darwin":
      base = env("HOME") && `${env("HOME")}/Library/Application Support`;
      break;
    default:
      base = env("XDG_CONFIG_HOME") ?? (env("HOME") && `${env("HOME")}/.config`);
  }
  if (!base) {
    throw new TypeError(
      "Cannot find a config directory for the token files (HOME, XDG_CONFIG_HOME or APPDATA is unset); pass directory to FileTokenStore",
    );
  }
  return join(base, "spotikit");
}

/**
 * Keeps each token in its own file, `<client id>.<user>.json`, in a
 * directory only the user can enter (`0700`), with files only the user can
 * read (`0600` from the moment they exist). Names are percent-encoded
 * (capitals too), so that two keys never share a file, even on a
 * case-insensitive file system. An existing directory keeps its mode.
 *
 * Writes go to a temporary file that is flushed to disk and then renamed over
 * the old one, so a crash leaves either the old token or the new one, never a
 * torn file. A file that cannot be read or parsed is reported with its path
 * by {@linkcode FileTokenStore.get}, and the session never writes over a
 * file it could not read (only an explicit `set()` replaces it); so is a token
 * file that is a symbolic link or that other users may read (as `ssh` does
 * with private keys).
 *
 * {@linkcode FileTokenStore.lock} takes an OS file lock, so several processes
 * on one machine refresh a token once.
 *
 * Needs `--allow-read` and `--allow-write` on the directory, and
 * `--allow-env` for the default directory.
 *
 * @example Keep tokens in a project directory
 * ```ts
 * import { createSpotifyAuth, FileTokenStore } from "@spotikit/auth";
 *
 * const auth = createSpotifyAuth({
 *   clientId: "your-client-id",
 *   store: new FileTokenStore({ directory: ".spotikit" }),
 * });
 * ```
 */
export class FileTokenStore implements TokenStore {
  /** The directory of the token files. */
  readonly directory: string;

  /**
   * Creates a store; nothing touches the disk until the first operation.
   *
   * @param options The directory.
   */
  constructor(options: FileTokenStoreOptions = {}) {
    this.directory = options.directory ?? defaultTokenDirectory();
  }

  /**
   * The path of the file that holds a key's token.
   *
   * @param key The app and user.
   * @returns The file path.
   */
  path(key: TokenKey): string {
    return join(
      this.directory,
      `${fileSafe(key.clientId)}.${fileSafe(key.user ?? "default")}.json`,
    );
  }

  /**
   * Reads a key's token file.
   *
   * @param key The app and user.
   * @param options Abort signal.
   * @returns The record, or `undefined` when there is no file.
   * @throws {SpotifyTokenStoreError} When the file cannot be read or parsed;
   * the message names it.
   */
  async get(key: TokenKey, options: TokenStoreOptions = {}): Promise<TokenRecord | undefined> {
    options.signal?.throwIfAborted();
    const path = this.path(key);
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw storeError(`Cannot read the token file ${path}`, error);
    }
    if (!info.isFile) {
      throw new SpotifyTokenStoreError(
        `Cannot read the token file ${path}: it is ${
          info.isSymlink ? "a symbolic link" : "not a regular file"
        }, and a token file must be one. It was left as it is; remove it to log in again.`,
      );
    }
    // Like ssh with a private key: a token others can read may already be
    // theirs, so it is refused rather than used.
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new SpotifyTokenStoreError(
        `Cannot use the token file ${path}: other users may read or write it (mode ${
          (info.mode & 0o777).toString(8)
        }). Run chmod 600 ${path} if only you ever had access, or delete it and log in again.`,
      );
    }
    let text: string;
    try {
      text = await Deno.readTextFile(path, options.signal ? { signal: options.signal } : {});
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      if (options.signal?.aborted) throw options.signal.reason;
      throw storeError(`Cannot read the token file ${path}`, error);
    }
    return parseStoredRecord(text, path);
  }

  /**
   * Writes a key's token file atomically: temporary file, flush, rename.
   *
   * @param key The app and user.
   * @param record The record.
   * @param options Abort signal.
   * @throws {SpotifyTokenStoreError} When the file cannot be written; the old
   * file, if any, is unchanged.
   */
  async set(key: TokenKey, record: TokenRecord, options: TokenStoreOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    await this.#ensureDirectory();
    const path = this.path(key);
    await removeStaleTemporaries(this.directory, path);
    const temporary = `${path}.${crypto.randomUUID()}.tmp`;
    const data = new TextEncoder().encode(
      `${JSON.stringify({ version: RECORD_VERSION, ...record }, null, 2)}\n`,
    );
    try {
      // createNew refuses an existing file or a symlink planted at this name.
      using file = await Deno.open(temporary, { write: true, createNew: true, mode: 0o600 });
      for (let done = 0; done < data.length;) done += await file.write(data.subarray(done));
      await file.sync();
    } catch (error) {
      await Deno.remove(temporary).catch(() => {});
      throw storeError(`Cannot write the token file ${path}`, error);
    }
    try {
      await Deno.rename(temporary, path);
    } catch (error) {
      await Deno.remove(temporary).catch(() => {});
      throw storeError(`Cannot write the token file ${path}`, error);
    }
    await syncDirectory(this.directory);
  }

  /**
   * Deletes a key's token file, if there is one.
   *
   * @param key The app and user.
   * @param options Abort signal.
   * @throws {SpotifyTokenStoreError} When the file exists but cannot be deleted.
   */
  async delete(key: TokenKey, options: TokenStoreOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    const path = this.path(key);
    try {
      await Deno.remove(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw storeError(`Cannot delete the token file ${path}`, error);
    }
  }

  /**
   * Runs `fn` while holding an exclusive OS lock on `<token file>.lock`, which
   * other processes using the same directory wait for.
   *
   * @param key The app and user.
   * @param fn What to do under the lock.
   * @param options Abort signal for the wait.
   * @returns What `fn` returned.
   * @throws {SpotifyTokenStoreError} When the lock file cannot be opened.
   */
  async lock<T>(key: TokenKey, fn: () => Promise<T>, options: TokenStoreOptions = {}): Promise<T> {
    const { signal } = options;
    signal?.throwIfAborted();
    await this.#ensureDirectory();
    const path = `${this.path(key)}.lock`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
    } catch (error) {
      throw storeError(`Cannot open the lock file ${path}`, error);
    }
    const locked = file.lock(true);
    try {
      await abortable(locked, signal);
    } catch (error) {
      // The lock may still be granted later; closing the file gives it back.
      locked.finally(() => file.close()).catch(() => {});
      throw error;
    }
    try {
      return await fn();
    } finally {
      // Closing the file releases the lock.
      file.close();
    }
  }

  async #ensureDirectory(): Promise<void> {
    try {
      await Deno.mkdir(this.directory, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw storeError(`Cannot create the token directory ${this.directory}`, error);
    }
  }
}

// A writer that died between creating its temporary file and renaming it
// left tokens behind; they are removed once clearly abandoned.
const STALE_AFTER = 60_000;

async function removeStaleTemporaries(directory: string, path: string): Promise<void> {
  const prefix = path.slice(directory.length).replace(/^[\\/]/, "");
  try {
    for await (const entry of Deno.readDir(directory)) {
      if (!entry.isFile || !entry.name.startsWith(`${prefix}.`) || !entry.name.endsWith(".tmp")) {
        continue;
      }
      const stale = join(directory, entry.name);
      const { mtime } = await Deno.lstat(stale);
      if (mtime && Date.now() - mtime.getTime() > STALE_AFTER) await Deno.remove(stale);
    }
  } catch {
    // Cleaning up is a courtesy; the write itself does not depend on it.
  }
}

function storeError(what: string, error: unknown): SpotifyTokenStoreError {
  const text = error instanceof Error ? error.message : String(error);
  const advice = error instanceof Deno.errors.NotCapable
    ? " Run Deno with --allow-read and --allow-write for this directory."
    : /os error 28\b/.test(text)
    ? " The disk is full: free some space; the previous token is unchanged."
    : /os error 30\b/.test(text)
    ? " The file system is read-only: pass another directory to FileTokenStore; the previous token is unchanged."
    : error instanceof Deno.errors.PermissionDenied
    ? " Check the permissions of the directory and file."
    : "";
  return new SpotifyTokenStoreError(
    `${what}: ${text}.${advice}`,
    { cause: error },
  );
}

// A rename is durable only once the directory entry is; not every platform
// can open a directory for that, and the file itself is already on disk.
async function syncDirectory(directory: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  try {
    using dir = await Deno.open(directory, { read: true });
    await dir.sync();
  } catch {
    // Best effort.
  }
}

function fileSafe(name: string): string {
  if (!name) throw new TypeError("Cannot name a token file after an empty client id or user");
  // Percent-encoded UTF-8, capitals included, so distinct names give
  // distinct files even on case-insensitive file systems.
  return name.replace(
    /[^a-z0-9_-]/gu,
    (c) =>
      [...new TextEncoder().encode(c)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join(""),
  );
}

function join(directory: string, name: string): string {
  const separator = Deno.build.os === "windows" ? "\\" : "/";
  return directory.endsWith("/") || directory.endsWith("\\")
    ? `${directory}${name}`
    : `${directory}${separator}${name}`;
}
