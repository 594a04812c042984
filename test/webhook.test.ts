import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent, type AgentOptions } from "../src/agent.ts";
import { createHandler } from "../src/server.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { constantTimeEqual, parseWebhook, pushTargets, signWebhook, verifyWebhook } from "../src/webhook.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec } from "./helpers/gitops-repo.ts";

const SECRET = "webhook-secret-0123";
const enc = (s: string) => new TextEncoder().encode(s);
const hmac = (body: string, secret = SECRET) => createHmac("sha256", secret).update(body).digest("hex");
const FORM_WITHOUT_PAYLOAD =
  "a form-encoded webhook (Content-Type: application/x-www-form-urlencoded) must carry its JSON in the payload= field; send a raw JSON body as application/json";
const push = (ref: string) => JSON.stringify({ ref, after: "a".repeat(40), repository: { full_name: "acme/gitops" } });

/** Signed request headers per provider, for `body` (signed with `secret`). */
const providers: Record<string, (body: string, secret?: string) => Record<string, string>> = {
  github: (body, secret) => ({ "x-github-event": "push", "x-hub-signature-256": `sha256=${hmac(body, secret)}` }),
  gitlab: (_, secret = SECRET) => ({ "x-gitlab-event": "Push Hook", "x-gitlab-token": secret }),
  gitea: (body, secret) => ({ "x-gitea-event": "push", "x-hub-signature-256": `sha256=${hmac(body, secret)}` }),
  forgejo: (body, secret) => ({ "x-forgejo-event": "push", "x-forgejo-signature": hmac(body, secret) }),
  generic: (body, secret) => ({ "x-signature-256": `sha256=${hmac(body, secret)}` }),
};

test("signatures are HMAC-SHA256 of the raw bytes, checked per provider header", () => {
  const body = push("refs/heads/main");
  assert.equal(signWebhook(body, SECRET), `sha256=${hmac(body)}`);
  for (const [name, headers] of Object.entries(providers)) {
    const valid = verifyWebhook(new Headers(headers(body)), enc(body), SECRET);
    assert.equal(valid.ok, true, `${name}: valid`);
    const wrongSecret = verifyWebhook(new Headers(headers(body, "another-secret-99")), enc(body), SECRET);
    assert.equal(wrongSecret.ok, false, `${name}: signed with another secret`);
    if (name !== "gitlab") {
      const edited = verifyWebhook(new Headers(headers(body)), enc(body.replace("main", "mainx")), SECRET);
      assert.equal(edited.ok, false, `${name}: edited body`);
    }
  }
  const missing = verifyWebhook(new Headers({ "x-github-event": "push" }), enc(body), SECRET);
  assert.deepEqual(missing.ok, false);
  assert.match(!missing.ok ? missing.reason : "", /missing signature/);
  assert.equal(
    verifyWebhook(new Headers({ "x-hub-signature-256": "sha256=" }), enc(body), SECRET).ok,
    false,
    "an empty signature",
  );
  assert.equal(
    verifyWebhook(new Headers({ "x-hub-signature-256": `SHA256=${hmac(body).toUpperCase()}` }), enc(body), SECRET).ok,
    true,
    "hex case does not matter",
  );
});

test("constant-time comparison is still a comparison", () => {
  const cases: [string, string, boolean][] = [
    ["secret-value", "secret-value", true],
    ["secret-value", "secret-valuf", false],
    ["secret-value", "secret-value-longer", false],
    ["", "", true],
    ["", "x", false],
  ];
  for (const [a, b, expected] of cases) assert.equal(constantTimeEqual(a, b), expected, `${a} vs ${b}`);
});

