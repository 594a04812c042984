import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { runtimeName } from "../../src/_platform.ts";
import { GitopsError } from "../../src/errors.ts";
import { exec } from "../../src/exec.ts";
import type { DefaultRuntimeOptions } from "../../src/runtimes/default.ts";
import type { AppState, RememberedApp, RuntimeContext } from "../../src/runtime.ts";
import { AppSpec } from "../../src/spec.ts";
import { countingListener, listenOn8080 } from "../helpers/listen.ts";
import { runtimeHarness, type RuntimeHarness } from "../helpers/runtime-harness.ts";
import { writeTree } from "../helpers/tmp.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/apps/", import.meta.url));
const CRASH_HOST = fileURLToPath(new URL("./crash-host.ts", import.meta.url));
const DEPENDENCY_CRASH_HOST = fileURLToPath(new URL("./dependency-crash-host.ts", import.meta.url));

type Harness = RuntimeHarness;

function harness(t: TestContext, options: Partial<RuntimeContext & DefaultRuntimeOptions> = {}): Promise<Harness> {
  return runtimeHarness(t, {
    prefix: "bc-gitops-rt-",
    fixtures: FIXTURES,
    options: () => ({ stopTimeoutMs: 500, startWindowMs: 3000, ...options }),
  });
}

/** rt-server as app "web": a lifecycle app with its own HTTP server on an OS-assigned port and an http health check. */
function web(version: string, env: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): AppSpec {
  return AppSpec.parse({
    name: "web",
    version,
    source: { type: "path", path: "code/rt-server" },
    env: { port: 0, ...env },
    health: { type: "http", path: "/health", interval: 60_000, timeout: 1000 },
    ...extra,
  });
}

/** rt-fetch as app "api": a fetch app the agent serves on an OS-assigned port. */
function api(version: string, env: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): AppSpec {
  return AppSpec.parse({
    name: "api",
    version,
    source: { type: "path", path: "code/rt-fetch" },
    env: { port: 0, ...env },
    health: { type: "http", path: "/health", interval: 60_000, timeout: 1000 },
    ...extra,
  });
}

const KINDS = [
  { kind: "lifecycle", spec: web, code: "rt-server" },
  { kind: "fetch", spec: api, code: "rt-fetch" },
] as const;

interface Answer {
  message: string;
  version: string;
  env: Record<string, unknown>;
}

async function get(state: AppState | undefined, path = "/"): Promise<Answer> {
  assert.equal(typeof state?.port, "number", `${state?.name} reports its port`);
  const response = await fetch(`http://127.0.0.1:${state!.port}${path}`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  return (await response.json()) as Answer;
}

async function refuses(port: unknown): Promise<void> {
  await assert.rejects(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) }));
}

async function current(h: Harness, app: string): Promise<AppState | undefined> {
  return (await h.runtime.getCurrentState())[app];
}

const revisionDirs = async (h: Harness, app: string) =>
  (await readdir(join(h.local, "workspace", app))).filter((n) => !n.startsWith(".")).sort();

test("a lifecycle app and a fetch app are deployed, answer HTTP, and report their state", async (t) => {
  const h = await harness(t);
  for (const { spec } of KINDS) {
    const state = await h.runtime.deploy(spec("1.0.0", { greeting: "hi" }));
    assert.equal(state.status, "running");
    assert.equal(state.health, "healthy", "the first check ran before deploy returned");
    assert.match(state.revision ?? "", /^sha256-[0-9a-f]{16}$/);
    assert.ok((await stat(state.path!)).isDirectory());
    assert.ok(!Number.isNaN(Date.parse(state.started_at ?? "")));
    assert.deepEqual([state.isolation, state.reloads, state.restarts, state.source?.type], ["embedded", 0, 0, "path"]);
    assert.deepEqual(state.env, { port: 0, greeting: "hi" });
    const answer = await get(state);
    assert.equal(answer.version, "1.0.0");
    assert.deepEqual(answer.env, { port: 0, greeting: "hi" });
    assert.deepEqual(await current(h, state.name), state);
  }
  const loads = h.events.filter((e) => e.name === "bc_gitops:code:load");
  assert.deepEqual(
    loads.map((e) => e.metadata.app),
    ["web", "api"],
  );
  assert.equal(typeof loads[0]!.measurements.duration_ms, "number");
  assert.match(String(loads[0]!.metadata.revision), /^sha256-/);
  assert.ok(
    h.events.some(
      (e) => e.name === "bc_gitops:health:change" && e.metadata.app === "api" && e.metadata.to === "healthy",
    ),
  );
});

