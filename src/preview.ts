/**
 * `bc-gitops plan`: what the next reconcile would do, without doing it. Desired state comes from a
 * fresh fetch of the repository into a temporary directory (the running agent's clone is never
 * touched); current state from what is deployed and, when the control API answers, from the live
 * app statuses. What is deployed comes from the agent's `state.json` (`deployed: "local"`), or,
 * for an agent on another host, from its API (`deployed: "agent"`, `GET /state/current?include=deployed`).
 * Both are built by the same functions as the tick's (`desiredState`, `currentState` in plan.ts),
 * so `plan` shows what the agent will do.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiRequest, type ClientOptions } from "./client.ts";
import type { AgentConfig } from "./config.ts";
import { Fleet } from "./fleet/fleet.ts";
import { hostIdentity, type HostIdentity } from "./fleet/host.ts";
import type { NotPlaced } from "./fleet/view.ts";
import { GitSource } from "./git.ts";
import { treePath } from "./_git-objects.ts";
import { readCommit } from "./_git-specs.ts";
import type { SpecIssue } from "./loader.ts";
import { silentLogger } from "./logger.ts";
import { currentState, desiredState, order, plan, type Action, type DeployedSpec, type PlanError } from "./plan.ts";
import type { AppState } from "./runtime.ts";
import { hasFloatingSource, type AppSpec } from "./spec.ts";
import { stampFromDeployed } from "./secrets/resolve.ts";
import { readState, statePath } from "./state.ts";
import { maskEnv } from "./status.ts";
import { StateJournal, journalPath } from "./state-journal.ts";
import { Workspaces } from "./workspace.ts";

/** What `plan` found. */
export interface Preview {
  commit: string;
  actions: Action[];
  errors: PlanError[];
  specErrors: SpecIssue[];
  /** The host planned for (its name and labels, built-in ones included). */
  identity: HostIdentity;
  /** Apps of the repository this host does not run, and why. */
  notPlaced: NotPlaced[];
  /** Changes held back for this host's rollout wave (no action yet), and why. */
  waiting: { app: string; reason: string }[];
  /** Whether live statuses came from a running agent (else everything deployed is assumed running). */
  live: boolean;
  /** Where the deployed state came from. */
  deployed: "local" | "agent";
}

/** Options of {@link preview}. */
export interface PreviewOptions {
  /**
   * `local` (default): what is deployed is `<local_path>/state.json` (with its journal). `agent`:
   * ask the agent at `client.url` (its API masks secret-looking env values, so both sides are
   * compared masked: a change to such a value alone does not show). Throws when it does not answer.
   */
  deployed?: "local" | "agent";
}

/** Computes the plan of the next reconcile. Throws when the repository cannot be fetched or read. */
export async function preview(
  config: AgentConfig,
  client: ClientOptions,
  options: PreviewOptions = {},
): Promise<Preview> {
  const from = options.deployed ?? "local";
  // Asked first: with `agent`, no answer means nothing to plan against, so fail before fetching.
  let answer: { apps: Record<string, AppState>; deployed?: Record<string, DeployedSpec> } | undefined;
  let agentStatus: { host?: unknown; labels?: unknown } | undefined;
  try {
    answer = await apiRequest(
      { ...client, timeoutMs: 5000 },
      "GET",
      from === "agent" ? "/state/current?include=deployed" : "/state/current",
    );
    if (from === "agent") agentStatus = await apiRequest({ ...client, timeoutMs: 5000 }, "GET", "/status");
  } catch (error) {
    if (from === "agent") throw error;
    // No agent to ask: plan against what state.json says is deployed, assumed running.
  }
  // Planned for the agent asked (its own name and labels), else for the host the configuration describes.
  const identity: HostIdentity =
    typeof agentStatus?.host === "string" && typeof agentStatus.labels === "object" && agentStatus.labels
      ? { host: agentStatus.host, labels: agentStatus.labels as Record<string, string> }
      : hostIdentity(config.host, config.labels);
  if (from === "agent" && !answer?.deployed) {
    throw new Error(
      `the agent at ${client.url} does not report what it has deployed (GET /state/current?include=deployed); upgrade it, or pass --local-path to plan from its state.json`,
    );
  }
  const scratch = await mkdtemp(join(tmpdir(), "bc-gitops-plan-"));
  let git: GitSource | undefined;
  try {
    git = new GitSource({
      repoUrl: config.repo_url,
      branch: config.branch,
      dir: scratch,
      timeoutMs: config.git_timeout,
    });
    const { commit } = await git.fetch(undefined);
    const read = await readCommit(git, commit, config.apps_dir);
    const { repoDir, trees } = read;
    const treeOf = (path: string) => trees.get(treePath(path));
    const fleet = new Fleet({ identity, commitTime: (c, path) => git!.commitTime(c, path), logger: silentLogger });
    const view = fleet.view(read.load);
    const load = { ...view.load };
    // Same-version code changes show as hot_reload, as the agent would plan them.
    const workspaces = new Workspaces({ localPath: join(scratch, "local") });
    const revisions: Record<string, string> = {};
    for (const { spec } of load.apps) {
      const revision = hasFloatingSource(spec)
        ? await workspaces.resolveRevision(spec, { repoDir, treeOf }).catch(() => undefined)
        : undefined;
      if (revision) revisions[spec.name] = revision;
    }
    let deployed: Record<string, DeployedSpec>;
    if (answer?.deployed && from === "agent") {
      deployed = answer.deployed;
      // The API masks secret-looking env values: compare the repository's masked the same way.
      load.apps = load.apps.map((app) => ({ ...app, spec: { ...app.spec, env: maskEnv(app.spec.env) } as AppSpec }));
    } else {
      // What is deployed: state.json plus the actions a running agent completed since it last wrote it.
      const state = await readState(statePath(config.local_path), silentLogger, { readOnly: true });
      await new StateJournal(journalPath(config.local_path)).replay(state, silentLogger);
      deployed = state.apps;
    }
    // Host references are the agent's to read (its environment, its files): plan keeps their deployed digests.
    for (const app of load.apps) app.spec = stampFromDeployed(app.spec, deployed[app.spec.name]?.spec);
    const desired = await fleet.hold(
      desiredState(load, deployed, revisions),
      deployed,
      { commit, load: read.load },
      Date.now(),
    );
    const live = answer !== undefined;
    const current = currentState(deployed, answer?.apps ?? {}, { assumeRunning: !live });
    const planned = order(plan(desired, current), desired, current);
    const kept = Object.entries(desired.kept).map(([app, message]) => ({ app, message }));
    planned.errors.push(...kept);
    return {
      commit,
      actions: planned.actions,
      errors: planned.errors,
      specErrors: load.errors,
      identity: fleet.identity,
      notPlaced: view.notPlaced,
      waiting: [...fleet.held].map(([app, held]) => ({ app, reason: held.reason })),
      live,
      deployed: from,
    };
  } finally {
    await git?.close();
    await rm(scratch, { recursive: true, force: true });
  }
}
