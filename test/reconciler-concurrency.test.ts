/**
 * A tick applies actions whose dependencies are settled at the same time, at most
 * `apply_concurrency` at once, against real git: independent deploys overlap, a dependent starts
 * only after its dependency's action finished (and then only if it is healthy), removals go
 * dependents first, a failure stops nothing but its own dependents, and 1 is the sequential order.
 * The runtime is the fake seam with a latch per call, so the test decides when each one finishes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent, type AgentOptions } from "../src/agent.ts";
import type { AppState } from "../src/runtime.ts";
import type { AppSpec } from "../src/spec.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { until } from "./helpers/e2e.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec, type GitopsRepo } from "./helpers/gitops-repo.ts";

/** A fake runtime whose deploys and removals each wait until the test releases that app. */
class LatchRuntime extends FakeRuntime {
  /** Calls in the order they started, as `"deploy web"`. */
  readonly started: string[] = [];
  readonly inFlight = new Set<string>();
  maxInFlight = 0;
  /** While false, calls finish at once. */
  hold = true;
  readonly #latches = new Map<string, () => void>();

  override deploy(spec: AppSpec): Promise<AppState> {
    return this.#held(`deploy ${spec.name}`, spec.name, () => super.deploy(spec));
  }

  override remove(name: string): Promise<void> {
    return this.#held(`remove ${name}`, name, () => super.remove(name));
  }

  /** Lets every held call finish, and the ones after them run at once (a test that failed half way). */
  releaseAll(): void {
    this.hold = false;
    for (const app of [...this.#latches.keys()]) this.release(app);
  }

  /** Lets the held call of `app` finish. */
  release(app: string): void {
    const open = this.#latches.get(app);
    assert.ok(open, `${app} has a call in flight`);
    this.#latches.delete(app);
    open();
  }

  async #held<T>(call: string, app: string, task: () => Promise<T>): Promise<T> {
    this.started.push(call);
    this.inFlight.add(app);
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight.size);
    try {
      if (this.hold) await new Promise<void>((resolve) => this.#latches.set(app, resolve));
      return await task();
    } finally {
      this.inFlight.delete(app);
    }
  }
}

function agentOn(t: TestContext, repo: GitopsRepo, runtime: FakeRuntime, options: Partial<AgentOptions> = {}) {
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    ...options,
  });
  t.after(() => {
    if (runtime instanceof LatchRuntime) runtime.releaseAll();
    return agent.stop();
  });
  const events: TelemetryEvent[] = [];
  agent.on("*", (e) => events.push(e));
  return { agent, events };
}

/** Waits until every app of `apps` has a call in flight. */
const inFlight = (runtime: LatchRuntime, ...apps: string[]) =>
  until(`${apps.join(" and ")} in flight`, async () => (apps.every((a) => runtime.inFlight.has(a)) ? true : undefined));

test("independent apps deploy at the same time; a dependent starts once its dependency's deploy finished", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1"),
    "apps/cache/app.yaml": yamlSpec("cache", "1"),
    "apps/web/app.yaml": yamlSpec("web", "1", "depends_on: [db]\n"),
  });
  const runtime = new LatchRuntime();
  const { agent, events } = agentOn(t, repo, runtime, { applyConcurrency: 3 });
  const starting = agent.start();
  await inFlight(runtime, "cache", "db");
  assert.deepEqual(runtime.started, ["deploy cache", "deploy db"], "web waits for db although a slot is free");
  runtime.release("db");
  await inFlight(runtime, "web");
  assert.ok(runtime.inFlight.has("cache"), "web does not wait for cache, which it does not depend on");
  runtime.release("web");
  runtime.release("cache");
  const result = await starting;
  assert.deepEqual(
    result.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["deploy", "cache", "ok"],
      ["deploy", "db", "ok"],
      ["deploy", "web", "ok"],
    ],
    "outcomes in plan order, whatever order the actions finished in",
  );
  assert.equal(result.status, "synced");
  // Each app's events keep their order, inside the tick's.
  const names = events.map((e) => `${e.name} ${e.metadata.app ?? ""}`.trim());
  const tick = [names.indexOf("bc_gitops:reconcile:start"), names.indexOf("bc_gitops:reconcile:stop")];
  for (const app of ["cache", "db", "web"]) {
    const [start, stop] = [
      names.indexOf(`bc_gitops:deploy:start ${app}`),
      names.indexOf(`bc_gitops:deploy:stop ${app}`),
    ];
    assert.ok(tick[0]! < start && start < stop && stop < tick[1]!, `${app}: ${names.join(", ")}`);
  }
  assert.ok(names.indexOf("bc_gitops:deploy:stop db") < names.indexOf("bc_gitops:deploy:start web"));
});

test("a dependency that comes up unhealthy holds its dependent pending while an independent app deploys", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1"),
    "apps/solo/app.yaml": yamlSpec("solo", "1"),
    "apps/web/app.yaml": yamlSpec("web", "1", "depends_on: [db]\n"),
  });
  const runtime = new LatchRuntime();
  runtime.healthOf.set("db", "unhealthy");
  const { agent } = agentOn(t, repo, runtime, { applyConcurrency: 3 });
  const starting = agent.start();
  await inFlight(runtime, "db", "solo");
  runtime.release("db");
  runtime.release("solo");
  const result = await starting;
  assert.deepEqual(runtime.started, ["deploy db", "deploy solo"], "web never reached the runtime");
  assert.deepEqual(
    result.actions.map((a) => [a.app, a.outcome, a.reason ?? ""]),
    [
      ["db", "ok", ""],
      ["solo", "ok", ""],
      ["web", "pending", "waiting for db (running, unhealthy)"],
    ],
  );
  runtime.hold = false;
  runtime.setHealth("db", "healthy");
  await agent.reconcile();
  assert.equal(runtime.started.at(-1), "deploy web");
});

