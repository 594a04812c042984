/**
 * bc-gitops as a library: `createAgent()` plus the building blocks a custom runtime or a tool
 * around bc-gitops needs. Re-exports only.
 */
export { createAgent, type Agent, type AgentOptions, type RuntimeOption } from "./agent.ts";
export { AgentConfig, CONFIG_KEYS, loadConfig, type ConfigSources } from "./config.ts";
export type { AppContext, EnvChange } from "./app-context.ts";
export { GitopsError, type ErrorCode, type RetryClass } from "./errors.ts";
export { serve, type HttpServer } from "./http-server.ts";
export { identiconDataUri, identiconSvg, iconFor } from "./identicon.ts";
export { SpecCache, formatIssue, loadApps, resolveAppsDir, type LoadOptions, type LoadResult, type LoadedApp, type SpecIssue } from "./loader.ts";
export { silentLogger, type Logger } from "./logger.ts";
export { Metrics } from "./metrics.ts";
export { order, plan, waitingOn, type Action, type CurrentApp, type CurrentState, type DesiredApp, type DesiredState, type PlanError } from "./plan.ts";
export type { ActionOutcome, TickResult } from "./reconciler.ts";
export type { AppHealth, AppState, AppStatus, HotReloadResult, Runtime, RuntimeContext } from "./runtime.ts";
export {
  createDefaultRuntime,
  /** The default runtime's factory under the name SPEC section 10 uses, for wrapping it in a custom runtime. */
  createDefaultRuntime as defaultRuntime,
  type DefaultRuntime,
  type DefaultRuntimeOptions,
  type Driver,
  type Instance,
} from "./runtimes/default.ts";
export { createHandler, type ControlHandler, type HandlerOptions } from "./server.ts";
export { AppSpec, appSpecJsonSchema, type AppSpecInput, type Source } from "./spec.ts";
export { SPEC_FILE_NAMES } from "./spec-file.ts";
export type { AgentStatus, AgentStatusName, StatusError } from "./status.ts";
export { Workspaces, type PreparedWorkspace } from "./workspace.ts";
export { EVENT_NAMES, type EventHandler, type EventName, type TelemetryEvent } from "./telemetry.ts";
export { VERSION } from "./version.ts";
