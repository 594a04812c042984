/**
 * `bc-gitops plan`: what the next reconcile would do, without doing it. Desired state comes from a
 * fresh fetch of the repository into a temporary directory (the running agent's clone is never
 * touched); current state from the agent's `state.json` (what is deployed) and, when the control
 * API answers, from the live app statuses. Both are built by the same functions as the tick's
 * (`desiredState`, `currentState` in plan.ts), so `plan` shows what the agent will do.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiRequest, type ClientOptions } from "./client.ts";
import type { AgentConfig } from "./config.ts";
import { GitSource } from "./git.ts";
import { loadApps, type SpecIssue } from "./loader.ts";
import { silentLogger } from "./logger.ts";
import { currentState, desiredState, order, plan, type Action, type PlanError } from "./plan.ts";
import type { AppState } from "./runtime.ts";
import { hasFloatingSource } from "./spec.ts";
import { readState, statePath } from "./state.ts";
import { StateJournal, journalPath } from "./state-journal.ts";
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
    const revisions: Record<string, string> = {};
    for (const { spec } of load.apps) {
      const revision = hasFloatingSource(spec) ? await workspaces.resolveRevision(spec, { repoDir }).catch(() => undefined) : undefined;
      if (revision) revisions[spec.name] = revision;
    }
    // What is deployed: state.json plus the actions a running agent completed since it last wrote it.
    const state = await readState(statePath(config.local_path), silentLogger);
    await new StateJournal(journalPath(config.local_path)).replay(state, silentLogger);
    const desired = desiredState(load, state.apps, revisions);

    let observed: Record<string, AppState> = {};
    let live = false;
    try {
      observed = (await apiRequest<{ apps: Record<string, AppState> }>({ ...client, timeoutMs: 5000 }, "GET", "/state/current")).apps;
      live = true;
    } catch {
      // No agent to ask: plan against what state.json says is deployed, assumed running.
    }
    const current = currentState(state.apps, observed, { assumeRunning: !live });
    const planned = order(plan(desired, current), desired, current);
    const kept = Object.entries(desired.kept).map(([app, message]) => ({ app, message }));
    planned.errors.push(...kept);
    return { commit, actions: planned.actions, errors: planned.errors, specErrors: load.errors, live };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
