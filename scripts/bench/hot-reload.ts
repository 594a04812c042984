/**
 * Hot reload benchmark (issue 5), in one run on one machine, with the same 10-module (~48 KB) app:
 *  - commit-to-new-code latency of a same-version code change: hot reload (embedded, worker) versus
 *    an upgrade (restart) of the app, from `git push` done to the new code answering, the agent
 *    reconciling right after the push (also from the moment the commit was fetched); the same
 *    embedded reload driven by a signed push webhook naming the new head, next to a bare `git fetch`
 *    of that commit measured in the same run; versus
 *    `pm2 reload` of the same HTTP app (fork and cluster mode), from the file change;
 *  - failed requests during each, under a steady load (two request loops on loopback);
 *  - RSS after 10, 100 and 1000 reloads, embedded versus worker (a child process per variant).
 * pm2 is installed for the benchmark only, into .bench/pm2 (`npm install --no-save pm2`).
 *
 *   bun scripts/bench/hot-reload.ts [--runs 7] [--reloads 1000] [--no-pm2] [--write docs/benchmarks.md]
 */
import { cpus, totalmem, tmpdir } from "node:os";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { createAgent } from "../../src/agent.ts";
import { signWebhook } from "../../src/webhook.ts";
import { exec } from "../../src/exec.ts";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { BENCH_GIT_ENV, freePort } from "./_fixtures.ts";
import { PM2_SERVER, versionModule, writeBenchApp } from "./_reload-app.ts";
import { median, ms, table } from "./_stats.ts";

const args = process.argv.slice(2);
const option = (name: string, fallback: string) =>
  args.includes(name) ? (args[args.indexOf(name) + 1] ?? fallback) : fallback;
const RUNS = Number(option("--runs", "7"));
const RELOADS = Number(option("--reloads", "1000"));
const WRITE = args.includes("--write") ? option("--write", "docs/benchmarks.md") : undefined;
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const LOAD_SCRIPT = fileURLToPath(new URL("./_reload-load.ts", import.meta.url));
const git = (cwd: string, ...argv: string[]) => exec("git", argv, { cwd, env: BENCH_GIT_ENV });
const sleep = (n: number) => new Promise((resolve) => setTimeout(resolve, n));

async function version(port: number): Promise<string | undefined> {
  const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
  return ((await response.json()) as { version?: string }).version;
}

/** Polls until `port` answers `expected` (used only to wait for a start, not timed). */
async function answers(port: number, expected: string, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while ((await version(port).catch(() => undefined)) !== expected) {
    if (Date.now() > deadline) throw new Error(`port ${port} never answered ${expected}`);
    await sleep(5);
  }
}

/** Epoch milliseconds with sub-millisecond resolution, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();

/**
 * Starts the load and probe process (./_reload-load.ts) on `port`; `measure()` resolves once it
 * saw `expected` answered, with when that was and the requests it sent and lost.
 */
