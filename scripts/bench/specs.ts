/**
 * Spec loading benchmark (issue 2): 10, 100 and 1000 specs in YAML, JSON and Erlang terms, loaded
 * and validated (a) in a fresh process and (b) warm, in a running process re-reading them, with and
 * without the content cache. Baselines measured in the same run: a fresh process that does nothing,
 * and the `yaml` package alone parsing the same files. Medians of RUNS runs.
 *
 *   bun scripts/bench/specs.ts [runs]
 */
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { exec } from "../../src/exec.ts";
import { SpecCache, loadApps } from "../../src/loader.ts";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { makeSpecRepo, type BenchFormat } from "./_fixtures.ts";
import { median, ms, table, timeMedian } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 7);
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const runtimeArgs = runtimeName === "deno" ? ["run", "-A"] : [];

/** Median of `{ ms }` reported by a fresh process (time from its start to the end of its work). */
async function fresh(script: string, arg: string): Promise<{ inside: number; wall: number }> {
  const inside: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const result = await exec(process.execPath, [...runtimeArgs, here(script), arg]);
    const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as {
      ms: number;
      apps?: number;
      errors?: number;
    };
    if (report.errors) throw new Error(`${script}: ${report.errors} errors loading ${arg}`);
    inside.push(report.ms);
    wall.push(result.durationMs);
  }
  return { inside: median(inside), wall: median(wall) };
}

const baseline = await fresh("./_baseline-once.ts", "-");
// The compiled binary (npm run compile), when built: `validate` end to end, against its own `--version`.
const binary = fileURLToPath(new URL("../../dist/bc-gitops", import.meta.url));
const hasBinary = await exec(binary, ["--version"]).then(
  () => true,
  () => false,
);
async function binaryWall(args: string[]): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push((await exec(binary, args, { allowExitCodes: [0, 1] })).durationMs);
  return median(times);
}
const binaryBaseline = hasBinary ? await binaryWall(["--version"]) : 0;
const rows: string[][] = [];
for (const format of ["yaml", "json", "erlang"] as BenchFormat[]) {
  for (const count of [10, 100, 1000]) {
    const root = await makeSpecRepo(count, format);
    try {
      const cold = await fresh("./_load-once.ts", root);
      const apps = `${root}/apps`;
      const uncached = await timeMedian(RUNS, () => loadApps(apps));
      const cache = new SpecCache();
      await loadApps(apps, { cache });
      const cached = await timeMedian(RUNS, () => loadApps(apps, { cache }));
      const reference = format === "yaml" ? ms((await fresh("./_yaml-once.ts", root)).inside) : "";
      const compiled = hasBinary ? ms(await binaryWall(["validate", "--json", root])) : "";
      rows.push([
        format,
        String(count),
        ms(cold.inside),
        ms(cold.inside - baseline.inside),
        ms(cold.wall),
        reference,
        compiled,
        ms(uncached),
        ms(cached),
      ]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
}

process.stdout.write(`Spec loading on ${runtimeName} ${runtimeVersion}, median of ${RUNS} runs (ms)\n\n`);
process.stdout.write(
  `Baseline: an empty fresh process reports ${ms(baseline.inside)} ms from start (wall ${ms(baseline.wall)} ms)${hasBinary ? `; the binary's \`--version\` takes ${ms(binaryBaseline)} ms wall` : ""}.\n\n`,
);
process.stdout.write(
  table(
    [
      "format",
      "specs",
      "fresh: start to loaded",
      "fresh: minus empty process",
      "fresh: wall",
      "yaml pkg only, fresh",
      "binary `validate`, wall",
      "warm: re-read",
      "warm: re-read, cached",
    ],
    rows,
  ) + "\n",
);
