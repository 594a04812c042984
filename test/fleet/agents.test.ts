// Fleets end to end: several real agents on one machine against one bare repository, each with
// its own local_path, control API port (loopback, port 0) and labels, running real apps (the
// rt-fetch fixture, served in process) from path sources committed to the repository.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createAgent, type Agent } from "../../src/agent.ts";
import { runCli } from "../helpers/cli.ts";
import { code } from "../helpers/e2e.ts";
import { exec } from "../../src/exec.ts";
import { GIT_ENV, gitopsRepo, type GitopsRepo } from "../helpers/gitops-repo.ts";
import { writeTree } from "../helpers/tmp.ts";

/** A spec of a fetch app served from code/app on a port of its own. */
const spec = (name: string, version: string, ...lines: string[]) =>
  [`name: ${name}`, `version: "${version}"`, "source: { type: path, path: code/app }", "env: { port: 0 }", ...lines]
    .join("\n")
    .concat("\n");

interface Host {
  name: string;
  agent: Agent;
  url: string;
}

/** Starts one agent per host on `repo`, each with its own local_path and control API; stopped when the test ends. */
async function fleet(
  t: TestContext,
  repo: GitopsRepo,
  hosts: Record<string, Record<string, string>>,
  now?: () => number,
): Promise<Record<string, Host>> {
  const out: Record<string, Host> = {};
  for (const [name, labels] of Object.entries(hosts)) {
    const agent = createAgent({
      repoUrl: repo.bare,
      localPath: join(repo.root, `agent-${name}`),
      runtime: "default",
      listen: "127.0.0.1:0",
      reconcileInterval: "1h",
      host: name,
      labels,
      ...(now ? { now } : {}),
    });
    t.after(() => agent.stop());
    out[name] = { name, agent, url: "" };
  }
  // Started together, as a fleet is.
  await Promise.all(Object.values(out).map((h) => h.agent.start()));
  for (const host of Object.values(out)) host.url = `http://${host.agent.address}`;
  return out;
}

/** The apps an agent runs, by name, with the version each answers over HTTP. */
async function answers(host: Host): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, state] of Object.entries(await host.agent.getCurrentState())) {
    if (state.status !== "running") continue;
    const response = await fetch(`http://127.0.0.1:${state.port}/`, { signal: AbortSignal.timeout(5000) });
    out[name] = ((await response.json()) as { version: string }).version;
  }
  return out;
}

