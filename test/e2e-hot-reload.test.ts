// End to end: the real agent (git, reconciler, loop, control API) with the default runtime
// hot-reloading real apps whose code is committed to real git repositories.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent, type Agent } from "../src/agent.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { getJson, nestedFetchApp, until } from "./helpers/reload-apps.ts";

/** Files of an app as repo paths under `code/<app>/`. */
const under = (app: string, files: Record<string, string>) =>
  Object.fromEntries(Object.entries(files).map(([path, text]) => [`code/${app}/${path}`, text]));

const spec = (name: string, version: string, source: string, isolation = "embedded") =>
  [
    `name: ${name}`,
    `version: "${version}"`,
    `source: ${source}`,
    `isolation: ${isolation}`,
    "env: { port: 0 }",
    "health: { type: http, path: /health, interval: 60s, timeout: 2000 }",
    "",
  ].join("\n");

function agentFor(
  t: TestContext,
  repoUrl: string,
  localPath: string,
  listen = "off",
): { agent: Agent; events: TelemetryEvent[] } {
  const agent = createAgent({ repoUrl, localPath, runtime: "default", listen, reconcileInterval: "1h" });
  const events: TelemetryEvent[] = [];
  agent.on("*", (event) => events.push(event));
  t.after(() => agent.stop());
  return { agent, events };
}

const message = async (agent: Agent, app: string) =>
  (await getJson<{ message: string }>((await agent.getAppStatus(app))?.port)).message;
const outcomes = (result: { actions: { type: string; app: string; outcome: string }[] }) =>
  result.actions.map((a) => [a.type, a.app, a.outcome]);

for (const isolation of ["embedded", "worker"] as const) {
  test(`a same-version code change committed to the gitops repo is hot-reloaded by the agent itself (${isolation})`, async (t) => {
    const repo = await gitopsRepo(t, {
      "apps/web/app.yaml": spec("web", "1.0.0", "{ type: path, path: code/web }", isolation),
      ...under("web", nestedFetchApp("one")),
    });
    const localPath = join(repo.root, "local");
    const { agent, events } = agentFor(t, repo.bare, localPath);
    assert.deepEqual(outcomes(await agent.start()), [["deploy", "web", "ok"]]);
    const deployed = (await agent.getAppStatus("web"))!;
    assert.equal(await message(agent, "web"), "a+one");

    await repo.commit({ "code/web/lib/b.js": 'export const WORD = "two";\n' });
    const reloaded = await agent.reconcile();
    assert.deepEqual(outcomes(reloaded), [["hot_reload", "web", "ok"]]);
    assert.equal(await message(agent, "web"), "a+two");
    const stop = events.find((e) => e.name === "bc_gitops:hot_reload:stop")!;
    assert.deepEqual(stop.metadata.modules, ["lib/b.js"]);
    assert.equal(typeof stop.measurements.duration_ms, "number");
    assert.equal(stop.metadata.app, "web");
    const status = (await agent.getAppStatus("web"))!;
    assert.deepEqual(
      [status.reloads, status.port, status.revision, status.status],
      [1, deployed.port, stop.metadata.to_revision, "running"],
    );
    const saved = JSON.parse(await readFile(join(localPath, "state.json"), "utf8")) as {
      apps: Record<string, { revision: string; workspace: string }>;
    };
    assert.deepEqual([saved.apps.web?.revision, saved.apps.web?.workspace], [status.revision, status.path]);
    assert.equal((await agent.status()).status, "synced");

    // A commit that changes no module of the app: recorded, nothing reloaded.
    await repo.commit({ "code/web/README.md": "docs" });
    assert.deepEqual(outcomes(await agent.reconcile()), [["hot_reload", "web", "ok"]]);
    assert.deepEqual(events.filter((e) => e.name === "bc_gitops:hot_reload:stop").at(-1)?.metadata.modules, []);
    assert.equal((await agent.getAppStatus("web"))?.reloads, 1);

    // A broken commit: the old code keeps serving and status says why; the next good commit reloads.
    await repo.commit({ "code/web/lib/b.js": "export const WORD = ;\n" });
    const broken = await agent.reconcile();
    assert.deepEqual(outcomes(broken), [["hot_reload", "web", "failed"]]);
    assert.match(broken.actions[0]?.error ?? "", /the running revision keeps serving$/);
    assert.equal(await message(agent, "web"), "a+two");
    assert.equal((await agent.getAppStatus("web"))?.status, "running");
    assert.ok((await agent.status()).errors.some((e) => e.app === "web" && /hot reload of web/.test(e.message)));
    await repo.commit({ "code/web/lib/b.js": 'export const WORD = "three";\n' });
    assert.deepEqual(outcomes(await agent.reconcile()), [["hot_reload", "web", "ok"]]);
    assert.equal(await message(agent, "web"), "a+three");
    assert.deepEqual((await agent.status()).errors, []);

    // A version bump is still an upgrade (a restart on the new code).
    await repo.commit({
      "apps/web/app.yaml": spec("web", "2.0.0", "{ type: path, path: code/web }", isolation),
      "code/web/lib/b.js": 'export const WORD = "four";\n',
    });
    assert.deepEqual(outcomes(await agent.reconcile()), [["upgrade", "web", "ok"]]);
    assert.equal(await message(agent, "web"), "a+four");
    assert.equal((await agent.getAppStatus("web"))?.version, "2.0.0");
  });
}

