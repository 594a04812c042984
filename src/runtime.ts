/**
 * The runtime interface (SPEC section 10): what the reconciler asks of whatever actually runs apps,
 * and the shape of an app's observed state.
 */
import type { AppSpec, Source } from "./spec.ts";

/** Lifecycle status of an app (SPEC section 8). */
export type AppStatus = "pending" | "starting" | "running" | "upgrading" | "stopped" | "failed";
/** Health of an app (SPEC section 8). */
export type AppHealth = "healthy" | "unhealthy" | "unknown";

/** What runs, as the API and `agent.getAppStatus()` report it (SPEC section 8). */
export interface AppState {
  name: string;
  version: string;
  description?: string | null;
  icon?: { type: "identicon" | "url" | "base64"; value: string; mime_type?: string };
  status: AppStatus;
  health: AppHealth;
  /** The code revision running (a git commit, a content hash, or the version for npm). */
  revision?: string | null;
  source?: Source;
  isolation?: AppSpec["isolation"];
  /** ISO-8601 time the current instance started. */
  started_at?: string | null;
  pid?: number;
  /** The workspace directory the app runs from. */
  path?: string | null;
  env?: Record<string, unknown>;
  /** Hot reloads applied to this instance. */
  reloads?: number;
  /** Crash restarts since the last deploy or upgrade: each one ran the app again. */
  restarts?: number;
  /** Restarts refused without starting anything (a crash loop's cool-down), since the last deploy or upgrade. */
  restarts_refused?: number;
  last_error?: string;
  /** The `code` of the error in `last_error`, when bc-gitops raised it (`E_RUNTIME`, `E_UNSAFE`…). */
  last_error_code?: string;
  pending_reason?: string;
  [extra: string]: unknown;
}

/** The result of a hot reload (SPEC section 5). */
export interface HotReloadResult {
  app: string;
  revision: string;
  /** Changed module paths relative to the app root; empty when nothing changed (and nothing reloaded). */
  modules: string[];
}

/**
 * What runs apps. The default runtime implements all of it; a custom runtime needs the five
 * required methods (each async, returning `AppState` where bc_gitops returns `{ok, AppState}` and
 * throwing where it returns `{error, Reason}`).
 */
export interface Runtime {
  deploy(spec: AppSpec): Promise<AppState>;
  remove(name: string): Promise<void>;
  upgrade(spec: AppSpec, oldVersion: string): Promise<AppState>;
  reconfigure(spec: AppSpec): Promise<AppState>;
  getCurrentState(): Promise<Record<string, AppState>>;
  /** Hot-reloads same-version code changes in place. Optional: without it, a code change is an upgrade. */
  hotReload?(spec: AppSpec): Promise<HotReloadResult>;
  /**
   * The code revision `spec` resolves to right now (a git branch head, a path's git tree id or
   * content hash), so the planner can see same-version code changes. Optional.
   */
  resolveRevision?(spec: AppSpec, context: RevisionContext): Promise<string | undefined>;
  /** Restarts a crashed or stopped app. Optional: without it the reconciler redeploys. */
  restart?(spec: AppSpec): Promise<AppState>;
  /** Stops everything the runtime runs (agent shutdown). Optional. */
  stopAll?(): Promise<void>;
}

/** One app the agent remembers having deployed (its record in state.json), as a runtime may read it. */
export interface RememberedApp {
  readonly spec: AppSpec;
  readonly version: string;
  /** The code revision it ran (`AppState.revision`). */
  readonly revision?: string | undefined;
}

/** What {@link Runtime.resolveRevision} is told about the checkout. */
export interface RevisionContext {
  /** The checkout the current specs were read from (see {@link RuntimeContext.repoDir}). */
  repoDir: string;
  /** See {@link RuntimeContext.treeOf}. */
  treeOf?: ((path: string) => string | undefined) | undefined;
  signal?: AbortSignal;
}

/**
 * Context the agent hands to a runtime factory (module path runtimes and the default runtime).
 * Everything in it exists before the runtime and the reconciler: the runtime reads the agent's
 * state through it, never from the agent's files.
 */
export interface RuntimeContext {
  /** `<local_path>`: the runtime keeps its workspaces, data and logs under it. */
  localPath: string;
  /**
   * The checkout of the gitops repo the current specs were read from (path sources are relative
   * to it); `undefined` before the first specs are read.
   */
  repoDir: () => string | undefined;
  /**
   * The git tree id of a path inside the repository at the current commit (`apps/web/src`), for
   * the paths the checkout holds: a path source's revision without hashing its files.
   */
  treeOf?: (path: string) => string | undefined;
  /** Asks the agent for a reconcile soon (e.g. an app crashed and should be restarted); coalesced by the loop. */
  requestReconcile?: () => void;
  /**
   * The apps the agent remembers having deployed, by name: state.json as read when the agent
   * started (with the actions its journal recorded after it), kept current as actions complete.
   * Read-only: the agent owns it. The default runtime starts the revision remembered for the same
   * spec from its cache when the source cannot be read, and leaves what a previous agent left
   * running of these apps to their next start. Absent: the runtime remembers nothing.
   */
  remembered?: () => Readonly<Record<string, RememberedApp>>;
}
