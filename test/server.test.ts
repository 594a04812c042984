import { test } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent, type Agent, type AgentOptions } from "../src/agent.ts";
import { GitopsError } from "../src/errors.ts";
import type { HotReloadResult } from "../src/runtime.ts";
import { createHandler, type ControlHandler } from "../src/server.ts";
import type { AppSpec } from "../src/spec.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { signWebhook } from "../src/webhook.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec, type GitopsRepo } from "./helpers/gitops-repo.ts";
import { recordingLogger } from "./helpers/logger.ts";

const TOKEN = "api-token-abcdef123456";
const SECRET = "hook-secret-987654";
const db = (v = "1.0.0", extra = "") => yamlSpec("db", v, extra);
const web = (v = "1.0.0") => yamlSpec("web", v, "depends_on: [db]\n");

/** A runtime that can hot reload: it counts reloads and fails when told to. */
class ReloadingRuntime extends FakeRuntime {
  failReload: Error | undefined;
  async hotReload(spec: AppSpec): Promise<HotReloadResult> {
    if (this.failReload) throw this.failReload;
    const app = this.apps.get(spec.name)!;
    app.reloads = (app.reloads ?? 0) + 1;
    app.revision = `rev-${app.reloads}`;
    return { app: spec.name, revision: app.revision, modules: ["src/routes.ts"] };
  }
}

interface Harness {
  repo: GitopsRepo;
  runtime: ReloadingRuntime;
  agent: Agent;
  events: TelemetryEvent[];
  handler: ControlHandler;
  call(
    method: string,
    path: string,
    init?: RequestInit,
  ): Promise<{ status: number; headers: Headers; text: string; json: any }>;
}

async function harness(
  t: TestContext,
  files: Record<string, string>,
  options: Partial<AgentOptions> = {},
  runtime = new ReloadingRuntime(),
): Promise<Harness> {
  const repo = await gitopsRepo(t, files);
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    token: TOKEN,
    webhookSecret: SECRET,
    ...options,
  });
  t.after(() => agent.stop());
  const events: TelemetryEvent[] = [];
  agent.on("*", (e) => events.push(e));
  const handler = createHandler(agent);
  const call = async (method: string, path: string, init: RequestInit = {}) => {
    const response = await handler(new Request(`http://agent.test${path}`, { method, ...init }));
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  };
  return { repo, runtime, agent, events, handler, call };
}

const auth = { headers: { authorization: `Bearer ${TOKEN}` } };

async function until<T>(probe: () => T | undefined | Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("/healthz answers ok at once; /readyz answers 503 until the first reconcile completed, then 200", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  const health = await h.call("GET", "/healthz");
  assert.deepEqual(
    [health.status, health.text, health.headers.get("content-type")],
    [200, "ok", "text/plain; charset=utf-8"],
  );
  const early = await h.call("GET", "/readyz");
  assert.equal(early.status, 503);
  assert.match(early.text, /first reconcile/);
  await h.agent.start();
  const ready = await h.call("GET", "/readyz");
  assert.equal(ready.status, 200);
});

test("GET /status, /apps, /apps/:name and /state/* show what the agent knows, env secrets masked", async (t) => {
  const h = await harness(t, {
    "apps/db/app.yaml": db("1.0.0", "env: { port: 5432, db_password: hunter2 }\n"),
    "apps/web/app.yaml": web(),
  });
  await h.agent.start();

  const status = await h.call("GET", "/status");
  assert.equal(status.status, 200);
  assert.equal(status.headers.get("content-type"), "application/json; charset=utf-8");
  assert.deepEqual(status.json, JSON.parse(JSON.stringify(await h.agent.status())));
  assert.equal(status.json.status, "synced");
  assert.equal(status.json.app_count, 2);

  const apps = await h.call("GET", "/apps");
  assert.deepEqual(
    apps.json.apps.map((a: { name: string; status: string }) => [a.name, a.status]),
    [
      ["db", "running"],
      ["web", "running"],
    ],
  );
  const one = await h.call("GET", "/apps/db");
  assert.equal(one.status, 200);
  assert.equal(one.json.version, "1.0.0");
  assert.deepEqual(one.json.env, { port: 5432, db_password: "***" });

  const desired = await h.call("GET", "/state/desired");
  assert.deepEqual(Object.keys(desired.json.apps), ["db", "web"]);
  assert.equal(desired.json.apps.db.version, "1.0.0");
  assert.deepEqual(desired.json.apps.db.env, { port: 5432, db_password: "***" }, "desired specs are masked too");
  assert.deepEqual(desired.json.apps.web.depends_on, ["db"]);
  const current = await h.call("GET", "/state/current");
  assert.deepEqual(Object.keys(current.json.apps), ["db", "web"]);
  assert.equal(current.json.apps.web.health, "healthy");
  for (const response of [status, apps, one, desired, current])
    assert.ok(!response.text.includes("hunter2"), response.text);
});

