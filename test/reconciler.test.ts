/**
 * The reconciler's safety rules against real git: a damaged snapshot, a moved and broken spec, an
 * agent killed mid-tick, repeated warnings and errors that outlive their cause.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createAgent, type AgentOptions } from "../src/agent.ts";
import { spawnProcess } from "../src/exec.ts";
import { cliCommand } from "./helpers/cli.ts";
import { until } from "./helpers/e2e.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec, type GitopsRepo } from "./helpers/gitops-repo.ts";
import type { TestContext } from "node:test";
import { recordingLogger } from "./helpers/logger.ts";

/** An agent on `repo` with a fake runtime (`options.runtime`, else a new one), stopped when the test ends. */
function agentOn<R extends FakeRuntime = FakeRuntime>(
  t: TestContext,
  repo: GitopsRepo,
  options: Partial<AgentOptions> & { runtime?: R } = {},
) {
  const runtime = options.runtime ?? new FakeRuntime();
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    ...options,
  });
  t.after(() => agent.stop());
  return { agent, runtime };
}

/** A fake runtime that can hot reload (the seam the reconciler tests own); `fail` makes reloads throw. */
class ReloadingFake extends FakeRuntime {
  fail: Error | undefined;
  async hotReload(spec: { name: string }) {
    if (this.fail) throw this.fail;
    this.calls.push(`hotReload ${spec.name}`);
    return { app: spec.name, revision: "rev-2", modules: ["index.js"] };
  }
}

test("snapshots deleted from disk do not remove any app after a restart: specs come from the object store", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/hello/app.yaml": yamlSpec("hello", "1.0.0"),
    "apps/other/app.yaml": yamlSpec("other", "1.0.0"),
  });
  const first = agentOn(t, repo);
  const commit = (await first.agent.start()).commit!;
  await first.agent.stop();
  // Damage what the next agent starts from on disk: every snapshot is gone, the clone is intact.
  const snapshots = join(repo.root, "local", "git", "snapshots");
  assert.ok(
    (await readdir(snapshots)).some((name) => name.startsWith(commit)),
    "the commit had a snapshot",
  );
  await rm(snapshots, { recursive: true });

  const second = agentOn(t, repo);
  const result = await second.agent.start();
  assert.deepEqual(
    result.actions.filter((a) => a.type === "remove"),
    [],
    "nothing is removed: the commit still has apps/hello",
  );
  assert.equal((await second.agent.getAppStatus("hello"))?.status, "running");
  assert.deepEqual(second.runtime.calls.sort(), ["deploy hello 1.0.0", "deploy other 1.0.0"]);
  assert.ok(Object.hasOwn(await second.agent.getDesiredState(), "hello"), "the commit was read from the object store");
  // A real removal still happens.
  await repo.commit({ "apps/hello": null });
  const removed = await second.agent.reconcile();
  assert.deepEqual(
    removed.actions.map((a) => [a.type, a.app, a.outcome]),
    [["remove", "hello", "ok"]],
  );
});

test("moving an app's directory and breaking its syntax in one commit keeps the app running, and status says why", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/alpha/app.yaml": yamlSpec("alpha", "1.0.0"),
    "apps/beta/app.yaml": yamlSpec("beta", "1.0.0"),
  });
  const { agent, runtime } = agentOn(t, repo);
  await agent.start();
  // `git mv apps/alpha apps/alpha_moved` plus a syntax error: the file no longer says whose it is.
  await repo.commit({ "apps/alpha": null, "apps/alpha_moved/app.yaml": 'name: alpha\nversion: "1.0.0\nenv: {a: 1}\n' });
  const broken = await agent.reconcile();
  assert.deepEqual(broken.actions, [], "alpha is not removed");
  assert.equal((await agent.getAppStatus("alpha"))?.status, "running");
  const status = await agent.status();
  assert.equal(status.status, "degraded");
  const kept = status.errors.find((e) => e.app === "alpha");
  assert.match(kept?.message ?? "", /kept running .*apps\/alpha_moved\/app\.yaml cannot be read and may be this app/);
  assert.ok(
    status.errors.some((e) => e.file === "apps/alpha_moved/app.yaml" && e.line !== undefined),
    "the syntax error is reported on its own file",
  );

  // Fixed under its new directory: the same app, nothing to do.
  await repo.commit({ "apps/alpha_moved/app.yaml": yamlSpec("alpha", "1.0.0") });
  const fixed = await agent.reconcile();
  assert.deepEqual(fixed.actions, []);
  assert.equal(fixed.status, "synced");
  // Deleted for real, with no unreadable file around: removed.
  await repo.commit({ "apps/alpha_moved": null });
  const removed = await agent.reconcile();
  assert.deepEqual(
    removed.actions.map((a) => [a.type, a.app]),
    [["remove", "alpha"]],
  );
  assert.deepEqual(runtime.calls, ["deploy alpha 1.0.0", "deploy beta 1.0.0", "remove alpha"]);
});

