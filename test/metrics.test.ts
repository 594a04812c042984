import { test } from "node:test";
import assert from "node:assert/strict";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { runtimeName, runtimeVersion } from "../src/_platform.ts";
import { createAgent } from "../src/agent.ts";
import { DURATION_BUCKETS, Metrics, escapeLabelValue } from "../src/metrics.ts";
import type { AppState, HotReloadResult } from "../src/runtime.ts";
import { createHandler } from "../src/server.ts";
import type { AppSpec } from "../src/spec.ts";
import type { AgentStatus } from "../src/status.ts";
import { VERSION } from "../src/version.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec } from "./helpers/gitops-repo.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict parser of the text format: every line is a HELP, a TYPE or a sample of a declared family. */
function parse(text: string): { samples: Sample[]; types: Map<string, string>; help: Map<string, string> } {
  assert.ok(text.endsWith("\n"), "ends with a newline");
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
    if (meta) {
      (meta[1] === "HELP" ? help : types).set(meta[2]!, meta[3]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    for (let at = 0; at < body.length;) {
      pair.lastIndex = at;
      const p = pair.exec(body);
      assert.ok(p, `bad labels in: ${line}`);
      labels[p[1]!] = p[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
      at = pair.lastIndex;
    }
    const name = m[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(family), `${name} has a TYPE line before it`);
    assert.ok(help.has(family), `${name} has a HELP line`);
    if (family !== name) assert.equal(types.get(family), "histogram", `${name} belongs to a histogram`);
    samples.push({ name, labels, value: m[3] === "+Inf" ? Infinity : Number(m[3]) });
  }
  return { samples, types, help };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(
    (s) =>
      s.name === name &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
      Object.keys(s.labels).length === Object.keys(labels).length,
  )?.value;
}

/** Checks a histogram's series: cumulative buckets, +Inf equals count, sum present. */
function assertHistogram(samples: Sample[], name: string, labels: Record<string, string>, count: number): void {
  const buckets = samples.filter(
    (s) => s.name === `${name}_bucket` && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.deepEqual(
    buckets.map((b) => b.labels.le),
    [...DURATION_BUCKETS.map(String), "+Inf"],
    `${name} buckets`,
  );
  for (let i = 1; i < buckets.length; i++)
    assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `${name} buckets are cumulative`);
  assert.equal(buckets.at(-1)!.value, count, `${name}{le="+Inf"}`);
  assert.equal(value(samples, `${name}_count`, labels), count, `${name}_count`);
  assert.equal(typeof value(samples, `${name}_sum`, labels), "number");
}

class ReloadingRuntime extends FakeRuntime {
  async hotReload(spec: AppSpec): Promise<HotReloadResult> {
    const app = this.apps.get(spec.name)!;
    app.reloads = (app.reloads ?? 0) + 1;
    return { app: spec.name, revision: `r${app.reloads}`, modules: ["src/a.ts"] };
  }
}

test("metrics after a few reconciles count ticks, actions, git work and app states, in valid text format", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1.0.0"),
    "apps/web/app.yaml": yamlSpec("web", "1.0.0", "depends_on: [db]\n"),
  });
  const runtime = new ReloadingRuntime();
  let clock = 1_700_000_000_000;
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    token: "metrics-token-1",
  });
  t.after(() => agent.stop());
  const metrics = new Metrics({ now: () => clock });
  agent.on("*", metrics.observe);
  const handler = createHandler(agent, { metrics });
  const scrape = async () => {
    const response = await handler(new Request("http://agent.test/metrics"));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    return parse(await response.text());
  };

  const empty = await scrape();
  assert.equal(value(empty.samples, "bc_gitops_reconcile_total"), 0);
  assert.equal(value(empty.samples, "bc_gitops_status", { status: "initializing" }), 1);
  assert.equal(
    value(empty.samples, "bc_gitops_last_success_timestamp_seconds"),
    undefined,
    "no success yet, no sample",
  );

  await agent.start(); // clone, deploy db and web
  clock += 1000;
  await repo.commit({ "apps/db/app.yaml": yamlSpec("db", "1.1.0") });
  await agent.reconcile(); // fetch, upgrade db
  runtime.crash("web");
  clock += 1000;
  await agent.reconcile(); // restart web
  const reload = await handler(
    new Request("http://agent.test/apps/db/reload", {
      method: "POST",
      headers: { authorization: "Bearer metrics-token-1" },
    }),
  );
  assert.equal(reload.status, 200);
  await reload.body?.cancel();
  clock += 1000;
  await agent.reconcile(); // refreshes the runtime's view (reload counts)

  const { samples, types } = await scrape();
  for (const name of types.keys()) assert.match(name, /^bc_gitops_[a-z_]+$/);
  assert.equal(types.get("bc_gitops_reconcile_total"), "counter");
  assert.equal(types.get("bc_gitops_reconcile_duration_seconds"), "histogram");
  assert.equal(types.get("bc_gitops_apps"), "gauge");

  assert.equal(
    value(samples, "bc_gitops_build_info", { version: VERSION, runtime: runtimeName, runtime_version: runtimeVersion }),
    1,
  );
  assert.equal(value(samples, "bc_gitops_reconcile_total"), 4);
  assert.equal(value(samples, "bc_gitops_reconcile_errors_total"), 0);
  assertHistogram(samples, "bc_gitops_reconcile_duration_seconds", {}, 4);
  assert.equal(value(samples, "bc_gitops_last_reconcile_timestamp_seconds"), clock / 1000);
  assert.equal(value(samples, "bc_gitops_last_success_timestamp_seconds"), clock / 1000);
  assert.equal(value(samples, "bc_gitops_status", { status: "synced" }), 1);
  assert.equal(value(samples, "bc_gitops_status", { status: "error" }), 0);
  assert.equal(value(samples, "bc_gitops_errors"), 0);

  const actions: [string, string, number][] = [
    ["deploy", "db", 1],
    ["deploy", "web", 1],
    ["upgrade", "db", 1],
    ["restart", "web", 1],
    ["hot_reload", "db", 1],
  ];
  for (const [action, app, count] of actions)
    assert.equal(value(samples, "bc_gitops_actions_total", { action, app, result: "ok" }), count, `${action} ${app}`);
  assert.equal(samples.filter((s) => s.name === "bc_gitops_actions_total").length, actions.length);
  assertHistogram(samples, "bc_gitops_action_duration_seconds", { action: "deploy" }, 2);
  assertHistogram(samples, "bc_gitops_action_duration_seconds", { action: "upgrade" }, 1);
  assertHistogram(samples, "bc_gitops_git_duration_seconds", { operation: "clone" }, 1);
  assertHistogram(samples, "bc_gitops_git_duration_seconds", { operation: "fetch" }, 1);

  assert.equal(value(samples, "bc_gitops_apps", { status: "running" }), 2);
  assert.equal(value(samples, "bc_gitops_apps", { status: "failed" }), 0);
  assert.equal(value(samples, "bc_gitops_apps_health", { health: "healthy" }), 2);
  assert.equal(
    value(samples, "bc_gitops_app_info", {
      app: "db",
      version: "1.1.0",
      status: "running",
      health: "healthy",
      isolation: "embedded",
      host: (await agent.status()).host as string,
    }),
    1,
  );
  assert.equal(value(samples, "bc_gitops_app_restarts", { app: "web" }), 1);
  assert.equal(value(samples, "bc_gitops_app_restarts", { app: "db" }), 0);
  assert.equal(value(samples, "bc_gitops_app_reloads", { app: "db" }), 1);
  assert.ok((value(samples, "bc_gitops_process_resident_memory_bytes") ?? 0) > 0);

  // The remote goes away: an error tick, counted as a git fetch error; the last success stays.
  const success = clock / 1000;
  await rename(repo.bare, `${repo.bare}.away`);
  clock += 1000;
  await agent.reconcile();
  const down = (await scrape()).samples;
  assert.equal(value(down, "bc_gitops_reconcile_total"), 5);
  assert.equal(value(down, "bc_gitops_reconcile_errors_total"), 1);
  assert.equal(value(down, "bc_gitops_git_fetch_errors_total"), 1);
  assert.equal(value(down, "bc_gitops_status", { status: "error" }), 1);
  assert.equal(value(down, "bc_gitops_last_reconcile_timestamp_seconds"), clock / 1000);
  assert.equal(value(down, "bc_gitops_last_success_timestamp_seconds"), success);
});

