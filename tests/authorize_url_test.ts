import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { createAuthorizeUrl } from "../mod.ts";

Deno.test("createAuthorizeUrl() builds Spotify's PKCE authorize URL", () => {
  const url = createAuthorizeUrl({
    clientId: "id1",
    redirectUri: "http://127.0.0.1:8888/callback",
    state: "s1",
    scope: "user-read-private, playlist-read-private",
    codeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    showDialog: true,
  });
  strictEqual(url.origin + url.pathname, "https://accounts.spotify.com/authorize");
  deepStrictEqual(Object.fromEntries(url.searchParams), {
    client_id: "id1",
    response_type: "code",
    redirect_uri: "http://127.0.0.1:8888/callback",
    state: "s1",
    scope: "playlist-read-private user-read-private",
    show_dialog: "true",
    code_challenge_method: "S256",
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
  });
});

Deno.test("createAuthorizeUrl() leaves out what was not asked for", () => {
  const url = createAuthorizeUrl({
    clientId: "id1",
    redirectUri: "https://example.com/cb",
    state: "s1",
    authorizeEndpoint: "http://127.0.0.1:1234/authorize",
  });
  strictEqual(url.origin, "http://127.0.0.1:1234");
  deepStrictEqual([...url.searchParams.keys()], [
    "client_id",
    "response_type",
    "redirect_uri",
    "state",
  ]);
});

Deno.test("createAuthorizeUrl() refuses an empty client id or state", () => {
  throws(() => createAuthorizeUrl({ clientId: "", redirectUri: "https://e.com/", state: "s" }), {
    message: "Cannot create an authorize URL: clientId is empty",
  });
  throws(() => createAuthorizeUrl({ clientId: "c", redirectUri: "https://e.com/", state: "" }), {
    message: "Cannot create an authorize URL: state is empty",
  });
});
