/**
 * Serves a web-standard `Request -> Response` handler on a TCP address: `Bun.serve` on Bun,
 * `Deno.serve` on Deno, `node:http` on Node (the choice is made here, once; on `node:http`
 * requests and responses are converted to and from `Request`/`Response`, bodies streamed).
 * {@link serve} is the control API's server; {@link listen} is the one fetch apps get (SPEC
 * section 3), with a swappable handler. Also parses and classifies `listen` addresses
 * (`HOST:PORT`, `[V6]:PORT`, `:PORT`, `PORT`).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { nativeServe } from "./_platform.ts";
import { GitopsError, messageOf } from "./errors.ts";

/** A handler in the shape of `fetch`: the control API, or an app's default export. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** A host and port to bind. */
export interface ListenAddress {
  hostname: string;
  port: number;
}

/** Options of {@link serve}. */
export interface ServeOptions extends ListenAddress {
  /** `native` (default): Bun.serve / Deno.serve where available, else node:http. `node`: always node:http. */
  engine?: "native" | "node";
  /** How long `close()` lets in-flight requests finish before dropping their connections (ms, default 5000). */
  graceMs?: number;
  /** Called with anything the handler throws (the client gets a bare 500). */
  onError?: (error: unknown) => void;
}

/** A listening server. */
export interface HttpServer {
  /** The bound address, `127.0.0.1:PORT` or `[::1]:PORT`, with the real port when 0 was asked for. */
  readonly address: string;
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting connections and resolves once the server is closed; idempotent. */
  close(): Promise<void>;
}

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

/** A listening HTTP server with a swappable handler (a fetch app's). */
export interface HttpListener {
  /** The host asked for, as given. */
  readonly host: string;
  /** The bound port (the OS-assigned one when asked for port 0). */
  readonly port: number;
  /** The current handler; assigning it takes effect for the next request. */
  handler: FetchHandler;
  /** Stops listening; waits up to `closeTimeoutMs` for open requests, then drops them. Idempotent. */
  close(): Promise<void>;
}

/**
 * Parses a `listen` value: `HOST:PORT`, `[IPV6]:PORT`, `:PORT` (every interface) or a bare `PORT`
 * (loopback). `localhost` binds 127.0.0.1. Throws `GitopsError` E_CONFIG on anything else.
 */
export function parseListen(listen: string): ListenAddress {
  const text = listen.trim();
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]*))?:(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) {
    throw new GitopsError(
      `listen: expected HOST:PORT (e.g. 127.0.0.1:9477), :PORT, PORT or "off", got ${JSON.stringify(listen)}`,
      {
        code: "E_CONFIG",
        retry: "stalled",
      },
    );
  }
  const bare = /^\d+$/.test(text);
  const host = match[1] ?? match[2] ?? "";
  const hostname = bare
    ? "127.0.0.1"
    : host === ""
      ? "0.0.0.0"
      : host.toLowerCase() === "localhost"
        ? "127.0.0.1"
        : host;
  return { hostname, port };
}

/** Whether `hostname` only accepts connections from this host (127.0.0.0/8, ::1, localhost). */
export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^(::ffff:)?127(\.\d{1,3}){3}$/.test(host);
}

/**
 * Whether a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`) names this host by a
 * loopback name or address: `localhost` and `*.localhost` (browsers resolve them to loopback
 * themselves, RFC 6761), 127.0.0.0/8 as a dotted quad, `[::1]` or `[::ffff:127.x.x.x]`. A name a
 * DNS-rebinding page uses (its own domain) is not.
 */
