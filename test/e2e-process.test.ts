// End to end: the real agent (git, reconciler, loop) with the default runtime running apps as
// supervised child processes (isolation: process), from path sources in a real gitops repository.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { scriptCommand } from "../src/_platform.ts";
import type { Agent } from "../src/agent.ts";
import { spawnProcess } from "../src/exec.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { agentFor, code, until } from "./helpers/e2e.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { alive } from "./helpers/runtime-harness.ts";

const AGENT_HOST = fileURLToPath(new URL("./helpers/agent-host.ts", import.meta.url));

const spec = (name: string, version: string, env: string, lines: string[] = []) =>
  [
    `name: ${name}`,
    `version: "${version}"`,
    "isolation: process",
    `source: { type: path, path: code/${name} }`,
    `env: { ${env} }`,
    ...lines,
  ].join("\n") + "\n";
/** db: checked over HTTP every 100 ms; `unhealthy: true` makes its /health answer 503. */
const db = (env = "port: 0, grandchild: true") =>
  spec("db", "1.0.0", env, ["health: { type: http, path: /health, interval: 100, timeout: 1000 }"]);
const web = (version: string) =>
  spec("web", version, "port: 0", [
    "depends_on: [db]",
    "health: { type: http, path: /health, interval: 60s, timeout: 1000 }",
  ]);

interface Answer {
  pid: number;
  message: string;
  grandchild?: number;
  vars: Record<string, string | null>;
}

async function answer(agent: Agent, app: string, check: (a: Answer) => boolean = () => true): Promise<Answer> {
  return until(`${app} to answer`, async () => {
    const port = (await agent.getAppStatus(app))?.port;
    if (typeof port !== "number") return undefined;
    const body = (await (
      await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })
    ).json()) as Answer;
    return check(body) ? body : undefined;
  });
}

test("the agent runs process apps: dependency gating, upgrade, in-place restart of a killed process, and nothing left after stop", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/db/app.yaml": db("port: 0, grandchild: true, unhealthy: true"),
    "apps/web/app.yaml": web("1.0.0"),
    ...(await code("proc-server", "db")),
    ...(await code("proc-server", "web")),
  });
  const localPath = join(repo.root, "local");
  const agent = agentFor(t, repo.bare, localPath);
  const events: TelemetryEvent[] = [];
  agent.on("*", (e) => void events.push(e));

  const first = await agent.start();
  assert.deepEqual(
    first.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["deploy", "db", "ok"],
      ["deploy", "web", "pending"],
    ],
  );
  assert.match(first.actions[1]!.reason ?? "", /waiting for db/);

  // db's env changes (no reconfigure for a process: it is restarted with the new env), it becomes healthy, web follows.
  await repo.commit({ "apps/db/app.yaml": db() });
  const reconfigured = await agent.reconcile();
  assert.deepEqual(reconfigured.actions.map((a) => [a.type, a.app, a.outcome])[0], ["reconfigure", "db", "ok"]);
  await until("web to run once db is healthy", async () =>
    (await agent.getAppStatus("web"))?.status === "running" ? true : undefined,
  );
  const webOne = await answer(agent, "web");
  assert.equal(webOne.vars.BC_GITOPS_VERSION, "1.0.0");

  await repo.commit({
    "apps/web/app.yaml": web("2.0.0"),
    "code/web/message.js": 'export const MESSAGE = "web two";\n',
  });
  const upgraded = await agent.reconcile();
  assert.deepEqual(
    upgraded.actions.map((a) => [a.type, a.app, a.outcome]),
    [["upgrade", "web", "ok"]],
  );
  const webTwo = await answer(agent, "web", (a) => a.message === "web two");
  assert.equal(await alive(webOne.pid), false);

  // A process killed from outside is restarted in place by its supervisor (the tick only refreshes the view).
  process.kill(webTwo.pid, "SIGKILL");
  const restarted = await until("web to be restarted", async () => {
    await agent.reconcile(); // the agent's view of its apps is refreshed by ticks
    const state = await agent.getAppStatus("web");
    return state?.pid !== undefined && state.pid !== webTwo.pid && state.status === "running" ? state : undefined;
  });
  assert.equal(restarted.restarts, 1);
  assert.deepEqual(
    [(restarted.last_exit as { signal: string }).signal, (restarted.last_exit as { reason: string }).reason],
    ["SIGKILL", "killed by SIGKILL"],
  );
  assert.equal((await answer(agent, "web")).message, "web two");
  assert.ok(
    events.some(
      (e) => e.name === "bc_gitops:process:exit" && e.metadata.pid === webTwo.pid && e.metadata.signal === "SIGKILL",
    ),
  );

  const dbAnswer = await answer(agent, "db");
  const pids = [dbAnswer.pid, dbAnswer.grandchild, restarted.pid];
  for (const pid of pids) assert.ok(await alive(pid));
  await agent.stop();
  for (const pid of pids) assert.equal(await alive(pid), false, `pid ${pid} is gone after agent.stop()`);
  const log = await readFile(join(localPath, "logs", "web.log"), "utf8");
  assert.match(log, /\[bc-gitops\] started pid \d+: web 2\.0\.0/);
  assert.match(log, /proc-server 2\.0\.0 listening on/);
});

