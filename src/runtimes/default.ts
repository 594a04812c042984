/**
 * The default runtime (SPEC sections 3-4): materialises each app's code in a workspace per
 * revision, runs it through the driver of its isolation, watches its health, and upgrades with
 * rollback. Operations on one app run one at a time; different apps never wait for each other.
 *
 * Health: `deploy`, `restart` and `reconfigure` return once the app started and one immediate check
 * ran (so dependents can start in the same tick when it passed); health is then monitored in the
 * background and dependents wait for `healthy` (the reconciler). `upgrade` waits for `healthy`
 * within the start window and rolls back to the previous version when it does not get there.
 */
import { SerialQueues } from "../_serial.ts";
import { envChange, isEmptyChange } from "../app-context.ts";
import { GitopsError, messageOf } from "../errors.ts";
import type { HealthMonitor } from "../health.ts";
import { silentLogger, type Logger } from "../logger.ts";
import type { AppHealth, AppState, HotReloadResult, RevisionContext, Runtime, RuntimeContext } from "../runtime.ts";
import type { AppSpec } from "../spec.ts";
import { noEmit, type Emit } from "../telemetry.ts";
import { Workspaces, type PreparedWorkspace } from "../workspace.ts";
import { appHealthMonitor } from "./_app-health.ts";
import { appState, type AppOps, type AppRecord } from "./_app-record.ts";
import { appWorkspace } from "./_app-workspace.ts";
import { endLeftovers } from "./_leftovers.ts";
import { reloadApp } from "./_reload.ts";
import { upgradeApp } from "./_upgrade.ts";
import type { Driver, DriverStartOptions, Instance, Isolation } from "./driver.ts";
import { EmbeddedDriver } from "./embedded.ts";
import { ProcessDriver } from "./process.ts";
import { WorkerDriver } from "./worker.ts";

export type { Driver, DriverStartOptions, Instance, Isolation } from "./driver.ts";

/** Options of {@link createDefaultRuntime} beyond the agent's runtime context. */
export interface DefaultRuntimeOptions {
  logger?: Logger;
  emit?: Emit;
  /** Hot reloads of an embedded app before its status carries a `warning` to use `isolation: worker` (default 100). */
  reloadBudget?: number;
  /** How long an app's `stop` may take before it is considered stopped (default 10 000 ms). */
  stopTimeoutMs?: number;
  /** How long an app's `start` (or `reconfigure`) may take (default 60 000 ms). */
  startTimeoutMs?: number;
  /** How long an upgraded app has to become healthy before it is rolled back (default: max(10 s, 3 × health.timeout)). */
  startWindowMs?: number;
  /** Failed checks in a row that make an app unhealthy (default 3). */
  healthThreshold?: number;
  /** Drivers by isolation level, over the defaults (`embedded`, `worker`, `process`). */
  drivers?: Partial<Record<Isolation, Driver>>;
  /** The workspaces to use (default: under `localPath`). */
  workspaces?: Workspaces;
}

/** How often status samples an instance's memory at most. */
const MEMORY_SAMPLE_MS = 10_000;

/** The default runtime: every optional method of {@link Runtime}, plus `checkNow`. */
export interface DefaultRuntime extends Runtime {
  /**
   * SPEC section 5: prepares the revision `spec` resolves to now in a new directory and lists the
   * module files that differ from the running revision. None: records the revision and reloads
   * nothing (`modules: []`). Else swaps the instance through the driver's `reload` (or stops and
   * starts it on the new revision); when the new code fails to import or start, the old one keeps
   * serving and this throws. Keeps the previous revision's workspace, prunes older ones.
   */
  hotReload(spec: AppSpec): Promise<HotReloadResult>;
  resolveRevision(spec: AppSpec, context: RevisionContext): Promise<string | undefined>;
  restart(spec: AppSpec): Promise<AppState>;
  stopAll(): Promise<void>;
  /** Runs `app`'s health check now and returns its health (`unknown` for an app that does not run). */
  checkNow(app: string): Promise<AppHealth>;
}

/**
 * Creates the default runtime (the agent's `runtime: default`). Touches nothing until its first
 * call, which first ends what a killed agent left running of apps the agent does not remember
 * (`RuntimeContext.remembered`).
 */
export function createDefaultRuntime(context: RuntimeContext & DefaultRuntimeOptions): DefaultRuntime {
  return new DefaultRuntimeImpl(context);
}

