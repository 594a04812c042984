// The dashboard in a real browser (headless Debian Chromium through playwright-core) against a
// real agent running real apps from a real gitops repository.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { Page } from "playwright-core";
import { createAgent } from "../src/agent.ts";
import { DASHBOARD_SCRIPT } from "../src/_dashboard-script.ts";
import { DASHBOARD_CSP, dashboardHtml } from "../src/dashboard.ts";
import { browser, noBrowser } from "./helpers/browser.ts";
import { code } from "./helpers/e2e.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { tempDir } from "./helpers/tmp.ts";

const TOKEN = "dashboard-token-0123";

const spec = (name: string, version: string, lines: string[]) =>
  [`name: ${name}`, `version: "${version}"`, `source: { type: path, path: code/${name} }`, ...lines].join("\n") + "\n";

/**
 * A real agent with three apps: db (a fetch app), web (a lifecycle app that needs db) and chatty
 * (a fetch app that logs each request through ctx.log, naming its secret token).
 */
async function dashboardAgent(t: TestContext) {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": spec("db", "1.0.0", ["env: { port: 0 }", "health: { type: http, path: /health }"]),
    "apps/web/app.yaml": spec("web", "1.0.0", ["env: { port: 0 }", "depends_on: [db]"]),
    "apps/chatty/app.yaml": spec("chatty", "0.3.0", ["env: { port: 0, api_token: chatty-secret-value }"]),
    ...(await code("rt-fetch", "db")),
    ...(await code("rt-server", "web")),
    ...(await code("chatty", "chatty")),
  });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    listen: "127.0.0.1:0",
    token: TOKEN,
    reconcileInterval: "1h",
  });
  t.after(() => agent.stop());
  await agent.start();
  return { repo, agent, url: `http://${agent.address}` };
}

/** The text of one app's card, or "" when it has none yet. */
function cardText(page: Page, app: string): Promise<string> {
  return page.locator(`[data-app="${app}"]`).innerText({ timeout: 10_000 });
}

/** Waits until the card of `app` shows `text` (the page updates itself; the test never reloads it). */
async function cardShows(page: Page, app: string, text: RegExp): Promise<void> {
  await page.waitForFunction(
    ([name, source]) => {
      const card = document.querySelector(`[data-app="${name}"]`) as HTMLElement | null;
      return card !== null && new RegExp(source!).test(card.innerText);
    },
    [app, text.source],
    { timeout: 20_000 },
  );
}

