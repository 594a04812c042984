/**
 * Headless Chromium for the dashboard tests: Debian's `chromium` driven by playwright-core (nothing
 * is downloaded). The flags keep it off the network: without the background-networking ones it
 * tries Google's services at start, and this machine refuses those connections.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { chromium, type BrowserContext } from "playwright-core";

/** Where Debian's package installs the browser (`apt-get install chromium`; `.ci/run` does). */
export const CHROMIUM = process.env.BC_GITOPS_CHROMIUM ?? "/usr/bin/chromium";

/**
 * How Chromium runs here: headless, as root, and without its background connections (this
 * machine's closed network refuses them, many at a time).
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Why the browser tests cannot run here, or `false` when they can (pass as the test's `skip`). */
export const noBrowser: string | false = existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set BC_GITOPS_CHROMIUM`;
if (noBrowser) process.stderr.write(`skipping the dashboard browser tests: ${noBrowser}\n`);

/** A fresh browser (its own empty profile), closed when the test ends. */
export async function browser(t: Pick<TestContext, "after">): Promise<BrowserContext> {
  const profile = await mkdtemp(join(tmpdir(), "bc-gitops-chromium-"));
  let context: BrowserContext | undefined;
  // The browser first, then its profile.
  t.after(async () => {
    await context?.close();
    await rm(profile, { recursive: true, force: true });
  });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 860 },
  });
  return context;
}
