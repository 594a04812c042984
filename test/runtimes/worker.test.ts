// The `worker` isolation driver through the default runtime: real Workers (node:worker_threads on
// Bun and Deno), real HTTP, apps written as files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TelemetryEvent } from "../../src/telemetry.ts";
import {
  appSpec,
  getJson,
  harness,
  lifecycleApp,
  nestedFetchApp,
  stateOf,
  until,
  type Harness,
} from "../helpers/reload-apps.ts";

/** A lifecycle app that reports where it runs, with health and reconfigure hooks; `env.crash` makes it crash after start. */
const probeApp = (tag: string) => ({
  "package.json": JSON.stringify({ name: "probe", version: "1.0.0", type: "module", main: "app.js" }),
  "app.js": `
import { createServer } from "node:http";
import { isMainThread, threadId } from "node:worker_threads";
globalThis.__bcGitopsProbe = ${JSON.stringify(tag)};
export async function start(ctx) {
  const instance = { env: ctx.env };
  instance.server = createServer((req, res) => {
    if (req.url === "/grow") { globalThis.__hog = []; for (let i = 0; i < 4e6; i++) globalThis.__hog.push({ i, s: "x" + i }); }
    res.end(JSON.stringify({ tag: ${JSON.stringify(tag)}, isMainThread, threadId, env: instance.env }));
  });
  await new Promise((resolve) => instance.server.listen(0, "127.0.0.1", resolve));
  instance.port = instance.server.address().port;
  if (ctx.env.crash === "throw") setTimeout(() => { throw new Error("probe threw from a timer"); }, 50);
  if (ctx.env.crash === "exit") setTimeout(() => process.exit(7), 50);
  ctx.log.info("probe started");
  return instance;
}
export async function stop(instance) { await new Promise((resolve) => { instance.server.close(() => resolve()); instance.server.closeAllConnections?.(); }); }
export async function reconfigure(instance, change) { instance.env = change.env; }
export async function health(instance) { return instance.env.healthy !== false; }
`,
});

interface Probe {
  tag: string;
  isMainThread: boolean;
  threadId: number;
  env: Record<string, unknown>;
}

const named = (h: Harness, name: TelemetryEvent["name"]) => h.events.filter((e) => e.name === name);

/** Every Worker the test started was terminated (each `code:load` of a worker has its `code:purge`). */
async function allWorkersEnded(h: Harness): Promise<void> {
  await h.runtime.stopAll();
  const revisions = (name: TelemetryEvent["name"]) =>
    named(h, name)
      .filter((e) => e.metadata.isolation === "worker")
      .map((e) => String(e.metadata.revision))
      .sort();
  assert.deepEqual(revisions("bc_gitops:code:purge"), revisions("bc_gitops:code:load"));
}

test("a lifecycle app runs in its own Worker; health, reconfigure, logs and memory go over messages", async (t) => {
  const h = await harness(t);
  await h.write("probe", probeApp("v1"));
  const spec = (env: Record<string, unknown>) =>
    appSpec("probe", { isolation: "worker", env: { port: 0, ...env }, health: { type: "module", interval: 60_000 } });
  const state = await h.runtime.deploy(spec({ a: 1 }));
  assert.deepEqual([state.status, state.health, state.isolation], ["running", "healthy", "worker"]);
  const answer = await getJson<Probe>(state.port);
  assert.equal(answer.isMainThread, false);
  assert.notEqual(answer.threadId, 0);
  assert.equal(
    (globalThis as Record<string, unknown>).__bcGitopsProbe,
    undefined,
    "the app's globals are not the agent's",
  );
  assert.ok(h.logs.includes("info [probe] probe started"), h.logs.join("\n"));

  const reconfigured = await h.runtime.reconfigure(spec({ a: 2, healthy: false }));
  assert.equal(reconfigured.started_at, state.started_at, "reconfigured in place");
  assert.deepEqual((await getJson<Probe>(state.port)).env, { port: 0, a: 2, healthy: false });
  assert.deepEqual(
    [await h.runtime.checkNow("probe"), await h.runtime.checkNow("probe"), await h.runtime.checkNow("probe")],
    ["healthy", "healthy", "unhealthy"],
  );

  const measured = await stateOf(h, "probe");
  assert.equal(measured.memory_source, "worker heap");
  assert.ok(typeof measured.memory_mb === "number" && measured.memory_mb > 0, `memory_mb ${measured.memory_mb}`);
  await allWorkersEnded(h);
});