test("failed actions are counted by result, and a reload that changed nothing is not a reload", () => {
  const metrics = new Metrics();
  metrics.observe({
    name: "bc_gitops:deploy:error",
    measurements: { duration_ms: 5 },
    metadata: { app: "db", error: "boom" },
  });
  metrics.observe({
    name: "bc_gitops:deploy:error",
    measurements: { duration_ms: 5 },
    metadata: { app: "db", error: "boom" },
  });
  metrics.observe({
    name: "bc_gitops:hot_reload:stop",
    measurements: { duration_ms: 5 },
    metadata: { app: "db", modules: [] },
  });
  const status: AgentStatus = {
    status: "degraded",
    last_commit: null,
    app_count: 0,
    healthy_count: 0,
    last_reconcile: { at: null, duration_ms: null, error: null },
    errors: [{ app: "db", message: "boom" }],
  };
  const { samples } = parse(metrics.render({ status, apps: {} }));
  assert.equal(value(samples, "bc_gitops_actions_total", { action: "deploy", app: "db", result: "error" }), 2);
  assert.equal(value(samples, "bc_gitops_actions_total", { action: "hot_reload", app: "db", result: "ok" }), undefined);
  assert.equal(value(samples, "bc_gitops_errors"), 1);
  assert.equal(value(samples, "bc_gitops_status", { status: "degraded" }), 1);
});