test("unknown apps and paths are 404, wrong methods 405 with Allow, all as JSON errors", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  const cases: [string, string, number, RegExp, string?][] = [
    ["GET", "/apps/nope", 404, /no app named "nope"/],
    ["POST", "/apps/nope/reload", 404, /no app named "nope"/],
    ["GET", "/nothing/here", 404, /no such endpoint: GET \/nothing\/here/],
    ["GET", "/apps/db/reload", 405, /GET is not allowed on \/apps\/db\/reload; use POST/, "POST"],
    ["DELETE", "/apps/db", 405, /use GET, HEAD/, "GET, HEAD"],
    ["GET", "/reconcile", 405, /use POST/, "POST"],
    ["PUT", "/webhook", 405, /use POST/, "POST"],
    ["POST", "/status", 405, /use GET, HEAD/, "GET, HEAD"],
    ["GET", "/apps/%E0%A4%A", 400, /malformed path/],
  ];
  for (const [method, path, status, message, allow] of cases) {
    const response = await h.call(method, path, auth);
    assert.equal(response.status, status, `${method} ${path}`);
    assert.match(response.json?.error ?? "", message, `${method} ${path}`);
    assert.equal(response.headers.get("allow"), allow ?? null, `${method} ${path}`);
  }
  const head = await h.call("HEAD", "/status");
  assert.deepEqual(
    [head.status, head.text, head.headers.get("content-type")],
    [200, "", "application/json; charset=utf-8"],
  );
  assert.equal((await h.call("GET", "/status/")).status, 200, "a trailing slash is tolerated");
});

test("POST /reconcile runs a tick and answers its result", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  const commit = await h.repo.commit({ "apps/db/app.yaml": db("1.1.0") });
  const response = await h.call("POST", "/reconcile", auth);
  assert.equal(response.status, 200);
  assert.equal(response.json.commit, commit);
  assert.equal(response.json.changed, true);
  assert.deepEqual(
    response.json.actions.map((a: { type: string; app: string; outcome: string }) => [a.type, a.app, a.outcome]),
    [["upgrade", "db", "ok"]],
  );
  assert.equal(response.json.status, "synced");
  await h.agent.stop();
  const stopped = await h.call("POST", "/reconcile", auth);
  assert.equal(stopped.status, 503);
  assert.match(stopped.json.error, /stopped/);
});

test("mutating calls need the bearer token (401 otherwise, nothing runs); reads and the webhook do not", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  const ticks = () => h.events.filter((e) => e.name === "bc_gitops:reconcile:start").length;
  const reloads = () => h.events.filter((e) => e.name === "bc_gitops:hot_reload:start").length;
  const before = [ticks(), reloads()];
  const refused: [string, Record<string, string>, RegExp][] = [
    ["no header", {}, /missing bearer token/],
    ["another scheme", { authorization: `Basic ${btoa(`x:${TOKEN}`)}` }, /missing bearer token/],
    ["empty bearer", { authorization: "Bearer " }, /missing bearer token/],
    ["wrong token", { authorization: "Bearer api-token-abcdef123457" }, /invalid bearer token/],
    ["prefix of the token", { authorization: `Bearer ${TOKEN.slice(0, -1)}` }, /invalid bearer token/],
    ["token plus more", { authorization: `Bearer ${TOKEN}x` }, /invalid bearer token/],
  ];
  for (const path of ["/reconcile", "/apps/db/reload"]) {
    for (const [what, headers, message] of refused) {
      const response = await h.call("POST", path, { headers });
      assert.equal(response.status, 401, `${path}: ${what}`);
      assert.match(response.json.error, message, `${path}: ${what}`);
      assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer realm="bc-gitops"/);
    }
  }
  assert.deepEqual([ticks(), reloads()], before, "no refused call did anything");
  assert.equal(
    (await h.call("POST", "/reconcile", { headers: { authorization: `bearer ${TOKEN}` } })).status,
    200,
    "the scheme is case-insensitive",
  );
  assert.equal((await h.call("POST", "/apps/db/reload", auth)).status, 200);
  assert.deepEqual([ticks(), reloads()], [before[0]! + 1, before[1]! + 1]);
  for (const path of [
    "/healthz",
    "/readyz",
    "/status",
    "/apps",
    "/apps/db",
    "/state/desired",
    "/state/current",
    "/metrics",
  ]) {
    assert.equal((await h.call("GET", path)).status, 200, path);
  }
  const hook = JSON.stringify({ ref: "refs/heads/main" });
  assert.equal(
    (await h.call("POST", "/webhook", { headers: { "x-hub-signature-256": signWebhook(hook, SECRET) }, body: hook }))
      .status,
    202,
    "the webhook uses its signature, not the token",
  );
});

