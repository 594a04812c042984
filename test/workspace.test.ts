import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, lstat, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { GitopsError } from "../src/errors.ts";
import { exec } from "../src/exec.ts";
import { AppSpec } from "../src/spec.ts";
import type { AppSpecInput } from "../src/spec.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { WORKSPACE_MARKER, Workspaces } from "../src/workspace.ts";
import { git, gitopsRepo } from "./helpers/gitops-repo.ts";
import { startRegistry } from "./helpers/registry.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

const APPS = fileURLToPath(new URL("./fixtures/apps/", import.meta.url));
const LONG = { timeout: 60_000 };

/** Installers must not read or fill the user's package caches: each run of this file gets its own. */
const saved: Record<string, string | undefined> = {};
let caches = "";
before(async () => {
  caches = await mkdtemp(join(tmpdir(), "bc-gitops-caches-"));
  for (const [key, dir] of [
    ["BUN_INSTALL_CACHE_DIR", "bun"],
    ["DENO_DIR", "deno"],
    ["npm_config_cache", "npm"],
  ] as const) {
    saved[key] = process.env[key];
    process.env[key] = join(caches, dir);
  }
});
after(async () => {
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  await rm(caches, { recursive: true, force: true });
});

const spec = (input: AppSpecInput): AppSpec => AppSpec.parse(input);

/** Cleanups of one test. (Deno 2.9 never runs `t.after` callbacks of tests inside `describe`, so tests use this.) */
interface Scope {
  after(cleanup: () => unknown): void;
}

/** A test whose cleanups run when it ends, pass or fail, on every runtime. */
function it(name: string, fn: (t: Scope) => Promise<void>): void {
  test(name, LONG, async () => {
    const cleanups: (() => unknown)[] = [];
    try {
      await fn({ after: (cleanup) => void cleanups.push(cleanup) });
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup();
    }
  });
}

async function setup(t: Scope) {
  const root = await tempDir(t, "bc-gitops-ws-");
  const events: TelemetryEvent[] = [];
  const workspaces = new Workspaces({
    localPath: join(root, "local"),
    emit: (name, measurements = {}, metadata = {}) => events.push({ name, measurements, metadata }),
    timeoutMs: 60_000,
  });
  return { root, local: join(root, "local"), workspaces, events };
}

/** The with-dep fixture as path app "dep" under `root`, its dependency (1.0.0 and 1.1.0) served by a fixture registry set as the user's. */
async function withDepApp(t: Scope, root: string) {
  const reg = await registry(t);
  await reg.publish("@fixtures/greeting", "1.0.0", join(APPS, "greeting"));
  await reg.publish("@fixtures/greeting", "1.1.0", join(APPS, "greeting"));
  const src = join(root, "with-dep");
  await cp(join(APPS, "with-dep"), src, { recursive: true });
  const before = process.env.NPM_CONFIG_REGISTRY;
  process.env.NPM_CONFIG_REGISTRY = reg.url;
  t.after(() =>
    before === undefined ? delete process.env.NPM_CONFIG_REGISTRY : (process.env.NPM_CONFIG_REGISTRY = before),
  );
  return { src, s: spec({ name: "dep", version: "1.0.0", source: { type: "path", path: src } }) };
}

async function registry(t: Scope) {
  const reg = await startRegistry();
  t.after(() => reg.close());
  return reg;
}