class DefaultRuntimeImpl implements DefaultRuntime {
  readonly #c: RuntimeContext & DefaultRuntimeOptions;
  readonly #logger: Logger;
  readonly #emit: Emit;
  readonly #ws: Workspaces;
  readonly #drivers: Partial<Record<Isolation, Driver>>;
  readonly #apps = new Map<string, AppRecord>();
  readonly #queues = new SerialQueues();
  /** What an upgrade and a hot reload orchestrate: this runtime's own operations on its records. */
  readonly #ops: AppOps;
  #swept: Promise<void> | undefined;

  constructor(context: RuntimeContext & DefaultRuntimeOptions) {
    this.#c = context;
    this.#logger = context.logger ?? silentLogger;
    this.#emit = context.emit ?? noEmit;
    this.#ws =
      context.workspaces ?? new Workspaces({ localPath: context.localPath, logger: this.#logger, emit: this.#emit });
    this.#ops = {
      prepare: (spec) => this.#prepare(spec),
      options: (spec, prepared, onCrash) => this.#startOptions(spec, prepared, onCrash),
      overlaps: (old, next) =>
        this.#driver(old) === this.#driver(next) && this.#driver(next).overlaps?.(old, next) === true,
      install: (app) => void this.#apps.set(app.spec.name, app),
      start: (app) => this.#start(app),
      launch: (app) => this.#launch(app),
      halt: (app) => this.#halt(app),
      adopt: async (app, instance) => {
        app.status = "running"; // also after a crash of the old code: the new code runs
        app.monitor?.stop();
        app.monitor = this.#monitor(app, instance);
        await this.#watch(app);
      },
      crashed: (app, instance, error) => this.#crashed(app, instance, error),
      prune: (app, keep) => this.#prune(app, keep),
      startWindowMs: (spec) => this.#c.startWindowMs ?? Math.max(10_000, 3 * spec.health.timeout),
      logger: this.#logger,
    };
    this.#drivers = {
      embedded: new EmbeddedDriver({ logger: this.#logger }),
      worker: new WorkerDriver(),
      process: new ProcessDriver({ localPath: context.localPath, logger: this.#logger }),
      ...context.drivers,
    };
  }

  deploy(spec: AppSpec): Promise<AppState> {
    return this.#serial(spec.name, () => this.#deploy(spec));
  }

  upgrade(spec: AppSpec, oldVersion: string): Promise<AppState> {
    return this.#serial(spec.name, async () => {
      const old = this.#apps.get(spec.name);
      if (!old?.instance) return this.#deploy(spec);
      this.#driver(spec);
      return this.#state(await upgradeApp(old, spec, oldVersion, this.#ops));
    });
  }

  reconfigure(spec: AppSpec): Promise<AppState> {
    return this.#serial(spec.name, async () => {
      const app = this.#apps.get(spec.name);
      if (!app?.instance) return this.#deploy(spec);
      const change = envChange(app.spec.env, spec.env);
      const healthChanged = JSON.stringify(app.spec.health) !== JSON.stringify(spec.health);
      const inPlace =
        isEmptyChange(change) || (app.status === "running" && (await app.instance.reconfigure?.(change)) === true);
      if (inPlace) {
        app.spec = spec;
        if (healthChanged && app.status === "running") {
          app.monitor?.stop();
          app.monitor = this.#monitor(app, app.instance);
          await app.monitor?.checkNow();
          app.monitor?.start(spec.health.interval);
        }
        return this.#state(app);
      }
      this.#logger.info(`${spec.name} has no reconfigure(): restarting it with the new env`);
      await this.#halt(app);
      app.spec = spec;
      await this.#launch(app);
      return this.#state(app);
    });
  }