test("webhook events parse into ping, push (ref and commit), ignored and invalid", () => {
  const cases: [Record<string, string>, string, Record<string, unknown>][] = [
    [{ "x-github-event": "ping" }, "{}", { kind: "ping", provider: "github" }],
    [
      { "x-github-event": "push" },
      push("refs/heads/main"),
      { kind: "push", provider: "github", ref: "refs/heads/main", commit: "a".repeat(40) },
    ],
    [
      { "x-github-event": "issues" },
      "{}",
      { kind: "ignored", provider: "github", reason: '"issues" events do not trigger a reconcile' },
    ],
    [
      { "x-gitlab-event": "Push Hook" },
      JSON.stringify({ ref: "refs/heads/main", checkout_sha: "b".repeat(40) }),
      { kind: "push", provider: "gitlab", ref: "refs/heads/main", commit: "b".repeat(40) },
    ],
    [
      { "x-gitlab-event": "Tag Push Hook" },
      "{}",
      { kind: "ignored", provider: "gitlab", reason: '"Tag Push Hook" events do not trigger a reconcile' },
    ],
    [
      { "x-gitlab-event": "System Hook" },
      JSON.stringify({ event_name: "push", ref: "refs/heads/dev" }),
      { kind: "push", provider: "gitlab", ref: "refs/heads/dev" },
    ],
    [
      { "x-gitea-event": "push" },
      push("refs/heads/dev"),
      { kind: "push", provider: "gitea", ref: "refs/heads/dev", commit: "a".repeat(40) },
    ],
    [{}, "", { kind: "push", provider: "generic" }],
    [{}, JSON.stringify({ ref: "main" }), { kind: "push", provider: "generic", ref: "main" }],
    [
      { "x-github-event": "push", "content-type": "application/x-www-form-urlencoded" },
      `payload=${encodeURIComponent(push("refs/heads/main"))}`,
      { kind: "push", provider: "github", ref: "refs/heads/main", commit: "a".repeat(40) },
    ],
    [
      { "x-github-event": "push" },
      "{not json",
      { kind: "invalid", provider: "github", reason: "the body is not a JSON push payload" },
    ],
    [
      { "x-github-event": "push", "content-type": "application/x-www-form-urlencoded" },
      push("refs/heads/main"),
      { kind: "invalid", provider: "github", reason: FORM_WITHOUT_PAYLOAD },
    ],
    [
      { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
      "",
      { kind: "invalid", provider: "generic", reason: FORM_WITHOUT_PAYLOAD },
    ],
    [
      { "content-type": "application/x-www-form-urlencoded" },
      "payload=",
      { kind: "invalid", provider: "generic", reason: FORM_WITHOUT_PAYLOAD },
    ],
    [{}, "[1]", { kind: "invalid", provider: "generic", reason: "the body is not a JSON object" }],
  ];
  for (const [headers, body, expected] of cases)
    assert.deepEqual(parseWebhook(new Headers(headers), enc(body)), expected, JSON.stringify([headers, body]));
});

test("only pushes to the tracked branch (or naming no ref) target it", () => {
  const cases: [string | undefined, boolean][] = [
    ["refs/heads/main", true],
    ["main", true],
    [undefined, true],
    ["refs/heads/main-2", false],
    ["refs/heads/dev", false],
    ["refs/tags/main", false],
    ["refs/heads/feature/main", false],
  ];
  for (const [ref, expected] of cases)
    assert.equal(pushTargets(ref === undefined ? {} : { ref }, "main"), expected, String(ref));
});

async function harness(t: TestContext, options: Partial<AgentOptions> = {}) {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": yamlSpec("db", "1.0.0") });
  const runtime = new FakeRuntime();
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "off",
    webhookSecret: SECRET,
    ...options,
  });
  t.after(() => agent.stop());
  const events: TelemetryEvent[] = [];
  agent.on("*", (e) => events.push(e));
  const handler = createHandler(agent);
  await agent.start();
  const ticks = () => events.filter((e) => e.name === "bc_gitops:reconcile:start").length;
  const post = async (headers: Record<string, string>, body: string) => {
    const response = await handler(
      new Request("http://agent.test/webhook", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
      }),
    );
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  return { repo, runtime, agent, events, ticks, post };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const provider of Object.keys(providers)) {
  test(`a ${provider} push to the tracked branch answers 202 at once and triggers one tick; bad, missing or replayed signatures trigger nothing`, async (t) => {
    const h = await harness(t);
    const sign = providers[provider]!;
    const body = push("refs/heads/main");
    const before = h.ticks();

    const invalid = await h.post(sign(body, "not-the-secret-1"), body);
    assert.equal(invalid.status, 401);
    assert.match(String(invalid.body.error), /does not match/);
    const unsigned = await h.post(provider === "gitlab" ? { "x-gitlab-event": "Push Hook" } : {}, body);
    assert.equal(unsigned.status, 401);
    assert.match(String(unsigned.body.error), /missing signature/);
    if (provider !== "gitlab") {
      // A captured delivery for another branch, replayed with its branch edited to ours.
      const original = push("refs/heads/dev");
      const replayed = await h.post(sign(original), original.replace("refs/heads/dev", "refs/heads/main"));
      assert.equal(replayed.status, 401);
    }
    const elsewhere = await h.post(sign(push("refs/heads/dev")), push("refs/heads/dev"));
    assert.equal(elsewhere.status, 200);
    assert.equal(elsewhere.body.triggered, false);
    assert.match(String(elsewhere.body.reason), /push to refs\/heads\/dev; tracking refs\/heads\/main/);
    assert.equal(h.ticks(), before, "nothing was triggered");

    // The answer does not wait for the tick: the runtime holds it until after the 202.
    await h.repo.commit({ "apps/db/app.yaml": yamlSpec("db", "1.1.0") });
    let release!: () => void;
    h.runtime.gate = new Promise((r) => (release = r));
    const accepted = await h.post(sign(body), body);
    assert.equal(accepted.status, 202);
    assert.deepEqual(accepted.body, {
      triggered: true,
      provider: provider === "forgejo" ? "gitea" : provider,
      ref: "refs/heads/main",
      commit: "a".repeat(40),
    });
    assert.equal(
      h.runtime.calls.includes("upgrade db 1.1.0 from 1.0.0"),
      false,
      "answered before the tick applied anything",
    );
    release();
    h.runtime.gate = undefined;
    await until(
      () =>
        h.events.some(
          (e) => e.name === "bc_gitops:reconcile:stop" && h.runtime.calls.includes("upgrade db 1.1.0 from 1.0.0"),
        ),
      "the triggered tick",
    );
    assert.equal(h.ticks(), before + 1, "exactly one tick");
  });
}

