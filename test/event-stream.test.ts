import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent } from "../src/agent.ts";
import { followEvents, followStream, type StreamMessage } from "../src/client.ts";
import { EventStream, type StreamEvent } from "../src/event-stream.ts";
import { createHandler } from "../src/server.ts";
import type { EventName, TelemetryEvent } from "../src/telemetry.ts";
import { spawnProcess } from "../src/exec.ts";
import { cliCommand, runCli } from "./helpers/cli.ts";
import { until } from "./helpers/e2e.ts";
import { FakeRuntime } from "./helpers/fake-runtime.ts";
import { gitopsRepo, yamlSpec } from "./helpers/gitops-repo.ts";

const event = (name: EventName, metadata: TelemetryEvent["metadata"] = {}): TelemetryEvent => ({
  name,
  measurements: {},
  metadata,
});

/** A stream holding events 1..n (`bc_gitops:health:check` of app `a<id>`). */
function streamOf(n: number, capacity: number): EventStream {
  const stream = new EventStream({ host: "h1", capacity, now: () => Date.UTC(2026, 0, 1) });
  for (let i = 1; i <= n; i++) stream.observe(event("bc_gitops:health:check", { app: `a${i}` }));
  return stream;
}

test("the history resumes after a Last-Event-ID, and says what it can no longer give", () => {
  const ids = (events: StreamEvent[]) => events.map((e) => e.id);
  const cases: [
    what: string,
    n: number,
    capacity: number,
    last: number | undefined,
    backlog: number | undefined,
    ids: number[],
    missed?: number | null,
  ][] = [
    ["a new client gets everything kept", 5, 10, undefined, undefined, [1, 2, 3, 4, 5]],
    ["a new client asks for the newest two", 5, 10, undefined, 2, [4, 5]],
    ["a new client asks for none", 5, 10, undefined, 0, []],
    ["resume after 3", 5, 10, 3, undefined, [4, 5]],
    ["resume after the newest", 5, 10, 5, undefined, []],
    ["resume from the start", 5, 10, 0, undefined, [1, 2, 3, 4, 5]],
    ["the history kept 6..8 of 8: after 2, 3..5 are gone", 8, 3, 2, undefined, [6, 7, 8], 3],
    ["after 5, nothing is gone", 8, 3, 5, undefined, [6, 7, 8]],
    ["an id from before the agent restarted", 3, 10, 40, undefined, [1, 2, 3], null],
  ];
  for (const [what, n, capacity, last, backlog, expected, missed] of cases) {
    const resume = streamOf(n, capacity).since(last, backlog);
    assert.deepEqual(ids(resume.events), expected, what);
    assert.equal(resume.missed, missed, what);
  }
  const otherRun = streamOf(5, 10).since(3, undefined, true);
  assert.deepEqual(ids(otherRun.events), [1, 2, 3, 4, 5], "an id of an earlier run: everything, from the start");
  assert.equal(otherRun.missed, null);
});

test("each recorded event carries its id, time, host, app, action, duration and redacted error", () => {
  const stream = new EventStream({ host: "web-1", now: () => Date.UTC(2026, 0, 2, 3, 4, 5) });
  stream.observe({
    name: "bc_gitops:upgrade:error",
    measurements: { duration_ms: 12.6 },
    metadata: {
      app: "web",
      from_version: "1.0.0",
      to_version: "2.0.0",
      error: "cannot fetch https://user:hunter2pass@git.example/r.git",
    },
  });
  const [recorded] = stream.since().events;
  assert.deepEqual(recorded, {
    id: 1,
    at: "2026-01-02T03:04:05.000Z",
    host: "web-1",
    name: "bc_gitops:upgrade:error",
    area: "upgrade",
    phase: "error",
    app: "web",
    action: "upgrade",
    duration_ms: 13,
    error: "cannot fetch https://***@git.example/r.git",
    measurements: { duration_ms: 12.6 },
    metadata: {
      app: "web",
      from_version: "1.0.0",
      to_version: "2.0.0",
      error: "cannot fetch https://***@git.example/r.git",
    },
  });
});

