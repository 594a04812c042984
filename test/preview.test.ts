/**
 * `bc-gitops plan` (preview) and the tick decide with the same functions: for every case, the plan
 * shown before a commit is applied is exactly what the agent then does.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createAgent } from "../src/agent.ts";
import { loadConfig } from "../src/config.ts";
import { preview } from "../src/preview.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec } from "./helpers/gitops-repo.ts";

interface Case {
  name: string;
  /** What the repository holds when the agent first applies it. */
  before: Record<string, string>;
  /** The commit `plan` previews and the agent then applies (null deletes). */
  change: Record<string, string | null>;
  /** The actions both must agree on, as `type app`. */
  expected: string[];
  /** Apps that must still be deployed afterwards. */
  kept?: string[];
}

const cases: Case[] = [
  {
    name: "deploy, upgrade, reconfigure and remove, in dependency order",
    before: {
      "apps/db/app.yaml": yamlSpec("db", "1.0.0"),
      "apps/web/app.yaml": yamlSpec("web", "1.0.0", "depends_on: [db]\n"),
      "apps/old/app.yaml": yamlSpec("old", "1.0.0"),
    },
    change: {
      "apps/db/app.yaml": yamlSpec("db", "2.0.0"),
      "apps/web/app.yaml": yamlSpec("web", "1.0.0", "depends_on: [db]\nenv: {pool: 3}\n"),
      "apps/old": null,
      "apps/new/app.yaml": yamlSpec("new", "1.0.0"),
    },
    expected: ["remove old", "upgrade db", "deploy new", "reconfigure web"],
  },
  {
    name: "nothing changed but an unrelated file",
    before: { "apps/db/app.yaml": yamlSpec("db", "1.0.0") },
    change: { "README.md": "# docs" },
    expected: [],
  },
  {
    name: "a broken spec directory whose file no longer names its app keeps that app",
    before: { "apps/web-dir/app.yaml": yamlSpec("hello", "1.0.0") },
    change: { "apps/web-dir/app.yaml": "source: {type: path, path: code/hello\n" },
    expected: [],
    kept: ["hello"],
  },
  {
    name: "a moved directory with a syntax error keeps the app it may be",
    before: { "apps/alpha/app.yaml": yamlSpec("alpha", "1.0.0"), "apps/beta/app.yaml": yamlSpec("beta", "1.0.0") },
    change: { "apps/alpha": null, "apps/alpha_moved/app.yaml": 'name: alpha\nversion: "1.0\n' },
    expected: [],
    kept: ["alpha", "beta"],
  },
  {
    name: "an invalid spec that still names its app keeps it and lets the others change",
    before: { "apps/a/app.yaml": yamlSpec("a", "1.0.0"), "apps/b/app.yaml": yamlSpec("b", "1.0.0") },
    change: {
      "apps/a/app.yaml": yamlSpec("a", "2.0.0", "health: {interval: soon}\n"),
      "apps/b/app.yaml": yamlSpec("b", "1.1.0"),
    },
    expected: ["upgrade b"],
    kept: ["a"],
  },
  {
    name: "a dependency cycle drops the actions of the apps on it",
    before: { "apps/a/app.yaml": yamlSpec("a", "1.0.0") },
    change: {
      "apps/a/app.yaml": yamlSpec("a", "1.1.0", "depends_on: [b]\n"),
      "apps/b/app.yaml": yamlSpec("b", "1.0.0", "depends_on: [a]\n"),
    },
    expected: [],
    kept: ["a"],
  },
];

for (const c of cases) {
  test(`plan and the tick agree: ${c.name}`, async (t) => {
    const repo = await gitopsRepo(t, c.before);
    const localPath = join(repo.root, "local");
    const runtime = new FakeRuntime();
    const agent = createAgent({ repoUrl: repo.bare, localPath, runtime, reconcileInterval: "1h", listen: "off" });
    t.after(() => agent.stop());
    await agent.start();
    await repo.commit(c.change);

    const config = await loadConfig({ env: {}, flags: { repo_url: repo.bare, local_path: localPath } });
    // No agent answers on this URL: plan compares with state.json, as for an agent that is not running.
    const shown = await preview(config, { url: "http://127.0.0.1:1" });
    const done = await agent.reconcile();

    const planned = shown.actions.map((a) => `${a.type} ${a.app}`);
    const applied = done.actions.map((a) => `${a.type} ${a.app}`);
    assert.deepEqual(planned, c.expected, "what plan shows");
    assert.deepEqual(applied, planned, "what the tick did");
    assert.equal(shown.commit, done.commit);
    const running = await agent.getCurrentState();
    for (const app of c.kept ?? []) assert.equal(running[app]?.status, "running", `${app} still runs`);
  });
}

test("plan says why it keeps a deployed app that an unreadable spec may be", async (t) => {
  const repo = await gitopsRepo(t, { "apps/alpha/app.yaml": yamlSpec("alpha", "1.0.0") });
  const localPath = join(repo.root, "local");
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath,
    runtime: new FakeRuntime(),
    reconcileInterval: "1h",
    listen: "off",
  });
  t.after(() => agent.stop());
  await agent.start();
  await repo.commit({ "apps/alpha": null, "apps/moved/app.yaml": "name: [alpha" });
  const config = await loadConfig({ env: {}, flags: { repo_url: repo.bare, local_path: localPath } });
  const shown = await preview(config, { url: "http://127.0.0.1:1" });
  assert.deepEqual(shown.actions, []);
  assert.match(
    shown.errors.find((e) => e.app === "alpha")?.message ?? "",
    /kept running .*apps\/moved\/app\.yaml cannot be read/,
  );
  assert.ok(shown.specErrors.some((e) => e.file === "apps/moved/app.yaml"));
});
