import { test } from "node:test";
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { createAgent, type Agent, type AgentOptions } from "../src/agent.ts";
import type { RuntimeContext } from "../src/runtime.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { git, gitopsRepo, yamlSpec, type GitopsRepo } from "./helpers/gitops-repo.ts";
import type { TestContext } from "node:test";

const web = (v = "1.0.0", extra = "") => yamlSpec("web", v, `depends_on: [db]\n${extra}`);
const db = (v = "1.0.0", extra = "") => yamlSpec("db", v, extra);

interface Harness {
  repo: GitopsRepo;
  runtime: FakeRuntime;
  agent: Agent;
  events: TelemetryEvent[];
  localPath: string;
}

async function harness(
  t: TestContext,
  files: Record<string, string>,
  options: Partial<AgentOptions> = {},
): Promise<Harness> {
  const repo = await gitopsRepo(t, files);
  const runtime = new FakeRuntime();
  const localPath = join(repo.root, "local");
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath,
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    ...options,
  });
  t.after(() => agent.stop());
  const events: TelemetryEvent[] = [];
  agent.on("*", (e) => events.push(e));
  return { repo, runtime, agent, events, localPath };
}

test("the first reconcile clones the repo and deploys every app, dependencies first", async (t) => {
  const h = await harness(t, { "apps/web/app.yaml": web(), "apps/db/app.yaml": db(), "README.md": "# gitops" });
  const result = await h.agent.start();
  assert.deepEqual(h.runtime.calls, ["deploy db 1.0.0", "deploy web 1.0.0"]);
  assert.equal(result.changed, true);
  assert.deepEqual(
    result.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["deploy", "db", "ok"],
      ["deploy", "web", "ok"],
    ],
  );
  const status = await h.agent.status();
  assert.equal(status.status, "synced");
  assert.equal(status.app_count, 2);
  assert.equal(status.healthy_count, 2);
  assert.match(String(status.last_commit), /^[0-9a-f]{40}$/);
  assert.equal(typeof status.last_reconcile.duration_ms, "number");
  const state = JSON.parse(await readFile(join(h.localPath, "state.json"), "utf8"));
  assert.equal(state.commit, status.last_commit);
  assert.deepEqual(Object.keys(state.apps).sort(), ["db", "web"]);
  assert.equal(state.apps.web.version, "1.0.0");
  const names = h.events.map((e) => e.name);
  for (const name of [
    "bc_gitops:git:clone_start",
    "bc_gitops:git:clone_stop",
    "bc_gitops:parse:start",
    "bc_gitops:parse:stop",
    "bc_gitops:deploy:start",
    "bc_gitops:deploy:stop",
    "bc_gitops:reconcile:start",
    "bc_gitops:reconcile:stop",
  ]) {
    assert.ok(names.includes(name as never), `${name} emitted`);
  }
  const deployStop = h.events.find((e) => e.name === "bc_gitops:deploy:stop" && e.metadata.app === "web")!;
  assert.equal(typeof deployStop.measurements.duration_ms, "number");
  assert.equal(deployStop.metadata.version, "1.0.0");
});

