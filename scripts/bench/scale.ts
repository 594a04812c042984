/**
 * Scale benchmark (issue 13): an agent of 1000 apps (YAML specs, a runtime that does no work), in
 * one run on one machine, next to the physical floor measured in the same run: a bare `git fetch`
 * of a one-file commit of the same repository into another clone.
 *  - a tick applying one changed spec among 1000;
 *  - a tick applying 100 changed specs among 1000;
 *  - a first tick on a fresh local path (clone, read 1000 specs, 1000 deploys);
 *  - the agent's RSS after the changed ticks (in this process, after a full GC, before the first-tick
 *    runs start other agents), next to the RSS of the same process before the agent existed.
 * Medians of RUNS runs; each changed tick is interleaved with a baseline fetch of its own commit.
 *
 *   bun scripts/bench/scale.ts [runs]
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { exec } from "../../src/exec.ts";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { BENCH_GIT_ENV, fullGc, makeSpecRepo, noopAgent, timeFirstTicks } from "./_fixtures.ts";
import { median, ms, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 7);
const APPS = 1000;
const git = (cwd: string, ...args: string[]) => exec("git", args, { cwd, env: BENCH_GIT_ENV });

const work = await makeSpecRepo(APPS, "yaml");
const bare = `${work}.git`;
const fetchClone = `${work}-fetch`;
await git(work, "init", "-q", "-b", "main");
await git(work, "add", "-A");
await git(work, "commit", "-q", "-m", `${APPS} apps`);
await git(work, "clone", "-q", "--bare", work, bare);
await git(work, "clone", "-q", "--bare", bare, fetchClone);

const spec = (i: number, version: string) => `name: app_${i}\nversion: "${version}"\n`;
let bump = 0;
/** Commits new versions of `count` specs, pushes, and returns the new head and the time a bare fetch of it takes. */
async function pushChange(count: number): Promise<{ head: string; fetchMs: number }> {
  bump++;
  for (let k = 0; k < count; k++) {
    const i = (k * 7 + bump) % APPS;
    await writeFile(join(work, "apps", `app_${i}`, "app.yaml"), spec(i, `9.${bump}.${k}`));
  }
  await git(work, "commit", "-q", "-am", `bump ${bump}`);
  await git(work, "push", "-q", bare, "HEAD:refs/heads/main");
  const head = (await git(work, "rev-parse", "HEAD")).stdout.trim();
  const t = performance.now();
  await git(fetchClone, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main");
  return { head, fetchMs: performance.now() - t };
}

const gcNow = async () => {
  fullGc();
  await new Promise((r) => setTimeout(r, 50));
  fullGc();
};
const rssMb = () => process.memoryUsage().rss / 1024 / 1024;
// What the process holds before any agent: the runtime, the modules, the repository fixture.
await gcNow();
const rssBefore = rssMb();

const agent = noopAgent(bare, `${work}-agent`);
try {
  const first = await agent.start();
  if (first.status !== "synced" || first.actions.length !== APPS)
    throw new Error(`first tick: ${first.status}, ${first.actions.length} actions`);

  const fetches: number[] = [];
  const measure = async (count: number, webhook = false) => {
    const ticks: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const { head, fetchMs } = await pushChange(count);
      fetches.push(fetchMs);
      const t = performance.now();
      // A webhook names the new head: the tick fetches it without ls-remote first.
      const result = await agent.reconcile(webhook ? { head } : {});
      ticks.push(performance.now() - t);
      if (result.actions.length !== count || result.actions.some((a) => a.outcome !== "ok"))
        throw new Error(`tick of ${count} changes: ${result.actions.length} actions`);
    }
    return median(ticks);
  };
  const one = await measure(1);
  const oneHinted = await measure(1, true);
  const hundred = await measure(100);
  // Measured before the first-tick runs below, which start (and stop) five more agents in this process.
  await gcNow();
  const rss = rssMb();
  const heap = process.memoryUsage().heapUsed / 1024 / 1024;

  const firstTicks = await timeFirstTicks(bare, APPS, Math.min(RUNS, 5));

  const floor = median(fetches);
  const row = (what: string, value: number, target: number) => [
    what,
    ms(value),
    (value / floor).toFixed(2),
    `≤ ${target}× ${value / floor <= target ? "met" : "not met"}`,
  ];
  process.stdout.write(
    `Scale: ${APPS} apps on ${runtimeName} ${runtimeVersion}, no-op runtime, median of ${RUNS} runs (ms)\n\n`,
  );
  process.stdout.write(
    table(
      ["measurement", "ms", "ratio to the bare fetch", "target"],
      [
        ["bare `git fetch` of a one-file commit (baseline)", ms(floor), "1.00", ""],
        row("tick applying one changed spec among 1000 (polled: ls-remote, then fetch)", one, 1.5),
        row("the same, driven by a webhook naming the new head (fetch only)", oneHinted, 1.5),
        row("tick applying 100 changed specs among 1000", hundred, 3),
        row(`first tick, clone and ${APPS} deploys (median of ${firstTicks.length})`, median(firstTicks), 6),
      ],
    ) + "\n",
  );
  process.stdout.write(
    `\nagent RSS after the changed ticks, after a full GC: ${rss.toFixed(0)} MB (target ≤ 80 MB, ${rss <= 80 ? "met" : "not met"}); ` +
      `the same process before createAgent: ${rssBefore.toFixed(0)} MB; JS heap in use: ${heap.toFixed(1)} MB\n`,
  );
} finally {
  await agent.stop();
  for (const dir of [work, bare, fetchClone, `${work}-agent`]) await rm(dir, { recursive: true, force: true });
}
