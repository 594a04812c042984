/**
 * The control API (SPEC section 8) as one web-standard handler, `createHandler(agent) ->
 * (Request) => Promise<Response>`, testable without a socket; `http-server.ts` puts it on an
 * address. JSON everywhere except `/healthz`, `/readyz` (text) and `/metrics` (Prometheus text).
 * Every string in a response passes through `redact()`, and env values of secret-looking keys are
 * masked, so credentials never leave through the API. The dashboard (`GET /`), the event stream
 * (`GET /events`) and app logs (`GET /apps/:name/logs`) live in their own modules; this one routes
 * to them and applies the same guards to every route.
 */
import { hostname } from "node:os";
import { logsResponse, type AppLogs } from "./app-logs.ts";
import type { AgentConfig } from "./config.ts";
import { dashboardResponse } from "./dashboard.ts";
import { EventStream } from "./event-stream.ts";
import type { NotificationStats } from "./notify.ts";
import type { DeployedSpec } from "./plan.ts";
import type { ReconcileOptions, TickResult } from "./reconciler.ts";
import type { AppState, HotReloadResult } from "./runtime.ts";
import type { AppSpec } from "./spec.ts";
import type { AgentStatus } from "./status.ts";
import type { EventHandler, EventName } from "./telemetry.ts";
import { GitopsError, messageOf } from "./errors.ts";
import { isLoopback, isLoopbackHost, parseListen, readBody, type ListenAddress } from "./http-server.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { METRICS_CONTENT_TYPE, Metrics } from "./metrics.ts";
import { redact, redactValue } from "./redact.ts";
import { maskEnv } from "./status.ts";
import { constantTimeEqual, parseWebhook, pushTargets, verifyWebhook } from "./webhook.ts";

/** Options of {@link createHandler}; each defaults to the agent's configuration. */
export interface HandlerOptions {
  /** Bearer token required by mutating calls (default `agent.config.token`; none: open). */
  token?: string;
  /** Secret of `POST /webhook` (default `agent.config.webhook_secret`; none: webhooks are refused). */
  webhookSecret?: string;
  /** The tracked branch: only pushes to it trigger a reconcile (default `agent.config.branch`). */
  branch?: string;
  /**
   * The address the handler is served on (default `agent.config.listen`). On a loopback address
   * every request must name a loopback host (see {@link createHandler}); `"off"` (the handler is
   * mounted elsewhere) checks nothing.
   */
  listen?: string;
  /** Largest webhook body accepted, in bytes (default 25 MiB, GitHub's own cap). */
  maxBodyBytes?: number;
  /** Where metrics are kept (default: a new {@link Metrics} subscribed to every agent event). */
  metrics?: Metrics;
  /** The event history `GET /events` serves (default: a new {@link EventStream} subscribed to every agent event). */
  events?: EventStream;
  /** Ends the open event and log streams (the agent passes its stop signal). */
  signal?: AbortSignal;
  logger?: Logger;
}

/** The control API handler. */
export type ControlHandler = (request: Request) => Promise<Response>;

type Params = Record<string, string>;
type Route = {
  method: "GET" | "POST";
  path: RegExp;
  /** Needs the bearer token when one is configured. */
  auth?: boolean;
  /** Authenticates itself (the webhook's signature): exempt from the loopback Host check. */
  anyHost?: boolean;
  run: (request: Request, params: Params) => Promise<Response>;
};

/**
 * The `listen` address the control API binds, or `undefined` for `"off"`. Throws `GitopsError`
 * E_CONFIG for a malformed address, and for a non-loopback one without a token (SPEC section 11).
 */
export function controlApiAddress(listen: string, token: string | undefined): ListenAddress | undefined {
  if (listen.trim().toLowerCase() === "off") return undefined;
  const address = parseListen(listen);
  if (!isLoopback(address.hostname) && !token) {
    throw new GitopsError(
      `listen: refusing to serve the control API on ${listen} without a token: set token (--token, BC_GITOPS_TOKEN) or listen on 127.0.0.1`,
      {
        code: "E_CONFIG",
        retry: "stalled",
      },
    );
  }
  return address;
}

/**
 * What the control API needs of an agent: the calls it answers with and its configuration. An
 * `Agent` fits; a program that embeds the handler may pass anything shaped like it.
 */