test("a new commit upgrades, reconfigures, deploys and removes, in the right order", async (t) => {
  const h = await harness(t, {
    "apps/web/app.yaml": web(),
    "apps/db/app.yaml": db(),
    "apps/cache/app.yaml": yamlSpec("cache", "1.0.0", "env: { size: 1 }\n"),
    "apps/api/app.yaml": yamlSpec("api", "1.0.0", "depends_on: [cache]\n"),
  });
  await h.agent.start();
  h.runtime.calls.length = 0;
  await h.repo.commit({
    "apps/db/app.yaml": db("1.1.0"),
    "apps/web/app.yaml": web("1.0.0", "env: { port: 8081 }\n"),
    "apps/cache/app.yaml": null,
    "apps/api/app.yaml": null,
    "apps/jobs/app.yaml": yamlSpec("jobs", "0.1.0", "depends_on: [db]\n"),
  });
  const result = await h.agent.reconcile();
  assert.equal(result.changed, true);
  assert.deepEqual(h.runtime.calls, [
    "remove api",
    "remove cache",
    "upgrade db 1.1.0 from 1.0.0",
    "deploy jobs 0.1.0",
    "reconfigure web 1.0.0",
  ]);
  const upgrade = h.events.find((e) => e.name === "bc_gitops:upgrade:stop")!;
  assert.equal(upgrade.metadata.from_version, "1.0.0");
  assert.equal(upgrade.metadata.to_version, "1.1.0");
  const reconfigure = h.events.find((e) => e.name === "bc_gitops:reconfigure:start")!;
  assert.deepEqual(reconfigure.metadata.added, ["port"]);
  assert.equal((await h.agent.status()).status, "synced");
  assert.deepEqual(Object.keys(await h.agent.getCurrentState()), ["db", "jobs", "web"]);
});

test("a tick with no new commit re-parses nothing and applies nothing, but restarts a crashed app", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  h.events.length = 0;
  const quiet = await h.agent.reconcile();
  assert.equal(quiet.changed, false);
  assert.deepEqual(quiet.actions, []);
  assert.ok(!h.events.some((e) => e.name === "bc_gitops:parse:start"), "specs are not re-read");
  h.runtime.crash("db");
  const healed = await h.agent.reconcile();
  assert.deepEqual(
    healed.actions.map((a) => [a.type, a.app, a.outcome]),
    [["restart", "db", "ok"]],
  );
  assert.equal(h.runtime.calls.at(-1), "restart db 1.0.0");
  assert.equal((await h.agent.getAppStatus("db"))?.restarts, 1);
});

test("a force-push to unrelated history is followed", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/web/app.yaml": web() });
  await h.agent.start();
  const rewritten = await h.repo.forcePush({ "apps/db/app.yaml": db("2.0.0") });
  const result = await h.agent.reconcile();
  assert.equal(result.commit, rewritten);
  assert.deepEqual(h.runtime.calls.slice(2), ["remove web", "upgrade db 2.0.0 from 1.0.0"]);
});

test("a damaged local clone is re-cloned and the apps are not disturbed", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  await rm(join(h.localPath, "git", "repo"), { recursive: true, force: true });
  await h.repo.commit({ "apps/db/app.yaml": db("1.0.1") });
  const result = await h.agent.reconcile();
  assert.deepEqual(
    result.actions.map((a) => [a.type, a.outcome]),
    [["upgrade", "ok"]],
  );
  assert.equal((await h.agent.status()).status, "synced");
});

test("an unreachable remote is an error in status; apps keep running; it recovers by itself", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  await rename(h.repo.bare, `${h.repo.bare}.away`);
  const down = await h.agent.reconcile();
  assert.equal(down.status, "error");
  const status = await h.agent.status();
  assert.equal(status.status, "error");
  assert.match(status.last_reconcile.error ?? "", /cannot reach|remote\.git/);
  assert.deepEqual(h.runtime.calls, ["deploy db 1.0.0"], "nothing was removed or restarted");
  assert.equal((await h.agent.getAppStatus("db"))?.status, "running");
  await rename(`${h.repo.bare}.away`, h.repo.bare);
  const up = await h.agent.reconcile();
  assert.equal(up.status, "synced");
  assert.equal((await h.agent.status()).last_reconcile.error, null);
});

test("credentials in repo_url never reach status, errors or telemetry", async (t) => {
  const h = await harness(
    t,
    { "apps/db/app.yaml": db() },
    { repoUrl: "https://deploy:hunter2secret@127.0.0.1:1/gitops.git", gitTimeout: "5s" },
  );
  const result = await h.agent.start();
  assert.equal(result.status, "error");
  const everything = JSON.stringify([await h.agent.status(), result, h.events]);
  assert.ok(!everything.includes("hunter2secret"), everything);
  assert.match(everything, /\*\*\*@127\.0\.0\.1/);
});

