// A scripted user agent for the flow tests: it does what a person in a
// browser does on the emulator's consent page, over real HTTP.

/** What the browser ended up showing. */
export interface Visit {
  status: number;
  url: string;
  body: string;
}

/**
 * Opens the authorize URL, answers the consent page (or takes the automatic
 * approval), and follows the redirect back to the app.
 */
export async function consent(
  authorizeUrl: URL,
  decision: "approve" | "deny" = "approve",
): Promise<Visit> {
  const location = await decide(authorizeUrl, decision);
  return visit(location);
}

/** Like {@linkcode consent}, but stops at the redirect and returns where it points. */
export async function decide(
  authorizeUrl: URL,
  decision: "approve" | "deny" = "approve",
): Promise<string> {
  const first = await fetch(authorizeUrl, { redirect: "manual" });
  const text = await first.text();
  if (first.status === 302) return first.headers.get("location")!;
  if (first.status !== 200) throw new Error(`authorize answered ${first.status}: ${text}`);
  const requestId = /name="request_id" value="([^"]+)"/.exec(text)?.[1];
  if (!requestId) throw new Error("no consent form on the authorize page");
  const second = await fetch(new URL("/authorize/decision", authorizeUrl), {
    method: "POST",
    body: new URLSearchParams({ request_id: requestId, decision }),
    redirect: "manual",
  });
  await second.body?.cancel();
  if (second.status !== 303) throw new Error(`decision answered ${second.status}`);
  return second.headers.get("location")!;
}

/** A plain GET, the way the browser loads the redirect target. */
export async function visit(url: string): Promise<Visit> {
  const response = await fetch(url);
  return { status: response.status, url, body: await response.text() };
}