test("without a token, mutating calls are open to local clients but refused to browsers", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() }, { token: undefined });
  await h.agent.start();
  assert.equal((await h.call("POST", "/reconcile")).status, 200);
  const browser = await h.call("POST", "/reconcile", { headers: { origin: "https://evil.example" } });
  assert.equal(browser.status, 403);
  assert.match(browser.json.error, /browser/);
  assert.equal((await h.call("POST", "/apps/db/reload", { headers: { origin: "http://127.0.0.1:9477" } })).status, 403);
});

test("POST /apps/:name/reload answers the hot reload result, or why there is none", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/web/app.yaml": web() });
  h.runtime.healthOf.set("db", "unhealthy");
  await h.agent.start();
  const reloaded = await h.call("POST", "/apps/db/reload", auth);
  assert.equal(reloaded.status, 200);
  assert.deepEqual(reloaded.json, { app: "db", revision: "rev-1", modules: ["src/routes.ts"] });
  await h.agent.reconcile(); // status reads the runtime's state at each tick
  assert.equal((await h.call("GET", "/apps/db")).json.reloads, 1);

  const pending = await h.call("POST", "/apps/web/reload", auth);
  assert.equal(pending.status, 409, "web waits for db: known, but not deployed");
  assert.match(pending.json.error, /no app named "web" is deployed/);

  h.runtime.failReload = new GitopsError(
    "cannot import https://bot:gh-secret-77@git.example/app.git src/main.ts: SyntaxError",
    { code: "E_RUNTIME" },
  );
  const failed = await h.call("POST", "/apps/db/reload", auth);
  assert.equal(failed.status, 500);
  assert.deepEqual(failed.json, {
    error: "cannot import https://***@git.example/app.git src/main.ts: SyntaxError",
    code: "E_RUNTIME",
  });
  assert.ok(!failed.text.includes("    at "), "no stack trace");
});

test("a runtime that cannot hot reload answers 501", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() }, {}, new FakeRuntime() as ReloadingRuntime);
  await h.agent.start();
  const response = await h.call("POST", "/apps/db/reload", auth);
  assert.equal(response.status, 501);
  assert.deepEqual(response.json, { error: "this runtime cannot hot-reload apps", code: "E_UNSUPPORTED" });
});

test("credentials never appear in any answer", async (t) => {
  const h = await harness(t, {
    "apps/db/app.yaml": db(
      "1.0.0",
      'env: { api_token: tok-value-1, nested: { password: pw-value-2 }, dsn: "postgres://u:pw-value-3@db/x" }\n',
    ),
    "apps/git/app.yaml": yamlSpec(
      "git",
      "1.0.0",
      'source: { type: git, url: "https://bot:gh-value-4@git.example/app.git" }\n',
    ),
  });
  await h.agent.start();
  const answers = [
    await h.call("GET", "/status"),
    await h.call("GET", "/apps"),
    await h.call("GET", "/apps/db"),
    await h.call("GET", "/apps/git"),
    await h.call("GET", "/state/desired"),
    await h.call("GET", "/state/current"),
    await h.call("GET", "/metrics"),
    await h.call("POST", "/reconcile", auth),
    await h.call("POST", "/reconcile", { headers: { authorization: "Bearer wrong-token-000" } }),
    await h.call("POST", "/webhook", { headers: { "x-gitlab-token": "wrong-secret-00" }, body: "{}" }),
  ];
  const all = answers.map((a) => a.text).join("\n");
  for (const secret of ["tok-value-1", "pw-value-2", "pw-value-3", "gh-value-4", TOKEN, SECRET])
    assert.ok(!all.includes(secret), `${secret} leaked`);
  assert.match(answers[4]!.text, /https:\/\/\*\*\*@git\.example\/app\.git/, "the git source is shown, redacted");
});