async function failure(promise: Promise<unknown>): Promise<GitopsError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GitopsError, `expected a GitopsError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a rejection");
}

/** What a workspace's app directory holds on disk (leftovers included). */
const listing = (local: string, app: string) => readdir(join(local, "workspace", app)).catch(() => [] as string[]);

async function importFetch(entry: string): Promise<string> {
  const mod = (await import(pathToFileURL(entry).href)) as {
    default: { fetch(r: Request): Response | Promise<Response> };
  };
  return (await mod.default.fetch(new Request("http://app.test/hi"))).text();
}

describe("npm sources", () => {
  it("an unscoped package is downloaded, verified and unpacked without its package/ prefix", async (t) => {
    const { local, workspaces } = await setup(t);
    const reg = await registry(t);
    await reg.publish("hello-fetch", "1.0.0", join(APPS, "hello-fetch"));
    const ws = await workspaces.prepare(
      spec({ name: "hello", version: "1.0.0", source: { type: "npm", package: "hello-fetch", registry: reg.url } }),
    );
    assert.deepEqual(ws, {
      app: "hello",
      revision: "1.0.0",
      dir: join(local, "workspace", "hello", "1.0.0"),
      entry: join(local, "workspace", "hello", "1.0.0", "index.js"),
      reused: false,
    });
    assert.equal(await importFetch(ws.entry), "hello from hello-fetch: /hi");
    assert.ok(reg.requests.includes("GET /hello-fetch"));
    assert.deepEqual(await listing(local, "hello"), ["1.0.0"]);
  });

  it("a scoped package is fetched by its encoded name and its dependency is installed from the same registry", async (t) => {
    const { workspaces, events } = await setup(t);
    const reg = await registry(t);
    await reg.publish("@fixtures/greeting", "1.0.0", join(APPS, "greeting"));
    await reg.publish("@acme/with-dep", "2.0.0", join(APPS, "with-dep"));
    const ws = await workspaces.prepare(
      spec({ name: "web", version: "2.0.0", source: { type: "npm", package: "@acme/with-dep", registry: reg.url } }),
    );
    assert.ok(reg.requests.includes("GET /@acme%2fwith-dep"), reg.requests.join("\n"));
    const dep = join(ws.dir, "node_modules", "@fixtures", "greeting");
    assert.equal(JSON.parse(await readFile(join(dep, "package.json"), "utf8")).version, "1.0.0");
    const { greet } = (await import(pathToFileURL(join(dep, "index.js")).href)) as { greet(n: string): string };
    assert.equal(greet("x"), "hello, x");
    assert.deepEqual(
      events.map((e) => [e.name, e.metadata]),
      [
        ["bc_gitops:deps:start", { app: "web", version: "2.0.0" }],
        ["bc_gitops:deps:stop", { app: "web", version: "2.0.0" }],
      ],
    );
    assert.equal(typeof events[1]?.measurements.duration_ms, "number");
  });

  it("without a registry in the spec, the user's configured registry serves the package and its dependencies", async (t) => {
    const { workspaces } = await setup(t);
    const reg = await registry(t);
    await reg.publish("@fixtures/greeting", "1.0.0", join(APPS, "greeting"));
    await reg.publish("with-dep", "1.0.0", join(APPS, "with-dep"));
    const before = process.env.NPM_CONFIG_REGISTRY;
    process.env.NPM_CONFIG_REGISTRY = reg.url;
    t.after(() =>
      before === undefined ? delete process.env.NPM_CONFIG_REGISTRY : (process.env.NPM_CONFIG_REGISTRY = before),
    );
    const ws = await workspaces.prepare(spec({ name: "with-dep", version: "1.0.0" }));
    assert.ok((await stat(join(ws.dir, "node_modules", "@fixtures", "greeting", "index.js"))).isFile());
    assert.ok(reg.requests.includes("GET /with-dep"));
  });

  it("a tarball that does not match the registry's integrity is refused and leaves no workspace", async (t) => {
    const { local, workspaces, events } = await setup(t);
    const reg = await registry(t);
    const { integrity } = await reg.publish("hello-fetch", "1.0.0", join(APPS, "hello-fetch"));
    reg.tamper("hello-fetch", "1.0.0");
    const error = await failure(
      workspaces.prepare(spec({ name: "hello-fetch", version: "1.0.0", source: { type: "npm", registry: reg.url } })),
    );
    assert.equal(error.code, "E_RUNTIME");
    assert.match(error.message, /failed verification: expected sha512-/);
    assert.ok(error.message.includes(integrity));
    assert.deepEqual(await listing(local, "hello-fetch"), []);
    assert.deepEqual(await workspaces.revisions("hello-fetch"), []);
    assert.deepEqual(events, []);
  });

  it("a version the registry does not have is a stalled E_NOT_FOUND that names the latest", async (t) => {
    const { workspaces } = await setup(t);
    const reg = await registry(t);
    await reg.publish("hello-fetch", "1.0.0", join(APPS, "hello-fetch"));
    const error = await failure(
      workspaces.prepare(spec({ name: "hello-fetch", version: "9.9.9", source: { type: "npm", registry: reg.url } })),
    );
    assert.deepEqual([error.code, error.retry], ["E_NOT_FOUND", "stalled"]);
    assert.match(error.message, /9\.9\.9.*latest is 1\.0\.0/);
  });
});

describe("git sources", () => {
  async function repo(t: Scope) {
    const r = await gitopsRepo(t, {
      "package.json": JSON.stringify({ name: "g", type: "module", main: "index.js" }),
      "index.js": "export const v = 1;\n",
      "packages/web/package.json": JSON.stringify({
        name: "web",
        type: "module",
        exports: { ".": { import: "./server.js" } },
      }),
      "packages/web/server.js": "export const web = 1;\n",
    });
    const first = await git(r.work, "rev-parse", "HEAD");
    await git(r.work, "tag", "-a", "v1", "-m", "v1");
    await git(r.work, "push", "-q", r.bare, "v1");
    const second = await r.commit({ "index.js": "export const v = 2;\n" });
    return { ...r, first, second };
  }

  it("a branch, an annotated tag, a full sha and the remote's HEAD each resolve to their commit and materialise its tree", async (t) => {
    const { workspaces } = await setup(t);
    const r = await repo(t);
    const cases: { ref: string | undefined; commit: string; v: string }[] = [
      { ref: "main", commit: r.second, v: "2" },
      { ref: "v1", commit: r.first, v: "1" },
      { ref: r.first, commit: r.first, v: "1" },
      { ref: undefined, commit: r.second, v: "2" },
    ];
    for (const { ref, commit, v } of cases) {
      const s = spec({ name: "g", version: "1.0.0", source: { type: "git", url: r.bare, ...(ref ? { ref } : {}) } });
      assert.equal(await workspaces.resolveRevision(s, {}), commit, `ref ${ref}`);
      const ws = await workspaces.prepare(s, {});
      assert.equal(ws.revision, commit);
      assert.equal(basename(ws.dir), commit);
      assert.equal(await readFile(ws.entry, "utf8"), `export const v = ${v};\n`, `ref ${ref}`);
      assert.equal(await stat(join(ws.dir, ".git")).catch(() => undefined), undefined);
    }
    assert.deepEqual((await workspaces.revisions("g")).sort(), [r.first, r.second].sort());
  });

  it("a subdir becomes the package root, and a relative url is relative to the gitops repo", async (t) => {
    const { workspaces } = await setup(t);
    const r = await repo(t);
    const s = spec({
      name: "web",
      version: "1.0.0",
      source: { type: "git", url: "remote.git", ref: "main", subdir: "packages/web" },
    });
    const ws = await workspaces.prepare(s, { repoDir: r.root });
    assert.equal(ws.entry, join(ws.dir, "server.js"));
    assert.deepEqual((await readdir(ws.dir)).sort(), [WORKSPACE_MARKER, "package.json", "server.js"]);
  });

  it("a missing branch, a missing subdir and an option-like url are refused with clear errors", async (t) => {
    const { workspaces, local } = await setup(t);
    const r = await repo(t);
    const noBranch = await failure(
      workspaces.prepare(spec({ name: "g", version: "1", source: { type: "git", url: r.bare, ref: "nope" } })),
    );
    assert.deepEqual([noBranch.code, noBranch.retry], ["E_GIT_REF", "stalled"]);
    const noSubdir = await failure(
      workspaces.prepare(spec({ name: "g", version: "1", source: { type: "git", url: r.bare, subdir: "missing" } })),
    );
    assert.equal(noSubdir.code, "E_NOT_FOUND");
    assert.match(noSubdir.message, /subdir missing/);
    const dashed = spec({ name: "g", version: "1", source: { type: "git", url: r.bare, ref: "main" } });
    Object.assign(dashed.source, { url: "--upload-pack=touch /tmp/pwned" });
    assert.equal((await failure(workspaces.prepare(dashed))).code, "E_UNSAFE");
    assert.deepEqual(await listing(local, "g"), []);
  });
});

describe("path sources", () => {
  it("the revision is a content hash that changes with a file, but not with node_modules or .git", async (t) => {
    const { root, workspaces } = await setup(t);
    await cp(join(APPS, "lifecycle"), join(root, "repo", "apps-src", "lifecycle"), { recursive: true });
    const s = spec({ name: "life", version: "1.0.0", source: { type: "path", path: "apps-src/lifecycle" } });
    const context = { repoDir: join(root, "repo") };
    const first = await workspaces.resolveRevision(s, context);
    assert.match(first, /^sha256-[0-9a-f]{16}$/);
    await writeTree(join(root, "repo", "apps-src", "lifecycle"), {
      "node_modules/x/index.js": "1",
      ".git/HEAD": "ref",
    });
    assert.equal(await workspaces.resolveRevision(s, context), first);
    const ws = await workspaces.prepare(s, context);
    assert.equal(ws.revision, first);
    assert.equal(ws.entry, join(ws.dir, "src", "app.js"));
    assert.deepEqual((await readdir(ws.dir)).sort(), [WORKSPACE_MARKER, "package.json", "src"]);
    await writeFile(join(root, "repo", "apps-src", "lifecycle", "src", "app.js"), "export async function start() {}\n");
    const second = await workspaces.resolveRevision(s, context);
    assert.notEqual(second, first);
    const next = await workspaces.prepare(s, context);
    assert.equal(next.revision, second);
    assert.equal(await readFile(next.entry, "utf8"), "export async function start() {}\n");
    assert.deepEqual(await workspaces.revisions("life"), [first, second]);
  });

  it("a new revision with unchanged dependency manifests reuses node_modules; a changed manifest reinstalls", async (t) => {
    const { root, workspaces, events } = await setup(t);
    const { src, s } = await withDepApp(t, root);
    const installs = () => events.filter((e) => e.name === "bc_gitops:deps:start").length;
    const dep = (dir: string) => join(dir, "node_modules", "@fixtures", "greeting", "package.json");

    const a = await workspaces.prepare(s);
    assert.equal(installs(), 1);
    await writeFile(join(src, "index.js"), "export default { fetch: () => new Response('b') };\n");
    const b = await workspaces.prepare(s);
    assert.notEqual(b.revision, a.revision);
    assert.equal(installs(), 1, "unchanged dependencies are not reinstalled");
    assert.equal((await stat(dep(b.dir))).ino, (await stat(dep(a.dir))).ino, "node_modules is the previous revision's");
    const pkg = JSON.parse(await readFile(join(src, "package.json"), "utf8"));
    await writeFile(
      join(src, "package.json"),
      JSON.stringify({ ...pkg, dependencies: { "@fixtures/greeting": "1.1.0" } }),
    );
    const c = await workspaces.prepare(s);
    assert.equal(installs(), 2);
    assert.equal(JSON.parse(await readFile(dep(c.dir), "utf8")).version, "1.1.0");
  });
});

describe("dependencies across revisions", () => {
  it("unchanged dependencies are a symlink into the revision that installed them, which prune keeps while a kept revision links to it", async (t) => {
    const { root, workspaces, events } = await setup(t);
    const { src, s } = await withDepApp(t, root);
    const installs = () => events.filter((e) => e.name === "bc_gitops:deps:start").length;
    const greeting = async (dir: string) =>
      JSON.parse(await readFile(join(dir, "node_modules", "@fixtures", "greeting", "package.json"), "utf8")).version;
    const change = (body: string) =>
      writeFile(join(src, "index.js"), `export default { fetch: () => new Response(${JSON.stringify(body)}) };\n`);

    const home = await workspaces.prepare(s);
    const revisions = [home.revision];
    for (const body of ["b", "c"]) {
      await change(body);
      const next = await workspaces.prepare(s, { shareWith: revisions.at(-1)! });
      revisions.push(next.revision);
      assert.equal(
        await readlink(join(next.dir, "node_modules")),
        join("..", home.revision, "node_modules"),
        "a link into the revision that installed them, not to another link",
      );
      assert.equal(await greeting(next.dir), "1.0.0");
    }
    assert.equal(installs(), 1);
    const [, b, c] = revisions as [string, string, string];
    await workspaces.prune("dep", [c]);
    assert.deepEqual(
      (await workspaces.revisions("dep")).sort(),
      [home.revision, c].sort(),
      "the home stays, the revision in between goes",
    );
    assert.equal(await greeting(join(root, "local", "workspace", "dep", c)), "1.0.0");
    assert.equal((await workspaces.revisions("dep")).includes(b), false);

    const pkg = JSON.parse(await readFile(join(src, "package.json"), "utf8"));
    await writeFile(
      join(src, "package.json"),
      JSON.stringify({ ...pkg, dependencies: { "@fixtures/greeting": "1.1.0" } }),
    );
    const fresh = await workspaces.prepare(s, { shareWith: c });
    assert.equal(installs(), 2);
    assert.equal(
      (await lstat(join(fresh.dir, "node_modules"))).isSymbolicLink(),
      false,
      "changed dependencies are installed in the new revision",
    );
    await workspaces.prune("dep", [fresh.revision]);
    assert.deepEqual(
      await workspaces.revisions("dep"),
      [fresh.revision],
      "no kept revision links to the old home any more",
    );
  });
});

describe("dependency installs", () => {
  async function withDep(t: Scope, root: string, dependencies: Record<string, string>) {
    const reg = await registry(t);
    await reg.publish("@fixtures/greeting", "1.0.0", join(APPS, "greeting"));
    const src = join(root, "with-dep");
    await cp(join(APPS, "with-dep"), src, { recursive: true });
    const pkg = JSON.parse(await readFile(join(src, "package.json"), "utf8"));
    await writeFile(join(src, "package.json"), JSON.stringify({ ...pkg, dependencies }));
    const saved = process.env.NPM_CONFIG_REGISTRY;
    process.env.NPM_CONFIG_REGISTRY = reg.url;
    t.after(() =>
      saved === undefined ? delete process.env.NPM_CONFIG_REGISTRY : (process.env.NPM_CONFIG_REGISTRY = saved),
    );
    return spec({ name: "dep", version: "1.0.0", source: { type: "path", path: src } });
  }

  it("a failed install is an E_RUNTIME carrying the installer's output, and leaves no workspace", async (t) => {
    const { root, local, workspaces, events } = await setup(t);
    const s = await withDep(t, root, { "@fixtures/greeting": "1.0.0", "@fixtures/not-published": "1.0.0" });
    const error = await failure(workspaces.prepare(s));
    assert.deepEqual([error.code, error.retry], ["E_RUNTIME", "backoff"]);
    assert.match(error.message, /installing the dependencies of dep with (bun|deno|npm) failed/);
    assert.match(error.message, /not-published/, "the installer's own words say what is missing");
    assert.deepEqual(
      events.map((e) => e.name),
      ["bc_gitops:deps:start", "bc_gitops:deps:stop"],
    );
    assert.equal(typeof events[1]?.metadata.error, "string");
    assert.deepEqual(await listing(local, "dep"), []);
  });

  it("a prepare aborted when its install starts fails with E_ABORTED and leaves no workspace", async (t) => {
    const { root, local } = await setup(t);
    const s = await withDep(t, root, { "@fixtures/greeting": "1.0.0" });
    const controller = new AbortController();
    const workspaces = new Workspaces({
      localPath: local,
      emit: (name) => name === "bc_gitops:deps:start" && controller.abort(new Error("agent stopping")),
    });
    const error = await failure(workspaces.prepare(s, { signal: controller.signal }));
    assert.equal(error.code, "E_ABORTED");
    assert.deepEqual(await listing(local, "dep"), []);
  });
});

describe("tarball sources", () => {
  async function release(t: Scope) {
    const dir = await tempDir(t, "bc-gitops-release-");
    await cp(join(APPS, "hello-fetch"), join(dir, "hello-fetch-1.0.0"), { recursive: true });
    await exec("tar", ["-czf", join(dir, "release.tgz"), "-C", dir, "hello-fetch-1.0.0"]);
    const bytes = await readFile(join(dir, "release.tgz"));
    return {
      dir,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`,
    };
  }

  it("a tarball from a path, a file:// URL or http is unpacked when its sha256 or integrity matches", async (t) => {
    const { workspaces } = await setup(t);
    const rel = await release(t);
    const reg = await registry(t);
    const served = await reg.publish("hello-fetch", "1.0.0", join(APPS, "hello-fetch"));
    const cases = [
      { url: "release.tgz", checksum: { sha256: rel.sha256 } },
      { url: pathToFileURL(join(rel.dir, "release.tgz")).href, checksum: { integrity: rel.integrity } },
      { url: served.tarball, checksum: { integrity: served.integrity } },
    ];
    for (const { url, checksum } of cases) {
      const s = spec({ name: "rel", version: "1.0.0", source: { type: "tarball", url, ...checksum } });
      const ws = await workspaces.prepare(s, { repoDir: rel.dir });
      assert.equal(ws.revision, await workspaces.resolveRevision(s, {}));
      assert.match(ws.revision, /^sha256-[0-9a-f]{16}$/);
      assert.equal(await importFetch(ws.entry), "hello from hello-fetch: /hi", url);
    }
    assert.equal((await workspaces.revisions("rel")).length, 3);
  });

  it("a wrong sha256 or integrity is a stalled E_RUNTIME naming expected and actual, and nothing is installed", async (t) => {
    const { local, workspaces } = await setup(t);
    const rel = await release(t);
    const wrongSha = "0".repeat(64);
    const wrongSri = `sha512-${createHash("sha512").update("other").digest("base64")}`;
    for (const checksum of [{ sha256: wrongSha }, { integrity: wrongSri }]) {
      const s = spec({
        name: "rel",
        version: "1.0.0",
        source: { type: "tarball", url: join(rel.dir, "release.tgz"), ...checksum },
      });
      const error = await failure(workspaces.prepare(s));
      assert.deepEqual([error.code, error.retry], ["E_RUNTIME", "stalled"]);
      const [expected, actual] = checksum.sha256 ? [wrongSha, rel.sha256] : [wrongSri, rel.integrity];
      assert.ok(error.message.includes(`expected ${checksum.sha256 ? "sha256 " : ""}${expected}`), error.message);
      assert.ok(error.message.includes(`got ${checksum.sha256 ? "sha256 " : ""}${actual}`), error.message);
      assert.deepEqual(await listing(local, "rel"), []);
    }
  });

  it("an archive with a ../ entry or an absolute symlink is refused and writes nothing outside", async (t) => {
    const { root, local, workspaces } = await setup(t);
    const build = join(root, "build", "inner");
    await writeTree(build, { "package.json": "{}", "index.js": "export default {}\n" });
    await writeFile(join(root, "build", "evil"), "pwned\n");
    const dotdot = join(root, "dotdot.tgz");
    await exec("tar", ["-czf", dotdot, "-C", build, "-P", "index.js", "../evil"]);
    await rm(join(root, "build", "evil"));
    await symlink("/etc", join(build, "etc"));
    const linked = join(root, "linked.tgz");
    await exec("tar", ["-czf", linked, "-C", build, "index.js", "etc"]);
    for (const [file, pattern] of [
      [dotdot, /"\.\.\/evil"/],
      [linked, /symlink etc -> \/etc/],
    ] as const) {
      const sha256 = createHash("sha256")
        .update(await readFile(file))
        .digest("hex");
      const error = await failure(
        workspaces.prepare(spec({ name: "bad", version: "1", source: { type: "tarball", url: file, sha256 } })),
      );
      assert.equal(error.code, "E_UNSAFE");
      assert.match(error.message, pattern);
      assert.deepEqual(await listing(local, "bad"), []);
    }
    for (const dir of [join(local, "workspace"), local, root]) assert.ok(!(await readdir(dir)).includes("evil"), dir);
  });
});

