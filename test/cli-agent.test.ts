import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent } from "../src/agent.ts";
import { runCli } from "./helpers/cli.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { git, gitopsRepo, yamlSpec } from "./helpers/gitops-repo.ts";
import { tempDir } from "./helpers/tmp.ts";

async function runningAgent(t: TestContext, token?: string) {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1.0.0"),
    "apps/web/app.yaml": yamlSpec("web", "2.0.0", "depends_on: [db]\nenv: { api_token: s3cr3t-value }\n"),
  });
  const runtime = new FakeRuntime();
  const localPath = join(repo.root, "local");
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath,
    runtime,
    reconcileInterval: "1h",
    listen: "127.0.0.1:0",
    token,
  });
  t.after(() => agent.stop());
  await agent.start();
  return { repo, runtime, agent, localPath, url: `http://${agent.address}` };
}

test("status prints a table of the apps and the agent's status word", async (t) => {
  const { url } = await runningAgent(t);
  const result = await runCli(["status", "--url", url]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /^synced {2}commit [0-9a-f]{12} {2}2\/2 healthy/);
  assert.match(result.stdout, /APP +VERSION +STATUS +HEALTH +REVISION +SINCE +LAST ERROR/);
  assert.match(result.stdout, /\ndb +1\.0\.0 +running +healthy/);
  assert.match(result.stdout, /\nweb +2\.0\.0 +running +healthy/);
});

test("status --json and status APP --json print the API's shapes, secrets masked", async (t) => {
  const { url } = await runningAgent(t);
  const all = JSON.parse((await runCli(["status", "--json", "--url", url])).stdout);
  assert.equal(all.status, "synced");
  assert.deepEqual(
    all.apps.map((a: { name: string }) => a.name),
    ["db", "web"],
  );
  const web = JSON.parse((await runCli(["status", "web", "--json", "--url", url])).stdout);
  assert.equal(web.version, "2.0.0");
  assert.deepEqual(web.env, { api_token: "***" });
  const missing = await runCli(["status", "nope", "--url", url]);
  assert.equal(missing.exitCode, 1);
  assert.match(missing.stderr, /404/);
});

test("reconcile waits for a tick and prints what it did", async (t) => {
  const { url, repo } = await runningAgent(t);
  await repo.commit({ "apps/db/app.yaml": yamlSpec("db", "1.1.0") });
  const result = await runCli(["reconcile", "--url", url]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /✔ upgrade db: version 1\.0\.0 -> 1\.1\.0/);
  assert.match(result.stdout, /synced at [0-9a-f]{12} in \d+ ms/);
});

test("mutating commands need the token when the agent has one", async (t) => {
  const { url } = await runningAgent(t, "a-long-enough-token");
  const refused = await runCli(["reconcile", "--url", url]);
  assert.equal(refused.exitCode, 1);
  assert.match(refused.stderr, /401.*pass --token or set BC_GITOPS_TOKEN/);
  const allowed = await runCli(["reconcile", "--url", url], { env: { BC_GITOPS_TOKEN: "a-long-enough-token" } });
  assert.equal(allowed.exitCode, 0, allowed.stderr);
});

test("reload reports a runtime that cannot hot-reload as one clear error", async (t) => {
  const { url } = await runningAgent(t);
  const result = await runCli(["reload", "web", "--url", url]);
  assert.equal(result.exitCode, 1);
  assert.match(result.stderr, /cannot hot-reload/);
});

test("a command with no agent to talk to says where it looked", async () => {
  const result = await runCli(["status", "--url", "http://127.0.0.1:1"]);
  assert.equal(result.exitCode, 1);
  assert.match(result.stderr, /cannot reach the agent at http:\/\/127\.0\.0\.1:1 .*is `bc-gitops run` running there\?/);
});

test("plan exits 0 when the host matches the repo, 2 with changes, 1 on errors", async (t) => {
  const { url, repo, localPath } = await runningAgent(t);
  const flags = ["--repo-url", repo.bare, "--local-path", localPath, "--url", url];
  const none = await runCli(["plan", ...flags]);
  assert.equal(none.exitCode, 0, none.stderr + none.stdout);
  assert.match(none.stdout, /nothing to do/);
  await repo.commit({ "apps/db/app.yaml": yamlSpec("db", "1.2.0"), "apps/new/app.yaml": yamlSpec("new", "0.1.0") });
  const some = await runCli(["plan", ...flags]);
  assert.equal(some.exitCode, 2, some.stderr);
  assert.match(some.stdout, /~ upgrade db: version 1\.0\.0 -> 1\.2\.0/);
  assert.match(some.stdout, /\+ deploy new 0\.1\.0/);
  const json = JSON.parse((await runCli(["plan", ...flags, "--json"])).stdout);
  assert.deepEqual(
    json.actions.map((a: { type: string; app: string }) => `${a.type} ${a.app}`),
    ["upgrade db", "deploy new"],
  );
  await repo.commit({ "apps/new/app.yaml": "name: new\nversion: 1\n" });
  const broken = await runCli(["plan", ...flags]);
  assert.equal(broken.exitCode, 1);
  assert.match(broken.stdout, /apps\/new\/app\.yaml:2:10 version: expected a string/);
});

test("plan without a running agent compares with state.json and says so", async (t) => {
  const { repo, localPath, agent } = await runningAgent(t);
  await agent.stop();
  const result = await runCli([
    "plan",
    "--repo-url",
    repo.bare,
    "--local-path",
    localPath,
    "--url",
    "http://127.0.0.1:1",
  ]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /no agent answered .* compared with .*state\.json/);
});

