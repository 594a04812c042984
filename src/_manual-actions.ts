/**
 * Operations outside the git flow: the library's `deploy`/`remove`/`upgrade` (one action applied at
 * once, no backoff) and `agent.hotReload`. Both take the tick's path (the same applier, events and
 * bookkeeping; state.json saved after), and throw when the action fails. The reconciler runs them
 * one at a time with its ticks.
 */
import type { Applied, Applier } from "./_apply.ts";
import type { DesiredSource } from "./_desired.ts";
import { GitopsError } from "./errors.ts";
import type { Action } from "./plan.ts";
import type { HotReloadResult } from "./runtime.ts";
import type { DurableState } from "./state.ts";

/** What manual operations use of the reconciler. */
export interface ManualContext {
  /** What is deployed (state.json), as recorded now. */
  state: DurableState;
  source: DesiredSource;
  applier: Applier;
  /** Reads what the runtime reports now into the reconciler's state. */
  observe(): Promise<void>;
  /** Applies one action against what runs now and records what it changed (as a tick's actions are). */
  applyAndRecord(action: Action): Promise<Applied>;
  /** Writes state.json if it changed. */
  saveState(): Promise<void>;
}

/** The reconciler's manual operations; the caller runs them one at a time with its ticks. */
export class ManualActions {
  readonly #c: ManualContext;

  constructor(context: ManualContext) {
    this.#c = context;
  }

  /** Applies one action now (no backoff); throws on failure, the runtime's own error with `rethrow`. */
  async apply(action: Action, options: { rethrow?: boolean } = {}): Promise<Applied> {
    await this.#c.observe();
    this.#c.applier.retryNow(action.app);
    const applied = await this.#c.applyAndRecord(action);
    await this.#c.observe();
    await this.#c.saveState();
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
   * A hot reload outside a tick, through the same path as a tick's: the same events, and a failure
   * in status with the same backoff. The branch is fetched first (a failed fetch is reported in
   * status, and the last fetched commit is reloaded); the next tick applies anything else the new
   * commit changed. The runtime must support hot reload (see {@link hotReloadUnsupported}).
   */
  async hotReload(name: string, signal: AbortSignal): Promise<HotReloadResult> {
    const { source, applier } = this.#c;
    // Fetch first, as a tick does: a reload right after a push must see the pushed code (the next
    // tick still treats that commit as new: see the reconciler's tick).
    if (await source.sync(signal)) for (const app of Object.keys(source.specs())) applier.retryNow(app);
    // What is deployed now, not before the wait: a tick may have upgraded or removed the app meanwhile.
    const deployed = this.#c.state.apps[name];
    if (!deployed)
      throw new GitopsError(`no app named "${name}" is deployed`, { code: "E_NOT_FOUND", retry: "stalled" });
    const fromRevision = deployed.revision ?? "";
    const action: Action = { type: "hot_reload", app: name, spec: deployed.spec, fromRevision, toRevision: "" };
    const applied = await this.apply(action, { rethrow: true });
    return applied.reload ?? { app: name, revision: applied.deployed?.revision ?? fromRevision, modules: [] };
  }
}

/** The error of a hot reload on a runtime that cannot do one. */
export function hotReloadUnsupported(): GitopsError {
  return new GitopsError("this runtime cannot hot-reload apps", { code: "E_UNSUPPORTED", retry: "stalled" });
}