describe("reuse, atomicity and housekeeping", () => {
  it("a second prepare of the same revision reuses the workspace without the network", async (t) => {
    const { workspaces, events } = await setup(t);
    const reg = await registry(t);
    await reg.publish("@fixtures/greeting", "1.0.0", join(APPS, "greeting"));
    await reg.publish("with-dep", "1.0.0", join(APPS, "with-dep"));
    const s = spec({ name: "with-dep", version: "1.0.0", source: { type: "npm", registry: reg.url } });
    const first = await workspaces.prepare(s);
    await reg.close();
    const second = await workspaces.prepare(s);
    assert.deepEqual(second, { ...first, reused: true });
    assert.equal(events.filter((e) => e.name === "bc_gitops:deps:start").length, 1);
    // Proof the registry is really gone: a version not on disk now fails to download.
    const error = await failure(
      workspaces.prepare(spec({ ...s, version: "1.0.1", source: { type: "npm", registry: reg.url } })),
    );
    assert.equal(error.code, "E_RUNTIME");
  });

  it("a half-built temp dir or an unmarked revision dir is never used and is cleaned up", async (t) => {
    const { root, local, workspaces } = await setup(t);
    await cp(join(APPS, "hello-fetch"), join(root, "src"), { recursive: true });
    const s = spec({ name: "hello", version: "1.0.0", source: { type: "path", path: join(root, "src") } });
    const revision = await workspaces.resolveRevision(s, {});
    const appDir = join(local, "workspace", "hello");
    // What a kill mid-install leaves: a temp dir, and (from a non-atomic writer) a revision dir without a marker.
    await writeTree(join(appDir, ".tmp-x"), { "index.js": "half" });
    await writeTree(join(appDir, revision), { "index.js": "export default { fetch: () => new Response('stale') };\n" });
    assert.deepEqual(await workspaces.revisions("hello"), []);
    const ws = await workspaces.prepare(s);
    assert.equal(ws.reused, false);
    assert.equal(await importFetch(ws.entry), "hello from hello-fetch: /hi");
    assert.deepEqual((await readdir(appDir)).sort(), [revision]);
    assert.deepEqual(await workspaces.revisions("hello"), [revision]);
  });

  it("prune keeps only the given revisions, remove deletes the rest, and the data dir survives both", async (t) => {
    const { root, local, workspaces } = await setup(t);
    const src = join(root, "src");
    await cp(join(APPS, "hello-fetch"), src, { recursive: true });
    const s = spec({ name: "hello", version: "1.0.0", source: { type: "path", path: src } });
    const revisions: string[] = [];
    for (const n of [1, 2, 3]) {
      await writeFile(join(src, "n.txt"), String(n));
      revisions.push((await workspaces.prepare(s)).revision);
    }
    assert.deepEqual(await workspaces.revisions("hello"), revisions);
    const data = await workspaces.dataDir("hello");
    assert.equal(data, join(local, "data", "hello"));
    await writeFile(join(data, "keep.txt"), "x");
    await workspaces.prune("hello", [revisions[2]!, "not-there"]);
    assert.deepEqual(await workspaces.revisions("hello"), [revisions[2]]);
    assert.deepEqual(await listing(local, "hello"), [revisions[2]]);
    await workspaces.remove("hello");
    assert.deepEqual(await workspaces.revisions("hello"), []);
    assert.deepEqual(await readdir(join(local, "workspace")), []);
    assert.equal(await readFile(join(data, "keep.txt"), "utf8"), "x");
    await workspaces.remove("hello"); // nothing left: still fine
  });

  it("app names and revisions that would leave local_path are refused", async (t) => {
    const { root, local, workspaces } = await setup(t);
    await cp(join(APPS, "hello-fetch"), join(root, "src"), { recursive: true });
    const s = spec({ name: "hello", version: "1.0.0", source: { type: "path", path: join(root, "src") } });
    for (const revision of ["../x", "a/b", "..", ".", ".tmp-x", "", "/etc", "a\\b"]) {
      assert.equal((await failure(workspaces.prepare(s, { revision }))).code, "E_UNSAFE", revision);
    }
    const escaping = spec({
      name: "hello",
      version: "1.0.0",
      source: { type: "npm", registry: "http://127.0.0.1:9/" },
    });
    escaping.version = "../../../evil";
    assert.equal((await failure(workspaces.prepare(escaping))).code, "E_UNSAFE");
    for (const app of ["..", "../x", "a/b", ".tmp-x", ""]) {
      assert.equal((await failure(workspaces.revisions(app))).code, "E_UNSAFE", app);
      assert.equal((await failure(workspaces.prune(app, []))).code, "E_UNSAFE", app);
      assert.equal((await failure(workspaces.remove(app))).code, "E_UNSAFE", app);
      assert.equal((await failure(workspaces.dataDir(app))).code, "E_UNSAFE", app);
    }
    assert.deepEqual(await readdir(root), ["src"], `nothing was created: ${local}`);
  });
});

