/**
 * `bc-gitops fleet status`: a fleet view without new infrastructure. It asks every agent's control
 * API (`GET /status`, `GET /apps`) concurrently, a bounded number at a time and each with a
 * deadline, and turns the answers into one app × host table and an exit code. Pure except for the
 * requests; the CLI prints.
 */
import { readFile } from "node:fs/promises";
import { colors } from "consola/utils";
import { apiRequest } from "../client.ts";
import { parseDuration } from "../duration.ts";
import { messageOf } from "../errors.ts";
import { redact } from "../redact.ts";
import { columns } from "../report.ts";
import type { AppState } from "../runtime.ts";
import type { AgentStatus } from "../status.ts";
import { formatLabels } from "./host.ts";

/** What one agent answered, or why it could not be asked. */
export interface HostReport {
  /** The control API URL asked. */
  url: string;
  reachable: boolean;
  /** Why it could not be asked (`reachable: false`). */
  error?: string;
  host?: string;
  labels?: Record<string, string>;
  status?: AgentStatus["status"];
  last_commit?: string | null;
  apps: AppState[];
}

/** Options of {@link fleetStatus}. */
export interface FleetStatusOptions {
  token?: string | undefined;
  /** Deadline of each agent's answer (default 5 s). */
  timeoutMs?: number;
  /** Agents asked at the same time (default 16). */
  concurrency?: number;
}

/**
 * The control API URLs of an inventory file: one per line; blank lines and `#` comments are
 * skipped; `host:port` means `http://host:port`.
 */
export function readInventory(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line !== "")
    .map(agentUrl);
}

/** `host:port` -> `http://host:port`; a URL stays as it is. */
export function agentUrl(address: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`;
}

/** Asks every agent in `urls` for its status and apps; never throws for an agent that does not answer. */
export async function fleetStatus(urls: readonly string[], options: FleetStatusOptions = {}): Promise<HostReport[]> {
  const reports: HostReport[] = new Array(urls.length);
  let next = 0;
  const worker = async () => {
    while (next < urls.length) {
      const i = next++;
      reports[i] = await ask(urls[i]!, options);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 16, urls.length) }, worker));
  return reports;
}

async function ask(url: string, options: FleetStatusOptions): Promise<HostReport> {
  const client = { url, token: options.token, timeoutMs: options.timeoutMs ?? 5000 };
  try {
    const [status, { apps }] = await Promise.all([
      apiRequest<AgentStatus>(client, "GET", "/status"),
      apiRequest<{ apps: AppState[] }>(client, "GET", "/apps"),
    ]);
    return {
      url,
      reachable: true,
      ...(typeof status.host === "string" ? { host: status.host } : {}),
      ...(status.labels && typeof status.labels === "object"
        ? { labels: status.labels as Record<string, string> }
        : {}),
      status: status.status,
      last_commit: status.last_commit,
      apps,
    };
  } catch (error) {
    return { url, reachable: false, error: redact(whyUnreachable(error)), apps: [] };
  }
}

/** The reason an agent did not answer: the network's (`ECONNREFUSED`, a timeout) or the API's (`GET /status: 401 …`). */
function whyUnreachable(error: unknown): string {
  type Cause = { code?: unknown; name?: unknown; message?: unknown; cause?: Cause };
  const cause = (error as { cause?: Cause }).cause;
  if (!cause) return messageOf(error);
  const code = [cause.code, cause.cause?.code].find((c) => typeof c === "string");
  if (code) return `cannot connect (${code as string})`;
  if (cause.name === "TimeoutError") return "no answer within the timeout";
  return typeof cause.message === "string" ? cause.message : messageOf(error);
}

/** 1 when an agent could not be reached, else 2 when one is not synced (out of sync, waiting for a wave, degraded…), else 0. */
export function fleetExitCode(reports: readonly HostReport[]): 0 | 1 | 2 {
  if (reports.some((r) => !r.reachable)) return 1;
  return reports.some((r) => r.status !== "synced") ? 2 : 0;
}

/**
 * One table, a row per app per host (version, status, health, and what is in the way: a rollout
 * wave, a pending reason, the last error, the version the repository wants), sorted by app then
 * host; an agent that did not answer gets a row of its own. Then one line per host.
 */
export function fleetReport(reports: readonly HostReport[]): string {
  const name = (r: HostReport) => r.host ?? r.url;
  const rows: string[][] = [];
  for (const report of reports) {
    if (!report.reachable) rows.push(["-", name(report), "-", colors.red("unreachable"), "-", report.error ?? ""]);
    for (const app of report.apps) {
      const wanted =
        typeof app.desired_version === "string" && app.desired_version !== app.version
          ? `wants ${app.desired_version}`
          : "";
      const note = app.pending_reason ?? app.last_error ?? wanted;
      rows.push([app.name, name(report), app.version || "-", app.status, app.health, note.slice(0, 100)]);
    }
  }
  rows.sort((a, b) => a[0]!.localeCompare(b[0]!) || a[1]!.localeCompare(b[1]!));
  const hosts = reports.map((r) =>
    r.reachable
      ? [name(r), r.status ?? "-", r.last_commit?.slice(0, 12) ?? "-", r.labels ? formatLabels(r.labels) : "-", r.url]
      : [name(r), colors.red("unreachable"), "-", "-", r.error ?? ""],
  );
  const count = (status: string) => reports.filter((r) => r.reachable && r.status === status).length;
  const down = reports.filter((r) => !r.reachable).length;
  const summary = `${reports.length} host${reports.length === 1 ? "" : "s"}: ${count("synced")} synced, ${reports.length - count("synced") - down} not synced, ${down} unreachable`;
  return [
    rows.length ? columns([["APP", "HOST", "VERSION", "STATUS", "HEALTH", "NOTE"], ...rows]) : "no apps",
    "",
    columns([["HOST", "AGENT", "COMMIT", "LABELS", "URL"], ...hosts]),
    "",
    summary,
  ].join("\n");
}

/** The flags of `bc-gitops fleet status`. */
export interface FleetStatusFlags {
  inventory?: string;
  /** Deadline of each agent's answer, a duration (default 5s). */
  timeout?: string | number;
  json?: boolean;
  token?: string | undefined;
}

/**
 * `bc-gitops fleet status URL… [--inventory FILE]`: asks the agents and returns the text (or JSON)
 * to print and the exit code. Throws an `Error` naming the flag when the input is unusable.
 */
export async function fleetStatusCommand(
  urls: readonly string[],
  flags: FleetStatusFlags,
): Promise<{ report: string; code: 0 | 1 | 2 }> {
  let listed: string[] = [];
  if (flags.inventory !== undefined) {
    const text = await readFile(flags.inventory, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw new Error(`--inventory: cannot read ${flags.inventory}: ${error.code ?? error.message}`);
    });
    listed = readInventory(text);
  }
  const targets = [...urls.map(String).map(agentUrl), ...listed];
  if (targets.length === 0)
    throw new Error("fleet status needs agent URLs: give them as arguments or in a file with --inventory FILE");
  const timeoutMs = flags.timeout === undefined ? 5000 : parseDuration(String(flags.timeout));
  if (!timeoutMs) throw new Error(`--timeout: expected a duration like 5s, got ${JSON.stringify(flags.timeout)}`);
  const reports = await fleetStatus(targets, { token: flags.token, timeoutMs });
  const code = fleetExitCode(reports);
  return {
    report: flags.json ? JSON.stringify({ hosts: reports, exit_code: code }, null, 2) : fleetReport(reports),
    code,
  };
}
