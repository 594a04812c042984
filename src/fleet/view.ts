/**
 * What one host makes of the specs of a commit: the apps placed on it, each with its effective
 * spec (overrides applied), the apps not placed on it and why, and the errors that only exist on
 * this host (an app placed here that depends on one that is not). The result has the shape of a
 * `LoadResult`, so the tick, `plan` and `validate --host` plan from it exactly as from a load.
 */
import { dirname } from "node:path";
import { dependencyIssues, type LoadResult, type SpecIssue } from "../loader.ts";
import type { AppSpec } from "../spec.ts";
import type { HostIdentity } from "./host.ts";
import { effectiveSpec, type AppliedOverride, type Effective } from "./overrides.ts";
import { waveOf, type Rollout } from "./rollout.ts";
import { describeSelector, mismatch } from "./selector.ts";

/** A valid app of the repository that this host does not run, and why. */
export interface NotPlaced {
  name: string;
  file: string;
  reason: string;
}

/** What an app placed here carries besides its effective spec. */
export interface PlacedApp {
  /** The spec file (`apps/web/app.yaml`) and its directory, whose last commit times the rollout. */
  file: string;
  dir: string;
  applied: AppliedOverride[];
  rollout?: Rollout;
}

/** One host's view of a load. */
export interface FleetView {
  /** The load as this host plans from it: placed apps with effective specs, host-specific errors added. */
  load: LoadResult;
  /** Placed apps by name (also those an error keeps as they are). */
  placed: ReadonlyMap<string, PlacedApp>;
  notPlaced: NotPlaced[];
}

/**
 * Applies placement and overrides of every valid app in `load` for `identity` (`effectiveOf`
 * computes an app's effective spec; a caller may cache it). An app whose
 * `placement` does not select the host is left out (the planner then removes it if it runs, like
 * an app deleted from the repository). An app placed here whose overrides cannot be combined, or
 * that depends on a valid app not placed here, gets an error at its file and is kept as it is
 * (never removed for it), like an app whose spec is broken.
 */
export function fleetView(
  load: LoadResult,
  identity: HostIdentity,
  effectiveOf: (spec: AppSpec) => Effective = (spec) => effectiveSpec(spec, identity),
): FleetView {
  const notPlaced: NotPlaced[] = [];
  const placed = new Map<string, PlacedApp>();
  const effective: { spec: AppSpec; file: string }[] = [];
  const errors: SpecIssue[] = [];
  const invalid = new Set(load.invalid);
  for (const { spec, file } of load.apps) {
    const why = spec.placement ? mismatch(spec.placement, identity) : undefined;
    if (why !== undefined) {
      notPlaced.push({ name: spec.name, file, reason: `placement (${describeSelector(spec.placement!)}): ${why}` });
      continue;
    }
    const result = effectiveOf(spec);
    placed.set(spec.name, {
      file,
      dir: dirname(file),
      applied: result.applied,
      ...(spec.rollout ? { rollout: spec.rollout } : {}),
    });
    if (!result.ok) {
      errors.push({ file, path: result.path, message: result.message });
      invalid.add(spec.name);
    } else effective.push({ spec: result.spec, file });
  }
  const away = new Map(notPlaced.map((n) => [n.name, n]));
  const apps = effective.filter(({ spec, file }) => {
    const missing = spec.depends_on.filter((dep) => away.has(dep));
    if (missing.length === 0) return true;
    const reasons = missing.map(
      (dep) => `"${dep}", which is not placed on host ${identity.host} (${away.get(dep)!.reason})`,
    );
    errors.push({ file, path: "depends_on", message: `depends on ${reasons.join(" and ")}; place them together` });
    invalid.add(spec.name);
    return false;
  });
  return {
    load: {
      ...load,
      apps,
      errors: [...load.errors, ...errors].sort((a, b) => a.file.localeCompare(b.file)),
      invalid: [...invalid].sort(),
    },
    placed,
    notPlaced,
  };
}

/** One app a host runs, as `validate --host` lists it. */
export interface HostedApp {
  name: string;
  /** The version this host runs (overrides applied). */
  version: string;
  file: string;
  /** The overrides that applied here, in order. */
  overrides: AppliedOverride[];
  /** This host's wave of the app's rollout, when it has one. */
  rollout?: { wave: number; waves: number; paused: boolean };
}

/** The apps of `apps` (placed on the host of `view`) with the overrides and rollout wave that apply there. */
export function hostedApps(
  apps: readonly { spec: AppSpec; file: string }[],
  view: FleetView,
  identity: HostIdentity,
): HostedApp[] {
  return apps.map(({ spec, file }) => {
    const placed = view.placed.get(spec.name);
    const rollout = placed?.rollout;
    return {
      name: spec.name,
      version: spec.version,
      file,
      overrides: placed?.applied ?? [],
      ...(rollout
        ? {
            rollout: { wave: waveOf(identity, spec.name, rollout.waves), waves: rollout.waves, paused: rollout.paused },
          }
        : {}),
    };
  });
}

/**
 * What `validate` reports as runnable: the valid apps whose dependencies can be met (an unmet
 * `depends_on` is an error, not a valid app), and every error. With `identity` (`--host`), for
 * that host: placed apps with effective specs, overrides and waves, and the apps not placed there.
 */
export function runnableApps(
  load: LoadResult,
  identity?: HostIdentity,
): {
  apps: { name: string; version: string; file: string }[] | HostedApp[];
  errors: SpecIssue[];
  placement?: { identity: HostIdentity; notPlaced: NotPlaced[] };
} {
  const view = identity ? fleetView(load, identity) : undefined;
  const own = view?.load ?? load;
  const dependencyErrors = dependencyIssues(own);
  const unmet = new Set(dependencyErrors.map((issue) => issue.file));
  const apps = own.apps.filter((app) => !unmet.has(app.file));
  const errors = [...own.errors, ...dependencyErrors];
  if (!view || !identity)
    return { apps: apps.map(({ spec, file }) => ({ name: spec.name, version: spec.version, file })), errors };
  return { apps: hostedApps(apps, view, identity), errors, placement: { identity, notPlaced: view.notPlaced } };
}