test("processes left behind by a killed agent are stopped by the next agent before it starts the app again", async (t) => {
  const repo = await gitopsRepo(t, { "apps/db/app.yaml": db(), ...(await code("proc-server", "db")) });
  const localPath = join(repo.root, "local");
  const run = scriptCommand(AGENT_HOST);
  const host = await spawnProcess(run.command, [...run.args, repo.bare, localPath], {
    env: Object.fromEntries(
      Object.entries({ ...process.env, ...run.env }).filter((e): e is [string, string] => e[1] !== undefined),
    ),
  });
  t.after(() => host.terminate(1000));
  const line = await until(
    "the agent host to report",
    async () => {
      const chunk = host.stdout.read() as Buffer | string | null;
      return chunk === null
        ? host.exit
          ? Promise.reject(new Error(`the agent host exited: ${String(host.stderr.read())}`))
          : undefined
        : String(chunk);
    },
    60_000,
  );
  const left = JSON.parse(line.trim().split("\n")[0]!) as { pid: number; grandchild: number };
  host.signal("SIGKILL");
  await host.exited;
  assert.ok(await alive(left.pid), "the app outlived its agent");
  assert.ok(await alive(left.grandchild));

  const agent = agentFor(t, repo.bare, localPath);
  await agent.start();
  const now = await answer(agent, "db");
  assert.notEqual(now.pid, left.pid);
  assert.equal(await alive(left.pid), false, "the leftover app was stopped");
  assert.equal(await alive(left.grandchild), false, "and its grandchild");
});

test("an app left running by an agent killed during its first start, then deleted from the repo, is stopped with what it started by the next agent", async (t) => {
  const slow = spec("slow", "1.0.0", "port: 0, listen_after: 600000, setsid_clean: true, daemon: true", [
    "health: { type: http, path: /health, interval: 60s, timeout: 1000 }",
  ]);
  const repo = await gitopsRepo(t, { "apps/slow/app.yaml": slow, ...(await code("proc-tree", "slow")) });
  const localPath = join(repo.root, "local");
  const run = scriptCommand(AGENT_HOST);
  const host = await spawnProcess(run.command, [...run.args, repo.bare, localPath], {
    env: Object.fromEntries(
      Object.entries({ ...process.env, ...run.env }).filter((e): e is [string, string] => e[1] !== undefined),
    ),
  });
  t.after(() => host.terminate(1000));
  // The app never listens: the agent is still deploying it (nothing in state.json) when it is killed.
  const tree = await until(
    "the app to start its descendants",
    async () => {
      if (host.exit) throw new Error(`the agent host exited: ${String(host.stderr.read())}`);
      const pids = await readdir(join(localPath, "run", "slow", "pids")).catch(() => []);
      const text = await readFile(join(localPath, "data", "slow", "tree.json"), "utf8").catch(() => undefined);
      return pids.length > 0 && text
        ? (JSON.parse(text) as { pid: number; setsid: number; daemon: number })
        : undefined;
    },
    60_000,
  );
  host.signal("SIGKILL");
  await host.exited;
  t.after(() => {
    for (const pid of [tree.pid, tree.setsid, tree.daemon]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Gone, as it should be.
      }
    }
  });
  for (const pid of [tree.pid, tree.setsid, tree.daemon]) assert.ok(await alive(pid), `pid ${pid} outlived its agent`);
  const state = JSON.parse(await readFile(join(localPath, "state.json"), "utf8").catch(() => "{}")) as {
    apps?: Record<string, unknown>;
  };
  assert.equal(state.apps?.slow, undefined, "the killed agent had not recorded the app");

  await repo.commit({ "apps/slow": null, "code/slow": null });
  const agent = agentFor(t, repo.bare, localPath);
  const first = await agent.start();
  assert.deepEqual(first.actions, []);
  for (const pid of [tree.pid, tree.setsid, tree.daemon])
    assert.equal(await alive(pid), false, `pid ${pid} was stopped`);
  assert.deepEqual(await readdir(join(localPath, "run", "slow", "pids")), [], "and its pid file removed");
});
