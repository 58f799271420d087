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

/** Why an input gives no more lines. */
export type InputEnd = "ended" | "closed";

// Per input stream: text read past the last line, and whether it is over.
// Kept across logins so that a second login in one process reads on where
// the first stopped.
interface InputState {
  decoder: TextDecoder;
  buffered: string;
  end: InputEnd | undefined;
}
const inputs = new WeakMap<ReadableStream<Uint8Array>, InputState>();

/**
 * Reads pasted URLs, one a line, until one yields a code. A URL from another
 * login or a line that is not a URL is reported and another is read; an
 * OAuth error in the pasted URL ends the login.
 *
 * Reads only while it waits for a line, so standard input stays usable
 * afterwards, except when the login ends some other way (the browser came
 * back to the listener) during a read: a pending read of standard input
 * cannot be stopped but by closing it, or the process could not exit.
 *
 * @returns The code, or why no more can be read.
 */
export async function readPastedCode(
  expectedState: string,
  signal: AbortSignal,
  io: PasteIo = stdio(),
): Promise<string | InputEnd> {
  let input = inputs.get(io.input);
  if (!input) {
    inputs.set(io.input, input = { decoder: new TextDecoder(), buffered: "", end: undefined });
  }
  const prompt = () => {
    if (io.isTerminal) {
      say("Paste the address your browser was redirected to, then press Enter:\n> ", io);
    }
  };
  const take = (line: string): string | undefined => {
    try {
      return parseCallbackUrl(line, expectedState);
    } catch (error) {
      if (!(error instanceof TypeError || error instanceof SpotifyStateError)) throw error;
      say(`${error.message}\n`, io);
      prompt();
      return undefined;
    }
  };

  if (input.end) return input.end;
  const reader = io.input.getReader();
  let reading = false;
  const onAbort = () => {
    if (!reading) return;
    input.end = "closed";
    reader.cancel(signal.reason).catch(() => {});
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    prompt();
    while (true) {
      let newline: number;
      while ((newline = input.buffered.indexOf("\n")) !== -1) {
        const line = input.buffered.slice(0, newline).trim();
        input.buffered = input.buffered.slice(newline + 1);
        const code = line ? take(line) : undefined;
        if (code !== undefined) return code;
      }
      signal.throwIfAborted();
      reading = true;
      const { value, done } = await reader.read();
      reading = false;
      signal.throwIfAborted();
      if (done) {
        input.end ??= "ended";
        const last = input.buffered.trim();
        input.buffered = "";
        return (last && take(last)) || input.end;
      }
      input.buffered += input.decoder.decode(value, { stream: true });
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/** The error for a paste fallback whose input gives no more lines. */
export function inputEnded(end: InputEnd): SpotifyLoginRequiredError {
  return new SpotifyLoginRequiredError(
    end === "closed"
      ? "Cannot finish the login: standard input was closed when an earlier login in this process finished in the browser, so nothing more can be pasted. Use a loopback redirect URI such as http://127.0.0.1:8888/callback, or log in once per process."
      : "Cannot finish the login: standard input ended before the redirected address was pasted (is there no terminal?). Run the program in a terminal, or use a loopback redirect URI such as http://127.0.0.1:8888/callback so the browser comes back to this program by itself.",
  );
}
