// Hot reload in the default runtime (SPEC section 5), embedded isolation unless a table says
// otherwise: real apps from path sources, real HTTP, a real fixture registry for dependencies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GitopsError } from "../src/errors.ts";
import { startRegistry } from "./helpers/registry.ts";
import {
  appSpec,
  getJson,
  harness,
  lifecycleApp,
  nestedFetchApp,
  revisionDirs,
  stateOf,
  underLoad,
} from "./helpers/reload-apps.ts";

interface Answer {
  message: string;
  revision: string;
}

test("a change to a nested module is live after the reload, on the same port, and only that file is listed", async (t) => {
  const h = await harness(t);
  await h.write("web", nestedFetchApp("one"));
  const before = await h.runtime.deploy(appSpec("web"));
  assert.equal((await getJson<Answer>(before.port)).message, "a+one");

  await h.write("web", { "lib/b.js": 'export const WORD = "two";\n' });
  const result = await h.runtime.hotReload(appSpec("web"));
  assert.deepEqual(result.modules, ["lib/b.js"]);
  assert.notEqual(result.revision, before.revision);
  const after = await stateOf(h, "web");
  assert.deepEqual(
    [after.port, after.started_at, after.reloads, after.revision],
    [before.port, before.started_at, 1, result.revision],
  );
  assert.deepEqual(await getJson<Answer>(after.port), { message: "a+two", revision: result.revision });

  // Added, changed and removed modules are all listed; a non-module file is not.
  await h.write("web", {
    "lib/a.js": 'import { WORD } from "./c.js";\nexport const message = () => "c+" + WORD;\n',
    "lib/c.js": 'export const WORD = "three";\n',
    "lib/b.js": null,
    "NOTES.md": "notes",
  });
  const third = await h.runtime.hotReload(appSpec("web"));
  assert.deepEqual(third.modules, ["lib/a.js", "lib/b.js", "lib/c.js"]);
  assert.equal((await getJson<Answer>(after.port)).message, "c+three");
  assert.deepEqual(
    await revisionDirs(h, "web"),
    [result.revision, third.revision].sort(),
    "the previous revision is kept, older ones pruned",
  );
  const loads = h.events.filter((e) => e.name === "bc_gitops:code:load").map((e) => e.metadata.revision);
  assert.deepEqual(loads, [before.revision, result.revision, third.revision]);
});

test("a revision that changes no module is recorded, and the running instance is left untouched", async (t) => {
  const h = await harness(t);
  await h.write("web", nestedFetchApp("one"));
  const before = await h.runtime.deploy(appSpec("web"));
  const same = await h.runtime.hotReload(appSpec("web"));
  assert.deepEqual(same, { app: "web", revision: before.revision, modules: [] });

  await h.write("web", { "README.md": "docs only" });
  const loads = h.events.filter((e) => e.name === "bc_gitops:code:load").length;
  const result = await h.runtime.hotReload(appSpec("web"));
  assert.deepEqual(result.modules, []);
  assert.notEqual(result.revision, before.revision);
  const after = await stateOf(h, "web");
  assert.deepEqual(
    [after.revision, after.started_at, after.reloads, after.port],
    [result.revision, before.started_at, 0, before.port],
  );
  assert.equal(h.events.filter((e) => e.name === "bc_gitops:code:load").length, loads, "nothing was imported");
  assert.deepEqual(
    await getJson<Answer>(after.port),
    { message: "a+one", revision: before.revision },
    "the old code still answers",
  );
});

