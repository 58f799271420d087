// Time limits and waits shared by the modules: abortable waits, checked
// timeouts, and durations in words for error messages.

/** Settles like `promise`, or rejects with the signal's reason once it aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

// setTimeout fires at once for anything longer (about 24.8 days).
const MAX_TIMEOUT = 2 ** 31 - 1;

/** Throws a RangeError unless `ms` is a usable timer duration. */
export function checkTimeout(name: string, ms: number): void {
  if (typeof ms !== "number" || !(ms > 0 && ms <= MAX_TIMEOUT)) {
    throw new RangeError(
      `Cannot use ${name} ${ms}: it must be a number of milliseconds from 1 to ${MAX_TIMEOUT} (about 24 days)`,
    );
  }
}

/** A duration in words: "300 ms", "2 seconds", "5 minutes". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 120) return `${Number(seconds.toFixed(1))} seconds`;
  return `${Number((seconds / 60).toFixed(1))} minutes`;
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return abortable(new Promise<void>((resolve) => timer = setTimeout(resolve, ms)), signal)
    .finally(() => clearTimeout(timer));
}
