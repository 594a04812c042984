/**
 * The reference for spec loading in a fresh process: read every app.yaml of the repo given as
 * argv[2] and parse it with the `yaml` package only (no validation). Prints `{ ms }` from process start.
 */
import { readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parse } from "yaml";

const apps = `${process.argv[2]}/apps`;
for (const dir of readdirSync(apps)) parse(readFileSync(`${apps}/${dir}/app.yaml`, "utf8"));
process.stdout.write(JSON.stringify({ ms: performance.now() }) + "\n");
