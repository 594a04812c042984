// The process driver through the default runtime, with real child processes (fixture apps
// test/fixtures/apps/proc-*), a real workspace and real ports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import type { DefaultRuntimeOptions } from "../../src/runtimes/default.ts";
import { procStat } from "../../src/_proc.ts";
import { ProcessDriver, type ProcessDriverOptions } from "../../src/runtimes/process.ts";
import type { AppState } from "../../src/runtime.ts";
import { AppSpec } from "../../src/spec.ts";
import { listenOn8080 } from "../helpers/listen.ts";
import { alive, runtimeHarness, type RuntimeHarness } from "../helpers/runtime-harness.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/apps/", import.meta.url));

type Harness = RuntimeHarness;

function harness(
  t: TestContext,
  policy: Partial<ProcessDriverOptions> = {},
  options: Partial<DefaultRuntimeOptions> = {},
): Promise<Harness> {
  return runtimeHarness(t, {
    prefix: "bc-gitops-proc-",
    fixtures: FIXTURES,
    options: ({ local, logger }) => ({
      stopTimeoutMs: 3000,
      startWindowMs: 5000,
      drivers: {
        process: new ProcessDriver({ localPath: local, logger, restartDelayMs: 50, settleMs: 200, ...policy }),
      },
      ...options,
    }),
  });
}

/** proc-server as app "web", a process app checked over HTTP. */
function web(version: string, env: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): AppSpec {
  return AppSpec.parse({
    name: "web",
    version,
    isolation: "process",
    source: { type: "path", path: "code/proc-server" },
    env: { port: 0, ...env },
    health: { type: "http", path: "/health", interval: 60_000, timeout: 1000 },
    ...extra,
  });
}

interface Answer {
  pid: number;
  message: string;
  reloads: number;
  cwd: string;
  grandchild?: number;
  vars: Record<string, string | null>;
  env: Record<string, unknown>;
}