test("a broken spec affects only its own app: it keeps running and the error names the file", async (t) => {
  const h = await harness(t, {
    "apps/db/app.yaml": db(),
    "apps/web/app.yaml": web(),
    "apps/jobs/app.yaml": yamlSpec("jobs", "1.0.0"),
  });
  await h.agent.start();
  await h.repo.commit({
    "apps/web/app.yaml": "name: web\nversion: [oops\n",
    "apps/jobs/app.yaml": yamlSpec("jobs", "1.1.0"),
  });
  const result = await h.agent.reconcile();
  assert.deepEqual(
    result.actions.map((a) => [a.type, a.app]),
    [["upgrade", "jobs"]],
    "web is neither removed nor touched",
  );
  assert.equal((await h.agent.getAppStatus("web"))?.status, "running");
  const status = await h.agent.status();
  assert.equal(status.status, "degraded");
  assert.ok(
    status.errors.some((e) => e.file === "apps/web/app.yaml" && typeof e.line === "number"),
    JSON.stringify(status.errors),
  );
  await h.repo.commit({ "apps/web/app.yaml": web("1.0.1") });
  await h.agent.reconcile();
  assert.equal(h.runtime.calls.at(-1), "upgrade web 1.0.1 from 1.0.0");
  assert.equal((await h.agent.status()).status, "synced");
});

test("a dependent waits, pending with the reason, until its dependency is running and healthy", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/web/app.yaml": web() });
  h.runtime.healthOf.set("db", "unhealthy");
  await h.agent.start();
  assert.deepEqual(h.runtime.calls, ["deploy db 1.0.0"]);
  const pending = await h.agent.getAppStatus("web");
  assert.equal(pending?.status, "pending");
  assert.equal(pending?.pending_reason, "waiting for db (running, unhealthy)");
  assert.equal((await h.agent.status()).status, "degraded");
  h.runtime.setHealth("db", "healthy");
  await h.agent.reconcile();
  assert.deepEqual(h.runtime.calls, ["deploy db 1.0.0", "deploy web 1.0.0"]);
  assert.equal((await h.agent.getAppStatus("web"))?.pending_reason, undefined);
});

test("a failing app never stops the others and is retried with exponential backoff", async (t) => {
  let clock = 1_000_000;
  const h = await harness(
    t,
    { "apps/db/app.yaml": db(), "apps/solo/app.yaml": yamlSpec("solo", "1.0.0") },
    { now: () => clock },
  );
  h.runtime.failAlways.add("db");
  const first = await h.agent.start();
  assert.deepEqual(
    first.actions.map((a) => [a.app, a.outcome]),
    [
      ["db", "failed"],
      ["solo", "ok"],
    ],
  );
  assert.match(first.actions[0]!.error ?? "", /db failed to start/);
  const app = await h.agent.getAppStatus("db");
  assert.equal(app?.status, "failed");
  assert.match(app?.last_error ?? "", /db failed to start/);
  assert.equal((await h.agent.status()).status, "degraded");

  const early = await h.agent.reconcile();
  assert.equal(early.actions[0]?.outcome, "skipped", "still backing off");
  clock += 1000;
  assert.equal((await h.agent.reconcile()).actions[0]?.outcome, "failed", "retried after 1 s");
  clock += 1000;
  assert.equal((await h.agent.reconcile()).actions[0]?.outcome, "skipped", "the second wait is 2 s");
  clock += 1000;
  assert.equal((await h.agent.reconcile()).actions[0]?.outcome, "failed");
  h.runtime.failAlways.delete("db");
  clock += 4000;
  assert.equal((await h.agent.reconcile()).actions[0]?.outcome, "ok");
  assert.equal((await h.agent.status()).status, "synced");
  assert.equal(h.runtime.calls.filter((c) => c.startsWith("deploy db")).length, 4);
});

