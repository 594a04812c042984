// Smoke test of the single executable (dist/bc-gitops, built by `npm run compile`), run by Node so
// nothing of the test's own runtime leaks into the binary under test. It checks the commands that
// need no agent, then runs the agent for real on a git repository made here: one app per isolation
// (embedded; worker, whose host script must be embedded in the binary; process, started by the
// binary acting as bun through BUN_BE_BUN), and an npm-source app whose dependency the binary
// installs itself, with npm, node and bun off PATH, from a fixture registry on loopback.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { get as httpGet, createServer } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import { delimiter, dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
// BC_GITOPS_BINARY: smoke-test another build (a release download, a cross-compiled one run under emulation).
const binary = process.env.BC_GITOPS_BINARY ?? join(root, "dist", "bc-gitops");
const gitEnv = { GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t", GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" };

try {
  accessSync(binary, constants.X_OK);
} catch {
  throw new Error(`${binary} is missing: run \`npm run compile\` first (npm run test:binary does)`);
}

/** Runs the binary to completion (deadline 30 s); never throws on a non-zero exit. */
function runBinary(args, options = {}) {
  try {
    const stdout = execFileSync(binary, args, { encoding: "utf8", timeout: 30_000, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"], ...options });
    return { code: 0, stdout, stderr: "" };
  } catch (error) {
    if (error.status === null || error.status === undefined) throw error;
    return { code: error.status, stdout: error.stdout, stderr: error.stderr };
  }
}

async function tempDir(t, prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function writeTree(dir, files) {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

/** A real git repository on branch main holding `files`, made with the git binary. */
async function gitopsRepo(dir, files) {
  await writeTree(dir, files);
  const git = (...args) => execFileSync("git", args, { cwd: dir, env: { ...process.env, ...gitEnv }, stdio: "pipe" });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-q", "-m", "initial");
  return dir;
}

/** A port nothing listens on right now (the OS picks it; closed again before use). */
async function freePort() {
  const server = createTcpServer();
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** GET without keep-alive (a pooled connection would outlive the agent under test). */
function get(url) {
  return new Promise((resolve, reject) => {
    const request = httpGet(url, { agent: false, timeout: 5000 }, (response) => {
      let body = "";
      response.setEncoding("utf8").on("data", (chunk) => (body += chunk)).on("end", () => resolve({ status: response.statusCode, body }));
    });
    request.on("timeout", () => request.destroy(new Error(`GET ${url}: no answer within 5 s`))).on("error", reject);
  });
}

/** Polls `probe` until it returns a truthy value; fails after `ms` with `what` and the agent's output. */
async function waitFor(what, probe, agent, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    if (agent.child.exitCode !== null) assert.fail(`the agent exited (${agent.child.exitCode}) while waiting for ${what}\n${agent.output()}`);
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`no ${what} within ${ms} ms (last error: ${last?.message})\n${agent.output()}`);
}

/** Starts `bc-gitops run …` with JSON logs; killed (SIGKILL, by pid) when the test ends if still running. */
function startAgent(t, args, env = process.env) {
  const child = spawn(binary, ["run", ...args, "--log-format", "json", "--reconcile-interval", "1h"], { stdio: ["ignore", "pipe", "pipe"], env, cwd: tmpdir() });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, "SIGKILL");
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr, output: () => `--- stdout\n${stdout.slice(-4000)}\n--- stderr\n${stderr.slice(-4000)}` };
}

/** Sends SIGTERM by pid and waits (30 s at most) for the exit; returns the exit code. */
async function stopAgent(agent) {
  process.kill(agent.child.pid, "SIGTERM");
  let timer;
  const code = await Promise.race([agent.exited, new Promise((resolve) => (timer = setTimeout(() => resolve("timeout"), 30_000)))]);
  clearTimeout(timer);
  assert.notEqual(code, "timeout", `the agent did not exit within 30 s of SIGTERM\n${agent.output()}`);
  return code;
}

/** Resolves true once nothing accepts connections on `port` (3 s at most), false otherwise. */
function portClosed(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.setTimeout(3000, () => (socket.destroy(), resolve(false)));
    socket.once("connect", () => (socket.destroy(), resolve(false)));
    socket.once("error", (error) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** Resolves true once no process has `pid` (5 s at most). */
async function waitGone(pid) {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch (error) {
      if (error.code === "ESRCH") return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

/** The absolute path of `name` on the current PATH. */
function which(name, path = process.env.PATH ?? "") {
  for (const dir of path.split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {}
  }
  return undefined;
}

/** A minimal npm registry on 127.0.0.1: packuments and `package/`-prefixed tarballs with sha512 integrity. */
async function startRegistry(t) {
  const work = await tempDir(t, "bc-gitops-binary-registry-");
  const packages = new Map();
  const tarballs = new Map();
  const requests = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const body = tarballs.get(path) ?? (packages.has(path.slice(1)) ? Buffer.from(JSON.stringify(packages.get(path.slice(1)))) : undefined);
    res.writeHead(body ? 200 : 404, { "content-type": path.endsWith(".tgz") ? "application/octet-stream" : "application/json", connection: "close" });
    res.end(body ?? '{"error":"Not found"}');
  });
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    requests,
    async publish(manifest, files) {
      const stage = join(work, `${manifest.name}-${manifest.version}`);
      await writeTree(join(stage, "package"), { ...files, "package.json": JSON.stringify(manifest) });
      execFileSync("tar", ["-czf", join(stage, "package.tgz"), "-C", stage, "package"]);
      const bytes = await readFile(join(stage, "package.tgz"));
      const tarballPath = `/${manifest.name}/-/${manifest.name}-${manifest.version}.tgz`;
      tarballs.set(tarballPath, bytes);
      const dist = { tarball: new URL(tarballPath.slice(1), url).href, integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`, shasum: createHash("sha1").update(bytes).digest("hex") };
      packages.set(manifest.name, { name: manifest.name, "dist-tags": { latest: manifest.version }, versions: { [manifest.version]: { ...manifest, dist } } });
    },
  };
}

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
  const fromEnv = runBinary(args, { cwd: dir, env: { ...process.env, NO_COLOR: "1", BC_GITOPS_RECONCILE_INTERVAL: "soon" } });
  assert.match(fromEnv.stderr, /reconcile_interval/, "the variable itself is read");
  const fromFile = runBinary(args, { cwd: dir });
  assert.equal(fromFile.code, 1);
  assert.doesNotMatch(fromFile.stderr, /reconcile_interval/, "the .env file is not");
});

test("run deploys apps in each isolation from a git repository, reports synced, and stops them all on SIGTERM", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-run-");
  const [webPort, workerPort, processPort, apiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
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
    "code/threaded/server.js": 'import { isMainThread } from "node:worker_threads";\nexport default { fetch: () => new Response(`worker app, main thread: ${isMainThread}`) };\n',
    // A process app is started with the binary itself acting as bun (BUN_BE_BUN=1).
    "apps/proc/app.yaml": spec("proc", "process", processPort),
    "code/proc/package.json": pkg("proc", "server.js"),
    "code/proc/server.js": 'import { createServer } from "node:http";\ncreateServer((req, res) => res.end(`process app ${process.pid}`)).listen(Number(process.env.PORT), "127.0.0.1");\n',
  });
  const agent = startAgent(t, ["--repo-url", repo, "--local-path", join(dir, "local"), "--listen", `127.0.0.1:${apiPort}`]);

  const status = await waitFor("synced status", async () => {
    const parsed = JSON.parse((await get(`http://127.0.0.1:${apiPort}/status`)).body);
    if (parsed.status !== "synced") throw new Error(`status ${parsed.status}, errors ${JSON.stringify(parsed.errors)}`);
    return parsed;
  }, agent);
  assert.equal(status.app_count, 3);
  assert.equal(status.healthy_count, 3);
  assert.deepEqual(await get(`http://127.0.0.1:${webPort}/`), { status: 200, body: "embedded app" });
  assert.deepEqual(await get(`http://127.0.0.1:${workerPort}/`), { status: 200, body: "worker app, main thread: false" });
  const proc = JSON.parse((await get(`http://127.0.0.1:${apiPort}/apps/proc`)).body);
  assert.ok(Number.isInteger(proc.pid) && proc.pid !== agent.child.pid, `the process app has its own pid: ${proc.pid}`);
  assert.deepEqual(await get(`http://127.0.0.1:${processPort}/`), { status: 200, body: `process app ${proc.pid}` });

  assert.equal(await stopAgent(agent), 0, agent.output());
  for (const port of [webPort, workerPort, processPort]) assert.equal(await portClosed(port), true, `port ${port} is closed once the agent exited`);
  assert.equal(await waitGone(proc.pid), true, `the process app (pid ${proc.pid}) is gone`);
  assert.equal(agent.stderr(), "", "nothing on stderr");
  for (const line of agent.stdout().trim().split("\n")) assert.doesNotThrow(() => JSON.parse(line), `not a JSON log line: ${line}`);
});

test("run installs an npm app's dependencies itself, with no npm, node or bun on PATH", async (t) => {
  const dir = await tempDir(t, "bc-gitops-binary-npm-");
  const registry = await startRegistry(t);
  await registry.publish({ name: "bcg-shout", version: "1.0.0", type: "module", main: "index.js" }, {
    "index.js": 'export const shout = (text) => `${text.toUpperCase()}!`;\n',
  });
  await registry.publish({ name: "bcg-greeter", version: "2.0.0", type: "module", main: "server.js", dependencies: { "bcg-shout": "1.0.0" } }, {
    "server.js": 'import { shout } from "bcg-shout";\nexport default { fetch() { return new Response(shout("installed by the binary")); } };\n',
  });
  const [appPort, apiPort] = [await freePort(), await freePort()];
  const repo = await gitopsRepo(join(dir, "repo"), {
    "apps/greeter/app.yaml": `name: greeter\nversion: "2.0.0"\nsource: { type: npm, package: bcg-greeter, registry: "${registry.url}" }\nenv: { port: ${appPort} }\nhealth: { type: http }\n`,
  });
  // Only git, tar and gzip (tar -z runs it): an installer other than the binary itself cannot be found.
  const bin = join(dir, "bin");
  await mkdir(bin);
  for (const tool of ["git", "tar", "gzip"]) {
    const found = which(tool);
    assert.ok(found, `${tool} is on PATH`);
    await symlink(found, join(bin, tool));
  }
  for (const absent of ["npm", "node", "bun", "deno"]) assert.equal(which(absent, bin), undefined);
  const env = { HOME: dir, PATH: bin, BUN_INSTALL_CACHE_DIR: join(dir, "bun-cache"), TMPDIR: tmpdir() };
  const agent = startAgent(t, ["--repo-url", repo, "--local-path", join(dir, "local"), "--listen", `127.0.0.1:${apiPort}`], env);

  const page = await waitFor("answer from the npm app", () => get(`http://127.0.0.1:${appPort}/`), agent);
  assert.deepEqual(page, { status: 200, body: "INSTALLED BY THE BINARY!" });
  const state = JSON.parse((await get(`http://127.0.0.1:${apiPort}/apps/greeter`)).body);
  assert.equal(state.revision, "2.0.0");
  const installed = JSON.parse(await readFile(join(state.path, "node_modules", "bcg-shout", "package.json"), "utf8"));
  assert.equal(installed.version, "1.0.0");
  assert.ok(registry.requests.includes("GET /bcg-shout/-/bcg-shout-1.0.0.tgz"), `the dependency came from the fixture registry: ${registry.requests.join(", ")}`);

  assert.equal(await stopAgent(agent), 0, agent.output());
  assert.equal(await portClosed(appPort), true);
});