test("agents place apps by host glob, label and set expression, give canary hosts another version, and move apps when a running agent's labels change", async (t) => {
  const repo = await gitopsRepo(t, {
    ...(await code("rt-fetch", "app")),
    ...(await code("rt-fetch", "app2")),
    "code/app2/message.js": 'export const MESSAGE = "the canary build";\n',
    "apps/front/app.yaml": spec(
      "front",
      "1.0.0",
      "placement: { hosts: ['web-*'] }",
      "overrides:",
      "  - match: { labels: { tier: canary } }",
      '    version: "2.0.0"',
      "    source: { path: code/app2 }",
    ),
    "apps/store/app.yaml": spec("store", "1.0.0", "placement: { labels: { role: db } }"),
    "apps/eu-cache/app.yaml": spec("eu-cache", "1.0.0", "placement: { expressions: ['region in [eu]'] }"),
    "apps/stats/app.yaml": spec("stats", "1.0.0"),
  });
  const hosts = await fleet(t, repo, {
    "web-1": { role: "web", region: "eu", tier: "canary" },
    "web-2": { role: "web", region: "us" },
    "db-1": { role: "db", region: "eu" },
  });
  const [web1, web2, db1] = [hosts["web-1"]!, hosts["web-2"]!, hosts["db-1"]!];
  assert.deepEqual(await answers(web1), { "eu-cache": "1.0.0", front: "2.0.0", stats: "1.0.0" });
  assert.deepEqual(await answers(web2), { front: "1.0.0", stats: "1.0.0" });
  assert.deepEqual(await answers(db1), { "eu-cache": "1.0.0", stats: "1.0.0", store: "1.0.0" });
  for (const host of [web1, web2, db1]) assert.equal((await host.agent.status()).status, "synced", host.name);
  const front = async (host: Host) => {
    const port = (await host.agent.getAppStatus("front"))!.port;
    return ((await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { message: string }).message;
  };
  assert.equal(await front(web1), "the canary build", "the canary runs the source its override names");
  assert.equal(await front(web2), "rt-fetch says hello");
  // Code revisions are resolved from each host's effective source: nothing to do on the next tick.
  for (const host of [web1, web2, db1]) assert.deepEqual((await host.agent.reconcile()).actions, [], host.name);

  // fleet status over the three agents: every host synced, one table.
  // The same agents from an inventory file (one per line, comments, host:port), the token from the environment.
  const inventory = join(repo.root, "inventory.txt");
  await writeTree(repo.root, { "inventory.txt": `# the fleet\n${web1.url}\n\n${web2.url.replace("http://", "")}\n` });
  const listed = await runCli(["fleet", "status", "--inventory", inventory, db1.url, "--json"], {
    env: { BC_GITOPS_TOKEN: "not-needed-here" },
  });
  assert.deepEqual(
    (JSON.parse(listed.stdout) as { hosts: { host: string }[] }).hosts.map((h) => h.host),
    ["db-1", "web-1", "web-2"],
  );
  const synced = await runCli(["fleet", "status", web1.url, web2.url, db1.url]);
  assert.equal(synced.exitCode, 0, synced.stdout + synced.stderr);
  assert.match(synced.stdout, /^front +web-1 +2\.0\.0 +running +healthy/m);
  assert.match(synced.stdout, /^front +web-2 +1\.0\.0 +running +healthy/m);
  assert.match(synced.stdout, /^store +db-1 +1\.0\.0 +running/m);
  assert.match(synced.stdout, /^3 hosts: 3 synced, 0 not synced, 0 unreachable$/m);

  // web-1 moves to the US and stops being a canary; web-2 moves to the EU.
  const euCache = (await web1.agent.getAppStatus("eu-cache"))!.port;
  web1.agent.setLabels({ role: "web", region: "us" });
  web2.agent.setLabels({ role: "web", region: "eu" });
  const [moved1, moved2] = await Promise.all([web1.agent.reconcile(), web2.agent.reconcile()]);
  assert.deepEqual(
    moved1.actions.map((a) => [a.type, a.app, a.outcome]),
    [
      ["remove", "eu-cache", "ok"],
      ["upgrade", "front", "ok"],
    ],
  );
  assert.deepEqual(
    moved2.actions.map((a) => [a.type, a.app, a.outcome]),
    [["deploy", "eu-cache", "ok"]],
  );
  await assert.rejects(fetch(`http://127.0.0.1:${euCache}/`, { signal: AbortSignal.timeout(5000) }));
  assert.deepEqual(await answers(web1), { front: "1.0.0", stats: "1.0.0" });
  assert.deepEqual(await answers(web2), { "eu-cache": "1.0.0", front: "1.0.0", stats: "1.0.0" });

  // One agent goes down: fleet status says so and exits 1; the others are still listed.
  const down = db1.url;
  await db1.agent.stop();
  const partial = await runCli(["fleet", "status", "--json", "--timeout", "3s", web1.url, web2.url, down]);
  assert.equal(partial.exitCode, 1, partial.stderr);
  const report = JSON.parse(partial.stdout) as {
    hosts: { url: string; reachable: boolean; host?: string; apps: unknown[] }[];
  };
  assert.deepEqual(
    report.hosts.map((h) => [h.host ?? h.url, h.reachable, h.apps.length]),
    [
      ["web-1", true, 2],
      ["web-2", true, 3],
      [down, false, 0],
    ],
  );
});

/** Commits `files` to `repo` with the committer date `seconds` (Unix time), and pushes it. */
async function commitAt(repo: GitopsRepo, files: Record<string, string>, seconds: number): Promise<void> {
  await writeTree(repo.work, files);
  const env = { ...GIT_ENV, GIT_COMMITTER_DATE: `@${seconds} +0000` };
  await exec("git", ["add", "-A"], { cwd: repo.work, env });
  await exec("git", ["commit", "-q", "-m", "rollout step"], { cwd: repo.work, env });
  await exec("git", ["push", "-q", "--force", repo.bare, "HEAD:refs/heads/main"], { cwd: repo.work, env });
}

test("a change rolls out wave by wave from its commit's time on an injected clock, and paused holds the waves that have not applied", async (t) => {
  const rollout = (extra = "") => `rollout: { waves: 3, interval: 10m${extra} }`;
  const repo = await gitopsRepo(t, {
    ...(await code("rt-fetch", "app")),
    "apps/stats/app.yaml": spec("stats", "1.0.0"),
  });
  const T = Math.floor(Date.now() / 1000) + 3600; // commits dated ahead of the real clock: only the injected one counts
  const MIN = 60_000;
  let clock = Date.now();
  const hosts = await fleet(
    t,
    repo,
    { "h-0": { rollout_wave: "0" }, "h-1": { rollout_wave: "1" }, "h-2": { rollout_wave: "2" } },
    () => clock,
  );
  const all = Object.values(hosts);
  const versions = async () => Promise.all(all.map(async (h) => (await answers(h)).stats));
  const tickAll = async (at: number) => {
    clock = T * 1000 + at;
    await Promise.all(all.map((h) => h.agent.reconcile()));
    return versions();
  };
  const reason = async (host: string) => (await hosts[host]!.agent.getAppStatus("stats"))?.pending_reason;
  const iso = (at: number) => new Date(T * 1000 + at).toISOString();
  assert.deepEqual(await versions(), ["1.0.0", "1.0.0", "1.0.0"]);

  await commitAt(repo, { "apps/stats/app.yaml": spec("stats", "1.1.0", rollout()) }, T);
  assert.deepEqual(await tickAll(1 * MIN), ["1.1.0", "1.0.0", "1.0.0"], "wave 0 at once");
  assert.equal(await reason("h-1"), `waiting for wave 1 at ${iso(10 * MIN)}`);
  assert.deepEqual((await hosts["h-1"]!.agent.getAppStatus("stats"))?.rollout, {
    wave: 1,
    waves: 3,
    interval_ms: 10 * MIN,
    paused: false,
    waiting: true,
    due_at: iso(10 * MIN),
  });
  assert.equal((await hosts["h-1"]!.agent.status()).status, "out_of_sync");

  // fleet status: a host waiting for its wave is not synced (exit 2), and the table says why.
  const pending = await runCli(["fleet", "status", ...all.map((h) => h.url)]);
  assert.equal(pending.exitCode, 2, pending.stdout + pending.stderr);
  assert.match(pending.stdout, /^stats +h-2 +1\.0\.0 +running +healthy +waiting for wave 2 at /m);

  assert.deepEqual(await tickAll(9 * MIN), ["1.1.0", "1.0.0", "1.0.0"]);
  assert.deepEqual(await tickAll(10 * MIN), ["1.1.0", "1.1.0", "1.0.0"], "wave 1 at commit time + 1 interval");

  // Paused before wave 2 applied: it holds past any time, and resumes from the commit that unpauses.
  await commitAt(repo, { "apps/stats/app.yaml": spec("stats", "1.1.0", rollout(", paused: true")) }, T + 15 * 60);
  assert.deepEqual(await tickAll(60 * MIN), ["1.1.0", "1.1.0", "1.0.0"], "paused: wave 2 waits");
  assert.match((await reason("h-2")) ?? "", /^rollout paused \(wave 2 of 3 has not applied\)$/);

  await commitAt(repo, { "apps/stats/app.yaml": spec("stats", "1.1.0", rollout()) }, T + 70 * 60);
  assert.deepEqual(await tickAll(75 * MIN), ["1.1.0", "1.1.0", "1.0.0"], "resumed: wave 2 waits for its turn");
  assert.equal(await reason("h-2"), `waiting for wave 2 at ${iso(90 * MIN)}`);
  assert.deepEqual(await tickAll(90 * MIN), ["1.1.0", "1.1.0", "1.1.0"]);
  for (const host of all) assert.equal((await host.agent.status()).status, "synced", host.name);
  const done = await runCli(["fleet", "status", ...all.map((h) => h.url)]);
  assert.equal(done.exitCode, 0, done.stdout);
});