test("unchanged dependencies in node_modules are not evaluated again, and the revision holding them survives pruning", async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.close());
  const pkg = await mkdtemp(join(tmpdir(), "bc-gitops-counter-"));
  t.after(() => rm(pkg, { recursive: true, force: true }));
  // Counts its own evaluations in this process's globalThis.
  await writeFile(
    join(pkg, "package.json"),
    JSON.stringify({ name: "@fixtures/reload-counter", version: "1.0.0", type: "module", main: "index.js" }),
  );
  await writeFile(
    join(pkg, "index.js"),
    'const key = Symbol.for("bc-gitops-test:reload-counter");\nglobalThis[key] = (globalThis[key] ?? 0) + 1;\nexport const evaluations = () => globalThis[key];\n',
  );
  await registry.publish("@fixtures/reload-counter", "1.0.0", pkg);
  const before = process.env.NPM_CONFIG_REGISTRY;
  process.env.NPM_CONFIG_REGISTRY = registry.url;
  t.after(() =>
    before === undefined ? delete process.env.NPM_CONFIG_REGISTRY : (process.env.NPM_CONFIG_REGISTRY = before),
  );
  const counter = () =>
    (globalThis as Record<symbol, number | undefined>)[Symbol.for("bc-gitops-test:reload-counter")] ?? 0;

  const h = await harness(t);
  const app = (word: string) => ({
    "package.json": JSON.stringify({
      name: "counted",
      version: "1.0.0",
      type: "module",
      main: "index.js",
      dependencies: { "@fixtures/reload-counter": "1.0.0" },
    }),
    "index.js":
      'import { evaluations } from "@fixtures/reload-counter";\nimport { WORD } from "./word.js";\nexport default { fetch: () => Response.json({ message: WORD, evaluations: evaluations() }) };\n',
    "word.js": `export const WORD = ${JSON.stringify(word)};\n`,
  });
  await h.write("counted", app("one"));
  const first = await h.runtime.deploy(appSpec("counted"));
  const evaluated = counter();
  assert.ok(evaluated >= 1);
  assert.deepEqual(await getJson(first.port), { message: "one", evaluations: evaluated });

  const revisions = [first.revision];
  for (const word of ["two", "three", "four"]) {
    await h.write("counted", { "word.js": `export const WORD = ${JSON.stringify(word)};\n` });
    const result = await h.runtime.hotReload(appSpec("counted"));
    assert.deepEqual(result.modules, ["word.js"]);
    revisions.push(result.revision);
    assert.deepEqual(
      await getJson(first.port),
      { message: word, evaluations: evaluated },
      `after the reload to ${word}`,
    );
  }
  assert.equal(counter(), evaluated, "the dependency was evaluated once in all");
  const current = await stateOf(h, "counted");
  assert.ok(
    (await lstat(join(current.path!, "node_modules"))).isSymbolicLink(),
    "the new revision links the packages already loaded",
  );
  assert.deepEqual(
    await revisionDirs(h, "counted"),
    [revisions[0], revisions[2], revisions[3]].sort(),
    "the revision that holds node_modules is kept",
  );
});

const BROKEN = [
  { what: "a syntax error", files: { "lib/b.js": "export const WORD = ;\n" }, error: /cannot load .*index\.js/ },
  {
    what: "a module that throws while it is imported",
    files: { "lib/b.js": 'export const WORD = "never";\nthrow new Error("b refuses");\n' },
    error: /b refuses/,
  },
  { what: "an entry that is not an app", files: { "index.js": "export const nothing = 1;\n" }, error: /is not an app/ },
] as const;

for (const { what, files, error } of BROKEN) {
  test(`a new revision with ${what} leaves the old one serving and reports the error`, async (t) => {
    const h = await harness(t);
    await h.write("web", nestedFetchApp("one"));
    const before = await h.runtime.deploy(appSpec("web"));
    await h.write("web", files);
    await assert.rejects(h.runtime.hotReload(appSpec("web")), (e: unknown) => {
      assert.ok(e instanceof GitopsError);
      assert.match(e.message, /^hot reload of web 1\.0\.0 to sha256-[0-9a-f]{16} failed: /);
      assert.match(e.message, error);
      assert.match(e.message, /the running revision keeps serving$/);
      return true;
    });
    const after = await stateOf(h, "web");
    assert.deepEqual(
      [after.status, after.revision, after.reloads, after.port],
      ["running", before.revision, 0, before.port],
    );
    assert.match(after.last_error ?? "", error);
    assert.equal((await getJson<Answer>(after.port)).message, "a+one");
    // Fixing it reloads, and clears the error.
    await h.write("web", nestedFetchApp("fixed"));
    await h.runtime.hotReload(appSpec("web"));
    const fixed = await stateOf(h, "web");
    assert.equal(fixed.last_error, undefined);
    assert.equal((await getJson<Answer>(fixed.port)).message, "a+fixed");
  });
}

for (const isolation of ["embedded", "worker"] as const) {
  test(`${isolation === "embedded" ? "an" : "a"} ${isolation} fetch app under continuous requests answers every request during several reloads, with the old or the new code`, async (t) => {
    const h = await harness(t);
    await h.write("web", nestedFetchApp("v0"));
    const spec = appSpec("web", { isolation });
    const { port } = await h.runtime.deploy(spec);
    const seen = await underLoad(Number(port), async () => {
      for (let i = 1; i <= 5; i++) {
        await h.write("web", { "lib/b.js": `export const WORD = "v${i}";\n` });
        assert.deepEqual((await h.runtime.hotReload(spec)).modules, ["lib/b.js"]);
        await new Promise((resolve) => setTimeout(resolve, 30));
      }
    });
    assert.deepEqual(seen.failures, [], `${seen.failures.length} of ${seen.ok + seen.failures.length} requests failed`);
    assert.ok(seen.ok > 0);
    for (const message of seen.seen) assert.match(message, /^a\+v[0-5]$/);
    assert.ok(seen.seen.has("a+v5"), "the last version answered");
    assert.ok(seen.seen.size >= 2, `several versions answered: ${[...seen.seen].join(", ")}`);
    assert.equal((await stateOf(h, "web")).reloads, 5);
  });
}

