import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { runtimeName } from "../../src/_platform.ts";
import { createAgent } from "../../src/agent.ts";
import { loadConfig } from "../../src/config.ts";
import { createHandler } from "../../src/server.ts";
import type { TelemetryEvent } from "../../src/telemetry.ts";
import { until } from "../helpers/e2e.ts";
import { FakeRuntime } from "../helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec } from "../helpers/gitops-repo.ts";
import { tempDir, writeTree } from "../helpers/tmp.ts";

test("labels come from the file, BC_GITOPS_LABELS and repeated --label flags, merged key by key (flags win)", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, {
    "bc-gitops.yaml": "repo_url: /srv/r\nhost: Web-1\nlabels: { role: web, region: eu, zone: 3 }\n",
  });
  const config = await loadConfig({
    file: join(dir, "bc-gitops.yaml"),
    env: { BC_GITOPS_LABELS: "region=us, tier=canary" },
    flags: { label: ["tier=stable", "gpu="] },
  });
  assert.equal(config.host, "web-1", "host names are lower-cased");
  assert.deepEqual(config.labels, { role: "web", region: "us", zone: "3", tier: "stable", gpu: "" });
  assert.equal(config.reconcile_jitter, "10%");
});

const BAD_CONFIG: [title: string, sources: Parameters<typeof loadConfig>[0], message: RegExp][] = [
  ["a host name with a space", { flags: { host: "web 1" } }, /^--host: "web 1" is not a valid host name/],
  [
    "a label without =",
    { env: { BC_GITOPS_LABELS: "role=web,canary" } },
    /^BC_GITOPS_LABELS: expected key=value, got "canary"/,
  ],
  ["a bad label key", { flags: { label: ["my role=web"] } }, /^--label: "my role" is not a valid label key/],
  ["a bad label value", { flags: { label: ["role=web server"] } }, /^--label: "web server" is not a valid label value/],
  ["a built-in label", { flags: { label: ["os=plan9"] } }, /^--label: "os" is a built-in label the agent sets itself/],
  ["host as a label", { flags: { label: ["host=x"] } }, /built-in label .* \(set the host key instead\)/],
  [
    "a rollout_wave that is not a number",
    { flags: { label: ["rollout_wave=first"] } },
    /rollout_wave must be a whole number/,
  ],
  [
    "a jitter that is neither",
    { flags: { reconcileJitter: "often" } },
    /^--reconcile-jitter: expected a duration like "5s" or a fraction/,
  ],
  [
    "a jitter above the interval",
    { flags: { reconcileJitter: "2m", reconcileInterval: "1m" } },
    /^--reconcile-jitter: must not exceed reconcile_interval \(60000 ms\)/,
  ],
];

for (const [title, sources, message] of BAD_CONFIG) {
  test(`configuration names the bad fleet setting: ${title}`, async () => {
    await assert.rejects(
      loadConfig({ env: {}, ...sources, flags: { repoUrl: "/srv/r", ...sources?.flags } }),
      (error: Error) => {
        assert.match(error.message, message);
        return true;
      },
    );
  });
}

test("createAgent takes host, labels and reconcileJitter, and refuses bad ones with E_CONFIG", () => {
  const agent = createAgent({
    repoUrl: "/srv/r",
    host: "db-1",
    labels: { role: "db" },
    reconcileJitter: "5s",
    listen: "off",
  });
  assert.equal(agent.config.host, "db-1");
  assert.deepEqual(agent.config.labels, { role: "db" });
  assert.throws(() => createAgent({ repoUrl: "/srv/r", labels: { "a b": "c" } }), /invalid agent option labels: "a b"/);
});

