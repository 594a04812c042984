/**
 * What one agent's polls cost a shared remote (issue 14, the load model of docs/fleet.md), measured
 * on the wire through a byte-counting proxy on loopback:
 *  - a no-change poll (the agent's `git ls-remote` of one branch) over git:// (git daemon) and over
 *    smart HTTP (`git http-backend`, protocol v2): bytes each way and requests;
 *  - a change: the agent's `git fetch` of a commit that changes one spec, and a new host's clone,
 *    for repositories of 100 and 1000 apps;
 *  - how many polls per second `git daemon` answers on this machine (client and server share it).
 * Medians of RUNS runs.   bun scripts/bench/fleet.ts [runs]
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { exec, spawnProcess } from "../../src/exec.ts";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { BENCH_GIT_ENV, freePort, makeSpecRepo } from "./_fixtures.ts";
import { median, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 7);
const git = (cwd: string, ...args: string[]) => exec("git", args, { cwd, env: BENCH_GIT_ENV, timeoutMs: 120_000 });

/** Bytes a proxy saw on its connections since the last reset: up (client to server) and down. */
interface Counter {
  port: number;
  up: number;
  down: number;
  connections: number;
  reset(): void;
  server: Server;
}

/** A TCP proxy on loopback that forwards to `target` and counts every byte, both ways. */
async function countingProxy(target: number): Promise<Counter> {
  const counter = {
    port: 0,
    up: 0,
    down: 0,
    connections: 0,
    reset() {
      counter.up = counter.down = counter.connections = 0;
    },
  } as Counter;
  counter.server = createServer((client: Socket) => {
    counter.connections++;
    const upstream = createConnection({ host: "127.0.0.1", port: target });
    client.on("data", (d) => (counter.up += d.length));
    upstream.on("data", (d) => (counter.down += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => counter.server.listen(0, "127.0.0.1", resolve));
  counter.port = (counter.server.address() as { port: number }).port;
  return counter;
}

/**
 * Smart HTTP through `git http-backend` (CGI). Only the text exchanges of a poll go through it
 * (the runner passes text), which is all `ls-remote` needs.
 */
const httpRequests: string[] = [];

async function httpBackend(root: string): Promise<Server> {
  const server = createHttpServer(async (request: IncomingMessage, response: ServerResponse) => {
    httpRequests.push(
      `${request.method} ${request.url?.split("?")[0]?.replace(/^.*\//, "")} (${String(request.headers["git-protocol"] ?? "v0")})`,
    );
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const url = new URL(request.url ?? "/", "http://x");
    const result = await exec("git", ["http-backend"], {
      env: {
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        REQUEST_METHOD: request.method ?? "GET",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: request.headers["content-type"] ?? "",
        CONTENT_LENGTH: String(Buffer.concat(chunks).length),
        GIT_PROTOCOL: String(request.headers["git-protocol"] ?? ""),
      },
      input: Buffer.concat(chunks).toString("latin1"),
    });
    const split = result.stdout.indexOf("\r\n\r\n");
    const head = result.stdout.slice(0, split).split("\r\n");
    let status = 200;
    for (const line of head) {
      const [name, ...rest] = line.split(":");
      const value = rest.join(":").trim();
      if (name!.toLowerCase() === "status") status = Number(value.split(" ")[0]);
      else response.setHeader(name!, value);
    }
    response.writeHead(status);
    response.end(Buffer.from(result.stdout.slice(split + 4), "latin1"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** A bare repository of `count` specs; returns the work tree and the bare repository (named `<n>.git`). */
async function repository(count: number): Promise<{ work: string; bare: string }> {
  const work = await makeSpecRepo(count, "yaml");
  await git(work, "init", "-q", "-b", "main");
  await git(work, "add", "-A");
  await git(work, "commit", "-q", "-m", `${count} apps`);
  const bare = join(dirname(work), `bench-fleet-${count}-${process.pid}.git`);
  await git(work, "clone", "-q", "--bare", work, bare);
  return { work, bare };
}

const kb = (bytes: number) => (bytes / 1024).toFixed(2);
const cleanup: string[] = [];
const servers: Server[] = [];
let daemon: Awaited<ReturnType<typeof spawnProcess>> | undefined;
try {
  const repos = { 100: await repository(100), 1000: await repository(1000) };
  for (const r of Object.values(repos)) cleanup.push(r.work, r.bare);
  const base = dirname(repos[100].bare);
  const daemonPort = await freePort();
  daemon = await spawnProcess(
    "git",
    [
      "daemon",
      "--reuseaddr",
      "--export-all",
      `--base-path=${base}`,
      "--listen=127.0.0.1",
      `--port=${daemonPort}`,
      base,
    ],
    { env: { ...(process.env as Record<string, string>), ...BENCH_GIT_ENV } },
  );
  daemon.stdout.resume();
  daemon.stderr.resume();
  const proxy = await countingProxy(daemonPort);
  servers.push(proxy.server);
  const http = await httpBackend(base);
  servers.push(http);
  const httpProxy = await countingProxy((http.address() as { port: number }).port);
  servers.push(httpProxy.server);
  // The daemon takes a moment to listen.
  for (let i = 0; i < 100; i++) {
    const ok = await exec("git", ["ls-remote", `git://127.0.0.1:${daemonPort}/bench-fleet-100-${process.pid}.git`], {
      env: BENCH_GIT_ENV,
      allowExitCodes: [0, 128],
    });
    if (ok.exitCode === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  const rows: string[][] = [];
  for (const [count, { work, bare }] of Object.entries(repos)) {
    const name = bare.slice(base.length + 1);
    const urls = {
      "git://": `git://127.0.0.1:${proxy.port}/${name}`,
      "http://": `http://127.0.0.1:${httpProxy.port}/${name}`,
    };
    // A poll, as the agent makes it (_git-clone.ts #lsRemote).
    for (const [scheme, url] of Object.entries(urls)) {
      const counter = scheme === "git://" ? proxy : httpProxy;
      const up: number[] = [];
      const down: number[] = [];
      const connections: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        counter.reset();
        httpRequests.length = 0;
        await git(base, "ls-remote", "--refs", "--exit-code", "--", url, "refs/heads/main");
        up.push(counter.up);
        down.push(counter.down);
        connections.push(counter.connections);
      }
      const requests = scheme === "http://" ? ` (${httpRequests.join(", ")})` : "";
      rows.push([
        `no-change poll (ls-remote), ${scheme}, ${count} apps${requests}`,
        kb(median(up)),
        kb(median(down)),
        String(median(connections)),
      ]);
    }
    // A new host: a clone of the branch, as the agent makes it.
    const clone = join(base, `clone-${count}-${process.pid}`);
    cleanup.push(clone);
    proxy.reset();
    await git(base, "clone", "--bare", "--single-branch", "--no-tags", "--branch=main", "--", urls["git://"], clone);
    rows.push([`first clone, git://, ${count} apps`, kb(proxy.up), kb(proxy.down), String(proxy.connections)]);
    // A change: one spec's version, then the agent's fetch.
    const up: number[] = [];
    const down: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await writeFile(join(work, "apps", "app_7", "app.yaml"), `name: app_7\nversion: "7.${i}.0"\n`);
      await git(work, "commit", "-q", "-am", `bump ${i}`);
      await git(work, "push", "-q", bare, "HEAD:refs/heads/main");
      proxy.reset();
      await exec("git", ["fetch", "--force", "--no-tags", "--", "origin", "+refs/heads/main:refs/heads/main"], {
        env: { ...BENCH_GIT_ENV, GIT_DIR: clone },
      });
      up.push(proxy.up);
      down.push(proxy.down);
    }
    rows.push([`fetch of a one-spec change, git://, ${count} apps`, kb(median(up)), kb(median(down)), "1"]);
  }

  // Capacity: polls per second the daemon answers, 8 at a time, for about 5 s.
  const target = `git://127.0.0.1:${daemonPort}/${repos[100].bare.slice(base.length + 1)}`;
  let done = 0;
  const until = performance.now() + 5000;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (performance.now() < until) {
        await git(base, "ls-remote", "--refs", "--exit-code", "--", target, "refs/heads/main");
        done++;
      }
    }),
  );
  const perSecond = done / 5;

  process.stdout.write(
    `Fleet polling on ${runtimeName} ${runtimeVersion} and git ${(await git(base, "--version")).stdout.trim().replace("git version ", "")}, median of ${RUNS} runs\n\n`,
  );
  process.stdout.write(`${table(["exchange", "KiB up (agent to remote)", "KiB down", "connections"], rows)}\n\n`);
  process.stdout.write(
    `git daemon on this machine answered ${perSecond.toFixed(0)} polls/s (8 concurrent \`git ls-remote\`, client and server on the same 2 cores)\n`,
  );
} finally {
  await daemon?.terminate(2000);
  for (const server of servers) server.close();
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
}