/** Reads the stream at `url`'s `/events` until `done` says so; returns the messages. */
async function read(
  url: string,
  done: (messages: StreamMessage[]) => boolean,
  options: { lastEventId?: string; query?: string } = {},
): Promise<StreamMessage[]> {
  const messages: StreamMessage[] = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 20_000);
  await followStream(
    { url },
    `/events${options.query ?? ""}`,
    (message) => {
      messages.push(message);
      if (done(messages)) stop.abort();
    },
    { signal: stop.signal, ...(options.lastEventId ? { lastEventId: options.lastEventId } : {}) },
  );
  clearTimeout(timer);
  return messages;
}

const names = (messages: StreamMessage[]) =>
  messages.filter((m) => m.event === "message").map((m) => (JSON.parse(m.data) as StreamEvent).name);

async function servedAgent(t: TestContext) {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": yamlSpec("db", "1.0.0") });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    runtime: new FakeRuntime(),
    reconcileInterval: "1h",
    listen: "127.0.0.1:0",
  });
  t.after(() => agent.stop());
  await agent.start();
  return { repo, agent, url: `http://${agent.address}` };
}

test("GET /events streams every event with an id; a client that reconnects with Last-Event-ID misses none and repeats none", async (t) => {
  const { repo, agent, url } = await servedAgent(t);
  // A new client gets the history: the first tick, deploy included.
  const first = await read(url, (m) => names(m).includes("bc_gitops:reconcile:stop"));
  assert.ok(names(first).includes("bc_gitops:deploy:stop"), names(first).join(" "));
  const idOf = (m: StreamMessage) => Number(m.id!.split(".")[1]);
  const ids = first.map(idOf);
  assert.match(first[0]!.id!, /^[0-9a-z]+\.1$/, "an id names the agent's run and the event");
  assert.deepEqual(
    ids,
    ids.map((_, i) => i + 1),
    "ids count up from 1",
  );
  const lastSeen = first.at(-1)!.id!;

  // While nobody listens, a commit is applied.
  await repo.commit({ "apps/web/app.yaml": yamlSpec("web", "2.0.0") });
  await agent.reconcile();

  const resumed = await read(url, (m) => names(m).includes("bc_gitops:reconcile:stop"), { lastEventId: lastSeen });
  assert.equal(idOf(resumed[0]!), idOf(first.at(-1)!) + 1, "resumes right after the last event seen");
  assert.ok(names(resumed).includes("bc_gitops:deploy:stop"));
  const deployed = resumed
    .map((m) => JSON.parse(m.data) as StreamEvent)
    .find((e) => e.name === "bc_gitops:deploy:stop");
  assert.equal(deployed?.app, "web");
  assert.equal(deployed?.action, "deploy");

  // Live: a client already connected sees the next tick as it happens.
  const live = read(url, (m) => names(m).filter((n) => n === "bc_gitops:reconcile:stop").length >= 1, {
    query: "?backlog=0",
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await agent.reconcile();
  assert.deepEqual(names(await live).slice(0, 1), ["bc_gitops:reconcile:start"]);
});

test("a client resuming from before what the history keeps is told how many events it missed", async (t) => {
  const { agent } = await servedAgent(t);
  const events = new EventStream({ host: "h", capacity: 3 });
  const handler = createHandler(agent, { events, listen: "off" });
  for (let i = 0; i < 6; i++) events.observe(event("bc_gitops:git:pull", { commit: `c${i}` }));
  const stop = new AbortController();
  const response = await handler(
    new Request("http://agent.test/events", { headers: { "last-event-id": "1" }, signal: stop.signal }),
  );
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = response.body!.getReader();
  let text = "";
  while (!/id: \w+\.6\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
  await reader.cancel();
  assert.match(text, /^retry: 2000\n\nevent: gap\ndata: \{"missed":2\}\n\nid: \w+\.4\ndata: \{"id":4,/);
  assert.match(text, /\n\nid: \w+\.5\ndata: .*\n\nid: \w+\.6\ndata: /s);
});

test("an open event stream ends when the agent stops, so stopping does not wait for clients", async (t) => {
  const { agent, url } = await servedAgent(t);
  const messages: StreamMessage[] = [];
  const open = followStream({ url }, "/events", (m) => messages.push(m));
  while (messages.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  await agent.stop();
  await open; // resolves: the server ended the stream
  assert.ok(messages.length > 0);
});

/** Runs `bc-gitops events <args>` in the background; its stdout so far. */
async function eventsCli(t: TestContext, args: string[]): Promise<() => string> {
  const [command, prefix] = cliCommand();
  const child = await spawnProcess(command, [...prefix, "events", ...args], {
    env: { ...(process.env as Record<string, string>), NO_COLOR: "1", FORCE_COLOR: "0" },
  });
  t.after(() => child.terminate(2000));
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => (out += chunk));
  child.stderr.resume();
  return () => out;
}

test("bc-gitops events prints the recent events, then follows new ones (readable lines, or JSON lines)", async (t) => {
  const { repo, agent, url } = await servedAgent(t);
  const readable = await eventsCli(t, ["-n", "3", "--url", url]);
  const json = await eventsCli(t, ["--json", "-n", "0", "--url", url]);
  // The last three events of the first tick, as lines: time, app, what, details.
  await until("the backlog", async () => (readable().split("\n").length > 3 ? true : undefined));
  const backlog = readable().trimEnd().split("\n");
  assert.match(backlog.at(-1)!, /^\S+Z {2}- {2}reconcile:stop {2}synced {2}commit [0-9a-f]{12} {2}\d+ ms$/);
  assert.match(backlog.join("\n"), /^\S+Z {2}db {2}deploy:stop {2}1\.0\.0 {2}commit [0-9a-f]{12} {2}\d+ ms$/m);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(json(), "", "--json -n 0: nothing from before");
  // Both follow the next tick as it happens.
  await repo.commit({ "apps/db/app.yaml": yamlSpec("db", "1.1.0") });
  await agent.reconcile();
  await until("the upgrade, live", async () =>
    /upgrade:stop {2}1\.0\.0 -> 1\.1\.0/.test(readable()) ? true : undefined,
  );
  const lines = await until("JSON lines of the tick", async () => {
    const parsed = json()
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as StreamEvent);
    return parsed.some((e) => e.name === "bc_gitops:reconcile:stop") ? parsed : undefined;
  });
  const upgrade = lines.find((e) => e.name === "bc_gitops:upgrade:stop");
  assert.equal(upgrade?.app, "db");
  assert.equal(upgrade?.metadata.to_version, "1.1.0");
  assert.ok(
    lines.every((e, i) => i === 0 || e.id === lines[i - 1]!.id + 1),
    "consecutive ids, none missed",
  );
});

test("bc-gitops events says so when no agent answers", async () => {
  const result = await runCli(["events", "--url", "http://127.0.0.1:9"]);
  assert.equal(result.exitCode, 1);
  assert.match(result.stderr, /cannot reach the agent at http:\/\/127\.0\.0\.1:9/);
});

test("following the events across an agent restart reconnects by itself and says the history began again", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": yamlSpec("db", "1.0.0") });
  const start = async (listen: string) => {
    const agent = createAgent({
      repoUrl: repo.bare,
      localPath: join(repo.root, "local"),
      runtime: new FakeRuntime(),
      reconcileInterval: "1h",
      listen,
    });
    t.after(() => agent.stop());
    await agent.start();
    return agent;
  };
  const first = await start("127.0.0.1:0");
  const address = first.address!;
  const seen: StreamEvent[] = [];
  const gaps: (number | null)[] = [];
  let reconnects = 0;
  const stop = new AbortController();
  t.after(() => stop.abort());
  const following = followEvents(
    { url: `http://${address}` },
    {
      backlog: 1000,
      onEvent: (data) => seen.push(JSON.parse(data) as StreamEvent),
      onGap: (missed) => gaps.push(missed),
      onReconnect: () => reconnects++,
      signal: stop.signal,
      retryMs: 100,
    },
  );
  await until("the first agent's tick", async () =>
    seen.some((e) => e.name === "bc_gitops:reconcile:stop") ? true : undefined,
  );
  const before = seen.length;
  await first.stop();
  await until("a reconnection attempt", async () => (reconnects > 0 ? true : undefined));
  const second = await start(address);
  await second.reconcile();
  await until("the second agent's events", async () =>
    seen.slice(before).filter((e) => e.name === "bc_gitops:reconcile:stop").length >= 2 ? true : undefined,
  );
  assert.deepEqual(gaps, [null], "told once that the history began again");
  assert.equal(seen[before]!.id, 1, "the second agent's events, from its first");
  stop.abort();
  await following;
});
