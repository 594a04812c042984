// End to end: the real agent (git, reconciler, loop) with the default runtime running real apps in
// process, from path sources committed to a real gitops repository (and one npm source served by
// the fixture registry).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Agent } from "../src/agent.ts";
import type { AppState } from "../src/runtime.ts";
import { agentFor, code, FIXTURES, until } from "./helpers/e2e.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { startRegistry } from "./helpers/registry.ts";

const spec = (name: string, version: string, lines: string[] = []) =>
  [`name: ${name}`, `version: "${version}"`, "source: { type: path, path: code/" + name + " }", ...lines].join("\n") +
  "\n";

/** db: a fetch app (rt-fetch) checked over HTTP every 100 ms. */
const db = (version = "1.0.0") =>
  spec("db", version, ["env: { port: 0 }", "health: { type: http, path: /health, interval: 100, timeout: 1000 }"]);
/** web: a lifecycle app (rt-server) that needs db. */
const web = (version: string, env = "port: 0") =>
  spec("web", version, [
    `env: { ${env} }`,
    "depends_on: [db]",
    "health: { type: http, path: /health, interval: 60s, timeout: 1000 }",
  ]);

interface Answer {
  message: string;
  version: string;
  env: Record<string, unknown>;
}

/** What the app answers on its reported port, retried while it restarts (its port may change). */
async function answer(agent: Agent, app: string, check: (a: Answer) => boolean = () => true): Promise<Answer> {
  return until(`${app} to answer`, async () => {
    const port = (await agent.getAppStatus(app))?.port;
    if (typeof port !== "number") return undefined;
    const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
    const body = (await response.json()) as Answer;
    return response.ok && check(body) ? body : undefined;
  });
}

async function refuses(port: unknown): Promise<void> {
  await assert.rejects(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) }));
}

test("the agent deploys real apps, gates a dependent on its dependency's health, upgrades, rolls back, reconfigures and removes", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": db(),
    "apps/web/app.yaml": web("1.0.0"),
    ...(await code("rt-fetch", "db")),
    ...(await code("rt-server", "web")),
  });
  const localPath = join(repo.root, "local");
  // db answers 503 on /health while this file exists (its data dir is <local_path>/data/db).
  const sick = join(localPath, "data", "db", "unhealthy");
  await mkdir(join(localPath, "data", "db"), { recursive: true });
  await writeFile(sick, "");
  const agent = agentFor(t, repo.bare, localPath);

  const first = await agent.start();
  assert.deepEqual(
    first.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["deploy", "db", "ok"],
      ["deploy", "web", "pending"],
    ],
  );
  assert.match(first.actions[1]!.reason ?? "", /waiting for db \(running, unknown\)/);
  assert.equal((await agent.getAppStatus("web"))?.status, "pending");
  assert.equal((await answer(agent, "db")).message, "rt-fetch says hello");

  await rm(sick);
  await until("web to be deployed once db is healthy", async () =>
    (await agent.getAppStatus("web"))?.status === "running" ? true : undefined,
  );
  assert.equal((await agent.getAppStatus("db"))?.health, "healthy");
  assert.deepEqual(await answer(agent, "web"), { message: "rt-server says hello", version: "1.0.0", env: { port: 0 } });

  // Upgrade: a version bump together with new code.
  await repo.commit({
    "apps/web/app.yaml": web("2.0.0"),
    "code/web/message.js": 'export const MESSAGE = "web two";\n',
  });
  const upgraded = await agent.reconcile();
  assert.deepEqual(
    upgraded.actions.map((a) => [a.type, a.app, a.outcome]),
    [["upgrade", "web", "ok"]],
  );
  assert.deepEqual(await answer(agent, "web"), { message: "web two", version: "2.0.0", env: { port: 0 } });

  // A failing upgrade: 3.0.0 throws in start(); 2.0.0 comes back and the error shows in status.
  await repo.commit({ "apps/web/app.yaml": web("3.0.0", "port: 0, fail_start: true") });
  const failed = await agent.reconcile();
  assert.deepEqual(
    failed.actions.map((a) => [a.type, a.app, a.outcome]),
    [["upgrade", "web", "failed"]],
  );
  assert.match(failed.actions[0]!.error ?? "", /rt-server 3\.0\.0 refuses to start; rolled back to 2\.0\.0$/);
  const rolledBack = await agent.getAppStatus("web");
  assert.equal(rolledBack?.version, "2.0.0");
  assert.match(rolledBack?.last_error ?? "", /upgrade web 2\.0\.0 -> 3\.0\.0 failed: .*rolled back to 2\.0\.0/);
  assert.ok((await agent.status()).errors.some((e) => e.app === "web" && /rolled back/.test(e.message)));
  assert.equal((await answer(agent, "web", (a) => a.version === "2.0.0")).message, "web two");

  // Reconfigure (rt-server has no reconfigure(): it is restarted with the new env).
  await repo.commit({ "apps/web/app.yaml": web("2.0.0", "port: 0, greeting: hej") });
  const reconfigured = await agent.reconcile();
  assert.deepEqual(
    reconfigured.actions.map((a) => [a.type, a.app, a.outcome]),
    [["reconfigure", "web", "ok"]],
  );
  assert.deepEqual((await answer(agent, "web", (a) => a.env.greeting === "hej")).env, { port: 0, greeting: "hej" });

  // Remove: stopped, workspaces deleted, data kept.
  const port = (await agent.getAppStatus("web"))?.port;
  await repo.commit({ "apps/web/app.yaml": null });
  const removed = await agent.reconcile();
  assert.deepEqual(
    removed.actions.map((a) => [a.type, a.app, a.outcome]),
    [["remove", "web", "ok"]],
  );
  assert.equal(await agent.getAppStatus("web"), undefined);
  await refuses(port);
  await assert.rejects(stat(join(localPath, "workspace", "web")), { code: "ENOENT" });
  assert.ok((await stat(join(localPath, "data", "web"))).isDirectory());
  assert.equal((await agent.status()).status, "synced");
});

