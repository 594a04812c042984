/**
 * Applying one planned action (SPEC section 4): the gates in front of it (stalled, backoff,
 * dependencies), the runtime call, its events and log lines, and the per-app bookkeeping the
 * status shows (failures, pending reasons, restarts). Internal to the reconciler, which owns an
 * `Applier`, decides what to apply and when, and records what an action changed: the applier
 * returns the app's new durable entry and state, it never writes the reconciler's.
 */
import { Backoff } from "./backoff.ts";
import { GitopsError, codeOf, messageOf, retryClassOf } from "./errors.ts";
import { pendingReason, waitingOn, type Action, type CurrentApp, type PlanError } from "./plan.ts";
import type { AgentConfig } from "./config.ts";
import type { Logger } from "./logger.ts";
import type { Runtime } from "./runtime.ts";
import type { SecretResolver } from "./secrets/resolve.ts";
import type { DeployedApp } from "./state.ts";
import type { Emit } from "./telemetry.ts";
import { redact } from "./redact.ts";
import type { AppState, HotReloadResult } from "./runtime.ts";
import type { EventName } from "./telemetry.ts";

/** What the agent remembers about one app between ticks, beyond what the runtime reports. */
export interface AppInfo {
  status?: "pending" | "failed";
  last_error?: string;
  /** The code of the error in `last_error`, when bc-gitops raised it. */
  last_error_code?: string;
  pending_reason?: string;
  restarts: number;
  /** The last failure was of retry class `stalled`: retrying cannot help until a new commit. */
  stalled?: boolean;
  /** `last_error` is why the app last crashed; it was restarted, so once running it is history, not a failure. */
  crashed?: boolean;
}

/** What happened to one planned action in a tick. */
export interface ActionOutcome {
  type: Action["type"];
  app: string;
  outcome: "ok" | "failed" | "pending" | "skipped";
  reason?: string;
  error?: string;
  duration_ms?: number;
}

/** The collaborators the applier uses. */
export interface ApplierDeps {
  config: AgentConfig;
  runtime: Runtime;
  emit: Emit;
  logger: Logger;
  now: () => number;
  /** Resolves secrets (secrets file, host references) into the spec the runtime gets; absent: specs go as they are. */
  secrets?: SecretResolver;
}

/** What applying one action did: its outcome, and what the reconciler must record. */
export interface Applied {
  outcome: ActionOutcome;
  /** The app's durable entry after the action: new on success, `null` once removed; absent when nothing changed. */
  deployed?: DeployedApp | null;
  /** What the runtime reported for the app after a successful action. */
  state?: AppState;
  /** A hot reload's result. */
  reload?: HotReloadResult;
  /** What the runtime threw, when the action failed. */
  error?: unknown;
}

/** The reconciler's current view that applying reads (never writes). */
export interface ApplyContext {
  /** What the runtime reported last. */
  runtimeState(): Readonly<Record<string, AppState>>;
  /** The app's durable entry as recorded now. */
  deployed(app: string): DeployedApp | undefined;
  /** The spec file a desired app came from (`apps/web/app.yaml`), recorded in state.json. */
  specFile(app: string): string | undefined;
  /** The commit being applied, for event metadata. */
  commit(): string | undefined;
}

/**
 * Applies planned actions and keeps the per-app bookkeeping. Actions of different apps may run at
 * the same time (a tick applies independent apps concurrently: each touches only its own app's
 * bookkeeping); two of one app never do: the reconciler runs ticks and manual operations one at a
 * time, and a tick has at most one action per app.
 */
export class Applier {
  /**
   * Failures per app. The reconciler's next tick is due no later than the earliest retry.
   */
  readonly backoff: Backoff;
  readonly #d: ApplierDeps;
  readonly #ctx: ApplyContext;
  readonly #info = new Map<string, AppInfo>();

  constructor(deps: ApplierDeps, ctx: ApplyContext) {
    this.#d = deps;
    this.#ctx = ctx;
    this.backoff = new Backoff(1000, deps.config.reconcile_interval);
  }

  /** Every app with bookkeeping, by name (read-only view; change it through the methods). */
  get info(): ReadonlyMap<string, Readonly<AppInfo>> {
    return this.#info;
  }

  /** The bookkeeping of `app`, created empty on first use. */
  infoOf(app: string): AppInfo {
    let info = this.#info.get(app);
    if (!info) this.#info.set(app, (info = { restarts: 0 }));
    return info;
  }

