// Optional environment variables, read without ever triggering Deno's
// permission prompt: a variable the script may not read counts as unset.

/** The variable's value, or `undefined` when it is unset, empty or not readable. */
export function optionalEnv(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}
