import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import {
  connect as connectTcp,
  createServer as createTcpServer,
  type Server as TcpServer,
  type Socket,
} from "node:net";
import type { TestContext } from "node:test";
import { HealthMonitor, httpProbe, moduleProbe, probeFor, tcpProbe, type Probe } from "../src/health.ts";
import type { AppHealth } from "../src/runtime.ts";
import { AppSpec } from "../src/spec.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";

/** A real HTTP server whose /health answers `status.code`; everything else 404. */
async function flippingServer(t: TestContext): Promise<{ port: number; status: { code: number }; paths: string[] }> {
  const status = { code: 200 };
  const paths: string[] = [];
  const server: HttpServer = createHttpServer((req, res) => {
    paths.push(req.url ?? "");
    res.writeHead(req.url === "/health" ? status.code : 404).end("body");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { port: (server.address() as { port: number }).port, status, paths };
}

/**
 * A TCP listener on a loopback address of its own (127.x.y.z): once it is closed, no other test
 * listening on a reused port number of 127.0.0.1 can answer for it.
 */
async function tcpListener(t: TestContext): Promise<{ host: string; port: number; close(): Promise<void> }> {
  const host = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 250)}`;
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }).then(() => refused(host, port)));
  t.after(close);
  return { host, port, close };
}

/**
 * Resolves once a connection to `host:port` is refused. Deno's `server.close` calls back before
 * its listening socket is gone from the kernel, so a probe right after it can still connect.
 */
async function refused(host: string, port: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = connectTcp({ host, port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (!connected) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${host}:${port} still accepts connections 2 s after its server closed`);
}

function monitor(t: TestContext, probe: Probe, extra: Partial<ConstructorParameters<typeof HealthMonitor>[0]> = {}) {
  const events: TelemetryEvent[] = [];
  const changes: [AppHealth, AppHealth][] = [];
  const m = new HealthMonitor({
    app: "web",
    probe,
    intervalMs: 60_000,
    timeoutMs: 2000,
    emit: (name, measurements = {}, metadata = {}) => events.push({ name, measurements, metadata }),
    onChange: (from, to) => changes.push([from, to]),
    ...extra,
  });
  t.after(() => m.stop());
  return { m, events, changes };
}

async function sequence(m: HealthMonitor, n: number): Promise<AppHealth[]> {
  const out: AppHealth[] = [];
  for (let i = 0; i < n; i++) out.push(await m.checkNow());
  return out;
}

test("an http check is healthy on 2xx, and it takes three failures in a row to turn unhealthy and one success to recover", async (t) => {
  const server = await flippingServer(t);
  const { m, events, changes } = monitor(t, httpProbe({ host: "127.0.0.1", port: server.port, path: "/health" }));
  assert.equal(m.health, "unknown");
  assert.deepEqual(await sequence(m, 1), ["healthy"]);
  server.status.code = 500;
  assert.deepEqual(await sequence(m, 3), ["healthy", "healthy", "unhealthy"]);
  assert.match(m.lastError ?? "", /GET \/health answered 500/);
  assert.deepEqual(await sequence(m, 1), ["unhealthy"]);
  server.status.code = 204;
  assert.deepEqual(await sequence(m, 1), ["healthy"]);
  assert.equal(m.lastError, undefined);
  assert.deepEqual(changes, [
    ["unknown", "healthy"],
    ["healthy", "unhealthy"],
    ["unhealthy", "healthy"],
  ]);
  assert.ok(server.paths.every((p) => p === "/health"));

  const checks = events.filter((e) => e.name === "bc_gitops:health:check");
  assert.deepEqual(
    checks.map((e) => e.metadata.ok),
    [true, false, false, false, false, true],
  );
  for (const check of checks) {
    assert.equal(check.metadata.app, "web");
    assert.equal(typeof check.measurements.duration_ms, "number");
  }
  const transitions = events
    .filter((e) => e.name === "bc_gitops:health:change")
    .map((e) => [e.metadata.from, e.metadata.to]);
  assert.deepEqual(transitions, changes);
});