async function client(
  port: number,
  expected: string,
): Promise<{ measure(): Promise<{ liveAt: number; total: number; failed: number }> }> {
  const child = spawn(
    process.execPath,
    [...(runtimeName === "deno" ? ["run", "-A"] : []), LOAD_SCRIPT, String(port), expected],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    if (out.startsWith("ready\n")) ready();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  await Promise.race([isReady, exited]);
  return {
    async measure() {
      const code = await exited;
      const last = JSON.parse(out.trim().split("\n").pop() ?? "{}") as {
        liveAt: number | null;
        total: number;
        failed: number;
      };
      if (code !== 0 || last.liveAt === null)
        throw new Error(`the client on port ${port} never saw ${expected} (exit ${code})`);
      return { liveAt: last.liveAt, total: last.total, failed: last.failed };
    },
  };
}

interface Sample {
  fromChange: number;
  fromFetch?: number;
  fromAction?: number;
  failed: number;
  total: number;
}

// ---------------------------------------------------------------------------------------------
// The agent: one gitops repo, three copies of the app on fixed ports.

const root = await mkdtemp(join(tmpdir(), "bc-gitops-bench-reload-"));
const work = join(root, "work");
const bare = join(root, "remote.git");
const apps = [
  { app: "hot_embedded", isolation: "embedded", action: "hot_reload" },
  { app: "hot_worker", isolation: "worker", action: "hot_reload" },
  { app: "upgrade_embedded", isolation: "embedded", action: "upgrade" },
] as const;
/** Each measured change: an app, and whether a signed webhook (rather than a call to reconcile) starts the tick. */
const variants = [
  ...apps.map((a) => ({ ...a, key: a.app, webhook: false })),
  { ...apps[0], key: "webhook_embedded", webhook: true },
];
const SECRET = "bench-webhook-secret";
const fetchClone = join(root, "fetch-baseline.git");
const fetches: number[] = [];
const ports: Record<string, number> = {};
const specText = (app: string, isolation: string, ver: string) =>
  `name: ${app}\nversion: "${ver}"\nsource: { type: path, path: code/${app} }\nisolation: ${isolation}\nenv: { port: ${ports[app]} }\n`;
for (const { app, isolation } of apps) {
  ports[app] = await freePort();
  await writeBenchApp(join(work, "code", app), "v0");
  await mkdir(join(work, "apps", app), { recursive: true });
  await writeFile(join(work, "apps", app, "app.yaml"), specText(app, isolation, "1.0.0"));
}
await git(work, "init", "-q", "-b", "main");
await git(work, "add", "-A");
await git(work, "commit", "-q", "-m", "apps");
await git(root, "clone", "-q", "--bare", work, bare);
await git(root, "clone", "-q", "--bare", bare, fetchClone);

let fetchedAt: number | undefined;
const agent = createAgent({
  repoUrl: bare,
  localPath: join(root, "agent"),
  listen: "127.0.0.1:0",
  webhookSecret: SECRET,
  reconcileInterval: "1h",
  reloadBudget: 1_000_000,
});
let ticked: (() => void) | undefined;
agent.on("bc_gitops:reconcile:stop", () => ticked?.());
agent.on("bc_gitops:git:pull", () => void (fetchedAt ??= now()));
let actionAt: number | undefined;
for (const name of ["bc_gitops:hot_reload:start", "bc_gitops:upgrade:start"] as const)
  agent.on(name, () => void (actionAt = now()));
const samples: Record<string, Sample[]> = {};
const notes: string[] = [];
try {
  const first = await agent.start();
  if (first.status !== "synced") throw new Error(`first tick: ${first.status} ${JSON.stringify(first.errors)}`);
  for (let run = 1; run <= RUNS; run++) {
    // Interleaved, so machine noise hits every variant alike.
    for (const { app, isolation, action, key, webhook } of variants) {
      const tag = `${key}-r${run}`;
      await writeFile(join(work, "code", app, "lib", "version.js"), versionModule(tag));
      if (action === "upgrade")
        await writeFile(join(work, "apps", app, "app.yaml"), specText(app, isolation, `1.0.${run}`));
      await git(work, "add", "-A");
      await git(work, "commit", "-q", "-m", tag);
      const probe = await client(ports[app]!, tag);
      const head = (await git(work, "rev-parse", "HEAD")).stdout.trim();
      await git(work, "push", "-q", bare, "HEAD:refs/heads/main");
      const pushed = now();
      fetchedAt = undefined;
      actionAt = undefined;
      let result;
      if (webhook) {
        // What a git host sends on a push: the tick fetches `after` without ls-remote first.
        const body = JSON.stringify({ ref: "refs/heads/main", after: head });
        const tick = new Promise<void>((resolve) => (ticked = resolve));
        const answer = await fetch(`http://${agent.address}/webhook`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(body, SECRET) },
          body,
        });
        if (answer.status !== 202) throw new Error(`webhook answered ${answer.status}: ${await answer.text()}`);
        await tick;
        ticked = undefined;
        result = { actions: [{ type: "hot_reload", app, outcome: "ok" }], errors: [] };
        if ((await agent.status()).last_commit !== head) throw new Error(`the webhook tick did not apply ${head}`);
      } else result = await agent.reconcile();
      const { liveAt: live, total, failed } = await probe.measure();
      if (webhook) {
        const t = now();
        await git(fetchClone, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main");
        fetches.push(now() - t);
      }
      const done = result.actions.map((a) => `${a.type} ${a.app} ${a.outcome}`).join(", ");
      if (done !== `${action} ${app} ok`)
        throw new Error(`run ${run} of ${app}: ${done} ${JSON.stringify(result.errors)}`);
      (samples[key] ??= []).push({
        fromChange: live - pushed,
        ...(fetchedAt !== undefined ? { fromFetch: live - fetchedAt } : {}),
        ...(actionAt !== undefined ? { fromAction: live - actionAt } : {}),
        failed,
        total,
      });
    }
  }
} finally {
  await agent.stop();
}

