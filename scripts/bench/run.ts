/**
 * Runs every benchmark in turn with the current runtime and prints their tables (the source of
 * docs/benchmarks.md).   npm run bench        (or: bun scripts/bench/run.ts specs tick)
 */
import { fileURLToPath } from "node:url";
import { exec } from "../../src/exec.ts";

const ALL = ["specs", "tick", "scale", "spawn", "runtime", "binary", "process", "hot-reload", "fleet"];
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : ALL;
for (const name of chosen) {
  const script = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  process.stdout.write(`\n## ${name}\n\n`);
  const result = await exec(process.execPath, [script], { timeoutMs: 15 * 60_000, allowExitCodes: [0, 1] });
  process.stdout.write(result.stdout);
  if (result.exitCode !== 0)
    process.stdout.write(`(${name} failed: ${result.stderr.trim().split("\n").slice(-3).join(" ")})\n`);
}
