// The small page the browser shows after the redirect. Private to the
// listener: every value that came from the request is escaped here.

/** Escapes text for an HTML element or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** What the page says. */
export interface CallbackPage {
  ok: boolean;
  title: string;
  message: string;
  detail?: string | undefined;
}

/** Headers for every page the listener serves: no script, no caching, no referrer (the URL holds the code). */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** Renders a page; `title`, `message` and `detail` are escaped. */
export function renderCallbackPage(page: CallbackPage): string {
  const accent = page.ok ? "#1db954" : "#e22134";
  const mark = page.ok ? "&#10003;" : "&#10007;";
  const detail = page.detail ? `<p class="detail">${escapeHtml(page.detail)}</p>` : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(page.title)}</title>
<style>
body{margin:0;min-height:100vh;display:grid;place-items:center;background:#121212;color:#fff;font:16px/1.5 system-ui,sans-serif}
main{max-width:32rem;padding:2rem;text-align:center}
.mark{display:inline-grid;place-items:center;width:3.5rem;height:3.5rem;border-radius:50%;background:${accent};color:#121212;font-size:2rem;font-weight:700}
h1{font-size:1.5rem;margin:1rem 0 .5rem}
.detail{color:#b3b3b3;font-size:.9rem;overflow-wrap:anywhere}
</style>
</head>
<body>
<main>
<div class="mark" aria-hidden="true">${mark}</div>
<h1>${escapeHtml(page.title)}</h1>
<p>${escapeHtml(page.message)}</p>
${detail}
</main>
</body>
</html>
`;
}