for (const { kind, spec, code } of KINDS) {
  test(`an upgrade of a ${kind} app runs the new code from a new workspace and keeps only the previous one`, async (t) => {
    const h = await harness(t);
    const first = await h.runtime.deploy(spec("1.0.0"));
    const message = join(h.repo, "code", code, "message.js");
    await writeFile(message, 'export const MESSAGE = "version two";\n');
    const second = await h.runtime.upgrade(spec("2.0.0"), "1.0.0");
    assert.equal(second.status, "running");
    assert.equal(second.health, "healthy");
    assert.notEqual(second.revision, first.revision);
    assert.deepEqual(await get(second), { message: "version two", version: "2.0.0", env: { port: 0 } });
    await writeFile(message, 'export const MESSAGE = "version three";\n');
    const third = await h.runtime.upgrade(spec("3.0.0"), "2.0.0");
    assert.equal((await get(third)).message, "version three");
    assert.deepEqual(await revisionDirs(h, second.name), [second.revision, third.revision].sort());
  });
}

test("an upgrade whose start throws rolls back, and the old version answers again", async (t) => {
  const h = await harness(t);
  await h.runtime.deploy(web("1.0.0"));
  await assert.rejects(h.runtime.upgrade(web("2.0.0", { fail_start: true }), "1.0.0"), (error: unknown) => {
    assert.ok(error instanceof GitopsError);
    assert.match(
      error.message,
      /^upgrade web 1\.0\.0 -> 2\.0\.0 failed: .*rt-server 2\.0\.0 refuses to start; rolled back to 1\.0\.0$/,
    );
    return true;
  });
  const state = await current(h, "web");
  assert.equal(state?.version, "1.0.0");
  assert.equal(state?.status, "running");
  assert.match(state?.last_error ?? "", /rolled back to 1\.0\.0/);
  assert.equal((await get(state)).version, "1.0.0");
  const upgraded = await h.runtime.upgrade(web("2.0.0"), "1.0.0");
  assert.equal(upgraded.last_error, undefined, "a later success clears the error");
});

test("an upgrade that never becomes healthy within the start window rolls back", async (t) => {
  const h = await harness(t, { startWindowMs: 600 });
  await h.runtime.deploy(api("1.0.0"));
  const sick = join(h.local, "data", "api", "unhealthy");
  const events = h.events.length;
  // The new version answers 503 on /health from its first request: the data dir outlives versions.
  await writeFile(sick, "");
  const upgrade = h.runtime.upgrade(api("2.0.0"), "1.0.0");
  await assert.rejects(
    upgrade,
    /^GitopsError: upgrade api 1\.0\.0 -> 2\.0\.0 failed: it did not become healthy within 600 ms \(GET \/health answered 503\); rolled back to 1\.0\.0$/,
  );
  await rm(sick);
  const state = await current(h, "api");
  assert.equal(state?.version, "1.0.0");
  assert.equal((await get(state)).version, "1.0.0");
  assert.equal(await h.runtime.checkNow("api"), "healthy");
  const loads = h.events
    .slice(events)
    .filter((e) => e.name === "bc_gitops:code:load")
    .map((e) => e.metadata.version);
  assert.deepEqual(loads, ["2.0.0", "1.0.0"], "the new version was loaded, then the old one again");
});

test("an upgrade whose workspace cannot be prepared leaves the old version running untouched", async (t) => {
  const h = await harness(t);
  const before = await h.runtime.deploy(web("1.0.0"));
  const broken = web("2.0.0", {}, { source: { type: "path", path: "code/missing" } });
  await assert.rejects(
    h.runtime.upgrade(broken, "1.0.0"),
    /^GitopsError: upgrade web 1\.0\.0 -> 2\.0\.0 failed: .*not a directory.*; 1\.0\.0 keeps running$/,
  );
  const after = await current(h, "web");
  assert.deepEqual(after, before, "same instance, same port, same start time");
  assert.equal((await get(after)).version, "1.0.0");
});

