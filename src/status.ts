/**
 * The agent's status model (SPEC section 8): the overall status word, per-app `AppState` views as
 * the API shows them (secret-looking env values masked), and the error list.
 */
import { iconFor } from "./identicon.ts";
import { redactValue } from "./redact.ts";
import type { AppState } from "./runtime.ts";
import { looksLikeRef } from "./secrets/env-refs.ts";
import type { AppSpec } from "./spec.ts";

/** The agent's overall status. */
export type AgentStatusName = "initializing" | "synced" | "out_of_sync" | "degraded" | "error";

/** One problem shown in status: a spec error, an app's failure, or the repository's. */
export interface StatusError {
  /** The error's stable code (`E_SPEC`, `E_GIT_UNREACHABLE`, `E_RUNTIME`…), when bc-gitops raised it. */
  code?: string;
  app?: string;
  file?: string;
  line?: number;
  column?: number;
  path?: string;
  message: string;
}

/** `GET /status` and `agent.status()`. */
export interface AgentStatus {
  status: AgentStatusName;
  last_commit: string | null;
  app_count: number;
  healthy_count: number;
  last_reconcile: { at: string | null; duration_ms: number | null; error: string | null };
  errors: StatusError[];
  [extra: string]: unknown;
}

/**
 * The status word, most severe first: `initializing` until a reconcile completed; `error` when the
 * repository could not be fetched or read; `degraded` when an app failed, is unhealthy, or its spec
 * is invalid; `out_of_sync` while work is pending; else `synced`.
 */
export function statusName(input: {
  initialized: boolean;
  repoError: boolean;
  apps: readonly Pick<AppState, "status" | "health">[];
  errors: number;
  workPending: boolean;
}): AgentStatusName {
  if (!input.initialized) return "initializing";
  if (input.repoError) return "error";
  if (input.errors > 0 || input.apps.some((a) => a.status === "failed" || a.health === "unhealthy")) return "degraded";
  if (input.workPending || input.apps.some((a) => a.status !== "running" || a.health !== "healthy"))
    return "out_of_sync";
  return "synced";
}

/**
 * Env as status and the API show it: values of secret-looking keys (`SECRET_KEY` in redact.ts) and
 * secret-looking values (`SECRET_VALUE`: `Bearer …`, URLs with credentials) replaced by
 * `"***"` at any depth, other strings redacted. Never recurses: a value nested deeper than
 * `MAX_SHOWN_DEPTH` is cut there (see `redactValue`), so one app's env cannot break the view
 * of every app.
 */
export function maskEnv(env: Record<string, unknown> | undefined): Record<string, unknown> {
  const masked = redactValue(env ?? {}, { secrets: true });
  return masked !== null && typeof masked === "object" && !Array.isArray(masked)
    ? (masked as Record<string, unknown>)
    : {};
}

/** Whether the runtime got resolved secrets for `spec`: a secrets file or host references. */
function hasSecrets(spec: AppSpec | undefined): boolean {
  return spec !== undefined && (spec.secrets !== undefined || Object.values(spec.env).some(looksLikeRef));
}

/** The env a view shows: as written, plus each secrets file key as `"***"` (it exists; its value is not shown). */
function viewEnv(spec: AppSpec): Record<string, unknown> {
  const keys = Object.keys(spec.secrets?.keys ?? {}).filter((k) => !Object.hasOwn(spec.env, k));
  return keys.length ? { ...spec.env, ...Object.fromEntries(keys.map((k) => [k, "***"])) } : spec.env;
}

/**
 * The API view of one app: what the runtime reports, completed from the spec (for apps that do not
 * run yet) and from the agent's own bookkeeping (pending reason, last error, restarts).
 */
/**
 * The status an app shows: the runtime's, unless the agent knows better (no runtime state yet, or
 * a failure the runtime does not see because the app is not running). {@link appView} and the
 * agent status's counts both use it.
 */
export function shownStatus(
  runtime: Pick<AppState, "status"> | undefined,
  agentStatus: AppState["status"] | undefined,
): AppState["status"] {
  if (agentStatus && (!runtime || (agentStatus === "failed" && runtime.status !== "running"))) return agentStatus;
  return runtime?.status ?? agentStatus ?? "pending";
}

export function appView(
  name: string,
  spec: AppSpec | undefined,
  runtime: AppState | undefined,
  info: {
    status?: AppState["status"];
    last_error?: string;
    last_error_code?: string;
    pending_reason?: string;
    restarts?: number;
    revision?: string;
    path?: string;
  },
): AppState {
  const base: AppState = runtime
    ? { ...runtime }
    : { name, version: spec?.version ?? "", status: info.status ?? "pending", health: "unknown", reloads: 0 };
  const view: AppState = {
    ...base,
    name,
    version: base.version || spec?.version || "",
    description: base.description ?? spec?.description,
    icon: base.icon ?? iconFor(name, spec?.icon),
    status: shownStatus(runtime, info.status),
    revision: base.revision ?? info.revision,
    source: base.source ?? spec?.source,
    isolation: base.isolation ?? spec?.isolation,
    started_at: base.started_at,
    path: base.path ?? info.path,
    // An app with secrets shows its spec's env as written (references, secrets file keys as "***"),
    // never the runtime's: the runtime was given the resolved values.
    env: maskEnv(spec && hasSecrets(spec) ? viewEnv(spec) : (base.env ?? spec?.env)),
    reloads: base.reloads ?? 0,
    restarts: base.restarts ?? info.restarts ?? 0,
  };
  if (info.last_error ?? base.last_error) view.last_error = info.last_error ?? base.last_error;
  else delete view.last_error;
  const code = info.last_error ? info.last_error_code : base.last_error_code;
  if (view.last_error && code) view.last_error_code = code;
  else delete view.last_error_code;
  if (info.pending_reason) view.pending_reason = info.pending_reason;
  else delete view.pending_reason;
  for (const key of Object.keys(view)) if (view[key] === undefined) delete view[key];
  // SPEC section 8 lists these without "?": present as null when not known (a pending or failed app).
  for (const key of ["description", "revision", "started_at", "path"] as const) view[key] ??= null;
  return view;
}
