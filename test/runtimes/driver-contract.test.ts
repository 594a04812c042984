// The driver contract: the same cases, run against every driver (embedded, worker, process) and
// every kind of app each one runs, through the default runtime, with the fixture apps
// (test/fixtures/apps/rt-fetch, rt-server, proc-server), real HTTP and real child processes.
// What a driver promises (src/runtimes/driver.ts): a started instance serves and reports its
// port; an env change reaches it (in place or by a restart); a hot reload runs the new code, and
// where the driver can swap without a gap not one request fails; new code that does not start
// leaves the old code serving (hot reload) or running again (upgrade); a start that fails says
// why and leaves nothing behind; a stop ends everything the instance ran.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { GitopsError } from "../../src/errors.ts";
import { ProcessDriver } from "../../src/runtimes/process.ts";
import type { AppState } from "../../src/runtime.ts";
import { AppSpec } from "../../src/spec.ts";
import type { TelemetryEvent } from "../../src/telemetry.ts";
import { underLoad, until } from "../helpers/reload-apps.ts";
import { alive, runtimeHarness, type RuntimeHarness } from "../helpers/runtime-harness.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/apps/", import.meta.url));

/** One driver running one kind of app: what the cases need to know about it. */
interface Subject {
  label: string;
  isolation: "embedded" | "worker" | "process";
  /** The fixture app (under `code/`); its `message.js` holds the answer's `message`. */
  code: string;
  /** The fixture's own message, before a test rewrites message.js. */
  message: string;
  /** Env that makes its start fail, with the error that says so; none: a module that throws on import does. */
  failEnv?: Record<string, unknown>;
  failure: RegExp;
  /** A fetch app served by the agent's listener: requests in flight during a hot reload finish on the old code. */
  drains?: boolean;
  /** Spec fields that make a hot reload seamless (not one request fails); none: the driver does not promise that for this kind. */
  seamless?: Record<string, unknown>;
}

const SUBJECTS: Subject[] = [
  {
    label: "an embedded fetch app",
    isolation: "embedded",
    code: "rt-fetch",
    message: "rt-fetch says hello",
    failure: /broken on purpose/,
    seamless: {},
    drains: true,
  },
  {
    label: "an embedded lifecycle app",
    isolation: "embedded",
    code: "rt-server",
    message: "rt-server says hello",
    failEnv: { fail_start: true },
    failure: /rt-server \d\.0\.0 refuses to start/,
  },
  {
    label: "a worker fetch app",
    isolation: "worker",
    code: "rt-fetch",
    message: "rt-fetch says hello",
    failure: /broken on purpose/,
    seamless: {},
    drains: true,
  },
  {
    label: "a worker lifecycle app",
    isolation: "worker",
    code: "rt-server",
    message: "rt-server says hello",
    failEnv: { fail_start: true },
    failure: /rt-server \d\.0\.0 refuses to start/,
  },
  // A process app swaps without a gap when it reloads its code on a signal (it keeps its socket).
  {
    label: "a process app",
    isolation: "process",
    code: "proc-server",
    message: "proc-server says hello",
    failEnv: { exit_at_start: true },
    failure: /exited with code 2 during start: proc-server \d\.0\.0 refuses to start/,
    seamless: { reload_signal: "SIGHUP" },
  },
];

/** The runtime, and every state it reported, so the end of each test can check that nothing is left. */
interface Harness extends RuntimeHarness {
  seen: AppState[];
}

async function harness(t: TestContext): Promise<Harness> {
  const h = await runtimeHarness(t, {
    prefix: "bc-gitops-contract-",
    fixtures: FIXTURES,
    options: ({ local, logger }) => ({
      stopTimeoutMs: 3000,
      startWindowMs: 5000,
      drivers: { process: new ProcessDriver({ localPath: local, logger, restartDelayMs: 50, settleMs: 200 }) },
    }),
  });
  return { ...h, seen: [] };
}

function spec(
  s: Subject,
  version = "1.0.0",
  env: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): AppSpec {
  return AppSpec.parse({
    name: "app",
    version,
    isolation: s.isolation,
    source: { type: "path", path: `code/${s.code}` },
    env: { port: 0, ...env },
    health: { type: "http", path: "/health", interval: 60_000, timeout: 1000 },
    ...extra,
  });
}