test("reconfigure calls the app's reconfigure hook in place, and module health follows the app's answer", async (t) => {
  const h = await harness(t);
  const spec = (env: Record<string, unknown>) =>
    AppSpec.parse({
      name: "worker",
      version: "1.0.0",
      source: { type: "path", path: "code/lifecycle" },
      env,
      health: { type: "module", interval: 60_000 },
    });
  const first = await h.runtime.deploy(spec({ a: 1, b: 2 }));
  assert.equal(first.health, "healthy");
  const second = await h.runtime.reconfigure(spec({ a: 1, c: 3, healthy: false }));
  assert.equal(second.started_at, first.started_at, "not restarted");
  const log = await readFile(join(h.local, "data", "worker", "events.log"), "utf8");
  assert.deepEqual(log.trim().split("\n"), ['start 1.0.0 {"a":1,"b":2}', "reconfigure []"]);
  assert.deepEqual(second.env, { a: 1, c: 3, healthy: false });
  const seen = [
    await h.runtime.checkNow("worker"),
    await h.runtime.checkNow("worker"),
    await h.runtime.checkNow("worker"),
  ];
  assert.deepEqual(seen, ["healthy", "healthy", "unhealthy"]);
});

for (const { kind, spec } of KINDS) {
  test(`reconfigure of a ${kind} app without a reconfigure hook restarts it, and removed env keys are gone`, async (t) => {
    const h = await harness(t);
    await h.runtime.deploy(spec("1.0.0", { a: 1, b: 2 }));
    const state = await h.runtime.reconfigure(spec("1.0.0", { a: 3, c: 4 }));
    assert.equal(state.status, "running");
    assert.deepEqual((await get(state)).env, { port: 0, a: 3, c: 4 });
    assert.ok(
      h.logs.some((l) => l.includes(`debug [${state.name}] stopped 1.0.0`)),
      "the old instance was stopped",
    );
  });
}

test("a change of health settings alone changes the checks, not the app", async (t) => {
  const h = await harness(t);
  const first = await h.runtime.deploy(api("1.0.0", {}, { health: { type: "none" } }));
  assert.equal(first.health, "healthy", "no check: healthy once running");
  await writeFile(join(h.local, "data", "api", "unhealthy"), "");
  const state = await h.runtime.reconfigure(api("1.0.0"));
  assert.equal(state.started_at, first.started_at);
  assert.equal(state.port, first.port);
  assert.equal(state.health, "unknown", "one failed check so far");
  assert.deepEqual([await h.runtime.checkNow("api"), await h.runtime.checkNow("api")], ["unknown", "unhealthy"]);
});

test("an explicit health.port 8080 is where the app is checked, also when env.port is 0", async (t) => {
  const checked = await listenOn8080(t);
  const h = await harness(t);
  // rt-server listens on a free port of its own, never on 8080: only the agent's checks reach the listener there.
  const state = await h.runtime.deploy(
    web("1.0.0", { host: checked.host }, { health: { type: "tcp", port: 8080, interval: 60_000, timeout: 1000 } }),
  );
  assert.deepEqual([state.status, state.health], ["running", "healthy"]);
  assert.notEqual(state.port, 8080);
  assert.ok(
    checked.connections() >= 1,
    `the first health check connects to ${checked.host}:8080, got ${checked.connections()} connection(s)`,
  );
});

test("an env.port changed in place (the app's reconfigure hook) moves where the app is checked", async (t) => {
  const [before, after] = [await countingListener(t), await countingListener(t)];
  const h = await harness(t);
  const spec = (port: number) =>
    AppSpec.parse({
      name: "worker",
      version: "1.0.0",
      source: { type: "path", path: "code/lifecycle" },
      env: { port },
      health: { type: "tcp", interval: 60_000, timeout: 1000 },
    });
  const deployed = await h.runtime.deploy(spec(before.port));
  assert.equal(deployed.health, "healthy");
  const first = before.connections();
  assert.ok(first >= 1, "checked on the first env.port");
  const state = await h.runtime.reconfigure(spec(after.port));
  assert.equal(state.started_at, deployed.started_at, "not restarted");
  assert.equal(await h.runtime.checkNow("worker"), "healthy");
  assert.ok(after.connections() >= 1, "checked on the new env.port");
  assert.equal(before.connections(), first, "no longer checked on the old one");
});

test("remove stops the app, deletes its workspaces and keeps its data directory", async (t) => {
  const h = await harness(t);
  const state = await h.runtime.deploy(web("1.0.0"));
  await writeFile(join(h.local, "data", "web", "keep.txt"), "precious");
  await h.runtime.remove("web");
  await refuses(state.port);
  assert.equal(await current(h, "web"), undefined);
  await assert.rejects(stat(join(h.local, "workspace", "web")), { code: "ENOENT" });
  assert.equal(await readFile(join(h.local, "data", "web", "keep.txt"), "utf8"), "precious");
});