// ---------------------------------------------------------------------------------------------
// pm2 reload of the same app (node:http wrapper), fork and cluster mode.

const pm2Dir = join(ROOT, ".bench", "pm2");
const pm2Bin = join(pm2Dir, "node_modules", "pm2", "bin", "pm2");
let pm2Version: string | undefined;
if (!args.includes("--no-pm2")) {
  try {
    if (!(await stat(pm2Bin).catch(() => undefined))) {
      await mkdir(pm2Dir, { recursive: true });
      // A package.json of its own, or npm would install into the nearest one up the tree (this project's).
      await writeFile(join(pm2Dir, "package.json"), '{ "private": true }\n');
      await exec("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", "pm2"], {
        cwd: pm2Dir,
        timeoutMs: 300_000,
      });
    }
    const pm2Env = { PM2_HOME: join(root, "pm2-home"), PM2_DISABLE_VERSION_CHECK: "true" };
    const pm2 = (...argv: string[]) => exec("node", [pm2Bin, ...argv], { env: pm2Env, timeoutMs: 120_000 });
    pm2Version = (await pm2("--version")).stdout.trim().split("\n").pop();
    try {
      for (const mode of ["fork", "cluster"] as const) {
        const dir = join(root, "pm2", mode);
        const port = await freePort();
        await writeBenchApp(dir, "v0");
        await writeFile(join(dir, "server.cjs"), PM2_SERVER);
        await exec(
          "node",
          [pm2Bin, "start", join(dir, "server.cjs"), "--name", mode, ...(mode === "cluster" ? ["-i", "2"] : [])],
          { env: { ...pm2Env, PORT: String(port) }, timeoutMs: 120_000 },
        );
        await answers(port, "v0");
        for (let run = 1; run <= Math.min(RUNS, 5); run++) {
          const tag = `${mode}-r${run}`;
          const probe = await client(port, tag);
          await writeFile(join(dir, "lib", "version.js"), versionModule(tag));
          const changed = now();
          await pm2("reload", mode);
          const { liveAt: live, total, failed } = await probe.measure();
          (samples[`pm2_${mode}`] ??= []).push({ fromChange: live - changed, failed, total });
        }
      }
    } finally {
      await pm2("kill").catch(() => {});
    }
  } catch (error) {
    notes.push(`pm2 could not be measured: ${(error as Error).message.split("\n")[0]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// RSS after N reloads, each variant in a child process of its own.

const rss: Record<string, Record<number, number>> = {};
for (const isolation of ["embedded", "worker", "baseline"]) {
  const script = fileURLToPath(new URL("./_reload-rss-once.ts", import.meta.url));
  const runner = runtimeName === "deno" ? ["run", "-A", "--v8-flags=--expose-gc"] : ["--expose-gc"];
  const { stdout } = await exec(process.execPath, [...runner, script, isolation, String(RELOADS)], {
    timeoutMs: 600_000,
  });
  rss[isolation] = JSON.parse(stdout.trim().split("\n").pop()!) as Record<number, number>;
}
await rm(root, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------------
// Report.

const LABELS: Record<string, string> = {
  hot_embedded: "hot reload, `embedded`",
  hot_worker: "hot reload, `worker`",
  upgrade_embedded: "upgrade (restart), `embedded`",
  webhook_embedded: "hot reload, `embedded`, signed push webhook (from the push: webhook, fetch, reload)",
  pm2_fork: "`pm2 reload`, fork mode",
  pm2_cluster: "`pm2 reload`, cluster mode (2 instances)",
};
const med = (key: string, pick: (s: Sample) => number | undefined) => {
  const values = (samples[key] ?? []).map(pick).filter((v): v is number => v !== undefined);
  return values.length ? median(values) : undefined;
};
const failedOf = (key: string) => (samples[key] ?? []).reduce((n, s) => n + s.failed, 0);
const totalOf = (key: string) => (samples[key] ?? []).reduce((n, s) => n + s.total, 0);
const rows = Object.keys(LABELS)
  .filter((key) => samples[key]?.length)
  .map((key) => {
    const fetchMs = med(key, (s) => s.fromFetch);
    const actionMs = med(key, (s) => s.fromAction);
    const show = (v: number | undefined) => (v === undefined ? "—" : ms(v));
    return [
      LABELS[key]!,
      String(samples[key]!.length),
      ms(med(key, (s) => s.fromChange)!),
      show(fetchMs),
      show(actionMs),
      `${failedOf(key)} / ${totalOf(key)}`,
    ];
  });
const mb = (bytes: number | undefined) => (bytes === undefined ? "—" : (bytes / 1024 / 1024).toFixed(1));
const rssRows = [10, 100, 1000]
  .filter((n) => n <= RELOADS)
  .map((n) => [String(n), mb(rss.embedded?.[n]), mb(rss.worker?.[n]), mb(rss.baseline?.[n])]);

const hotEmbedded = med("hot_embedded", (s) => s.fromFetch) ?? Infinity;
const hotWorker = med("hot_worker", (s) => s.fromFetch) ?? Infinity;
const webhookLive = med("webhook_embedded", (s) => s.fromChange) ?? Infinity;
const pm2Fastest = Math.min(
  med("pm2_fork", (s) => s.fromChange) ?? Infinity,
  med("pm2_cluster", (s) => s.fromChange) ?? Infinity,
);
const slowestHot = Math.max(
  med("hot_embedded", (s) => s.fromChange) ?? Infinity,
  med("hot_worker", (s) => s.fromChange) ?? Infinity,
);
const last = [1000, 100, 10].find((n) => n <= RELOADS) ?? 10;
const workerGrowth = (rss.worker?.[last] ?? NaN) / (rss.worker?.[10] ?? NaN) - 1;
const met = (ok: boolean) => (ok ? "**met**" : "**not met**");
const hotFailures = failedOf("hot_embedded") + failedOf("hot_worker");
const lines = [
  "## Hot reload",
  "",
  `Measured by \`bun scripts/bench/hot-reload.ts\` (${RUNS} runs per agent variant, ${Math.min(RUNS, 5)} per pm2 mode, medians; one run of ${RELOADS} reloads per RSS variant) on ${cpus().length} × ${cpus()[0]?.model.trim() ?? "CPU"}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, ${runtimeName} ${runtimeVersion}${pm2Version ? `, pm2 ${pm2Version} on Node ${(await exec("node", ["--version"])).stdout.trim()}` : ""}.`,
  "The app: 10 ES modules, about 48 KB, a fetch app on a fixed port (pm2 runs it behind a node:http wrapper). Each change",
  "rewrites one module (`lib/version.js`). Agent variants: commit, `git push` to a local bare repository, then",
  "`agent.reconcile()`; the clock runs from the push (then from the `git:pull` event, when the commit was fetched, and from",
  "the `hot_reload:start` / `upgrade:start` event, when the runtime got the work) until a request answers with the new code. pm2: from the file write, `pm2 reload <app>` run at once, until the new code",
  "answers. During every change a client process of its own (scripts/bench/_reload-load.ts) keeps a steady load of two",
  "request loops (one request per ms each at most) and probes for the new code every millisecond.",
  "",
  table(
    [
      "change applied by",
      "runs",
      "new code live after the push / file change (ms)",
      "after the fetch (ms)",
      "after the action started (ms)",
      "failed / total requests",
    ],
    rows,
  ),
  "",
  table(["hot reloads", "RSS `embedded` (MB)", "RSS `worker` (MB)", "bare Worker churn, no agent (MB)"], rssRows),
  "",
  `- New code live within 10 ms of the fetch (\`embedded\`, issue 13): ${ms(hotEmbedded)} ms, ${met(hotEmbedded <= 10)}.`,
  `- New code live within 40 ms of the fetch (\`worker\`, issue 13): ${ms(hotWorker)} ms, ${met(hotWorker <= 40)}.`,
  `- Signed webhook to new code live within 2× a bare \`git fetch\` of the commit (${ms(median(fetches))} ms in this run): ${ms(webhookLive)} ms, ${(webhookLive / median(fetches)).toFixed(2)}×, ${met(webhookLive <= 2 * median(fetches))}.`,
  Number.isFinite(pm2Fastest)
    ? `- At least 10 times faster than \`pm2 reload\` (the faster pm2 mode: ${ms(pm2Fastest)} ms): from the fetch, \`embedded\` is ${(pm2Fastest / hotEmbedded).toFixed(0)}× and \`worker\` ${(pm2Fastest / hotWorker).toFixed(0)}× faster, ${met(pm2Fastest / Math.max(hotEmbedded, hotWorker) >= 10)}; from the push (git fetch included), ${(pm2Fastest / slowestHot).toFixed(0)}× for the slower of the two.`
    : "- At least 10 times faster than `pm2 reload`: not measured (pm2 unavailable).",
  `- Zero failed requests during hot reloads: ${hotFailures} failed, ${met(hotFailures === 0)} (upgrade: ${failedOf("upgrade_embedded")}, pm2 fork: ${failedOf("pm2_fork")}, pm2 cluster: ${failedOf("pm2_cluster")}).`,
  `- \`worker\` RSS after ${last} reloads within 20% of after 10: ${(workerGrowth * 100).toFixed(0)}% more, ${met(workerGrowth <= 0.2)} (bare Workers started and terminated without the agent grow by ${(((rss.baseline?.[last] ?? NaN) / (rss.baseline?.[10] ?? NaN) - 1) * 100).toFixed(0)}% on their own); \`embedded\` grows by ${mb((rss.embedded?.[last] ?? 0) - (rss.embedded?.[10] ?? 0))} MB over the same reloads.`,
  ...notes.map((n) => `- ${n}.`),
  "",
  "Where the time goes: from the push, the tick's git fetch (`ls-remote`, `fetch`) takes most of the time; a webhook-driven",
  "tick skips the `ls-remote`. Between the fetch and the action (issue 13): reading the commit's trees through the running",
  "`cat-file --batch` (only changed blobs), the sparse snapshot of the path sources (unchanged directories moved over,",
  "unchanged files hard-linked, every small file system call synchronous: see src/_fs-sync.ts), and the plan. The runtime's part (last",
  "column) is the revision directory (hard links to the snapshot, named by the git tree id: no hashing), the module diff",
  "(same inode: unchanged, unread) and the import; a `worker`",
  "reload adds a Worker start (about 20 ms on Bun). The `worker` RSS growth is Bun's own: its JS heap stays flat (4.7 MB",
  "after 10 reloads, 4.8 MB after 400, measured with `heapUsed` after a GC), and bare Workers grow RSS the same way.",
  "The machine is a shared VM: absolute numbers vary with load by a factor of 2 or more between runs.",
  "",
];
const section = lines.join("\n");
process.stdout.write(`${section}\n`);
if (WRITE) {
  // The section is replaced in place (between its markers) so other sections of the file are untouched.
  const file = join(ROOT, WRITE);
  const begin = "<!-- bench:hot-reload:begin -->";
  const end = "<!-- bench:hot-reload:end -->";
  const current = await readFile(file, "utf8").catch(() => "# Benchmarks\n");
  const block = `${begin}\n${section}${end}\n`;
  const at = current.indexOf(begin);
  const next =
    at >= 0
      ? current.slice(0, at) + block + current.slice(current.indexOf(end) + end.length + 1)
      : `${current.trimEnd()}\n\n${block}`;
  await writeFile(file, next);
}
