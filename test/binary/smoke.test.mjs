// Smoke test of the single executable (dist/bc-gitops, built by `npm run compile`), run by Node so
// nothing of the test's own runtime leaks into the binary under test. It checks the commands that
// need no agent, then runs the agent for real on a git repository made here: one app per isolation
// (embedded; worker, whose host script must be embedded in the binary; process, started by the
// binary acting as bun through BUN_BE_BUN), and an npm-source app whose dependency the binary
// installs itself, with npm, node and bun off PATH, from a fixture registry on loopback.
// Dependencies shaped like real packages: dependencies.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  freePort,
  get,
  gitopsRepo,
  portClosed,
  root,
  runBinary,
  startAgent,
  startRegistry,
  stopAgent,
  tempDir,
  toolsOnlyEnv,
  waitFor,
  waitGone,
  writeTree,
} from "./helpers.mjs";

test("--version prints the version of package.json", async () => {
  const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8"));
  const { code, stdout } = runBinary(["--version"]);
  assert.equal(code, 0);
  assert.equal(/^bc-gitops\/(\S+)/.exec(stdout)?.[1], pkg.version, stdout);
});

test("validate passes on the bundled example repository", () => {
  const { code, stdout, stderr } = runBinary(["validate", join(root, "examples", "gitops-repo")]);
  assert.equal(code, 0, stdout + stderr);
  assert.match(stdout, /✔ [1-9]\d* valid apps?, 0 errors/);
});

test("init writes the example repository (the same files as examples/gitops-repo) and validate accepts it", async (t) => {
  const repo = join(await tempDir(t, "bc-gitops-binary-init-"), "gitops");
  const init = runBinary(["init", repo]);
  assert.equal(init.code, 0, init.stdout + init.stderr);
  const files = [...init.stdout.matchAll(/^ {2}(\S+)$/gm)].map((m) => m[1]);
  assert.ok(files.includes("apps/hello/app.yaml") && files.includes("code/hello/server.js"), init.stdout);
  for (const file of files) {
    assert.equal(
      await readFile(join(repo, file), "utf8"),
      await readFile(join(root, "examples", "gitops-repo", file), "utf8"),
      file,
    );
  }
  const { code, stdout } = runBinary(["validate", repo]);
  assert.equal(code, 0, stdout);
  assert.match(stdout, /✔ 1 valid app, 0 errors/);
});

test("validate exits 1 with file:line:col on a broken spec", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-bad-");
  await writeTree(dir, { "apps/web/app.yaml": "name: web\nversion: 1.0\n" });
  const { code, stdout } = runBinary(["validate", dir]);
  assert.equal(code, 1);
  assert.match(stdout, /apps\/web\/app\.yaml:2:\d+ version: .*quote/);
});

test("schema prints the JSON Schema of the app spec", () => {
  const { code, stdout } = runBinary(["schema"]);
  assert.equal(code, 0);
  const schema = JSON.parse(stdout);
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.deepEqual(schema.required, ["name", "version"]);
});

test("a .env file in the working directory is not loaded (only flags, BC_GITOPS_* variables and the config file count)", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-env-");
  await writeFile(join(dir, ".env"), "BC_GITOPS_RECONCILE_INTERVAL=soon\n");
  const args = ["plan", "--repo-url", join(dir, "no-such-repo"), "--listen", "off"];
  const fromEnv = runBinary(args, {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1", BC_GITOPS_RECONCILE_INTERVAL: "soon" },
  });
  assert.match(fromEnv.stderr, /reconcile_interval/i, "the variable itself is read");
  const fromFile = runBinary(args, { cwd: dir });
  assert.equal(fromFile.code, 1);
  assert.doesNotMatch(fromFile.stderr, /reconcile_interval/i, "the .env file is not");
});

