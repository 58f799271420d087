// Helpers to drive a child process line by line.

/** Reads a child's output as text, and lets a test wait for a line. */
export function lines(stream: ReadableStream<Uint8Array>) {
  let text = "";
  let changed = Promise.withResolvers<void>();
  const finished = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      changed.resolve();
      changed = Promise.withResolvers<void>();
    }
    changed.resolve();
  })();
  return {
    get text() {
      return text;
    },
    finished,
    /** Waits until the output matches, or ends; returns the match. */
    async waitFor(pattern: RegExp): Promise<RegExpExecArray> {
      while (true) {
        const match = pattern.exec(text);
        if (match) return match;
        const done = await Promise.race([
          changed.promise.then(() => false),
          finished.then(() => true),
        ]);
        if (done && !pattern.exec(text)) {
          throw new Error(`output ended without ${pattern}:\n${text}`);
        }
      }
    },
  };
}
