/**
 * The reconciler's planner (SPEC section 4): pure functions from desired state (the repo) and current
 * state (what runs) to an ordered list of actions. No I/O, no clock, no randomness, and inputs are
 * never mutated: the same inputs always give the same plan. The dependency graph it orders by
 * (missing dependencies, cycles, topological order) is `_dependency-order.ts`.
 */
import { byName, dependencyClosure, graphProblems, rankOf, sortBy, topo } from "./_dependency-order.ts";
import type { AppSpec } from "./spec.ts";
import type { AppHealth, AppStatus } from "./runtime.ts";

/** An app as the repo wants it. `revision` is the code revision its source resolves to now, when known (git branch head, path content hash). */
export interface DesiredApp {
  spec: AppSpec;
  revision?: string;
}

/** An app as it runs: the spec it was last successfully applied from, and what the runtime observes. */
export interface CurrentApp {
  spec: AppSpec;
  revision?: string;
  status: AppStatus;
  health: AppHealth;
}

/** What the repo wants. */
export interface DesiredState {
  apps: Readonly<Record<string, DesiredApp>>;
  /** Names of apps whose spec file is broken: they are left exactly as they are (never removed, never changed). */
  invalid: ReadonlySet<string>;
}

/** What runs, by app name. */
export type CurrentState = Readonly<Record<string, CurrentApp>>;

/** What loading the repository found, as far as deciding what runs needs it (a `LoadResult` fits). */
export interface LoadedSpecs {
  apps: ReadonlyArray<{ spec: AppSpec; file: string }>;
  /** Directory names and (where readable) `name` fields of broken specs. */
  invalid: readonly string[];
  /** Broken spec files that give no readable name (`apps/x/app.yaml`): any deployed app could be one of them. */
  unnamed?: readonly string[];
}

/** What the agent remembers as deployed, as far as deciding what runs needs it (`state.json` apps fit). */
export interface DeployedSpec {
  spec: AppSpec;
  revision?: string;
  /** The spec file it was deployed from (`apps/web/app.yaml`). */
  file?: string;
}

/** Desired state plus the deployed apps kept only because a broken file might still be them, with why. */
export interface Desired extends DesiredState {
  kept: Readonly<Record<string, string>>;
}

/**
 * Desired state from loaded specs, with the rules that protect what runs (SPEC section 4: a bad spec
 * never removes a running app): a deployed app whose spec directory is broken is invalid even when
 * the broken file no longer says its name, and while any broken file gives no readable name, no
 * deployed app missing from the repository is removed (the file may be that app, moved or renamed):
 * it is kept, and `kept` says why. `revisions` are the code revisions floating sources resolve to
 * now. The tick and `bc-gitops plan` both build their desired state here.
 */
export function desiredState(
  load: LoadedSpecs,
  deployed: Readonly<Record<string, DeployedSpec>>,
  revisions: Readonly<Record<string, string>> = {},
): Desired {
  const apps: Record<string, DesiredApp> = {};
  for (const { spec } of load.apps) apps[spec.name] = { spec, ...revisionOf(own(revisions, spec.name)) };
  const invalid = new Set(load.invalid);
  const kept: Record<string, string> = {};
  for (const [name, app] of Object.entries(deployed)) {
    if (own(apps, name)) continue;
    const dir = app.file?.split("/").at(-2);
    if (dir !== undefined && load.invalid.includes(dir)) invalid.add(name);
    if (invalid.has(name) || !load.unnamed?.length) continue;
    invalid.add(name);
    const files = load.unnamed.join(", ");
    kept[name] =
      `kept running although it is no longer in the repository: ${files} cannot be read and may be this app; fix ${load.unnamed.length > 1 ? "those files" : "that file"} and the next commit removes it if it is gone`;
  }
  return { apps, invalid, kept };
}

/**
 * Current state from what is deployed and what the runtime observes. An app the runtime does not
 * report is `stopped` (`unknown` health), or, with `assumeRunning` (a dry run with no agent to ask),
 * running and healthy.
 */
export function currentState(
  deployed: Readonly<Record<string, DeployedSpec>>,
  observed: Readonly<Record<string, { status: AppStatus; health: AppHealth }>>,
  options: { assumeRunning?: boolean } = {},
): Record<string, CurrentApp> {
  const out: Record<string, CurrentApp> = {};
  for (const [name, app] of Object.entries(deployed)) {
    const seen = own(observed, name);
    out[name] = {
      spec: app.spec,
      ...revisionOf(app.revision),
      status: seen?.status ?? (options.assumeRunning ? "running" : "stopped"),
      health: seen?.health ?? (options.assumeRunning ? "healthy" : "unknown"),
    };
  }
  return out;
}