test("a start that throws fails the deploy with the app's message and leaves nothing running", async (t) => {
  const h = await harness(t);
  await assert.rejects(
    h.runtime.deploy(web("1.0.0", { fail_start: true })),
    /start\(\) of web 1\.0\.0 failed: rt-server 1\.0\.0 refuses to start/,
  );
  assert.deepEqual(await h.runtime.getCurrentState(), {});
});

test("a start that finishes after its deadline is stopped, so nothing keeps running unowned", async (t) => {
  const h = await harness(t, { startTimeoutMs: 100 });
  const { createServer } = await import("node:net");
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address() as { port: number };
      probe.close(() => resolve(free));
    });
  });
  await assert.rejects(h.runtime.deploy(web("1.0.0", { slow_start: 300, port })), /did not finish within 100 ms/);
  await new Promise((r) => setTimeout(r, 700)); // the late start completes at 300 ms, then is stopped
  const free = await new Promise<boolean>((resolve) => {
    const again = createServer()
      .once("error", () => resolve(false))
      .listen(port, "127.0.0.1", () => again.close(() => resolve(true)));
  });
  assert.equal(free, true, "the late instance's server was closed");
});

test("an entry that is neither a lifecycle app nor a fetch app fails with what to export", async (t) => {
  const h = await harness(t);
  await writeTree(join(h.repo, "code", "odd"), {
    "package.json": '{ "type": "module", "main": "main.js" }',
    "main.js": "export const answer = 42;\n",
  });
  const spec = AppSpec.parse({ name: "odd", version: "1", source: { type: "path", path: "code/odd" } });
  await assert.rejects(h.runtime.deploy(spec), (error: unknown) => {
    assert.ok(error instanceof GitopsError);
    assert.equal(error.retry, "stalled");
    assert.match(
      error.message,
      /odd\/sha256-[0-9a-f]{16}\/main\.js: is not an app: export async function start\(ctx\).*export default \{ fetch\(request\)/,
    );
    return true;
  });
});

test("a stop that hangs is reported after the timeout, its signal is aborted, and the app counts as stopped", async (t) => {
  const h = await harness(t, { stopTimeoutMs: 200 });
  const state = await h.runtime.deploy(web("1.0.0", { hang_stop: true }));
  await h.runtime.remove("web");
  assert.ok(
    h.logs.some((l) => l === "warn [web] stop() of web did not finish within 200 ms; it is considered stopped"),
    h.logs.join("\n"),
  );
  assert.equal(await current(h, "web"), undefined);
  await refuses(state.port); // rt-server closes its server when ctx.signal aborts
});

test("fetch apps on a taken port, and isolation levels without a driver, fail with a clear error", async (t) => {
  const h = await harness(t, { drivers: { worker: undefined, process: undefined } });
  const first = await h.runtime.deploy(api("1.0.0"));
  const clash = api("1.0.0", { port: first.port }, { name: "clash" });
  await assert.rejects(
    h.runtime.deploy(clash),
    new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}: the address is in use`),
  );
  for (const isolation of ["worker", "process"]) {
    await assert.rejects(h.runtime.deploy(api("1.0.0", {}, { name: "iso", isolation })), (error: unknown) => {
      assert.ok(error instanceof GitopsError);
      assert.deepEqual([error.code, error.retry], ["E_RUNTIME", "stalled"]);
      assert.equal(error.message, `iso: isolation: ${isolation} is not available yet; use embedded`);
      return true;
    });
  }
});

test("resolveRevision gives the revision a deploy then runs", async (t) => {
  const h = await harness(t);
  const revision = await h.runtime.resolveRevision(web("1.0.0"), { repoDir: h.repo });
  assert.equal((await h.runtime.deploy(web("1.0.0"))).revision, revision);
});

test("when the source cannot be read, the revision the agent remembers for the same spec is started from its cached workspace, not one state.json names", async (t) => {
  let remembered: Record<string, RememberedApp> = {};
  const h = await harness(t, { remembered: () => remembered });
  const ran = await h.runtime.deploy(web("1.0.0"));
  await h.runtime.stopAll();
  const remember = (spec: AppSpec) =>
    (remembered = { web: { spec, version: spec.version, revision: ran.revision ?? undefined } });
  await rm(join(h.repo, "code", "rt-server"), { recursive: true });
  // The agent owns state.json: the runtime goes by what the agent hands it, never by the file.
  await writeFile(
    join(h.local, "state.json"),
    JSON.stringify({
      version: 1,
      apps: { web: { spec: web("1.0.0"), version: "1.0.0", revision: ran.revision, workspace: ran.path } },
    }),
  );
  await assert.rejects(
    h.runtime.deploy(web("1.0.0")),
    /path source .* is not a directory/,
    "nothing remembered: no cached revision",
  );
  remember(web("1.0.0"));
  const restored = await h.runtime.deploy(web("1.0.0"));
  assert.deepEqual([restored.status, restored.revision, restored.path], ["running", ran.revision, ran.path]);
  assert.equal((await get(restored)).message, "rt-server says hello");
  assert.ok(
    h.logs.some(
      (l) => l.startsWith("warn [web] path source") && l.endsWith(`starting the cached revision ${ran.revision}`),
    ),
    h.logs.join("\n"),
  );
  await h.runtime.stopAll(); // the workspace stays: only the version differs now
  remember(web("0.9.0"));
  await assert.rejects(
    h.runtime.deploy(web("1.0.0")),
    /path source .* is not a directory/,
    "another version's revision is never used",
  );
});

test("an uncaught error thrown by a dependency linked from the revision that installed it marks the embedded app failed", async (t) => {
  const h = await harness(t);
  const runner = runtimeName === "deno" ? ["run", "-A"] : [];
  const result = await exec(process.execPath, [...runner, DEPENDENCY_CRASH_HOST, h.local, h.repo], {
    timeoutMs: 90_000,
  });
  const seen = JSON.parse(result.stdout.trim().split("\n").pop()!) as {
    linked: boolean;
    answer: unknown;
    crashed?: AppState;
    logs: string[];
  };
  assert.deepEqual([seen.linked, seen.answer], [true, { message: "two" }]);
  assert.deepEqual(
    [seen.crashed?.status, seen.crashed?.last_error],
    ["failed", "crashed: the dependency throws"],
    seen.logs.join("\n"),
  );
});

test("stopAll stops every app, dependents before their dependencies", async (t) => {
  const h = await harness(t);
  const db = await h.runtime.deploy(api("1.0.0", {}, { name: "db" }));
  const mid = await h.runtime.deploy(web("1.0.0", {}, { name: "mid", depends_on: ["db"] }));
  const top = await h.runtime.deploy(api("1.0.0", {}, { name: "top", depends_on: ["mid"] }));
  await h.runtime.stopAll();
  const stops = h.logs.filter((l) => / stopped /.test(l)).map((l) => /\[(\w+)\]/.exec(l)?.[1]);
  assert.deepEqual(stops, ["top", "mid", "db"]);
  for (const state of [db, mid, top]) await refuses(state.port);
  assert.deepEqual(await h.runtime.getCurrentState(), {});
});

for (const kind of ["throw", "reject"]) {
  test(`an app that ${kind === "throw" ? "throws from a timer" : "leaves a rejected promise"} is marked failed, and the agent process keeps running`, async (t) => {
    const h = await harness(t);
    const runner = runtimeName === "deno" ? ["run", "-A"] : [];
    const result = await exec(process.execPath, [...runner, CRASH_HOST, h.local, h.repo, kind], { timeoutMs: 60_000 });
    const seen = JSON.parse(result.stdout.trim().split("\n").pop()!) as Record<
      string,
      AppState & Answer & { logs: string[] } & Record<string, AppState>
    >;
    assert.equal(seen.crashed?.status, "failed");
    assert.equal(seen.crashed?.health, "unhealthy");
    const message = kind === "throw" ? "rt-server threw from a timer" : "rt-server rejected a promise nobody awaited";
    assert.equal(seen.crashed?.last_error, `crashed: ${message}`);
    assert.equal(seen.bystanderAnswer?.message, "rt-fetch says hello", "the other app kept serving");
    assert.deepEqual([seen.restarted?.status, seen.restarted?.restarts], ["running", 1]);
    assert.equal(seen.restartedAnswer?.message, "rt-server says hello");
    const logs = seen.logs as unknown as string[];
    assert.ok(
      logs.some((l) => l.startsWith(`error [crasher] uncaught error; marking the app failed: Error: ${message}`)),
      logs.join("\n"),
    );
    assert.ok(
      logs.some((l) =>
        l.startsWith(
          "error uncaught error outside any app (the agent keeps running): Error: thrown by the host itself",
        ),
      ),
    );
    assert.deepEqual(
      Object.values(seen.after!).map((a) => a.status),
      ["running", "running"],
      "an error from no app fails no app",
    );
  });
}
