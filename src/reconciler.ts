/**
 * One reconcile tick (SPEC section 4): fetch the branch, read the specs when the commit changed,
 * plan against what runs, apply in dependency order with per-app failure isolation and backoff,
 * and remember what was deployed. The reconciler owns the agent's view of desired and current
 * state; the loop decides when it runs.
 */
import { isAbsolute, join } from "node:path";
import { Applier, type ActionOutcome, type ApplierDeps } from "./_apply.ts";
import { GitopsError, messageOf, retryClassOf } from "./errors.ts";
import type { GitSource } from "./git.ts";
import { SpecCache, loadApps, type LoadResult } from "./loader.ts";
import { currentState, desiredState, order, pendingReason, plan, waitingOn, type Action, type CurrentApp, type PlanError } from "./plan.ts";
import { redact } from "./redact.ts";
import type { AppState, HotReloadResult } from "./runtime.ts";
import { hasFloatingSource, type AppSpec } from "./spec.ts";
import { writeState } from "./state.ts";
import type { StateJournal } from "./state-journal.ts";
import { verifyCommit } from "./verify.ts";
import { appView, statusName, type AgentStatus, type StatusError } from "./status.ts";


export type { ActionOutcome } from "./_apply.ts";

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
  statePath: string;
  /** Records each completed action as it completes (state.json is written once per tick). */
  journal?: StateJournal;
  /** Where the reconciler puts the checkout its current specs were read from, for the runtime (`RuntimeContext.repoDir`). */
  checkout?: { repoDir?: string | undefined };
}

