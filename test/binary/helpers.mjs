// Helpers of the binary tests (test/binary/*.test.mjs), run by Node so nothing of the test's own
// runtime leaks into the binary under test: the binary, real git repositories, an agent started
// and stopped by pid, a fixture npm registry on loopback, and a PATH holding only git, tar and gzip.
// Not a test file itself (`node --test test/binary/` runs only `*.test.mjs`).
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { get as httpGet, request as httpRequest, createServer } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import { delimiter, dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../..", import.meta.url));
// BC_GITOPS_BINARY: test another build (a release download, a cross-compiled one run under emulation).
export const binary = process.env.BC_GITOPS_BINARY ?? join(root, "dist", "bc-gitops");
const gitEnv = {
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@t",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@t",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

try {
  accessSync(binary, constants.X_OK);
} catch {
  throw new Error(`${binary} is missing: run \`npm run compile\` first (npm run test:binary does)`);
}

/** Runs the binary to completion (deadline 30 s); never throws on a non-zero exit. */
export function runBinary(args, options = {}) {
  try {
    const stdout = execFileSync(binary, args, {
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      ...options,
    });
    return { code: 0, stdout, stderr: "" };
  } catch (error) {
    if (error.status === null || error.status === undefined) throw error;
    return { code: error.status, stdout: error.stdout, stderr: error.stderr };
  }
}

/** A temp directory removed when the test ends. */
export async function tempDir(t, prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `{ relativePath: content }` under `dir`, creating folders. */
export async function writeTree(dir, files) {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

function git(dir, ...args) {
  return execFileSync("git", args, { cwd: dir, env: { ...process.env, ...gitEnv }, stdio: "pipe" });
}

/** A real git repository on branch main holding `files`, made with the git binary. */
export async function gitopsRepo(dir, files) {
  await writeTree(dir, files);
  git(dir, "init", "-q", "-b", "main");
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", "initial");
  return dir;
}

/** Writes `files` into the repository `dir` and commits them on its current branch. */
export async function commitFiles(dir, files, message) {
  await writeTree(dir, files);
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", message);
}

/** A port nothing listens on right now (the OS picks it; closed again before use). */
export async function freePort() {
  const server = createTcpServer();
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function collect(resolve) {
  return (response) => {
    let body = "";
    response
      .setEncoding("utf8")
      .on("data", (chunk) => (body += chunk))
      .on("end", () => resolve({ status: response.statusCode, body }));
  };
}

/** GET without keep-alive (a pooled connection would outlive the agent under test). */
export function get(url) {
  return new Promise((resolve, reject) => {
    const request = httpGet(url, { agent: false, timeout: 5000 }, collect(resolve));
    request.on("timeout", () => request.destroy(new Error(`GET ${url}: no answer within 5 s`))).on("error", reject);
  });
}

/** POST with an empty body, without keep-alive; the deadline is `ms` (a reconcile may install dependencies). */
export function post(url, ms = 120_000) {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: "POST", agent: false, timeout: ms }, collect(resolve));
    request
      .on("timeout", () => request.destroy(new Error(`POST ${url}: no answer within ${ms} ms`)))
      .on("error", reject);
    request.end();
  });
}

/** Polls `probe` until it returns a truthy value; fails after `ms` with `what` and the agent's output. */
export async function waitFor(what, probe, agent, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    if (agent.child.exitCode !== null)
      assert.fail(`the agent exited (${agent.child.exitCode}) while waiting for ${what}\n${agent.output()}`);
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
export function startAgent(t, args, env = process.env) {
  const child = spawn(binary, ["run", ...args, "--log-format", "json", "--reconcile-interval", "1h"], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
    cwd: tmpdir(),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, "SIGKILL");
  });
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    output: () => `--- stdout\n${stdout.slice(-4000)}\n--- stderr\n${stderr.slice(-4000)}`,
  };
}

/** Sends SIGTERM by pid and waits (30 s at most) for the exit; returns the exit code. */
export async function stopAgent(agent) {
  process.kill(agent.child.pid, "SIGTERM");
  let timer;
  const code = await Promise.race([
    agent.exited,
    new Promise((resolve) => (timer = setTimeout(() => resolve("timeout"), 30_000))),
  ]);
  clearTimeout(timer);
  assert.notEqual(code, "timeout", `the agent did not exit within 30 s of SIGTERM\n${agent.output()}`);
  return code;
}

/** Resolves true once nothing accepts connections on `port` (3 s at most), false otherwise. */
export function portClosed(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.setTimeout(3000, () => (socket.destroy(), resolve(false)));
    socket.once("connect", () => (socket.destroy(), resolve(false)));
    socket.once("error", (error) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** Resolves true once no process has `pid` (5 s at most). */
export async function waitGone(pid) {
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
export function which(name, path = process.env.PATH ?? "") {
  for (const dir of path.split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {}
  }
  return undefined;
}

/**
 * An environment for the agent whose PATH holds only git, tar and gzip (tar -z runs it), so no
 * installer or runtime other than the binary itself can be found; HOME and Bun's install cache
 * are inside `dir`.
 */
export async function toolsOnlyEnv(dir) {
  const bin = join(dir, "bin");
  await mkdir(bin);
  for (const tool of ["git", "tar", "gzip"]) {
    const found = which(tool);
    assert.ok(found, `${tool} is on PATH`);
    await symlink(found, join(bin, tool));
  }
  for (const absent of ["npm", "node", "bun", "deno"]) assert.equal(which(absent, bin), undefined);
  return { HOME: dir, PATH: bin, BUN_INSTALL_CACHE_DIR: join(dir, "bun-cache"), TMPDIR: tmpdir() };
}

/** A minimal npm registry on 127.0.0.1: packuments and `package/`-prefixed tarballs with sha512 integrity. */
export async function startRegistry(t) {
  const work = await tempDir(t, "bc-gitops-binary-registry-");
  const packages = new Map();
  const tarballs = new Map();
  const requests = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    // Scoped packuments come as /@scope%2fname: decoded, they match the package name.
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const body =
      tarballs.get(path) ??
      (packages.has(path.slice(1)) ? Buffer.from(JSON.stringify(packages.get(path.slice(1)))) : undefined);
    res.writeHead(body ? 200 : 404, {
      "content-type": path.endsWith(".tgz") ? "application/octet-stream" : "application/json",
      connection: "close",
    });
    res.end(body ?? '{"error":"Not found"}');
  });
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    requests,
    /** Publishes `manifest` (its package.json) with `files` beside it, as npm packs them. */
    async publish(manifest, files) {
      const stage = join(work, `${manifest.name.replace("/", "+")}-${manifest.version}`);
      await writeTree(join(stage, "package"), { ...files, "package.json": JSON.stringify(manifest) });
      execFileSync("tar", ["-czf", join(stage, "package.tgz"), "-C", stage, "package"]);
      const bytes = await readFile(join(stage, "package.tgz"));
      const tarballPath = `/${manifest.name}/-/${manifest.name.split("/").pop()}-${manifest.version}.tgz`;
      tarballs.set(tarballPath, bytes);
      const dist = {
        tarball: new URL(tarballPath.slice(1), url).href,
        integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`,
        shasum: createHash("sha1").update(bytes).digest("hex"),
      };
      packages.set(manifest.name, {
        name: manifest.name,
        "dist-tags": { latest: manifest.version },
        versions: { [manifest.version]: { ...manifest, dist } },
      });
    },
  };
}