export interface ControlledAgent {
  readonly config: Pick<AgentConfig, "token" | "webhook_secret" | "branch" | "listen">;
  status(): Promise<AgentStatus>;
  reconcile(options?: ReconcileOptions): Promise<TickResult>;
  getDesiredState(): Promise<Record<string, AppSpec>>;
  getCurrentState(): Promise<Record<string, AppState>>;
  getDeployedState(): Promise<Record<string, DeployedSpec>>;
  getAppStatus(name: string): Promise<AppState | undefined>;
  hotReload(name: string): Promise<HotReloadResult>;
  on(name: EventName | "*", handler: EventHandler): () => void;
  /** The host name events carry and the dashboard shows (default: this machine's). */
  readonly host?: string;
  /** The apps' logs; without them `GET /apps/:name/logs` answers 501. */
  readonly appLogs?: AppLogs;
  /** The `notify` targets' counters, for `/metrics`. */
  notificationStats?(): readonly NotificationStats[];
}

/**
 * Creates the control API handler for `agent`. It subscribes a metrics collector to the agent's
 * events at once (create it before `agent.start()` to count the first tick). The handler never
 * throws: failures are JSON `{ error, code? }` answers without stack traces.
 *
 * Served on a loopback address, it answers only requests whose `Host` is a loopback name
 * (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`, any port), else 421: a DNS-rebinding page
 * reaches the port under its own host name and would otherwise read `/status`, `/apps` and
 * `/state/*`. Exempt: requests carrying the valid bearer token (a proxy that forwards the public
 * `Host` sends it) and `POST /webhook` (its signature authenticates it). On another address
 * (which needs a token) the names are unknown, so only the token guards, and only mutating calls.
 */
