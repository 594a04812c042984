// The fleet on the command line: validate --host/--label and plan show per-host results on a fleet
// repository (the one in examples/), bad fleet fields are errors at their file, line and field,
// and `run` re-reads its labels on SIGHUP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnProcess } from "../../src/exec.ts";
import { appSpecJsonSchema } from "../../src/spec.ts";
import { cliCommand, runCli } from "../helpers/cli.ts";
import { until } from "../helpers/e2e.ts";
import { gitopsRepo } from "../helpers/gitops-repo.ts";
import { tempDir, writeTree } from "../helpers/tmp.ts";

const FLEET_REPO = fileURLToPath(new URL("../../examples/fleet-repo/", import.meta.url));

interface Validated {
  host: string;
  labels: Record<string, string>;
  apps: { name: string; version: string; overrides: { index: number }[]; rollout?: { wave: number } }[];
  not_placed: { name: string; reason: string }[];
  errors: unknown[];
}

test("validate --host --label shows what each host of the example fleet runs: placement, overrides and waves", async () => {
  const run = async (...args: string[]) => {
    const result = await runCli(["validate", FLEET_REPO, "--json", ...args]);
    assert.equal(result.exitCode, 0, result.stdout + result.stderr);
    return JSON.parse(result.stdout) as Validated;
  };
  const canary = await run("--host", "web-1", "--label", "role=web", "--label", "region=eu", "--label", "tier=canary");
  assert.equal(canary.host, "web-1");
  assert.equal(canary.labels.tier, "canary");
  assert.deepEqual(
    canary.apps.map((a) => [a.name, a.version, a.overrides.map((o) => o.index)]),
    [
      ["cache", "3.1.0", []],
      ["node-stats", "1.0.0", []],
      ["web", "2.0.0", [0, 2]],
    ],
  );
  assert.deepEqual(
    canary.not_placed.map((n) => [n.name, n.reason]),
    [
      ["api", "placement (hosts api-*, spot doesnotexist): host web-1 is not in hosts [api-*]"],
      ["trainer", "placement (gpu exists): label gpu is not set"],
    ],
  );
  const api = await run("--host", "api-1", "--label", "role=api", "--label", "gpu=a100");
  assert.deepEqual(
    api.apps.map((a) => a.name),
    ["api", "cache", "node-stats", "trainer"],
  );
  const spot = await run("--host", "api-2", "--label", "role=api", "--label", "spot=true");
  assert.match(spot.not_placed.find((n) => n.name === "api")?.reason ?? "", /label spot is set \("true"\)$/);
  const drained = await run("--host", "web-9", "--label", "role=web", "--label", "os=freebsd");
  assert.equal(drained.labels.os, "freebsd", "built-in labels can be given to describe another host");
  assert.match(drained.not_placed.find((n) => n.name === "web")?.reason ?? "", /excluded by exclude_hosts web-9/);

  const text = await runCli(["validate", FLEET_REPO, "--host", "web-2", "--label", "role=web", "--label", "region=us"]);
  assert.equal(text.exitCode, 0);
  assert.match(text.stdout, /^host web-2 \(.*region=us, role=web/m);
  assert.match(
    text.stdout,
    /^\+ web 1\.9\.0 {2}apps\/web\/app\.yaml {2}overrides \[1\] region in \[us\] \(env\) {2}wave \d of 3$/m,
  );
  assert.match(text.stdout, /^- trainer {2}not placed: placement \(gpu exists\): label gpu is not set$/m);

  const schema = JSON.parse(await readFile(join(FLEET_REPO, "app-spec.schema.json"), "utf8"));
  assert.deepEqual(
    schema,
    appSpecJsonSchema(),
    "the example's editor schema is current (bc-gitops schema > app-spec.schema.json)",
  );

  const bad = await runCli(["validate", FLEET_REPO, "--host", "web 1"]);
  assert.equal(bad.exitCode, 1);
  assert.match(bad.stderr, /^error --host: "web 1" is not a valid host name/);
});

test("validate reports bad fleet fields on their own app at file, line and field, and a dependency across placement per host", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, {
    "apps/web/app.yaml": [
      "name: web",
      'version: "1"',
      "depends_on: [db]",
      "placement:",
      "  hosts: [web-*, 'db 1']",
      "  expressions: ['region nin [eu]']",
      "overrides:",
      "  - match: {}",
      "    isolation: worker",
      "rollout: { waves: 0 }",
      "",
    ].join("\n"),
    "apps/db/app.yaml": 'name: db\nversion: "1"\nplacement: { labels: { role: db } }\n',
    "apps/api/app.yaml": 'name: api\nversion: "1"\ndepends_on: [db]\n',
  });
  const result = await runCli(["validate", dir]);
  assert.equal(result.exitCode, 1);
  const errors = result.stdout.split("\n").filter((l) => l.startsWith("error"));
  assert.deepEqual(errors, [
    'error   apps/web/app.yaml:5:18 placement.hosts[1]: "db 1" cannot match any host name: " " is not allowed in host names (letters, digits, "-", "_" and ".")',
    'error   apps/web/app.yaml:6:17 placement.expressions[0]: "region nin [eu]": unknown selector operator "nin" (did you mean "in"?); use in, notin, exists, doesnotexist',
    "error   apps/web/app.yaml:9:16 overrides[0].isolation: an override cannot change isolation; overrides may set version, source, env, limits, health",
    "error   apps/web/app.yaml:10:19 rollout.waves: expected a whole number of waves from 1 to 1000, got 0 (waves: 1 applies everywhere at once)",
  ]);
  assert.match(result.stdout, /2 valid apps, 4 errors/, "db and api still validate");

  const onWeb = await runCli(["validate", dir, "--host", "web-1", "--label", "role=web"]);
  assert.equal(onWeb.exitCode, 1);
  assert.match(
    onWeb.stdout,
    /^error {3}apps\/api\/app\.yaml depends_on: depends on "db", which is not placed on host web-1 \(placement \(role=db\): label role is "web", not "db"\); place them together$/m,
  );
  const onDb = await runCli(["validate", dir, "--host", "db-1", "--label", "role=db", "--json"]);
  const json = JSON.parse(onDb.stdout) as Validated;
  assert.deepEqual(
    json.apps.map((a) => a.name),
    ["api", "db"],
  );
});

