/**
 * The agent's side of a fleet: who this host is (its identity can change while the agent runs),
 * its view of the specs read last, and the rollout waves it is waiting for. The reconciler asks it
 * for the view to plan from and for the desired state with waiting changes held back; the agent
 * asks it when the next wave is due and what to show per app.
 */
import type { LoadResult } from "../loader.ts";
import type { Logger } from "../logger.ts";
import { GitopsError, messageOf } from "../errors.ts";
import { plan, type Desired, type DeployedSpec, type DesiredApp } from "../plan.ts";
import { redact } from "../redact.ts";
import type { AppState } from "../runtime.ts";
import type { AppSpec } from "../spec.ts";
import { maskEnv } from "../status.ts";
import { formatLabels, hostIdentity, labelsProblem, type HostIdentity } from "./host.ts";
import { rolloutVerdict, waveOf } from "./rollout.ts";
import { effectiveSpec, type Effective } from "./overrides.ts";
import { fleetView, type FleetView } from "./view.ts";

/** The collaborators of a {@link Fleet}. */
export interface FleetDeps {
  /** Who this host is (see `hostIdentity`). */
  identity: HostIdentity;
  /** When the last commit up to `commit` that changed `path` was made (ms since the epoch), from git. */
  commitTime(commit: string, path: string, signal?: AbortSignal): Promise<number>;
  logger: Logger;
}

/** A change this host holds back for its rollout wave. */
export interface HeldChange {
  wave: number;
  waves: number;
  paused: boolean;
  /** When the wave may apply it (absent while paused). */
  due?: number;
  /** `waiting for wave 2 at 2025-…Z`, or `rollout paused (…)`. */
  reason: string;
}

/** What `GET /apps/:name` adds for an app placed on this host. */
export interface FleetDetail {
  /** The spec this host wants for the app, overrides applied (env not yet masked). */
  effective_spec?: AppSpec;
  overrides_applied?: { index: number; match: string; fields: string[] }[];
  rollout?: {
    wave: number;
    waves: number;
    interval_ms: number;
    paused: boolean;
    waiting: boolean;
    due_at?: string;
  };
}

/** One agent's fleet state; used by one tick at a time. */
export class Fleet {
  readonly #d: FleetDeps;
  #identity: HostIdentity;
  #memo: { load: LoadResult; identity: HostIdentity; view: FleetView } | undefined;
  #commitTimes = new Map<string, number>();
  #held = new Map<string, HeldChange>();
  #effective = new WeakMap<AppSpec, { identity: HostIdentity; result: Effective }>();
  #warned = new Set<string>();

  constructor(deps: FleetDeps) {
    this.#d = deps;
    this.#identity = deps.identity;
  }

  /** This host's name and labels, built-in ones included. */
  get identity(): HostIdentity {
    return this.#identity;
  }