test("a fetch app in a Worker gets requests with their method, headers and body, and its responses stream back", async (t) => {
  const h = await harness(t);
  await h.write("web", nestedFetchApp("one"));
  const { port } = await h.runtime.deploy(appSpec("web", { isolation: "worker" }));
  const echo = await fetch(`http://127.0.0.1:${port}/echo`, {
    method: "POST",
    body: "ping",
    headers: { "x-test": "yes" },
    signal: AbortSignal.timeout(5000),
  });
  assert.deepEqual([echo.status, echo.headers.get("x-echo"), await echo.text()], [201, "yes", "ping"]);
  const stream = await fetch(`http://127.0.0.1:${port}/stream`, { signal: AbortSignal.timeout(5000) });
  assert.equal(await stream.text(), "one,two,three");
  const head = await fetch(`http://127.0.0.1:${port}/`, { method: "HEAD", signal: AbortSignal.timeout(5000) });
  assert.equal(head.status, 200);
  assert.equal((await getJson<{ message: string }>(port)).message, "a+one");
  await allWorkersEnded(h);
});

const KINDS = [
  {
    kind: "fetch",
    app: "web",
    files: (v: string) => nestedFetchApp(v),
    changed: "lib/b.js",
    answer: async (port: unknown) => (await getJson<{ message: string }>(port)).message,
    expect: (v: string) => `a+${v}`,
  },
  {
    kind: "lifecycle",
    app: "life",
    files: (v: string) => lifecycleApp(v),
    changed: "tag.js",
    answer: async (port: unknown) => (await getJson<{ tag: string }>(port)).tag,
    expect: (v: string) => v,
  },
] as const;

for (const { kind, app, files, changed, answer, expect } of KINDS) {
  test(`a hot reload of a ${kind} app swaps in a new Worker and terminates the old one`, async (t) => {
    const h = await harness(t);
    await h.write(app, files("v1"));
    const spec = appSpec(app, { isolation: "worker" });
    const first = await h.runtime.deploy(spec);
    assert.equal(await answer(first.port), expect("v1"));
    await h.write(app, files("v2"));
    const result = await h.runtime.hotReload(spec);
    assert.deepEqual(result.modules, [changed]);
    const after = await stateOf(h, app);
    assert.equal(await answer(after.port), expect("v2"));
    assert.deepEqual([after.reloads, after.revision, after.started_at], [1, result.revision, first.started_at]);
    if (kind === "fetch") assert.equal(after.port, first.port, "the agent's listener kept its port");
    // The old Worker's exit is observed by the driver, which then reports the purge of its module graph.
    await until("the old worker to exit", () =>
      named(h, "bc_gitops:code:purge").find((e) => e.metadata.revision === first.revision),
    );
    if (kind === "lifecycle") {
      const log = await readFile(join(h.local, "data", app, "events.log"), "utf8");
      assert.deepEqual(
        log.trim().split("\n"),
        ["start v1", "stop v1", "start v2"],
        "an instance cannot move between Workers: stop, then start",
      );
    }
    await allWorkersEnded(h);
  });
}

