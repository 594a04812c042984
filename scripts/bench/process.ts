/**
 * Process isolation benchmark (issue 6), in one run on one machine:
 *  - spawn-to-healthy of a small HTTP app (test/fixtures/apps/proc-server) through the process
 *    driver: spawn, wait until it listens, one HTTP health check; median of RUNS runs, next to the
 *    bare cost of starting the runtime on an empty script;
 *  - the agent's own CPU (process.cpuUsage) while it supervises APPS idle process apps with http
 *    health checks every 30 s, over WINDOW seconds, as % of one core; and the apps' total RSS;
 *  - APPS process apps deployed by one commit through a real agent (the tick from the fetch to the
 *    last app started and checked), with apply_concurrency 1 (one after another) and the default,
 *    alternately, median of DEPLOY_RUNS each (issue 13); BENCH_APPLY_CONCURRENCY=1,2,4 measures
 *    other bounds too.
 * Apps run with the runtime this script runs on.
 *   bun scripts/bench/process.ts [runs] [apps] [window_s] [deploy_runs]
 */
import { cpus, tmpdir } from "node:os";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtimeName, runtimeVersion, scriptCommand } from "../../src/_platform.ts";
import { residentBytes } from "../../src/_proc.ts";
import { createAgent } from "../../src/agent.ts";
import { defaultApplyConcurrency } from "../../src/config.ts";
import { exec, spawnProcess } from "../../src/exec.ts";
import { httpProbe } from "../../src/health.ts";
import { createDefaultRuntime } from "../../src/runtimes/default.ts";
import { ProcessDriver } from "../../src/runtimes/process.ts";
import { AppSpec } from "../../src/spec.ts";
import { noEmit } from "../../src/telemetry.ts";
import { Workspaces } from "../../src/workspace.ts";
import { BENCH_GIT_ENV } from "./_fixtures.ts";
import { median, ms, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 11);
const APPS = Number(process.argv[3] ?? 50);
const WINDOW_S = Number(process.argv[4] ?? 30);
const DEPLOY_RUNS = Number(process.argv[5] ?? 3);
const BOUNDS = (process.env.BENCH_APPLY_CONCURRENCY ?? `1,${defaultApplyConcurrency()}`).split(",").map(Number);
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

const git = (cwd: string, ...args: string[]) => exec("git", args, { cwd, env: BENCH_GIT_ENV });
const appYaml = (name: string) =>
  `name: ${name}\nversion: "1.0.0"\nisolation: process\nsource: { type: path, path: proc-server }\nenv: { port: 0 }\nhealth: { type: http, path: /health, interval: 30s, timeout: 5s }\n`;

/**
 * One commit adding APPS process apps to a repository an agent already tracks (its apps
 * directory empty), applied by `agent.reconcile()` with `applyConcurrency`; returns the tick's
 * wall time. Every app runs its own workspace and process; the agent stops them all after.
 */
async function deployByCommit(applyConcurrency: number): Promise<number> {
  const dir = await mkdtemp(join(root, "commit-"));
  const work = join(dir, "work");
  const bare = join(dir, "remote.git");
  await cp(FIXTURE, join(work, "proc-server"), { recursive: true });
  await mkdir(join(work, "apps"), { recursive: true });
  await writeFile(join(work, "apps", ".gitkeep"), "");
  await git(dir, "init", "-q", "-b", "main", work);
  await git(work, "add", "-A");
  await git(work, "commit", "-q", "-m", "no apps yet");
  await git(dir, "clone", "-q", "--bare", work, bare);
  await git(work, "remote", "add", "origin", bare);
  const agent = createAgent({
    repoUrl: bare,
    localPath: join(dir, "local"),
    reconcileInterval: "1h",
    listen: "off",
    applyConcurrency,
  });
  try {
    await agent.start();
    for (let i = 0; i < APPS; i++) {
      await mkdir(join(work, "apps", `idle_${i}`), { recursive: true });
      await writeFile(join(work, "apps", `idle_${i}`, "app.yaml"), appYaml(`idle_${i}`));
    }
    await git(work, "add", "-A");
    await git(work, "commit", "-q", "-m", `${APPS} apps`);
    await git(work, "push", "-q", "origin", "main");
    const started = performance.now();
    const result = await agent.reconcile();
    const elapsed = performance.now() - started;
    const ok = result.actions.filter((a) => a.type === "deploy" && a.outcome === "ok").length;
    if (ok !== APPS) throw new Error(`apply_concurrency ${applyConcurrency}: ${ok} of ${APPS} deploys succeeded`);
    return elapsed;
  } finally {
    await agent.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

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
  for (const stop of stopAfter.splice(0)) await stop();

  // 3. APPS apps deployed by one commit, through the agent, for each bound in turn (interleaved runs).
  const byBound = new Map<number, number[]>(BOUNDS.map((b) => [b, []]));
  for (let run = 0; run < DEPLOY_RUNS; run++) {
    for (const bound of BOUNDS) byBound.get(bound)!.push(await deployByCommit(bound));
  }
  const sequential = median(byBound.get(1) ?? [NaN]);
  const commitRows = BOUNDS.map((bound) => {
    const value = median(byBound.get(bound)!);
    const label =
      bound === 1
        ? "1, one after another"
        : `${bound}${bound === defaultApplyConcurrency() ? ", the default here" : ""}`;
    const ratio =
      bound === 1 || Number.isNaN(sequential) ? "" : ` (${((value / sequential) * 100).toFixed(0)}% of sequential)`;
    return [
      `${APPS} process apps deployed by one commit, apply_concurrency ${label} (median of ${DEPLOY_RUNS})`,
      `${ms(value)} ms${ratio}`,
    ];
  });

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
        ...commitRows,
      ],
    ) + "\n",
  );
} finally {
  for (const stop of stopAfter) await stop().catch(() => {});
  await rm(root, { recursive: true, force: true });
}
