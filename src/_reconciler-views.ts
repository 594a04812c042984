/**
 * What the reconciler shows of itself: the agent status (`GET /status`) with every problem in it,
 * each app as an `AppState` view (`GET /apps`), the desired specs (`GET /state/desired`) and the
 * deployed ones as the planner sees them. Read-only: built from the reconciler's state as of the
 * call, never changing it.
 */
import type { Applier } from "./_apply.ts";
import type { DesiredSource } from "./_desired.ts";
import type { Fleet } from "./fleet/fleet.ts";
import type { LoadResult } from "./loader.ts";
import type { DeployedSpec, PlanError } from "./plan.ts";
import type { AppState } from "./runtime.ts";
import type { AppSpec } from "./spec.ts";
import type { DurableState } from "./state.ts";
import { appView, shownStatus, statusName, type AgentStatus, type StatusError } from "./status.ts";

/** How the reconciler's ticks went, as far as status shows it. The reconciler writes it; the views read it. */
export interface TickRecord {
  /** When the last tick started and how long it took; absent before the first tick ends. */
  last: { at: number; duration_ms: number } | undefined;
  /** A tick that failed unexpectedly (a runtime's getCurrentState threw, state.json could not be written). */
  error: { message: string; code?: string } | undefined;
  /** Why the last plan dropped apps' actions (dependency cycles, missing dependencies). */
  planErrors: PlanError[];
  /** Deployed apps the last plan kept only because a broken spec file might still be them, with why. */
  kept: Readonly<Record<string, string>>;
  /** The last tick planned work, or left some undone (an action not `ok`). */
  workPending: boolean;
}

/** What the views read: the reconciler's collaborators and state (functions read it as of the call). */
export interface ViewContext {
  /** What is deployed (state.json). */
  state: DurableState;
  source: DesiredSource;
  applier: Applier;
  fleet?: Fleet | undefined;
  now: () => number;
  record: Readonly<TickRecord>;
  /** What the runtime reported last. */
  runtimeState(): Readonly<Record<string, AppState>>;
}

/** The reconciler's read-only views; one per reconciler. */
export class ReconcilerViews {
  readonly #c: ViewContext;

  constructor(context: ViewContext) {
    this.#c = context;
  }

  /** The agent status (`GET /status`). */
  status(): AgentStatus {
    const { record, source, state, fleet } = this.#c;
    // Status and health only: building every app's view (env masking, icons) for a summary
    // costs milliseconds per tick with a thousand apps.
    const apps = this.#statuses();
    const errors = this.errors();
    return {
      status: statusName({
        initialized: record.last !== undefined,
        repoError: this.#repoError() !== undefined,
        apps,
        errors: errors.length,
        workPending: record.workPending || fleet?.waiting === true,
      }),
      last_commit: source.current?.commit ?? state.commit ?? null,
      app_count: apps.length,
      healthy_count: apps.filter((a) => a.status === "running" && a.health === "healthy").length,
      last_reconcile: {
        at: record.last ? new Date(record.last.at).toISOString() : null,
        duration_ms: record.last?.duration_ms ?? null,
        // The repository's error as of now, like `status` itself: a tick that has read the repository
        // fine clears it at once, so the two never disagree while the rest of the tick runs.
        error: record.last ? (this.#repoError() ?? null) : null,
      },
      errors,
    };
  }

  /** Each app's status and health, exactly as {@link apps} shows them. */
  #statuses(): Pick<AppState, "status" | "health">[] {
    const { state, applier, source, fleet } = this.#c;
    const runtimeState = this.#c.runtimeState();
    // Asked at the end of every tick: the names are visited where they are, not copied into objects first.
    const out: Pick<AppState, "status" | "health">[] = [];
    const seen = new Set<string>();
    const visit = (name: string) => {
      if (seen.has(name)) return;
      seen.add(name);
      const runtime = runtimeState[name];
      out.push({ status: shownStatus(runtime, applier.info.get(name)?.status), health: runtime?.health ?? "unknown" });
    };
    if (fleet) for (const { spec } of this.load()?.apps ?? []) visit(spec.name);
    else for (const name of source.names()) visit(name);
    for (const name of Object.keys(state.apps)) visit(name);
    for (const name of Object.keys(runtimeState)) visit(name);
    return out;
  }

