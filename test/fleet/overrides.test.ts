import { test } from "node:test";
import assert from "node:assert/strict";
import { hostIdentity } from "../../src/fleet/host.ts";
import { effectiveSpec, possibleSources } from "../../src/fleet/overrides.ts";
import { fleetView } from "../../src/fleet/view.ts";
import { validateText, type LoadResult } from "../../src/loader.ts";
import type { AppSpec } from "../../src/spec.ts";

/** A valid spec from YAML lines. */
async function spec(...lines: string[]): Promise<AppSpec> {
  const result = await validateText(lines.join("\n") + "\n", "yaml");
  assert.deepEqual(result.errors, []);
  return result.spec!;
}

const canary = hostIdentity("web-1", { role: "web", region: "eu", tier: "canary" });
const plain = hostIdentity("web-2", { role: "web", region: "us" });

test("an override gives canary hosts another version, and the other hosts keep the spec's", async () => {
  const web = await spec(
    "name: web",
    'version: "1.9.0"',
    "overrides:",
    "  - match: { labels: { tier: canary } }",
    '    version: "2.0.0"',
  );
  const onCanary = effectiveSpec(web, canary);
  const onPlain = effectiveSpec(web, plain);
  assert.ok(onCanary.ok && onPlain.ok);
  assert.equal(onCanary.spec.version, "2.0.0");
  assert.deepEqual(onCanary.applied, [{ index: 0, match: "tier=canary", fields: ["version"] }]);
  assert.equal(onPlain.spec.version, "1.9.0");
  assert.deepEqual(onPlain.applied, []);
  for (const field of ["placement", "overrides", "rollout"]) assert.equal(field in onCanary.spec, false, field);
});

test("overrides apply in order: env and health merge key by key, later matches win, version is replaced", async () => {
  const web = await spec(
    "name: web",
    'version: "1"',
    "env: { port: 8080, pool_size: 10, region: none }",
    "health: { type: http, path: /health, timeout: 2s }",
    "limits: { memory_mb: 128 }",
    "isolation: worker",
    "overrides:",
    "  - match: { expressions: ['region in [eu]'] }",
    "    env: { region: eu, pool_size: 20 }",
    "    health: { timeout: 10s }",
    "  - match: { hosts: ['web-*'] }",
    "    env: { pool_size: 30 }",
    "    limits: { memory_mb: 512 }",
    '    version: "1.1"',
    "  - match: { labels: { role: db } }",
    '    version: "9"',
  );
  const result = effectiveSpec(web, canary);
  assert.ok(result.ok);
  assert.deepEqual(result.spec.env, { port: 8080, pool_size: 30, region: "eu" });
  assert.deepEqual(result.spec.health, { type: "http", path: "/health", interval: 30_000, timeout: 10_000 });
  assert.deepEqual(result.spec.limits, { memory_mb: 512 });
  assert.equal(result.spec.version, "1.1");
  assert.deepEqual(
    result.applied.map((a) => a.index),
    [0, 1],
  );
});

test("a source override without a type changes only its keys; one with another type replaces the source", async () => {
  const web = await spec(
    "name: web",
    'version: "1"',
    "source: { type: git, url: 'https://git.example.com/web.git', ref: main, subdir: app }",
    "overrides:",
    "  - match: { labels: { tier: canary } }",
    "    source: { ref: v2 }",
    "  - match: { labels: { region: us } }",
    "    source: { type: npm, registry: 'https://npm.example.com/' }",
  );
  const onCanary = effectiveSpec(web, canary);
  assert.ok(onCanary.ok);
  assert.deepEqual(onCanary.spec.source, {
    type: "git",
    url: "https://git.example.com/web.git",
    ref: "v2",
    subdir: "app",
  });
  const onPlain = effectiveSpec(web, plain);
  assert.ok(onPlain.ok);
  assert.deepEqual(onPlain.spec.source, { type: "npm", package: "web", registry: "https://npm.example.com/" });
});