async function current(h: Harness): Promise<AppState> {
  const state = (await h.runtime.getCurrentState()).app;
  assert.ok(state, "the runtime knows the app");
  h.seen.push(state);
  return state;
}

interface Answer {
  message: string;
  env: Record<string, unknown>;
}

async function get(port: unknown): Promise<Answer> {
  assert.equal(typeof port, "number", "the app reports its port");
  const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  return (await response.json()) as Answer;
}

async function writeMessage(h: Harness, s: Subject, body: string): Promise<void> {
  await writeFile(join(h.repo, "code", s.code, "message.js"), body);
}

/** Makes the next revision's start fail (and changes its code, so that a hot reload has something to load); resolves with the env to start it with. */
async function breakStart(h: Harness, s: Subject): Promise<Record<string, unknown>> {
  await writeMessage(
    h,
    s,
    s.failEnv
      ? 'export const MESSAGE = "new code";\n'
      : 'export const MESSAGE = "never";\nthrow new Error("broken on purpose");\n',
  );
  return s.failEnv ?? {};
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Stops everything, then checks that nothing the app ran is left: no port answers, no process runs, every Worker ended. */
async function nothingLeft(h: Harness): Promise<void> {
  await h.runtime.stopAll();
  for (const port of new Set(h.seen.map((s) => s.port).filter((p) => typeof p === "number"))) {
    await assert.rejects(
      fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) }),
      `port ${port} still answers`,
    );
  }
  for (const pid of new Set(h.seen.map((s) => s.pid).filter((p) => typeof p === "number"))) {
    assert.equal(await alive(pid as number), false, `pid ${pid} still runs`);
  }
  const revisions = (name: TelemetryEvent["name"]) =>
    h.events
      .filter((e) => e.name === name && e.metadata.isolation === "worker")
      .map((e) => String(e.metadata.revision))
      .sort();
  assert.deepEqual(
    revisions("bc_gitops:code:purge"),
    revisions("bc_gitops:code:load"),
    "every Worker that loaded a revision ended",
  );
}