test("init creates a committed gitops repository whose specs validate", async (t) => {
  const dir = join(await tempDir(t), "my-gitops");
  const result = await runCli(["init", dir]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /apps\/hello\/app\.yaml/);
  assert.equal(await git(dir, "status", "--porcelain"), "", "everything is committed");
  assert.match(await git(dir, "log", "--oneline"), /Initial gitops repository/);
  const validate = await runCli(["validate", dir]);
  assert.equal(validate.exitCode, 0, validate.stdout);
  assert.match(await readFile(join(dir, "apps/hello/app.yaml"), "utf8"), /type: path/);
  const again = await runCli(["init", dir]);
  assert.equal(again.exitCode, 1);
  assert.match(again.stderr, /is not empty/);
});

test("plan shows a same-version code change as hot_reload, as the agent would do it", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/ticker/app.yaml": yamlSpec("ticker", "1.0.0", "source: { type: path, path: code/ticker }\n"),
    "code/ticker/package.json": '{ "name": "ticker", "version": "1.0.0", "type": "module", "main": "index.js" }\n',
    "code/ticker/index.js": "export async function start() { return {}; }\nexport async function stop() {}\n",
  });
  const localPath = join(repo.root, "local");
  const agent = createAgent({ repoUrl: repo.bare, localPath, reconcileInterval: "1h", listen: "127.0.0.1:0" });
  t.after(() => agent.stop());
  assert.equal((await agent.start()).status, "synced");
  const flags = ["--repo-url", repo.bare, "--local-path", localPath, "--url", `http://${agent.address}`];
  const none = await runCli(["plan", ...flags]);
  assert.equal(none.exitCode, 0, none.stdout + none.stderr);
  await repo.commit({
    "code/ticker/index.js": "export async function start() { return { v: 2 }; }\nexport async function stop() {}\n",
  });
  const changed = await runCli(["plan", ...flags]);
  assert.equal(changed.exitCode, 2, changed.stdout + changed.stderr);
  assert.match(
    changed.stdout,
    /~ hot_reload ticker [0-9a-f]{12} -> [0-9a-f]{12}$/m,
    "a path source's revision is its git tree id",
  );
});

test("reload right after a push fetches first and reloads the pushed code", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/ticker/app.yaml": yamlSpec("ticker", "1.0.0", "source: { type: path, path: code/ticker }\n"),
    "code/ticker/package.json": '{ "name": "ticker", "version": "1.0.0", "type": "module", "main": "index.js" }\n',
    "code/ticker/index.js": "export async function start() { return {}; }\nexport async function stop() {}\n",
  });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    reconcileInterval: "1h",
    listen: "127.0.0.1:0",
  });
  t.after(() => agent.stop());
  assert.equal((await agent.start()).status, "synced");
  const before = (await agent.getAppStatus("ticker"))?.revision;
  await repo.commit({
    "code/ticker/index.js": "export async function start() { return { v: 2 }; }\nexport async function stop() {}\n",
  });
  const result = await runCli(["reload", "ticker", "--url", `http://${agent.address}`]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /^reloaded ticker at [0-9a-f]{12}: index\.js$/m);
  assert.notEqual((await agent.getAppStatus("ticker"))?.revision, before);
  assert.deepEqual((await agent.reconcile()).actions, [], "the reload left nothing for the next tick");
});

test("plan --url without --local-path plans against what that agent has deployed, from its API", async (t) => {
  const { url, repo } = await runningAgent(t);
  // This host's default state path is empty: the agent's state lives elsewhere.
  const env = { XDG_STATE_HOME: await tempDir(t), BC_GITOPS_LOCAL_PATH: "" };
  const none = await runCli(["plan", "--repo-url", repo.bare, "--url", url], { env });
  assert.equal(none.exitCode, 0, none.stdout + none.stderr);
  assert.match(none.stdout, /^nothing to do: the host matches the repository$/m);
  assert.match(none.stdout, /compared with what the agent at http:\/\/127\.0\.0\.1:\d+ has deployed/);

  await repo.commit({
    "apps/db/app.yaml": yamlSpec("db", "1.2.0"),
    "apps/web/app.yaml": yamlSpec("web", "2.0.0", "depends_on: [db]\nenv: { api_token: s3cr3t-value, pool: 3 }\n"),
  });
  const some = JSON.parse((await runCli(["plan", "--repo-url", repo.bare, "--url", url, "--json"], { env })).stdout);
  assert.equal(some.deployed, "agent");
  assert.deepEqual(
    some.actions.map((a: { type: string; app: string }) => `${a.type} ${a.app}`),
    ["upgrade db", "reconfigure web"],
  );

  // The API view that plan reads: additive, behind a query, secrets masked.
  const plain = (await (await fetch(`${url}/state/current`, { signal: AbortSignal.timeout(5000) })).json()) as Record<
    string,
    unknown
  >;
  assert.deepEqual(Object.keys(plain), ["apps"]);
  const withDeployed = (await (
    await fetch(`${url}/state/current?include=deployed`, { signal: AbortSignal.timeout(5000) })
  ).json()) as {
    deployed: Record<string, { spec: { version: string; env: Record<string, unknown> }; file?: string }>;
  };
  assert.equal(withDeployed.deployed.web?.spec.version, "2.0.0");
  assert.deepEqual(withDeployed.deployed.web?.spec.env, { api_token: "***" });
  assert.equal(withDeployed.deployed.web?.file, "apps/web/app.yaml");

  const gone = await runCli(["plan", "--repo-url", repo.bare, "--url", "http://127.0.0.1:1"], { env });
  assert.equal(gone.exitCode, 1);
  assert.match(gone.stderr, /cannot reach the agent at http:\/\/127\.0\.0\.1:1/);
});