test("a dependency cycle is an error on each app in it, naming the cycle", async (t) => {
  const h = await harness(t, {
    "apps/a/app.yaml": yamlSpec("a", "1", "depends_on: [b]\n"),
    "apps/b/app.yaml": yamlSpec("b", "1", "depends_on: [a]\n"),
    "apps/c/app.yaml": yamlSpec("c", "1"),
  });
  await h.agent.start();
  assert.deepEqual(h.runtime.calls, ["deploy c 1"]);
  const errors = (await h.agent.status()).errors;
  assert.deepEqual(
    errors.map((e) => [e.app, e.message]),
    [
      ["a", "dependency cycle: a -> b -> a"],
      ["b", "dependency cycle: a -> b -> a"],
    ],
  );
});

test("triggers during a tick collapse into one follow-up tick, and ticks never overlap", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  let release!: () => void;
  h.runtime.gate = new Promise((r) => (release = r));
  h.runtime.crash("db");
  let running = 0;
  let overlapped = false;
  h.agent.on("bc_gitops:reconcile:start", () => (overlapped ||= ++running > 1));
  h.agent.on("bc_gitops:reconcile:stop", () => running--);
  const first = h.agent.reconcile();
  await new Promise((r) => setTimeout(r, 50));
  const followers = [h.agent.reconcile(), h.agent.reconcile(), h.agent.reconcile(), h.agent.reconcile()];
  const startsBefore = h.events.filter((e) => e.name === "bc_gitops:reconcile:start").length;
  release();
  h.runtime.gate = undefined;
  const [r1, ...rest] = await Promise.all([first, ...followers]);
  const starts = h.events.filter((e) => e.name === "bc_gitops:reconcile:start").length;
  assert.equal(starts - startsBefore, 1, "exactly one follow-up tick");
  assert.equal(overlapped, false);
  assert.deepEqual(
    r1.actions.map((a) => a.type),
    ["restart"],
  );
  for (const r of rest) assert.equal(r, rest[0], "every trigger gets the same follow-up result");
});

test("stop() stops apps dependents first and ends the loop", async (t) => {
  const h = await harness(t, {
    "apps/db/app.yaml": db(),
    "apps/web/app.yaml": web(),
    "apps/cache/app.yaml": yamlSpec("cache", "1"),
  });
  await h.agent.start();
  h.runtime.calls.length = 0;
  await h.agent.stop();
  assert.equal(
    h.runtime.calls.indexOf("remove web") < h.runtime.calls.indexOf("remove db"),
    true,
    h.runtime.calls.join(", "),
  );
  assert.equal(h.runtime.calls.length, 3);
  await assert.rejects(h.agent.reconcile(), /stopped/);
  // The apps stay remembered: a stop is not a removal.
  const state = JSON.parse(await readFile(join(h.localPath, "state.json"), "utf8"));
  assert.deepEqual(Object.keys(state.apps).sort(), ["cache", "db", "web"]);
});

test("a restarted agent brings its apps back from state.json without reaching the remote", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/web/app.yaml": web() });
  await h.agent.start();
  await h.agent.stop();
  await rename(h.repo.bare, `${h.repo.bare}.away`);
  const runtime = new FakeRuntime();
  const again = createAgent({
    repoUrl: h.repo.bare,
    localPath: h.localPath,
    runtime,
    reconcileInterval: "1h",
    listen: "off",
  });
  t.after(() => again.stop());
  const result = await again.start();
  assert.deepEqual(runtime.calls, ["deploy db 1.0.0", "deploy web 1.0.0"], "restored, dependencies first");
  assert.equal(result.status, "error", "the remote is still unreachable");
  assert.deepEqual(result.actions, [], "nothing is removed while the remote is down");
  assert.deepEqual(
    Object.keys(await again.getDesiredState()).sort(),
    ["db", "web"],
    "desired state comes from the local snapshot",
  );
  assert.equal((await again.getAppStatus("web"))?.status, "running");
});