test("a GitHub ping answers pong without a tick; other events and tag pushes are acknowledged but ignored", async (t) => {
  const h = await harness(t);
  const before = h.ticks();
  const ping = await h.post({ "x-github-event": "ping", "x-hub-signature-256": signWebhook("{}", SECRET) }, "{}");
  assert.deepEqual([ping.status, ping.body], [200, { pong: true, provider: "github" }]);
  const issue = await h.post({ "x-github-event": "issues", "x-hub-signature-256": signWebhook("{}", SECRET) }, "{}");
  assert.deepEqual([issue.status, issue.body.triggered], [200, false]);
  const tag = push("refs/tags/v1.0.0");
  const tagged = await h.post({ "x-github-event": "push", "x-hub-signature-256": signWebhook(tag, SECRET) }, tag);
  assert.deepEqual([tagged.status, tagged.body.triggered], [200, false]);
  const unsignedPing = await h.post({ "x-github-event": "ping" }, "{}");
  assert.equal(unsignedPing.status, 401, "even a ping must be signed");
  const garbage = "{not json";
  const invalid = await h.post(
    { "x-github-event": "push", "x-hub-signature-256": signWebhook(garbage, SECRET) },
    garbage,
  );
  assert.equal(invalid.status, 400);
  assert.equal(h.ticks(), before);
});

test("without webhook_secret every webhook is refused with 403, signed or not", async (t) => {
  const h = await harness(t, { webhookSecret: undefined });
  const before = h.ticks();
  const body = push("refs/heads/main");
  for (const headers of [{}, providers.github!(body), providers.gitlab!(body)]) {
    const response = await h.post(headers, body);
    assert.equal(response.status, 403);
    assert.equal(response.body.error, "webhook_secret is not configured: unsigned webhooks are never accepted");
  }
  assert.equal(h.ticks(), before);
});

test("a webhook body over the size limit is refused with 413 before it is verified", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": yamlSpec("db", "1.0.0") });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime: new FakeRuntime(),
    listen: "off",
    webhookSecret: SECRET,
  });
  t.after(() => agent.stop());
  const handler = createHandler(agent, { maxBodyBytes: 1024 });
  const body = JSON.stringify({ ref: "refs/heads/main", padding: "x".repeat(2000) });
  const response = await handler(
    new Request("http://agent.test/webhook", {
      method: "POST",
      headers: { "x-signature-256": signWebhook(body, SECRET) },
      body,
    }),
  );
  assert.equal(response.status, 413);
  assert.match(((await response.json()) as { error: string }).error, /exceeds 1024 bytes/);
  // Streamed without a Content-Length, the limit still holds.
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(enc(body));
      controller.close();
    },
  });
  const streamed = await handler(
    new Request("http://agent.test/webhook", { method: "POST", body: stream, duplex: "half" } as RequestInit),
  );
  assert.equal(streamed.status, 413);
  await streamed.body?.cancel();
});

test("a signed form-encoded webhook whose body is raw JSON, not payload=, is refused with 400 and triggers nothing", async (t) => {
  const h = await harness(t);
  const before = h.ticks();
  for (const body of [JSON.stringify({ after: "a".repeat(40) }), push("refs/heads/main"), ""]) {
    const response = await h.post(
      { "content-type": "application/x-www-form-urlencoded", "x-signature-256": signWebhook(body, SECRET) },
      body,
    );
    assert.deepEqual([response.status, response.body], [400, { error: FORM_WITHOUT_PAYLOAD }], body);
  }
  assert.equal(h.ticks(), before);
});

test("GitHub's default form content type (payload=<json>), signed over the raw form bytes, triggers a tick over real HTTP", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": yamlSpec("db", "1.0.0") });
  const runtime = new FakeRuntime();
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime,
    reconcileInterval: "1h",
    listen: "127.0.0.1:0",
    webhookSecret: SECRET,
  });
  t.after(() => agent.stop());
  await agent.start();
  await repo.commit({ "apps/db/app.yaml": yamlSpec("db", "1.1.0") });
  // As GitHub sends it: pretty JSON, form-encoded (spaces as "+"), then signed.
  const json = JSON.stringify(
    { ref: "refs/heads/main", after: "a".repeat(40), head_commit: { message: "bump db & more = 100%" } },
    null,
    2,
  );
  const body = new URLSearchParams({ payload: json }).toString();
  assert.match(body, /^payload=%7B%0A\+\+%22ref%22/);
  const response = await fetch(`http://${agent.address}/webhook`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-github-event": "push",
      "x-hub-signature-256": `sha256=${hmac(body)}`,
    },
    body,
  });
  assert.deepEqual(
    [response.status, await response.json()],
    [202, { triggered: true, provider: "github", ref: "refs/heads/main", commit: "a".repeat(40) }],
  );
  await until(() => runtime.calls.includes("upgrade db 1.1.0 from 1.0.0"), "the triggered tick");
});
