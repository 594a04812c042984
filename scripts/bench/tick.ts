/**
 * Reconcile tick benchmark (issue 3), in one run on one machine:
 *  - a no-change tick with 100 apps vs a bare `git fetch` (and `git ls-remote`) of the same unchanged remote;
 *  - a tick that applies one changed spec among 100 (runtime work excluded: the runtime is a no-op).
 * Medians of RUNS runs.   bun scripts/bench/tick.ts [runs]
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { exec } from "../../src/exec.ts";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { BENCH_GIT_ENV, makeSpecRepo, noopAgent, timeFirstTicks } from "./_fixtures.ts";
import { median, ms, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 21);
const git = (cwd: string, ...args: string[]) => exec("git", args, { cwd, env: BENCH_GIT_ENV });

const work = await makeSpecRepo(100, "yaml");
const bare = `${work}.git`;
await git(work, "init", "-q", "-b", "main");
await git(work, "add", "-A");
await git(work, "commit", "-q", "-m", "100 apps");
await git(work, "clone", "-q", "--bare", work, bare);
const fetchClone = `${work}-fetch`;
await git(work, "clone", "-q", "--bare", bare, fetchClone);

const agent = noopAgent(bare, `${work}-agent`);
try {
  const first = await agent.start();
  if (first.status !== "synced" || first.actions.length !== 100)
    throw new Error(`first tick: ${first.status}, ${first.actions.length} actions`);

  // Interleave the three measurements so machine noise hits them alike.
  const tick: number[] = [];
  const fetch: number[] = [];
  const lsRemote: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    let t = performance.now();
    const result = await agent.reconcile();
    tick.push(performance.now() - t);
    if (result.actions.length !== 0 || result.changed) throw new Error("the no-change tick did something");
    t = performance.now();
    await git(fetchClone, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main");
    fetch.push(performance.now() - t);
    t = performance.now();
    await git(work, "ls-remote", bare, "refs/heads/main");
    lsRemote.push(performance.now() - t);
  }

  const changed: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await writeFile(join(work, "apps", "app_7", "app.yaml"), `name: app_7\nversion: "7.${i}.0"\n`);
    await git(work, "commit", "-q", "-am", `bump ${i}`);
    await git(work, "push", "-q", bare, "HEAD:refs/heads/main");
    const t = performance.now();
    const result = await agent.reconcile();
    changed.push(performance.now() - t);
    if (result.actions.length !== 1 || result.actions[0]?.type !== "upgrade")
      throw new Error(`changed tick: ${JSON.stringify(result.actions)}`);
  }
  // A first tick on a fresh local path: clone, read 100 specs, deploy 100 apps, record each one.
  const firstTick = await timeFirstTicks(bare, 100, Math.min(RUNS, 5));
  const noChange = median(tick);
  const fetchMs = median(fetch);
  process.stdout.write(`Reconcile tick on ${runtimeName} ${runtimeVersion}, 100 apps, median of ${RUNS} runs (ms)\n\n`);
  process.stdout.write(
    table(
      ["measurement", "ms", "ratio to git fetch"],
      [
        ["bare `git fetch` of the unchanged remote (baseline)", ms(fetchMs), "1.00"],
        ["`git ls-remote` of the branch", ms(median(lsRemote)), (median(lsRemote) / fetchMs).toFixed(2)],
        ["no-change tick (fetch check + plan, 100 apps)", ms(noChange), (noChange / fetchMs).toFixed(2)],
        [
          "tick applying one changed spec among 100 (no-op runtime)",
          ms(median(changed)),
          (median(changed) / fetchMs).toFixed(2),
        ],
        [
          `first tick on a fresh local path: clone and 100 deploys (no-op runtime; median of ${firstTick.length})`,
          ms(median(firstTick)),
          (median(firstTick) / fetchMs).toFixed(2),
        ],
      ],
    ) + "\n",
  );
} finally {
  await agent.stop();
  for (const dir of [work, bare, fetchClone, `${work}-agent`]) await rm(dir, { recursive: true, force: true });
}