test("a corrupt state.json is moved aside and the agent starts from git", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  const { mkdir } = await import("node:fs/promises");
  await mkdir(h.localPath, { recursive: true });
  await writeFile(join(h.localPath, "state.json"), "{ not json");
  const result = await h.agent.start();
  assert.deepEqual(
    result.actions.map((a) => a.type),
    ["deploy"],
  );
  const { readdir } = await import("node:fs/promises");
  assert.ok((await readdir(h.localPath)).some((f) => f.startsWith("state.json.corrupt-")));
});

test("telemetry reaches node:diagnostics_channel subscribers", async (t) => {
  // The channel is global to the process: count only this test's app.
  const h = await harness(t, { "apps/diag-probe/app.yaml": yamlSpec("diag-probe", "1.0.0") });
  const seen: TelemetryEvent[] = [];
  const onMessage = (message: unknown) => void seen.push(message as TelemetryEvent);
  diagnostics.subscribe("bc_gitops:deploy:stop", onMessage);
  t.after(() => diagnostics.unsubscribe("bc_gitops:deploy:stop", onMessage));
  await h.agent.start();
  assert.equal(seen.filter((e) => e.metadata.app === "diag-probe").length, 1);
});

test("manual deploy, upgrade and remove go through the runtime; the next reconcile restores the repo's state", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  await h.agent.deploy({ name: "extra", version: "0.1.0" });
  const upgraded = await h.agent.upgrade("db", "9.9.9");
  assert.equal(upgraded.version, "9.9.9");
  await assert.rejects(h.agent.remove("nope"), /no app named "nope"/);
  await h.agent.reconcile();
  assert.deepEqual(h.runtime.calls.slice(1), [
    "deploy extra 0.1.0",
    "upgrade db 9.9.9 from 1.0.0",
    "remove extra",
    "upgrade db 1.0.0 from 9.9.9",
  ]);
});

test("a runtime given as a module path is loaded from that module's default export", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": db() });
  const module = join(repo.root, "my-runtime.ts");
  await writeFile(
    module,
    `const apps = new Map();
export default () => ({
  async deploy(spec) { const s = { name: spec.name, version: spec.version, status: "running", health: "healthy", custom: true }; apps.set(spec.name, s); return s; },
  async remove(name) { apps.delete(name); },
  async upgrade(spec) { return this.deploy(spec); },
  async reconfigure(spec) { return this.deploy(spec); },
  async getCurrentState() { return Object.fromEntries(apps); },
});
`,
  );
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime: module,
    reconcileInterval: "1h",
    listen: "off",
  });
  t.after(() => agent.stop());
  await agent.start();
  assert.equal((await agent.getAppStatus("db"))?.custom, true);
  const incomplete = join(repo.root, "incomplete-runtime.ts");
  await writeFile(incomplete, "export default { deploy() {} };");
  const broken = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local2"),
    runtime: incomplete,
    reconcileInterval: "1h",
    listen: "off",
  });
  await assert.rejects(
    broken.start(),
    /must export \(default\) a runtime object.*missing: remove, upgrade, reconfigure, getCurrentState/,
  );
  const missing = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local3"),
    runtime: join(repo.root, "nope.ts"),
    reconcileInterval: "1h",
    listen: "off",
  });
  await assert.rejects(missing.start(), /cannot load the runtime module/);
});

test("secret-looking env values are masked in app status", async (t) => {
  const h = await harness(t, {
    "apps/db/app.yaml": db("1", "env: { port: 5432, db_password: hunter2, nested: { api_key: k, size: 3 } }\n"),
  });
  await h.agent.start();
  assert.deepEqual((await h.agent.getAppStatus("db"))?.env, {
    port: 5432,
    db_password: "***",
    nested: { api_key: "***", size: 3 },
  });
});

