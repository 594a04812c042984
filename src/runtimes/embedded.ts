/**
 * The `embedded` isolation driver: the app's entry module is imported into the agent's own process
 * (from its revision's directory, so a new revision is a fresh module graph) and run there. A
 * lifecycle app's `start`/`stop` are called with deadlines; a fetch app is served by an agent-owned
 * HTTP listener on `env.host`:`env.port`. One process-level handler catches what apps throw
 * asynchronously and reports it to the app whose files the stack mentions, so an app's bug never
 * takes the agent down.
 */
import { realIfAny } from "../_fs-sync.ts";
import { join, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { checkAppModule, type AppContext, type AppModule, type EnvChange } from "../app-context.ts";
import { GitopsError, messageOf } from "../errors.ts";
import type { HttpListener } from "../http-server.ts";
import { silentLogger, appLogger, type Logger } from "../logger.ts";
import type { Driver, DriverStartOptions, Instance } from "./driver.ts";
import {
  addressChange,
  Inflight,
  kindChange,
  listenFor,
  movesAddress,
  notStopping,
  restartFailure,
  stackOf,
  startFailure,
  stopStartRestore,
} from "./_driver-kit.ts";

interface Owner {
  app: string;
  /** Prefixes a stack frame of this instance's code starts with (path and file URL, as given and resolved). */
  prefixes: string[];
  active: boolean;
  onCrash(error: unknown): void;
}

/** One loaded revision of an app inside an {@link Instance} (hot reload replaces it). */
interface Generation {
  mod: AppModule;
  ctx: AppContext;
  /** Aborted when this generation ends; a `hotReload` hand-over carries the previous ones along. */
  controllers: AbortController[];
  owner: Owner;
  /** What the lifecycle app's `start`/`hotReload` returned. */
  value: unknown;
  /** Fetch requests running on this generation's handler. */
  requests: Inflight;
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
    const { spec } = options;
    const mod = await this.#load(options);
    const gen = await this.#generation(mod, options);
    let listener: HttpListener | undefined;
    try {
      if (mod.kind === "lifecycle") {
        gen.value = await deadline(
          () => mod.start!(gen.ctx),
          options.startTimeoutMs,
          `start() of ${spec.name} did not finish within ${options.startTimeoutMs} ms`,
          "E_TIMEOUT",
          (late) => mod.stop?.(late, gen.ctx),
        );
      } else {
        listener = await listenFor(options, serve(gen));
      }
    } catch (error) {
      this.#end(gen);
      throw startFailure(spec, error);
    }
    return this.#instance(gen, listener, options);
  }

  /** Removes the process handlers (agent shutdown). Apps started later install them again. */
  async dispose(): Promise<void> {
    if (!this.#installed) return;
    process.off("uncaughtException", this.#onError);
    process.off("unhandledRejection", this.#onError);
    this.#installed = false;
  }

  /** Imports `options.prepared.entry` (a new directory is a new module graph) and checks it is an app. */
  async #load(options: DriverStartOptions): Promise<AppModule> {
    const { spec, prepared } = options;
    const loadStarted = performance.now();
    let exports: Record<string, unknown>;
    try {
      exports = (await import(pathToFileURL(prepared.entry).href)) as Record<string, unknown>;
    } catch (error) {
      throw new GitopsError(`cannot load ${prepared.entry}: ${messageOf(error)}`, {
        code: "E_RUNTIME",
        retry: "stalled",
        cause: error,
      });
    }
    options.emit(
      "bc_gitops:code:load",
      { duration_ms: performance.now() - loadStarted },
      { app: spec.name, version: spec.version, revision: prepared.revision },
    );
    const mod = checkAppModule(exports, prepared.entry);
    if (spec.health.type === "module" && !mod.health) {
      throw new GitopsError(
        `${prepared.entry}: health.type is module, so the entry must export health(instance, ctx)`,
        { code: "E_RUNTIME", retry: "stalled" },
      );
    }
    return mod;
  }

  /** A new generation of `mod`: its context (fresh signal) and its crash owner. */
  async #generation(mod: AppModule, options: DriverStartOptions): Promise<Generation> {
    const { spec, prepared } = options;
    const controller = new AbortController();
    const ctx: AppContext = {
      name: spec.name,
      version: spec.version,
      revision: prepared.revision,
      env: structuredClone(spec.env),
      log: appLogger(options.logger, spec.name),
      signal: controller.signal,
      dataDir: options.dataDir,
    };
    const owner = await this.#watch(spec.name, prepared.dir, options.onCrash);
    return { mod, ctx, controllers: [controller], owner, value: undefined, requests: new Inflight() };
  }

  /** Aborts a generation's signals and stops attributing crashes to it. */
  #end(gen: Generation): void {
    for (const controller of gen.controllers) controller.abort();
    this.#retire(gen.owner);
  }

  #instance(first: Generation, listener: HttpListener | undefined, started: DriverStartOptions): Instance {
    const app = first.ctx.name;
    const kind = first.mod.kind;
    const stopTimeoutMs = started.stopTimeoutMs;
    const callTimeoutMs = started.startTimeoutMs;
    let gen = first;
    let stopping: Promise<void> | undefined;
    /** Old fetch generations finishing their requests after a swap. */
    const draining = new Set<Promise<void>>();
    const stopGen = async (g: Generation) => {
      if (g.mod.stop)
        await deadline(
          () => g.mod.stop!(g.value, g.ctx),
          stopTimeoutMs,
          `stop() of ${app} did not finish within ${stopTimeoutMs} ms; it is considered stopped`,
          "E_TIMEOUT",
        );
    };
    const driver = this;
    const instance: Instance = {
      kind,
      get port() {
        if (listener) return listener.port;
        const reported = (gen.value as { port?: unknown } | null | undefined)?.port;
        return typeof reported === "number" ? reported : undefined;
      },
      ...(listener ? { host: listener.host } : {}),
      get fetch() {
        return listener?.handler;
      },
      stop: () =>
        (stopping ??= (async () => {
          try {
            await listener?.close();
            await Promise.all(draining);
            await stopGen(gen);
          } catch (error) {
            throw error instanceof GitopsError
              ? error
              : new GitopsError(`stop() of ${app} failed: ${messageOf(error)}`, { code: "E_RUNTIME", cause: error });
          } finally {
            this.#end(gen);
          }
        })()),
      reconfigure: async (change: EnvChange) => {
        // A fetch app on a new address needs a new listener: only a restart gives it one.
        if (listener && movesAddress(listener, gen.ctx.env, change.env)) return false;
        const { mod, ctx } = gen;
        if (!mod.reconfigure) return false;
        const before = ctx.env;
        ctx.env = structuredClone(change.env);
        try {
          await deadline(
            () => mod.reconfigure!(gen.value, { ...change, env: ctx.env }, ctx),
            callTimeoutMs,
            `reconfigure() of ${app} did not finish within ${callTimeoutMs} ms`,
          );
        } catch (error) {
          ctx.env = before;
          throw new GitopsError(`reconfigure() of ${app} failed: ${messageOf(error)}`, {
            code: "E_RUNTIME",
            cause: error,
          });
        }
        return true;
      },
      get health() {
        const { mod } = gen;
        return mod.health ? async () => mod.health!(gen.value, gen.ctx) : undefined;
      },
      /**
       * Fetch app: the listener's handler is swapped (the same port keeps serving; requests that
       * started on the old handler finish there). Lifecycle app: the new module's
       * `hotReload(previous, ctx)`, else `stop(old)` then `start(new)`; when the new `start` fails,
       * the old module is started again. Throws with the old code serving.
       */
      async reload(options: DriverStartOptions): Promise<Instance> {
        notStopping(app, stopping);
        const mod = await driver.#load(options);
        const mismatch = kindChange(app, kind, mod.kind);
        if (mismatch) throw mismatch;
        const next = await driver.#generation(mod, options);
        const previous = gen;
        if (listener) {
          if (movesAddress(listener, previous.ctx.env, options.spec.env)) {
            driver.#end(next);
            throw addressChange(app);
          }
          listener.handler = serve(next);
          gen = next;
          const drained = driver.#drain(previous, stopTimeoutMs, stopGen).finally(() => draining.delete(drained));
          draining.add(drained);
          return instance;
        }
        if (mod.hotReload) {
          try {
            next.value = await deadline(
              () => mod.hotReload!(previous.value, next.ctx),
              callTimeoutMs,
              `hotReload() of ${app} did not finish within ${callTimeoutMs} ms`,
            );
          } catch (error) {
            driver.#end(next);
            throw new GitopsError(
              `hotReload() of ${app} failed: ${messageOf(error)}; the previous revision keeps running`,
              { code: "E_RUNTIME", retry: "backoff", cause: error },
            );
          }
          // The new instance may have taken over what the old one opened against the old signals: they abort on the final stop.
          next.controllers.unshift(...previous.controllers);
          driver.#retire(previous.owner);
          gen = next;
          return instance;
        }
        await stopStartRestore({
          stop: async () => {
            await stopGen(previous).catch((error: unknown) => previous.ctx.log.warn(messageOf(error)));
            for (const controller of previous.controllers) controller.abort();
          },
          start: async () => {
            try {
              next.value = await deadline(
                () => mod.start!(next.ctx),
                callTimeoutMs,
                `start() of ${app} did not finish within ${callTimeoutMs} ms`,
                "E_TIMEOUT",
                (late) => mod.stop?.(late, next.ctx),
              );
            } catch (error) {
              driver.#end(next);
              throw error;
            }
          },
          restore: async () => void (gen = await driver.#restartOld(previous, callTimeoutMs)),
          failed: (error, again) =>
            restartFailure(options.spec, error, again, (crash) => previous.owner.onCrash(crash)),
        });
        driver.#retire(previous.owner);
        gen = next;
        return instance;
      },
    };
    return instance;
  }

  /** Starts an already loaded (old) module again with a fresh signal, after a failed stop-then-start reload. */
  async #restartOld(old: Generation, timeoutMs: number): Promise<Generation> {
    const controller = new AbortController();
    const ctx: AppContext = { ...old.ctx, signal: controller.signal };
    const value = await deadline(
      () => old.mod.start!(ctx),
      timeoutMs,
      `start() of ${ctx.name} did not finish within ${timeoutMs} ms`,
      "E_TIMEOUT",
      (late) => old.mod.stop?.(late, ctx),
    );
    return { ...old, ctx, controllers: [controller], value };
  }

  /** Waits (up to `timeoutMs`) for a swapped-out fetch generation's requests, then stops and retires it. */
  async #drain(old: Generation, timeoutMs: number, stop: (g: Generation) => Promise<void>): Promise<void> {
    await old.requests.drained(timeoutMs);
    try {
      await stop(old);
    } catch (error) {
      old.ctx.log.warn(messageOf(error));
    } finally {
      this.#end(old);
    }
  }

  readonly #onError = (error: unknown): void => {
    const stack = stackOf(error);
    const matches = this.#owners.filter((o) => o.prefixes.some((p) => stack.includes(p)));
    const owner = matches.find((o) => o.active) ?? matches[0];
    if (owner?.active) {
      this.#logger.error(`uncaught error; marking the app failed: ${stack}`, { app: owner.app });
      owner.onCrash(error);
    } else if (owner) {
      this.#logger.warn(`uncaught error from a stopped instance: ${stack}`, { app: owner.app });
    } else {
      // No app's code is on the stack (a Node internal, a non-Error value): report it and keep every app running.
      this.#logger.error(`uncaught error outside any app (the agent keeps running): ${stack}`);
    }
  };

  async #watch(app: string, dir: string, onCrash: (error: unknown) => void): Promise<Owner> {
    // Synchronous: single small calls (see _fs-sync.ts).
    const real = realIfAny(dir) ?? dir;
    // Dependencies linked from the revision that installed them run from that revision's node_modules.
    const packages = realIfAny(join(dir, "node_modules"));
    const prefixes = [...new Set([dir, real, ...(packages ? [packages] : [])])].flatMap((d) => [
      d + sep,
      pathToFileURL(d).href + "/",
    ]);
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

/** The listener handler of a fetch generation: counts its requests so a swap can wait for them. */
function serve(gen: Generation): (request: Request) => Promise<Response> {
  return async (request) => {
    gen.requests.add();
    try {
      return await gen.mod.handler!.fetch(request, gen.ctx);
    } finally {
      gen.requests.done();
    }
  };
}

/**
 * Runs `call` and rejects with `message` if it has not settled after `ms` (the call itself cannot
 * be cancelled). `onLate` receives what the call resolves with after the deadline, so an instance
 * that finished starting too late can still be stopped instead of running unowned.
 */
async function deadline<T>(
  call: () => T | Promise<T>,
  ms: number,
  message: string,
  code: "E_TIMEOUT" | "E_RUNTIME" = "E_TIMEOUT",
  onLate?: (value: T) => unknown,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => ((expired = true), reject(new GitopsError(message, { code, retry: "backoff" }))), ms);
  });
  const running = Promise.resolve().then(call);
  if (onLate)
    void running.then(
      (value) =>
        expired &&
        Promise.resolve()
          .then(() => onLate(value))
          .catch(() => {}),
      () => {},
    );
  try {
    return await Promise.race([running, late]);
  } finally {
    clearTimeout(timer);
  }
}
