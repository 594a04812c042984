/** Shared setup of the end-to-end tests: the real agent over a gitops repository of fixture apps. */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { createAgent, type Agent } from "../../src/agent.ts";

/** The fixture apps (test/fixtures/apps/<fixture>). */
export const FIXTURES = fileURLToPath(new URL("../fixtures/apps/", import.meta.url));

/** The files of a fixture app, as repo paths under `code/<as>/`. */
export async function code(fixture: string, as: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await readdir(join(FIXTURES, fixture)))
    out[`code/${as}/${name}`] = await readFile(join(FIXTURES, fixture, name), "utf8");
  return out;
}

/** An agent on the default runtime, no control API, reconciling only when asked; stopped when the test ends. */
export function agentFor(t: TestContext, repoUrl: string, localPath: string): Agent {
  const agent = createAgent({ repoUrl, localPath, runtime: "default", listen: "off", reconcileInterval: "1h" });
  t.after(() => agent.stop());
  return agent;
}

/**
 * Polls `probe` every 50 ms until it returns a value; a probe that throws counts as "not yet".
 * Past `ms`, throws naming `what` and the last error.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