/** One step of a plan. `reason`s are for humans (status, logs); env key lists are sorted. */
export type Action =
  | { type: "deploy"; app: string; spec: AppSpec; revision?: string }
  | { type: "upgrade"; app: string; spec: AppSpec; from: AppSpec; revision?: string; reason: string }
  | {
      type: "reconfigure";
      app: string;
      spec: AppSpec;
      from: AppSpec;
      changed: string[];
      added: string[];
      removed: string[];
      /** The keys among changed/added/removed whose value is a secret (a secrets file key or a host reference): shown as "secret changed", never with values. */
      secrets?: string[];
    }
  | { type: "hot_reload"; app: string; spec: AppSpec; fromRevision: string; toRevision: string }
  | { type: "remove"; app: string; from: AppSpec }
  | { type: "restart"; app: string; spec: AppSpec; reason: string };

/** Why an app's actions were dropped by `order()`. */
export interface PlanError {
  app: string;
  message: string;
}

/** Fields that define the code an app runs: changing any of them needs a fresh start. Version first, so reasons lead with it. */
const CODE_FIELDS = ["version", "source", "entry", "isolation", "command", "limits"] as const;
/** Fields that are neither code nor env: the runtime applies them (metadata, health settings) without touching the app. `secrets` is compared with env (see `envOf`). */
const NOT_OTHER: ReadonlySet<string> = new Set<string>([...CODE_FIELDS, "env", "name", "secrets"]);

/**
 * Compares desired with current, one action per app at most, sorted by app name (`order()` does the
 * dependency ordering). Apps in `desired.invalid` get no action whatever their state. For an app in
 * both: a code change (version, source, entry, isolation, command, limits) is an `upgrade`; else an
 * env change is a `reconfigure` with the changed/added/removed key names; else any other spec change
 * is a `reconfigure` with empty key lists; else two known, different revisions are a `hot_reload`
 * (a new revision together with an env or spec change is an `upgrade`, "code and spec changed");
 * else a `failed` or `stopped` app gets a `restart`.
 */
export function plan(desired: DesiredState, current: CurrentState): Action[] {
  const names = [...new Set([...Object.keys(desired.apps), ...Object.keys(current)])].sort(byName);
  const actions: Action[] = [];
  for (const app of names) {
    if (desired.invalid.has(app)) continue;
    const want = own(desired.apps, app);
    const have = own(current, app);
    const action = want ? (have ? change(app, want, have) : deploy(app, want)) : have ? remove(app, have) : undefined;
    if (action) actions.push(action);
  }
  return actions;
}

/**
 * Orders actions and drops the ones that cannot be applied: removes first (dependents before their
 * dependencies, using the running apps' own `depends_on`, so an app the repo no longer has is still
 * removed before what it used), then everything else in dependency order (dependencies first, using
 * desired specs). Every desired app on a dependency cycle, and every desired app that depends on an
 * app that is neither in the repository (valid or not) nor staying, gets one error and its actions
 * are dropped (a running app keeps running as it is). Apps that merely depend on such an app keep
 * their actions: `waitingOn()` holds them pending. Ties are broken by app name; actions for one app
 * keep their relative order.
 */
export function order(
  actions: readonly Action[],
  desired: DesiredState,
  current: CurrentState,
): { actions: Action[]; errors: PlanError[] } {
  const problems = graphProblems(desired);
  const removes = actions.filter((a): a is Extract<Action, { type: "remove" }> => a.type === "remove");
  const others = actions.filter((a) => a.type !== "remove" && !problems.has(a.app));

  const removed = [...new Set(removes.map((a) => a.app))];
  const runningDeps = (app: string): readonly string[] =>
    own(current, app)?.spec.depends_on ?? removes.find((a) => a.app === app)?.from.depends_on ?? [];
  // A removed app must wait for every removed app that depends on it (dependents go first).
  const removeRank = rankOf(topo(removed, (app) => removed.filter((other) => runningDeps(other).includes(app))));

  const acted = new Set(others.map((a) => a.app));
  const isNode = (app: string) => !problems.has(app) && (Object.hasOwn(desired.apps, app) || acted.has(app));
  const deps = (app: string): string[] =>
    [
      ...(own(desired.apps, app)?.spec.depends_on ?? specOf(others.find((a) => a.app === app))?.depends_on ?? []),
    ].filter(isNode);
  // Only the apps with actions and what they depend on, transitively, are ordered: the order of
  // those among themselves is the one the whole graph gives (topo picks the first ready name, and
  // nothing outside the closure is a prerequisite of anything in it), at the cost of the change.
  const startRank = rankOf(topo(dependencyClosure([...acted].filter(isNode), deps), deps));

  const errors = [...problems]
    .sort(([a], [b]) => byName(a, b))
    .map(([app, messages]) => ({ app, message: messages.join("; ") }));
  return { actions: [...sortBy(removes, removeRank), ...sortBy(others, startRank)], errors };
}

/**
 * Dependencies of `spec` that are not running and healthy right now, in `depends_on` order (empty =
 * free to start). A running dependency with no health check (`health.type: none`) and `unknown`
 * health counts as ready: nothing will ever make it healthy, and running is all it can promise.
 */
export function waitingOn(spec: AppSpec, current: CurrentState): string[] {
  return spec.depends_on.filter((dep) => !ready(own(current, dep)));
}

