// Starts a throwaway redis-server on a free loopback port for a test file.
//
// When redis-server is not installed, tests are ignored with a printed reason,
// except under CI (the CI environment variable is set), where they fail and
// say how to install it.

const INSTALL_HINT = "install it with `apt-get install -y redis-server` (Debian/Ubuntu) " +
  "or `brew install redis` (macOS)";

/** Whether redis-server can be run, found once per test file. */
async function findRedisServer(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("redis-server", {
      args: ["--version"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

const installed = await findRedisServer();
const onCi = Boolean(Deno.env.get("CI"));

/**
 * Set as `ignore` on every Redis test: true when redis-server is missing and
 * this is not CI (on CI the tests run, and `startRedis()` fails them).
 */
export const ignoreRedisTests: boolean = !installed && !onCi;

if (ignoreRedisTests) {
  console.warn(
    `%cRedis tests ignored: redis-server is not on PATH; ${INSTALL_HINT} to run them.`,
    "color: yellow",
  );
}

/** A running redis-server; disposing of it stops it and waits for it to exit. */
export interface RedisServer extends AsyncDisposable {
  /** `redis://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** Everything the server has logged so far. */
  readonly log: string;
}

/** Starts redis-server on a free loopback port and resolves once it accepts connections. */
export async function startRedis(): Promise<RedisServer> {
  if (!installed) {
    throw new Error(
      `redis-server is not installed, and CI is set so Redis tests must run: ${INSTALL_HINT}.`,
    );
  }
  // The free port is found by binding port 0 and closing; another process may
  // take it before redis-server binds it, so try a few times.
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await startOnce(freePort());
    } catch (error) {
      lastError = error;
      if (!(error instanceof PortInUse)) throw error;
    }
  }
  throw lastError;
}

class PortInUse extends Error {}

function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

async function startOnce(port: number): Promise<RedisServer> {
  const child = new Deno.Command("redis-server", {
    args: [
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--save",
      "",
      "--appendonly",
      "no",
      "--logfile",
      "",
      "--daemonize",
      "no",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  // redis-server logs to stdout; stderr is collected for odd failures.
  let log = "";
  let changed = Promise.withResolvers<void>();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      log += chunk;
      changed.resolve();
      changed = Promise.withResolvers<void>();
    }
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    changed.resolve();
    return status;
  });

  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await status;
    await drained;
  };

  // Waits for the log line that says the server is up, or for the server to
  // exit; no sleeping. A server that neither gets ready nor exits within 10 s
  // is stopped, so a broken install cannot hang the test run.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    changed.resolve();
  }, 10_000);
  try {
    while (!log.includes("Ready to accept connections")) {
      if (exited) {
        await drained;
        if (/Address already in use/i.test(log)) throw new PortInUse(log);
        throw new Error(`redis-server exited before it was ready:\n${log}`);
      }
      if (timedOut) {
        await stop();
        throw new Error(`redis-server was not ready after 10 s:\n${log}`);
      }
      await changed.promise;
    }
  } finally {
    clearTimeout(timer);
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get log() {
      return log;
    },
    [Symbol.asyncDispose]: stop,
  };
}