  restart(spec: AppSpec): Promise<AppState> {
    return this.#serial(spec.name, async () => {
      const app = this.#apps.get(spec.name);
      if (!app) return this.#deploy(spec);
      await this.#halt(app);
      app.spec = spec;
      try {
        await this.#launch(app);
      } catch (error) {
        if (error instanceof GitopsError && error.details.refused) app.refused = (app.refused ?? 0) + 1;
        else app.restarts++;
        throw error;
      }
      app.restarts++;
      return this.#state(app);
    });
  }

  remove(name: string): Promise<void> {
    return this.#serial(name, async () => {
      const app = this.#apps.get(name);
      if (app) await this.#halt(app);
      // Remembered but never started here (its restore failed): what a previous agent left of it goes now.
      else await this.#sweep((other) => other !== name);
      this.#apps.delete(name);
      await this.#ws.remove(name);
    });
  }

  hotReload(spec: AppSpec): Promise<HotReloadResult> {
    return this.#serial(spec.name, async () => {
      const app = this.#apps.get(spec.name);
      if (!app)
        throw new GitopsError(`${spec.name} is not deployed: nothing to hot-reload`, {
          code: "E_NOT_FOUND",
          retry: "stalled",
        });
      this.#driver(spec);
      const result = await reloadApp(app, spec, this.#ops);
      if (spec.isolation === "embedded" && result.modules.length > 0) {
        // Sampled right after each reload, so status is stable in between (and says nothing before the first reload).
        app.memory = Math.max(0, process.memoryUsage().heapUsed - (app.heapBase ?? 0));
        if (app.reloads === (this.#c.reloadBudget ?? 100) + 1)
          this.#logger.warn(`${String(this.#state(app).warning)}`, { app: spec.name });
      }
      return result;
    });
  }

  async getCurrentState(): Promise<Record<string, AppState>> {
    await this.#startup();
    // Memory is for status and metrics only: sample it at most every MEMORY_SAMPLE_MS, not on every
    // tick (a busy Worker would otherwise hold up the tick waiting for its answer).
    const now = Date.now();
    const measure = async (app: AppRecord) => {
      if (!app.instance?.memory || (app.memoryAt !== undefined && now - app.memoryAt < MEMORY_SAMPLE_MS)) return;
      app.memoryAt = now;
      app.memory = (await app.instance.memory().catch(() => undefined)) ?? app.memory;
    };
    await Promise.all([...this.#apps.values()].map(measure));
    return Object.fromEntries([...this.#apps].map(([name, app]) => [name, this.#state(app)]));
  }

  async resolveRevision(spec: AppSpec, context: RevisionContext): Promise<string | undefined> {
    return this.#ws.resolveRevision(spec, context);
  }

  async checkNow(name: string): Promise<AppHealth> {
    const app = this.#apps.get(name);
    if (app?.monitor && app.status === "running") await app.monitor.checkNow();
    return app ? this.#state(app).health : "unknown";
  }

  async stopAll(): Promise<void> {
    const left = new Set(this.#apps.keys());
    while (left.size > 0) {
      // Dependents first: stop the apps no remaining app depends on, then what they used.
      const needed = new Set([...left].flatMap((name) => this.#apps.get(name)?.spec.depends_on ?? []));
      const batch = [...left].filter((name) => !needed.has(name));
      const wave = batch.length > 0 ? batch : [...left]; // a cycle: stop the rest together
      await Promise.all(
        wave.map((name) =>
          this.#serial(name, async () => {
            const app = this.#apps.get(name);
            if (app) await this.#halt(app);
            this.#apps.delete(name);
          }),
        ),
      );
      for (const name of wave) left.delete(name);
    }
    for (const driver of Object.values(this.#drivers)) await driver?.dispose?.();
  }

  // -------------------------------------------------------------------------------------------

  async #deploy(spec: AppSpec): Promise<AppState> {
    this.#driver(spec);
    const existing = this.#apps.get(spec.name);
    if (existing) await this.#halt(existing);
    const prepared = await this.#prepare(spec);
    const app: AppRecord = {
      spec,
      prepared,
      status: "starting",
      restarts: 0,
      reloads: existing?.reloads ?? 0,
      heapBase: existing?.heapBase,
      memory: existing?.memory,
    };
    this.#apps.set(spec.name, app);
    try {
      await this.#launch(app);
    } catch (error) {
      this.#apps.delete(spec.name);
      throw error;
    }
    const others = (await this.#ws.revisions(spec.name).catch(() => [])).filter((r) => r !== prepared.revision);
    await this.#prune(spec.name, [prepared.revision, ...others.slice(-1)]);
    return this.#state(app);
  }

  /** Starts `app`, runs one health check, and starts monitoring. */
  async #launch(app: AppRecord): Promise<void> {
    await this.#start(app);
    await this.#watch(app);
  }

  async #watch(app: AppRecord): Promise<void> {
    await app.monitor?.checkNow();
    app.monitor?.start(app.spec.health.interval);
  }

  /** Starts `app`'s instance and creates (but does not start) its health monitor. On failure the app is `failed`. */
  async #start(app: AppRecord): Promise<void> {
    const { spec, prepared } = app;
    const driver = this.#driver(spec);
    app.status = "starting";
    let instance: Instance | undefined;
    app.heapBase ??= process.memoryUsage().heapUsed;
    try {
      instance = await driver.start(
        await this.#startOptions(spec, prepared, (error) => this.#crashed(app, instance, error)),
      );
    } catch (error) {
      app.status = "failed";
      app.lastError = messageOf(error);
      throw error;
    }
    app.instance = instance;
    app.status = "running";
    app.startedAt = new Date().toISOString();
    delete app.lastError;
    try {
      app.monitor = this.#monitor(app, instance);
    } catch (error) {
      await this.#halt(app);
      app.status = "failed";
      throw new GitopsError(`${spec.name}: ${messageOf(error)}`, { code: "E_RUNTIME", retry: "stalled", cause: error });
    }
  }

  async #startOptions(
    spec: AppSpec,
    prepared: PreparedWorkspace,
    onCrash: (error: unknown) => void,
  ): Promise<DriverStartOptions> {
    return {
      spec,
      prepared,
      dataDir: await this.#ws.dataDir(spec.name),
      logger: this.#logger,
      emit: this.#emit,
      stopTimeoutMs: this.#c.stopTimeoutMs ?? 10_000,
      startTimeoutMs: this.#c.startTimeoutMs ?? 60_000,
      onCrash,
    };
  }

  /** Stops `app`'s monitor and instance; a stop that hangs or throws is reported, and the app is stopped all the same. */
  async #halt(app: AppRecord): Promise<void> {
    app.monitor?.stop();
    delete app.monitor;
    const instance = app.instance;
    app.restarts += instance?.info?.().restarts ?? 0;
    delete app.instance;
    if (app.status !== "failed") app.status = "stopped";
    if (!instance) return;
    try {
      await instance.stop();
      this.#logger.debug(`stopped ${app.spec.version}`, { app: app.spec.name });
    } catch (error) {
      this.#logger.warn(`${messageOf(error)}`, { app: app.spec.name });
    }
  }

  #crashed(app: AppRecord, instance: Instance | undefined, error: unknown): void {
    // During start (no instance yet) the driver's error is enough; a replaced instance's crash is history.
    if (!instance || app.instance !== instance || this.#apps.get(app.spec.name) !== app) return;
    app.status = "failed";
    app.lastError = `crashed: ${messageOf(error)}`;
    app.monitor?.stop();
    // Self-healing should not wait for the next timed tick; the reconciler's backoff paces restarts.
    this.#c.requestReconcile?.();
  }

  #monitor(app: AppRecord, instance: Instance): HealthMonitor | undefined {
    return appHealthMonitor(app, instance, {
      threshold: this.#c.healthThreshold ?? 3,
      emit: this.#emit,
      logger: this.#logger,
    });
  }

  #driver(spec: AppSpec): Driver {
    const driver = this.#drivers[spec.isolation];
    if (!driver) {
      throw new GitopsError(`${spec.name}: isolation: ${spec.isolation} is not available yet; use embedded`, {
        code: "E_RUNTIME",
        retry: "stalled",
      });
    }
    return driver;
  }

  /** The workspace of `spec`, or offline the cached one of the revision the agent remembers (see _app-workspace.ts). */
  async #prepare(spec: AppSpec): Promise<PreparedWorkspace> {
    return appWorkspace(spec, {
      workspaces: this.#ws,
      repoDir: this.#c.repoDir(),
      treeOf: this.#c.treeOf,
      running: this.#apps.get(spec.name)?.prepared.revision,
      remembered: () => this.#c.remembered?.(),
      logger: this.#logger,
    });
  }

  async #prune(app: string, keep: string[]): Promise<void> {
    await this.#ws
      .prune(app, keep)
      .catch((error) => this.#logger.debug(`pruning old workspaces failed: ${messageOf(error)}`, { app }));
  }

  #state(app: AppRecord): AppState {
    return appState(app, this.#c.reloadBudget ?? 100);
  }

  #serial<T>(app: string, task: () => Promise<T>): Promise<T> {
    return this.#queues.run(app, async () => {
      await this.#startup();
      return task();
    });
  }

  /**
   * Once, before the first operation: ends what a previous agent (killed, or crashed) left running
   * of apps the agent does not remember, so nothing would ever start or stop them again
   * (e.g. killed while a first deploy started, and the app deleted from the repo since). A
   * remembered app's leftovers are ended when it is started again (the driver does that).
   */
  #startup(): Promise<void> {
    return (this.#swept ??= this.#sweep((app) => this.#c.remembered?.()[app] !== undefined || this.#apps.has(app)));
  }

  #sweep(keep: (app: string) => boolean): Promise<void> {
    return endLeftovers(Object.values(this.#drivers), keep, this.#c.stopTimeoutMs ?? 10_000, this.#logger);
  }
}
