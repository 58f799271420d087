// Drives a headless Chromium over the DevTools protocol (CDP) with Deno's own
// WebSocket: no npm package, no download. One browser per test; disposing of
// it closes the socket, ends the process (and waits for it), and removes the
// throwaway profile.
//
// When Chromium is not installed, tests are ignored with a printed reason,
// except under CI (the CI environment variable is set), where they run and
// `launchChromium()` fails them with the same reason.

const INSTALL_HINT = "install it with apt-get install -y chromium";

/**
 * The Chromium executable: `$CHROMIUM` when it is set (and then only that),
 * else `chromium` or `chromium-browser` on PATH or in /usr/bin.
 */
export function chromiumPath(): string | undefined {
  const configured = Deno.env.get("CHROMIUM");
  if (configured) return isExecutable(configured) ? configured : undefined;
  const path = Deno.env.get("PATH") ?? "";
  const directories = [...path.split(":").filter(Boolean), "/usr/bin"];
  for (const name of ["chromium", "chromium-browser"]) {
    for (const directory of directories) {
      if (isExecutable(`${directory}/${name}`)) return `${directory}/${name}`;
    }
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw error;
  }
}

const executable = chromiumPath();
const onCi = Boolean(Deno.env.get("CI"));

/** Why the browser tests cannot run here, or `undefined` when they can. */
export const chromiumMissingReason: string | undefined = executable
  ? undefined
  : Deno.env.get("CHROMIUM")
  ? `Chromium not found: $CHROMIUM is ${Deno.env.get("CHROMIUM")}, which is not an executable`
  : `Chromium not found: ${INSTALL_HINT} (or set $CHROMIUM to its path)`;

/**
 * Set as `ignore` on every browser test: true when Chromium is missing and
 * this is not CI (on CI the tests run, and `launchChromium()` fails them).
 */
export const ignoreChromiumTests: boolean = chromiumMissingReason !== undefined && !onCi;

if (ignoreChromiumTests) {
  console.warn(`%cBrowser tests ignored: ${chromiumMissingReason}.`, "color: yellow");
}

/** A CDP event: its method, parameters, and the session it belongs to (none for the browser). */
export interface CdpEvent {
  method: string;
  // deno-lint-ignore no-explicit-any
  params: any;
  sessionId?: string;
}

/** Options for waiting. */
export interface WaitOptions {
  /** Milliseconds before the wait fails; a test that would hang fails instead. Default 10 000. */
  timeout?: number;
  /** Stops waiting, rejecting with the signal's reason. */
  signal?: AbortSignal;
}

/** A running headless Chromium. */
export interface Chromium extends AsyncDisposable {
  /** The browser's DevTools WebSocket URL, read from its stderr. */
  readonly webSocketDebuggerUrl: string;
  /** Everything Chromium wrote on stderr so far (for failure messages). */
  readonly log: string;
  /** Sends a command (to the browser, or to a page's session) and resolves with its result. */
  // deno-lint-ignore no-explicit-any
  send<T = any>(method: string, params?: object, sessionId?: string): Promise<T>;
  /** Resolves with the first event from now on that matches `predicate`. */
  waitForEvent(predicate: (event: CdpEvent) => boolean, options?: WaitOptions): Promise<CdpEvent>;
  /** Opens a new tab at about:blank, attached with a flattened session. */
  newPage(): Promise<Page>;
  /** Closes the socket, ends the process, waits for it and removes the profile. */
  close(): Promise<void>;
}

