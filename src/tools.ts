/**
 * `bc-gitops/tools`: building blocks for tools around bc-gitops (a CI check, an editor plugin, a
 * dashboard, a dry run), the same functions `bc-gitops validate`, `plan` and `schema` use: loading
 * and validating an apps directory, the pure planner, the spec's JSON Schema and identicons. The
 * agent itself is in `bc-gitops` (`src/index.ts`). Re-exports only.
 */
export { identiconDataUri, identiconSvg, iconFor } from "./identicon.ts";
export {
  formatIssue,
  loadApps,
  resolveAppsDir,
  type LoadOptions,
  type LoadResult,
  type LoadedApp,
  type SpecIssue,
} from "./loader.ts";
export {
  currentState,
  desiredState,
  order,
  plan,
  waitingOn,
  type Action,
  type CurrentApp,
  type CurrentState,
  type DesiredApp,
  type DesiredState,
  type PlanError,
} from "./plan.ts";
export { appSpecJsonSchema } from "./spec.ts";
export { SPEC_FILE_NAMES } from "./spec-file.ts";
