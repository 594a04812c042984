/**
 * `bc-gitops plan`: what the next reconcile would do, without doing it. Desired state comes from a
 * fresh fetch of the repository into a temporary directory (the running agent's clone is never
 * touched); current state from the agent's `state.json` (what is deployed) and, when the control
 * API answers, from the live app statuses.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiRequest, type ClientOptions } from "./client.ts";
import type { AgentConfig } from "./config.ts";
import { GitSource } from "./git.ts";
import { loadApps, type SpecIssue } from "./loader.ts";
import { silentLogger } from "./logger.ts";
import { order, plan, type Action, type CurrentApp, type DesiredApp, type PlanError } from "./plan.ts";
import type { AppState } from "./runtime.ts";
import { hasFloatingSource } from "./spec.ts";
import { readState, statePath } from "./state.ts";
import { Workspaces } from "./workspace.ts";

/** What `plan` found. */
export interface Preview {
  commit: string;
  actions: Action[];
  errors: PlanError[];
  specErrors: SpecIssue[];
  /** Whether live statuses came from a running agent (else everything deployed is assumed running). */
  live: boolean;
}

/** Computes the plan of the next reconcile. Throws when the repository cannot be fetched or read. */
export async function preview(config: AgentConfig, client: ClientOptions): Promise<Preview> {
  const scratch = await mkdtemp(join(tmpdir(), "bc-gitops-plan-"));
  try {
    const git = new GitSource({ repoUrl: config.repo_url, branch: config.branch, dir: scratch, timeoutMs: config.git_timeout });
    const { commit } = await git.fetch(undefined);
    const repoDir = await git.snapshot(commit);
    const load = await loadApps(join(repoDir, config.apps_dir), { root: repoDir });
    // Same-version code changes show as hot_reload, as the agent would plan them.
    const workspaces = new Workspaces({ localPath: join(scratch, "local") });
    const apps: Record<string, DesiredApp> = {};
    for (const { spec } of load.apps) {
      const revision = hasFloatingSource(spec) ? await workspaces.resolveRevision(spec, { repoDir }).catch(() => undefined) : undefined;
      apps[spec.name] = revision ? { spec, revision } : { spec };
    }
    const desired = { apps, invalid: new Set(load.invalid) };

    const state = await readState(statePath(config.local_path), silentLogger);
    let observed: Record<string, AppState> = {};
    let live = false;
    try {
      observed = (await apiRequest<{ apps: Record<string, AppState> }>({ ...client, timeoutMs: 5000 }, "GET", "/state/current")).apps;
      live = true;
    } catch {
      // No agent to ask: plan against what state.json says is deployed.
    }
    const current: Record<string, CurrentApp> = {};
    for (const [name, app] of Object.entries(state.apps)) {
      current[name] = {
        spec: app.spec,
        ...(app.revision ? { revision: app.revision } : {}),
        status: observed[name]?.status ?? (live ? "stopped" : "running"),
        health: observed[name]?.health ?? (live ? "unknown" : "healthy"),
      };
    }
    const planned = order(plan(desired, current), desired, current);
    return { commit, actions: planned.actions, errors: planned.errors, specErrors: load.errors, live };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