describe("entry resolution", () => {
  const cases: { name: string; files: Record<string, string>; entry?: string; expect: string }[] = [
    {
      name: "the spec's entry wins",
      files: { "package.json": JSON.stringify({ main: "lib/a.js" }), "src/server.js": "" },
      entry: "src/server.js",
      expect: "src/server.js",
    },
    {
      name: "exports as a string",
      files: { "package.json": JSON.stringify({ exports: "./lib/a.js" }) },
      expect: "lib/a.js",
    },
    {
      name: 'exports with a "." string',
      files: { "package.json": JSON.stringify({ exports: { ".": "./lib/a.js", "./x": "./lib/b.js" } }) },
      expect: "lib/a.js",
    },
    {
      name: "exports with import and require",
      files: { "package.json": JSON.stringify({ exports: { ".": { require: "./lib/b.js", import: "./lib/a.js" } } }) },
      expect: "lib/a.js",
    },
    {
      name: "exports as top-level conditions",
      files: { "package.json": JSON.stringify({ exports: { types: "./x.d.ts", default: "./lib/b.js" } }) },
      expect: "lib/b.js",
    },
    {
      name: "nested conditions",
      files: {
        "package.json": JSON.stringify({ exports: { ".": { import: { types: "./x.d.ts", default: "./lib/a.js" } } } }),
      },
      expect: "lib/a.js",
    },
    {
      name: "module before main",
      files: { "package.json": JSON.stringify({ module: "./lib/a.js", main: "./lib/b.js" }) },
      expect: "lib/a.js",
    },
    { name: "main", files: { "package.json": JSON.stringify({ main: "lib/b.js" }) }, expect: "lib/b.js" },
    {
      name: "main without its extension",
      files: { "package.json": JSON.stringify({ main: "lib/a" }) },
      expect: "lib/a.js",
    },
    { name: "index.js without package.json", files: { "index.js": "", "index.ts": "" }, expect: "index.js" },
    { name: "index.ts", files: { "package.json": "{}", "index.ts": "" }, expect: "index.ts" },
    { name: "index.mjs", files: { "package.json": "{}", "index.mjs": "" }, expect: "index.mjs" },
  ];
  it("the entry is the spec's, else package.json exports, module or main, else an index file", async (t) => {
    const { root, workspaces } = await setup(t);
    for (const [i, c] of cases.entries()) {
      const src = join(root, `src-${i}`);
      await writeTree(src, { "lib/a.js": "", "lib/b.js": "", ...c.files });
      const ws = await workspaces.prepare(
        spec({
          name: `app${i}`,
          version: "1",
          source: { type: "path", path: src },
          ...(c.entry ? { entry: c.entry } : {}),
        }),
      );
      assert.equal(ws.entry, join(ws.dir, c.expect), c.name);
    }
  });

  it("an entry outside the package or missing is refused and leaves no workspace", async (t) => {
    const { root, local, workspaces } = await setup(t);
    await writeTree(join(root, "out"), { "package.json": JSON.stringify({ main: "../outside.js" }) });
    await writeFile(join(root, "outside.js"), "");
    await writeTree(join(root, "missing"), { "package.json": JSON.stringify({ main: "gone.js" }) });
    await writeTree(join(root, "none"), { "readme.md": "" });
    for (const [dir, code] of [
      ["out", "E_UNSAFE"],
      ["missing", "E_NOT_FOUND"],
      ["none", "E_NOT_FOUND"],
    ] as const) {
      const error = await failure(
        workspaces.prepare(spec({ name: dir, version: "1", source: { type: "path", path: join(root, dir) } })),
      );
      assert.equal(error.code, code, dir);
      assert.deepEqual(await listing(local, dir), [], dir);
    }
  });
});