export function isLoopbackHost(host: string): boolean {
  const value = host.trim().toLowerCase();
  const bracketed = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(value);
  if (bracketed) return isLoopback(bracketed[1]!);
  const named = /^([a-z0-9.-]+?)\.?(?::\d{1,5})?$/.exec(value);
  if (!named) return false;
  const name = named[1]!;
  return name === "localhost" || name.endsWith(".localhost") || /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(name);
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatAddress(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

/**
 * Starts serving `handler` on `hostname:port` (port 0: the OS picks one; see `address`). Throws
 * `GitopsError` E_CONFIG when the address cannot be bound (in use, not an address of this host).
 */
export async function serve(handler: FetchHandler, options: ServeOptions): Promise<HttpServer> {
  const { hostname, port, graceMs = 5000, onError = () => {} } = options;
  const safe = async (request: Request): Promise<Response> => {
    try {
      return await handler(request);
    } catch (error) {
      onError(error);
      return internalError();
    }
  };
  try {
    if (nativeServe && options.engine !== "node") {
      const server = nativeServe(safe, { hostname, port, onError: (error) => (onError(error), internalError()) });
      return handle(server.hostname, server.port, () => drain(server.close(false), graceMs, () => server.close(true)));
    }
    return await serveNode(safe, hostname, port, graceMs);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const why =
      code === "EADDRINUSE"
        ? "the address is already in use"
        : code === "EADDRNOTAVAIL"
          ? "not an address of this host"
          : messageOf(error);
    throw new GitopsError(`cannot listen on ${formatAddress(hostname, port)}: ${why}`, {
      code: "E_CONFIG",
      retry: "stalled",
      cause: error,
    });
  }
}

/**
 * Binds `host:port` and serves a fetch app's `handler`, read once per request, so swapping it
 * (hot reload) is atomic: a request runs entirely on the old or the new one. A handler that throws
 * or returns no `Response` gives the client a 500 and `onError` the error. Rejects with a
 * `GitopsError` (`E_RUNTIME`, `backoff`) naming the address when it cannot be bound.
 */
export async function listen(options: ListenOptions): Promise<HttpListener> {
  let current = options.handler;
  const checked = async (request: Request): Promise<Response> => {
    const response: unknown = await current(request);
    if (response instanceof Response) return response;
    throw new TypeError(`the app's fetch() returned ${typeof response}, not a Response`);
  };
  let server: HttpServer;
  try {
    server = await serve(checked, {
      hostname: options.host,
      port: options.port,
      graceMs: options.closeTimeoutMs ?? 5000,
      ...(options.onError ? { onError: options.onError } : {}),
      ...(options.engine ? { engine: options.engine } : {}),
    });
  } catch (error) {
    // An app's port may be freed later (unlike the agent's own configured address): retry with backoff.
    const cause = error instanceof GitopsError ? error.cause : error;
    const why =
      (cause as { code?: unknown } | undefined)?.code === "EADDRINUSE" ? "the address is in use" : messageOf(cause);
    throw new GitopsError(`cannot listen on ${options.host}:${options.port}: ${why}`, {
      code: "E_RUNTIME",
      retry: "backoff",
      cause,
    });
  }
  return {
    host: options.host,
    port: server.port,
    get handler() {
      return current;
    },
    set handler(next: FetchHandler) {
      current = next;
    },
    close: () => server.close(),
  };
}

function handle(hostname: string, port: number, close: () => Promise<void>): HttpServer {
  let closing: Promise<void> | undefined;
  return { hostname, port, address: formatAddress(hostname, port), close: () => (closing ??= close()) };
}

function internalError(): Response {
  return new Response("internal error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** Waits for `graceful`; past `ms`, runs `force` and waits for it instead. */
async function drain(graceful: Promise<void>, ms: number, force: () => Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const forced = new Promise<void>((resolve, reject) => {
    timer = setTimeout(() => force().then(resolve, reject), ms);
  });
  try {
    await Promise.race([graceful, forced]);
  } finally {
    clearTimeout(timer);
  }
}

async function serveNode(
  handler: (request: Request) => Promise<Response>,
  hostname: string,
  port: number,
  graceMs: number,
): Promise<HttpServer> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => void respond(handler, req, res, origin).catch(() => res.destroy()));
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  const actual =
    bound && typeof bound === "object" ? { hostname: bound.address, port: bound.port } : { hostname, port };
  const origin = `http://${formatAddress(actual.hostname, actual.port)}`;
  return handle(actual.hostname, actual.port, () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections?.();
    return drain(closed, graceMs, () => {
      server.closeAllConnections?.();
      for (const socket of sockets) socket.destroy();
      return closed;
    });
  });
}

/**
 * Bridges one node:http exchange to the handler: IncomingMessage -> Request, Response -> ServerResponse.
 * The request URL takes its host from the `Host` header, as Bun.serve and Deno.serve do, else `origin`.
 */
async function respond(
  handler: (request: Request) => Promise<Response>,
  req: IncomingMessage,
  res: ServerResponse,
  origin: string,
): Promise<void> {
  const abort = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) abort.abort();
  });
  const method = req.method ?? "GET";
  let request: Request;
  try {
    const headers = new Headers();
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      try {
        headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
      } catch {
        // A header the Fetch API refuses (invalid characters) is dropped rather than failing the request.
      }
    }
    const hasBody = method !== "GET" && method !== "HEAD";
    request = new Request(requestUrl(req, origin), {
      method,
      headers,
      signal: abort.signal,
      ...(hasBody ? { body: Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>, duplex: "half" } : {}),
    } as RequestInit);
  } catch {
    res.writeHead(400, { "content-type": "text/plain; charset=utf-8" }).end("bad request\n");
    return;
  }
  const response = await handler(request);
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, key) => {
    if (key !== "set-cookie") headers[key] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  if (response.statusText) res.writeHead(response.status, response.statusText, headers);
  else res.writeHead(response.status, headers);
  if (!response.body || method === "HEAD") {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      // Back-pressure: wait for the socket to drain (or close) before reading more.
      if (!res.write(value)) await closedOrDrained(res);
    }
    res.end();
  } catch {
    res.destroy(); // the body stream failed mid-way: the client must see a broken response, not a short one
  } finally {
    if (res.destroyed) await reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
}

function requestUrl(req: IncomingMessage, origin: string): URL {
  try {
    if (req.headers.host) return new URL(req.url ?? "/", `http://${req.headers.host}`);
  } catch {
    // A malformed Host header: fall back to the bound address.
  }
  return new URL(req.url ?? "/", origin);
}

/** Resolves on the next `drain` or `close` of `res`, removing both listeners either way. */
function closedOrDrained(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** The body bytes of `request`, or `undefined` when they exceed `limit` bytes (the rest is not read). */
export async function readBody(request: Request, limit: number): Promise<Uint8Array | undefined> {
  if (Number(request.headers.get("content-length") ?? 0) > limit) return undefined;
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}