test("status, events, /apps/:name and metrics carry the host and its labels; GET /apps/:name shows the effective spec and which overrides applied", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/web/app.yaml": yamlSpec(
      "web",
      "1.9.0",
      [
        "env: { pool: 10, db_password: hunter2hunter2 }",
        "placement: { labels: { role: web } }",
        "overrides:",
        "  - match: { labels: { tier: canary } }",
        '    version: "2.0.0"',
        "    env: { pool: 20 }",
        "  - match: { labels: { role: db } }",
        "    env: { pool: 99 }",
        "rollout: { waves: 3, interval: 10m }",
        "",
      ].join("\n"),
    ),
    "apps/db/app.yaml": yamlSpec("db", "1.0.0", "placement: { labels: { role: db } }\n"),
  });
  const runtime = new FakeRuntime();
  const events: TelemetryEvent[] = [];
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    listen: "off",
    reconcileInterval: "1h",
    host: "web-1",
    labels: { role: "web", tier: "canary", rollout_wave: "0" },
  });
  t.after(() => agent.stop());
  agent.on("*", (event) => void events.push(event));
  const handler = createHandler(agent, { listen: "off" });
  const first = await agent.start();
  assert.equal(first.status, "synced");
  assert.deepEqual(runtime.calls, ["deploy web 2.0.0"], "db is not placed on a web host");

  const status = await agent.status();
  assert.equal(status.host, "web-1");
  assert.deepEqual(status.labels, {
    role: "web",
    tier: "canary",
    rollout_wave: "0",
    host: "web-1",
    os: process.platform,
    arch: process.arch,
    runtime: runtimeName,
  });
  const deployed = events.find((e) => e.name === "bc_gitops:deploy:stop");
  assert.equal(deployed?.metadata.host, "web-1");
  assert.deepEqual((deployed?.metadata.labels as Record<string, string>).role, "web");
  assert.ok(
    events.every((e) => e.metadata.host === "web-1"),
    "every event",
  );

  const app = await (await handler(new Request("http://127.0.0.1/apps/web"))).json();
  assert.equal(app.effective_spec.version, "2.0.0");
  assert.deepEqual(app.effective_spec.env, { pool: 20, db_password: "***" }, "env masked as everywhere");
  assert.equal("overrides" in app.effective_spec, false);
  assert.deepEqual(app.overrides_applied, [{ index: 0, match: "tier=canary", fields: ["version", "env"] }]);
  assert.deepEqual(app.rollout, { wave: 0, waves: 3, interval_ms: 600_000, paused: false, waiting: false });
  assert.equal(app.desired_version, "2.0.0");
  assert.equal(
    (await handler(new Request("http://127.0.0.1/apps/db"))).status,
    404,
    "an app not placed here is not this host's",
  );

  const metrics = await (await handler(new Request("http://127.0.0.1/metrics"))).text();
  assert.match(
    metrics,
    /^bc_gitops_host_info\{host="web-1",label_role="web",label_tier="canary",label_rollout_wave="0",label_os="[a-z0-9]+",label_arch="\w+",label_runtime="(bun|deno|node)"\} 1$/m,
  );
  assert.match(
    metrics,
    /^bc_gitops_app_info\{app="web",version="2\.0\.0",status="running",health="healthy",isolation="embedded",host="web-1"\} 1$/m,
  );
  assert.match(metrics, /^bc_gitops_app_desired_version_info\{app="web",version="2\.0\.0",host="web-1"\} 1$/m);
  assert.match(metrics, /^bc_gitops_app_rollout_wave\{app="web",host="web-1"\} 0$/m);
  assert.match(metrics, /^bc_gitops_app_rollout_waiting\{app="web",host="web-1"\} 0$/m);
});

test("an app placed here that depends on one that is not shows in status as an error of its own, and is not deployed", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/web/app.yaml": yamlSpec("web", "1.0.0", "depends_on: [db]\n"),
    "apps/db/app.yaml": yamlSpec("db", "1.0.0", "placement: { labels: { role: db } }\n"),
  });
  const runtime = new FakeRuntime();
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    listen: "off",
    reconcileInterval: "1h",
    host: "web-1",
    labels: { role: "web" },
  });
  t.after(() => agent.stop());
  const first = await agent.start();
  assert.deepEqual(runtime.calls, []);
  assert.equal(first.status, "degraded");
  const error = first.errors.find((e) => e.file === "apps/web/app.yaml");
  assert.equal(error?.code, "E_SPEC");
  assert.equal(error?.path, "depends_on");
  assert.match(error?.message ?? "", /^depends on "db", which is not placed on host web-1 /);
});

test("a restarted agent not started by hand waits a random part of the jitter before its first poll; a reconcile asked for meanwhile runs at once", async (t) => {
  const repo = await gitopsRepo(t, { "apps/web/app.yaml": yamlSpec("web", "1.0.0") });
  const localPath = join(repo.root, "local");
  const options = {
    repoUrl: repo.bare,
    localPath,
    listen: "off",
    reconcileInterval: "2h",
    reconcileJitter: "1h",
    jitterFirstTick: true,
    random: () => 0.99,
  };
  const fresh = createAgent({ ...options, runtime: new FakeRuntime() });
  t.after(() => fresh.stop());
  assert.equal((await fresh.start()).status, "synced", "a first start (nothing to restore) polls at once");
  await fresh.stop();

  const runtime = new FakeRuntime();
  const restarted = createAgent({ ...options, runtime });
  t.after(() => restarted.stop());
  const ticks: string[] = [];
  restarted.on("bc_gitops:reconcile:start", () => void ticks.push("tick"));
  const started = restarted.start();
  await until("the app restored from state.json", async () =>
    runtime.calls.includes("deploy web 1.0.0") ? true : undefined,
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(ticks, [], "no poll yet: it waits about 59 minutes");
  const asked = await restarted.reconcile();
  assert.equal(asked.status, "synced");
  assert.equal((await started).status, "synced");
  assert.deepEqual(ticks, ["tick"]);
});
