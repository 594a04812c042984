// The binary runs apps whose dependencies are shaped like real packages (issue 11): entries in
// `dist/` or `src/` named by `main`, `exports` maps with conditions, subpaths and patterns, a
// CommonJS package that `require`s another one, a scoped package. Inside a `bun build --compile`
// executable Bun's resolver reads no package.json unless the binary is built with
// `--compile-autoload-package-json` (oven-sh/bun#27058; scripts/compile.ts): without it only
// packages with a root `index.js` load. Each isolation is deployed from a path source that has no
// `node_modules`, so the binary installs the dependencies itself from a fixture registry on
// loopback, with only git, tar and gzip on PATH (one app's bunfig.toml asks for Bun's isolated
// layout, packages reached through symlinks into node_modules/.bun); then a commit hot-reloads
// every app onto a new revision whose `node_modules` is a symlink to the previous one's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readlink } from "node:fs/promises";
import { join } from "node:path";
import {
  commitFiles,
  freePort,
  get,
  gitopsRepo,
  portClosed,
  post,
  startAgent,
  startRegistry,
  stopAgent,
  tempDir,
  toolsOnlyEnv,
  waitFor,
} from "./helpers.mjs";

/** Publishes the real-shaped packages; returns the `dependencies` an app declares to use them all. */
async function publishPackages(registry) {
  // hono's shape: ESM, `main` into dist/.
  await registry.publish(
    { name: "bcg-dist", version: "1.0.0", type: "module", main: "./dist/index.js" },
    {
      "dist/index.js": 'export const dist = "dist/index.js";\n',
    },
  );
  // A dual package: conditions (Bun picks `bun` for import, `require` for require), a subpath, a pattern; nothing at the root.
  await registry.publish(
    {
      name: "bcg-exports",
      version: "1.0.0",
      type: "module",
      exports: {
        ".": {
          types: "./dist/index.d.ts",
          bun: "./dist/bun/index.js",
          import: "./dist/esm/index.js",
          require: "./dist/cjs/index.cjs",
        },
        "./sub": { import: "./dist/esm/sub.js", require: "./dist/cjs/sub.cjs" },
        "./features/*": "./dist/features/*.js",
        "./package.json": "./package.json",
      },
    },
    {
      "dist/index.d.ts": "export declare const flavour: string;\n",
      "dist/bun/index.js": 'export const flavour = "bun condition";\n',
      "dist/esm/index.js": 'export const flavour = "import condition";\n',
      "dist/cjs/index.cjs": 'exports.flavour = "require condition";\n',
      "dist/esm/sub.js": 'export const sub = "import subpath";\n',
      "dist/cjs/sub.cjs": 'exports.sub = "require subpath";\n',
      "dist/features/alpha.js": 'export const feature = "pattern alpha";\n',
    },
  );
  // body-parser requiring debug: CommonJS in lib/ requiring its own dependency, whose main is ./src/index.js.
  await registry.publish(
    { name: "bcg-cjs-inner", version: "1.0.0", main: "./src/index.js" },
    {
      "src/index.js": 'module.exports = { name: () => "inner src/index.js" };\n',
    },
  );
  await registry.publish(
    { name: "bcg-cjs-outer", version: "1.0.0", main: "lib/index.js", dependencies: { "bcg-cjs-inner": "1.0.0" } },
    {
      "lib/index.js":
        'const inner = require("bcg-cjs-inner");\nconst { label } = require("./label");\nmodule.exports = { describe: () => `${label} requires ${inner.name()}` };\n',
      "lib/label.js": 'exports.label = "outer lib/index.js";\n',
    },
  );
  await registry.publish(
    {
      name: "@bcg/scoped",
      version: "1.0.0",
      type: "module",
      exports: { ".": { import: "./dist/index.js", default: "./dist/index.js" } },
    },
    {
      "dist/index.js": 'export const scoped = "@bcg/scoped dist/index.js";\n',
    },
  );
  return { "bcg-dist": "1.0.0", "bcg-exports": "1.0.0", "bcg-cjs-outer": "1.0.0", "@bcg/scoped": "1.0.0" };
}

/** The app module every isolation shares: one line naming what each import resolved to. */
function lib(revision) {
  return `import { createRequire } from "node:module";
import { dist } from "bcg-dist";
import { flavour } from "bcg-exports";
import { sub } from "bcg-exports/sub";
import { feature } from "bcg-exports/features/alpha";
import outer from "bcg-cjs-outer";
import { scoped } from "@bcg/scoped";
const require = createRequire(import.meta.url);
export function describe() {
  return ["${revision}", dist, flavour, sub, require("bcg-exports/sub").sub, require("bcg-exports").flavour, feature, outer.describe(), scoped].join(" | ");
}
`;
}

/** What `describe()` returns under `bun` (and so must in the binary). */
const resolved =
  "dist/index.js | bun condition | import subpath | require subpath | bun condition | pattern alpha | outer lib/index.js requires inner src/index.js | @bcg/scoped dist/index.js";