test("one failing deploy does not stop its independent siblings, and its dependents are held", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/bad/app.yaml": yamlSpec("bad", "1"),
    "apps/good_a/app.yaml": yamlSpec("good_a", "1"),
    "apps/good_b/app.yaml": yamlSpec("good_b", "1"),
    "apps/needs_bad/app.yaml": yamlSpec("needs_bad", "1", "depends_on: [bad]\n"),
  });
  const runtime = new LatchRuntime();
  runtime.failAlways.add("bad");
  const { agent } = agentOn(t, repo, runtime, { applyConcurrency: 2 });
  const starting = agent.start();
  await inFlight(runtime, "bad", "good_a");
  runtime.release("bad"); // fails while good_a is still deploying
  await inFlight(runtime, "good_b");
  runtime.release("good_a");
  runtime.release("good_b");
  const result = await starting;
  assert.deepEqual(
    result.actions.map((a) => [a.app, a.outcome]),
    [
      ["bad", "failed"],
      ["good_a", "ok"],
      ["good_b", "ok"],
      ["needs_bad", "pending"],
    ],
  );
  assert.equal(result.actions[3]!.reason, "waiting for bad (not deployed)");
  assert.ok(!runtime.started.includes("deploy needs_bad"));
  assert.equal((await agent.getAppStatus("good_b"))?.status, "running");
  assert.equal((await agent.getAppStatus("bad"))?.status, "failed");
});

for (const limit of [1, 2, 3]) {
  test(`never more than apply_concurrency (${limit}) actions at once, taken in plan order`, async (t) => {
    const names = ["a", "b", "c", "d", "e", "f"];
    const repo = await gitopsRepo(t, Object.fromEntries(names.map((n) => [`apps/${n}/app.yaml`, yamlSpec(n, "1")])));
    const runtime = new LatchRuntime();
    const { agent } = agentOn(t, repo, runtime, { applyConcurrency: limit });
    const starting = agent.start();
    for (let done = 0; done < names.length; done++) {
      // Wait until as many as allowed run, then let the oldest finish.
      const expected = Math.min(limit, names.length - done);
      await until(`${expected} deploys in flight`, async () => (runtime.inFlight.size === expected ? true : undefined));
      const oldest = [...runtime.inFlight][0]!;
      runtime.release(oldest);
      await until(`${oldest} done`, async () => (runtime.inFlight.has(oldest) ? undefined : true));
    }
    const result = await starting;
    assert.equal(runtime.maxInFlight, limit);
    assert.deepEqual(
      runtime.started,
      names.map((n) => `deploy ${n}`),
    );
    assert.ok(result.actions.every((a) => a.outcome === "ok"));
  });
}

test("removals go dependents first, then what they used; independent removals at the same time", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1"),
    "apps/solo/app.yaml": yamlSpec("solo", "1"),
    "apps/web/app.yaml": yamlSpec("web", "1", "depends_on: [db]\n"),
    "apps/keep/app.yaml": yamlSpec("keep", "1"),
  });
  const runtime = new LatchRuntime();
  runtime.hold = false;
  const { agent } = agentOn(t, repo, runtime, { applyConcurrency: 4 });
  await agent.start();
  await repo.commit({
    "apps/db/app.yaml": null,
    "apps/solo/app.yaml": null,
    "apps/web/app.yaml": null,
    "apps/new/app.yaml": yamlSpec("new", "1"),
  });
  runtime.hold = true;
  runtime.started.length = 0;
  const ticking = agent.reconcile();
  await inFlight(runtime, "solo", "web");
  assert.deepEqual(runtime.started.sort(), ["remove solo", "remove web"], "db waits for web; new for every removal");
  runtime.release("web");
  await inFlight(runtime, "db");
  runtime.release("db");
  runtime.release("solo");
  await inFlight(runtime, "new");
  runtime.release("new");
  const result = await ticking;
  assert.deepEqual(
    result.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["remove", "solo", "ok"],
      ["remove", "web", "ok"],
      ["remove", "db", "ok"],
      ["deploy", "new", "ok"],
    ],
  );
});

test("a restarted agent restores independent apps at the same time, dependents after their dependencies", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1"),
    "apps/solo/app.yaml": yamlSpec("solo", "1"),
    "apps/web/app.yaml": yamlSpec("web", "1", "depends_on: [db]\n"),
  });
  const first = new LatchRuntime();
  first.hold = false;
  const before = agentOn(t, repo, first);
  await before.agent.start();
  await before.agent.stop();

  const runtime = new LatchRuntime();
  const { agent } = agentOn(t, repo, runtime, { applyConcurrency: 3 });
  const starting = agent.start();
  await inFlight(runtime, "db", "solo");
  assert.ok(!runtime.started.includes("deploy web"));
  runtime.release("db");
  await inFlight(runtime, "web");
  runtime.release("web");
  runtime.release("solo");
  const result = await starting;
  assert.deepEqual(runtime.started, ["deploy db", "deploy solo", "deploy web"]);
  assert.deepEqual(result.actions, [], "the first tick finds them running");
});