test("an app deleted in a commit that also holds an unreadable spec is removed once that spec is fixed", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/alpha/app.yaml": yamlSpec("alpha", "1.0.0"),
    "apps/gone/app.yaml": yamlSpec("gone", "1.0.0"),
  });
  const { agent } = agentOn(t, repo);
  await agent.start();
  await repo.commit({ "apps/gone": null, "apps/new/app.yaml": "{{{ not yaml" });
  assert.deepEqual((await agent.reconcile()).actions, [], "gone could be the unreadable file: kept");
  await repo.commit({ "apps/new/app.yaml": yamlSpec("new", "1.0.0") });
  const result = await agent.reconcile();
  assert.deepEqual(
    result.actions.map((a) => [a.type, a.app]),
    [
      ["remove", "gone"],
      ["deploy", "new"],
    ],
  );
  assert.equal(result.status, "synced");
});

test("an agent killed in the middle of a tick neither repeats nor reverts the actions it completed", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/a/app.yaml": yamlSpec("a", "1.0.0"),
    "apps/b/app.yaml": yamlSpec("b", "1.0.0"),
  });
  const localPath = join(repo.root, "local");
  const first = agentOn(t, repo);
  await first.agent.start();
  await first.agent.stop();
  await repo.commit({ "apps/a/app.yaml": yamlSpec("a", "2.0.0"), "apps/b/app.yaml": yamlSpec("b", "2.0.0") });

  // A runtime (in the agent's own process) that logs each call and never finishes upgrading b.
  const calls = join(repo.root, "calls.log");
  const runtimeModule = join(repo.root, "hanging-runtime.mjs");
  await writeFile(
    runtimeModule,
    `import { appendFileSync } from "node:fs";
const apps = new Map();
const state = (spec) => ({ name: spec.name, version: spec.version, status: "running", health: "unknown", env: spec.env, reloads: 0 });
const log = (line) => appendFileSync(${JSON.stringify(calls)}, line + "\\n");
export default {
  async deploy(spec) { log("deploy " + spec.name + " " + spec.version); apps.set(spec.name, state(spec)); return state(spec); },
  async upgrade(spec, from) { log("upgrade " + spec.name + " " + spec.version); if (spec.name === "b") await new Promise(() => {}); apps.set(spec.name, state(spec)); return state(spec); },
  async reconfigure(spec) { return state(spec); },
  async remove(name) { apps.delete(name); },
  async getCurrentState() { return Object.fromEntries(apps); },
};
`,
  );
  const [command, prefix] = cliCommand();
  const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
  const child = await spawnProcess(
    command,
    [
      ...prefix,
      "run",
      "--repo-url",
      repo.bare,
      "--local-path",
      localPath,
      "--runtime",
      runtimeModule,
      "--listen",
      "off",
      "--reconcile-interval",
      "1h",
      // Restarted with state.json and no terminal, it would otherwise wait for part of the jitter first.
      "--reconcile-jitter",
      "0",
    ],
    { env: { ...env, NO_COLOR: "1" } },
  );
  t.after(() => child.terminate(1000));
  child.stdout.resume();
  child.stderr.resume();
  // a and b upgrade at the same time: kill once b hangs and a's upgrade is recorded in the journal.
  const journalled = async () =>
    (await readFile(join(localPath, "state.journal"), "utf8").catch(() => "")).includes('"app":"a"');
  await until(
    "the agent to start upgrading b after recording a",
    async () =>
      (await readFile(calls, "utf8").catch(() => "")).includes("upgrade b") && (await journalled()) ? true : undefined,
    60_000,
  );
  child.killGroup("SIGKILL");
  await child.exited;

  const next = agentOn(t, repo);
  const result = await next.agent.start();
  assert.deepEqual(
    next.runtime.calls.sort(),
    ["deploy a 2.0.0", "deploy b 1.0.0", "upgrade b 2.0.0 from 1.0.0"],
    "a comes back at 2.0.0 and is not upgraded again",
  );
  assert.equal(result.status, "synced");
  assert.equal((await readdir(localPath)).includes("state.journal"), false, "state.json holds everything again");
  const state = JSON.parse(await readFile(join(localPath, "state.json"), "utf8")) as {
    apps: Record<string, { version: string }>;
  };
  assert.deepEqual(Object.fromEntries(Object.entries(state.apps).map(([k, v]) => [k, v.version])), {
    a: "2.0.0",
    b: "2.0.0",
  });
});

