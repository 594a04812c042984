/**
 * Embedding bc-gitops in an existing program: the program keeps its own HTTP server and routes,
 * runs the agent inside itself (no separate process, no second port), mounts the agent's control
 * API under `/gitops/`, and deploys apps through a custom runtime that wraps the library's default
 * runtime to log every deploy, upgrade and removal (the place to add your own policy, e.g. an
 * allow-list of app names, or a notification to your chat).
 *
 *   GITOPS_REPO=https://github.com/acme/gitops.git PORT=3000 bun examples/embedding/server.ts
 *   GITOPS_REPO=… deno run -A examples/embedding/server.ts
 *   curl localhost:3000/            # the program's own route
 *   curl localhost:3000/gitops/apps # the agent's control API, mounted in the program
 *
 * In your project, `bc-gitops` is the npm package; in this repository it resolves to `src/`.
 */
import { Buffer } from "node:buffer";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createAgent,
  createHandler,
  defaultRuntime,
  type Agent,
  type AppState,
  type Logger,
  type Runtime,
  type TickResult,
} from "bc-gitops";

/** Options of {@link startHost}. */
export interface HostOptions {
  /** The gitops repository (URL or local path). */
  repoUrl: string;
  /** Clone, workspaces and state of the embedded agent (default: bc-gitops's default). */
  localPath?: string;
  /** Port of the program's HTTP server (0: any free port). */
  port?: number;
  hostname?: string;
  /** Bearer token for the mutating calls of the mounted control API (`POST /gitops/reconcile`, …). */
  token?: string;
  /** Where the program logs (default: stdout). */
  log?: (line: string) => void;
}

/** The running program. */
export interface Host {
  /** `http://HOST:PORT` of the program's server. */
  url: string;
  agent: Agent;
  /** The first reconcile's result. */
  first: TickResult;
  /** Stops the agent (and so every app it runs), then the program's server. */
  close(): Promise<void>;
}

/**
 * Wraps `inner` (any runtime) so that each deploy, upgrade, reconfigure and removal is logged with
 * its duration and outcome. Every other method is forwarded as is: `resolveRevision` lets the agent
 * see same-version code changes, `hotReload` applies them, and `stopAll` stops apps without
 * deleting their workspaces at shutdown, so a wrapper must keep them.
 */
export function loggingRuntime(inner: Runtime, log: (line: string) => void): Runtime {
  const timed = async <T>(what: string, run: () => Promise<T>, describe: (result: T) => string): Promise<T> => {
    const started = performance.now();
    try {
      const result = await run();
      log(`${what}: ${describe(result)} in ${Math.round(performance.now() - started)} ms`);
      return result;
    } catch (error) {
      log(`${what} failed: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
  };
  const running = (state: AppState) => `${state.status}, revision ${state.revision ?? "?"}`;
  return {
    deploy: (spec) => timed(`deploy ${spec.name} ${spec.version}`, () => inner.deploy(spec), running),
    upgrade: (spec, oldVersion) =>
      timed(`upgrade ${spec.name} ${oldVersion} -> ${spec.version}`, () => inner.upgrade(spec, oldVersion), running),
    reconfigure: (spec) => timed(`reconfigure ${spec.name}`, () => inner.reconfigure(spec), running),
    remove: (name) =>
      timed(
        `remove ${name}`,
        () => inner.remove(name),
        () => "removed",
      ),
    getCurrentState: () => inner.getCurrentState(),
    ...(inner.hotReload && { hotReload: inner.hotReload.bind(inner) }),
    ...(inner.resolveRevision && { resolveRevision: inner.resolveRevision.bind(inner) }),
    ...(inner.restart && { restart: inner.restart.bind(inner) }),
    ...(inner.stopAll && { stopAll: inner.stopAll.bind(inner) }),
  };
}

/** Starts the program: its own server with the agent's API under `/gitops/`, then the agent's first reconcile. */
export async function startHost(options: HostOptions): Promise<Host> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const logger: Logger = {
    debug: () => {},
    info: (message) => log(`[gitops] ${message}`),
    warn: (message) => log(`[gitops] warning: ${message}`),
    error: (message) => log(`[gitops] error: ${message}`),
  };
  const agent = createAgent({
    repoUrl: options.repoUrl,
    ...(options.localPath !== undefined && { localPath: options.localPath }),
    ...(options.token !== undefined && { token: options.token }),
    listen: "off", // the program's own server carries the API
    logger,
    // A factory: the default runtime needs the agent's context (local path, checkout, reconcile trigger).
    runtime: (context) => loggingRuntime(defaultRuntime({ ...context, logger }), (line) => log(`[runtime] ${line}`)),
  });
  const api = createHandler(agent, { logger }); // before start(), so metrics count the first reconcile

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://host").pathname;
    if (path === "/gitops" || path.startsWith("/gitops/")) {
      void forward(req, res, api, "/gitops");
      return;
    }
    res.writeHead(path === "/" ? 200 : 404, { "content-type": "text/plain" });
    res.end(path === "/" ? "the existing program\n" : "not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 3000, options.hostname ?? "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the server has no TCP address");
  const url = `http://${options.hostname ?? "127.0.0.1"}:${address.port}`;
  const closeServer = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  let first: TickResult;
  try {
    first = await agent.start();
  } catch (error) {
    await agent.stop().catch(() => {});
    await closeServer();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    url,
    agent,
    first,
    close: () => (closing ??= agent.stop().finally(closeServer)),
  };
}

/** Hands a node:http request under `prefix` to a fetch-style handler, with the prefix removed. */
async function forward(
  req: IncomingMessage,
  res: ServerResponse,
  handler: (request: Request) => Promise<Response>,
  prefix: string,
): Promise<void> {
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
    url.pathname = url.pathname.slice(prefix.length) || "/";
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string") headers.set(name, value);
      else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    }
    const method = req.method ?? "GET";
    const body = method === "GET" || method === "HEAD" ? undefined : Buffer.concat(chunks);
    const response = await handler(new Request(url, { method, headers, ...(body && { body }) }));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  } catch (error) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
    res.end(`internal error: ${error instanceof Error ? error.message : String(error)}\n`);
  }
}

async function main(): Promise<void> {
  const repoUrl = process.env.GITOPS_REPO;
  if (!repoUrl) throw new Error("set GITOPS_REPO to the gitops repository (URL or local path)");
  const host = await startHost({
    repoUrl,
    port: Number(process.env.PORT ?? 3000),
    ...(process.env.GITOPS_LOCAL_PATH !== undefined && { localPath: process.env.GITOPS_LOCAL_PATH }),
    ...(process.env.GITOPS_TOKEN !== undefined && { token: process.env.GITOPS_TOKEN }),
  });
  console.log(
    `listening on ${host.url} (the agent's API under ${host.url}/gitops/); first reconcile: ${host.first.status}`,
  );
  const stop = () => void host.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

// Runs only when started directly; importing the module (as its test does) starts nothing.
// (Not `import.meta.main`: Node 20 lacks it, and Deno's type check does not know it here.)
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
