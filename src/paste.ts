// The paste fallback: the user copies the address the browser was redirected
// to and pastes it here. Private; the flows use it when there is no listener
// or no browser.

import { parseCallbackUrl } from "./callback.ts";
import { SpotifyLoginRequiredError, SpotifyStateError } from "./errors.ts";

/** Where the paste fallback reads and writes; standard input and error by default. */
export interface PasteIo {
  input: ReadableStream<Uint8Array>;
  output: { writeSync(bytes: Uint8Array): number };
  isTerminal: boolean;
}

function stdio(): PasteIo {
  return { input: Deno.stdin.readable, output: Deno.stderr, isTerminal: Deno.stdin.isTerminal() };
}

/** Writes a line for the user to standard error. */
export function say(text: string, io: Pick<PasteIo, "output"> = { output: Deno.stderr }): void {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += io.output.writeSync(bytes.subarray(done));
}

/**
 * Reads pasted URLs, one a line, until one yields a code. A URL from another
 * login or a line that is not a URL is reported and another is read; an
 * OAuth error in the pasted URL ends the login.
 *
 * @returns The code, or `undefined` when the input ended first.
 */
export async function readPastedCode(
  expectedState: string,
  signal: AbortSignal,
  io: PasteIo = stdio(),
): Promise<string | undefined> {
  const prompt = () => {
    if (io.isTerminal) {
      say("Paste the address your browser was redirected to, then press Enter:\n> ", io);
    }
  };
  const reader = io.input.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    prompt();
    let buffered = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done || signal.aborted) {
        signal.throwIfAborted();
        const last = buffered.trim();
        return last ? parseCallbackUrl(last, expectedState) : undefined;
      }
      buffered += value;
      let newline: number;
      while ((newline = buffered.indexOf("\n")) !== -1) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        try {
          return parseCallbackUrl(line, expectedState);
        } catch (error) {
          if (!(error instanceof TypeError || error instanceof SpotifyStateError)) throw error;
          say(`${error.message}\n`, io);
          prompt();
        }
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // Cancelling, not just releasing, stops the pending read of standard
    // input, which would otherwise keep the process alive after the login.
    await reader.cancel().catch(() => {});
  }
}

/** The error for a paste fallback whose input ended without a URL. */
export function inputEnded(): SpotifyLoginRequiredError {
  return new SpotifyLoginRequiredError(
    "Cannot finish the login: standard input ended before the redirected address was pasted (is there no terminal?). Run the program in a terminal, or use a loopback redirect URI such as http://127.0.0.1:8888/callback so the browser comes back to this program by itself.",
  );
}
