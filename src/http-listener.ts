/**
 * The HTTP listener the agent opens for fetch apps (SPEC section 3): `Bun.serve` on Bun,
 * `Deno.serve` on Deno, `node:http` on Node (requests and responses converted to and from
 * `Request`/`Response`, bodies streamed). The handler is a mutable reference read once per
 * request, so swapping it (hot reload) is atomic: a request runs entirely on the old or the new one.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { nativeServe, type NativeServer } from "./_platform.ts";
import { GitopsError, messageOf } from "./errors.ts";

/** A web-standard request handler: a fetch app's `fetch`, or whatever the agent serves. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Options of {@link listen}. */
export interface ListenOptions {
  /** Address to bind, e.g. `127.0.0.1` or `0.0.0.0`. */
  host: string;
  /** Port to bind; 0 lets the OS choose (see {@link HttpListener.port}). */
  port: number;
  handler: FetchHandler;
  /** Called with whatever a handler throws (or a non-Response it returns); the client gets a 500. */
  onError?: (error: unknown) => void;
  /** How long {@link HttpListener.close} waits for open requests before dropping them (default 5000 ms). */
  closeTimeoutMs?: number;
  /** `node` forces the `node:http` server even on Bun and Deno (tests of that path); default: the runtime's own. */
  engine?: "native" | "node";
}

/** A listening HTTP server with a swappable handler. */
export interface HttpListener {
  readonly host: string;
  /** The bound port (the OS-assigned one when asked for port 0). */
  readonly port: number;
  /** The current handler; assigning it takes effect for the next request. */
  handler: FetchHandler;
  /** Stops listening; waits up to `closeTimeoutMs` for open requests, then drops them. Idempotent. */
  close(): Promise<void>;
}

/**
 * Binds `host:port` and serves `handler`. Rejects with a `GitopsError` (`E_RUNTIME`, `backoff`)
 * naming the address when it cannot be bound (taken port, unknown host).
 */
export async function listen(options: ListenOptions): Promise<HttpListener> {
  const onError = options.onError ?? (() => {});
  let current = options.handler;
  const failed = (error: unknown): Response => {
    onError(error);
    return new Response("internal server error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
  };
  const handler = async (request: Request): Promise<Response> => {
    try {
      const response = await current(request);
      if (response instanceof Response) return response;
      return failed(new TypeError(`the app's fetch() returned ${typeof response}, not a Response`));
    } catch (error) {
      return failed(error);
    }
  };
  let server: NativeServer;
  try {
    const address = { hostname: options.host, port: options.port, onError: failed };
    server = nativeServe && options.engine !== "node" ? nativeServe(handler, address) : await nodeServe(handler, address);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const why = code === "EADDRINUSE" ? "the address is in use" : messageOf(error);
    throw new GitopsError(`cannot listen on ${options.host}:${options.port}: ${why}`, { code: "E_RUNTIME", retry: "backoff", cause: error });
  }
  const closeTimeoutMs = options.closeTimeoutMs ?? 5000;
  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port: server.port,
    get handler() {
      return current;
    },
    set handler(next: FetchHandler) {
      current = next;
    },
    close() {
      closing ??= (async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const deadline = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), closeTimeoutMs)));
        const graceful = server.close(false).then(() => "closed" as const);
        try {
          if ((await Promise.race([graceful, deadline])) === "late") await server.close(true);
        } finally {
          clearTimeout(timer);
        }
      })();
      return closing;
    },
  };
}

/** `node:http` behind the native-server signature (Node has neither `Bun.serve` nor `Deno.serve`). */
async function nodeServe(handler: FetchHandler, options: { hostname: string; port: number }): Promise<NativeServer> {
  const sockets = new Set<Socket>();
  let port = options.port;
  const server = createServer((req, res) => void respond(req, res, handler, `${options.hostname}:${port}`));
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  port = typeof address === "object" && address !== null ? address.port : options.port;
  let closed: Promise<void> | undefined;
  return {
    hostname: options.hostname,
    port,
    close(force) {
      closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (force) for (const socket of sockets) socket.destroy();
      return closed;
    },
  };
}

async function respond(req: IncomingMessage, res: ServerResponse, handler: FetchHandler, fallbackHost: string): Promise<void> {
  const aborted = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) aborted.abort();
  });
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    try {
      headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    } catch {
      // A header the Fetch API refuses (invalid characters) is dropped rather than failing the request.
    }
  }
  let url: URL;
  try {
    url = new URL(req.url ?? "/", `http://${req.headers.host ?? fallbackHost}`);
  } catch {
    url = new URL(req.url ?? "/", `http://${fallbackHost}`);
  }
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  const init: RequestInit & { duplex?: "half" } = {
    method,
    headers,
    signal: aborted.signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {}),
  };
  // The handler already turns its own failures into a 500; this only guards the conversion.
  let response: Response;
  try {
    response = await handler(new Request(url, init));
  } catch {
    response = new Response("internal server error\n", { status: 500 });
  }
  const out: Record<string, string | string[]> = {};
  response.headers.forEach((value, key) => {
    if (key !== "set-cookie") out[key] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) out["set-cookie"] = cookies;
  res.writeHead(response.status, response.statusText, out);
  if (!response.body || method === "HEAD") {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
      if (res.destroyed) break;
    }
    res.end();
  } catch {
    res.destroy(); // the body stream failed mid-way: the client must see a broken response, not a short one
  } finally {
    if (res.destroyed) await reader.cancel().catch(() => {});
  }
}