  /** Records that the plan cannot apply `app` (a dependency cycle or a missing dependency). */
  planFailed(problem: PlanError): void {
    this.#info.set(problem.app, {
      ...this.infoOf(problem.app),
      status: "failed",
      last_error: problem.message,
      last_error_code: "E_SPEC",
    });
  }

  /**
   * {@link retryNow} for every app `which` accepts, looking only at apps that are backing off or
   * stalled (a new commit: a tick of 1000 apps does not visit the 1000).
   */
  retryEvery(which: (app: string) => boolean): void {
    for (const app of this.backoff.keys()) if (which(app)) this.backoff.reset(app);
    for (const [app, info] of this.#info) if ("stalled" in info && which(app)) delete info.stalled;
  }

  /** Lets `app` be tried at once: forgets its backoff and that it was stalled. */
  retryNow(app: string): void {
    this.backoff.reset(app);
    delete this.infoOf(app).stalled;
  }

  /**
   * Applies one action against `current` (what the planner saw, as the reconciler recorded it).
   * Never throws: a failure is in the outcome and the app's bookkeeping. The reconciler records
   * the returned entry and state.
   */
  async apply(planned: Action, current: Readonly<Record<string, CurrentApp>>): Promise<Applied> {
    let action = planned;
    const { app } = action;
    const now = this.#d.now();
    const running = current[app];
    if (this.infoOf(app).stalled) {
      const down = running && (running.status === "failed" || running.status === "stopped");
      if (!down || action.type === "remove") {
        return {
          outcome: {
            type: action.type,
            app,
            outcome: "skipped",
            reason: `stalled until a new commit: ${this.infoOf(app).last_error ?? "the last attempt failed"}`,
          },
        };
      }
      // The change waits for a new commit, but what runs must not stay down: heal the deployed version.
      action = {
        type: "restart",
        app,
        spec: running.spec,
        reason: `${running.status} while the change to it is stalled`,
      };
    }
    if (this.backoff.waiting(app, now)) {
      const wait = Math.ceil(((this.backoff.nextRetry(now) ?? now) - now) / 1000);
      return {
        outcome: {
          type: action.type,
          app,
          outcome: "skipped",
          reason: `backing off after ${this.backoff.failures(app)} failure(s); next try in about ${wait}s`,
        },
      };
    }
    // A hot reload swaps the code of an app that runs already: it waits for nothing.
    if (action.type !== "remove" && action.type !== "reconfigure" && action.type !== "hot_reload") {
      const waiting = waitingOn(action.spec, current);
      if (waiting.length > 0) {
        const reason = pendingReason(waiting, current);
        this.#info.set(app, {
          ...this.infoOf(app),
          ...(current[app] ? {} : { status: "pending" }),
          pending_reason: reason,
        });
        return { outcome: { type: action.type, app, outcome: "pending", reason } };
      }
    }
    if (action.type === "restart") {
      // A crash is a failure: restarts of a crash-looping app are paced by the backoff, which
      // resets only once the app has stayed up (see clearSettled).
      this.backoff.fail(app, now);
      // Keep why it went down in status after it comes back, until it has stayed up (clearSettled).
      const why = this.#ctx.runtimeState()[app]?.last_error;
      if (why) {
        Object.assign(this.infoOf(app), { last_error: redact(why), crashed: true });
        delete this.infoOf(app).last_error_code;
      }
    }
    const event = action.type;
    const meta = this.#metadata(action);
    const started = this.#d.now();
    this.#d.emit(`bc_gitops:${event}:start` as EventName, {}, meta);
    let reload: HotReloadResult | undefined;
    try {
      const state = await this.#run(action, (result) => (reload = result));
      const duration_ms = this.#d.now() - started;
      const deployed = this.#succeeded(action, state, reload as HotReloadResult | undefined);
      // A hot reload's stop event says what it reloaded (`modules: []`: nothing changed, nothing reloaded).
      const done = reload
        ? { ...meta, to_revision: (reload as HotReloadResult).revision, modules: (reload as HotReloadResult).modules }
        : meta;
      this.#d.emit(`bc_gitops:${event}:stop` as EventName, { duration_ms }, done);
      this.#d.logger.info(`${describe(action)} done in ${duration_ms} ms`);
      const outcome: ActionOutcome = {
        type: action.type,
        app,
        outcome: "ok",
        duration_ms,
        ...("reason" in action ? { reason: action.reason } : {}),
      };
      return { outcome, deployed, ...(state ? { state } : {}), ...(reload ? { reload } : {}) };
    } catch (error) {
      const message = redact(messageOf(error));
      const duration_ms = this.#d.now() - started;
      this.fail(app, error);
      // A rolled-back upgrade says so (notifications tell a rollback from a failure by it).
      const rolledBack = error instanceof GitopsError ? error.details.rolled_back_to : undefined;
      const failed = {
        ...meta,
        error: message,
        ...(typeof rolledBack === "string" ? { rolled_back_to: rolledBack } : {}),
      };
      this.#d.emit(`bc_gitops:${event}:error` as EventName, { duration_ms }, failed);
      this.#d.logger.error(`${describe(action)} failed: ${message}`);
      return { outcome: { type: action.type, app, outcome: "failed", error: message, duration_ms }, error };
    }
  }

  /**
   * Records a failure of `app`: status and error for status, then either stalled (its retry class
   * says only a new commit can help) or a step of backoff.
   */
  fail(app: string, error: unknown): void {
    const info = this.infoOf(app);
    info.status = "failed";
    info.last_error = redact(messageOf(error));
    const code = codeOf(error);
    if (code) info.last_error_code = code;
    else delete info.last_error_code;
    delete info.pending_reason;
    delete info.crashed;
    if (retryClassOf(error) === "stalled") info.stalled = true;
    else this.backoff.fail(app, this.#d.now());
  }

  /**
   * Apps the plan leaves alone and that have run for a while (the interval, at most a minute):
   * whatever failed before is settled (the repo was reverted, a crash loop ended).
   */
  clearSettled(actions: readonly Action[], errors: readonly PlanError[]): void {
    const busy = new Set([...actions.map((a) => a.app), ...errors.map((e) => e.app)]);
    const settledAfter = Math.min(60_000, this.#d.config.reconcile_interval);
    const runtimeState = this.#ctx.runtimeState();
    for (const [app, info] of this.#info) {
      const observed = runtimeState[app];
      if (busy.has(app) || observed?.status !== "running") continue;
      const upFor = observed.started_at ? this.#d.now() - Date.parse(observed.started_at) : Infinity;
      if (info.restarts > 0 && upFor < settledAfter) continue;
      delete info.status;
      delete info.last_error;
      delete info.last_error_code;
      delete info.pending_reason;
      delete info.stalled;
      delete info.crashed;
      this.backoff.reset(app);
    }
  }

  async #run(action: Action, reloaded: (result: HotReloadResult) => void): Promise<AppState | undefined> {
    const { runtime, secrets } = this.#d;
    if (action.type === "remove") {
      await runtime.remove(action.app);
      return undefined;
    }
    // Only the runtime gets the resolved spec; what is recorded and shown is `action.spec`, as written.
    const spec = secrets ? await secrets.resolve(action.spec) : action.spec;
    switch (action.type) {
      case "deploy":
        return runtime.deploy(spec);
      case "upgrade":
        return runtime.upgrade(spec, action.from.version);
      case "reconfigure":
        return runtime.reconfigure(spec);
      case "hot_reload": {
        if (!runtime.hotReload) return runtime.upgrade(spec, spec.version);
        reloaded(await runtime.hotReload(spec));
        return (await runtime.getCurrentState())[action.app];
      }
      case "restart":
        this.infoOf(action.app).restarts++;
        return runtime.restart ? runtime.restart(spec) : runtime.deploy(spec);
    }
  }

  /** Clears the app's failure bookkeeping and returns its new durable entry (`null`: removed). */
  #succeeded(action: Action, state: AppState | undefined, reload: HotReloadResult | undefined): DeployedApp | null {
    const { app } = action;
    const info = this.infoOf(app);
    delete info.status;
    delete info.pending_reason;
    if (action.type !== "restart") {
      this.backoff.reset(app);
      delete info.last_error;
      delete info.last_error_code;
    }
    if (action.type === "remove") {
      this.#info.delete(app);
      return null;
    }
    const previous = this.#ctx.deployed(app);
    const planned =
      "revision" in action
        ? action.revision
        : action.type === "hot_reload"
          ? action.toRevision || undefined
          : undefined;
    const revision = reload?.revision ?? state?.revision ?? planned ?? previous?.revision;
    if (action.type === "deploy" || action.type === "upgrade") info.restarts = 0;
    const file = this.#ctx.specFile(app) ?? previous?.file;
    const workspace = state?.path ?? previous?.workspace;
    // A hot reload changes the code, not the spec: the recorded spec stays the one last applied.
    const spec = action.type === "hot_reload" && previous ? previous.spec : action.spec;
    return {
      spec,
      version: spec.version,
      ...(file ? { file } : {}),
      ...(revision ? { revision } : {}),
      ...(workspace ? { workspace } : {}),
      deployed_at:
        action.type === "deploy" || action.type === "upgrade" || !previous
          ? new Date(this.#d.now()).toISOString()
          : previous.deployed_at,
    };
  }

  #metadata(action: Action): Record<string, unknown> {
    const commit = this.#ctx.commit();
    switch (action.type) {
      case "upgrade":
        return {
          app: action.app,
          version: action.spec.version,
          from_version: action.from.version,
          to_version: action.spec.version,
          commit,
          reason: action.reason,
        };
      case "reconfigure":
        return {
          app: action.app,
          version: action.spec.version,
          commit,
          changed: action.changed,
          added: action.added,
          removed: action.removed,
        };
      case "remove":
        return { app: action.app, version: action.from.version, commit };
      case "hot_reload":
        return {
          app: action.app,
          version: action.spec.version,
          commit,
          from_revision: action.fromRevision,
          to_revision: action.toRevision,
        };
      default:
        return { app: action.app, version: action.spec.version, commit };
    }
  }
}

/** The action in a log line: what it does to which app, and why when the plan said. */
function describe(action: Action): string {
  switch (action.type) {
    case "upgrade":
      return `upgrade ${action.app} (${action.reason})`;
    case "hot_reload":
      return `hot reload ${action.app} ${action.fromRevision.slice(0, 12) || "?"} -> ${action.toRevision.slice(0, 12) || "its latest revision"}`;
    case "restart":
      return `restart ${action.app} (${action.reason})`;
    default:
      return `${action.type} ${action.app}`;
  }
}