test("an invalid spec is logged once per commit, while status keeps showing it", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/ok/app.yaml": yamlSpec("ok", "1.0.0"),
    "apps/bad/app.yaml": yamlSpec("bad", "1.0.0", "health: {interval: soon}\n"),
  });
  const logger = recordingLogger();
  const { agent } = agentOn(t, repo, { logger });
  await agent.start();
  await agent.reconcile();
  await agent.reconcile();
  const about = (w: string) => w.includes("apps/bad/app.yaml") && w.includes("health.interval");
  assert.equal(logger.warnings.filter(about).length, 1, logger.warnings.join("\n"));
  assert.ok((await agent.status()).errors.some((e) => e.file === "apps/bad/app.yaml"));
  // A new commit that still has the problem logs it again, once.
  await repo.commit({ "README.md": "touched" });
  await agent.reconcile();
  await agent.reconcile();
  assert.equal(logger.warnings.filter(about).length, 2);
});

test("once the remote is reachable again, status never shows the old error next to a good state", async (t) => {
  const repo = await gitopsRepo(t, { "apps/ok/app.yaml": yamlSpec("ok", "1.0.0") });
  const { agent, runtime } = agentOn(t, repo);
  await agent.start();
  const { rename } = await import("node:fs/promises");
  await rename(repo.bare, `${repo.bare}.away`);
  const failed = await agent.reconcile();
  assert.equal(failed.status, "error");
  assert.match((await agent.status()).last_reconcile.error ?? "", /cannot reach/);
  await rename(`${repo.bare}.away`, repo.bare);
  await repo.commit({ "apps/late/app.yaml": yamlSpec("late", "1.0.0") });
  // Hold the next tick in its deploy: the repository was read fine, the tick is not over yet.
  let release!: () => void;
  runtime.gate = new Promise((resolve) => (release = resolve));
  const tick = agent.reconcile();
  const during = await until("the fetch to succeed", async () => {
    const status = await agent.status();
    return status.status !== "error" ? status : undefined;
  });
  release();
  assert.equal(during.last_reconcile.error, null, "no stale error beside a status that is no longer error");
  await tick;
  const status = await agent.status();
  assert.equal(status.status, "synced");
  assert.equal(status.last_reconcile.error, null);
  assert.deepEqual(status.errors, []);
});

test("a running path app whose source turns unsafe keeps running, and status names the refusal", async (t) => {
  const { symlink, mkdir } = await import("node:fs/promises");
  const { git } = await import("./helpers/gitops-repo.ts");
  const { agentFor } = await import("./helpers/e2e.ts");
  const repo = await gitopsRepo(t, {
    "code/greeting/package.json": '{"name":"greeting","type":"module","main":"index.js"}',
    "code/greeting/index.js": "export async function start() { return {}; }\nexport async function stop() {}\n",
    "apps/hello/app.yaml": yamlSpec("hello", "1.0.0", "source: {type: path, path: code/current}\n"),
  });
  // code/current -> greeting: an in-tree link, fine.
  await symlink("greeting", join(repo.work, "code", "current"));
  await git(repo.work, "add", "-A");
  await git(repo.work, "commit", "-q", "-m", "link");
  await git(repo.work, "push", "-q", repo.bare, "HEAD:refs/heads/main");
  const agent = agentFor(t, repo.bare, join(repo.root, "local"));
  const started = await agent.start();
  assert.equal(started.status, "synced", JSON.stringify(started.errors));

  // The same spec, but the link now leads out of the repository.
  const outside = join(repo.root, "outside");
  await mkdir(outside);
  await writeFile(join(outside, "package.json"), '{"name":"x","type":"module","main":"index.js"}');
  await rm(join(repo.work, "code", "current"));
  await symlink(outside, join(repo.work, "code", "current"));
  await git(repo.work, "add", "-A");
  await git(repo.work, "commit", "-q", "-m", "escape");
  await git(repo.work, "push", "-q", repo.bare, "HEAD:refs/heads/main");
  const result = await agent.reconcile();
  assert.deepEqual(result.actions, [], "nothing is reloaded from outside the repository");
  assert.equal((await agent.getAppStatus("hello"))?.status, "running");
  const refusal = (await agent.status()).errors.find((e) => e.app === "hello");
  assert.match(refusal?.message ?? "", /path source "code\/current" of hello .*is refused/);
});

