import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { NotificationClassifier, notificationBody, type Notification } from "../src/_notify-message.ts";
import { createAgent } from "../src/agent.ts";
import { loadConfig } from "../src/config.ts";
import { Metrics } from "../src/metrics.ts";
import { NotifyTarget, Notifier, shownUrl } from "../src/notify.ts";
import { redact } from "../src/redact.ts";
import type { EventName, TelemetryEvent } from "../src/telemetry.ts";
import { verifyWebhook } from "../src/webhook.ts";
import { code, until } from "./helpers/e2e.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { recordingLogger } from "./helpers/logger.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

const SECRET = "notify-secret-0123";

interface Received {
  headers: IncomingMessage["headers"];
  body: string;
}

/**
 * A notification receiver on loopback. `answer` decides each response: a status, or `"hang"` (the
 * request is held until the test ends).
 */
async function receiver(t: TestContext, answer: (n: number) => number | "hang" = () => 200) {
  const received: Received[] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      const status = answer(received.length);
      if (status === "hang") held.push(res);
      else res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(async () => {
    for (const res of held) res.destroy();
    server.closeAllConnections?.();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/hooks/T0/B0/abcdefghijklmnop`, received, held };
}

const event = (name: EventName, metadata: TelemetryEvent["metadata"] = {}): TelemetryEvent => ({
  name,
  measurements: { duration_ms: 5 },
  metadata,
});
const upgraded = (app = "web") =>
  event("bc_gitops:upgrade:stop", {
    app,
    version: "2.0.0",
    from_version: "1.0.0",
    to_version: "2.0.0",
    commit: "c".repeat(40),
  });

const target = (input: Record<string, unknown>): NotifyTarget => NotifyTarget.parse(input);

test("notify targets are validated with errors that name the field; events default and normalise", () => {
  const parsed = target({ url: "https://hooks.example.com/x" });
  assert.equal(parsed.format, "generic");
  assert.deepEqual(parsed.events, ["upgrade", "rollback", "remove", "failed", "recovered", "verify_rejected"]);
  assert.deepEqual(target({ url: "http://h/x", events: ["Verify rejected", "hot-reload"] }).events, [
    "verify_rejected",
    "hot_reload",
  ]);
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ url: "ftp://h/x" }, /url.*expected an http:\/\/ or https:\/\/ URL/],
    [{ url: "http://h/x", format: "teams" }, /format/],
    [{ url: "http://h/x", events: ["deployed"] }, /events\.0/],
    [{ url: "http://h/x", events: [] }, /at least one event/],
    [{ url: "http://h/x", secret: "short" }, /at least 8 characters/],
    [{ url: "http://h/x", format: "slack", secret: SECRET }, /secret signs generic notifications only/],
    [{ url: "http://h/x", channel: "#ops" }, /channel/],
  ];
  for (const [input, message] of refused) {
    const result = NotifyTarget.safeParse(input);
    assert.equal(result.success, false, JSON.stringify(input));
    const issue = result.error!.issues[0]!;
    assert.match(`${issue.path.join(".")}: ${issue.message}`, message, JSON.stringify(input));
  }
});

test("the config file's notify list is loaded and checked like every key", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, {
    "good.yaml": "repo_url: /tmp/r\nnotify:\n  - url: https://hooks.slack.com/services/T/B/x\n    format: slack\n",
    "bad.yaml": "repo_url: /tmp/r\nnotify:\n  - url: https://h/x\n    events: [upgrade, exploded]\n",
  });
  const config = await loadConfig({ file: join(dir, "good.yaml"), env: {} });
  assert.equal(config.notify[0]!.format, "slack");
  await assert.rejects(loadConfig({ file: join(dir, "bad.yaml"), env: {} }), /bad\.yaml: notify\.0\.events\.1: /);
  const fromEnv = await loadConfig({
    env: { BC_GITOPS_REPO_URL: "/tmp/r", BC_GITOPS_NOTIFY: '[{"url":"http://127.0.0.1:1/h","events":["deploy"]}]' },
  });
  assert.deepEqual(fromEnv.notify[0]!.events, ["deploy"]);
});

test("events become notifications: each failure once until its subject recovers, rollbacks and rejected commits named", () => {
  const classifier = new NotificationClassifier("host-1", () => Date.UTC(2026, 0, 1));
  const kinds = (e: TelemetryEvent) => classifier.classify(e).map((n) => `${n.kind}: ${n.summary}`);
  const fetchError = event("bc_gitops:reconcile:error", { error: "cannot fetch https://u:pw123456@git/r" });
  const cases: [TelemetryEvent, string[]][] = [
    [event("bc_gitops:deploy:stop", { app: "db", version: "1.0.0" }), ["deploy: db 1.0.0 deployed on host-1"]],
    [event("bc_gitops:deploy:start", { app: "db" }), []],
    [upgraded(), ["upgrade: web upgraded 1.0.0 -> 2.0.0 on host-1"]],
    [fetchError, ["failed: repository failed on host-1: cannot fetch https://***@git/r"]],
    [fetchError, []],
    [event("bc_gitops:reconcile:stop", { status: "error" }), []],
    [event("bc_gitops:reconcile:stop", { status: "synced" }), ["recovered: repository recovered on host-1"]],
    [event("bc_gitops:reconcile:stop", { status: "synced" }), []],
    [
      event("bc_gitops:upgrade:error", {
        app: "web",
        from_version: "1.0.0",
        to_version: "3.0.0",
        error: "it crashed; rolled back to 1.0.0",
        rolled_back_to: "1.0.0",
      }),
      ["rollback: web upgrade 1.0.0 -> 3.0.0 rolled back to 1.0.0 on host-1: it crashed; rolled back to 1.0.0"],
    ],
    [
      event("bc_gitops:restart:error", { app: "api", error: "exit 1" }),
      ["failed: api restart failed on host-1: exit 1"],
    ],
    [event("bc_gitops:restart:error", { app: "api", error: "exit 1" }), []],
    [
      event("bc_gitops:restart:error", { app: "api", error: "exit 2" }),
      ["failed: api restart failed on host-1: exit 2"],
    ],
    [
      event("bc_gitops:restart:stop", { app: "api" }),
      ["restart: api restarted on host-1", "recovered: api recovered on host-1"],
    ],
    [
      event("bc_gitops:health:change", { app: "db", from: "healthy", to: "unhealthy" }),
      ["failed: db is unhealthy on host-1"],
    ],
    [
      event("bc_gitops:health:change", { app: "db", from: "unhealthy", to: "healthy" }),
      ["recovered: db recovered on host-1"],
    ],
    [event("bc_gitops:health:change", { app: "db", from: "unknown", to: "healthy" }), []],
    [event("bc_gitops:hot_reload:stop", { app: "web", modules: [] }), []],
    [
      event("bc_gitops:hot_reload:stop", { app: "web", modules: ["a.js", "b.js"] }),
      ["hot_reload: web hot-reloaded (2 modules) on host-1"],
    ],
    [
      event("bc_gitops:reconcile:error", { commit: "d".repeat(40), error: "not signed", verified: false }),
      ["verify_rejected: commit dddddddddddd rejected on host-1: not signed"],
    ],
    [event("bc_gitops:reconcile:error", { commit: "d".repeat(40), error: "not signed", verified: false }), []],
    [event("bc_gitops:remove:stop", { app: "web" }), ["remove: web removed from host-1"]],
    [event("bc_gitops:health:check", { app: "db" }), []],
  ];
  for (const [input, expected] of cases) assert.deepEqual(kinds(input), expected, input.name);
});

test("chat formats: Slack text escaped as Slack wants, Discord content that can ping nobody", () => {
  const [n] = new NotificationClassifier("h").classify(
    event("bc_gitops:deploy:error", { app: "web", error: "<@everyone> a & b > c" }),
  ) as [Notification];
  assert.deepEqual(JSON.parse(notificationBody(n, "slack")), {
    text: "✖ bc-gitops: web deploy failed on h: &lt;@everyone&gt; a &amp; b &gt; c",
  });
  assert.deepEqual(JSON.parse(notificationBody(n, "discord")), {
    content: "✖ bc-gitops: web deploy failed on h: <@everyone> a & b > c",
    username: "bc-gitops",
    allowed_mentions: { parse: [] },
  });
  assert.equal(JSON.parse(notificationBody(n, "generic")).kind, "failed");
});

test("a generic notification is JSON signed with HMAC-SHA256 exactly as bc-gitops's own webhooks verify it", async (t) => {
  const hook = await receiver(t);
  const notifier = new Notifier({
    targets: [target({ url: hook.url, secret: SECRET, events: ["upgrade"] })],
    host: "host-1",
  });
  notifier.observe(event("bc_gitops:deploy:stop", { app: "db" })); // not asked for
  notifier.observe(upgraded());
  await until("the delivery", async () => (hook.received.length === 1 ? true : undefined));
  const [got] = hook.received as [Received];
  const signature = String(got.headers["x-bc-gitops-signature-256"]);
  assert.match(signature, /^sha256=[0-9a-f]{64}$/);
  // The same scheme as POST /webhook's generic senders (X-Signature-256): it verifies there.
  const verified = verifyWebhook(new Headers({ "x-signature-256": signature }), Buffer.from(got.body), SECRET);
  assert.equal(verified.ok, true);
  assert.equal(
    verifyWebhook(new Headers({ "x-signature-256": signature }), Buffer.from(`${got.body} `), SECRET).ok,
    false,
  );
  assert.equal(got.headers["content-type"], "application/json");
  assert.equal(got.headers["x-bc-gitops-event"], "upgrade");
  assert.match(String(got.headers["x-bc-gitops-delivery"]), /^[0-9a-f-]{36}$/);
  const body = JSON.parse(got.body) as Notification;
  assert.equal(body.kind, "upgrade");
  assert.equal(body.host, "host-1");
  assert.equal(body.app, "web");
  assert.equal(body.to_version, "2.0.0");
  assert.equal(body.event.name, "bc_gitops:upgrade:stop");
  await notifier.close();
  assert.deepEqual(notifier.stats()[0]!.sent, 1);
});

test("a failed delivery is retried with backoff until it gets through, under one delivery id", async (t) => {
  const hook = await receiver(t, (n) => (n <= 2 ? 503 : 200));
  const notifier = new Notifier({ targets: [target({ url: hook.url })], host: "h", retryDelayMs: 20 });
  notifier.observe(upgraded());
  await until("the third attempt", async () => (notifier.stats()[0]!.sent === 1 ? true : undefined));
  assert.equal(hook.received.length, 3);
  assert.equal(new Set(hook.received.map((r) => r.headers["x-bc-gitops-delivery"])).size, 1);
  const rejected = await receiver(t, () => 400);
  const once = new Notifier({ targets: [target({ url: rejected.url })], host: "h", retryDelayMs: 20 });
  once.observe(upgraded());
  await until("the refusal", async () => (once.stats()[0]!.dropped.rejected === 1 ? true : undefined));
  await once.close();
  assert.equal(rejected.received.length, 1, "a 4xx is not retried");
  await notifier.close();
});

test("a receiver that hangs costs the agent nothing: ticks go on, the notification is given up at its deadline and the drop logged once", async (t) => {
  const hook = await receiver(t, () => "hang");
  const logger = recordingLogger();
  const notifier = new Notifier({
    targets: [target({ url: hook.url })],
    host: "h",
    logger,
    attemptTimeoutMs: 100,
    retryDelayMs: 20,
    deadlineMs: 400,
  });
  notifier.observe(upgraded("a"));
  notifier.observe(upgraded("b"));
  await until("both given up", async () => (notifier.stats()[0]!.dropped.deadline === 2 ? true : undefined));
  assert.ok(hook.received.length >= 3, "each was tried more than once");
  assert.equal(logger.warnings.length, 1, logger.warnings.join("\n"));
  assert.match(
    logger.warnings[0]!,
    /^notification to http:\/\/127\.0\.0\.1:\d+\/\*\*\* dropped \(deadline\): no answer within 100 ms/,
  );
  assert.doesNotMatch(logger.warnings[0]!, /hooks\/T0/, "the URL's path (its secret) is not logged");
  await notifier.close();
});

test("a full queue drops its oldest waiting notification, counts every drop in /metrics, and logs once", async (t) => {
  const hook = await receiver(t, () => "hang");
  const logger = recordingLogger();
  const notifier = new Notifier({ targets: [target({ url: hook.url })], host: "h", logger, queueSize: 2 });
  for (const app of ["a", "b", "c", "d", "e"]) notifier.observe(upgraded(app));
  const stats = notifier.stats()[0]!;
  assert.equal(stats.queued, 2);
  assert.equal(stats.dropped.overflow, 3);
  assert.equal(logger.warnings.length, 1);
  assert.match(logger.warnings[0]!, /dropped \(overflow\): the queue of 2 is full/);
  const shown = shownUrl(hook.url);
  const text = new Metrics().render({
    status: {
      status: "synced",
      last_commit: null,
      app_count: 0,
      healthy_count: 0,
      last_reconcile: { at: null, duration_ms: null, error: null },
      errors: [],
    },
    apps: {},
    notifications: notifier.stats(),
  });
  assert.match(
    text,
    new RegExp(
      `^bc_gitops_notifications_dropped_total\\{target="${shown.replace(/[*/.]/g, "\\$&")}",reason="overflow"\\} 3$`,
      "m",
    ),
  );
  assert.match(text, /^bc_gitops_notifications_queued\{target="http:\/\/127\.0\.0\.1:\d+\/\*\*\*"\} 2$/m);
  assert.doesNotMatch(text, /hooks\/T0/);
  await notifier.close(50);
  assert.equal(notifier.stats()[0]!.dropped.shutdown, 2, "what was left when the agent stopped");
  // The URL is a registered secret: wherever it shows up in text, it is hidden.
  assert.equal(redact(`posting to ${hook.url} failed`), "posting to *** failed");
});

test("an agent notifies its upgrade and its rollback, signed, while its ticks never wait for the receiver", async (t) => {
  const hook = await receiver(t);
  const slow = await receiver(t, () => "hang");
  const spec = (version: string, env: string) =>
    [`name: web`, `version: "${version}"`, "source: { type: path, path: code/web }", `env: { port: 0${env} }`].join(
      "\n",
    ) + "\n";
  const repo = await gitopsRepo(t, { "apps/web/app.yaml": spec("1.0.0", ""), ...(await code("rt-server", "web")) });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    listen: "off",
    reconcileInterval: "1h",
    notify: [
      { url: hook.url, secret: SECRET },
      { url: slow.url, format: "discord", events: ["deploy", "upgrade", "rollback"] },
    ],
  });
  t.after(() => agent.stop());
  await agent.start();
  await repo.commit({ "apps/web/app.yaml": spec("2.0.0", "") });
  const upgrade = await agent.reconcile();
  assert.deepEqual(
    upgrade.actions.map((a) => `${a.type} ${a.outcome}`),
    ["upgrade ok"],
  );
  await repo.commit({ "apps/web/app.yaml": spec("3.0.0", ", fail_start: true") });
  const rollback = await agent.reconcile();
  assert.deepEqual(
    rollback.actions.map((a) => `${a.type} ${a.outcome}`),
    ["upgrade failed"],
  );
  // The hanging receiver holds its first request all along: the ticks above did not wait for it.
  assert.equal(slow.received.length, 1);
  assert.equal(slow.held.length, 1);
  const kinds = await until("both notifications", async () => {
    const got = hook.received.map((r) => JSON.parse(r.body) as Notification);
    return got.length >= 2 ? got : undefined;
  });
  assert.deepEqual(
    kinds.map((n) => n.kind),
    ["upgrade", "rollback"],
  );
  assert.match(kinds[1]!.summary, /^web upgrade 2\.0\.0 -> 3\.0\.0 rolled back to 2\.0\.0 on /);
  for (const got of hook.received) {
    const signature = String(got.headers["x-bc-gitops-signature-256"]);
    assert.equal(verifyWebhook(new Headers({ "x-signature-256": signature }), Buffer.from(got.body), SECRET).ok, true);
  }
  assert.equal(agent.notificationStats()[1]!.queued >= 1, true, "the hanging target still holds its queue");
});