test("invalid options are refused at once with a clear message", () => {
  assert.throws(() => createAgent({ repoUrl: "--upload-pack=evil" }), /must not start with "-"/);
  assert.throws(
    () => createAgent({ repoUrl: "/r", reconcileInterval: "soon" }),
    /reconcile_interval.*expected a duration/,
  );
  assert.throws(
    () => createAgent({ repoUrl: "/r", applyConcurrency: 0 }),
    /^GitopsError: invalid agent option apply_concurrency: expected how many actions to apply at once, a whole number of at least 1 \(1: one after another\), got 0$/,
  );
});

test("a stalled failure is not retried until a new commit", async (t) => {
  let clock = 5_000_000;
  const h = await harness(t, { "apps/db/app.yaml": db() }, { now: () => clock });
  const { GitopsError } = await import("../src/errors.ts");
  h.runtime.failNext.set("db", new GitopsError("checksum mismatch", { code: "E_RUNTIME", retry: "stalled" }));
  await h.agent.start();
  clock += 3_600_000;
  const later = await h.agent.reconcile();
  assert.equal(later.actions[0]?.outcome, "skipped");
  assert.match(later.actions[0]?.reason ?? "", /stalled until a new commit: checksum mismatch/);
  await h.repo.commit({ "apps/db/app.yaml": db("1.0.1") });
  const fixed = await h.agent.reconcile();
  assert.deepEqual(
    fixed.actions.map((a) => [a.type, a.outcome]),
    [["deploy", "ok"]],
  );
});

test("reverting the repo to what runs clears the failure of an upgrade that was rolled back", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  h.runtime.failNext.set("db", new Error("2.0.0 never became healthy; rolled back to 1.0.0"));
  await h.repo.commit({ "apps/db/app.yaml": db("2.0.0") });
  await h.agent.reconcile();
  assert.match((await h.agent.getAppStatus("db"))?.last_error ?? "", /rolled back/);
  assert.equal((await h.agent.status()).status, "degraded");
  await h.repo.commit({ "apps/db/app.yaml": db("1.0.0") });
  const reverted = await h.agent.reconcile();
  assert.deepEqual(reverted.actions, []);
  assert.equal((await h.agent.getAppStatus("db"))?.last_error, undefined);
  assert.equal((await h.agent.status()).status, "synced");
});

test("a runtime can ask for a reconcile (a crashed app is restarted without waiting for the interval)", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": db() });
  const runtime = new FakeRuntime();
  let request: (() => void) | undefined;
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    reconcileInterval: "1h",
    listen: "off",
    runtime: (context) => ((request = context.requestReconcile), runtime),
  });
  t.after(() => agent.stop());
  await agent.start();
  runtime.crash("db");
  const restarted = new Promise<void>((resolve) => agent.on("bc_gitops:restart:stop", () => resolve()));
  request?.();
  await Promise.race([
    restarted,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no restart within 10 s")), 10_000)),
  ]);
  assert.equal(runtime.calls.at(-1), "restart db 1.0.0");
});

test("an app that does not run yet still shows every AppState field SPEC lists, unknown ones as null", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/web/app.yaml": web() });
  h.runtime.failAlways.add("db");
  await h.agent.start();
  const pending = await h.agent.getAppStatus("web");
  for (const key of [
    "name",
    "version",
    "description",
    "icon",
    "status",
    "health",
    "revision",
    "source",
    "isolation",
    "started_at",
    "path",
    "env",
    "reloads",
  ]) {
    assert.ok(pending && key in pending, `${key} present`);
  }
  assert.equal(pending?.status, "pending");
  assert.equal(pending?.started_at, null);
  assert.equal(pending?.description, null);
  assert.equal(await h.agent.getAppStatus("constructor"), undefined);
  assert.equal(await h.agent.getAppStatus("__proto__"), undefined);
});

