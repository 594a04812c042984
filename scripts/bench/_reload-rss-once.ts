/**
 * One RSS measurement of the hot reload benchmark, in a process of its own:
 *   bun scripts/bench/_reload-rss-once.ts <embedded|worker|baseline> <reloads>
 * deploys the 10-module bench app, hot-reloads it <reloads> times (one changed module each) and
 * prints `{ "10": rss, "100": rss, ... }` (bytes, after each checkpoint's reloads settled).
 * `baseline` involves no agent: it starts and terminates one bare Worker per revision on the same
 * host script, which is what the runtime itself costs per Worker.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDefaultRuntime } from "../../src/runtimes/default.ts";
import { AppSpec } from "../../src/spec.ts";
import { versionModule, writeBenchApp } from "./_reload-app.ts";

const variant = process.argv[2] ?? "embedded";
const isolation = variant === "worker" ? "worker" : "embedded";
const total = Number(process.argv[3] ?? 1000);
const checkpoints = [10, 100, 1000].filter((n) => n <= total);
const root = await mkdtemp(join(tmpdir(), "bc-gitops-bench-rss-"));
const code = join(root, "repo", "code", "app");
await writeBenchApp(code, "v0");
let loads = 0;
let purges = 0;
const runtime = createDefaultRuntime({
  localPath: join(root, "local"),
  repoDir: () => join(root, "repo"),
  reloadBudget: Number.MAX_SAFE_INTEGER,
  emit: (name) => {
    if (name === "bc_gitops:code:load") loads++;
    if (name === "bc_gitops:code:purge") purges++;
  },
});
const spec = AppSpec.parse({
  name: "app",
  version: "1.0.0",
  isolation,
  source: { type: "path", path: "code/app" },
  env: { port: 0 },
});
const out: Record<number, number> = {};
const settle = async (i: number) => {
  // With --expose-gc, collect first so the figure is what stays alive, not garbage not yet collected.
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 200));
  out[i] = process.memoryUsage().rss;
};
if (variant === "baseline") {
  const host = new URL("../../src/runtimes/_worker-host.ts", import.meta.url);
  for (let i = 1; i <= total; i++) {
    const dir = join(root, "baseline", `r${i}`);
    await writeBenchApp(dir, `v${i}`);
    const ctx = { name: "app", version: "1.0.0", revision: `r${i}`, env: {}, dataDir: root };
    const worker = new Worker(host, {
      workerData: { entry: pathToFileURL(join(dir, "index.js")).href, entryPath: dir, ctx, watchMs: 250 },
    });
    await new Promise((resolve) => worker.once("message", resolve));
    await worker.terminate();
    await rm(dir, { recursive: true, force: true });
    if (checkpoints.includes(i)) await settle(i);
  }
  await rm(root, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}
try {
  const { port } = await runtime.deploy(spec);
  for (let i = 1; i <= total; i++) {
    await writeFile(join(code, "lib", "version.js"), versionModule(`v${i}`));
    const result = await runtime.hotReload(spec);
    if (result.modules.length !== 1) throw new Error(`reload ${i} changed ${JSON.stringify(result.modules)}`);
    if (!checkpoints.includes(i)) continue;
    const answer = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { version: string };
    if (answer.version !== `v${i}`) throw new Error(`after reload ${i} the app answered ${answer.version}`);
    // Old workers end in the background: measure once only the current one is left.
    for (let wait = 0; isolation === "worker" && loads - purges > 1 && wait < 200; wait++)
      await new Promise((r) => setTimeout(r, 10));
    await settle(i);
  }
} finally {
  await runtime.stopAll();
  await rm(root, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(out)}\n`);
