/**
 * Short-lived children (issue 13's RSS): what running `git --version` RUNS times costs, through
 * the agent's runner (`exec`: Bun's own spawn on Bun, tinyexec over `node:child_process`
 * elsewhere) and, as the baseline in the same run, through `node:child_process` directly. Each
 * variant runs in a fresh process of this runtime: per-call time (median of RUNS), and the
 * process's resident memory after a full GC, before and after the runs.
 *
 *   bun scripts/bench/spawn.ts [runs]
 */
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { exec } from "../../src/exec.ts";
import { fullGc } from "./_fixtures.ts";
import { median, ms, table } from "./_stats.ts";

const [mode, runsArg] = process.argv.slice(2);
const RUNS = Number((mode === "exec" || mode === "child_process" ? runsArg : mode) ?? 500);

const rssMb = () => process.memoryUsage().rss / 1024 / 1024;

/** One variant, in this process: prints `{ ms, before, after }` as JSON. */
async function measure(variant: "exec" | "child_process"): Promise<void> {
  const once =
    variant === "exec"
      ? () => exec("git", ["--version"], { timeoutMs: 10_000 })
      : () =>
          new Promise<void>((resolve, reject) =>
            execFile("git", ["--version"], (error) => (error ? reject(error) : resolve())),
          );
  await once(); // the first call loads what both need
  fullGc();
  const before = rssMb();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await once();
    times.push(performance.now() - t);
  }
  fullGc();
  await new Promise((r) => setTimeout(r, 50));
  fullGc();
  process.stdout.write(`${JSON.stringify({ ms: median(times), before, after: rssMb() })}\n`);
}

if (mode === "exec" || mode === "child_process") {
  await measure(mode);
} else {
  const script = fileURLToPath(import.meta.url);
  const run = (variant: string) =>
    new Promise<{ ms: number; before: number; after: number }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [...(runtimeName === "deno" ? ["run", "-A"] : []), script, variant, String(RUNS)],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      child.once("exit", (code) =>
        code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(`${variant} exited ${code}`)),
      );
    });
  const base = await run("child_process");
  const ours = await run("exec");
  const row = (what: string, r: typeof base) => [
    what,
    ms(r.ms),
    `${r.before.toFixed(1)} → ${r.after.toFixed(1)} MB (+${(r.after - r.before).toFixed(1)})`,
  ];
  process.stdout.write(
    `Short-lived children on ${runtimeName} ${runtimeVersion}: \`git --version\` ${RUNS} times, a fresh process each\n\n` +
      table(
        ["runner", "ms per child (median)", "RSS after a full GC, before → after"],
        [row("`node:child_process` `execFile` (baseline)", base), row("`exec` (the agent's runner)", ours)],
      ) +
      "\n",
  );
}
