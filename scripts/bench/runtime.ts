/**
 * Default runtime benchmark (issue 4), one run on one machine:
 *  - deploy time of a small npm app (hello-fetch, from a fixture registry on loopback): cold (empty
 *    local path: packument, tarball, integrity check, unpack) and warm (its workspace is cached, as
 *    after an agent restart), from deploy() call to the app answering HTTP;
 *  - upgrade downtime of that app (1.0.0 -> 1.0.1) under a steady stream of requests: the longest
 *    gap between two answered requests, and failed requests.
 * Medians of RUNS runs.   bun scripts/bench/runtime.ts [runs]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { createDefaultRuntime } from "../../src/runtimes/default.ts";
import { AppSpec } from "../../src/spec.ts";
import { startRegistry } from "../../test/helpers/registry.ts";
import { median, ms, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 7);
const fixture = fileURLToPath(new URL("../../test/fixtures/apps/hello-fetch", import.meta.url));

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

async function untilAnswers(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (
      await fetch(url).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`${url} never answered`);
}

const registry = await startRegistry();
await registry.publish("hello-fetch", "1.0.0", fixture);
await registry.publish("hello-fetch", "1.0.1", fixture);
const cold: number[] = [];
const warm: number[] = [];
const gaps: number[] = [];
const failures: number[] = [];
const answered: number[] = [];
try {
  for (let run = 0; run < RUNS; run++) {
    const localPath = await mkdtemp(join(tmpdir(), "bc-gitops-bench-runtime-"));
    const port = await freePort();
    const spec = (version: string) =>
      AppSpec.parse({
        name: "hello",
        version,
        source: { type: "npm", package: "hello-fetch", registry: registry.url },
        env: { port },
        health: { type: "http" },
      });
    const url = `http://127.0.0.1:${port}/`;
    try {
      let runtime = createDefaultRuntime({ localPath, repoDir: () => undefined });
      let t = performance.now();
      await runtime.deploy(spec("1.0.0"));
      await untilAnswers(url);
      cold.push(performance.now() - t);
      await runtime.stopAll();

      runtime = createDefaultRuntime({ localPath, repoDir: () => undefined });
      t = performance.now();
      await runtime.deploy(spec("1.0.0"));
      await untilAnswers(url);
      warm.push(performance.now() - t);

      // A steady stream of requests, one at a time, while the app is upgraded.
      let stop = false;
      let ok = 0;
      let failed = 0;
      let last = performance.now();
      let longest = 0;
      const load = (async () => {
        while (!stop) {
          const good = await fetch(url).then(
            (r) => r.text().then(() => r.ok),
            () => false,
          );
          const now = performance.now();
          if (good) {
            longest = Math.max(longest, now - last);
            last = now;
            ok++;
          } else failed++;
        }
      })();
      await new Promise((r) => setTimeout(r, 100));
      await runtime.upgrade(spec("1.0.1"), "1.0.0");
      await new Promise((r) => setTimeout(r, 100));
      stop = true;
      await load;
      gaps.push(longest);
      failures.push(failed);
      answered.push(ok);
      await runtime.stopAll();
    } finally {
      await rm(localPath, { recursive: true, force: true });
    }
  }
} finally {
  await registry.close();
}

process.stdout.write(`Default runtime on ${runtimeName} ${runtimeVersion}, median of ${RUNS} runs\n\n`);
process.stdout.write(
  table(
    ["measurement", "value"],
    [
      ["deploy a small npm app, cold (registry fetch, verify, unpack), to first answer", `${ms(median(cold))} ms`],
      ["deploy the same app, workspace cached (agent restart), to first answer", `${ms(median(warm))} ms`],
      ["upgrade 1.0.0 -> 1.0.1 under load: longest time without an answer", `${ms(median(gaps))} ms`],
      ["requests failed during the upgrade / answered", `${median(failures)} / ${median(answered)}`],
    ],
  ) + "\n",
);
