import { match, notStrictEqual, rejects, strictEqual, throws } from "node:assert/strict";
import { createCodeChallenge, createCodeVerifier, createState } from "../mod.ts";

Deno.test("createCodeChallenge() matches the RFC 7636 Appendix B vector", async () => {
  strictEqual(
    await createCodeChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
  );
});

Deno.test("createCodeChallenge() refuses a verifier RFC 7636 does not allow", async () => {
  for (const verifier of ["short", "a".repeat(129), `${"a".repeat(42)}+`, `${"a".repeat(42)} `]) {
    await rejects(createCodeChallenge(verifier), {
      name: "TypeError",
      message: /the verifier must be 43 to 128 characters .* use createCodeVerifier\(\)/,
    });
  }
});

Deno.test("createCodeVerifier() makes fresh verifiers of the asked length", () => {
  strictEqual(createCodeVerifier().length, 64);
  for (const length of [43, 100, 128]) {
    const verifier = createCodeVerifier({ length });
    strictEqual(verifier.length, length);
    match(verifier, /^[A-Za-z0-9\-_]+$/);
  }
  notStrictEqual(createCodeVerifier(), createCodeVerifier());
});

Deno.test("createCodeVerifier() refuses lengths outside 43 to 128", () => {
  for (const length of [42, 129, 50.5]) {
    throws(() => createCodeVerifier({ length }), {
      name: "RangeError",
      message:
        `Cannot create a code verifier of length ${length}: it must be an integer from 43 to 128`,
    });
  }
});

Deno.test("createState() holds 256 random bits and never repeats", () => {
  const states = new Set(Array.from({ length: 1000 }, createState));
  strictEqual(states.size, 1000);
  for (const state of states) match(state, /^[A-Za-z0-9\-_]{43}$/);
});
