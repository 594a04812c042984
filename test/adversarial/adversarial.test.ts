import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createAgent } from "../../src/agent.ts";
import { loadConfig } from "../../src/config.ts";
import { loadApps, type SpecIssue } from "../../src/loader.ts";
import { preview } from "../../src/preview.ts";
import { runCli } from "../helpers/cli.ts";
import { FakeRuntime } from "../helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec } from "../helpers/gitops-repo.ts";
import { tempDir, writeTree } from "../helpers/tmp.ts";
import { bigValidSpec, hostileCases, writeCases, type HostileCase } from "./corpus.ts";

const valid = {
  "apps/web/app.yaml": yamlSpec("web", "1.0.0", "env: { greeting: one }\n"),
  "apps/db/app.json": JSON.stringify({ name: "db", version: "1.0.0", env: { pool: 1 } }),
  "apps/big/app.yaml": bigValidSpec("big"),
};

/** Each hostile case has exactly one error, on its own file, saying what it must, where it must. */
function assertEachCaseReported(cases: readonly HostileCase[], errors: readonly SpecIssue[]): void {
  for (const c of cases) {
    const mine = errors.filter((e) => e.file === c.file);
    assert.equal(mine.length, 1, `${c.dir}: one error on ${c.file}, got ${JSON.stringify(mine)}`);
    const [error] = mine as [SpecIssue];
    assert.match(error.message, c.message, c.dir);
    assert.deepEqual(
      error.line === undefined ? undefined : { line: error.line, column: error.column },
      c.at,
      `${c.dir}: ${error.message}`,
    );
  }
  const expected = new Set(cases.map((c) => c.file));
  assert.deepEqual(
    errors.filter((e) => !expected.has(e.file)),
    [],
    "no error on any other file",
  );
}

for (const c of hostileCases()) {
  test(`hostile spec ${c.dir}: an error on ${c.file}${c.at ? ` at ${c.at.line}:${c.at.column}` : ""}, and the app beside it loads`, async (t) => {
    const root = await tempDir(t);
    await writeTree(root, { "apps/web/app.yaml": valid["apps/web/app.yaml"] });
    await writeCases(root, [c]);
    const result = await loadApps(join(root, "apps"), { root });
    assert.deepEqual(
      result.apps.map((a) => a.spec.name),
      ["web"],
    );
    assertEachCaseReported([c], result.errors);
  });
}

test("loadApps reports each hostile spec as an error on its own file, at its position, and still loads the valid apps", async (t) => {
  const root = await tempDir(t);
  const cases = hostileCases();
  await writeTree(root, valid);
  await writeCases(root, cases);
  const result = await loadApps(join(root, "apps"), { root });
  assert.deepEqual(result.apps.map((a) => a.spec.name).sort(), ["big", "db", "web"]);
  assertEachCaseReported(cases, result.errors);
  for (const c of cases)
    assert.ok(result.invalid.includes(c.dir), `${c.dir} is invalid, so a running app of that name is kept`);
});

test("validate prints a positioned error for each hostile spec and lists the valid apps", async (t) => {
  const root = await tempDir(t);
  const cases = hostileCases();
  await writeTree(root, valid);
  await writeCases(root, cases);
  const { exitCode, stdout, stderr } = await runCli(["validate", root, "--json"]);
  assert.equal(exitCode, 1, stderr);
  const report = JSON.parse(stdout) as { apps: { name: string }[]; errors: SpecIssue[] };
  assert.deepEqual(report.apps.map((a) => a.name).sort(), ["big", "db", "web"]);
  assertEachCaseReported(cases, report.errors);
  const text = await runCli(["validate", root]);
  for (const c of cases) {
    const where = c.at ? `${c.file}:${c.at.line}:${c.at.column} ` : `${c.file} `;
    assert.ok(
      text.stdout.split("\n").some((line) => line.includes(where)),
      `${where} in\n${text.stdout.slice(0, 4000)}`,
    );
  }
});

