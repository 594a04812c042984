/**
 * Cold spec loading across versions (issue 13): 1000 YAML specs loaded and validated in a fresh
 * process by each bc-gitops tree given (a checkout or `git archive` of a commit, with its
 * node_modules), interleaved run by run with the `yaml` package alone parsing the same files, so
 * that machine noise hits every column alike. Prints each tree's median and its ratio to the
 * `yaml` package's.
 *
 *   bun scripts/bench/specs-compare.ts RUNS TREE…      e.g. 21 /tmp/before .
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { rm } from "node:fs/promises";
import { exec } from "../../src/exec.ts";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { makeSpecRepo } from "./_fixtures.ts";
import { median, ms, table } from "./_stats.ts";

const runs = Number(process.argv[2] ?? 21);
const trees = process.argv.slice(3).map((t) => resolve(t));
if (trees.length === 0) throw new Error("usage: specs-compare.ts RUNS TREE…");
const yamlOnly = fileURLToPath(new URL("./_yaml-once.ts", import.meta.url));
const root = await makeSpecRepo(1000, "yaml");
const once = async (script: string) =>
  (JSON.parse((await exec(process.execPath, [script, root])).stdout.trim().split("\n").at(-1)!) as { ms: number }).ms;
try {
  const times = new Map<string, number[]>([...trees.map((t): [string, number[]] => [t, []]), ["yaml", []]]);
  for (let i = 0; i < runs; i++) {
    for (const tree of trees) times.get(tree)!.push(await once(`${tree}/scripts/bench/_load-once.ts`));
    times.get("yaml")!.push(await once(yamlOnly));
  }
  const yaml = median(times.get("yaml")!);
  process.stdout.write(`Cold load of 1000 YAML specs on ${runtimeName} ${runtimeVersion}, median of ${runs} (ms)\n\n`);
  process.stdout.write(
    table(
      ["tree", "fresh: start to loaded", "ratio to the yaml package"],
      [
        ...trees.map((tree) => [tree, ms(median(times.get(tree)!)), (median(times.get(tree)!) / yaml).toFixed(3)]),
        ["`yaml` package alone (baseline)", ms(yaml), "1.000"],
      ],
    ) + "\n",
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
