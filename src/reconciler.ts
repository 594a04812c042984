/**
 * One reconcile tick (SPEC section 4): fetch the branch, read the specs when the commit changed,
 * plan against what runs, apply in dependency order with per-app failure isolation and backoff,
 * and remember what was deployed. The reconciler owns what is deployed (state.json) and what the
 * runtime reports; `DesiredSource` owns what the repository says; the loop decides when it runs.
 */
import { Applier, type ActionOutcome, type Applied, type ApplierDeps } from "./_apply.ts";
import { DesiredSource, type Checkout } from "./_desired.ts";
import { GitopsError, codeOf, messageOf } from "./errors.ts";
import type { Fleet } from "./fleet/fleet.ts";
import type { GitSource } from "./git.ts";
import type { LoadResult } from "./loader.ts";
import { runPlan } from "./_schedule.ts";
import {
  currentState,
  desiredState,
  order,
  pendingReason,
  plan,
  waitingOn,
  type Action,
  type CurrentApp,
  type DeployedSpec,
  type DesiredState,
  type PlanError,
} from "./plan.ts";
import { redact } from "./redact.ts";
import { SecretResolver } from "./secrets/resolve.ts";
import type { AppState, HotReloadResult } from "./runtime.ts";
import type { AppSpec } from "./spec.ts";
import { writeState, type DurableState } from "./state.ts";
import type { StateJournal } from "./state-journal.ts";
import { appView, statusName, type AgentStatus, type StatusError } from "./status.ts";

export type { ActionOutcome } from "./_apply.ts";

/** What a trigger knows about the tick it asks for. */
export interface ReconcileOptions {
  /** The new branch head a verified webhook named: the tick fetches the branch without `git ls-remote` first. */
  head?: string | undefined;
}

/** The result of one tick (what `agent.reconcile()` and `POST /reconcile` return). */
export interface TickResult {
  commit: string | null;
  /** A new commit was read in this tick. */
  changed: boolean;
  duration_ms: number;
  actions: ActionOutcome[];
  errors: StatusError[];
  status: AgentStatus["status"];
}

/** Collaborators of the reconciler; every side effect comes through here. */
export interface ReconcilerDeps extends ApplierDeps {
  git: GitSource;
  /** What is deployed; the reconciler is its only writer. */
  state: DurableState;
  statePath: string;
  /** Records each completed action as it completes (state.json is written once per tick). */
  journal?: StateJournal;
  /** Where the reconciler puts the current commit's checkout, for the runtime (`RuntimeContext.repoDir`, `treeOf`). */
  checkout?: Checkout;
  /** This host in a fleet: placement and overrides shape what the specs want here, rollout waves hold changes back. */
  fleet?: Fleet;
}

/** The reconciler: state plus the tick. One instance per agent; never runs two ticks at once (the loop guarantees it). */
export class Reconciler {
  readonly #d: ReconcilerDeps;
  /** What the repository says: fetch, verify, read, revisions, and the repository's error. */
  readonly #source: DesiredSource;
  /** Applies actions and keeps per-app failures, pending reasons, restarts and their backoff. */
  readonly #applier: Applier;
  /** Deployed apps the last plan kept only because a broken spec file might still be them, with why. */
  #kept: Readonly<Record<string, string>> = {};
  #runtimeState: Record<string, AppState> = {};
  /** A tick that failed unexpectedly (a runtime's getCurrentState threw, state.json could not be written). */
  #tickError: { message: string; code?: string } | undefined;
  #planErrors: PlanError[] = [];
  #workPending = false;
  #lastTick: { at: number; duration_ms: number } | undefined;
  #savedState: StateFingerprint;
  #pendingTicks = 0;
  /** Ticks and manual operations run one at a time: they share state and state.json. */
  #queue: Promise<unknown> = Promise.resolve();
  /** Resolves secrets for the runtime and digests host references for the planner. */
  readonly #secrets: SecretResolver;