test("the agent serves the API on loopback from before its first reconcile completes until it stops", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": db() });
  const runtime = new FakeRuntime();
  let release!: () => void;
  runtime.gate = new Promise((r) => (release = r));
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "127.0.0.1:0",
    token: TOKEN,
    webhookSecret: SECRET,
  });
  t.after(() => agent.stop());
  assert.equal(agent.address, undefined, "nothing listens before start()");
  const started = agent.start();
  const address = await until(() => agent.address, "the control API to listen");
  assert.match(address, /^127\.0\.0\.1:\d+$/);
  assert.notEqual(address, "127.0.0.1:0");
  const base = `http://${address}`;
  const get = async (path: string) => {
    const response = await fetch(`${base}${path}`);
    return { status: response.status, text: await response.text() };
  };
  assert.deepEqual(await get("/healthz"), { status: 200, text: "ok" }, "answers while the first tick is held");
  assert.equal((await get("/readyz")).status, 503);
  assert.equal(JSON.parse((await get("/status")).text).status, "initializing");
  release();
  runtime.gate = undefined;
  await started;
  assert.equal((await get("/readyz")).status, 200);
  assert.equal(JSON.parse((await get("/apps/db")).text).status, "running");

  const denied = await fetch(`${base}/reconcile`, { method: "POST" });
  assert.equal(denied.status, 401);
  await denied.body?.cancel();
  const reconciled = await fetch(`${base}/reconcile`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(reconciled.status, 200);
  assert.equal(((await reconciled.json()) as { status: string }).status, "synced");

  const hook = JSON.stringify({ ref: "refs/heads/main" });
  const webhook = await fetch(`${base}/webhook`, {
    method: "POST",
    headers: { "x-hub-signature-256": signWebhook(hook, SECRET), "content-type": "application/json" },
    body: hook,
  });
  assert.equal(webhook.status, 202);
  await webhook.body?.cancel();

  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.match(await metrics.text(), /^bc_gitops_reconcile_total \d+$/m);

  await agent.stop();
  assert.equal(agent.address, `${address}`, "the address stays readable after stop");
  await assert.rejects(
    fetch(`${base}/healthz`).then((r) => r.text()),
    "the port is closed after stop()",
  );
});

test("createAgent refuses a non-loopback listen address without a token, and a malformed one", () => {
  const isConfigError = (pattern: RegExp) => (e: unknown) =>
    e instanceof GitopsError && e.code === "E_CONFIG" && pattern.test(e.message);
  for (const listen of ["0.0.0.0:9477", ":9477", "192.168.1.10:80", "[::]:9477", "agent.example:9477"]) {
    assert.throws(
      () => createAgent({ repoUrl: "/r", listen }),
      isConfigError(/refusing to serve the control API on .* without a token/),
      listen,
    );
    assert.doesNotThrow(() => createAgent({ repoUrl: "/r", listen, token: TOKEN }), listen);
  }
  for (const listen of ["127.0.0.1:0", "localhost:9477", "[::1]:9477", "9477", "off", "OFF"]) {
    assert.doesNotThrow(() => createAgent({ repoUrl: "/r", listen }), listen);
  }
  assert.throws(() => createAgent({ repoUrl: "/r", listen: "127.0.0.1" }), isConfigError(/expected HOST:PORT/));
});

test("env keys named like secrets, and Bearer or URL-credential values under any key, are masked in every view", async (t) => {
  const secretKeys = [
    "passphrase",
    "credentials",
    "session",
    "creds",
    "auth_header",
    "cookie",
    "private",
    "db_pass",
    "smtp_pwd",
    "sentry_dsn",
    "api_key",
    "oauth_client",
  ];
  const env = Object.fromEntries(secretKeys.map((key, i) => [key, `value-${i}-shh`]));
  Object.assign(env, {
    upstream: "Bearer abc.def.ghi-1",
    header: "X: bearer zzz-2",
    basic: "Basic dXNlcjpwdw==-3",
    mirror: "https://u:p@ss@mirror.example/x-4",
  });
  Object.assign(env, {
    port: 8080,
    log_level: "debug",
    bypassed: "shown",
    nested: [{ session_id: "s-5-shh", home: "https://example.com/" }],
  });
  const h = await harness(t, { "apps/db/app.json": JSON.stringify({ name: "db", version: "1.0.0", env }) });
  await h.agent.start();
  const expected = {
    ...Object.fromEntries(secretKeys.map((key) => [key, "***"])),
    ...{ upstream: "***", header: "***", basic: "***", mirror: "***" },
    ...{
      port: 8080,
      log_level: "debug",
      bypassed: "shown",
      nested: [{ session_id: "***", home: "https://example.com/" }],
    },
  };
  assert.deepEqual((await h.call("GET", "/apps/db")).json.env, expected);
  assert.deepEqual((await h.call("GET", "/state/desired")).json.apps.db.env, expected);
  assert.deepEqual((await h.call("GET", "/state/current")).json.apps.db.env, expected);
  assert.deepEqual((await h.agent.getAppStatus("db"))?.env, expected, "the library's view too");
});