test("label values are escaped and credentials redacted", () => {
  const cases: [string, string][] = [
    ["plain", "plain"],
    ['say "hi"', 'say \\"hi\\"'],
    ["back\\slash", "back\\\\slash"],
    ["two\nlines", "two\\nlines"],
  ];
  for (const [raw, escaped] of cases) assert.equal(escapeLabelValue(raw), escaped);
  const status: AgentStatus = {
    status: "synced",
    last_commit: null,
    app_count: 1,
    healthy_count: 1,
    last_reconcile: { at: null, duration_ms: null, error: null },
    errors: [],
  };
  const app: AppState = {
    name: "odd",
    version: '1.0 "beta"\nhttps://u:label-secret-1@x.example',
    status: "running",
    health: "healthy",
    isolation: "worker",
  };
  const text = new Metrics().render({ status, apps: { odd: app } });
  assert.ok(!text.includes("label-secret-1"));
  const { samples } = parse(text);
  assert.equal(
    value(samples, "bc_gitops_app_info", {
      app: "odd",
      version: '1.0 "beta"\nhttps://***@x.example',
      status: "running",
      health: "healthy",
      isolation: "worker",
    }),
    1,
  );
});

test("restarts refused during a crash loop's cool-down have their own gauge, next to the real restarts", () => {
  const status: AgentStatus = {
    status: "degraded",
    last_commit: null,
    app_count: 1,
    healthy_count: 0,
    last_reconcile: { at: null, duration_ms: null, error: null },
    errors: [],
  };
  const app: AppState = {
    name: "loop",
    version: "1.0.0",
    status: "failed",
    health: "unhealthy",
    restarts: 5,
    restarts_refused: 32,
  };
  const { samples, types } = parse(new Metrics().render({ status, apps: { loop: app } }));
  assert.equal(types.get("bc_gitops_app_restarts_refused"), "gauge");
  assert.equal(value(samples, "bc_gitops_app_restarts", { app: "loop" }), 5);
  assert.equal(value(samples, "bc_gitops_app_restarts_refused", { app: "loop" }), 32);
});
