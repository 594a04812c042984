/**
 * bc-gitops as a library (`import … from "bc-gitops"`): the agent, the runtime seam, the app
 * contract, errors, events and the control API's handler, i.e. what README "Library" and SPEC
 * section 10 document. Tools around bc-gitops (spec loading, the planner, the JSON Schema,
 * identicons) are in `bc-gitops/tools` (`src/tools.ts`). Re-exports only.
 */
export { createAgent, type Agent, type AgentOptions, type RuntimeOption } from "./agent.ts";
export type { AppLogs, LogTail } from "./app-logs.ts";
export type { AppContext, EnvChange } from "./app-context.ts";
export { GitopsError, type ErrorCode, type RetryClass } from "./errors.ts";
export type { StreamEvent } from "./event-stream.ts";
export type { Logger } from "./logger.ts";
export type {
  Notification,
  NotificationStats,
  NotifyEvent,
  NotifyFormat,
  NotifyTarget,
  NotifyTargetInput,
} from "./notify.ts";
export type { ActionOutcome, ReconcileOptions, TickResult } from "./reconciler.ts";
export type {
  AppHealth,
  AppState,
  AppStatus,
  HotReloadResult,
  RememberedApp,
  Runtime,
  RuntimeContext,
} from "./runtime.ts";
export {
  /** The default runtime's factory (SPEC section 10), for wrapping it in a custom runtime. */
  createDefaultRuntime as defaultRuntime,
  type DefaultRuntime,
  type DefaultRuntimeOptions,
} from "./runtimes/default.ts";
export { createHandler, type ControlHandler, type ControlledAgent, type HandlerOptions } from "./server.ts";
export { AppSpec, type AppSpecInput } from "./spec.ts";
export type { AgentStatus, AgentStatusName, StatusError } from "./status.ts";
export { EVENT_NAMES, type EventHandler, type EventName, type TelemetryEvent } from "./telemetry.ts";
export { VERSION } from "./version.ts";
