/**
 * One reconcile tick (SPEC section 4): fetch the branch, read the specs when the commit changed,
 * plan against what runs, apply in dependency order with per-app failure isolation and backoff,
 * and remember what was deployed. The reconciler owns what is deployed (state.json) and what the
 * runtime reports; `DesiredSource` owns what the repository says; the loop decides when it runs.
 * Its status views, state.json saving and manual operations are in `_reconciler-views.ts`,
 * `_state-save.ts` and `_manual-actions.ts`.
 */
import { Applier, type ActionOutcome, type Applied, type ApplierDeps } from "./_apply.ts";
import { DesiredSource, type Checkout } from "./_desired.ts";
import { ManualActions, hotReloadUnsupported } from "./_manual-actions.ts";
import { ReconcilerViews, type TickRecord } from "./_reconciler-views.ts";
import { runPlan } from "./_schedule.ts";
import { StateSaver } from "./_state-save.ts";
import { codeOf, messageOf } from "./errors.ts";
import type { Fleet } from "./fleet/fleet.ts";
import type { GitSource } from "./git.ts";
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
} from "./plan.ts";
import { redact } from "./redact.ts";
import { SecretResolver } from "./secrets/resolve.ts";
import type { AppState, HotReloadResult } from "./runtime.ts";
import type { AppSpec } from "./spec.ts";
import type { DurableState } from "./state.ts";
import type { StateJournal } from "./state-journal.ts";
import type { AgentStatus, StatusError } from "./status.ts";

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
  /** What the runtime reported last. */
  #runtimeState: Record<string, AppState> = {};
  /** How the ticks went, for status. */
  readonly #record: TickRecord = { last: undefined, error: undefined, planErrors: [], kept: {}, workPending: false };
  /** Status, app views, desired and deployed specs. */
  readonly #views: ReconcilerViews;
  /** Library `deploy`/`remove`/`upgrade` and hot reloads outside a tick. */
  readonly #manual: ManualActions;
  /** Writes state.json when it changed. */
  readonly #saver: StateSaver;
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
    // Views, state saving and manual operations share this reconciler's state: `state` and the tick
    // record by reference, what the runtime reported through a function (each observation replaces it).
    const { state, fleet, now } = deps;
    const source = this.#source;
    const applier = this.#applier;
    this.#views = new ReconcilerViews({
      state,
      source,
      applier,
      fleet,
      now,
      record: this.#record,
      runtimeState: () => this.#runtimeState,
    });
    this.#saver = new StateSaver({ ...deps, warnOnce: (message) => source.warnOnce(message) });
    this.#manual = new ManualActions({
      state,
      source,
      applier,
      observe: async () => {
        this.#runtimeState = await deps.runtime.getCurrentState();
      },
      applyAndRecord: (action) => this.#applyAndRecord(action, this.#current()),
      saveState: () => this.#saver.save(),
    });
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
      if (changed) this.#applier.retryEvery((name) => this.#source.has(name));
      this.#runtimeState = await this.#d.runtime.getCurrentState();
      const read = this.#source.current;
      if (read && !signal.aborted) {
        // Specs are read from the object store, never from files on disk that could be damaged.
        const { planned, current, desired } = await this.#plan(signal);
        this.#record.planErrors = planned.errors;
        for (const problem of planned.errors) this.#applier.planFailed(problem);
        this.#applier.clearSettled(planned.actions, planned.errors);
        this.#record.workPending = planned.actions.length > 0;
        // Independent actions at the same time, at most apply_concurrency at once; outcomes in plan order.
        const apply = (action: Action) => this.#applyAndRecord(action, current);
        const applied = await runPlan(planned.actions, desired, current, apply, { limit: this.#limit, signal });
        outcomes.push(...applied.map((a) => a.outcome));
        this.#d.state.commit = read.commit;
        // Old snapshots go after the apply, off the tick's critical path (git serialises it with the next fetch).
        if (changed) void this.#d.git.prune([read.commit]).catch(() => {});
        if (outcomes.length > 0) this.#runtimeState = await this.#d.runtime.getCurrentState();
        this.#record.workPending = outcomes.some((o) => o.outcome !== "ok");
      }
      await this.#saver.save();
      this.#record.error = undefined;
    } catch (error) {
      // Unexpected (a runtime's getCurrentState threw, state.json could not be written): report, keep going next tick.
      const code = codeOf(error);
      const failure = { message: redact(messageOf(error)), ...(code ? { code } : {}) };
      this.#record.error = failure;
      emit("bc_gitops:reconcile:error", {}, { error: failure.message });
      this.#d.logger.error(`reconcile failed: ${failure.message}`);
    } finally {
      this.#record.last = { at: started, duration_ms: this.#d.now() - started };
    }
    const { duration_ms } = this.#record.last;
    const status = this.status();
    emit(
      "bc_gitops:reconcile:stop",
      { duration_ms },
      { commit: status.last_commit ?? undefined, status: status.status },
    );
    return {
      commit: this.#source.current?.commit ?? null,
      changed,
      duration_ms,
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
    return this.#views.status();
  }

  /** Every problem status shows: the repository's, spec errors, plan errors and app failures. */
  errors(): StatusError[] {
    return this.#views.errors();
  }

  /** Every app the agent knows (desired, deployed or running), as `AppState` views. */
  apps(): Record<string, AppState> {
    return this.#views.apps();
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
    return this.#views.deployedApps();
  }

  /** The spec an app was last applied from, if it is deployed. */
  deployedSpec(name: string): AppSpec | undefined {
    return this.#d.state.apps[name]?.spec;
  }

  /** The desired specs (`GET /state/desired`). */
  desiredSpecs(): Record<string, AppSpec> {
    return this.#views.desiredSpecs();
  }

  /** Applies one action outside the git flow (library `deploy`/`remove`/`upgrade`); throws on failure. */
  applyManual(action: Action): Promise<ActionOutcome> {
    return this.exclusive(async () => (await this.#manual.apply(action)).outcome);
  }

  /**
   * A hot reload outside a tick (`agent.hotReload`), through the same path as a tick's: the same
   * events, and a failure in status with the same backoff. The branch is fetched first (a failed
   * fetch is reported in status, and the last fetched commit is reloaded); the next tick applies
   * anything else the new commit changed.
   */
  hotReload(name: string, signal: AbortSignal = new AbortController().signal): Promise<HotReloadResult> {
    if (!this.#d.runtime.hotReload) return Promise.reject(hotReloadUnsupported());
    return this.exclusive(() => this.#manual.hotReload(name, signal));
  }

  // -------------------------------------------------------------------------------------------

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
    const load = await this.#secrets.stampAll(this.#views.load()!);
    let desired = desiredState(load, this.#d.state.apps, await this.#source.revisions(signal, load.apps));
    // Changes waiting for this host's rollout wave keep what runs as desired until the wave is due.
    if (this.#d.fleet) desired = await this.#d.fleet.hold(desired, this.#d.state.apps, read, this.#d.now(), signal);
    const current = this.#current();
    this.#record.kept = desired.kept;
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

  /** What runs, for the planner: the spec each app was last applied from, and what the runtime observes now. */
  #current(): Record<string, CurrentApp> {
    return currentState(this.#d.state.apps, this.#runtimeState);
  }
}