test("a crash-looping app is restarted with growing delays, and its crash stays in last_error", async (t) => {
  let clock = 9_000_000;
  const h = await harness(t, { "apps/db/app.yaml": db() }, { now: () => clock });
  await h.agent.start();
  const outcomes: string[] = [];
  for (let i = 0; i < 4; i++) {
    h.runtime.crash("db");
    const result = await h.agent.reconcile();
    outcomes.push(result.actions.map((a) => `${a.type}:${a.outcome}`).join());
    clock += 1500;
  }
  // Crashes 1.5 s apart: restarts wait 1 s, then 2 s, then 4 s, so the 3rd crash waits for the next try.
  assert.deepEqual(outcomes, ["restart:ok", "restart:ok", "restart:skipped", "restart:ok"]);
  assert.match((await h.agent.getAppStatus("db"))?.last_error ?? "", /exited with code 1/);
});

for (const applyConcurrency of [1, 2]) {
  test(`stop() during a slow first reconcile returns after the apps in progress (apply_concurrency ${applyConcurrency}), not after all of them`, async (t) => {
    const h = await harness(
      t,
      {
        "apps/a/app.yaml": yamlSpec("a", "1"),
        "apps/b/app.yaml": yamlSpec("b", "1"),
        "apps/c/app.yaml": yamlSpec("c", "1"),
      },
      { applyConcurrency },
    );
    let release!: () => void;
    h.runtime.gate = new Promise((r) => (release = r));
    const starting = h.agent.start();
    await new Promise((r) => setTimeout(r, 300));
    const stopping = h.agent.stop();
    release();
    h.runtime.gate = undefined;
    await stopping;
    await starting.catch(() => {});
    const deploys = h.runtime.calls.filter((c) => c.startsWith("deploy"));
    assert.ok(deploys.length <= applyConcurrency, h.runtime.calls.join(", "));
    await assert.rejects(h.agent.start(), /the agent is stopped/);
  });
}

test("a broken spec file protects its running app even when the file no longer says its name", async (t) => {
  const h = await harness(t, { "apps/web-dir/app.yaml": yamlSpec("hello", "1.0.0") });
  await h.agent.start();
  await h.repo.commit({ "apps/web-dir/app.yaml": "source: {type: path, path: code/hello\n" });
  const result = await h.agent.reconcile();
  assert.deepEqual(result.actions, [], "hello is not removed");
  assert.equal((await h.agent.getAppStatus("hello"))?.status, "running");
});

test("with verify set, an unsigned commit is not applied: the last verified one keeps running and status says why", async (t) => {
  const { exec } = await import("../src/exec.ts");
  const { GIT_ENV, git } = await import("./helpers/gitops-repo.ts");
  const repo = await gitopsRepo(t);
  const key = join(repo.root, "release-key");
  await exec("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", key]);
  const signers = join(repo.root, "allowed_signers");
  await writeFile(signers, `test@example.com ${(await readFile(`${key}.pub`, "utf8")).trim()}\n`);
  const commit = async (files: Record<string, string>, sign: boolean) => {
    for (const [path, content] of Object.entries(files)) {
      const { mkdir } = await import("node:fs/promises");
      await mkdir(join(repo.work, path, ".."), { recursive: true });
      await writeFile(join(repo.work, path), content);
    }
    await git(repo.work, "add", "-A");
    const signing = sign ? ["-c", "gpg.format=ssh", "-c", `user.signingkey=${key}`] : [];
    await exec("git", [...signing, "commit", "-q", ...(sign ? ["-S"] : []), "-m", "change"], {
      cwd: repo.work,
      env: GIT_ENV,
    });
    await git(repo.work, "push", "-q", "--force", repo.bare, "HEAD:refs/heads/main");
  };
  await commit({ "apps/db/app.yaml": db() }, true);
  const runtime = new FakeRuntime();
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    verify: { mode: "ssh", allowed_signers: signers },
  });
  t.after(() => agent.stop());
  assert.equal((await agent.start()).status, "synced");
  await commit({ "apps/db/app.yaml": db("6.6.6") }, false);
  const refused = await agent.reconcile();
  assert.equal(refused.status, "error");
  assert.deepEqual(refused.actions, []);
  assert.match(
    (await agent.status()).last_reconcile.error ?? "",
    /not applying [0-9a-f]{12}: commit [0-9a-f]{12} is not signed; still at the verified commit/,
  );
  assert.deepEqual(runtime.calls, ["deploy db 1.0.0"]);
  await commit({ "apps/db/app.yaml": db("1.1.0") }, true);
  const accepted = await agent.reconcile();
  assert.equal(accepted.status, "synced");
  assert.equal(runtime.calls.at(-1), "upgrade db 1.1.0 from 1.0.0");
  const missing = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local2"),
    runtime: new FakeRuntime(),
    listen: "off",
    verify: { mode: "ssh", allowed_signers: join(repo.root, "nope") },
  });
  await assert.rejects(missing.start(), /allowed_signers file .*nope is missing/);
});