test("a manual hot reload goes the tick's way: the same events, and a failure shows in status until one succeeds", async (t) => {
  const { GitopsError } = await import("../src/errors.ts");
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": yamlSpec("db", "1.0.0") });
  const runtime = new ReloadingFake();
  const { agent } = agentOn(t, repo, { runtime });
  const events: { name: string; metadata: Record<string, unknown> }[] = [];
  agent.on("*", (e) => void events.push(e));
  await agent.start();

  runtime.fail = new GitopsError("cannot import src/main.ts: SyntaxError", { code: "E_RUNTIME" });
  await assert.rejects(agent.hotReload("db"), /cannot import src\/main\.ts: SyntaxError/);
  const reloads = () => events.filter((e) => e.name.startsWith("bc_gitops:hot_reload:")).map((e) => e.name);
  assert.deepEqual(reloads(), ["bc_gitops:hot_reload:start", "bc_gitops:hot_reload:error"]);
  const failed = await agent.status();
  assert.ok(
    failed.errors.some((e) => e.app === "db" && /SyntaxError/.test(e.message)),
    JSON.stringify(failed.errors),
  );
  assert.match((await agent.getAppStatus("db"))?.last_error ?? "", /SyntaxError/);

  runtime.fail = undefined;
  const result = await agent.hotReload("db");
  assert.deepEqual(result, { app: "db", revision: "rev-2", modules: ["index.js"] });
  assert.deepEqual(reloads().slice(2), ["bc_gitops:hot_reload:start", "bc_gitops:hot_reload:stop"]);
  const stop = events.findLast((e) => e.name === "bc_gitops:hot_reload:stop");
  assert.deepEqual(stop?.metadata.modules, ["index.js"]);
  assert.equal((await agent.getAppStatus("db"))?.last_error ?? null, null);
  const state = JSON.parse(await readFile(join(repo.root, "local", "state.json"), "utf8")) as {
    apps: Record<string, { revision?: string }>;
  };
  assert.equal(state.apps.db?.revision, "rev-2", "the new revision is recorded");
});

test("status carries each problem's error code: the repository's, a spec's and an app's", async (t) => {
  const { GitopsError } = await import("../src/errors.ts");
  const repo = await gitopsRepo(t, { "apps/ok/app.yaml": yamlSpec("ok", "1.0.0"), "apps/bad/app.yaml": "name: [bad" });
  const { agent, runtime } = agentOn(t, repo);
  runtime.failAlways.add("ok");
  runtime.failNext.set("ok", new GitopsError("cannot import index.js: SyntaxError", { code: "E_RUNTIME" }));
  await agent.start();
  const status = await agent.status();
  assert.ok(
    status.errors.some((e) => e.file === "apps/bad/app.yaml" && e.code === "E_SPEC"),
    JSON.stringify(status.errors),
  );
  assert.ok(
    status.errors.some((e) => e.app === "ok" && e.code === "E_RUNTIME"),
    JSON.stringify(status.errors),
  );
  assert.equal((await agent.getAppStatus("ok"))?.last_error_code, "E_RUNTIME");

  const { rename } = await import("node:fs/promises");
  await rename(repo.bare, `${repo.bare}.away`);
  await agent.reconcile();
  const away = await agent.status();
  assert.equal(away.errors[0]?.code, "E_GIT_UNREACHABLE", JSON.stringify(away.errors[0]));
});

test("a manual hot reload waits for no dependency: the app runs already", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1.0.0"),
    "apps/web/app.yaml": yamlSpec("web", "1.0.0", "depends_on: [db]\n"),
  });
  const runtime = new ReloadingFake();
  const { agent } = agentOn(t, repo, { runtime });
  await agent.start();
  runtime.setHealth("db", "unhealthy");
  assert.equal((await agent.hotReload("web")).revision, "rev-2");
  assert.equal((await agent.getAppStatus("web"))?.pending_reason, undefined);
});

