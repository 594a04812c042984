/**
 * The `embedded` isolation driver: the app's entry module is imported into the agent's own process
 * (from its revision's directory, so a new revision is a fresh module graph) and run there. A
 * lifecycle app's `start`/`stop` are called with deadlines; a fetch app is served by an agent-owned
 * HTTP listener on `env.host`:`env.port`. One process-level handler catches what apps throw
 * asynchronously and reports it to the app whose files the stack mentions, so an app's bug never
 * takes the agent down.
 */
import { realpath } from "node:fs/promises";
import { sep } from "node:path";
import { pathToFileURL } from "node:url";
import { checkAppModule, type AppContext, type AppModule, type EnvChange } from "../app-context.ts";
import { GitopsError, messageOf } from "../errors.ts";
import { listen, type HttpListener } from "../http-listener.ts";
import { silentLogger, tagged, type Logger } from "../logger.ts";
import type { Driver, DriverStartOptions, Instance } from "./driver.ts";

/** Where a fetch app listens when its env has no `host`: loopback, so nothing is exposed by accident. */
export const DEFAULT_HOST = "127.0.0.1";
/** Where a fetch app listens when its env has no `port` (the spec's default health port too). */
export const DEFAULT_PORT = 8080;

interface Owner {
  app: string;
  /** Prefixes a stack frame of this instance's code starts with (path and file URL, as given and resolved). */
  prefixes: string[];
  active: boolean;
  onCrash(error: unknown): void;
}

/** How many stopped instances are still recognised in stacks (their leftover timers may still throw). */
const RETIRED_KEPT = 50;

/** Runs apps in the agent's process. One per runtime; {@link dispose} removes its process handlers. */
export class EmbeddedDriver implements Driver {
  readonly isolation = "embedded" as const;
  readonly #logger: Logger;
  readonly #owners: Owner[] = [];
  #installed = false;