test("POST /apps/:name/reload hot-reloads a git source app whose branch moved, and the next tick has nothing left to do", async (t) => {
  const code = await gitopsRepo(t, nestedFetchApp("one"));
  const repo = await gitopsRepo(t, {
    "apps/api/app.yaml": spec("api", "1.0.0", `{ type: git, url: "${code.bare}", ref: main }`),
  });
  const { agent, events } = agentFor(t, repo.bare, join(repo.root, "local"), "127.0.0.1:0");
  await agent.start();
  assert.equal(await message(agent, "api"), "a+one");
  const head = await code.commit({ "lib/b.js": 'export const WORD = "two";\n' });

  const response = await fetch(`http://${agent.address}/apps/api/reload`, {
    method: "POST",
    signal: AbortSignal.timeout(30_000),
  });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { app: "api", revision: head, modules: ["lib/b.js"] });
  assert.equal(await message(agent, "api"), "a+two");
  assert.deepEqual(
    [(await agent.getAppStatus("api"))?.revision, (await agent.getAppStatus("api"))?.reloads],
    [head, 1],
  );
  assert.deepEqual(events.find((e) => e.name === "bc_gitops:hot_reload:stop")?.metadata.modules, ["lib/b.js"]);
  assert.deepEqual(outcomes(await agent.reconcile()), [], "the reload was recorded");

  // Without POST, the branch moving is noticed by the next tick on its own.
  const next = await code.commit({ "lib/b.js": 'export const WORD = "three";\n' });
  assert.deepEqual(outcomes(await agent.reconcile()), [["hot_reload", "api", "ok"]]);
  assert.equal(await message(agent, "api"), "a+three");
  assert.equal((await agent.getAppStatus("api"))?.revision, next);
  assert.deepEqual(await agent.hotReload("api"), { app: "api", revision: next, modules: [] });
  const missing = await fetch(`http://${agent.address}/apps/nope/reload`, {
    method: "POST",
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(missing.status, 404);
  await until("the metrics to count the reload", async () => {
    const text = await (await fetch(`http://${agent.address}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    return /bc_gitops_app_reloads\{app="api"\} 2/.test(text) ? text : undefined;
  });
  const metrics = await (await fetch(`http://${agent.address}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  assert.match(metrics, /^bc_gitops_app_memory_bytes\{app="api",isolation="embedded"\} \d+$/m);
  const app = (await (
    await fetch(`http://${agent.address}/apps/api`, { signal: AbortSignal.timeout(5000) })
  ).json()) as Record<string, unknown>;
  assert.equal(typeof app.memory_mb, "number");
  assert.match(String(app.memory_source), /estimate/);
});