test("one app's env nested deeper than the stack does not break the API: its value is cut, every other answer is whole", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db(), "apps/deep/app.yaml": yamlSpec("deep", "1.0.0") });
  await h.agent.start();
  // As a custom runtime (or a spec from an older state.json) could report it: 200,000 levels.
  let deep: Record<string, unknown> = {};
  for (let i = 0; i < 200_000; i++) deep = i % 2 ? { a: deep } : { a: [deep] };
  h.runtime.apps.get("deep")!.env = { deep, port: 1 };
  await h.agent.reconcile(); // status reads the runtime's state at each tick
  for (const path of ["/status", "/apps", "/apps/db", "/apps/deep", "/state/current", "/state/desired", "/metrics"]) {
    assert.equal((await h.call("GET", path)).status, 200, path);
  }
  assert.equal((await h.call("GET", "/apps/db")).json.status, "running");
  const shown = (await h.call("GET", "/apps/deep")).json;
  assert.equal(shown.env.port, 1);
  let level: any = shown.env.deep;
  let depth = 0;
  while (typeof level === "object") ((level = Array.isArray(level) ? level[0] : level.a), depth++);
  assert.match(level, /^\[nested deeper than 1024 levels: not shown\]$/);
  assert.ok(depth > 1000, `shown to ${depth} levels`);
});

/** A GET over real HTTP with the given Host header (fetch may not set Host). */
function getWithHost(
  port: number,
  path: string,
  host: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: "127.0.0.1", port, path, method: "GET", headers: { ...headers, host } },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (text += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, text }));
        response.on("error", reject);
      },
    );
    request.setTimeout(15_000, () => request.destroy(new Error(`GET ${path} timed out`)));
    request.on("error", reject);
    request.end();
  });
}

for (const token of [undefined, TOKEN]) {
  test(`on loopback ${token ? "with" : "without"} a token, only requests addressed to a loopback host are answered (DNS rebinding)`, async (t) => {
    const repo = await gitopsRepo(t, { "apps/db/app.yaml": db() });
    const agent = createAgent({
      repoUrl: repo.bare,
      localPath: join(repo.root, "local"),
      runtime: new FakeRuntime(),
      reconcileInterval: "1h",
      listen: "127.0.0.1:0",
      token,
      webhookSecret: SECRET,
    });
    t.after(() => agent.stop());
    await agent.start();
    const port = Number(agent.address!.split(":").pop());
    for (const host of [
      "localhost",
      `localhost:${port}`,
      "LOCALHOST.",
      "app.localhost",
      `127.0.0.1:${port}`,
      "127.1.2.3",
      "[::1]",
      `[::1]:${port}`,
    ]) {
      assert.equal((await getWithHost(port, "/status", host)).status, 200, host);
    }
    for (const host of [
      "evil.example",
      `evil.example:${port}`,
      "127.0.0.1.evil.example",
      "localhost.evil.example",
      "0.0.0.0",
      "[::2]",
      "10.0.0.1",
      "127.0.0.256",
    ]) {
      for (const path of ["/status", "/apps", "/apps/db", "/state/desired", "/state/current", "/metrics", "/healthz"]) {
        const refused = await getWithHost(port, path, host);
        assert.equal(refused.status, 421, `${host} ${path}`);
        assert.match(
          JSON.parse(refused.text).error,
          /^refusing a request for host ".*": the control API listens on loopback and answers only requests to localhost, 127\.0\.0\.1 or \[::1\] \(a guard against DNS rebinding\)/,
        );
        assert.ok(!refused.text.includes("db"), "nothing about the apps");
      }
    }
    if (token) {
      assert.equal(
        (await getWithHost(port, "/status", "agent.example", { authorization: `Bearer ${TOKEN}` })).status,
        200,
        "a proxy forwarding its Host sends the token",
      );
      assert.equal(
        (await getWithHost(port, "/status", "agent.example", { authorization: "Bearer wrong-token-0000" })).status,
        421,
      );
    }
  });
}