  constructor(deps: ReconcilerDeps) {
    this.#secrets =
      deps.secrets ??
      new SecretResolver({
        ageKeyFile: deps.config.age_key_file,
        localPath: deps.config.local_path,
        repoDir: () => this.repoDir,
      });
    this.#d = { ...deps, secrets: this.#secrets };
    this.#source = new DesiredSource(deps);
    this.#applier = new Applier(this.#d, {
      runtimeState: () => this.#runtimeState,
      deployed: (app) => this.#d.state.apps[app],
      specFile: (app) => this.#source.fileOf(app),
      commit: () => this.#source.current?.commit,
    });
    this.#savedState = savedFingerprint(deps.state);
  }

  /** How many actions a tick (or a restore) applies at once. */
  get #limit(): number {
    return this.#d.config.apply_concurrency;
  }

  /** The checkout the current specs were read from (path sources are relative to it). */
  get repoDir(): string | undefined {
    return this.#source.current?.repoDir;
  }

  /** When the next tick should run at the latest, for retries and pending apps (ms from now). */
  nextDelay(): number {
    const interval = this.#d.config.reconcile_interval;
    const now = this.#d.now();
    const retries = [this.#applier.backoff.nextRetry(now), this.#source.nextRetry(now)].filter((r) => r !== undefined);
    let delay = retries.length === 0 ? interval : Math.min(interval, Math.min(...retries) - now);
    // Pending apps are re-checked soon, then less and less often (1 s, 2 s, 4 s… up to the interval).
    if ([...this.#applier.info.values()].some((i) => i.status === "pending")) {
      delay = Math.min(delay, Math.min(interval, 1000 * 2 ** Math.min(this.#pendingTicks++, 16)));
    } else this.#pendingTicks = 0;
    return Math.max(50, delay);
  }

  /**
   * Reads the specs of the last applied commit from its local snapshot, if it is still there, so a
   * restarted agent knows what the repo wants before it can reach the remote.
   */
  async primeFromSnapshot(signal?: AbortSignal): Promise<void> {
    const commit = this.#d.state.commit;
    if (commit) await this.#source.prime(commit, signal);
  }

  /** Starts the apps remembered in state.json from their cached workspaces, dependencies first. */
  async restore(signal?: AbortSignal): Promise<void> {
    const remembered = Object.values(this.#d.state.apps);
    if (remembered.length === 0) return;
    this.#d.logger.info(`restoring ${remembered.length} app(s) from ${this.#d.statePath}`);
    const desired = {
      apps: Object.fromEntries(remembered.map((a) => [a.spec.name, { spec: a.spec }])),
      invalid: new Set<string>(),
    };
    const { actions } = order(
      remembered.map((a) => ({ type: "deploy" as const, app: a.spec.name, spec: a.spec })),
      desired,
      {},
    );
    // Each app once the apps it depends on were restored (or not), independent ones at the same time.
    const restore = async ({ app: name }: Action) => {
      const app = this.#d.state.apps[name]!;
      const waiting = waitingOn(app.spec, this.#current());
      if (waiting.length > 0) {
        // The first tick plans a (gated) restart for it once its dependencies are running and healthy.
        this.#d.logger.info(`${name} waits: ${pendingReason(waiting, this.#current())}`);
        return;
      }
      try {
        this.#runtimeState[name] = await this.#d.runtime.deploy(await this.#secrets.resolve(app.spec));
        this.#d.logger.info(`restored ${name} ${app.version}`);
      } catch (error) {
        this.#applier.fail(name, error);
        this.#d.logger.warn(`could not restore ${name}: ${redact(messageOf(error))}`);
      }
    };
    await runPlan(actions, desired, {}, restore, { limit: this.#limit, signal });
  }

  /** Runs `task` after every tick and manual operation before it has finished (one at a time). */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task, task);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** One tick. Never throws for app or repository failures: they are in the result and in status. */
  tick(signal: AbortSignal, hint: ReconcileOptions = {}): Promise<TickResult> {
    return this.exclusive(() => this.#tick(signal, hint));
  }

  async #tick(signal: AbortSignal, hint: ReconcileOptions): Promise<TickResult> {
    const started = this.#d.now();
    const { emit } = this.#d;
    emit("bc_gitops:reconcile:start", {}, { commit: this.#source.current?.commit });
    let changed = false;
    const outcomes: ActionOutcome[] = [];
    try {
      // A commit not applied yet is new to the tick, also when a manual reload fetched it first.
      changed = (await this.#source.sync(signal, hint)) || this.#source.current?.commit !== this.#d.state.commit;
      // A new commit may fix what failed: retry every app now rather than after its backoff.
      if (changed) for (const name of Object.keys(this.#source.specs())) this.#applier.retryNow(name);
      this.#runtimeState = await this.#d.runtime.getCurrentState();
      const read = this.#source.current;
      if (read && !signal.aborted) {
        // Specs are read from the object store, never from files on disk that could be damaged.
        const { planned, current, desired } = await this.#plan(signal);
        this.#planErrors = planned.errors;
        for (const problem of planned.errors) this.#applier.planFailed(problem);
        this.#applier.clearSettled(planned.actions, planned.errors);
        this.#workPending = planned.actions.length > 0;
        // Independent actions at the same time, at most apply_concurrency at once; outcomes in plan order.
        const apply = (action: Action) => this.#applyAndRecord(action, current);
        const applied = await runPlan(planned.actions, desired, current, apply, { limit: this.#limit, signal });
        outcomes.push(...applied.map((a) => a.outcome));
        this.#d.state.commit = read.commit;
        // Old snapshots go after the apply, off the tick's critical path (git serialises it with the next fetch).
        if (changed) void this.#d.git.prune([read.commit]).catch(() => {});
        if (outcomes.length > 0) this.#runtimeState = await this.#d.runtime.getCurrentState();
        this.#workPending = outcomes.some((o) => o.outcome !== "ok");
      }
      await this.#saveState();
      this.#tickError = undefined;
    } catch (error) {
      // Unexpected (a runtime's getCurrentState threw, state.json could not be written): report, keep going next tick.
      const code = codeOf(error);
      this.#tickError = { message: redact(messageOf(error)), ...(code ? { code } : {}) };
      emit("bc_gitops:reconcile:error", {}, { error: this.#tickError.message });
      this.#d.logger.error(`reconcile failed: ${this.#tickError.message}`);
    } finally {
      this.#lastTick = { at: started, duration_ms: this.#d.now() - started };
    }
    const status = this.status();
    emit(
      "bc_gitops:reconcile:stop",
      { duration_ms: this.#lastTick.duration_ms },
      { commit: status.last_commit ?? undefined, status: status.status },
    );
    return {
      commit: this.#source.current?.commit ?? null,
      changed,
      duration_ms: this.#lastTick.duration_ms,
      actions: outcomes,
      errors: status.errors,
      status: status.status,
    };
  }

  /**
   * Applies one action and records what it changed: the app's durable entry (journalled at once,
   * so an agent killed mid-tick neither repeats nor reverts it), its runtime state, and `current`
   * for the actions after it.
   */
  async #applyAndRecord(action: Action, current: Record<string, CurrentApp>): Promise<Applied> {
    const applied = await this.#applier.apply(action, current);
    const { app } = action;
    if (applied.deployed === null) {
      delete this.#d.state.apps[app];
      delete this.#runtimeState[app];
      delete current[app];
    } else if (applied.deployed) {
      this.#d.state.apps[app] = applied.deployed;
      if (applied.state) this.#runtimeState[app] = applied.state;
      current[app] = {
        spec: applied.deployed.spec,
        ...(applied.deployed.revision ? { revision: applied.deployed.revision } : {}),
        status: applied.state?.status ?? current[app]?.status ?? "running",
        health: applied.state?.health ?? current[app]?.health ?? "unknown",
      };
    }
    if (applied.deployed !== undefined) {
      // The journal only speeds recovery after a kill; state.json is written at the end of the tick
      // anyway. A journal that cannot be written (full disk) must not stop the tick.
      await this.#d.journal?.record(app, applied.deployed ?? undefined).catch((error: unknown) => {
        this.#source.warnOnce(`cannot record ${action.type} ${app} in the state journal: ${redact(messageOf(error))}`);
      });
    }
    return applied;
  }

  /** The agent status (`GET /status`). */
  status(): AgentStatus {
    const apps = Object.values(this.apps());
    const errors = this.errors();
    return {
      status: statusName({
        initialized: this.#lastTick !== undefined,
        repoError: this.#repoError() !== undefined,
        apps,
        errors: errors.length,
        workPending: this.#workPending || this.#d.fleet?.waiting === true,
      }),
      last_commit: this.#source.current?.commit ?? this.#d.state.commit ?? null,
      app_count: apps.length,
      healthy_count: apps.filter((a) => a.status === "running" && a.health === "healthy").length,
      last_reconcile: {
        at: this.#lastTick ? new Date(this.#lastTick.at).toISOString() : null,
        duration_ms: this.#lastTick?.duration_ms ?? null,
        // The repository's error as of now, like `status` itself: a tick that has read the repository
        // fine clears it at once, so the two never disagree while the rest of the tick runs.
        error: this.#lastTick ? (this.#repoError() ?? null) : null,
      },
      errors,
    };
  }

  /** Every problem status shows: the repository's, spec errors, plan errors and app failures. */
  errors(): StatusError[] {
    const out: StatusError[] = [];
    const repoError =
      this.#source.error !== undefined
        ? { message: this.#source.error, code: this.#source.errorCode }
        : this.#tickError;
    if (repoError) out.push({ ...(repoError.code ? { code: repoError.code } : {}), message: repoError.message });
    for (const e of this.#load()?.errors ?? []) out.push({ code: "E_SPEC", ...e });
    for (const [app, message] of Object.entries(this.#kept)) out.push({ code: "E_SPEC", app, message });
    for (const [app, message] of this.#source.refused) out.push({ code: "E_UNSAFE", app, message });
    const planned = new Set(this.#planErrors.map((p) => p.app));
    for (const p of this.#planErrors) out.push({ code: "E_SPEC", app: p.app, message: p.message });
    for (const [app, info] of this.#applier.info) {
      if (!info.last_error || planned.has(app)) continue;
      if (info.crashed && this.#runtimeState[app]?.status === "running") continue; // restarted: shown in the app's state only
      out.push({ ...(info.last_error_code ? { code: info.last_error_code } : {}), app, message: info.last_error });
    }
    return out;
  }

  /** Every app the agent knows (desired, deployed or running), as `AppState` views. */
  apps(): Record<string, AppState> {
    const desired = this.desiredSpecs();
    const names = new Set([
      ...Object.keys(desired),
      ...Object.keys(this.#d.state.apps),
      ...Object.keys(this.#runtimeState),
    ]);
    const out: Record<string, AppState> = {};
    for (const name of [...names].sort()) {
      const deployed = this.#d.state.apps[name];
      const spec = deployed?.spec ?? desired[name];
      const info = this.#applier.infoOf(name);
      out[name] = appView(name, spec, this.#runtimeState[name], {
        ...info,
        revision: deployed?.revision,
        path: deployed?.workspace,
      });
      // Why a failed app is not being tried now: a backoff (until retry_at), or only a new commit can help.
      const retryAt = this.#applier.backoff.retryAt(name, this.#d.now());
      if (retryAt !== undefined && out[name]!.status !== "running")
        out[name]!.retry_at = new Date(retryAt).toISOString();
      if (info.stalled) out[name]!.stalled = true;
    }
    return out;
  }

  /** Deployed apps in the order to stop them: dependents before their dependencies. */
  stopOrder(): string[] {
    const apps = this.#d.state.apps;
    const removes = Object.values(apps).map((a) => ({ type: "remove" as const, app: a.spec.name, from: a.spec }));
    const current = this.#current();
    return order(removes, { apps: {}, invalid: new Set() }, current).actions.map((a) => a.app);
  }

  /** What is deployed, as the planner sees it: each app's spec, code revision and spec file. */
  deployedApps(): Record<string, DeployedSpec> {
    return Object.fromEntries(
      Object.entries(this.#d.state.apps).map(([name, app]) => [
        name,
        {
          spec: app.spec,
          ...(app.revision ? { revision: app.revision } : {}),
          ...(app.file ? { file: app.file } : {}),
        },
      ]),
    );
  }

  /** The spec an app was last applied from, if it is deployed. */
  deployedSpec(name: string): AppSpec | undefined {
    return this.#d.state.apps[name]?.spec;
  }

  /** The desired specs (`GET /state/desired`). */
  desiredSpecs(): Record<string, AppSpec> {
    if (!this.#d.fleet) return this.#source.specs();
    return Object.fromEntries((this.#load()?.apps ?? []).map(({ spec }) => [spec.name, spec]));
  }

  /** Applies one action outside the git flow (library `deploy`/`remove`/`upgrade`); throws on failure. */
  applyManual(action: Action): Promise<ActionOutcome> {
    return this.exclusive(async () => (await this.#applyManual(action)).outcome);
  }

  /** Applies one action now (no backoff); throws on failure, the runtime's own error with `rethrow`. */
  async #applyManual(action: Action, options: { rethrow?: boolean } = {}): Promise<Applied> {
    this.#runtimeState = await this.#d.runtime.getCurrentState();
    this.#applier.retryNow(action.app);
    const applied = await this.#applyAndRecord(action, this.#current());
    this.#runtimeState = await this.#d.runtime.getCurrentState();
    await this.#saveState();
    const { outcome } = applied;
    if (outcome.outcome !== "ok") {
      if (options.rethrow && applied.error !== undefined) throw applied.error;
      throw new GitopsError(`${action.type} ${action.app}: ${outcome.error ?? outcome.reason ?? outcome.outcome}`, {
        code: "E_RUNTIME",
      });
    }
    return applied;
  }

  /**
   * A hot reload outside a tick (`agent.hotReload`), through the same path as a tick's: the same
   * events, and a failure in status with the same backoff. The branch is fetched first (a failed
   * fetch is reported in status, and the last fetched commit is reloaded); the next tick applies
   * anything else the new commit changed.
   */
  hotReload(name: string, signal: AbortSignal = new AbortController().signal): Promise<HotReloadResult> {
    if (!this.#d.runtime.hotReload) {
      return Promise.reject(
        new GitopsError("this runtime cannot hot-reload apps", { code: "E_UNSUPPORTED", retry: "stalled" }),
      );
    }
    return this.exclusive(async () => {
      // Fetch first, as a tick does: a reload right after a push must see the pushed code (the next
      // tick still treats that commit as new: see #tick).
      if (await this.#source.sync(signal))
        for (const app of Object.keys(this.#source.specs())) this.#applier.retryNow(app);
      // What is deployed now, not before the wait: a tick may have upgraded or removed the app meanwhile.
      const deployed = this.#d.state.apps[name];
      if (!deployed)
        throw new GitopsError(`no app named "${name}" is deployed`, { code: "E_NOT_FOUND", retry: "stalled" });
      const fromRevision = deployed.revision ?? "";
      const action: Action = { type: "hot_reload", app: name, spec: deployed.spec, fromRevision, toRevision: "" };
      const applied = await this.#applyManual(action, { rethrow: true });
      return applied.reload ?? { app: name, revision: applied.deployed?.revision ?? fromRevision, modules: [] };
    });
  }

  // -------------------------------------------------------------------------------------------

  /** Why the repository (or the last tick) failed, if it did: status is `error` meanwhile. */
  #repoError(): string | undefined {
    return this.#source.error ?? this.#tickError?.message;
  }

  /**
   * Plans the tick: desired state from the specs read last (with the code revisions of floating
   * sources and the rules that protect running apps), current state from what is deployed and what
   * the runtime reports. The same functions build both for `bc-gitops plan`.
   */
  async #plan(
    signal: AbortSignal,
  ): Promise<{ planned: ReturnType<typeof order>; current: Record<string, CurrentApp>; desired: DesiredState }> {
    // Host references are read each tick: a changed file or variable is an env change of its key.
    const read = this.#source.current!;
    const load = await this.#secrets.stampAll(this.#load()!);
    let desired = desiredState(load, this.#d.state.apps, await this.#source.revisions(signal, load.apps));
    // Changes waiting for this host's rollout wave keep what runs as desired until the wave is due.
    if (this.#d.fleet) desired = await this.#d.fleet.hold(desired, this.#d.state.apps, read, this.#d.now(), signal);
    const current = this.#current();
    this.#kept = desired.kept;
    for (const [app, why] of Object.entries(desired.kept)) this.#source.warnOnce(`${app}: ${why}`);
    const actions = plan(desired, current);
    // An app the plan leaves alone runs exactly its desired spec: remember the desired object (the
    // parse cache's, shared by every tick until its file changes), so the next plan compares it by
    // identity instead of field by field.
    const touched = new Set(actions.filter((a) => a.type !== "restart").map((a) => a.app));
    for (const [app, want] of Object.entries(desired.apps)) {
      const deployed = Object.hasOwn(this.#d.state.apps, app) ? this.#d.state.apps[app] : undefined;
      // A new entry, never a change in place: entries are compared and serialized by identity.
      if (deployed && deployed.spec !== want.spec && !touched.has(app) && !desired.invalid.has(app))
        this.#d.state.apps[app] = { ...deployed, spec: want.spec };
    }
    return { planned: order(actions, desired, current), current, desired };
  }

  /** The specs of the commit read last as this host plans from them: placed apps, overrides applied. */
  #load(): LoadResult | undefined {
    const load = this.#source.current?.load;
    return load && this.#d.fleet ? this.#d.fleet.view(load).load : load;
  }

  /** What runs, for the planner: the spec each app was last applied from, and what the runtime observes now. */
  #current(): Record<string, CurrentApp> {
    return currentState(this.#d.state.apps, this.#runtimeState);
  }

  async #saveState(): Promise<void> {
    const text = savedFingerprint(this.#d.state);
    if (!sameFingerprint(text, this.#savedState)) {
      const omitted = await writeState(this.#d.statePath, this.#d.state);
      // The app keeps running; after a restart it is deployed from git instead of restored.
      for (const why of Object.values(omitted)) this.#source.warnOnce(why);
      this.#savedState = text;
    }
    // state.json now holds every action the journal recorded.
    await this.#d.journal?.clear().catch((error: unknown) => {
      this.#source.warnOnce(`cannot clear the state journal: ${redact(messageOf(error))}`);
    });
  }
}

/** What state.json was written from: its commit and the entry object of each app (entries are replaced, never changed in place). */
type StateFingerprint = { commit: string | undefined; version: number; apps: Map<string, unknown> };

function savedFingerprint(state: DurableState): StateFingerprint {
  return { commit: state.commit, version: state.version, apps: new Map(Object.entries(state.apps)) };
}

/** Whether two fingerprints name the same commit and the same entry objects (no serialization). */
function sameFingerprint(a: StateFingerprint, b: StateFingerprint): boolean {
  if (a.commit !== b.commit || a.version !== b.version || a.apps.size !== b.apps.size) return false;
  for (const [name, entry] of a.apps) if (b.apps.get(name) !== entry) return false;
  return true;
}