test("plan shows what the host the configuration names would do, and which apps are not placed there", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/web/app.yaml": [
      "name: web",
      'version: "1.9.0"',
      "placement: { labels: { role: web } }",
      "overrides: [{ match: { labels: { tier: canary } }, version: '2.0.0' }]",
      "",
    ].join("\n"),
    "apps/db/app.yaml": 'name: db\nversion: "1"\nplacement: { hosts: [db-*] }\n',
  });
  const local = await tempDir(t);
  const base = ["plan", "--repo-url", repo.bare, "--local-path", local, "--url", "http://127.0.0.1:1", "--json"];
  const canary = await runCli([...base, "--host", "web-1", "--label", "role=web", "--label", "tier=canary"]);
  assert.equal(canary.exitCode, 2, canary.stderr);
  const plan = JSON.parse(canary.stdout) as {
    host: string;
    actions: { type: string; app: string }[];
    not_placed: { name: string }[];
  };
  assert.equal(plan.host, "web-1");
  assert.deepEqual(plan.actions, [{ type: "deploy", app: "web" }]);
  assert.deepEqual(
    plan.not_placed.map((n) => n.name),
    ["db"],
  );
  const text = await runCli([...base.slice(0, -1), "--host", "db-7"]);
  assert.equal(text.exitCode, 2);
  assert.match(text.stdout, /^plan for host db-7 \(/m);
  assert.match(text.stdout, /^\+ deploy db 1$/m);
  assert.match(text.stdout, /^ {2}web: not placed: placement \(role=web\): label role is not set, not "web"$/m);
  const canaryText = await runCli([
    ...base.slice(0, -1),
    "--host",
    "web-1",
    "--label",
    "role=web",
    "--label",
    "tier=canary",
  ]);
  assert.match(canaryText.stdout, /^\+ deploy web 2\.0\.0$/m);
});

test("run reads its labels again on SIGHUP: the apps move to match, without a restart", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/web/app.yaml": 'name: web\nversion: "1"\nplacement: { labels: { role: web } }\n',
    "apps/db/app.yaml": 'name: db\nversion: "1"\nplacement: { labels: { role: db } }\n',
  });
  const marker = join(repo.root, "calls.txt");
  const config = join(repo.root, "bc-gitops.yaml");
  const runtime = join(repo.root, "runtime.mjs");
  await writeTree(repo.root, {
    "runtime.mjs": `import { appendFileSync } from "node:fs";
const apps = new Map();
export default {
  async deploy(spec) { appendFileSync(${JSON.stringify(marker)}, "deploy " + spec.name + "\\n"); const s = { name: spec.name, version: spec.version, status: "running", health: "healthy" }; apps.set(spec.name, s); return s; },
  async remove(name) { appendFileSync(${JSON.stringify(marker)}, "remove " + name + "\\n"); apps.delete(name); },
  async upgrade(spec) { return this.deploy(spec); },
  async reconfigure(spec) { return this.deploy(spec); },
  async getCurrentState() { return Object.fromEntries(apps); },
};
`,
  });
  const settings = (role: string) =>
    `repo_url: ${JSON.stringify(repo.bare)}\nlocal_path: ${JSON.stringify(join(repo.root, "local"))}\nruntime: ${JSON.stringify(runtime)}\nlisten: "off"\nreconcile_interval: 1h\nhost: node-1\nlabels: { role: ${role} }\n`;
  await writeFile(config, settings("web"));
  const [command, prefix] = cliCommand();
  const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
  const child = await spawnProcess(command, [...prefix, "run", "--config", config, "--log-format", "json"], {
    env: { ...env, NO_COLOR: "1" },
  });
  t.after(() => child.terminate(1000));
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.resume();
  const calls = () => readFile(marker, "utf8").catch(() => "");
  await until("the first reconcile", async () => (out.includes("first reconcile") ? true : undefined), 60_000);
  assert.equal(await calls(), "deploy web\n");

  await writeFile(config, settings("db"));
  child.signal("SIGHUP");
  await until(
    "web to move out and db in",
    async () => ((await calls()).includes("deploy db") ? true : undefined),
    60_000,
  );
  assert.equal(await calls(), "deploy web\nremove web\ndeploy db\n");
  assert.match(out, /labels of node-1 are now role=db/);

  // A configuration that no longer reads keeps the labels it has, and says why.
  await writeFile(config, settings("'bad value'"));
  child.signal("SIGHUP");
  await until("the refusal", async () => (out.includes("SIGHUP: keeping the labels") ? true : undefined), 60_000);
  assert.equal(await calls(), "deploy web\nremove web\ndeploy db\n");
});