test("run deploys apps in each isolation from a git repository, reports synced, and stops them all on SIGTERM", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-run-");
  const [webPort, workerPort, processPort, apiPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const spec = (name, isolation, port) =>
    `name: ${name}\nversion: "1.0.0"\nsource: { type: path, path: code/${name} }\nisolation: ${isolation}\nenv: { port: ${port} }\nhealth: { type: http, interval: 1s }\n`;
  const pkg = (name, main) => JSON.stringify({ name, version: "1.0.0", type: "module", main });
  const repo = await gitopsRepo(join(dir, "repo"), {
    "apps/web/app.yaml": spec("web", "embedded", webPort),
    "code/web/package.json": pkg("web", "server.js"),
    "code/web/server.js": 'export default { fetch: () => new Response("embedded app") };\n',
    // A Worker needs its host script embedded in the binary (scripts/compile.ts).
    "apps/threaded/app.yaml": spec("threaded", "worker", workerPort),
    "code/threaded/package.json": pkg("threaded", "server.js"),
    "code/threaded/server.js":
      'import { isMainThread } from "node:worker_threads";\nexport default { fetch: () => new Response(`worker app, main thread: ${isMainThread}`) };\n',
    // A process app is started with the binary itself acting as bun (BUN_BE_BUN=1).
    "apps/proc/app.yaml": spec("proc", "process", processPort),
    "code/proc/package.json": pkg("proc", "server.js"),
    "code/proc/server.js":
      'import { createServer } from "node:http";\ncreateServer((req, res) => res.end(`process app ${process.pid}`)).listen(Number(process.env.PORT), "127.0.0.1");\n',
  });
  const agent = startAgent(t, [
    "--repo-url",
    repo,
    "--local-path",
    join(dir, "local"),
    "--listen",
    `127.0.0.1:${apiPort}`,
  ]);

  const status = await waitFor(
    "synced status",
    async () => {
      const parsed = JSON.parse((await get(`http://127.0.0.1:${apiPort}/status`)).body);
      if (parsed.status !== "synced")
        throw new Error(`status ${parsed.status}, errors ${JSON.stringify(parsed.errors)}`);
      return parsed;
    },
    agent,
  );
  assert.equal(status.app_count, 3);
  assert.equal(status.healthy_count, 3);
  assert.deepEqual(await get(`http://127.0.0.1:${webPort}/`), { status: 200, body: "embedded app" });
  assert.deepEqual(await get(`http://127.0.0.1:${workerPort}/`), {
    status: 200,
    body: "worker app, main thread: false",
  });
  const proc = JSON.parse((await get(`http://127.0.0.1:${apiPort}/apps/proc`)).body);
  assert.ok(Number.isInteger(proc.pid) && proc.pid !== agent.child.pid, `the process app has its own pid: ${proc.pid}`);
  assert.deepEqual(await get(`http://127.0.0.1:${processPort}/`), { status: 200, body: `process app ${proc.pid}` });

  assert.equal(await stopAgent(agent), 0, agent.output());
  for (const port of [webPort, workerPort, processPort])
    assert.equal(await portClosed(port), true, `port ${port} is closed once the agent exited`);
  assert.equal(await waitGone(proc.pid), true, `the process app (pid ${proc.pid}) is gone`);
  assert.equal(agent.stderr(), "", "nothing on stderr");
  for (const line of agent.stdout().trim().split("\n"))
    assert.doesNotThrow(() => JSON.parse(line), `not a JSON log line: ${line}`);
});

test("run installs an npm app's dependencies itself, with no npm, node or bun on PATH", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-npm-");
  const registry = await startRegistry(t);
  await registry.publish(
    { name: "bcg-shout", version: "1.0.0", type: "module", main: "./dist/index.js" },
    {
      "dist/index.js": "export const shout = (text) => `${text.toUpperCase()}!`;\n",
    },
  );
  await registry.publish(
    {
      name: "bcg-greeter",
      version: "2.0.0",
      type: "module",
      main: "server.js",
      dependencies: { "bcg-shout": "1.0.0" },
    },
    {
      "server.js":
        'import { shout } from "bcg-shout";\nexport default { fetch() { return new Response(shout("installed by the binary")); } };\n',
    },
  );
  const [appPort, apiPort] = [await freePort(), await freePort()];
  const repo = await gitopsRepo(join(dir, "repo"), {
    "apps/greeter/app.yaml": `name: greeter\nversion: "2.0.0"\nsource: { type: npm, package: bcg-greeter, registry: "${registry.url}" }\nenv: { port: ${appPort} }\nhealth: { type: http }\n`,
  });
  const env = await toolsOnlyEnv(dir);
  const agent = startAgent(
    t,
    ["--repo-url", repo, "--local-path", join(dir, "local"), "--listen", `127.0.0.1:${apiPort}`],
    env,
  );

  const page = await waitFor("answer from the npm app", () => get(`http://127.0.0.1:${appPort}/`), agent);
  assert.deepEqual(page, { status: 200, body: "INSTALLED BY THE BINARY!" });
  // The app answers as soon as it listens; the agent records it once its deploy has finished.
  const state = await waitFor(
    "the agent to record the deployed app",
    async () => {
      const app = JSON.parse((await get(`http://127.0.0.1:${apiPort}/apps/greeter`)).body);
      return app.status === "running" && app.revision !== null ? app : undefined;
    },
    agent,
  );
  assert.equal(state.revision, "2.0.0");
  const installed = JSON.parse(await readFile(join(state.path, "node_modules", "bcg-shout", "package.json"), "utf8"));
  assert.equal(installed.version, "1.0.0");
  assert.ok(
    registry.requests.includes("GET /bcg-shout/-/bcg-shout-1.0.0.tgz"),
    `the dependency came from the fixture registry: ${registry.requests.join(", ")}`,
  );

  assert.equal(await stopAgent(agent), 0, agent.output());
  assert.equal(await portClosed(appPort), true);
});
