import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { parseRedirectUri } from "../mod.ts";

Deno.test("parseRedirectUri() gives the loopback address to listen on", () => {
  deepStrictEqual(parseRedirectUri("http://127.0.0.1:8888/callback").loopback, {
    hostname: "127.0.0.1",
    port: 8888,
  });
  deepStrictEqual(parseRedirectUri("http://[::1]:9000/cb").loopback, {
    hostname: "::1",
    port: 9000,
  });
  deepStrictEqual(parseRedirectUri("http://127.0.0.1/callback").loopback, {
    hostname: "127.0.0.1",
    port: undefined,
  });
});

Deno.test("parseRedirectUri() keeps a written default port (:80)", () => {
  deepStrictEqual(parseRedirectUri("http://127.0.0.1:80/callback").loopback, {
    hostname: "127.0.0.1",
    port: 80,
  });
});

Deno.test("parseRedirectUri() has no listener for https and custom schemes", () => {
  strictEqual(parseRedirectUri("https://example.com/callback").loopback, undefined);
  strictEqual(parseRedirectUri("https://127.0.0.1:8888/callback").loopback, undefined);
  strictEqual(parseRedirectUri("myapp://callback").loopback, undefined);
});

Deno.test("parseRedirectUri() refuses localhost and gives the 127.0.0.1 URI to register", () => {
  throws(() => parseRedirectUri("http://localhost:8888/callback"), {
    name: "TypeError",
    message:
      'Cannot use redirect URI "http://localhost:8888/callback": Spotify refuses "localhost" in redirect URIs. Register http://127.0.0.1:8888/callback in the Spotify dashboard and use it instead',
  });
  throws(() => parseRedirectUri("http://LOCALHOST/cb?x=1"), {
    message: /Register http:\/\/127\.0\.0\.1\/cb\?x=1 in the Spotify dashboard/,
  });
});

Deno.test("parseRedirectUri() refuses plain http on a non-loopback host", () => {
  throws(() => parseRedirectUri("http://example.com/callback"), {
    name: "TypeError",
    message:
      'Cannot use redirect URI "http://example.com/callback": Spotify accepts http:// only on the loopback addresses 127.0.0.1 and [::1]; use https://example.com/callback or http://127.0.0.1/callback',
  });
  throws(() => parseRedirectUri("http://127.0.0.2:8888/callback"), { name: "TypeError" });
});

Deno.test("parseRedirectUri() refuses fragments, user info and non-URLs", () => {
  throws(() => parseRedirectUri("http://127.0.0.1:8888/callback#x"), {
    message: /must not contain a fragment/,
  });
  throws(() => parseRedirectUri("http://u:p@127.0.0.1:8888/callback"), {
    message: /must not contain a user name or password/,
  });
  throws(() => parseRedirectUri("/callback"), {
    name: "TypeError",
    message:
      /it is not an absolute URL; register and use one such as http:\/\/127\.0\.0\.1:8888\/callback/,
  });
});

Deno.test("parseRedirectUri() wants the loopback host written as Spotify matches it", () => {
  for (
    const uri of [
      "http://127.1/callback",
      "http://[0:0:0:0:0:0:0:1]/callback",
      "http://127.0.0.1:/callback",
    ]
  ) {
    throws(() => parseRedirectUri(uri), {
      name: "TypeError",
      message:
        `Cannot use redirect URI "${uri}": write the loopback address as 127.0.0.1 or [::1] followed by an optional port number, as in http://127.0.0.1/callback`,
    });
  }
  throws(() => parseRedirectUri("http://127.0.0.1:0/cb"), {
    message: 'Cannot use redirect URI "http://127.0.0.1:0/cb": port 0 is not from 1 to 65535',
  });
});