/** Human-readable pending reason for the names returned by `waitingOn`, e.g. `waiting for db (not deployed), cache (running, unhealthy)`; "" for none. */
export function pendingReason(waiting: readonly string[], current: CurrentState): string {
  if (waiting.length === 0) return "";
  const describe = (name: string): string => {
    const app = own(current, name);
    return app ? `${name} (${app.status}, ${app.health})` : `${name} (not deployed)`;
  };
  return `waiting for ${waiting.map(describe).join(", ")}`;
}

function ready(app: CurrentApp | undefined): boolean {
  if (app === undefined || app.status !== "running") return false;
  return app.health === "healthy" || (app.health === "unknown" && app.spec.health?.type === "none");
}

function deploy(app: string, want: DesiredApp): Action {
  return { type: "deploy", app, spec: want.spec, ...revisionOf(want.revision) };
}

function remove(app: string, have: CurrentApp): Action {
  return { type: "remove", app, from: have.spec };
}

function change(app: string, want: DesiredApp, have: CurrentApp): Action | undefined {
  const spec = want.spec;
  const from = have.spec;
  const upgrade = (reason: string): Action => ({
    type: "upgrade",
    app,
    spec,
    from,
    ...revisionOf(want.revision),
    reason,
  });

  // The same object: the spec of an unchanged file, cached by its blob id (see the reconciler's interning).
  const identical = spec === from;
  const code = identical ? [] : CODE_FIELDS.filter((field) => !same(spec[field], from[field]));
  if (code.length > 0) {
    return upgrade(
      code.map((f) => (f === "version" ? `version ${from.version} -> ${spec.version}` : `${f} changed`)).join(", "),
    );
  }
  const env = identical ? { changed: [], added: [], removed: [] } : envDiff(envOf(from), envOf(spec));
  const envChanged = env.changed.length + env.added.length + env.removed.length > 0;
  const specChanged = !identical && (envChanged || otherFieldsDiffer(from, spec));
  const { revision: to } = want;
  const { revision: was } = have;
  const codeMoved = to !== undefined && was !== undefined && to !== was;
  // A hot reload only swaps code; it cannot also apply new settings, so both together restart the app.
  if (codeMoved && specChanged) return upgrade("code and spec changed");
  if (specChanged) {
    const secret = new Set([...Object.keys(from.secrets?.keys ?? {}), ...Object.keys(spec.secrets?.keys ?? {})]);
    const secrets = [...env.changed, ...env.added, ...env.removed].filter((k) => secret.has(k)).sort(byName);
    return { type: "reconfigure", app, spec, from, ...env, ...(secrets.length ? { secrets } : {}) };
  }
  if (codeMoved) return { type: "hot_reload", app, spec, fromRevision: was, toRevision: to };
  if (have.status === "failed" || have.status === "stopped")
    return { type: "restart", app, spec, reason: `status ${have.status}` };
  return undefined;
}

/**
 * The env as the planner compares it: each secret key (a secrets file key, a host reference) as its
 * reference plus its digest, so a changed secret is an env change of that key although no value is
 * ever seen.
 */
function envOf(spec: AppSpec): Readonly<Record<string, unknown>> {
  const keys = spec.secrets?.keys;
  if (!keys) return spec.env;
  const out: Record<string, unknown> = { ...spec.env };
  for (const [key, digest] of Object.entries(keys)) out[key] = { ref: spec.env[key], digest };
  return out;
}

function envDiff(before: Readonly<Record<string, unknown>>, after: Readonly<Record<string, unknown>>) {
  const was = new Set(definedKeys(before));
  const now = definedKeys(after);
  const nowSet = new Set(now);
  return {
    changed: now.filter((k) => was.has(k) && !same(before[k], after[k])).sort(byName),
    added: now.filter((k) => !was.has(k)).sort(byName),
    removed: [...was].filter((k) => !nowSet.has(k)).sort(byName),
  };
}

function otherFieldsDiffer(a: AppSpec, b: AppSpec): boolean {
  const ra = a as unknown as Record<string, unknown>;
  const rb = b as unknown as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)].filter((k) => !NOT_OTHER.has(k)));
  for (const key of keys) {
    // depends_on is a set: reordering it in the file changes nothing.
    const differs =
      key === "depends_on"
        ? !same([...a.depends_on].sort(byName), [...b.depends_on].sort(byName))
        : !same(ra[key], rb[key]);
    if (differs) return true;
  }
  return false;
}

function specOf(action: Action | undefined): AppSpec | undefined {
  return action && "spec" in action ? action.spec : undefined;
}

function revisionOf(revision: string | undefined): { revision?: string } {
  return revision === undefined ? {} : { revision };
}

/** Own-property lookup: app names like "constructor" must not find Object.prototype members. */
function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function definedKeys(value: object): string[] {
  return Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined);
}

/** Deep equality for parsed spec data: key order and undefined-valued keys do not matter, array order does. */
function same(a: unknown, b: unknown): boolean {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => same(v, b[i]));
  }
  if (a instanceof Date || b instanceof Date)
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  const ka = definedKeys(a);
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return ka.length === definedKeys(b).length && ka.every((k) => same(ra[k], rb[k]));
}