test("the page's script parses, and the policy allows exactly the inline script and style", () => {
  assert.doesNotThrow(() => new Function(DASHBOARD_SCRIPT));
  const html = dashboardHtml({ host: "<b>host</b>", branch: "main" });
  assert.match(html, /&#60;b&#62;host&#60;\/b&#62;/, "the host name is escaped");
  assert.doesNotMatch(html, /<b>host<\/b>/);
  assert.doesNotMatch(html, /https?:\/\//, "the page names no other site");
  assert.match(DASHBOARD_CSP, /default-src 'none'/);
  assert.match(DASHBOARD_CSP, /script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
  assert.match(DASHBOARD_CSP, /frame-ancestors 'none'/);
});

test(
  "the dashboard shows the agent and its apps, updates live when a commit lands, and its reconcile button needs the token",
  { skip: noBrowser },
  async (t) => {
    const { repo, agent, url } = await dashboardAgent(t);
    const context = await browser(t);
    const page = await context.newPage();
    const external: string[] = [];
    page.on("request", (request) => {
      if (!request.url().startsWith(url) && !request.url().startsWith("data:")) external.push(request.url());
    });
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(error.message));
    page.on("console", (message) => {
      // The 401s are the agent asking for its token, as the test wants.
      if (message.type() === "error" && !/status of 401/.test(message.text())) problems.push(message.text());
    });

    await page.goto(`${url}/`);
    await cardShows(page, "db", /status\s+running/);
    await cardShows(page, "web", /health\s+healthy/);
    assert.match(await page.locator("#agent-status").innerText(), /synced/);
    assert.match(await page.locator("#agent-commit").innerText(), /^[0-9a-f]{12} \(committed \d+ s ago\)$/);
    assert.match(await cardText(page, "web"), /isolation\s+embedded/);
    assert.equal(await page.locator('[data-app="db"] img.icon').count(), 1, "db shows its identicon");

    // A commit lands and the agent applies it: the open page follows without being reloaded.
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await repo.commit({ "apps/db/app.yaml": spec("db", "1.1.0", ["env: { port: 0 }"]) });
    await agent.reconcile();
    await cardShows(page, "db", /1\.1\.0/);
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, "not reloaded");

    // Reconcile now: the agent wants its token; a wrong one is refused, the right one works.
    await page.locator("#reconcile").click();
    await page.locator("#token-dialog[open]").waitFor();
    await page.locator("#token-input").fill("not-the-token");
    await page.locator('#token-dialog button[type="submit"]').click();
    await page.waitForFunction(() => /refused that token/.test(document.querySelector("#token-message")!.textContent!));
    await page.locator("#token-input").fill(TOKEN);
    await page.locator('#token-dialog button[type="submit"]').click();
    await page.waitForFunction(() => /^Reconciled: synced/.test(document.querySelector("#notice")!.textContent!));
    // Asked once: the next action uses the token the tab keeps.
    await page.locator('[data-app="web"] button.reload').click();
    await page.waitForFunction(() =>
      /web: nothing changed|Reloaded web/.test(document.querySelector("#notice")!.textContent!),
    );
    assert.equal(await page.locator("#token-dialog[open]").count(), 0);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("bc-gitops-token")), TOKEN);
    assert.equal(await page.evaluate(() => localStorage.length), 0, "the token is kept for the tab only");

    // Per app: its recent events, and the tail of its log (the token is known by now), secrets hidden.
    await page.locator('[data-app="db"] summary').click();
    await page.waitForFunction(() =>
      /upgrade:stop/.test(document.querySelector('[data-app="db"] .events')!.textContent!),
    );
    const port = (await agent.getAppStatus("chatty"))?.port;
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/first`)).text(), "chatty: /first");
    await page.locator('[data-app="chatty"] summary').click();
    await page.waitForFunction(() =>
      /request \/first/.test(document.querySelector('[data-app="chatty"] .log')!.textContent!),
    );
    await fetch(`http://127.0.0.1:${port}/second`);
    await page.waitForFunction(() =>
      /request \/second/.test(document.querySelector('[data-app="chatty"] .log')!.textContent!),
    );
    const log = await page.locator('[data-app="chatty"] .log').innerText();
    assert.match(log, /request \/first with token \*\*\*/);
    assert.doesNotMatch(log, /chatty-secret-value/);

    const screenshots = process.env.BC_GITOPS_SCREENSHOTS;
    if (screenshots) await mkdir(screenshots, { recursive: true });
    await page.screenshot({ path: join(screenshots ?? (await tempDir(t)), "dashboard.png"), fullPage: true });
    assert.deepEqual(external, [], "the page asks nothing of any other site");
    assert.deepEqual(problems, [], "no script error, no refused inline code");
  },
);

test("the dashboard works on a phone-width screen and from the keyboard", { skip: noBrowser }, async (t) => {
  const { url } = await dashboardAgent(t);
  const context = await browser(t);
  const page = await context.newPage();
  await page.setViewportSize({ width: 375, height: 740 });
  await page.goto(`${url}/ui`);
  await cardShows(page, "web", /status\s+running/);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling at 375 px (${overflow} px too wide)`);
  // Tab: the skip link, then "Reconcile now"; Enter presses it and the token dialog takes the focus.
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "reconcile");
  await page.keyboard.press("Enter");
  await page.locator("#token-dialog[open]").waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "token-input");
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => /cancelled/.test(document.querySelector("#notice")!.textContent!));
});