  constructor(options: { logger?: Logger } = {}) {
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * Imports the entry, checks it against the module contract and starts it. Throws a
   * `GitopsError` (`E_RUNTIME`) when the entry cannot be imported, is not an app, `start` throws or
   * outlives `startTimeoutMs`, or the listener of a fetch app cannot bind its address.
   */
  async start(options: DriverStartOptions): Promise<Instance> {
    const { spec, prepared } = options;
    const app = spec.name;
    const fail = (what: string, error: unknown, retry: "stalled" | "backoff" = "backoff") =>
      new GitopsError(`${what}: ${messageOf(error)}`, { code: "E_RUNTIME", retry, cause: error });
    const loadStarted = performance.now();
    let exports: Record<string, unknown>;
    try {
      exports = (await import(pathToFileURL(prepared.entry).href)) as Record<string, unknown>;
    } catch (error) {
      throw fail(`cannot load ${prepared.entry}`, error, "stalled");
    }
    options.emit("bc_gitops:code:load", { duration_ms: performance.now() - loadStarted }, { app, version: spec.version, revision: prepared.revision });
    const mod = checkAppModule(exports, prepared.entry);
    if (spec.health.type === "module" && !mod.health) {
      throw new GitopsError(`${prepared.entry}: health.type is module, so the entry must export health(instance, ctx)`, { code: "E_RUNTIME", retry: "stalled" });
    }
    const controller = new AbortController();
    const ctx: AppContext = {
      name: app,
      version: spec.version,
      revision: prepared.revision,
      env: structuredClone(spec.env),
      log: tagged(options.logger, app),
      signal: controller.signal,
      dataDir: options.dataDir,
    };
    const owner = await this.#watch(app, prepared.dir, options.onCrash);
    let instance: unknown;
    let listener: HttpListener | undefined;
    try {
      if (mod.kind === "lifecycle") {
        instance = await deadline(() => mod.start!(ctx), options.startTimeoutMs, `start() of ${app} did not finish within ${options.startTimeoutMs} ms`);
      } else {
        listener = await listen({
          host: hostOf(ctx.env),
          port: portOf(ctx.env, prepared.entry),
          handler: (request) => mod.handler!.fetch(request, ctx),
          onError: (error) => ctx.log.error(`fetch failed: ${stackOf(error)}`),
          closeTimeoutMs: Math.min(options.stopTimeoutMs, 5000),
        });
      }
    } catch (error) {
      controller.abort();
      this.#retire(owner);
      throw error instanceof GitopsError ? error : fail(`start() of ${app} ${spec.version} failed`, error);
    }
    return this.#instance(mod, ctx, controller, owner, instance, listener, options.stopTimeoutMs, options.startTimeoutMs);
  }

  /** Removes the process handlers (agent shutdown). Apps started later install them again. */
  async dispose(): Promise<void> {
    if (!this.#installed) return;
    process.off("uncaughtException", this.#onError);
    process.off("unhandledRejection", this.#onError);
    this.#installed = false;
  }

  #instance(
    mod: AppModule,
    ctx: AppContext,
    controller: AbortController,
    owner: Owner,
    instance: unknown,
    listener: HttpListener | undefined,
    stopTimeoutMs: number,
    callTimeoutMs: number,
  ): Instance {
    const app = ctx.name;
    const reportedPort = (instance as { port?: unknown } | null | undefined)?.port;
    let stopping: Promise<void> | undefined;
    return {
      kind: mod.kind,
      ...(listener ? { port: listener.port, host: listener.host, fetch: listener.handler } : typeof reportedPort === "number" ? { port: reportedPort } : {}),
      stop: () =>
        (stopping ??= (async () => {
          try {
            await listener?.close();
            if (mod.stop) await deadline(() => mod.stop!(instance, ctx), stopTimeoutMs, `stop() of ${app} did not finish within ${stopTimeoutMs} ms; it is considered stopped`, "E_TIMEOUT");
          } catch (error) {
            throw error instanceof GitopsError ? error : new GitopsError(`stop() of ${app} failed: ${messageOf(error)}`, { code: "E_RUNTIME", cause: error });
          } finally {
            controller.abort();
            this.#retire(owner);
          }
        })()),
      reconfigure: async (change: EnvChange) => {
        // A fetch app on a new address needs a new listener: only a restart gives it one.
        if (listener && (hostOf(change.env) !== listener.host || portOf(change.env, "") !== portOf(ctx.env, ""))) return false;
        if (!mod.reconfigure) return false;
        const before = ctx.env;
        ctx.env = structuredClone(change.env);
        try {
          await deadline(() => mod.reconfigure!(instance, { ...change, env: ctx.env }, ctx), callTimeoutMs, `reconfigure() of ${app} did not finish within ${callTimeoutMs} ms`);
        } catch (error) {
          ctx.env = before;
          throw new GitopsError(`reconfigure() of ${app} failed: ${messageOf(error)}`, { code: "E_RUNTIME", cause: error });
        }
        return true;
      },
      ...(mod.health ? { health: async () => mod.health!(instance, ctx) } : {}),
    };
  }

  readonly #onError = (error: unknown): void => {
    const stack = stackOf(error);
    const matches = this.#owners.filter((o) => o.prefixes.some((p) => stack.includes(p)));
    const owner = matches.find((o) => o.active) ?? matches[0];
    if (owner?.active) {
      this.#logger.error(`[${owner.app}] uncaught error; marking the app failed: ${stack}`);
      owner.onCrash(error);
    } else if (owner) {
      this.#logger.warn(`[${owner.app}] uncaught error from a stopped instance: ${stack}`);
    } else {
      // No app's code is on the stack (a Node internal, a non-Error value): report it and keep every app running.
      this.#logger.error(`uncaught error outside any app (the agent keeps running): ${stack}`);
    }
  };

  async #watch(app: string, dir: string, onCrash: (error: unknown) => void): Promise<Owner> {
    const real = await realpath(dir).catch(() => dir);
    const prefixes = [...new Set([dir, real])].flatMap((d) => [d + sep, pathToFileURL(d).href + "/"]);
    const owner: Owner = { app, prefixes, active: true, onCrash };
    this.#owners.unshift(owner);
    if (!this.#installed) {
      process.on("uncaughtException", this.#onError);
      process.on("unhandledRejection", this.#onError);
      this.#installed = true;
    }
    return owner;
  }

  #retire(owner: Owner): void {
    owner.active = false;
    const retired = this.#owners.filter((o) => !o.active);
    for (const old of retired.slice(RETIRED_KEPT)) this.#owners.splice(this.#owners.indexOf(old), 1);
  }
}

/** Runs `call` and rejects with `message` if it has not settled after `ms` (the call itself cannot be cancelled). */
async function deadline<T>(call: () => T | Promise<T>, ms: number, message: string, code: "E_TIMEOUT" | "E_RUNTIME" = "E_TIMEOUT"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GitopsError(message, { code, retry: "backoff" })), ms);
  });
  try {
    return await Promise.race([Promise.resolve().then(call), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** `env.host`, else {@link DEFAULT_HOST}. */
export function hostOf(env: Record<string, unknown>): string {
  return typeof env.host === "string" && env.host !== "" ? env.host : DEFAULT_HOST;
}

/** `env.port` (a number or numeric string; 0 = any free port), else {@link DEFAULT_PORT}. Throws for anything else. */
export function portOf(env: Record<string, unknown>, entry: string): number {
  if (env.port === undefined || env.port === null || env.port === "") return DEFAULT_PORT;
  const port = Number(env.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new GitopsError(`${entry}: env.port must be a port number from 0 to 65535 for a fetch app, got ${JSON.stringify(env.port)}`, { code: "E_RUNTIME", retry: "stalled" });
  }
  return port;
}

function stackOf(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return messageOf(error);
}