test("a path source inside the repository is hashed once per commit, not on every tick", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1.0.0", "source: { type: path, path: code/db }\n"),
    "code/db/index.js": "export const v = 1;\n",
  });
  const runtime = new FakeRuntime();
  let resolved = 0;
  const withRevisions = Object.assign(runtime, {
    async resolveRevision() {
      resolved++;
      return "rev-1";
    },
  });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime: withRevisions,
    reconcileInterval: "1h",
    listen: "off",
  });
  t.after(() => agent.stop());
  await agent.start();
  await agent.reconcile();
  await agent.reconcile();
  assert.equal(resolved, 1, "resolved on the first tick only");
  await repo.commit({ "code/db/index.js": "export const v = 2;\n" });
  await agent.reconcile();
  assert.equal(resolved, 2, "a new commit resolves it again");
});

test("a runtime gets the checkout and the remembered apps through its context, before the reconciler exists and kept current after", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/web/app.yaml": web() });
  await h.agent.start();
  await h.agent.stop();
  let context: RuntimeContext | undefined;
  let atCreation: { repoDir: string | undefined; remembered: string[] } | undefined;
  const runtime = new FakeRuntime();
  const again = createAgent({
    repoUrl: h.repo.bare,
    localPath: h.localPath,
    reconcileInterval: "1h",
    listen: "off",
    runtime: (c) => {
      context = c;
      atCreation = { repoDir: c.repoDir(), remembered: Object.keys(c.remembered?.() ?? {}).sort() };
      return runtime;
    },
  });
  t.after(() => again.stop());
  await again.start();
  assert.deepEqual(
    atCreation,
    { repoDir: undefined, remembered: ["db", "web"] },
    "state.json is read before the runtime is created",
  );
  const repoDir = context!.repoDir();
  const first = (await again.status()).last_commit!;
  assert.ok(repoDir !== undefined && basename(repoDir).startsWith(first), `the checkout of the commit: ${repoDir}`);
  await h.repo.commit({
    "apps/web/app.yaml": null,
    "apps/cache/app.yaml": yamlSpec("cache", "1.0.0", "source:\n  type: path\n  path: code/cache\n"),
    "code/cache/index.js": "export const start = () => ({});\n",
  });
  await again.reconcile();
  assert.deepEqual(
    Object.keys(context!.remembered!()).sort(),
    ["cache", "db"],
    "the remembered apps follow what the agent deploys and removes",
  );
  assert.equal(context!.remembered!().cache?.version, "1.0.0");
  const moved = context!.repoDir();
  assert.ok(
    moved !== undefined &&
      moved !== repoDir &&
      (await readFile(join(moved, "code", "cache", "index.js"), "utf8")).includes("start"),
    "the checkout follows the commit, with the files of its path sources",
  );
  assert.equal(context!.treeOf?.("code/cache"), await git(h.repo.work, "rev-parse", "HEAD:code/cache"));
});
