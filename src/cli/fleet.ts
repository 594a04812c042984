/** `bc-gitops fleet status URL…`: every agent's apps in one table. */
import type { CAC } from "cac";
import { fleetStatusCommand, type FleetStatusFlags } from "../fleet/status.ts";
import { clientFlags } from "./flags.ts";
import { UsageError, print } from "./output.ts";

/** Registers `fleet <command> [...urls]`; `status` is its one command (exit 0 synced, 2 not, 1 unreachable). */
export function registerFleetCommand(cli: CAC): void {
  clientFlags(
    cli.command(
      "fleet <command> [...urls]",
      "fleet status URL…: every agent's apps in one table (exit 0 synced, 2 not, 1 unreachable)",
    ),
  )
    .option("--inventory <file>", "A file of agent URLs, one per line")
    .option("--timeout <duration>", "Deadline of each agent's answer (default 5s)")
    .option("--json", "Print { hosts: [{ url, reachable, host, labels, status, apps }] } as JSON")
    .action(fleet);
}

async function fleet(command: string, urls: string[], options: FleetStatusFlags): Promise<number> {
  if (command !== "status")
    throw new UsageError(`unknown fleet command "${command}"; use: bc-gitops fleet status URL…`);
  const token = options.token ?? process.env.BC_GITOPS_TOKEN;
  const { report, code } = await fleetStatusCommand(urls, { ...options, token });
  print(report);
  return code;
}