  /** Replaces the configured labels; the next tick plans with them. Throws E_CONFIG naming a bad label. */
  setLabels(labels: Readonly<Record<string, string>>): void {
    const given = Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)]));
    const problem = labelsProblem(given);
    if (problem) throw new GitopsError(`invalid labels: ${problem}`, { code: "E_CONFIG", retry: "stalled" });
    this.#identity = hostIdentity(this.#identity.host, given);
    this.#d.logger.info(`labels of ${this.#identity.host} are now ${formatLabels(given)}`);
  }

  /** The changes held back by the last tick, by app. */
  get held(): ReadonlyMap<string, HeldChange> {
    return this.#held;
  }

  /** Whether any change waits for its wave or a paused rollout (status is then `out_of_sync`). */
  get waiting(): boolean {
    return this.#held.size > 0;
  }

  /** When the earliest held wave is due (ms since the epoch), if one is. */
  nextDue(): number | undefined {
    const dues = [...this.#held.values()].flatMap((h) => (h.due === undefined ? [] : [h.due]));
    return dues.length ? Math.min(...dues) : undefined;
  }

  /** This host's view of `load` (computed once per load and identity). */
  view(load: LoadResult): FleetView {
    const memo = this.#memo;
    if (memo && memo.load === load && memo.identity === this.#identity) return memo.view;
    const identity = this.#identity;
    // The same spec object (unchanged file, cached by the loader) keeps the same effective spec
    // across commits, so the planner compares it by identity and state.json rewrites nothing for it.
    const view = fleetView(load, identity, (spec) => {
      const hit = this.#effective.get(spec);
      if (hit?.identity === identity) return hit.result;
      const result = effectiveSpec(spec, identity);
      this.#effective.set(spec, { identity, result });
      return result;
    });
    this.#memo = { load, identity, view };
    return view;
  }

  /**
   * `desired` with every change that waits for its rollout wave held back: an app that runs keeps
   * its deployed spec (and code revision) as desired, one that does not run yet is left alone
   * (`invalid`), until `now` reaches its wave. Wave 0 applies at once; a paused rollout holds every
   * wave. Code changes under the same spec (a hot reload) and restarts are never held.
   */
  async hold(
    desired: Desired,
    deployed: Readonly<Record<string, DeployedSpec>>,
    read: { commit: string; load: LoadResult },
    now: number,
    signal?: AbortSignal,
  ): Promise<Desired> {
    const held = new Map<string, HeldChange>();
    const apps: Record<string, DesiredApp> = { ...desired.apps };
    const invalid = new Set(desired.invalid);
    const { placed } = this.view(read.load);
    for (const [name, want] of Object.entries(desired.apps)) {
      const rollout = placed.get(name)?.rollout;
      if (!rollout || (rollout.waves === 1 && !rollout.paused)) continue;
      const have = Object.hasOwn(deployed, name) ? deployed[name] : undefined;
      if (have && !changesSpec(name, want, have)) continue;
      const verdict = await rolloutVerdict(rollout, this.#identity, name, now, () =>
        this.#commitTime(read.commit, placed.get(name)!.dir, signal),
      ).catch((error: unknown) => {
        if (signal?.aborted) throw error;
        const reason = `waiting: cannot read when ${placed.get(name)!.dir} last changed: ${redact(messageOf(error))}`;
        this.#warnOnce(`${name}: ${reason}`);
        return {
          hold: true as const,
          wave: waveOf(this.#identity, name, rollout.waves),
          paused: true as const,
          reason,
        };
      });
      if (!verdict.hold) continue;
      held.set(name, {
        wave: verdict.wave,
        waves: rollout.waves,
        paused: rollout.paused,
        ...(verdict.paused ? {} : { due: verdict.due }),
        reason: verdict.reason,
      });
      if (have) apps[name] = { spec: have.spec, ...(have.revision ? { revision: have.revision } : {}) };
      else {
        delete apps[name];
        invalid.add(name);
      }
    }
    this.#held = held;
    return { ...desired, apps, invalid };
  }

  /** What `GET /apps/:name` shows of the fleet for `name`: its effective spec, overrides and rollout. */
  detail(name: string): FleetDetail {
    const view = this.#memo?.view;
    const placed = view?.placed.get(name);
    if (!view || !placed) return {};
    const spec = view.load.apps.find((a) => a.spec.name === name)?.spec;
    const held = this.#held.get(name);
    const { rollout } = placed;
    return {
      ...(spec ? { effective_spec: spec } : {}),
      overrides_applied: placed.applied,
      ...(rollout
        ? {
            rollout: {
              wave: held?.wave ?? waveOf(this.#identity, name, rollout.waves),
              waves: rollout.waves,
              interval_ms: rollout.interval,
              paused: rollout.paused,
              waiting: held !== undefined,
              ...(held?.due !== undefined ? { due_at: new Date(held.due).toISOString() } : {}),
            },
          }
        : {}),
    };
  }

  /**
   * `app` as `/apps` shows it on this host: the version the repository wants here
   * (`desired_version`), its rollout wave, and why it waits when a wave holds its change back.
   */
  annotate(app: AppState): AppState {
    const { rollout, effective_spec } = this.detail(app.name);
    const held = this.#held.get(app.name);
    return {
      ...app,
      ...(effective_spec ? { desired_version: effective_spec.version } : {}),
      ...(rollout ? { rollout } : {}),
      ...(held && !app.pending_reason ? { pending_reason: held.reason } : {}),
    };
  }

  /** {@link annotate}, plus the effective spec (env masked) and the overrides that applied (`GET /apps/:name`). */
  withDetail(app: AppState): AppState {
    const { effective_spec, overrides_applied } = this.detail(app.name);
    return {
      ...this.annotate(app),
      ...(effective_spec ? { effective_spec: { ...effective_spec, env: maskEnv(effective_spec.env) } } : {}),
      ...(overrides_applied ? { overrides_applied } : {}),
    };
  }

  /** The commit time of the last change to `dir` up to `commit`, cached per commit. */
  async #commitTime(commit: string, dir: string, signal?: AbortSignal): Promise<number> {
    const key = `${commit}\0${dir}`;
    let time = this.#commitTimes.get(key);
    if (time === undefined) {
      time = await this.#d.commitTime(commit, dir, signal);
      if (this.#commitTimes.size > 1000) this.#commitTimes.clear();
      this.#commitTimes.set(key, time);
    }
    return time;
  }

  #warnOnce(line: string): void {
    if (this.#warned.has(line)) return;
    if (this.#warned.size > 100) this.#warned.clear();
    this.#warned.add(line);
    this.#d.logger.warn(line);
  }
}

/** Whether applying `want` over what runs would change its spec (deploy, upgrade, reconfigure), by the planner's own rule. */
function changesSpec(name: string, want: DesiredApp, have: DeployedSpec): boolean {
  const actions = plan(
    { apps: { [name]: want }, invalid: new Set() },
    {
      [name]: {
        spec: have.spec,
        ...(have.revision ? { revision: have.revision } : {}),
        status: "running",
        health: "healthy",
      },
    },
  );
  return actions.some((a) => a.type === "upgrade" || a.type === "reconfigure" || a.type === "deploy");
}