export function createHandler(agent: ControlledAgent, options: HandlerOptions = {}): ControlHandler {
  const token = options.token ?? agent.config.token;
  const secret = options.webhookSecret ?? agent.config.webhook_secret;
  const branch = options.branch ?? agent.config.branch;
  const maxBody = options.maxBodyBytes ?? 25 * 1024 * 1024;
  const logger = options.logger ?? silentLogger;
  const listen = options.listen ?? agent.config.listen;
  const loopbackOnly = listen.trim().toLowerCase() !== "off" && isLoopback(parseListen(listen).hostname);
  const metrics = options.metrics ?? new Metrics();
  if (!options.metrics) agent.on("*", metrics.observe);
  const host = agent.host ?? hostname();
  const events = options.events ?? new EventStream({ host });
  if (!options.events) agent.on("*", events.observe);
  const signal = options.signal;

  const trigger = (why: string, head?: string) =>
    void agent
      .reconcile(head ? { head } : {})
      .catch((error: unknown) => logger.warn(`reconcile triggered by ${why} failed: ${redact(messageOf(error))}`));

  const routes: Route[] = [
    {
      method: "GET",
      path: /^\/(?:ui)?$/,
      run: async () => dashboardResponse({ host, branch: agent.config.branch }),
    },
    { method: "GET", path: /^\/events$/, run: async (request) => events.response(request, signal) },
    { method: "GET", path: /^\/healthz$/, run: async () => text("ok") },
    {
      method: "GET",
      path: /^\/readyz$/,
      run: async () =>
        (await agent.status()).last_reconcile.at !== null
          ? text("ready")
          : text("not ready: the first reconcile has not completed", 503),
    },
    { method: "GET", path: /^\/status$/, run: async () => json(await agent.status()) },
    { method: "GET", path: /^\/apps$/, run: async () => json({ apps: Object.values(await agent.getCurrentState()) }) },
    {
      method: "GET",
      path: /^\/apps\/([^/]+)$/,
      run: async (_, { 1: name = "" }) => {
        const app = await agent.getAppStatus(name);
        return app ? json(app) : error(404, `no app named "${name}"`);
      },
    },
    {
      method: "GET",
      path: /^\/apps\/([^/]+)\/logs$/,
      // App output can hold anything an app prints: like a mutating call, it needs the token.
      auth: true,
      run: async (request, { 1: name = "" }) => {
        const app = await agent.getAppStatus(name);
        if (!app) return error(404, `no app named "${name}"`);
        if (!agent.appLogs) return error(501, "this agent keeps no app logs", "E_UNSUPPORTED");
        const [desired, deployed] = await Promise.all([agent.getDesiredState(), agent.getDeployedState()]);
        const env = [desired[name]?.env, deployed[name]?.spec.env];
        return logsResponse({ request, logs: agent.appLogs, app, env, ...(signal ? { signal } : {}) });
      },
    },
    {
      method: "POST",
      path: /^\/apps\/([^/]+)\/reload$/,
      auth: true,
      run: async (_, { 1: name = "" }) => {
        if (!(await agent.getAppStatus(name))) return error(404, `no app named "${name}"`);
        try {
          return json(await agent.hotReload(name));
        } catch (e) {
          if (e instanceof GitopsError && e.code === "E_UNSUPPORTED") return error(501, messageOf(e), e.code);
          // Known but not deployed (pending, never started): nothing to reload yet.
          if (e instanceof GitopsError && e.code === "E_NOT_FOUND") return error(409, messageOf(e), e.code);
          throw e;
        }
      },
    },
    {
      method: "GET",
      path: /^\/state\/desired$/,
      run: async () => {
        const specs = await agent.getDesiredState();
        const apps = Object.fromEntries(
          Object.entries(specs).map(([name, spec]) => [name, spec.env ? { ...spec, env: maskEnv(spec.env) } : spec]),
        );
        return json({ apps });
      },
    },
    {
      method: "GET",
      path: /^\/state\/current$/,
      run: async (request) => {
        const apps = await agent.getCurrentState();
        if (new URL(request.url).searchParams.get("include") !== "deployed") return json({ apps });
        // `bc-gitops plan --url`: what the next tick plans from (spec, revision, file), env masked as everywhere.
        const deployed = Object.fromEntries(
          Object.entries(await agent.getDeployedState()).map(([name, app]) => [
            name,
            { ...app, spec: { ...app.spec, env: maskEnv(app.spec.env) } },
          ]),
        );
        return json({ apps, deployed });
      },
    },
    {
      method: "POST",
      path: /^\/reconcile$/,
      auth: true,
      run: async () => {
        try {
          return json(await agent.reconcile());
        } catch (e) {
          // A tick reports failures in its result; a rejection means the loop is stopped.
          return error(503, messageOf(e), e instanceof GitopsError ? e.code : undefined);
        }
      },
    },
    { method: "POST", path: /^\/webhook$/, anyHost: true, run: (request) => webhook(request) },
    {
      method: "GET",
      path: /^\/metrics$/,
      run: async () => {
        const body = metrics.render({
          status: await agent.status(),
          apps: await agent.getCurrentState(),
          ...(agent.notificationStats ? { notifications: agent.notificationStats() } : {}),
        });
        return new Response(body, { headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" } });
      },
    },
  ];

  async function webhook(request: Request): Promise<Response> {
    if (!secret) return error(403, "webhook_secret is not configured: unsigned webhooks are never accepted");
    const body = await readBody(request, maxBody);
    if (!body) return error(413, `the webhook body exceeds ${maxBody} bytes`);
    const verified = verifyWebhook(request.headers, body, secret);
    if (!verified.ok) {
      logger.warn(`webhook refused: ${verified.reason}`);
      return error(401, verified.reason);
    }
    const event = parseWebhook(request.headers, body);
    switch (event.kind) {
      case "ping":
        return json({ pong: true, provider: event.provider });
      case "invalid":
        return error(400, event.reason);
      case "ignored":
        return json({ triggered: false, provider: event.provider, reason: event.reason });
      case "push":
        if (!pushTargets(event, branch)) {
          return json({
            triggered: false,
            provider: event.provider,
            ref: event.ref,
            reason: `push to ${event.ref}; tracking refs/heads/${branch}`,
          });
        }
        logger.info(
          `webhook from ${event.provider}: push${event.ref ? ` to ${event.ref}` : ""}${event.commit ? ` (${event.commit.slice(0, 12)})` : ""}; reconciling`,
        );
        // The signed push names the new head: the tick fetches it without asking the remote first.
        trigger(`a ${event.provider} webhook`, event.commit);
        return json(
          {
            triggered: true,
            provider: event.provider,
            ...(event.ref ? { ref: event.ref } : {}),
            ...(event.commit ? { commit: event.commit } : {}),
          },
          202,
        );
    }
  }

  function bearer(request: Request): string | undefined {
    return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(request.headers.get("authorization") ?? "")?.[1];
  }

  /** The DNS-rebinding guard of a loopback listener (see {@link createHandler}). */
  function checkHost(request: Request, url: URL, route: Route): Response | undefined {
    if (!loopbackOnly || route.anyHost) return undefined;
    const host = request.headers.get("host") ?? url.host;
    if (isLoopbackHost(host)) return undefined;
    const given = bearer(request);
    if (token && given !== undefined && constantTimeEqual(given, token)) return undefined;
    return error(
      421,
      `refusing a request for host ${JSON.stringify(host.slice(0, 100))}: the control API listens on loopback and answers only requests to localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding)${token ? ", or ones carrying the bearer token" : ""}`,
    );
  }

  function authorize(request: Request, url: URL): Response | undefined {
    // A page of another site may send requests here (a form, fetch without CORS): never act on one.
    const origin = request.headers.get("origin");
    if (origin !== null && !sameOrigin(origin, request.headers.get("host") ?? url.host)) {
      return error(
        403,
        `refusing a browser request from another origin (${origin.slice(0, 100)}): use the dashboard this agent serves, or a client that sends no Origin`,
      );
    }
    if (!token) {
      // No token: only non-browser clients may mutate. Browsers always send Origin on a POST, so
      // this stops any web page (or a DNS-rebinding one) from driving a loopback agent.
      return request.headers.has("origin")
        ? error(403, "requests from a browser need the API token (configure token)")
        : undefined;
    }
    const given = bearer(request);
    if (given === undefined)
      return error(401, "missing bearer token: send Authorization: Bearer <token>", undefined, {
        "www-authenticate": 'Bearer realm="bc-gitops"',
      });
    if (!constantTimeEqual(given, token))
      return error(401, "invalid bearer token", undefined, {
        "www-authenticate": 'Bearer realm="bc-gitops", error="invalid_token"',
      });
    return undefined;
  }

  return async (request) => {
    const method = request.method.toUpperCase();
    try {
      const url = urlOf(request);
      const path = url.pathname.length > 1 ? url.pathname.replace(/\/$/, "") : url.pathname;
      const matching = routes.flatMap((route) => {
        const m = route.path.exec(path);
        return m ? [{ route, params: decodeParams(m) }] : [];
      });
      if (matching.length === 0) return error(404, `no such endpoint: ${method} ${url.pathname}`);
      const found = matching.find(
        ({ route }) => route.method === method || (method === "HEAD" && route.method === "GET"),
      );
      if (!found) {
        const allow = [
          ...new Set(matching.flatMap(({ route }) => (route.method === "GET" ? ["GET", "HEAD"] : [route.method]))),
        ].join(", ");
        return error(405, `${method} is not allowed on ${url.pathname}; use ${allow}`, undefined, { allow });
      }
      if (!found.params) return error(400, `malformed path ${url.pathname}`);
      const misdirected = checkHost(request, url, found.route);
      if (misdirected) return misdirected;
      const denied = found.route.auth ? authorize(request, url) : undefined;
      if (denied) return denied;
      const response = await found.route.run(request, found.params);
      if (method !== "HEAD") return response;
      await response.body?.cancel().catch(() => {}); // an event stream's producer ends with it
      return new Response(null, { status: response.status, headers: response.headers });
    } catch (e) {
      const status = statusOf(e);
      const message = redact(messageOf(e));
      if (status >= 500) logger.warn(`${method} ${safePath(request.url)} failed: ${message}`);
      return error(status, message, e instanceof GitopsError ? e.code : undefined);
    }
  };
}

/** Whether an `Origin` header names the host the request was sent to (`Host`): the page is this agent's own. */
function sameOrigin(origin: string, host: string): boolean {
  try {
    return new URL(origin).host.toLowerCase() === host.trim().toLowerCase();
  } catch {
    return false;
  }
}

function decodeParams(match: RegExpExecArray): Params | undefined {
  const params: Params = {};
  try {
    match.forEach((value, i) => {
      if (i > 0 && value !== undefined) params[i] = decodeURIComponent(value);
    });
  } catch {
    return undefined;
  }
  return params;
}

/**
 * The request's URL. Bun.serve builds `request.url` from the Host header, so a malformed Host
 * (`127.0.0.256`, `a b`) makes it unparsable: keep its path, the Host check then refuses it.
 */
function urlOf(request: Request): URL {
  try {
    return new URL(request.url);
  } catch {
    return new URL(request.url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, "") || "/", "http://unknown.invalid");
  }
}

function statusOf(e: unknown): number {
  if (!(e instanceof GitopsError)) return 500;
  if (e.code === "E_NOT_FOUND") return 404;
  if (e.code === "E_ABORTED") return 503;
  if (e.code === "E_TIMEOUT") return 504;
  return 500;
}

function safePath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return "?";
  }
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  // redactValue never recurses and cuts what nests too deep, so neither it nor JSON.stringify can
  // overflow the stack on one app's value and fail the answer for every app.
  return new Response(`${JSON.stringify(redactValue(body))}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

function error(status: number, message: string, code?: string, headers: Record<string, string> = {}): Response {
  return json({ error: message, ...(code ? { code } : {}) }, status, headers);
}

function text(body: string, status = 200): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}