test("the webhook is exempt from the Host check (its signature authenticates it); a handler not served on loopback checks no Host", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  const loopback = createHandler(h.agent, { listen: "127.0.0.1:9477" });
  const hook = JSON.stringify({ ref: "refs/heads/dev" });
  const signed = await loopback(
    new Request("http://gitops.example.com/webhook", {
      method: "POST",
      headers: { "x-hub-signature-256": signWebhook(hook, SECRET) },
      body: hook,
    }),
  );
  assert.equal(signed.status, 200);
  assert.equal((await loopback(new Request("http://gitops.example.com/status"))).status, 421);
  assert.equal(
    (await createHandler(h.agent, { listen: "0.0.0.0:9477" })(new Request("http://gitops.example.com/status"))).status,
    200,
  );
  assert.equal((await h.call("GET", "/status")).status, 200, "listen: off (mounted elsewhere) checks nothing");
});

test("a signed push webhook's `after` is fetched directly: the tick applies it without asking the remote with ls-remote", async (t) => {
  const logger = recordingLogger();
  const h = await harness(t, { "apps/db/app.yaml": db() }, { logger });
  await h.agent.start();
  const asked = () => logger.debugs.filter((line) => line.startsWith("ls-remote:")).length;
  const before = asked();
  assert.ok(before >= 1, "the first tick asked the remote");
  const after = await h.repo.commit({ "apps/db/app.yaml": db("2.0.0") });
  const stops = () => h.events.filter((e) => e.name === "bc_gitops:reconcile:stop").length;
  const ticks = stops();
  const hook = JSON.stringify({ ref: "refs/heads/main", after });
  const response = await h.call("POST", "/webhook", {
    headers: { "x-hub-signature-256": signWebhook(hook, SECRET), "content-type": "application/json" },
    body: hook,
  });
  assert.equal(response.status, 202);
  assert.equal(response.json.commit, after);
  for (let i = 0; i < 400 && stops() === ticks; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal((await h.agent.status()).last_commit, after);
  assert.equal((await h.agent.getAppStatus("db"))?.version, "2.0.0");
  assert.equal(asked(), before, "no ls-remote for the webhook's tick");
  assert.ok(logger.debugs.some((line) => line.startsWith(`fetched main at ${after}`)));
});

test("mutating calls from another origin are refused even with the token; the agent's own page is not", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  const ticks = () => h.events.filter((e) => e.name === "bc_gitops:reconcile:start").length;
  const before = ticks();
  for (const origin of ["https://evil.example", "http://agent.test.evil.example", "http://agent.test:8080", "null"]) {
    const refused = await h.call("POST", "/reconcile", { headers: { ...auth.headers, origin } });
    assert.equal(refused.status, 403, origin);
    assert.match(refused.json.error, /browser request from another origin/, origin);
  }
  assert.equal(ticks(), before, "no refused call ran a tick");
  const own = await h.call("POST", "/reconcile", { headers: { ...auth.headers, origin: "http://agent.test" } });
  assert.equal(own.status, 200, "the page this agent serves (same origin) may act with the token");
  const logs = await h.call("GET", "/apps/db/logs", { headers: { ...auth.headers, origin: "https://evil.example" } });
  assert.equal(logs.status, 403, "an app's log is not read from another origin either");
});

test("GET / and /ui answer the dashboard page with a strict content policy; app logs need the token", async (t) => {
  const h = await harness(t, { "apps/db/app.yaml": db() });
  await h.agent.start();
  for (const path of ["/", "/ui", "/ui/"]) {
    const page = await h.call("GET", path);
    assert.equal(page.status, 200, path);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'.*connect-src 'self'/);
    assert.equal(page.headers.get("x-frame-options"), "DENY");
    assert.match(page.text, /<title>bc-gitops · /);
  }
  assert.equal((await h.call("HEAD", "/")).status, 200);
  assert.equal((await h.call("GET", "/apps/db/logs")).status, 401);
  const logs = await h.call("GET", "/apps/db/logs?lines=5", auth);
  assert.equal(logs.status, 200);
  assert.deepEqual({ ...logs.json, lines: [] }, { app: "db", source: "memory", lines: [] });
  assert.equal((await h.call("GET", "/apps/nope/logs", auth)).status, 404);
  const bad = await h.call("GET", "/apps/db/logs?lines=many", auth);
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /lines: expected a number of lines/);
});
