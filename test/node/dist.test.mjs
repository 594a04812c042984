// Smoke test of the Node build (dist/): the library imports and reconciles a real git repository,
// and the CLI runs. Node 20 cannot run the TypeScript sources; `npm run build` makes dist/ first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const cli = join(root, "dist", "cli.js");
const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@t",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@t",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};
const git = (cwd, ...args) => execFileSync("git", args, { cwd, env: gitEnv, encoding: "utf8" }).trim();

test("the built library exports the documented API and the package version", async () => {
  const api = JSON.parse(await readFile(join(root, "test", "fixtures", "public-api.json"), "utf8"));
  const lib = await import("../../dist/index.js");
  assert.deepEqual(Object.keys(lib).sort(), api["bc-gitops"]);
  assert.deepEqual(Object.keys(await import("../../dist/tools.js")).sort(), api["bc-gitops/tools"]);
  const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8"));
  assert.equal(lib.VERSION, pkg.version);
});

test("the built CLI validates the bundled example repository", () => {
  const out = execFileSync(process.execPath, [cli, "validate", join(root, "examples", "gitops-repo")], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  assert.match(out, /3 valid apps, 0 errors, 0 warnings/);
});

test("the built agent clones a repository and deploys its apps through a runtime under Node", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-node-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const work = join(dir, "work");
  await mkdir(join(work, "apps", "db"), { recursive: true });
  await mkdir(join(work, "apps", "web"), { recursive: true });
  await writeFile(join(work, "apps", "db", "app.yaml"), 'name: db\nversion: "1.0.0"\n');
  await writeFile(
    join(work, "apps", "web", "app.config"),
    '#{name => web, version => <<"2.0.0">>, depends_on => [db]}.',
  );
  git(dir, "init", "-q", "-b", "main", work);
  git(work, "add", "-A");
  git(work, "commit", "-q", "-m", "init");
  const { createAgent } = await import("../../dist/index.js");
  const calls = [];
  const apps = {};
  const runtime = {
    async deploy(spec) {
      calls.push(`deploy ${spec.name}`);
      return (apps[spec.name] = { name: spec.name, version: spec.version, status: "running", health: "healthy" });
    },
    async remove(name) {
      calls.push(`remove ${name}`);
      delete apps[name];
    },
    async upgrade(spec) {
      return this.deploy(spec);
    },
    async reconfigure(spec) {
      return this.deploy(spec);
    },
    async getCurrentState() {
      return { ...apps };
    },
  };
  const agent = createAgent({
    repoUrl: work,
    localPath: join(dir, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
  });
  t.after(() => agent.stop());
  const result = await agent.start();
  assert.equal(result.status, "synced");
  assert.deepEqual(calls, ["deploy db", "deploy web"]);
});

test("the built library hot-reloads a fetch app in place under Node, embedded and in a worker, with no failed request", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-node-reload-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const work = join(dir, "work");
  const write = async (files) => {
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(work, path, ".."), { recursive: true });
      await writeFile(join(work, path), text);
    }
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", "change");
  };
  const spec = (name, isolation) =>
    `name: ${name}\nversion: "1.0.0"\nsource: { type: path, path: code }\nisolation: ${isolation}\nenv: { port: 0 }\n`;
  await mkdir(work, { recursive: true });
  git(dir, "init", "-q", "-b", "main", work);
  await write({
    "apps/inproc/app.yaml": spec("inproc", "embedded"),
    "apps/inworker/app.yaml": spec("inworker", "worker"),
    "code/package.json": '{ "type": "module", "main": "index.js" }',
    "code/index.js":
      'import { word } from "./lib/a.js";\nimport { isMainThread } from "node:worker_threads";\nexport default { fetch: () => Response.json({ word: word(), isMainThread }) };\n',
    "code/lib/a.js": 'import { WORD } from "./b.js";\nexport const word = () => WORD;\n',
    "code/lib/b.js": 'export const WORD = "one";\n',
  });
  const { createAgent } = await import("../../dist/index.js");
  const agent = createAgent({ repoUrl: work, localPath: join(dir, "local"), reconcileInterval: "1h", listen: "off" });
  t.after(() => agent.stop());
  const first = await agent.start();
  assert.deepEqual(
    first.actions.map((a) => [a.type, a.outcome]),
    [
      ["deploy", "ok"],
      ["deploy", "ok"],
    ],
  );
  const get = async (app) =>
    (
      await fetch(`http://127.0.0.1:${(await agent.getAppStatus(app)).port}/`, { signal: AbortSignal.timeout(5000) })
    ).json();
  assert.deepEqual(await get("inproc"), { word: "one", isMainThread: true });
  assert.deepEqual(await get("inworker"), { word: "one", isMainThread: false });

  let done = false;
  let failures = 0;
  const load = (app) =>
    (async () => {
      for (let i = 0; !done && i < 20_000; i++) await get(app).catch(() => failures++);
    })();
  const loops = [load("inproc"), load("inworker")];
  try {
    await write({ "code/lib/b.js": 'export const WORD = "two";\n' });
    const result = await agent.reconcile();
    assert.deepEqual(
      result.actions.map((a) => [a.type, a.app, a.outcome]),
      [
        ["hot_reload", "inproc", "ok"],
        ["hot_reload", "inworker", "ok"],
      ],
    );
  } finally {
    done = true;
    await Promise.all(loops);
  }
  assert.equal(failures, 0);
  assert.deepEqual(await get("inproc"), { word: "two", isMainThread: true });
  assert.deepEqual(await get("inworker"), { word: "two", isMainThread: false });
  assert.equal((await agent.getAppStatus("inworker")).reloads, 1);
});

test("the built agent serves the dashboard and streams its events over node:http", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-node-events-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const work = join(dir, "work");
  await mkdir(join(work, "apps", "db"), { recursive: true });
  await writeFile(join(work, "apps", "db", "app.yaml"), 'name: db\nversion: "1.0.0"\n');
  git(dir, "init", "-q", "-b", "main", work);
  git(work, "add", "-A");
  git(work, "commit", "-q", "-m", "init");
  const { createAgent } = await import("../../dist/index.js");
  const apps = {};
  const runtime = {
    async deploy(spec) {
      return (apps[spec.name] = { name: spec.name, version: spec.version, status: "running", health: "healthy" });
    },
    async remove(name) {
      delete apps[name];
    },
    async upgrade(spec) {
      return this.deploy(spec);
    },
    async reconfigure(spec) {
      return this.deploy(spec);
    },
    async getCurrentState() {
      return { ...apps };
    },
  };
  const agent = createAgent({
    repoUrl: work,
    localPath: join(dir, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "127.0.0.1:0",
  });
  t.after(() => agent.stop());
  await agent.start();
  const url = `http://${agent.address}`;
  const page = await fetch(`${url}/`);
  assert.match(page.headers.get("content-security-policy"), /default-src 'none'/);
  assert.match(await page.text(), /<title>bc-gitops · /);
  const events = await fetch(`${url}/events`);
  assert.equal(events.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const decoder = new TextDecoder();
  let text = "";
  const reader = events.body.getReader();
  while (!text.includes('"name":"bc_gitops:reconcile:stop"')) text += decoder.decode((await reader.read()).value);
  assert.match(text, /^retry: 2000\n\nid: [0-9a-z]+\.1\ndata: \{"id":1,/);
  assert.match(text, /"name":"bc_gitops:deploy:stop".*"app":"db"/);
  // The agent ends open streams when it stops, so its server closes without waiting for them.
  await agent.stop();
  for (;;) if ((await reader.read()).done) break;
});
