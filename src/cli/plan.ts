/** `bc-gitops plan`: what the next reconcile would do, compared with what is deployed (exit 0 nothing, 2 changes, 1 error). */
import { resolve } from "node:path";
import type { CAC } from "cac";
import { colors } from "consola/utils";
import { apiUrlFor } from "../client.ts";
import { defaultLocalPath, loadConfig } from "../config.ts";
import { formatLabels } from "../fleet/host.ts";
import { formatIssue } from "../loader.ts";
import { preview } from "../preview.ts";
import { planReport } from "../report.ts";
import { client, clientFlags, configFlags } from "./flags.ts";
import { print } from "./output.ts";

/** Registers `plan`: the configuration flags and the client flags, with --token once (the client's). */
export function registerPlanCommand(cli: CAC): void {
  // --token once: the client's (the agent's API token, also read from the configuration).
  configFlags(
    clientFlags(cli.command("plan", "Show what the next reconcile would do: exit 0 nothing, 2 changes, 1 error")),
    ["token"],
  )
    .option("--json", "Print { commit, actions, errors } as JSON")
    .action(plan);
}

async function plan(options: Record<string, unknown>): Promise<number> {
  const config = await loadConfig({
    file: options.config as string | undefined,
    flags: { ...options, token: undefined },
  });
  const api = client({
    url: (options.url as string | undefined) ?? apiUrlFor(config.listen),
    token: (options.token as string | undefined) ?? config.token,
  });
  // An agent named by --url (or BC_GITOPS_URL) and no state.json named: the agent may run on another
  // host, so what it has deployed comes from its API rather than from this host's default path.
  const urlGiven = options.url !== undefined || Boolean(process.env.BC_GITOPS_URL);
  const localGiven =
    options.localPath !== undefined ||
    Boolean(process.env.BC_GITOPS_LOCAL_PATH) ||
    config.local_path !== resolve(defaultLocalPath());
  const deployed = urlGiven && !localGiven ? "agent" : "local";
  const result = await preview(config, api, { deployed });
  if (options.json) {
    const actions = result.actions.map(({ type, app, ...rest }) => ({
      type,
      app,
      ...("reason" in rest ? { reason: rest.reason } : {}),
      ...("secrets" in rest && rest.secrets ? { secrets_changed: rest.secrets } : {}),
    }));
    print(
      JSON.stringify(
        {
          commit: result.commit,
          host: result.identity.host,
          labels: result.identity.labels,
          live: result.live,
          deployed: result.deployed,
          actions,
          waiting: result.waiting,
          not_placed: result.notPlaced,
          errors: [...result.errors, ...result.specErrors],
        },
        null,
        2,
      ),
    );
  } else {
    print(colors.dim(`plan for host ${result.identity.host} (${formatLabels(result.identity.labels)})`));
    for (const issue of result.specErrors) print(`${colors.red("error")}   ${formatIssue(issue)}`);
    print(planReport(result.actions, result.errors));
    for (const { app, reason } of result.waiting) print(`${colors.yellow("…")} ${app}: ${reason}`);
    for (const { name, reason } of result.notPlaced) print(colors.dim(`  ${name}: not placed: ${reason}`));
    if (!result.live)
      print(
        colors.dim(
          `(no agent answered at ${api.url}: compared with ${config.local_path}/state.json, assuming deployed apps run)`,
        ),
      );
    if (result.deployed === "agent")
      print(
        colors.dim(
          `(compared with what the agent at ${api.url} has deployed; it masks secret-looking env values, so a change to one alone shows only with --local-path on its host)`,
        ),
      );
  }
  if (result.errors.length > 0 || result.specErrors.length > 0) return 1;
  return result.actions.length > 0 ? 2 : 0;
}
