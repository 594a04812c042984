/** The baseline for fresh-process timings: a process that starts, imports nothing, and reports. */
import { performance } from "node:perf_hooks";
process.stdout.write(JSON.stringify({ ms: performance.now() }) + "\n");
