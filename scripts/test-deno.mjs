#!/usr/bin/env node
/**
 * Runs the suite under Deno. `deno test --parallel` runs test files side by side in one process,
 * so they share one `process.env`: a file that sets or deletes a variable for the agent (a
 * registry, `TAR_OPTIONS`, `GNUPGHOME`…) would leak it into files running at the same time.
 * Such files are found here by what they write and run afterwards, one at a time; every other
 * file runs in parallel. Arguments after `--` are passed to both `deno test` runs.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const TESTS = join(ROOT, "test");
/** Directories with suites of their own (`test:node`, `test:binary`). */
const SKIPPED = new Set([join(TESTS, "node"), join(TESTS, "binary")]);
/** `process.env.X = …`, `process.env[k] = …` or `delete process.env…`, outside comments. */
const WRITES_ENV = /^(?!\s*(?:\/\/|\*)).*(?:delete\s+process\.env\b|process\.env(?:\.\w+|\[[^\]]+\])\s*=(?!=))/m;

/** @param {string} dir @returns {string[]} test files under `dir` */
function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return SKIPPED.has(path) ? [] : testFiles(path);
    return /\.test\.(?:ts|mjs)$/.test(entry.name) ? [path] : [];
  });
}

const files = testFiles(TESTS).sort();
const serial = files.filter((file) => WRITES_ENV.test(readFileSync(file, "utf8")));
const parallel = files.filter((file) => !serial.includes(file));
const passed = process.argv.slice(2);
const deno = join(ROOT, "node_modules", ".bin", "deno");

/** @param {string[]} args @returns {number} the exit status of `deno test` with `args` */
function denoTest(args) {
  const result = spawnSync(deno, ["test", "-A", "--node-modules-dir=manual", ...passed, ...args], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

const rel = (file) => relative(ROOT, file);
console.log(`deno: ${parallel.length} test files in parallel, then ${serial.length} that set process.env one by one`);
const first = denoTest(["--parallel", ...parallel.map(rel)]);
console.log(`deno: the files that set process.env: ${serial.map(rel).join(", ")}`);
const second = serial.length === 0 ? 0 : denoTest(serial.map(rel));
process.exit(first || second);