  /** Every problem status shows: the repository's, spec errors, plan errors and app failures. */
  errors(): StatusError[] {
    const { record, source, applier } = this.#c;
    const out: StatusError[] = [];
    const repoError = source.error !== undefined ? { message: source.error, code: source.errorCode } : record.error;
    if (repoError) out.push({ ...(repoError.code ? { code: repoError.code } : {}), message: repoError.message });
    for (const e of this.load()?.errors ?? []) out.push({ code: "E_SPEC", ...e });
    for (const [app, message] of Object.entries(record.kept)) out.push({ code: "E_SPEC", app, message });
    for (const [app, message] of source.refused) out.push({ code: "E_UNSAFE", app, message });
    const planned = new Set(record.planErrors.map((p) => p.app));
    for (const p of record.planErrors) out.push({ code: "E_SPEC", app: p.app, message: p.message });
    const runtimeState = this.#c.runtimeState();
    for (const [app, info] of applier.info) {
      if (!info.last_error || planned.has(app)) continue;
      if (info.crashed && runtimeState[app]?.status === "running") continue; // restarted: shown in the app's state only
      out.push({ ...(info.last_error_code ? { code: info.last_error_code } : {}), app, message: info.last_error });
    }
    return out;
  }

  /** Every app the agent knows (desired, deployed or running), as `AppState` views. */
  apps(): Record<string, AppState> {
    const { state, applier } = this.#c;
    const runtimeState = this.#c.runtimeState();
    const desired = this.desiredSpecs();
    const names = new Set([...Object.keys(desired), ...Object.keys(state.apps), ...Object.keys(runtimeState)]);
    const out: Record<string, AppState> = {};
    for (const name of [...names].sort()) {
      const deployed = state.apps[name];
      const spec = deployed?.spec ?? desired[name];
      const info = applier.infoOf(name);
      out[name] = appView(name, spec, runtimeState[name], {
        ...info,
        revision: deployed?.revision,
        path: deployed?.workspace,
      });
      // Why a failed app is not being tried now: a backoff (until retry_at), or only a new commit can help.
      const retryAt = applier.backoff.retryAt(name, this.#c.now());
      if (retryAt !== undefined && out[name]!.status !== "running")
        out[name]!.retry_at = new Date(retryAt).toISOString();
      if (info.stalled) out[name]!.stalled = true;
    }
    return out;
  }

  /** What is deployed, as the planner sees it: each app's spec, code revision and spec file. */
  deployedApps(): Record<string, DeployedSpec> {
    return Object.fromEntries(
      Object.entries(this.#c.state.apps).map(([name, app]) => [
        name,
        {
          spec: app.spec,
          ...(app.revision ? { revision: app.revision } : {}),
          ...(app.file ? { file: app.file } : {}),
        },
      ]),
    );
  }

  /** The desired specs (`GET /state/desired`). */
  desiredSpecs(): Record<string, AppSpec> {
    if (!this.#c.fleet) return this.#c.source.specs();
    return Object.fromEntries((this.load()?.apps ?? []).map(({ spec }) => [spec.name, spec]));
  }

  /** The specs of the commit read last as this host plans from them: placed apps, overrides applied. */
  load(): LoadResult | undefined {
    const load = this.#c.source.current?.load;
    return load && this.#c.fleet ? this.#c.fleet.view(load).load : load;
  }

  /** Why the repository (or the last tick) failed, if it did: status is `error` meanwhile. */
  #repoError(): string | undefined {
    return this.#c.source.error ?? this.#c.record.error?.message;
  }
}