for (const s of SUBJECTS) {
  test(`${s.label}: deploy starts it, it answers on the port its state reports, and remove ends it`, async (t) => {
    const h = await harness(t);
    const state = await h.runtime.deploy(spec(s));
    h.seen.push(state);
    assert.deepEqual(
      [state.status, state.health, state.isolation, state.version],
      ["running", "healthy", s.isolation, "1.0.0"],
    );
    assert.equal((await get(state.port)).message, s.message);
    await h.runtime.remove("app");
    assert.equal((await h.runtime.getCurrentState()).app, undefined);
    await assert.rejects(
      fetch(`http://127.0.0.1:${state.port}/`, { signal: AbortSignal.timeout(5000) }),
      "removed: its port refuses connections",
    );
    if (typeof state.pid === "number") assert.equal(await alive(state.pid), false);
    await nothingLeft(h);
  });

  test(`${s.label}: reconfigure gives it the new env, in place or by a restart`, async (t) => {
    const h = await harness(t);
    h.seen.push(await h.runtime.deploy(spec(s, "1.0.0", { greeting: "hello" })));
    const state = await h.runtime.reconfigure(spec(s, "1.0.0", { greeting: "hej" }));
    h.seen.push(state);
    assert.deepEqual([state.status, state.health], ["running", "healthy"]);
    assert.equal((await get(state.port)).env.greeting, "hej");
    await nothingLeft(h);
  });

  test(`${s.label}: a hot reload runs the new code${s.seamless ? ", and not one request fails meanwhile" : ""}`, async (t) => {
    const h = await harness(t);
    const reloadable = spec(s, "1.0.0", {}, s.seamless ?? {});
    const before = await h.runtime.deploy(reloadable);
    h.seen.push(before);
    const reload = async () => {
      await writeMessage(h, s, 'export const MESSAGE = "new code";\n');
      assert.deepEqual((await h.runtime.hotReload(reloadable)).modules, ["message.js"]);
      const after = await current(h);
      // A signalled process re-imports its code on its own time: wait for it.
      await until(
        "the new code to answer",
        async () => ((await get(after.port)).message === "new code" ? true : undefined),
        10_000,
      );
    };
    if (s.seamless) {
      const load = await underLoad(Number(before.port), reload, 2, 5000);
      assert.deepEqual(
        load.failures,
        [],
        `${load.failures.length} of ${load.ok + load.failures.length} requests failed`,
      );
      assert.ok(load.seen.has("new code"), [...load.seen].join(", "));
    } else {
      await reload();
    }
    const after = await current(h);
    assert.deepEqual([after.status, after.reloads], ["running", 1]);
    await nothingLeft(h);
  });

  if (s.drains) {
    test(`${s.label}: a request in flight during a hot reload finishes on the old code, while new requests get the new code`, async (t) => {
      const h = await harness(t);
      const before = await h.runtime.deploy(spec(s));
      h.seen.push(before);
      const slow = fetch(`http://127.0.0.1:${before.port}/slow`, { signal: AbortSignal.timeout(10_000) });
      await new Promise((resolve) => setTimeout(resolve, 100)); // let it reach the app
      await writeMessage(h, s, 'export const MESSAGE = "new code";\n');
      await h.runtime.hotReload(spec(s));
      assert.equal((await get(before.port)).message, "new code");
      const answer = await slow;
      assert.equal(answer.status, 200, "the old code was not stopped under the request");
      assert.deepEqual(await answer.json(), { message: s.message });
      await nothingLeft(h);
    });
  }

  if (s.drains) {
    test(`${s.label}: a hot reload cannot move it to another address, and it keeps serving the old code where it was`, async (t) => {
      const h = await harness(t);
      const before = await h.runtime.deploy(spec(s));
      h.seen.push(before);
      await writeMessage(h, s, 'export const MESSAGE = "new code";\n');
      await assert.rejects(h.runtime.hotReload(spec(s, "1.0.0", { port: await freePort() })), (error: unknown) => {
        assert.ok(error instanceof GitopsError);
        assert.match(
          error.message,
          /a hot reload cannot move a fetch app to another address; change env to reconfigure it/,
        );
        return true;
      });
      const after = await current(h);
      assert.deepEqual([after.status, after.port, after.reloads], ["running", before.port, 0]);
      assert.equal((await get(before.port)).message, s.message);
      await nothingLeft(h);
    });
  }

  test(`${s.label}: a hot reload whose new code does not start leaves the old code serving, with the error in its status`, async (t) => {
    const h = await harness(t);
    h.seen.push(await h.runtime.deploy(spec(s)));
    const env = await breakStart(h, s);
    await assert.rejects(h.runtime.hotReload(spec(s, "1.0.0", env)), (error: unknown) => {
      assert.ok(error instanceof GitopsError);
      assert.match(error.message, s.failure);
      return true;
    });
    const after = await current(h);
    assert.equal(after.status, "running");
    assert.match(after.last_error ?? "", s.failure);
    assert.equal((await get(after.port)).message, s.message);
    await nothingLeft(h);
  });

  test(`${s.label}: an upgrade whose new version does not start rolls back, and the old version answers again`, async (t) => {
    const h = await harness(t);
    h.seen.push(await h.runtime.deploy(spec(s)));
    const env = await breakStart(h, s);
    await assert.rejects(h.runtime.upgrade(spec(s, "2.0.0", env), "1.0.0"), (error: unknown) => {
      assert.ok(error instanceof GitopsError);
      assert.match(error.message, /^upgrade app 1\.0\.0 -> 2\.0\.0 failed: /);
      assert.match(error.message, s.failure);
      assert.match(error.message, /; rolled back to 1\.0\.0$/);
      return true;
    });
    const after = await current(h);
    assert.deepEqual([after.version, after.status, after.health], ["1.0.0", "running", "healthy"]);
    assert.equal((await get(after.port)).message, s.message);
    await nothingLeft(h);
  });

  test(`${s.label}: a deploy that does not start fails with the app's own error and leaves nothing running`, async (t) => {
    const h = await harness(t);
    const port = await freePort();
    const env = await breakStart(h, s);
    await assert.rejects(h.runtime.deploy(spec(s, "1.0.0", { ...env, port })), (error: unknown) => {
      assert.ok(error instanceof GitopsError);
      assert.match(error.message, s.failure);
      return true;
    });
    assert.equal((await h.runtime.getCurrentState()).app, undefined, "no app is left in the runtime");
    // The port it was given is free again: bind it.
    await new Promise<void>((resolve, reject) => {
      const server = createServer()
        .once("error", reject)
        .listen(port, "127.0.0.1", () => server.close(() => resolve()));
    });
    h.seen.push({ port } as unknown as AppState);
    await nothingLeft(h);
  });
}