/** The reconciler: state plus the tick. One instance per agent; never runs two ticks at once (the loop guarantees it). */
export class Reconciler {
  readonly #d: ReconcilerDeps;
  readonly #cache = new SpecCache();
  /** Applies actions and keeps per-app failures, pending reasons, restarts and the backoff (also the git remote's). */
  readonly #applier: Applier;
  #desired: { commit: string; load: LoadResult; repoDir: string } | undefined;
  /** Apps whose source the runtime refused to resolve as unsafe (a path source escaping the repository), with why. */
  #refused = new Map<string, string>();
  /** Deployed apps the last plan kept only because a broken spec file might still be them, with why. */
  #kept: Readonly<Record<string, string>> = {};
  /** Spec problems already logged for the commit they were found in: each is logged once, status keeps it. */
  #logged: { commit: string; lines: Set<string> } = { commit: "", lines: new Set() };
  #runtimeState: Record<string, AppState> = {};
  #repoError: string | undefined;
  #planErrors: PlanError[] = [];
  #workPending = false;
  #lastTick: { at: number; duration_ms: number; error: string | null } | undefined;
  #savedState = "";
  #pendingTicks = 0;
  readonly #verifiedCommits = new Set<string>();
  /** Revisions of path sources inside the repository, by snapshot directory and path. */
  #pathRevisions = new Map<string, string>();
  /** Ticks and manual operations run one at a time: they share state and state.json. */
  #queue: Promise<unknown> = Promise.resolve();
  /** The spec file each desired app came from (`apps/web/app.yaml`). */
  #files = new Map<string, string>();

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
    this.#applier = new Applier(deps, {
      runtimeState: () => this.#runtimeState,
      specFile: (app) => this.#files.get(app),
      commit: () => this.#desired?.commit,
    });
    this.#savedState = JSON.stringify(deps.state);
  }

  /** The checkout the current specs were read from (path sources are relative to it). */
  get repoDir(): string | undefined {
    return this.#desired?.repoDir;
  }

  /** When the next tick should run at the latest, for retries and pending apps (ms from now). */
  nextDelay(): number {
    const interval = this.#d.config.reconcile_interval;
    const now = this.#d.now();
    const retry = this.#applier.backoff.nextRetry(now);
    let delay = retry === undefined ? interval : Math.min(interval, retry - now);
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
    if (!commit) return;
    this.#verifiedCommits.add(commit); // it was applied, so it passed verification then
    try {
      await this.#read(commit, signal);
    } catch (error) {
      this.#d.logger.debug(`no local snapshot of ${commit.slice(0, 12)} to start from: ${messageOf(error)}`);
    }
  }

  /** Starts the apps remembered in state.json from their cached workspaces, dependencies first. */
  async restore(signal?: AbortSignal): Promise<void> {
    const remembered = Object.values(this.#d.state.apps);
    if (remembered.length === 0) return;
    this.#d.logger.info(`restoring ${remembered.length} app(s) from ${this.#d.statePath}`);
    const desired = { apps: Object.fromEntries(remembered.map((a) => [a.spec.name, { spec: a.spec }])), invalid: new Set<string>() };
    const { actions } = order(remembered.map((a) => ({ type: "deploy" as const, app: a.spec.name, spec: a.spec })), desired, {});
    for (const action of actions) {
      if (signal?.aborted) return;
      const app = this.#d.state.apps[action.app]!;
      const waiting = waitingOn(app.spec, this.#current());
      if (waiting.length > 0) {
        // The first tick plans a (gated) restart for it once its dependencies are running and healthy.
        this.#d.logger.info(`${action.app} waits: ${pendingReason(waiting, this.#current())}`);
        continue;
      }
      try {
        const state = await this.#d.runtime.deploy(app.spec);
        this.#runtimeState[action.app] = state;
        this.#d.logger.info(`restored ${action.app} ${app.version}`);
      } catch (error) {
        this.#applier.fail(action.app, error);
        this.#d.logger.warn(`could not restore ${action.app}: ${redact(messageOf(error))}`);
      }
    }
  }

  /** Runs `task` after every tick and manual operation before it has finished (one at a time). */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task, task);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** One tick. Never throws for app or repository failures: they are in the result and in status. */
  tick(signal: AbortSignal): Promise<TickResult> {
    return this.exclusive(() => this.#tick(signal));
  }

  async #tick(signal: AbortSignal): Promise<TickResult> {
    const started = this.#d.now();
    const { emit } = this.#d;
    emit("bc_gitops:reconcile:start", {}, { commit: this.#desired?.commit });
    let changed = false;
    const outcomes: ActionOutcome[] = [];
    try {
      changed = await this.#syncSource(signal);
      this.#runtimeState = await this.#d.runtime.getCurrentState();
      if (this.#desired && !signal.aborted) {
        let { planned, current } = await this.#plan(signal);
        // A snapshot damaged on disk must not remove an app: before any removal, check the apps the
        // snapshot showed against the commit's tree in the object store, and re-read it if they differ.
        if (planned.actions.some((a) => a.type === "remove") && !(await this.#snapshotIntact(signal))) {
          await this.#read(this.#desired.commit, signal, { fresh: true });
          ({ planned, current } = await this.#plan(signal));
        }
        this.#planErrors = planned.errors;
        for (const problem of planned.errors) this.#applier.planFailed(problem);
        this.#applier.clearSettled(planned.actions, planned.errors);
        this.#workPending = planned.actions.length > 0;
        for (const action of planned.actions) {
          if (signal.aborted) break;
          const outcome = await this.#applier.apply(action, current);
          outcomes.push(outcome);
          // Each completed action is on disk before the next starts: an agent killed mid-tick neither
          // repeats nor reverts it after a restart.
          if (outcome.outcome === "ok") await this.#d.journal?.record(action.app, this.#d.state.apps[action.app]);
        }
        this.#d.state.commit = this.#desired.commit;
        // Old snapshots go after the apply, off the tick's critical path (git serialises it with the next fetch).
        if (changed) void this.#d.git.prune([this.#desired.commit]).catch(() => {});
        if (outcomes.length > 0) this.#runtimeState = await this.#d.runtime.getCurrentState();
        this.#workPending = outcomes.some((o) => o.outcome !== "ok");
      }
      await this.#saveState();
    } catch (error) {
      // Unexpected (a runtime's getCurrentState threw, state.json could not be written): report, keep going next tick.
      this.#repoError ??= redact(messageOf(error));
      emit("bc_gitops:reconcile:error", {}, { error: redact(messageOf(error)) });
      this.#d.logger.error(`reconcile failed: ${redact(messageOf(error))}`);
    } finally {
      this.#lastTick = { at: started, duration_ms: this.#d.now() - started, error: this.#repoError ?? null };
    }
    const status = this.status();
    emit("bc_gitops:reconcile:stop", { duration_ms: this.#lastTick.duration_ms }, { commit: status.last_commit ?? undefined, status: status.status });
    return {
      commit: this.#desired?.commit ?? null,
      changed,
      duration_ms: this.#lastTick.duration_ms,
      actions: outcomes,
      errors: status.errors,
      status: status.status,
    };
  }

  /** The agent status (`GET /status`). */
  status(): AgentStatus {
    const apps = Object.values(this.apps());
    const errors = this.errors();
    return {
      status: statusName({
        initialized: this.#lastTick !== undefined,
        repoError: this.#repoError !== undefined,
        apps,
        errors: errors.length,
        workPending: this.#workPending,
      }),
      last_commit: this.#desired?.commit ?? this.#d.state.commit ?? null,
      app_count: apps.length,
      healthy_count: apps.filter((a) => a.status === "running" && a.health === "healthy").length,
      last_reconcile: {
        at: this.#lastTick ? new Date(this.#lastTick.at).toISOString() : null,
        duration_ms: this.#lastTick?.duration_ms ?? null,
        // The repository's error as of now, like `status` itself: a tick that has read the repository
        // fine clears it at once, so the two never disagree while the rest of the tick runs.
        error: this.#lastTick ? (this.#repoError ?? null) : null,
      },
      errors,
    };
  }

  /** Every problem status shows: the repository's, spec errors, plan errors and app failures. */
  errors(): StatusError[] {
    const out: StatusError[] = [];
    if (this.#repoError) out.push({ message: this.#repoError });
    for (const e of this.#desired?.load.errors ?? []) out.push({ ...e });
    for (const [app, message] of Object.entries(this.#kept)) out.push({ app, message });
    for (const [app, message] of this.#refused) out.push({ app, message });
    const planned = new Set(this.#planErrors.map((p) => p.app));
    for (const p of this.#planErrors) out.push({ app: p.app, message: p.message });
    for (const [app, info] of this.#applier.info) {
      if (!info.last_error || planned.has(app)) continue;
      if (info.crashed && this.#runtimeState[app]?.status === "running") continue; // restarted: shown in the app's state only
      out.push({ app, message: info.last_error });
    }
    return out;
  }

  /** Every app the agent knows (desired, deployed or running), as `AppState` views. */
  apps(): Record<string, AppState> {
    const desired = this.#desiredApps();
    const names = new Set([...Object.keys(desired), ...Object.keys(this.#d.state.apps), ...Object.keys(this.#runtimeState)]);
    const out: Record<string, AppState> = {};
    for (const name of [...names].sort()) {
      const deployed = this.#d.state.apps[name];
      const spec = deployed?.spec ?? desired[name];
      const info = this.#applier.infoOf(name);
      out[name] = appView(name, spec, this.#runtimeState[name], { ...info, revision: deployed?.revision, path: deployed?.workspace });
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

  /** The spec an app was last applied from, if it is deployed. */
  deployedSpec(name: string): AppSpec | undefined {
    return this.#d.state.apps[name]?.spec;
  }

  /** The desired specs (`GET /state/desired`). */
  desiredSpecs(): Record<string, AppSpec> {
    return this.#desiredApps();
  }

  /** Applies one action outside the git flow (library `deploy`/`remove`/`upgrade`); throws on failure. */
  applyManual(action: Action): Promise<ActionOutcome> {
    return this.exclusive(() => this.#applyManual(action));
  }

  async #applyManual(action: Action): Promise<ActionOutcome> {
    this.#runtimeState = await this.#d.runtime.getCurrentState();
    this.#applier.retryNow(action.app);
    const outcome = await this.#applier.apply(action, this.#current());
    this.#runtimeState = await this.#d.runtime.getCurrentState();
    await this.#saveState();
    if (outcome.outcome !== "ok") {
      throw new GitopsError(`${action.type} ${action.app}: ${outcome.error ?? outcome.reason ?? outcome.outcome}`, { code: "E_RUNTIME" });
    }
    return outcome;
  }

  /**
   * A hot reload outside a tick (`agent.hotReload`): the runtime's reload and the record of its
   * revision, workspace and state in one exclusive section, so no tick sees one without the other.
   */
  hotReload(spec: AppSpec): Promise<HotReloadResult> {
    const reload = this.#d.runtime.hotReload?.bind(this.#d.runtime);
    if (!reload) return Promise.reject(new GitopsError("this runtime cannot hot-reload apps", { code: "E_RUNTIME", retry: "stalled" }));
    return this.exclusive(async () => {
      const result = await reload(spec);
      await this.#recordRevision(spec.name, result.revision);
      return result;
    });
  }

  async #recordRevision(app: string, revision: string): Promise<void> {
    this.#runtimeState = await this.#d.runtime.getCurrentState();
    const deployed = this.#d.state.apps[app];
    if (deployed) deployed.revision = revision;
    const path = this.#runtimeState[app]?.path;
    if (deployed && path) deployed.workspace = path;
    await this.#saveState();
  }

  // -------------------------------------------------------------------------------------------

  /** Fetches the branch and re-reads the specs when needed; returns whether a new commit was read. */
  async #syncSource(signal: AbortSignal): Promise<boolean> {
    const known = this.#desired?.commit;
    let commit: string;
    try {
      const fetched = await this.#d.git.fetch(known, signal);
      commit = fetched.commit;
      this.#applier.backoff.reset("\0git");
    } catch (error) {
      if (signal.aborted) throw error;
      this.#repoError = redact(messageOf(error));
      this.#applier.backoff.fail("\0git", this.#d.now());
      this.#d.emit("bc_gitops:reconcile:error", {}, { error: this.#repoError });
      this.#d.logger.warn(`cannot fetch ${this.#d.config.branch}: ${this.#repoError}${retryClassOf(error) === "stalled" ? "" : "; will retry"}`);
      return false;
    }
    const mustRead = commit !== known || !this.#desired || this.#desired.load.errors.length > 0 || this.#repoError !== undefined;
    if (!mustRead) return false;
    if (commit !== known && !(await this.#verified(commit, signal))) return false;
    try {
      await this.#read(commit, signal);
      this.#repoError = undefined;
    } catch (error) {
      if (signal.aborted) throw error;
      this.#repoError = redact(messageOf(error));
      this.#warnOnce(commit, `cannot read the specs of ${commit.slice(0, 12)}: ${this.#repoError}`);
      return false;
    }
    if (commit !== known) {
      // A new commit may fix what failed: retry every app now rather than after its backoff.
      for (const name of Object.keys(this.#desiredApps())) {
        this.#applier.retryNow(name);
      }
      this.#d.logger.info(`applying commit ${commit.slice(0, 12)}`);
    }
    return commit !== known;
  }

  /**
   * With `verify` set, whether `commit` is signed by an allowed key. A rejected commit is not
   * applied: the last verified commit keeps running and status says why (checked again each
   * tick, since a fixed allowed_signers file can accept it without a new commit).
   */
  async #verified(commit: string, signal: AbortSignal): Promise<boolean> {
    const verify = this.#d.config.verify;
    if (!verify || this.#verifiedCommits.has(commit)) return true;
    const verdict = await verifyCommit(this.#d.git.gitDir, commit, verify, { signal, timeoutMs: this.#d.config.git_timeout });
    if (verdict.ok) {
      this.#verifiedCommits.add(commit);
      this.#d.logger.info(`commit ${commit.slice(0, 12)} is signed by ${verdict.signer}`);
      return true;
    }
    const running = this.#desired?.commit;
    this.#repoError = `not applying ${commit.slice(0, 12)}: ${verdict.reason}; ${running ? `still at the verified commit ${running.slice(0, 12)}` : "no verified commit yet"}`;
    this.#d.emit("bc_gitops:reconcile:error", {}, { commit, error: this.#repoError });
    this.#d.logger.warn(this.#repoError);
    return false;
  }

  async #read(commit: string, signal?: AbortSignal, options: { fresh?: boolean } = {}): Promise<void> {
    const { emit, git, config } = this.#d;
    if (options.fresh) await git.dropSnapshot(commit);
    const repoDir = await git.snapshot(commit, signal);
    const started = this.#d.now();
    emit("bc_gitops:parse:start", {}, { commit });
    let load: LoadResult;
    try {
      load = await loadApps(join(repoDir, config.apps_dir), { root: repoDir, cache: this.#cache });
    } catch (error) {
      throw new GitopsError(error instanceof GitopsError ? `commit ${commit.slice(0, 12)}: ${error.message}` : `cannot read ${config.apps_dir}/ at ${commit.slice(0, 12)}: ${messageOf(error)}`, { code: "E_SPEC", retry: "stalled", cause: error });
    }
    emit("bc_gitops:parse:stop", { duration_ms: this.#d.now() - started, apps: load.apps.length, errors: load.errors.length }, { commit });
    for (const e of load.errors) this.#warnOnce(commit, `${e.file}${e.line ? `:${e.line}:${e.column ?? 1}` : ""} ${e.path ? `${e.path}: ` : ""}${e.message}`);
    this.#files = new Map(load.apps.map(({ spec, file }) => [spec.name, file]));
    if (repoDir !== this.#desired?.repoDir || options.fresh) this.#pathRevisions = new Map();
    this.#desired = { commit, repoDir, load };
    if (this.#d.checkout) this.#d.checkout.repoDir = repoDir;
  }

  /** Logs a problem the first time it is seen in a commit; status keeps showing it on every tick. */
  #warnOnce(commit: string, line: string): void {
    if (this.#logged.commit !== commit) this.#logged = { commit, lines: new Set() };
    if (this.#logged.lines.has(line)) return;
    this.#logged.lines.add(line);
    this.#d.logger.warn(line);
  }

  /** The valid specs of the commit read last, by app name. */
  #desiredApps(): Record<string, AppSpec> {
    return Object.fromEntries((this.#desired?.load.apps ?? []).map(({ spec }) => [spec.name, spec]));
  }

  /**
   * Plans the tick: desired state from the specs read last (with the code revisions of floating
   * sources and the rules that protect running apps), current state from what is deployed and what
   * the runtime reports. The same functions build both for `bc-gitops plan`.
   */
  async #plan(signal: AbortSignal): Promise<{ planned: ReturnType<typeof order>; current: Record<string, CurrentApp> }> {
    const load = this.#desired!.load;
    const desired = desiredState(load, this.#d.state.apps, await this.#revisions(load, signal));
    const current = this.#current();
    this.#kept = desired.kept;
    for (const [app, why] of Object.entries(desired.kept)) this.#warnOnce(this.#desired!.commit, `${app}: ${why}`);
    return { planned: order(plan(desired, current), desired, current), current };
  }

  /**
   * Whether the snapshot the specs were read from still shows every spec file the commit has under
   * `apps_dir` (asked of the object store with one `git ls-tree`). A directory deleted from a
   * snapshot on disk would otherwise look like an app removed from the repository.
   */
  async #snapshotIntact(signal: AbortSignal): Promise<boolean> {
    const { commit, load } = this.#desired!;
    let inGit: string[];
    try {
      inGit = await this.#d.git.specDirs(commit, this.#d.config.apps_dir, signal);
    } catch (error) {
      if (signal.aborted) throw error;
      this.#d.logger.warn(`cannot list ${this.#d.config.apps_dir}/ of ${commit.slice(0, 12)} to confirm removals: ${redact(messageOf(error))}`);
      return false;
    }
    const seen = new Set([...load.apps, ...load.errors].map(({ file }) => file.split("/").at(-2)));
    const missing = inGit.filter((dir) => !seen.has(dir));
    if (missing.length === 0) return true;
    this.#d.logger.warn(`the local snapshot of ${commit.slice(0, 12)} lacks ${missing.map((d) => `${this.#d.config.apps_dir}/${d}`).join(", ")}: checking it out again before removing anything`);
    return false;
  }

  /** The code revision each floating source (git branch, path) points at now, by app name. */
  async #revisions(load: LoadResult, signal: AbortSignal): Promise<Record<string, string>> {
    const resolve = this.#d.runtime.resolveRevision?.bind(this.#d.runtime);
    const repoDir = this.#desired?.repoDir;
    const out: Record<string, string> = {};
    const refused = new Map<string, string>();
    if (!resolve || !repoDir) return out;
    const floating = load.apps.filter(({ spec }) => hasFloatingSource(spec));
    for (let i = 0; i < floating.length; i += 8) {
      await Promise.all(
        floating.slice(i, i + 8).map(async ({ spec }) => {
          // A path inside the repository changes only with the commit (repoDir is that commit's
          // snapshot): hash it once per commit, not on every tick.
          const fixed = spec.source.type === "path" && !isAbsolute(spec.source.path) ? `${repoDir}\0${spec.source.path}` : undefined;
          try {
            const revision = (fixed && this.#pathRevisions.get(fixed)) || (await resolve(spec, { repoDir, signal }));
            if (fixed && revision) this.#pathRevisions.set(fixed, revision);
            if (revision) out[spec.name] = revision;
          } catch (error) {
            const message = redact(messageOf(error));
            // A refused source (unsafe) is the repository's mistake: say so, once per commit, and in
            // status; anything else (a source remote away) is retried quietly on the next tick.
            if (error instanceof GitopsError && error.code === "E_UNSAFE") {
              refused.set(spec.name, message);
              this.#warnOnce(this.#desired?.commit ?? "", `${spec.name}: ${message}`);
            } else this.#d.logger.debug(`cannot resolve the revision of ${spec.name}: ${message}`);
          }
        }),
      );
    }
    this.#refused = refused;
    return out;
  }

  /** What runs, for the planner: the spec each app was last applied from, and what the runtime observes now. */
  #current(): Record<string, CurrentApp> {
    return currentState(this.#d.state.apps, this.#runtimeState);
  }

  async #saveState(): Promise<void> {
    const text = JSON.stringify(this.#d.state);
    if (text !== this.#savedState) {
      await writeState(this.#d.statePath, this.#d.state);
      this.#savedState = text;
    }
    // state.json now holds every action the journal recorded.
    await this.#d.journal?.clear();
  }
}
