/**
 * The dashboard (`GET /` and `GET /ui` on the control API): one self-contained HTML page, its
 * stylesheet and script inlined (`_dashboard-style.ts`, `_dashboard-script.ts`), so the single
 * binary carries it and the page makes no request but to the agent. A strict
 * Content-Security-Policy allows exactly those two inline blocks (by hash), images from `data:`
 * URIs (identicons), and connections to the agent only; the page cannot be framed.
 */
import { createHash } from "node:crypto";
import { DASHBOARD_SCRIPT } from "./_dashboard-script.ts";
import { DASHBOARD_STYLE } from "./_dashboard-style.ts";
import { VERSION } from "./version.ts";

const hash = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/** The page's Content-Security-Policy. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${hash(DASHBOARD_SCRIPT)}`,
  `style-src ${hash(DASHBOARD_STYLE)}`,
  "img-src data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** What the page shows before its script has read anything. */
export interface DashboardInfo {
  host: string;
  branch: string;
}

/** Text as HTML (element content and quoted attribute values). */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The dashboard page as HTML. */
export function dashboardHtml(info: DashboardInfo): string {
  const host = escapeHtml(info.host);
  const branch = escapeHtml(info.branch);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>bc-gitops · ${host}</title>
<style>${DASHBOARD_STYLE}</style>
</head>
<body>
<a class="skip" href="#apps">Skip to the apps</a>
<header class="bar">
  <h1>bc-gitops</h1>
  <dl class="agent" aria-label="Agent">
    <div><dt>host</dt><dd id="agent-host">${host}</dd></div>
    <div><dt>status</dt><dd id="agent-status">loading…</dd></div>
    <div><dt>branch</dt><dd id="agent-branch">${branch}</dd></div>
    <div><dt>commit</dt><dd id="agent-commit">…</dd></div>
    <div><dt>last reconcile</dt><dd id="agent-reconcile">…</dd></div>
    <div><dt>apps</dt><dd id="agent-apps">…</dd></div>
  </dl>
  <button type="button" id="reconcile" class="primary">Reconcile now</button>
  <span id="live" class="live" role="status">connecting…</span>
</header>
<main>
  <p id="notice" class="notice" role="status" aria-live="polite"></p>
  <section id="errors" class="errors" hidden aria-labelledby="errors-title">
    <h2 id="errors-title">Problems</h2>
    <ul id="error-list"></ul>
  </section>
  <p id="no-apps" class="empty" hidden>No apps yet: the repository names none, or the first reconcile has not finished.</p>
  <ul id="apps" class="apps" aria-label="Apps"></ul>
</main>
<dialog id="token-dialog" aria-labelledby="token-message">
  <form method="dialog">
    <p id="token-message">This agent needs its API token:</p>
    <label for="token-input">API token (kept in this tab only)</label>
    <input id="token-input" name="token" type="password" autocomplete="off" required>
    <div class="actions">
      <button type="button" id="token-cancel">Cancel</button>
      <button type="submit" value="ok" class="primary">Use token</button>
    </div>
  </form>
</dialog>
<footer class="empty foot">bc-gitops ${escapeHtml(VERSION)}</footer>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;
}

/** The answer to `GET /` and `GET /ui`: the page, with its security headers. */
export function dashboardResponse(info: DashboardInfo): Response {
  return new Response(dashboardHtml(info), {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy": DASHBOARD_CSP,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
    },
  });
}
