/** `bc-gitops events` and `logs`: what a running agent streams (its events, an app's log lines), printed as they come. */
import type { CAC } from "cac";
import { colors } from "consola/utils";
import type { LogTail } from "../app-logs.ts";
import { apiRequest, followEvents, followStream } from "../client.ts";
import type { StreamEvent } from "../event-stream.ts";
import { eventLine } from "../report.ts";
import { client, clientFlags, count } from "./flags.ts";
import { print } from "./output.ts";

/** Registers `events` and `logs <app>`, in that order (the order of `--help`). */
export function registerStreamCommands(cli: CAC): void {
  clientFlags(cli.command("events", "Follow the agent's live event stream (readable lines, or --json)"))
    .option("--json", "Print each event as one JSON line")
    .option("-n, --lines <count>", "Past events to print first (default 10)")
    .action(events);
  clientFlags(cli.command("logs <app>", "Print the last lines of an app's log; -f keeps printing new ones"))
    .option("-n, --lines <count>", "Lines to print (default 100)")
    .option("-f, --follow", "Keep printing lines as the app writes them")
    .action(logs);
}

/** Follows the event stream until interrupted, reconnecting when it ends; gaps are told on stderr. */
async function events(options: { url?: string; token?: string; json?: boolean; lines?: unknown }): Promise<number> {
  await followEvents(client(options), {
    backlog: count(options.lines, 10, "--lines"),
    onEvent: (data) => print(options.json ? data : eventLine(JSON.parse(data) as StreamEvent)),
    onGap: (missed) =>
      process.stderr.write(
        colors.dim(
          missed === null
            ? "(the agent restarted: showing the events it kept since)\n"
            : `(${missed} event(s) missed: older than the agent's history)\n`,
        ),
      ),
    onReconnect: () => process.stderr.write(colors.dim("(the event stream ended; reconnecting…)\n")),
  });
  return 0;
}

async function logs(
  app: string,
  options: { url?: string; token?: string; lines?: unknown; follow?: boolean },
): Promise<number> {
  const api = client(options);
  const lines = count(options.lines, 100, "--lines");
  const path = `/apps/${encodeURIComponent(app)}/logs?lines=${lines}`;
  if (!options.follow) {
    const tail = await apiRequest<LogTail>(api, "GET", path);
    for (const line of tail.lines) print(line);
    return 0;
  }
  await followStream(api, `${path}&follow=1`, (message) => print((JSON.parse(message.data) as { line: string }).line));
  process.stderr.write(colors.dim("(the agent ended the log stream)\n"));
  return 0;
}