test("a broken new revision leaves the old Worker serving, and its own Worker is terminated", async (t) => {
  const h = await harness(t);
  await h.write("web", nestedFetchApp("one"));
  const spec = appSpec("web", { isolation: "worker" });
  const first = await h.runtime.deploy(spec);
  await h.write("web", { "lib/b.js": "export const WORD = ;\n" });
  await assert.rejects(
    h.runtime.hotReload(spec),
    /^GitopsError: hot reload of web 1\.0\.0 to sha256-[0-9a-f]{16} failed: cannot load .*index\.js: .*; the running revision keeps serving$/s,
  );
  const after = await stateOf(h, "web");
  assert.deepEqual([after.status, after.revision, after.reloads], ["running", first.revision, 0]);
  assert.equal((await getJson<{ message: string }>(after.port)).message, "a+one");
  await allWorkersEnded(h);
});

test("a lifecycle app whose new start throws in the new Worker is started again in the old one", async (t) => {
  const h = await harness(t);
  await h.write("life", lifecycleApp("v1"));
  const spec = appSpec("life", { isolation: "worker" });
  await h.runtime.deploy(spec);
  await h.write("life", {
    "tag.js": 'export const TAG = "v2";\n',
    "server.js": lifecycleApp("v2")["server.js"]!.replace("if (ctx.env.fail_start)", "if (true)"),
  });
  await assert.rejects(h.runtime.hotReload(spec), /life v2 refuses to start; the previous revision was started again/);
  const after = await stateOf(h, "life");
  assert.equal(after.status, "running");
  assert.equal((await getJson<{ tag: string }>(after.port)).tag, "v1");
  await allWorkersEnded(h);
});

for (const crash of ["throw", "exit"] as const) {
  test(`a Worker that ${crash === "throw" ? "throws an uncaught error" : "exits on its own"} marks the app failed, asks for a reconcile, and a restart brings it back`, async (t) => {
    let reconciles = 0;
    const h = await harness(t, { requestReconcile: () => void reconciles++ });
    await h.write("probe", probeApp("v1"));
    const spec = appSpec("probe", { isolation: "worker", env: { port: 0, crash } });
    await h.runtime.deploy(spec);
    const failed = await until("the app to be failed", async () => {
      const state = await stateOf(h, "probe");
      return state.status === "failed" ? state : undefined;
    });
    assert.match(
      failed.last_error ?? "",
      crash === "throw" ? /^crashed: .*probe threw from a timer/ : /^crashed: the worker exited with code 7$/,
    );
    assert.equal(reconciles, 1);
    const restarted = await h.runtime.restart(appSpec("probe", { isolation: "worker" }));
    assert.equal(restarted.status, "running");
    assert.equal((await getJson<Probe>(restarted.port)).tag, "v1");
    await allWorkersEnded(h);
  });
}

test("limits.memory_mb ends a Worker whose heap grows past it, and the app is failed", async (t) => {
  const h = await harness(t);
  await h.write("probe", probeApp("v1"));
  const state = await h.runtime.deploy(appSpec("probe", { isolation: "worker", limits: { memory_mb: 64 } }));
  await fetch(`http://127.0.0.1:${state.port}/grow`, { signal: AbortSignal.timeout(20_000) }).catch(() => {});
  const failed = await until("the app to be failed", async () => {
    const now = await stateOf(h, "probe");
    return now.status === "failed" ? now : undefined;
  });
  assert.match(failed.last_error ?? "", /memory/i);
  await allWorkersEnded(h);
});

test("a crashed app whose code changed is hot-reloaded into a running app", async (t) => {
  const h = await harness(t);
  await h.write("probe", probeApp("v1"));
  const spec = appSpec("probe", { isolation: "worker", env: { port: 0, crash: "exit" } });
  await h.runtime.deploy(spec);
  await until("the app to be failed", async () => ((await stateOf(h, "probe")).status === "failed" ? true : undefined));
  await h.write("probe", { "app.js": probeApp("v2")["app.js"].replace("process.exit(7)", "void 0") });
  assert.deepEqual((await h.runtime.hotReload(spec)).modules, ["app.js"]);
  const after = await stateOf(h, "probe");
  assert.deepEqual([after.status, after.last_error], ["running", undefined]);
  assert.equal((await getJson<Probe>(after.port)).tag, "v2");
  await allWorkersEnded(h);
});
