// What library and CLI users get from npm: the package.json entry points against the build in
// dist/ (`npm run build` first), and the files `npm pack` would ship.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8"));

/** Every [condition path, target] of an exports map. */
function targets(exports, path = []) {
  if (typeof exports === "string") return [[path.join(" > "), exports]];
  return Object.entries(exports).flatMap(([key, value]) => targets(value, [...path, key]));
}

test("every entry point in package.json exists in the build", async () => {
  const paths = [pkg.main, pkg.types, ...Object.values(pkg.bin), ...targets(pkg.exports).map(([, target]) => target)];
  for (const path of paths) assert.ok((await stat(join(root, path))).isFile(), `${path} exists`);
});

test("only Bun is pointed at TypeScript: Node and Deno refuse to strip types under node_modules", () => {
  const main = pkg.exports["."];
  assert.equal(Object.keys(main)[0], "types", "types comes first, so TypeScript picks it");
  for (const [condition, target] of targets(pkg.exports)) {
    if (condition.endsWith("types")) assert.match(target, /\.d\.ts$/, condition);
    else if (condition.endsWith("bun")) assert.match(target, /^\.\/src\/.*\.ts$/, condition);
    else assert.doesNotMatch(target, /\.ts$/, `${condition} -> ${target}`);
  }
});

test("bc-gitops and bc-gitops/tools resolve through the exports map to the build under Node", async () => {
  // A package may import itself by name: Node applies the same exports map an installing project sees.
  const [main, tools] = await Promise.all([import("bc-gitops"), import("bc-gitops/tools")]);
  assert.equal(main.createAgent, (await import("../../dist/index.js")).createAgent);
  assert.equal(tools.loadApps, (await import("../../dist/tools.js")).loadApps);
  assert.ok(!("loadApps" in main), "the tools are not in the main entry");
  assert.deepEqual(Object.keys(pkg.exports), [".", "./tools", "./package.json"]);
  assert.deepEqual(
    Object.keys(pkg.exports["./tools"]),
    Object.keys(pkg.exports["."]),
    "the same conditions, in the same order",
  );
});

test("the bin is dist/cli.js with a node shebang, and it runs under Node", async () => {
  const bin = pkg.bin["bc-gitops"];
  assert.equal(bin, "dist/cli.js");
  assert.match(await readFile(join(root, bin), "utf8"), /^#!\/usr\/bin\/env node\n/);
  const out = execFileSync(process.execPath, [join(root, bin), "--version"], { encoding: "utf8" });
  assert.equal(/^bc-gitops\/(\S+)/.exec(out)?.[1], pkg.version);
});

test("npm pack ships dist, src, the README and package.json, and never the compiled binary", async (t) => {
  // The package's own rules applied to a stand-in tree, so the binary is always there to exclude.
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-pack-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = [
    "README.md",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/cli.js",
    "dist/runtimes/worker.js",
    "dist/bc-gitops",
    "src/index.ts",
    "src/cli.ts",
    "test/a.test.ts",
    "scripts/compile.ts",
    "examples/x/app.yaml",
    "node_modules/x/index.js",
  ];
  for (const file of files) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await writeFile(join(dir, file), "x");
  }
  await writeFile(join(dir, "package.json"), JSON.stringify({ ...pkg, scripts: {} }));
  const [report] = JSON.parse(
    execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: dir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }),
  );
  const shipped = report.files.map((f) => f.path).sort();
  assert.deepEqual(shipped, [
    "README.md",
    "dist/cli.js",
    "dist/index.d.ts",
    "dist/index.js",
    "dist/runtimes/worker.js",
    "package.json",
    "src/cli.ts",
    "src/index.ts",
  ]);
});
