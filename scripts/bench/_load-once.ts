/**
 * One cold load in a fresh process: imports the loader, loads the repo given as argv[2], prints
 * `{ ms, apps, errors }` where ms counts from process start (imports included).
 */
import { performance } from "node:perf_hooks";
import { loadApps } from "../../src/loader.ts";

const result = await loadApps(`${process.argv[2]}/apps`);
process.stdout.write(
  JSON.stringify({ ms: performance.now(), apps: result.apps.length, errors: result.errors.length }) + "\n",
);