test("a commit of hostile specs still applies a healthy app's change, plan shows exactly that, and no app is ever removed", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/web/app.yaml": valid["apps/web/app.yaml"],
    "apps/db/app.json": valid["apps/db/app.json"],
  });
  const runtime = new FakeRuntime();
  const localPath = join(repo.root, "local");
  const agent = createAgent({ repoUrl: repo.bare, localPath, runtime, reconcileInterval: "1h", listen: "off" });
  t.after(() => agent.stop());
  await agent.start();
  assert.deepEqual(runtime.calls.toSorted(), ["deploy db 1.0.0", "deploy web 1.0.0"]);

  // Every hostile app, web's env changed, and the running db's spec turned into an alias bomb.
  const cases = hostileCases();
  await writeCases(repo.work, cases);
  const bomb = cases.find((c) => c.dir === "alias-bomb")!;
  await repo.commit({
    "apps/web/app.yaml": yamlSpec("web", "1.0.0", "env: { greeting: two }\n"),
    "apps/db/app.json": null,
    "apps/db/app.yaml": String(bomb.files[bomb.file]).replace("name: alias-bomb", "name: db"),
  });
  runtime.calls.length = 0;
  // `bc-gitops plan` first: it shows the same single change, and each hostile file as its own error.
  const config = await loadConfig({ env: {}, flags: { repo_url: repo.bare, local_path: localPath } });
  const shown = await preview(config, { url: "http://127.0.0.1:1" });
  assert.deepEqual(
    shown.actions.map((a) => `${a.type} ${a.app}`),
    ["reconfigure web"],
  );
  for (const c of [...cases, { file: "apps/db/app.yaml" }])
    assert.ok(
      shown.specErrors.some((e) => e.file === c.file),
      `plan reports ${c.file}`,
    );
  const planCli = await runCli([
    "plan",
    "--repo-url",
    repo.bare,
    "--local-path",
    localPath,
    "--url",
    "http://127.0.0.1:1",
  ]);
  assert.equal(planCli.exitCode, 1, "spec errors make plan exit 1");
  assert.match(planCli.stdout, /reconfigure web/);
  assert.doesNotMatch(planCli.stdout, /^- remove/m);
  const second = await agent.reconcile();
  assert.deepEqual(runtime.calls, ["reconfigure web 1.0.0"]);
  assert.deepEqual((await agent.getAppStatus("web"))?.env, { greeting: "two" });
  assert.equal((await agent.getAppStatus("db"))?.status, "running", "db's broken spec leaves it running");
  for (const c of [...cases, { file: "apps/db/app.yaml" }]) {
    assert.ok(
      second.errors.some((e) => e.file === c.file),
      `${c.file} reported: ${JSON.stringify(second.errors).slice(0, 2000)}`,
    );
  }

  // A later commit fixes db and changes both: both changes are applied, the hostile apps stay errors.
  await repo.commit({
    "apps/web/app.yaml": yamlSpec("web", "1.0.0", "env: { greeting: three }\n"),
    "apps/db/app.yaml": yamlSpec("db", "1.0.0", "env: { pool: 3 }\n"),
  });
  runtime.calls.length = 0;
  await agent.reconcile();
  assert.deepEqual(runtime.calls.toSorted(), ["reconfigure db 1.0.0", "reconfigure web 1.0.0"]);
  assert.deepEqual((await agent.getAppStatus("db"))?.env, { pool: 3 });
});

test("deleting every app directory keeps every app running and says how to remove them all, without the agent's paths", async (t) => {
  const repo = await gitopsRepo(t, { "apps/web/app.yaml": valid["apps/web/app.yaml"], "README.md": "# gitops\n" });
  const runtime = new FakeRuntime();
  const localPath = join(repo.root, "local");
  const agent = createAgent({ repoUrl: repo.bare, localPath, runtime, reconcileInterval: "1h", listen: "off" });
  t.after(() => agent.stop());
  await agent.start();
  // git drops the empty directory: the commit has no apps/ at all.
  await repo.commit({ "apps/web/app.yaml": null });
  runtime.calls.length = 0;
  const result = await agent.reconcile();
  assert.deepEqual(runtime.calls, []);
  assert.equal((await agent.getAppStatus("web"))?.status, "running");
  const said = JSON.stringify([result, await agent.status()]);
  assert.match(
    said,
    /apps\/ does not exist, so every running app is kept.*commit an empty apps\/ holding a \.gitkeep file/,
  );
  assert.ok(!said.includes(localPath) && !said.includes("scandir"), said);

  // The documented way to remove every app.
  await repo.commit({ "apps/.gitkeep": "" });
  await agent.reconcile();
  assert.deepEqual(runtime.calls, ["remove web"]);
});