test("a request that started on the old handler finishes there, while new requests get the new code", async (t) => {
  const h = await harness(t);
  await h.write("web", nestedFetchApp("old"));
  const { port } = await h.runtime.deploy(appSpec("web"));
  const slow = fetch(`http://127.0.0.1:${port}/slow`, { signal: AbortSignal.timeout(5000) }).then(
    (r) => r.json() as Promise<Answer>,
  );
  await new Promise((resolve) => setTimeout(resolve, 30));
  await h.write("web", { "lib/b.js": 'export const WORD = "new";\n' });
  await h.runtime.hotReload(appSpec("web"));
  assert.equal((await getJson<Answer>(port)).message, "a+new");
  assert.equal((await slow).message, "a+old");
});

test("a lifecycle app that exports hotReload takes over its previous instance in place", async (t) => {
  const h = await harness(t);
  await h.write("life", lifecycleApp("v1", { hotReload: true }));
  const before = await h.runtime.deploy(appSpec("life"));
  assert.deepEqual(await getJson(before.port), { tag: "v1", generation: 1 });
  await h.write("life", lifecycleApp("v2", { hotReload: true }));
  assert.deepEqual((await h.runtime.hotReload(appSpec("life"))).modules, ["tag.js"]);
  const after = await stateOf(h, "life");
  assert.equal(after.port, before.port, "same server");
  assert.deepEqual(await getJson(after.port), { tag: "v2", generation: 2 });
  const log = await readFile(join(h.local, "data", "life", "events.log"), "utf8");
  assert.deepEqual(log.trim().split("\n"), ["start v1", "hotReload v2 from generation 1"]);
  await h.runtime.remove("life");
  await assert.rejects(
    fetch(`http://127.0.0.1:${before.port}/`, { signal: AbortSignal.timeout(5000) }),
    "the old signal aborts on the final stop",
  );
});

test("a lifecycle app without hotReload is stopped and started on the new revision in the same process", async (t) => {
  const h = await harness(t);
  await h.write("life", lifecycleApp("v1"));
  const before = await h.runtime.deploy(appSpec("life"));
  await h.write("life", lifecycleApp("v2"));
  await h.runtime.hotReload(appSpec("life"));
  const after = await stateOf(h, "life");
  assert.equal((await getJson(after.port)).tag, "v2");
  assert.equal(after.reloads, 1);
  await assert.rejects(
    fetch(`http://127.0.0.1:${before.port}/`, { signal: AbortSignal.timeout(5000) }),
    "the old server was stopped",
  );
  const log = await readFile(join(h.local, "data", "life", "events.log"), "utf8");
  assert.deepEqual(log.trim().split("\n"), ["start v1", "stop v1", "start v2"]);
});

test("a lifecycle app whose new start throws gets its previous revision started again, and the error is reported", async (t) => {
  const h = await harness(t);
  await h.write("life", lifecycleApp("v1"));
  await h.runtime.deploy(appSpec("life"));
  await h.write("life", {
    "tag.js": 'export const TAG = "v2";\nexport const broken = true;\n',
    "server.js": lifecycleApp("v2")["server.js"]!.replace("if (ctx.env.fail_start)", "if (true)"),
  });
  await assert.rejects(
    h.runtime.hotReload(appSpec("life")),
    /start\(\) of life 1\.0\.0 failed: life v2 refuses to start; the previous revision was started again/,
  );
  const after = await stateOf(h, "life");
  assert.equal(after.status, "running");
  assert.equal((await getJson(after.port)).tag, "v1");
  assert.match(after.last_error ?? "", /refuses to start/);
  const log = await readFile(join(h.local, "data", "life", "events.log"), "utf8");
  assert.deepEqual(log.trim().split("\n"), ["start v1", "stop v1", "start v2", "start v1"]);
});

test("past the reload budget an embedded app's status warns to use worker isolation, and memory growth is reported as an estimate", async (t) => {
  const h = await harness(t, { reloadBudget: 2 });
  await h.write("web", nestedFetchApp("v0"));
  await h.runtime.deploy(appSpec("web"));
  for (let i = 1; i <= 3; i++) {
    await h.write("web", { "lib/b.js": `export const WORD = "v${i}";\n` });
    await h.runtime.hotReload(appSpec("web"));
    const state = await stateOf(h, "web");
    assert.equal(state.reloads, i);
    assert.equal(typeof state.memory_mb, "number");
    assert.match(String(state.memory_source), /^agent heap growth from the app's start to its last reload \(estimate/);
    if (i <= 2) assert.equal(state.warning, undefined);
    else assert.match(String(state.warning), /^3 hot reloads, past the reload budget of 2: .*Set isolation: worker/);
  }
  assert.ok(
    h.logs.some((l) => l.startsWith("warn [web] 3 hot reloads, past the reload budget of 2")),
    h.logs.join("\n"),
  );
});

test("an app that is not deployed cannot be hot-reloaded", async (t) => {
  const h = await harness(t);
  await assert.rejects(h.runtime.hotReload(appSpec("ghost")), {
    code: "E_NOT_FOUND",
    message: "ghost is not deployed: nothing to hot-reload",
  });
});
