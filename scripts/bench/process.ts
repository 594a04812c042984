/**
 * Process isolation benchmark (issue 6), in one run on one machine:
 *  - spawn-to-healthy of a small HTTP app (test/fixtures/apps/proc-server) through the process
 *    driver: spawn, wait until it listens, one HTTP health check; median of RUNS runs, next to the
 *    bare cost of starting the runtime on an empty script;
 *  - the agent's own CPU (process.cpuUsage) while it supervises APPS idle process apps with http
 *    health checks every 30 s, over WINDOW seconds, as % of one core; and the apps' total RSS.
 * Apps run with the runtime this script runs on.   bun scripts/bench/process.ts [runs] [apps] [window_s]
 */
import { cpus, tmpdir } from "node:os";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtimeName, runtimeVersion, scriptCommand } from "../../src/_platform.ts";
import { residentBytes } from "../../src/_proc.ts";
import { spawnProcess } from "../../src/exec.ts";
import { httpProbe } from "../../src/health.ts";
import { createDefaultRuntime } from "../../src/runtimes/default.ts";
import { ProcessDriver } from "../../src/runtimes/process.ts";
import { AppSpec } from "../../src/spec.ts";
import { noEmit } from "../../src/telemetry.ts";
import { Workspaces } from "../../src/workspace.ts";
import { median, ms, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 11);
const APPS = Number(process.argv[3] ?? 50);
const WINDOW_S = Number(process.argv[4] ?? 30);
const FIXTURE = fileURLToPath(new URL("../../test/fixtures/apps/proc-server", import.meta.url));

const root = await mkdtemp(join(tmpdir(), "bc-gitops-bench-proc-"));
const repo = join(root, "repo");
const local = join(root, "local");
await cp(FIXTURE, join(repo, "proc-server"), { recursive: true });

const spec = (name: string) =>
  AppSpec.parse({
    name,
    version: "1.0.0",
    isolation: "process",
    source: { type: "path", path: "proc-server" },
    env: { port: 0 },
    health: { type: "http", path: "/health", interval: "30s", timeout: 5000 },
  });

const stopAfter: (() => Promise<void>)[] = [];
try {
  // 1. Spawn to healthy, through the driver (the workspace is prepared once, as on a restart).
  const driver = new ProcessDriver({ localPath: local });
  const workspaces = new Workspaces({ localPath: local });
  const prepared = await workspaces.prepare(spec("one"), { repoDir: repo });
  const options = {
    spec: spec("one"),
    prepared,
    dataDir: await workspaces.dataDir("one"),
    logger: driver.logger,
    emit: noEmit,
    stopTimeoutMs: 5000,
    startTimeoutMs: 30_000,
    onCrash: () => {},
  };
  const healthy: number[] = [];
  const bare: number[] = [];
  const empty = join(root, "empty.mjs");
  await writeFile(empty, "");
  for (let i = 0; i < RUNS; i++) {
    let t = performance.now();
    const instance = await driver.start(options);
    await httpProbe({ host: "127.0.0.1", port: instance.port!, path: "/health" })(AbortSignal.timeout(5000));
    healthy.push(performance.now() - t);
    await instance.stop();
    const run = scriptCommand(empty);
    t = performance.now();
    const child = await spawnProcess(run.command, run.args, {
      env: { ...(process.env as Record<string, string>), ...run.env },
    });
    child.stdout.resume();
    child.stderr.resume();
    await child.exited;
    bare.push(performance.now() - t);
  }

  // 2. The agent's CPU while it supervises APPS idle apps, next to the same process idle with none.
  const cpuOver = async (seconds: number) => {
    const before = process.cpuUsage();
    const wallStart = performance.now();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const used = process.cpuUsage(before);
    return ((used.user + used.system) / 1000 / (performance.now() - wallStart)) * 100;
  };
  const baselinePct = await cpuOver(Math.min(10, WINDOW_S));
  const runtime = createDefaultRuntime({ localPath: local, repoDir: () => repo });
  stopAfter.push(() => runtime.stopAll());
  const deployStarted = performance.now();
  for (let i = 0; i < APPS; i++) await runtime.deploy(spec(`idle_${i}`));
  const deployMs = performance.now() - deployStarted;
  const state = await runtime.getCurrentState();
  const running = Object.values(state).filter((a) => a.status === "running" && a.health === "healthy").length;
  if (running !== APPS) throw new Error(`only ${running} of ${APPS} apps run healthy`);
  await new Promise((resolve) => setTimeout(resolve, 2000)); // let the deploys' own work settle
  const cpuPct = await cpuOver(WINDOW_S);
  const rss = (await Promise.all(Object.values(state).map((a) => residentBytes(a.pid as number)))).reduce<number>(
    (sum, b) => sum + (b ?? 0),
    0,
  );
  const agentRss = process.memoryUsage().rss;

  process.stdout.write(
    `Process isolation on ${runtimeName} ${runtimeVersion}, ${cpus().length} × ${cpus()[0]?.model ?? "?"}\n\n`,
  );
  process.stdout.write(
    table(
      ["measurement", "value"],
      [
        [`spawn to healthy, small HTTP app (median of ${RUNS})`, `${ms(median(healthy))} ms`],
        [`bare runtime start on an empty script, spawn to exit (median of ${RUNS})`, `${ms(median(bare))} ms`],
        [`deploying ${APPS} process apps one after another`, `${ms(deployMs)} ms (${ms(deployMs / APPS)} ms each)`],
        [`agent CPU supervising ${APPS} idle apps over ${WINDOW_S} s`, `${cpuPct.toFixed(2)} % of one core`],
        [
          `the same process idle with no app, over ${Math.min(10, WINDOW_S)} s (baseline)`,
          `${baselinePct.toFixed(2)} % of one core`,
        ],
        [
          `RSS of the ${APPS} idle app processes`,
          `${(rss / 1048576).toFixed(0)} MB (${(rss / APPS / 1048576).toFixed(1)} MB each)`,
        ],
        ["agent RSS while supervising them", `${(agentRss / 1048576).toFixed(0)} MB`],
      ],
    ) + "\n",
  );
} finally {
  for (const stop of stopAfter) await stop().catch(() => {});
  await rm(root, { recursive: true, force: true });
}
