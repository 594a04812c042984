/**
 * The `worker` isolation driver (SPEC sections 2 and 5): each revision of an app runs in its own
 * `node:worker_threads` Worker (same API on Bun, Deno and Node) with its own module graph, driven
 * by messages (`./_worker-host.ts`). A fetch app is still served by an agent-owned listener that
 * forwards each request to the current Worker. A hot reload starts the new revision in a new
 * Worker, swaps, and terminates the old one once its requests are done, which frees its module
 * graph: memory stays flat across any number of reloads.
 */
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { runtimeName } from "../_platform.ts";
import type { EnvChange } from "../app-context.ts";
import { GitopsError, messageOf } from "../errors.ts";
import type { HttpListener } from "../http-server.ts";
import { appLogger, type Logger } from "../logger.ts";
import type { CallOp, FromHost, HostData, ToHost, WireError } from "./_worker-host.ts";
import type { Driver, DriverStartOptions, Instance } from "./driver.ts";
// The shared driver pieces, by name (`kit.startFailure`…): what each driver does its own way stays here.
import * as kit from "./_driver-kit.ts";

/**
 * The Worker script: the `.ts` source under Bun and Deno, the built `.js` next to this file in
 * `dist/` (and in a compiled binary, where scripts/compile.ts embeds it by this literal URL).
 */
const HOST_SOURCE = new URL("./_worker-host.ts", import.meta.url);
const HOST_URL = import.meta.url.endsWith(".ts") ? HOST_SOURCE : new URL(HOST_SOURCE.href.replace(/\.ts$/, ".js"));
/** How often a Worker with `limits.memory_mb` checks its heap. */
const MEMORY_WATCH_MS = 250;

type Ready = Extract<FromHost, { type: "ready" }>;
interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}
interface Exchange {
  resolve(response: Response): void;
  reject(error: Error): void;
  stream?: ReadableStreamDefaultController<Uint8Array>;
}

/** Runs each app revision in its own Worker. */
export class WorkerDriver implements Driver {
  readonly isolation = "worker" as const;

  /**
   * Starts a Worker on the entry, then the app in it (`start()`, or an agent listener on
   * `env.host`:`env.port` for a fetch app). Throws a `GitopsError` (`E_RUNTIME`) when the entry
   * cannot be imported or is not an app, `start` throws or outlives `startTimeoutMs`, or the
   * listener cannot bind; the Worker is terminated then.
   */
  async start(options: DriverStartOptions): Promise<Instance> {
    let current = await spawn(options);
    let listener: HttpListener | undefined;
    const { spec } = options;
    const app = spec.name;
    try {
      if (current.ready.kind === "lifecycle") {
        current.port = (await current.call("start", undefined, options.startTimeoutMs)) as number | undefined;
      } else {
        listener = await kit.listenFor(options, (request) => current.fetch(request));
      }
    } catch (error) {
      await current.end(false);
      throw kit.startFailure(spec, error);
    }
    current.onCrash = options.onCrash;
    let env = spec.env;
    let stopping: Promise<void> | undefined;
    const draining = new Set<Promise<void>>();
    /** Terminates a swapped-out Worker once its requests are done (in the background; `stop` waits for it). */
    const retire = (old: Host, stop: boolean) => {
      const done = old
        .drain(options.stopTimeoutMs)
        .then(() => old.end(stop))
        .finally(() => draining.delete(done));
      draining.add(done);
    };
    const instance: Instance = {
      kind: current.ready.kind,
      get port() {
        return listener ? listener.port : current.port;
      },
      ...(listener ? { host: listener.host } : {}),
      get fetch() {
        return listener?.handler;
      },
      stop: () =>
        (stopping ??= (async () => {
          await listener?.close();
          await Promise.all(draining);
          await current.end(true);
        })()),
      reconfigure: async (change: EnvChange) => {
        if (listener && kit.movesAddress(listener, env, change.env)) return false;
        if (!current.ready.hooks.reconfigure) return false;
        await current.call("reconfigure", change, options.startTimeoutMs);
        env = change.env;
        return true;
      },
      get health() {
        const host = current;
        return host.ready.hooks.health ? () => host.call("health", undefined, options.startTimeoutMs) : undefined;
      },
      // Short: status and every tick ask, and a busy Worker should not hold them up.
      memory: async () => (await current.call("memory", undefined, 250)) as number,
      /**
       * Fetch app: the new Worker is swapped in once it imported the revision; the old one
       * finishes its requests (up to `stopTimeoutMs`) and is terminated; the listener stays where
       * it is, so a new address is refused (as in `embedded`: reconfigure moves it). Lifecycle app: an
       * instance cannot move between Workers, so the old one is stopped and the new one started;
       * when that `start` fails the old Worker starts its app again. Throws with the old code serving.
       */
      async reload(next: DriverStartOptions): Promise<Instance> {
        kit.notStopping(app, stopping);
        const fresh = await spawn(next);
        const mismatch = kit.kindChange(app, instance.kind, fresh.ready.kind);
        const moved = listener && kit.movesAddress(listener, env, next.spec.env) ? kit.addressChange(app) : undefined;
        if (mismatch ?? moved) {
          await fresh.end(false);
          throw mismatch ?? moved;
        }
        const old = current;
        if (instance.kind === "lifecycle") {
          await kit.stopStartRestore({
            stop: () =>
              old.call("stop", undefined, options.stopTimeoutMs).then(
                () => {},
                (error: unknown) => options.logger.warn(`${messageOf(error)}`, { app }),
              ),
            start: async () => {
              try {
                fresh.port = (await fresh.call("start", undefined, next.startTimeoutMs)) as number | undefined;
              } catch (error) {
                await fresh.end(false);
                throw error;
              }
            },
            restore: async () =>
              void (old.port = (await old.call("start", undefined, options.startTimeoutMs)) as number | undefined),
            failed: (error, again) => kit.restartFailure(next.spec, error, again, (crash) => old.onCrash?.(crash)),
          });
        }
        fresh.onCrash = next.onCrash;
        current = fresh;
        env = next.spec.env;
        old.onCrash = undefined;
        retire(old, instance.kind === "fetch");
        return instance;
      },
    };
    return instance;
  }
}

