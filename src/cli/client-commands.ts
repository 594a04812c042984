/** `bc-gitops status`, `reconcile` and `reload`: one request to a running agent's control API, its answer printed. */
import type { CAC } from "cac";
import { apiRequest } from "../client.ts";
import type { TickResult } from "../reconciler.ts";
import { statusReport, tickReport } from "../report.ts";
import type { AppState, HotReloadResult } from "../runtime.ts";
import type { AgentStatus } from "../status.ts";
import { client, clientFlags } from "./flags.ts";
import { print } from "./output.ts";

/** Flags of these commands. */
interface ClientCommandOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

/** Registers `status [app]`, `reconcile` and `reload <app>`, in that order (the order of `--help`). */
export function registerClientCommands(cli: CAC): void {
  clientFlags(cli.command("status [app]", "Show the agent's status and its apps (a table, or --json)"))
    .option("--json", "Print JSON (the status, or one app's state)")
    .action(status);
  clientFlags(cli.command("reconcile", "Reconcile now, wait for the result and print it"))
    .option("--json", "Print the result as JSON")
    .action(reconcile);
  clientFlags(cli.command("reload <app>", "Hot-reload one app now (same version, changed code)"))
    .option("--json", "Print the result as JSON")
    .action(reload);
}

/** Exit 1 when the agent's status is `error`. */
async function status(app: string | undefined, options: ClientCommandOptions): Promise<number> {
  const api = client(options);
  if (app) {
    const state = await apiRequest<AppState>(api, "GET", `/apps/${encodeURIComponent(app)}`);
    print(
      options.json
        ? JSON.stringify(state, null, 2)
        : statusReport(await apiRequest<AgentStatus>(api, "GET", "/status"), [state]),
    );
    return 0;
  }
  const [agentStatus, { apps }] = await Promise.all([
    apiRequest<AgentStatus>(api, "GET", "/status"),
    apiRequest<{ apps: AppState[] }>(api, "GET", "/apps"),
  ]);
  print(options.json ? JSON.stringify({ ...agentStatus, apps }, null, 2) : statusReport(agentStatus, apps));
  return agentStatus.status === "error" ? 1 : 0;
}

/** Exit 1 when the tick failed or any of its actions did. */
async function reconcile(options: ClientCommandOptions): Promise<number> {
  const result = await apiRequest<TickResult>(client(options), "POST", "/reconcile");
  print(options.json ? JSON.stringify(result, null, 2) : tickReport(result));
  return result.status === "error" || result.actions.some((a) => a.outcome === "failed") ? 1 : 0;
}

async function reload(app: string, options: ClientCommandOptions): Promise<number> {
  const result = await apiRequest<HotReloadResult>(client(options), "POST", `/apps/${encodeURIComponent(app)}/reload`);
  if (options.json) print(JSON.stringify(result, null, 2));
  else
    print(
      result.modules.length
        ? `reloaded ${result.app} at ${result.revision.slice(0, 12)}: ${result.modules.join(", ")}`
        : `${result.app}: nothing changed, nothing reloaded`,
    );
  return 0;
}