/** A tab in {@linkcode Chromium}. */
export interface Page {
  readonly targetId: string;
  readonly sessionId: string;
  /** Sends a command to this tab's session. */
  // deno-lint-ignore no-explicit-any
  send<T = any>(method: string, params?: object): Promise<T>;
  /** Resolves with this tab's first event from now on that matches `predicate`. */
  waitForEvent(predicate: (event: CdpEvent) => boolean, options?: WaitOptions): Promise<CdpEvent>;
  /** Loads `url` in the tab; resolves once the main frame's load event fired. */
  navigate(url: string | URL, options?: WaitOptions): Promise<void>;
  /** Evaluates an expression in the page (promises awaited) and returns its value as JSON. */
  // deno-lint-ignore no-explicit-any
  evaluate<T = any>(expression: string): Promise<T>;
  /**
   * Clicks the middle of the element with the mouse, as a person would, and
   * resolves once the navigation it starts has loaded.
   */
  click(selector: string, options?: WaitOptions): Promise<void>;
  /** The main frame's URL. */
  url(): Promise<string>;
  /** `document.body.innerText`. */
  text(): Promise<string>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Uint8Array>;
}

/** Starts a headless Chromium with a fresh profile and connects to its DevTools socket. */
export async function launchChromium(): Promise<Chromium> {
  if (!executable) throw new Error(`${chromiumMissingReason}.`);
  // Everything Chromium writes goes under one directory, removed at the end:
  // the profile, and its own temporary files (TMPDIR), which a crash leaves behind.
  const root = await Deno.makeTempDir({ prefix: "spotikit-chromium-" });
  const profile = `${root}/profile`;
  let child: Deno.ChildProcess;
  try {
    await Deno.mkdir(`${root}/tmp`);
    child = new Deno.Command(executable, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        // Without these three, Chromium reaches for Google's servers, and
        // this machine's closed network refuses the connections.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        // Port 0: Chromium picks a free one and prints it on stderr.
        "--remote-debugging-port=0",
        "about:blank",
      ],
      env: { TMPDIR: `${root}/tmp` },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await Deno.remove(root, { recursive: true });
    throw error;
  }

  // Read stderr to the end (the pipe must not fill up), and hand over the
  // DevTools line as soon as it appears.
  let log = "";
  const listening = Promise.withResolvers<string>();
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      log += chunk;
      const match = /^DevTools listening on (ws:\/\/\S+)$/m.exec(log);
      if (match) listening.resolve(match[1]!);
    }
    listening.reject(new Error(`Chromium exited before its DevTools socket was up:\n${log}`));
  })();

  let socket: WebSocket | undefined;
  let client: CdpClient | undefined;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      try {
        if (client && !client.closed) {
          // A clean shutdown ends the renderer and zygote processes too, which
          // hold the stderr pipe open; the socket closes once it is done.
          await client.send("Browser.close").catch(() => {});
          await client.close();
        }
      } finally {
        // Chromium should be on its way out; make sure of it. SIGKILL is
        // harmless if it has already exited, and the status is awaited either way.
        const exited = await Promise.race([
          child.status.then(() => true),
          new Promise<false>((resolve) => {
            const timer = setTimeout(() => resolve(false), 5_000);
            child.status.finally(() => clearTimeout(timer));
          }),
        ]);
        if (!exited) {
          try {
            child.kill("SIGKILL");
          } catch { /* it exited meanwhile */ }
        }
        await child.status;
        await stderrDone.catch(() => {});
        listening.promise.catch(() => {});
        await Deno.remove(root, { recursive: true });
      }
    })();

  try {
    // A Chromium that hangs before printing the line fails the test instead of hanging it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const url = await Promise.race([
      listening.promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Chromium did not open its DevTools socket within 15 s:\n${log}`)),
          15_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    socket = new WebSocket(url);
    client = new CdpClient(socket);
    await client.opened;
  } catch (error) {
    if (!client && socket) socket.close();
    await close().catch(() => {});
    throw error;
  }

  const cdp = client;
  const webSocketDebuggerUrl = socket.url;
  return {
    webSocketDebuggerUrl,
    get log() {
      return log;
    },
    send: (method, params, sessionId) => cdp.send(method, params, sessionId),
    waitForEvent: (predicate, options) => cdp.waitForEvent(predicate, options),
    newPage: () => openPage(cdp),
    close,
    [Symbol.asyncDispose]: close,
  };
}

// ---------------------------------------------------------------------------
// The protocol client

interface Pending {
  method: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Waiter {
  predicate(event: CdpEvent): boolean;
  resolve(event: CdpEvent): void;
  reject(error: unknown): void;
}

class CdpClient {
  readonly opened: Promise<void>;
  closed = false;
  #socket: WebSocket;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #waiters = new Set<Waiter>();
  #closedEvent = Promise.withResolvers<void>();

  constructor(socket: WebSocket) {
    this.#socket = socket;
    const opened = Promise.withResolvers<void>();
    this.opened = opened.promise;
    socket.addEventListener("open", () => opened.resolve(), { once: true });
    socket.addEventListener("message", (event) => this.#dispatch(String(event.data)));
    socket.addEventListener("close", (event) => {
      this.closed = true;
      const error = new Error(
        `Chromium's DevTools socket closed (code ${event.code}${
          event.reason ? `, ${event.reason}` : ""
        })`,
      );
      opened.reject(error);
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
      for (const waiter of this.#waiters) waiter.reject(error);
      this.#waiters.clear();
      this.#closedEvent.resolve();
    }, { once: true });
    this.opened.catch(() => {});
  }

  // deno-lint-ignore no-explicit-any
  send<T = any>(method: string, params: object = {}, sessionId?: string): Promise<T> {
    if (this.#socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`Cannot send ${method}: the DevTools socket is not open`));
    }
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    this.#pending.set(id, { method, resolve: resolve as (value: unknown) => void, reject });
    this.#socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return promise;
  }

  waitForEvent(
    predicate: (event: CdpEvent) => boolean,
    { timeout = 10_000, signal }: WaitOptions = {},
  ): Promise<CdpEvent> {
    if (this.closed) return Promise.reject(new Error("The DevTools socket is closed"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<CdpEvent>();
    // Made here, so that its stack shows who waited.
    const timedOut = new Error(`Timed out after ${timeout} ms waiting for a DevTools event`);
    const timer = setTimeout(() => settle(() => reject(timedOut)), timeout);
    const onAbort = () => settle(() => reject(signal!.reason));
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = (action: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      this.#waiters.delete(waiter);
      action();
    };
    const waiter: Waiter = {
      predicate,
      resolve: (event) => settle(() => resolve(event)),
      reject: (error) => settle(() => reject(error)),
    };
    this.#waiters.add(waiter);
    return promise;
  }

  /** Closes the socket and waits for the close handshake (or the peer going away). */
  async close(): Promise<void> {
    if (this.#socket.readyState === WebSocket.CONNECTING) await this.opened.catch(() => {});
    if (this.#socket.readyState !== WebSocket.CLOSED) this.#socket.close();
    await this.#closedEvent.promise;
  }

  #dispatch(data: string): void {
    const message = JSON.parse(data);
    if (typeof message.id === "number") {
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      if (message.error) {
        pending.reject(
          new Error(`${pending.method} failed: ${message.error.message} (${message.error.code})`),
        );
      } else {
        pending.resolve(message.result);
      }
      return;
    }
    const event: CdpEvent = {
      method: message.method,
      params: message.params,
      ...(message.sessionId ? { sessionId: message.sessionId } : {}),
    };
    // Predicates run synchronously, in the order the events arrived, so a
    // stateful predicate sees every event once.
    for (const waiter of [...this.#waiters]) {
      let matched: boolean;
      try {
        matched = waiter.predicate(event);
      } catch (error) {
        waiter.reject(error);
        continue;
      }
      if (matched) waiter.resolve(event);
    }
  }
}

// ---------------------------------------------------------------------------
// Pages

async function openPage(cdp: CdpClient): Promise<Page> {
  const { targetId } = await cdp.send<{ targetId: string }>("Target.createTarget", {
    url: "about:blank",
  });
  const { sessionId } = await cdp.send<{ sessionId: string }>("Target.attachToTarget", {
    targetId,
    flatten: true,
  });
  const send = <T>(method: string, params?: object) => cdp.send<T>(method, params, sessionId);
  const waitForEvent = (predicate: (event: CdpEvent) => boolean, options?: WaitOptions) =>
    cdp.waitForEvent((event) => event.sessionId === sessionId && predicate(event), options);
  await send("Page.enable");
  await send("Emulation.setDeviceMetricsOverride", {
    width: 800,
    height: 600,
    deviceScaleFactor: 1,
    mobile: false,
  });

  /**
   * Resolves once the main frame has navigated to a new document and that
   * document's load event fired. Registered before the navigation starts, so
   * no event can slip past.
   */
  const nextLoad = (options: WaitOptions) => {
    let navigated = false;
    return waitForEvent((event) => {
      if (event.method === "Page.frameNavigated" && event.params.frame.parentId === undefined) {
        navigated = true;
        return false;
      }
      return navigated && event.method === "Page.loadEventFired";
    }, options);
  };

  // deno-lint-ignore no-explicit-any
  const evaluate = async <T = any>(expression: string): Promise<T> => {
    const { result, exceptionDetails } = await send<{
      result: { value?: T };
      // deno-lint-ignore no-explicit-any
      exceptionDetails?: any;
    }>("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (exceptionDetails) {
      throw new Error(
        `Evaluating ${JSON.stringify(expression)} failed: ${
          exceptionDetails.exception?.description ?? exceptionDetails.text
        }`,
      );
    }
    return result.value as T;
  };

  return {
    targetId,
    sessionId,
    send,
    waitForEvent,
    async navigate(url, options = {}) {
      const cancel = new AbortController();
      const signal = options.signal
        ? AbortSignal.any([options.signal, cancel.signal])
        : cancel.signal;
      const loaded = nextLoad({ ...options, signal });
      loaded.catch(() => {});
      const { errorText } = await send<{ errorText?: string }>("Page.navigate", {
        url: String(url),
      }).catch((error) => {
        cancel.abort(error);
        throw error;
      });
      if (errorText) {
        const error = new Error(`Chromium could not load ${url}: ${errorText}`);
        cancel.abort(error);
        throw error;
      }
      await loaded;
    },
    evaluate,
    async click(selector, options = {}) {
      const box = await evaluate<{ x: number; y: number } | null>(`(() => {
        const element = document.querySelector(${JSON.stringify(selector)});
        if (!element) return null;
        element.scrollIntoView({ block: "center", inline: "center" });
        const rect = element.getBoundingClientRect();
        return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
      })()`);
      if (!box) {
        throw new Error(
          `Cannot click ${selector}: no such element on ${await evaluate("location.href")}`,
        );
      }
      const cancel = new AbortController();
      const signal = options.signal
        ? AbortSignal.any([options.signal, cancel.signal])
        : cancel.signal;
      const loaded = nextLoad({ ...options, signal });
      loaded.catch(() => {});
      try {
        const mouse = { x: box.x, y: box.y, button: "left", clickCount: 1 };
        await send("Input.dispatchMouseEvent", { type: "mouseMoved", x: box.x, y: box.y });
        await send("Input.dispatchMouseEvent", { type: "mousePressed", ...mouse });
        await send("Input.dispatchMouseEvent", { type: "mouseReleased", ...mouse });
      } catch (error) {
        cancel.abort(error);
        throw error;
      }
      await loaded;
    },
    url: () => evaluate<string>("location.href"),
    text: () => evaluate<string>("document.body.innerText"),
    async screenshot() {
      const { data } = await send<{ data: string }>("Page.captureScreenshot", { format: "png" });
      return Uint8Array.fromBase64(data);
    },
  };
}