test("a commit a manual hot reload fetched is still new to the next tick, which applies it and prunes", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": yamlSpec("db", "1.0.0"),
    "apps/web/app.yaml": yamlSpec("web", "1.0.0"),
  });
  const runtime = new ReloadingFake();
  const { agent } = agentOn(t, repo, { runtime });
  await agent.start();
  await repo.commit({ "apps/web/app.yaml": yamlSpec("web", "2.0.0") });
  await agent.hotReload("db");
  const tick = await agent.reconcile();
  assert.equal(tick.changed, true);
  assert.deepEqual(
    tick.actions.map((a) => `${a.type} ${a.app}`),
    ["upgrade web"],
  );
});

test("a state journal that cannot be written does not stop the tick: every app is applied and state.json written", async (t) => {
  const { mkdir } = await import("node:fs/promises");
  const repo = await gitopsRepo(t, {
    "apps/a/app.yaml": yamlSpec("a", "1.0.0"),
    "apps/b/app.yaml": yamlSpec("b", "1.0.0"),
  });
  const localPath = join(repo.root, "local");
  // A directory where the journal goes: every append fails, as on a full or read-only disk.
  await mkdir(join(localPath, "state.journal"), { recursive: true });
  const logger = recordingLogger();
  const { agent, runtime } = agentOn(t, repo, { logger });
  const first = await agent.start();
  assert.deepEqual(runtime.calls.sort(), ["deploy a 1.0.0", "deploy b 1.0.0"]);
  assert.equal(first.status, "synced");
  const state = JSON.parse(await readFile(join(localPath, "state.json"), "utf8")) as { apps: Record<string, unknown> };
  assert.deepEqual(Object.keys(state.apps).sort(), ["a", "b"]);
  assert.ok(
    logger.warnings.some((w) => /cannot record deploy a in the state journal/.test(w)),
    logger.warnings.join("\n"),
  );
});

test("a manual hot reload queued behind a tick records what that tick deployed, not the spec from before it", async (t) => {
  const repo = await gitopsRepo(t, { "apps/web/app.yaml": yamlSpec("web", "1.0.0") });
  const runtime = new ReloadingFake();
  const { agent } = agentOn(t, repo, { runtime });
  await agent.start();
  await repo.commit({ "apps/web/app.yaml": yamlSpec("web", "2.0.0") });
  let release!: () => void;
  runtime.gate = new Promise((resolve) => (release = resolve));
  const tick = agent.reconcile();
  // The tick has read the new commit and is held in its upgrade.
  await until("the tick to hold in the upgrade", async () =>
    (await agent.status()).status === "out_of_sync" ? true : undefined,
  );
  const reload = agent.hotReload("web");
  release();
  runtime.gate = undefined;
  await tick;
  await reload;
  const state = JSON.parse(await readFile(join(repo.root, "local", "state.json"), "utf8")) as {
    apps: Record<string, { version: string; revision?: string }>;
  };
  assert.equal(state.apps.web?.version, "2.0.0", "state.json says what runs");
  assert.equal(state.apps.web?.revision, "rev-2");
  assert.deepEqual((await agent.reconcile()).actions, [], "no second upgrade");
});

test("problems of the applied commit and of a newer unreadable one are each logged once, however the ticks alternate", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/alpha/app.yaml": yamlSpec("alpha", "1.0.0"),
    "apps/beta/app.yaml": yamlSpec("beta", "1.0.0"),
  });
  const logger = recordingLogger();
  const { agent } = agentOn(t, repo, { logger });
  await agent.start();
  // Applied: alpha gone and an unreadable spec that may be it (alpha is kept, a warning).
  await repo.commit({ "apps/alpha": null, "apps/moved/app.yaml": "name: [alpha" });
  await agent.reconcile();
  // Newer: no apps/ at all, which cannot be read (another warning, on every tick it is retried).
  await repo.commit({ "apps/beta": null, "apps/moved": null });
  for (let i = 0; i < 3; i++) await agent.reconcile();
  const count = (pattern: RegExp) => logger.warnings.filter((w) => pattern.test(w)).length;
  assert.equal(count(/alpha: kept running/), 1, logger.warnings.join("\n"));
  assert.equal(count(/apps\/ does not exist/), 1, logger.warnings.join("\n"));
});