const FETCH_SERVER =
  'import { describe } from "./lib.js";\nexport default { fetch: () => new Response(describe()) };\n';
const PROCESS_SERVER =
  'import { createServer } from "node:http";\nimport { describe } from "./lib.js";\ncreateServer((req, res) => res.end(describe())).listen(Number(process.env.PORT), "127.0.0.1");\n';

test("apps in every isolation load real-shaped dependencies the binary installed, and hot-reload onto a revision sharing them by symlink", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-deps-");
  const registry = await startRegistry(t);
  const dependencies = await publishPackages(registry);
  const apiPort = await freePort();
  const apps = [
    { name: "embedded-app", isolation: "embedded", port: await freePort(), server: FETCH_SERVER },
    { name: "worker-app", isolation: "worker", port: await freePort(), server: FETCH_SERVER },
    { name: "process-app", isolation: "process", port: await freePort(), server: PROCESS_SERVER },
    // pnpm-like layout: every package under node_modules/.bun, reached through symlinks.
    {
      name: "isolated-app",
      isolation: "embedded",
      port: await freePort(),
      server: FETCH_SERVER,
      bunfig: '[install]\nlinker = "isolated"\n',
    },
  ];
  const files = {};
  for (const app of apps) {
    files[`apps/${app.name}/app.yaml`] =
      `name: ${app.name}\nversion: "1.0.0"\nsource: { type: path, path: code/${app.name} }\nisolation: ${app.isolation}\nenv: { port: ${app.port} }\nhealth: { type: http, interval: 1s }\n`;
    files[`code/${app.name}/package.json`] = JSON.stringify({
      name: app.name,
      version: "1.0.0",
      type: "module",
      main: "server.js",
      dependencies,
    });
    // The registry an app's own .npmrc names, as a private registry would be configured.
    files[`code/${app.name}/.npmrc`] = `registry=${registry.url}\n`;
    files[`code/${app.name}/server.js`] = app.server;
    files[`code/${app.name}/lib.js`] = lib("one");
    if (app.bunfig) files[`code/${app.name}/bunfig.toml`] = app.bunfig;
  }
  const repo = await gitopsRepo(join(dir, "repo"), files);
  const env = await toolsOnlyEnv(dir);
  const agent = startAgent(
    t,
    ["--repo-url", repo, "--local-path", join(dir, "local"), "--listen", `127.0.0.1:${apiPort}`],
    env,
  );
  const answer = (app, revision) =>
    waitFor(
      `the ${app.isolation} app answering with revision ${revision}`,
      async () => {
        const page = await get(`http://127.0.0.1:${app.port}/`);
        return page.body.startsWith(`${revision} | `) ? page : undefined;
      },
      agent,
      120_000,
    );
  const status = async (app) => JSON.parse((await get(`http://127.0.0.1:${apiPort}/apps/${app.name}`)).body);

  const first = {};
  for (const app of apps) {
    assert.deepEqual(
      await answer(app, "one"),
      { status: 200, body: `one | ${resolved}` },
      `${app.isolation}: every import resolved as under bun`,
    );
    first[app.name] = await status(app);
    assert.equal(
      (await lstat(join(first[app.name].path, "node_modules", "bcg-exports", "dist", "esm", "index.js"))).isFile(),
      true,
      "installed by the binary",
    );
    const linked = (await lstat(join(first[app.name].path, "node_modules", "bcg-cjs-outer"))).isSymbolicLink();
    assert.equal(
      linked,
      Boolean(app.bunfig),
      `${app.name}: packages are ${app.bunfig ? "" : "not "}symlinks into node_modules/.bun`,
    );
  }
  assert.ok(
    registry.requests.includes("GET /@bcg/scoped/-/scoped-1.0.0.tgz"),
    `the scoped package came from the fixture registry: ${registry.requests.join(", ")}`,
  );

  await commitFiles(
    repo,
    Object.fromEntries(apps.map((app) => [`code/${app.name}/lib.js`, lib("two")])),
    "change the code, not the dependencies",
  );
  const reconciled = await post(`http://127.0.0.1:${apiPort}/reconcile`);
  assert.equal(reconciled.status, 200, reconciled.body);
  for (const app of apps) {
    assert.deepEqual(
      await answer(app, "two"),
      { status: 200, body: `two | ${resolved}` },
      `${app.isolation}: the new revision resolved the same dependencies`,
    );
    const now = await status(app);
    assert.notEqual(now.revision, first[app.name].revision, `${app.name} runs a new revision`);
    const modules = join(now.path, "node_modules");
    assert.equal(
      (await lstat(modules)).isSymbolicLink(),
      true,
      `${modules} links to the packages already installed (${app.name})`,
    );
    assert.match(
      await readlink(modules),
      new RegExp(`${first[app.name].revision}`),
      `${modules} points into the first revision`,
    );
  }

  assert.equal(await stopAgent(agent), 0, agent.output());
  for (const app of apps)
    assert.equal(await portClosed(app.port), true, `port ${app.port} is closed once the agent exited`);
  assert.equal(agent.stderr(), "", "nothing on stderr");
});