test("an app that never passes goes from unknown to unhealthy after the threshold", async (t) => {
  const server = await flippingServer(t);
  server.status.code = 503;
  const { m } = monitor(t, httpProbe({ host: "127.0.0.1", port: server.port, path: "/health" }), { threshold: 2 });
  assert.deepEqual(await sequence(m, 3), ["unknown", "unhealthy", "unhealthy"]);
});

test("a tcp check passes while something listens and fails once it is closed", async (t) => {
  const listener = await tcpListener(t);
  const { m } = monitor(t, tcpProbe({ host: listener.host, port: listener.port }));
  assert.deepEqual(await sequence(m, 2), ["healthy", "healthy"]);
  await listener.close();
  assert.deepEqual(await sequence(m, 3), ["healthy", "healthy", "unhealthy"]);
  assert.match(m.lastError ?? "", new RegExp(`connecting to ${listener.host.replaceAll(".", "\\.")}:${listener.port}`));
});

test("a module check fails when health() returns false or throws", async (t) => {
  const answers: (() => unknown)[] = [
    () => true,
    () => false,
    () => Promise.reject(new Error("db down")),
    async () => true,
  ];
  const { m } = monitor(
    t,
    moduleProbe(() => answers.shift()!()),
    { threshold: 1 },
  );
  assert.deepEqual(await sequence(m, 1), ["healthy"]);
  assert.deepEqual(await sequence(m, 1), ["unhealthy"]);
  assert.equal(m.lastError, "health() returned false");
  assert.deepEqual(await sequence(m, 1), ["unhealthy"]);
  assert.equal(m.lastError, "db down");
  assert.deepEqual(await sequence(m, 1), ["healthy"]);
});

test("a check that outlives its timeout fails", async (t) => {
  const hung = createHttpServer(() => {}); // accepts, never answers
  await new Promise<void>((resolve) => hung.listen(0, "127.0.0.1", resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        hung.close(() => resolve());
        hung.closeAllConnections();
      }),
  );
  const port = (hung.address() as { port: number }).port;
  const { m } = monitor(t, httpProbe({ host: "127.0.0.1", port, path: "/" }), { timeoutMs: 150, threshold: 1 });
  assert.equal(await m.checkNow(), "unhealthy");
  assert.equal(m.lastError, "no answer within 150 ms");
});

test("started checks run on the interval until stopped, and a check asked for during a running one joins it", async (t) => {
  let calls = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const { m, events } = monitor(
    t,
    async () => {
      calls++;
      if (calls === 1) await gate;
    },
    { intervalMs: 20 },
  );
  const first = m.checkNow();
  const joined = m.checkNow();
  assert.equal(first, joined);
  release();
  assert.equal(await first, "healthy");
  assert.equal(calls, 1);
  m.start();
  const deadline = Date.now() + 10_000;
  while (calls < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(calls >= 4, `scheduled checks ran (${calls})`);
  m.stop();
  await new Promise((resolve) => setTimeout(resolve, 30)); // let a check in flight finish
  const after = calls;
  const checksAfter = events.length;
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(calls, after, "no check runs after stop");
  assert.equal(events.length, checksAfter);
  assert.equal(await m.checkNow(), "healthy", "a stopped monitor keeps its last health");
});

test("probeFor builds the probe the spec asks for, on the address it is given", async (t) => {
  const server = await flippingServer(t);
  const spec = (health: Record<string, unknown>) => AppSpec.parse({ name: "web", version: "1", health }).health;
  const at = { host: "127.0.0.1", port: server.port };
  assert.equal(probeFor(spec({ type: "none" }), at), undefined);
  const probe = (health: Record<string, unknown>, target: Parameters<typeof probeFor>[1] = at) =>
    probeFor(spec(health), target)!(new AbortController().signal);
  await probe({ type: "http", path: "/health" });
  await assert.rejects(probe({ type: "http" }), /GET \/ answered 404/);
  await probe({ type: "tcp" });
  await probe({ type: "custom" }, { ...at, module: () => true });
  assert.throws(() => probeFor(spec({ type: "module" }), at), /export health\(instance, ctx\)/);
});