/** Starts a Worker on `options.prepared.entry` and waits until it imported and checked it. */
async function spawn(options: DriverStartOptions): Promise<Host> {
  const { spec, prepared } = options;
  const started = performance.now();
  const host = new Host(options);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      host.whenReady,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the worker did not load it within ${options.startTimeoutMs} ms`)),
          options.startTimeoutMs,
        );
      }),
    ]);
  } catch (error) {
    await host.end(false);
    if (error instanceof GitopsError) throw error;
    throw new GitopsError(`cannot load ${prepared.entry}: ${messageOf(error)}`, {
      code: "E_RUNTIME",
      retry: "stalled",
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
  options.emit(
    "bc_gitops:code:load",
    { duration_ms: performance.now() - started },
    { app: spec.name, version: spec.version, revision: prepared.revision, isolation: "worker" },
  );
  host.loaded = true;
  if (spec.health.type === "module" && !host.ready.hooks.health) {
    await host.end(false);
    throw new GitopsError(`${prepared.entry}: health.type is module, so the entry must export health(instance, ctx)`, {
      code: "E_RUNTIME",
      retry: "stalled",
    });
  }
  return host;
}

/** One Worker running one revision, seen from the agent. */
class Host {
  readonly worker: Worker;
  readonly whenReady: Promise<Ready>;
  ready!: Ready;
  /** A lifecycle instance's `port` property, when it has a numeric one. */
  port: number | undefined;
  /** `code:load` was emitted for it, so its end is a `code:purge`. */
  loaded = false;
  /** Reported once when the Worker dies on its own (error or exit); cleared when it is replaced. */
  onCrash: ((error: unknown) => void) | undefined;
  readonly #options: DriverStartOptions;
  readonly #fail: (error: Error) => void;
  readonly #calls = new Map<number, Pending>();
  readonly #exchanges = new Map<number, Exchange>();
  /** The forwarded requests still open (the entries of `#exchanges`), for {@link drain}. */
  readonly #requests = new kit.Inflight();
  readonly #exited: Promise<number>;
  readonly #log: Logger;
  #next = 0;
  #ending = false;
  #dead: Error | undefined;
  #ended: Promise<void> | undefined;

  constructor(options: DriverStartOptions) {
    const { spec, prepared } = options;
    this.#options = options;
    this.#log = appLogger(options.logger, spec.name);
    const memoryLimitMb = spec.limits?.memory_mb;
    const data: HostData = {
      entry: pathToFileURL(prepared.entry).href,
      entryPath: prepared.entry,
      ctx: {
        name: spec.name,
        version: spec.version,
        revision: prepared.revision,
        env: structuredClone(spec.env),
        dataDir: options.dataDir,
      },
      ...(memoryLimitMb !== undefined ? { memoryLimitMb } : {}),
      watchMs: MEMORY_WATCH_MS,
    };
    // Node enforces resourceLimits; Bun ignores them and Deno stalls the Worker silently at the limit (the host's own check covers both).
    const limits =
      memoryLimitMb !== undefined && runtimeName === "node"
        ? { resourceLimits: { maxOldGenerationSizeMb: memoryLimitMb } }
        : {};
    this.worker = new Worker(HOST_URL, { workerData: data, ...limits });
    let ready!: (value: Ready) => void;
    let fail!: (error: Error) => void;
    this.whenReady = new Promise<Ready>((resolve, reject) => ([ready, fail] = [resolve, reject]));
    this.#fail = fail;
    this.whenReady.catch(() => {});
    this.worker.on("message", (message: FromHost) => {
      switch (message.type) {
        case "ready":
          this.ready = message;
          ready(message);
          return;
        case "fatal":
          fail(
            message.stage === "load"
              ? fromWire(message.error)
              : new GitopsError(message.error.message, { code: "E_RUNTIME", retry: "stalled" }),
          );
          return;
        case "log":
          this.#log[message.level](message.message);
          return;
        case "reply": {
          const pending = this.#calls.get(message.id);
          this.#calls.delete(message.id);
          if (message.ok) pending?.resolve(message.value);
          else pending?.reject(fromWire(message.error));
          return;
        }
        default:
          this.#exchange(message);
      }
    });
    this.worker.on("error", (error: unknown) =>
      this.#died(error instanceof Error ? error : new Error(messageOf(error))),
    );
    this.#exited = new Promise<number>((resolve) =>
      this.worker.once("exit", (code: number) => {
        this.#died(new Error(`the worker exited with code ${code}`));
        resolve(code);
      }),
    );
  }

  /** Runs `op` in the Worker; rejects with the app's error, on a dead Worker, or after `timeoutMs`. */
  call(op: CallOp, arg: EnvChange | undefined, timeoutMs: number): Promise<unknown> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = ++this.#next;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new Promise<unknown>((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      timer = setTimeout(() => {
        this.#calls.delete(id);
        reject(
          new GitopsError(`${op}() of ${this.#options.spec.name} did not finish within ${timeoutMs} ms`, {
            code: "E_TIMEOUT",
            retry: "backoff",
          }),
        );
      }, timeoutMs);
      this.worker.postMessage({ type: "call", id, op, ...(arg ? { arg } : {}) } satisfies ToHost);
    }).finally(() => clearTimeout(timer));
  }

  /** Forwards a request to the Worker's fetch app; the response body streams back as the app produces it. */
  async fetch(request: Request): Promise<Response> {
    if (this.#dead) throw this.#dead;
    const id = ++this.#next;
    const body = request.method === "GET" || request.method === "HEAD" ? null : await request.arrayBuffer();
    const headers = [...request.headers] as [string, string][];
    return new Promise<Response>((resolve, reject) => {
      this.#exchanges.set(id, { resolve, reject });
      this.#requests.add();
      this.worker.postMessage(
        { type: "fetch", id, method: request.method, url: request.url, headers, body } satisfies ToHost,
        body ? [body] : [],
      );
    });
  }

  /** Resolves once no forwarded request is open, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<void> {
    return this.#requests.drained(timeoutMs);
  }

  /**
   * Stops the app (its `stop`, within `stopTimeoutMs`; skipped when `stop` is false) and
   * terminates the Worker; emits `bc_gitops:code:purge` once a Worker that loaded its revision is gone. Idempotent.
   */
  end(stop: boolean): Promise<void> {
    const options = this.#options;
    return (this.#ended ??= (async () => {
      this.onCrash = undefined;
      if (stop && !this.#dead && this.ready?.hooks.stop) {
        await this.call("stop", undefined, options.stopTimeoutMs).catch((error: unknown) =>
          this.#log.warn(messageOf(error)),
        );
      }
      this.#ending = true;
      await this.worker.terminate();
      await this.#exited;
      const { spec, prepared } = options;
      if (this.loaded)
        options.emit(
          "bc_gitops:code:purge",
          {},
          { app: spec.name, version: spec.version, revision: prepared.revision, isolation: "worker" },
        );
    })());
  }

  #died(error: Error): void {
    if (this.#dead) return;
    this.#dead = this.#ending
      ? new GitopsError("the worker was terminated", { code: "E_RUNTIME", retry: "backoff" })
      : error;
    this.#fail(this.#dead);
    for (const pending of this.#calls.values()) pending.reject(this.#dead);
    this.#calls.clear();
    for (const exchange of this.#exchanges.values()) {
      if (exchange.stream) exchange.stream.error(this.#dead);
      else exchange.reject(this.#dead);
    }
    this.#exchanges.clear();
    this.#requests.clear();
    if (!this.#ending) {
      const crash = this.onCrash;
      this.onCrash = undefined;
      crash?.(error);
    }
  }

  #exchange(message: Extract<FromHost, { type: "head" | "chunk" | "end" | "fail" }>): void {
    const exchange = this.#exchanges.get(message.id);
    if (!exchange) return;
    const done = () => {
      if (this.#exchanges.delete(message.id)) this.#requests.done();
    };
    switch (message.type) {
      case "head": {
        const init = { status: message.status, statusText: message.statusText, headers: message.headers };
        if (!message.body) {
          done();
          exchange.resolve(new Response(null, init));
          return;
        }
        const stream = new ReadableStream<Uint8Array>({ start: (controller) => void (exchange.stream = controller) });
        exchange.resolve(new Response(stream, init));
        return;
      }
      case "chunk":
        exchange.stream?.enqueue(new Uint8Array(message.bytes));
        return;
      case "end":
        done();
        exchange.stream?.close();
        return;
      case "fail":
        done();
        if (exchange.stream) exchange.stream.error(fromWire(message.error));
        else exchange.reject(fromWire(message.error));
    }
  }
}

function fromWire(wire: WireError): Error {
  const error = new Error(wire.message);
  error.name = wire.name;
  if (wire.stack) error.stack = wire.stack;
  return error;
}
