import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
// The documented types: this file stops type-checking when one of them leaves "bc-gitops".
import type {
  ActionOutcome,
  Agent,
  AgentOptions,
  AgentStatus,
  AppContext,
  AppHealth,
  AppSpecInput,
  AppState,
  AppStatus,
  ControlHandler,
  DefaultRuntime,
  DefaultRuntimeOptions,
  EnvChange,
  ErrorCode,
  EventHandler,
  EventName,
  HandlerOptions,
  HotReloadResult,
  Logger,
  RetryClass,
  Runtime,
  RuntimeContext,
  RuntimeOption,
  StatusError,
  TelemetryEvent,
  TickResult,
} from "bc-gitops";
import type { Action, CurrentState, DesiredState, LoadResult, PlanError, SpecIssue } from "bc-gitops/tools";

export type Documented = [
  ActionOutcome,
  Agent,
  AgentOptions,
  AgentStatus,
  AppContext,
  AppHealth,
  AppSpecInput,
  AppState,
  AppStatus,
  ControlHandler,
  DefaultRuntime,
  DefaultRuntimeOptions,
  EnvChange,
  ErrorCode,
  EventHandler,
  EventName,
  HandlerOptions,
  HotReloadResult,
  Logger,
  RetryClass,
  Runtime,
  RuntimeContext,
  RuntimeOption,
  StatusError,
  TelemetryEvent,
  TickResult,
  Action,
  CurrentState,
  DesiredState,
  LoadResult,
  PlanError,
  SpecIssue,
];

const API: Record<string, string[]> = JSON.parse(
  await readFile(new URL("fixtures/public-api.json", import.meta.url), "utf8"),
);

test("bc-gitops exports the documented API and nothing else: the agent, the runtime seam, errors, events, the handler", async () => {
  assert.deepEqual(Object.keys(await import("bc-gitops")).sort(), API["bc-gitops"]);
});

test("bc-gitops/tools exports the tools for integrators: spec loading, the planner, the JSON Schema, identicons", async () => {
  assert.deepEqual(Object.keys(await import("bc-gitops/tools")).sort(), API["bc-gitops/tools"]);
});