test("a restarted agent brings its apps back from the workspace cache while the gitops remote is unreachable", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": db(),
    "apps/web/app.yaml": web("1.0.0"),
    ...(await code("rt-fetch", "db")),
    ...(await code("rt-server", "web")),
  });
  const localPath = join(repo.root, "local");
  const agent = agentFor(t, repo.bare, localPath);
  const first = await agent.start();
  assert.deepEqual(
    first.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["deploy", "db", "ok"],
      ["deploy", "web", "ok"],
    ],
  );
  const before = (await agent.getAppStatus("web")) as AppState;
  assert.equal((await answer(agent, "web")).version, "1.0.0");
  const workspaces = await readdir(join(localPath, "workspace", "web"));
  await agent.stop();
  await refuses(before.port);

  await rename(repo.bare, `${repo.bare}.away`);
  const again = agentFor(t, repo.bare, localPath);
  const result = await again.start();
  assert.equal(result.status, "error", "the remote cannot be fetched");
  for (const app of ["db", "web"]) assert.equal((await again.getAppStatus(app))?.status, "running", app);
  assert.equal((await answer(again, "web")).message, "rt-server says hello");
  assert.equal((await answer(again, "db")).message, "rt-fetch says hello");
  assert.equal((await again.getAppStatus("web"))?.revision, before.revision);
  assert.deepEqual(await readdir(join(localPath, "workspace", "web")), workspaces, "the cached workspace was reused");
});

test("an npm app from a registry runs, and comes back after an agent restart with the registry gone", async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.close());
  await registry.publish("rt-fetch", "1.0.0", join(FIXTURES, "rt-fetch"));
  const app = [
    "name: shop",
    'version: "1.0.0"',
    `source: { type: npm, package: rt-fetch, registry: "${registry.url}" }`,
    "env: { port: 0 }",
    "health: { type: http, path: /health, timeout: 1000 }",
  ].join("\n");
  const repo = await gitopsRepo(t, { "apps/shop/app.yaml": `${app}\n` });
  const localPath = join(repo.root, "local");
  const agent = agentFor(t, repo.bare, localPath);
  const first = await agent.start();
  assert.deepEqual(
    first.actions.map((a) => [a.type, a.app, a.outcome]),
    [["deploy", "shop", "ok"]],
  );
  assert.deepEqual(await answer(agent, "shop"), { message: "rt-fetch says hello", version: "1.0.0", env: { port: 0 } });
  assert.ok(
    registry.requests.some((r) => r.endsWith(".tgz")),
    "the tarball was downloaded",
  );
  await agent.stop();

  await registry.close();
  const again = agentFor(t, repo.bare, localPath);
  const result = await again.start();
  assert.deepEqual(result.actions, [], "nothing to do: the app was restored as it was");
  assert.equal(result.status, "synced");
  assert.equal((await answer(again, "shop")).version, "1.0.0");
});