test("two overrides whose sources do not combine are an error on this host only, at the second one", async () => {
  const web = await spec(
    "name: web",
    'version: "1"',
    "overrides:",
    "  - match: { labels: { tier: canary } }",
    "    source: { type: path, path: code/web }",
    "  - match: { labels: { role: web } }",
    "    source: { registry: 'https://npm.example.com/' }",
  );
  const result = effectiveSpec(web, canary);
  assert.equal(result.ok, false);
  assert.ok(!result.ok);
  assert.equal(result.path, "overrides[1].source");
  assert.match(result.message, /overrides 0 and 1 together make an invalid source: .*registry/);
  assert.equal(effectiveSpec(web, plain).ok, true);
});

/** A load of valid specs (files apps/<name>/app.yaml). */
async function load(...specs: AppSpec[]): Promise<LoadResult> {
  return {
    apps: specs.map((s) => ({ spec: s, file: `apps/${s.name}/app.yaml` })),
    errors: [],
    warnings: [],
    invalid: [],
    unnamed: [],
  };
}

test("a host's view leaves out apps not placed on it, with the reason, and uses effective specs", async () => {
  const view = fleetView(
    await load(
      await spec("name: web", 'version: "1"', "placement: { labels: { role: web } }"),
      await spec("name: db", 'version: "1"', "placement: { hosts: ['db-*'] }"),
      await spec("name: stats", 'version: "1"', "overrides: [{ match: { hosts: [web-1] }, env: { fast: true } }]"),
    ),
    canary,
  );
  assert.deepEqual(
    view.load.apps.map((a) => [a.spec.name, a.spec.env]),
    [
      ["web", {}],
      ["stats", { fast: true }],
    ],
  );
  assert.deepEqual(view.notPlaced, [
    { name: "db", file: "apps/db/app.yaml", reason: "placement (hosts db-*): host web-1 is not in hosts [db-*]" },
  ]);
  assert.deepEqual(view.load.errors, []);
});

test("an app placed here that depends on one that is not is an error with the reason, and is kept as it is", async () => {
  const view = fleetView(
    await load(
      await spec("name: web", 'version: "1"', "depends_on: [db]"),
      await spec("name: db", 'version: "1"', "placement: { labels: { role: db } }"),
    ),
    canary,
  );
  assert.deepEqual(view.load.apps, []);
  assert.deepEqual(view.load.invalid, ["web"], "invalid: a running web is left running, never removed for it");
  assert.equal(view.load.errors.length, 1);
  assert.equal(view.load.errors[0]!.file, "apps/web/app.yaml");
  assert.equal(view.load.errors[0]!.path, "depends_on");
  assert.match(
    view.load.errors[0]!.message,
    /^depends on "db", which is not placed on host web-1 \(placement \(role=db\): label role is "web", not "db"\); place them together$/,
  );
});

test("every source an app can run from on some host is known, so the commit's files for each are written", async () => {
  const web = await spec(
    "name: web",
    'version: "1"',
    "source: { type: path, path: code/web }",
    "overrides:",
    "  - match: { labels: { tier: canary } }",
    "    source: { type: git, url: 'https://git.example.com/web.git' }",
    "  - match: { labels: { region: eu } }",
    "    source: { path: code/eu }",
    "  - match: { labels: { region: us } }",
    "    env: { x: 1 }",
  );
  assert.deepEqual(
    possibleSources(web).map((s) => (s.type === "path" ? s.path : s.type)),
    ["code/web", "git", "code/eu"],
    "both overrides together make no valid source (an error on the hosts they both match), so they add none",
  );
});

test("an override's source key that the merged source does not take is an error naming who takes it", async () => {
  const result = await validateText(
    'name: web\nversion: "1"\noverrides:\n  - match: {}\n    source: { path: code/eu }\n',
    "yaml",
  );
  assert.deepEqual(
    result.errors.map((e) => `${e.line}:${e.column} ${e.path}: ${e.message}`),
    [
      '5:21 overrides[0].source.path: unknown key "path" for source type npm: path is used by path sources (the override is merged into the app\'s source)',
    ],
  );
});
