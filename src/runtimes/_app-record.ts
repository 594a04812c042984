/**
 * The default runtime's record of one app ({@link AppRecord}), what status shows of it
 * ({@link appState}: status and health, the instance's port and details, restarts, and SPEC
 * section 5's reload and memory accounting), and the runtime's operations on records that an
 * upgrade or a hot reload orchestrates ({@link AppOps}).
 */
import type { HealthMonitor } from "../health.ts";
import type { Logger } from "../logger.ts";
import type { AppHealth, AppState, AppStatus } from "../runtime.ts";
import type { AppSpec } from "../spec.ts";
import type { PreparedWorkspace } from "../workspace.ts";
import type { DriverStartOptions, Instance } from "./driver.ts";

/** One app the runtime runs (or ran: `failed`, `stopped`), on `spec` from the workspace `prepared`. */
export interface AppRecord {
  spec: AppSpec;
  prepared: PreparedWorkspace;
  status: AppStatus;
  instance?: Instance;
  monitor?: HealthMonitor;
  startedAt?: string;
  /** Restarts that ran the app again (the driver spawned or started it, whether or not it then stayed up). */
  restarts: number;
  /** Restarts the driver refused without starting anything (a crash loop's cool-down); shown as `restarts_refused`. */
  refused?: number;
  lastError?: string;
  /** Hot reloads since the app was deployed here (upgrades keep it: embedded module graphs stay in memory). */
  reloads: number;
  reloadedAt?: string;
  /** The agent heap when the app first started (an embedded app's memory is the growth since). */
  heapBase?: number;
  /**
   * Bytes: what the instance reported last (`Instance.memory()`: a Worker's heap, a process's RSS),
   * or for an embedded app the agent heap's growth from the app's start to its last reload.
   */
  memory?: number;
  /** When `memory` was last sampled from the instance (ms since the epoch). */
  memoryAt?: number;
}

/** The runtime's own operations on its app records, as an upgrade (_upgrade.ts) and a hot reload (_reload.ts) use them. */
export interface AppOps {
  /** The workspace of `spec` (see `DefaultRuntime`): prepared, or reused from the cache. */
  prepare(spec: AppSpec): Promise<PreparedWorkspace>;
  /** Driver options to run `prepared`; `onCrash` belongs to the instance that will run it. */
  options(spec: AppSpec, prepared: PreparedWorkspace, onCrash: (error: unknown) => void): Promise<DriverStartOptions>;
  /** True when one driver runs both and can run them side by side (process apps sharing their port). */
  overlaps(old: AppSpec, next: AppSpec): boolean;
  /** Makes `app` the record of its app. */
  install(app: AppRecord): void;
  /** Starts `app`'s instance and creates (but does not start) its health monitor; throws (the app is failed) when it cannot. */
  start(app: AppRecord): Promise<void>;
  /** Starts `app` on its current `spec` and `prepared`, checks its health once and monitors it; throws (the app is failed) when it cannot. */
  launch(app: AppRecord): Promise<void>;
  /** Stops `app`'s instance and health monitor. */
  halt(app: AppRecord): Promise<void>;
  /** Makes `instance` (which a reload put in place) the one `app`'s health checks watch. */
  adopt(app: AppRecord, instance: Instance): Promise<void>;
  /** `instance` of `app` crashed. */
  crashed(app: AppRecord, instance: Instance | undefined, error: unknown): void;
  /** Deletes `app`'s workspaces but those of the revisions in `keep` (and what they link to). */
  prune(app: string, keep: string[]): Promise<void>;
  /** How long an upgraded `spec` has to become healthy before it is rolled back. */
  startWindowMs(spec: AppSpec): number;
  logger: Logger;
}

/** What each kind of memory figure means, as `AppState.memory_source` says. */
const MEMORY_SOURCES: Readonly<Record<string, string>> = {
  worker: "worker heap",
  process: "process RSS",
  embedded:
    "agent heap growth from the app's start to its last reload (estimate: embedded apps share the agent's heap)",
};

const MB = 1024 * 1024;

/**
 * The `AppState` of `app`. `budget`: the hot reloads of an embedded app before its state carries a
 * `warning` to use `isolation: worker`.
 */
export function appState(app: AppRecord, budget: number): AppState {
  const { spec, prepared } = app;
  const health: AppHealth =
    app.status === "running" ? (app.monitor?.health ?? "healthy") : app.status === "failed" ? "unhealthy" : "unknown";
  const state: AppState = {
    name: spec.name,
    version: spec.version,
    status: app.status,
    health,
    revision: prepared.revision,
    source: spec.source,
    isolation: spec.isolation,
    path: prepared.dir,
    env: spec.env,
    restarts: app.restarts,
    ...(app.refused ? { restarts_refused: app.refused } : {}),
    ...reloadFields(app, budget),
  };
  if (spec.description !== undefined) state.description = spec.description;
  if (app.startedAt) state.started_at = app.startedAt;
  if (app.instance?.port !== undefined) state.port = app.instance.port;
  const info = app.instance?.info?.();
  if (info) {
    const { restarts, status, ...extra } = info;
    Object.assign(state, extra, { restarts: app.restarts + (restarts ?? 0) });
    if (status && app.status === "running") Object.assign(state, { status, health: "unknown" });
  }
  if (app.lastError) state.last_error = app.lastError;
  return state;
}

/**
 * The `AppState` fields of SPEC section 5's reload accounting: `reloads`, `reloaded_at`,
 * `memory_mb` with `memory_source`, and, for an embedded app past its reload budget, a `warning`
 * that says to use `isolation: worker`.
 */
function reloadFields(app: AppRecord, budget: number): Record<string, unknown> {
  const isolation = app.spec.isolation;
  const out: Record<string, unknown> = { reloads: app.reloads };
  if (app.reloadedAt) out.reloaded_at = app.reloadedAt;
  const bytes = app.memory;
  if (bytes !== undefined)
    Object.assign(out, {
      memory_mb: Math.round((bytes / MB) * 10) / 10,
      memory_source: MEMORY_SOURCES[isolation] ?? isolation,
    });
  if (isolation === "embedded" && app.reloads > budget) {
    const grown = bytes !== undefined ? ` (the agent's heap grew by about ${Math.round(bytes / MB)} MB)` : "";
    out.warning =
      `${app.reloads} hot reloads, past the reload budget of ${budget}: an embedded app leaves every old module graph in the ` +
      `agent's memory${grown}. Set isolation: worker in its spec to run each revision in a Worker that is terminated after the swap.`;
  }
  return out;
}