async function get(port: unknown): Promise<Answer> {
  assert.equal(typeof port, "number", "the app reports its port");
  const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  return (await response.json()) as Answer;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const current = async (h: Harness, app = "web"): Promise<AppState | undefined> =>
  (await h.runtime.getCurrentState())[app];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const exits = (h: Harness) => h.events.filter((e) => e.name === "bc_gitops:process:exit");
const spawns = (h: Harness) => h.events.filter((e) => e.name === "bc_gitops:process:spawn");

test("a process app runs in its revision directory with its env exported, and reports its pid and port", async (t) => {
  const saved = { token: process.env.BC_GITOPS_TOKEN, inherited: process.env.PROC_TEST_INHERITED };
  process.env.BC_GITOPS_TOKEN = "the agent's own secret";
  process.env.PROC_TEST_INHERITED = "yes";
  t.after(() => {
    for (const [name, value] of [
      ["BC_GITOPS_TOKEN", saved.token],
      ["PROC_TEST_INHERITED", saved.inherited],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  const h = await harness(t);
  const state = await h.runtime.deploy(web("1.0.0", { pool_size: 10, nested: { a: [1, 2] }, greeting: "hi" }));
  assert.deepEqual([state.status, state.health, state.isolation], ["running", "healthy", "process"]);
  assert.equal(typeof state.pid, "number");
  assert.ok(await alive(state.pid));
  const answer = await get(state.port);
  assert.equal(answer.pid, state.pid);
  assert.equal(answer.cwd, state.path);
  assert.deepEqual(answer.vars, {
    PORT: String(state.port),
    POOL_SIZE: "10",
    NESTED: '{"a":[1,2]}',
    GREETING: "hi",
    BC_GITOPS_APP: "web",
    BC_GITOPS_VERSION: "1.0.0",
    BC_GITOPS_REVISION: state.revision!,
    BC_GITOPS_DATA_DIR: join(h.local, "data", "web"),
    BC_GITOPS_CURRENT: join(h.local, "run", "web", "current"),
    BC_GITOPS_TOKEN: null,
    PROC_TEST_INHERITED: "yes",
  });
  assert.deepEqual(
    answer.env,
    { port: state.port, pool_size: 10, nested: { a: [1, 2] }, greeting: "hi" },
    "BC_GITOPS_ENV has the real port",
  );
  assert.deepEqual(
    spawns(h).map((e) => [e.metadata.app, e.metadata.pid]),
    [["web", state.pid]],
  );
});

for (const { resetAfterMs, delays } of [
  { resetAfterMs: 60_000, delays: [50, 100, 200] },
  { resetAfterMs: 100, delays: [50, 50, 50] },
]) {
  test(`a crashed process is restarted in place after ${delays.join(", ")} ms when a run that lived ${resetAfterMs} ms resets the delay`, async (t) => {
    const h = await harness(t, { resetAfterMs, crashLoopExits: 100 });
    const first = await h.runtime.deploy(web("1.0.0", { crash_after: 300 }));
    await until("three restarts", async () => ((await current(h))?.restarts ?? 0) >= 3 && exits(h).length >= 3);
    assert.deepEqual(
      exits(h)
        .slice(0, 3)
        .map((e) => e.measurements.restart_in_ms),
      delays,
    );
    assert.deepEqual(
      exits(h)
        .slice(0, 3)
        .map((e) => [e.metadata.code, e.metadata.signal, e.metadata.reason]),
      Array(3).fill([3, null, "exited with code 3"]),
    );
    const state = (await current(h))!;
    assert.equal(state.status === "running" || state.status === "starting", true);
    assert.deepEqual(
      state.last_exit && { ...(state.last_exit as object), at: undefined, duration_ms: undefined, pid: undefined },
      {
        code: 3,
        signal: null,
        reason: "exited with code 3",
        at: undefined,
        duration_ms: undefined,
        pid: undefined,
      },
    );
    assert.equal(await alive(first.pid), false, "the crashed process is gone");
    assert.ok(
      h.logs.some((l) =>
        /^warn \[web\] pid \d+ exited with code 3: .*proc-server crashes on purpose; restarting it in 50 ms$/.test(l),
      ),
    );
  });
}

test("between a crash and its restart the app shows as starting, and a stop cancels the restart", async (t) => {
  const h = await harness(t, { restartDelayMs: 60_000 });
  await h.runtime.deploy(web("1.0.0", { crash_after: 300 }));
  const waiting = await until("the crash", async () => ((await current(h))?.last_exit ? current(h) : undefined));
  assert.deepEqual([waiting!.status, waiting!.health, waiting!.pid], ["starting", "unknown", undefined]);
  await h.runtime.remove("web");
  assert.equal(spawns(h).length, 1, "no restart after the stop");
});

test("a crash loop marks the app failed with the reason, stops restarting it, and refuses the same code until the cool-down ends", async (t) => {
  const h = await harness(t, { restartDelayMs: 10, crashLoopExits: 4, crashLoopCooldownMs: 60_000 });
  const looping = web("1.0.0", { crash_after: 300 });
  await h.runtime.deploy(looping);
  const failed = await until("the crash loop", async () =>
    (await current(h))?.status === "failed" ? current(h) : undefined,
  );
  assert.match(failed!.last_error ?? "", /^crashed: crash loop: 4 exits within 60 s, the last one exited with code 3$/);
  assert.equal(failed!.health, "unhealthy");
  assert.equal(spawns(h).length, 4, "one start and three restarts, then nothing");
  assert.ok(h.logs.some((l) => l.startsWith("error [web] crash loop: 4 exits within 60 s")));
  await assert.rejects(
    h.runtime.restart(looping),
    /web is in a crash loop \(crash loop: 4 exits .*\); it is started again in \d+ s, or at once when its code or settings change/,
  );
  assert.equal(spawns(h).length, 4, "the refused restart spawned nothing");
  const fixed = await h.runtime.restart(web("1.0.0", {}));
  assert.deepEqual([fixed.status, fixed.health], ["running", "healthy"]);
});

test("restarts counts only restarts that ran the app; those refused during a crash loop's cool-down are counted apart", async (t) => {
  const h = await harness(t, { restartDelayMs: 10, crashLoopExits: 4, crashLoopCooldownMs: 60_000 });
  const looping = web("1.0.0", { crash_after: 300 });
  await h.runtime.deploy(looping);
  await until("the crash loop", async () => (await current(h))?.status === "failed");
  for (let i = 0; i < 3; i++) await assert.rejects(h.runtime.restart(looping), /is in a crash loop/);
  const refused = (await current(h))!;
  assert.equal(spawns(h).length, 4);
  assert.deepEqual(
    [refused.restarts, refused.restarts_refused],
    [3, 3],
    "three respawns in place; three refusals spawned nothing",
  );
  const fixed = await h.runtime.restart(web("1.0.0", {}));
  assert.equal(spawns(h).length, 5);
  assert.deepEqual([fixed.status, fixed.restarts, fixed.restarts_refused], ["running", 4, 3]);
});

test("an explicit health.port 8080 is where readiness and health are checked, also when env.port is 0", async (t) => {
  const checked = await listenOn8080(t);
  const h = await harness(t);
  // proc-server listens on the free port it is given, never on 8080: only the agent's checks reach the listener there.
  const state = await h.runtime.deploy(
    web("1.0.0", { host: checked.host }, { health: { type: "tcp", port: 8080, interval: 60_000, timeout: 1000 } }),
  );
  assert.deepEqual([state.status, state.health], ["running", "healthy"]);
  assert.notEqual(state.port, 8080);
  assert.ok(
    checked.connections() >= 2,
    `readiness and the first health check connect to ${checked.host}:8080, got ${checked.connections()} connection(s)`,
  );
});

test("an app that exits during start fails the deploy with what it printed, and leaves nothing behind", async (t) => {
  const h = await harness(t);
  await assert.rejects(
    h.runtime.deploy(web("1.0.0", { exit_at_start: true })),
    /^GitopsError: web 1\.0\.0 exited with code 2 during start: proc-server 1\.0\.0 refuses to start$/,
  );
  assert.equal(await current(h), undefined);
  const [exit] = exits(h);
  assert.equal(await alive(exit!.metadata.pid as number), false);
});

for (const how of ["remove", "stopAll"] as const) {
  test(`${how} ends the app's whole process group, its grandchild included`, async (t) => {
    const h = await harness(t);
    const state = await h.runtime.deploy(web("1.0.0", { grandchild: true }));
    const { grandchild } = await get(state.port);
    assert.ok(await alive(grandchild), "the grandchild runs");
    if (how === "remove") await h.runtime.remove("web");
    else await h.runtime.stopAll();
    assert.equal(await alive(state.pid), false);
    assert.equal(await alive(grandchild), false, "the grandchild is gone too");
    assert.deepEqual(
      exits(h).map((e) => [e.metadata.pid, e.metadata.expected, e.metadata.reason]),
      [[state.pid, true, "stopped (exit code 0)"]],
    );
  });
}

/** proc-tree as app "tree": its descendants leave its process group (see the fixture). */
function treeApp(env: Record<string, unknown>): AppSpec {
  return AppSpec.parse({
    name: "tree",
    version: "1.0.0",
    isolation: "process",
    source: { type: "path", path: "code/proc-tree" },
    env: { port: 0, ...env },
    health: { type: "http", path: "/health", interval: 60_000, timeout: 1000 },
  });
}

interface Tree {
  pid: number;
  setsid?: number;
  daemon?: number;
}

/** Asserts that `pid` runs outside `app`'s process group, so only the descendant tracking can end it. */
async function outsideGroup(pid: number | undefined, app: number): Promise<void> {
  assert.ok(await alive(pid), `pid ${pid} runs`);
  const stat = await procStat(pid!);
  assert.notEqual(stat?.pgrp, app, `pid ${pid} left the app's process group`);
}

for (const how of ["remove", "stopAll"] as const) {
  test(`${how} also ends descendants that left the process group: a setsid child with a cleared environment and a double-forked daemon`, async (t) => {
    const h = await harness(t);
    const state = await h.runtime.deploy(treeApp({ setsid_clean: true, daemon: true }));
    const tree = (await get(state.port)) as unknown as Tree;
    assert.equal(tree.pid, state.pid);
    await outsideGroup(tree.setsid, tree.pid);
    await outsideGroup(tree.daemon, tree.pid);
    assert.notEqual((await procStat(tree.daemon!))?.ppid, tree.pid, "the daemon is not the app's child any more");
    if (how === "remove") await h.runtime.remove("tree");
    else await h.runtime.stopAll();
    for (const pid of [tree.pid, tree.setsid, tree.daemon]) assert.equal(await alive(pid), false, `pid ${pid} is gone`);
  });
}

test("when the app dies, the descendants recorded while it ran go too, although they left its group and cleared their environment", async (t) => {
  const h = await harness(t, { treeCheckMs: 50, restartDelayMs: 60_000, crashLoopExits: 100 });
  const state = await h.runtime.deploy(treeApp({ setsid_clean: true }));
  const tree = (await get(state.port)) as unknown as Tree;
  await outsideGroup(tree.setsid, tree.pid);
  const pidFile = join(h.local, "run", "tree", "pids", `${tree.pid}.json`);
  await until("the walk to record the setsid child in the pid file", async () => {
    const saved = JSON.parse(await readFile(pidFile, "utf8")) as { descendants?: { pid: number }[] };
    return saved.descendants?.some((d) => d.pid === tree.setsid);
  });
  process.kill(tree.pid, "SIGKILL");
  await until("the setsid child to be ended", async () => !(await alive(tree.setsid)));
  const after = await until("the exit to be reported", async () =>
    (await current(h, "tree"))?.last_exit ? current(h, "tree") : undefined,
  );
  assert.equal((after!.last_exit as { reason: string }).reason, "killed by SIGKILL");
  assert.equal((after!.last_exit as { left_running?: unknown }).left_running, undefined);
});

test("an app that ignores SIGTERM is killed with SIGKILL after the stop timeout, grandchild included", async (t) => {
  const h = await harness(t, {}, { stopTimeoutMs: 300 });
  const state = await h.runtime.deploy(web("1.0.0", { ignore_term: true, grandchild: true }));
  const { grandchild } = await get(state.port);
  await h.runtime.remove("web");
  assert.equal(await alive(state.pid), false);
  assert.equal(await alive(grandchild), false);
  assert.ok(
    h.logs.includes("warn [web] web did not exit within 300 ms of SIGTERM; its process group was killed with SIGKILL"),
    h.logs.join("\n"),
  );
  assert.deepEqual(
    exits(h).map((e) => e.metadata.signal),
    ["SIGKILL"],
  );
});

test("an app over its memory limit is killed and reported as out of memory", async (t) => {
  const h = await harness(t, { memoryCheckMs: 50, crashLoopExits: 100, restartDelayMs: 60_000 });
  await h.runtime.deploy(
    AppSpec.parse({
      name: "hog",
      version: "1.0.0",
      isolation: "process",
      source: { type: "path", path: "code/proc-hog" },
      env: { port: 0 },
      limits: { memory_mb: 64 },
      health: { type: "http", interval: 60_000, timeout: 1000 },
    }),
  );
  const state = await until("the out-of-memory exit", async () => {
    const hog = await current(h, "hog");
    return hog?.last_exit ? hog : undefined;
  });
  assert.equal((state!.last_exit as { reason: string }).reason, "out of memory (limit 64 MB)");
  assert.equal(exits(h)[0]?.metadata.reason, "out of memory (limit 64 MB)");
});

for (const reuse of [false, true]) {
  test(`an upgrade ${reuse ? "with reuse_port starts the new process before it stops the old one" : "stops the old process, then starts the new one"}; a failing upgrade rolls back`, async (t) => {
    const h = await harness(t);
    const port = await freePort();
    const env = { port, ...(reuse ? { reuse_port: true } : {}) };
    const one = await h.runtime.deploy(web("1.0.0", env));
    await writeFile(join(h.repo, "code", "proc-server", "message.js"), 'export const MESSAGE = "version two";\n');
    const two = await h.runtime.upgrade(web("2.0.0", env), "1.0.0");
    assert.deepEqual([two.status, two.health, two.port], ["running", "healthy", port]);
    assert.notEqual(two.pid, one.pid);
    assert.equal(await alive(one.pid), false);
    const answer = await until("version two to answer", async () => {
      const a = await get(port);
      return a.pid === two.pid ? a : undefined;
    });
    assert.equal(answer.message, "version two");
    const order = h.events.filter(
      (e) =>
        (e.name === "bc_gitops:process:exit" && e.metadata.pid === one.pid) ||
        (e.name === "bc_gitops:process:spawn" && e.metadata.pid === two.pid),
    );
    assert.deepEqual(
      order.map((e) => e.name.split(":")[2]),
      reuse ? ["spawn", "exit"] : ["exit", "spawn"],
    );

    await assert.rejects(
      h.runtime.upgrade(web("3.0.0", { ...env, exit_at_start: true }), "2.0.0"),
      /upgrade web 2\.0\.0 -> 3\.0\.0 failed: web 3\.0\.0 exited with code 2 during start: .*; rolled back to 2\.0\.0$/,
    );
    const back = (await current(h))!;
    assert.deepEqual([back.version, back.status, back.health], ["2.0.0", "running", "healthy"]);
    if (reuse) assert.equal(back.pid, two.pid, "the old process never stopped");
    else assert.notEqual(back.pid, two.pid, "the old version was started again");
    assert.equal((await get(port)).message, "version two");
  });
}

for (const signal of [undefined, "SIGHUP"] as const) {
  test(`a hot reload ${signal ? `sends ${signal} after pointing the current link at the new revision` : "restarts the process on the new revision"}`, async (t) => {
    const h = await harness(t);
    const spec = web("1.0.0", {}, signal ? { reload_signal: signal } : {});
    const before = await h.runtime.deploy(spec);
    await writeFile(join(h.repo, "code", "proc-server", "message.js"), 'export const MESSAGE = "reloaded code";\n');
    const result = await h.runtime.hotReload(spec);
    assert.deepEqual(result.modules, ["message.js"]);
    const after = (await current(h))!;
    assert.equal(after.revision, result.revision);
    const answer = await until("the new code to answer", async () => {
      const a = await get(after.port);
      return a.message === "reloaded code" ? a : undefined;
    });
    if (signal) {
      assert.deepEqual([answer.pid, answer.reloads], [before.pid, 1], "the same process re-imported its code");
      assert.equal((await stat(join(h.local, "run", "web", "current"))).isDirectory(), true);
      assert.equal(
        await readFile(join(h.local, "run", "web", "current", "message.js"), "utf8"),
        'export const MESSAGE = "reloaded code";\n',
      );
    } else {
      assert.notEqual(answer.pid, before.pid);
      assert.equal(await alive(before.pid), false);
    }
  });
}

test("output goes to the agent's log tagged with the app and to a rotating log file", async (t) => {
  const h = await harness(t, { logMaxBytes: 1500, logKeep: 2 });
  await h.runtime.deploy(web("1.0.0", { chatty: 20 }));
  await until("the last line in the agent's log", () => h.logs.includes("info [web] err line 19") || undefined);
  assert.ok(h.logs.includes(`info [web] out line 0 ${"x".repeat(80)}`));
  await h.runtime.remove("web");
  const dir = join(h.local, "logs");
  assert.deepEqual((await readdir(dir)).sort(), ["web.log", "web.log.1", "web.log.2"]);
  const files = await Promise.all(
    ["web.log.2", "web.log.1", "web.log"].map((name) => readFile(join(dir, name), "utf8")),
  );
  for (const text of files) assert.ok(Buffer.byteLength(text) <= 1500);
  const all = files.join("");
  assert.match(all, /^\S+Z \[stderr\] err line 19$/m);
  assert.match(all, /^\S+Z out line 19 x+$/m);
  assert.match(files[2]!, /\[bc-gitops\] pid \d+ stopped \(exit code 0\) after/);
});

test("a command app runs its own argv, with the heap limit in NODE_OPTIONS", async (t) => {
  const h = await harness(t);
  const state = await h.runtime.deploy(
    AppSpec.parse({
      name: "cmd",
      version: "1.0.0",
      isolation: "vm",
      command: ["node", "server.js"],
      limits: { memory_mb: 96 },
      source: { type: "path", path: "code/proc-cmd" },
      env: { port: 0 },
      health: { type: "http", path: "/health", timeout: 1000 },
    }),
  );
  assert.deepEqual([state.status, state.health, state.isolation], ["running", "healthy", "process"]);
  const answer = (await (
    await fetch(`http://127.0.0.1:${state.port}/`, { signal: AbortSignal.timeout(5000) })
  ).json()) as Record<string, string>;
  assert.equal(answer.runtime, "node");
  assert.equal(answer.app, "cmd");
  assert.match(answer.nodeOptions ?? "", /(^| )--max-old-space-size=96$/);
});

test("a command app needs no entry: a directory with no package.json and no index.js runs its command", async (t) => {
  const h = await harness(t);
  await mkdir(join(h.repo, "code", "bare-cmd"), { recursive: true });
  await cp(join(FIXTURES, "proc-cmd", "server.js"), join(h.repo, "code", "bare-cmd", "main.js"));
  const state = await h.runtime.deploy(
    AppSpec.parse({
      name: "bare",
      version: "1.0.0",
      isolation: "process",
      command: ["node", "main.js"],
      source: { type: "path", path: "code/bare-cmd" },
      env: { port: 0 },
      health: { type: "http", path: "/health", timeout: 1000 },
    }),
  );
  assert.deepEqual([state.status, state.health], ["running", "healthy"]);
  const answer = (await (
    await fetch(`http://127.0.0.1:${state.port}/`, { signal: AbortSignal.timeout(5000) })
  ).json()) as Record<string, string>;
  assert.equal(answer.app, "bare");
});

test("a command that is not on PATH fails the deploy with a clear error", async (t) => {
  const h = await harness(t);
  const spec = web("1.0.0", {}, { command: ["bc-gitops-no-such-program", "server.js"] });
  await assert.rejects(
    h.runtime.deploy(spec),
    /^GitopsError: cannot run bc-gitops-no-such-program: bc-gitops-no-such-program was not found on PATH$/,
  );
  assert.equal(await current(h), undefined);
});

test("health.type module on a process app is a liveness check, with a warning", async (t) => {
  const h = await harness(t);
  const state = await h.runtime.deploy(web("1.0.0", {}, { health: { type: "module", interval: 60_000 } }));
  assert.deepEqual([state.status, state.health], ["running", "healthy"]);
  assert.ok(
    h.logs.some((l) =>
      l.includes('[web] health.type module cannot call into a separate process; it is checked as "the process runs"'),
    ),
  );
});
