/**
 * Text the CLI prints for people: the status table, a tick's result, a plan, an event. Pure functions from
 * data to strings, so the CLI stays the only place that writes to the terminal.
 */
import { colors } from "consola/utils";
import type { StreamEvent } from "./event-stream.ts";
import { formatLabels, type HostIdentity } from "./fleet/host.ts";
import type { HostedApp, NotPlaced } from "./fleet/view.ts";
import type { Action } from "./plan.ts";
import type { ActionOutcome, TickResult } from "./reconciler.ts";
import type { AppState } from "./runtime.ts";
import type { AgentStatus } from "./status.ts";

/** Left-aligned columns separated by two spaces; colours do not count towards widths. */
export function columns(rows: readonly (readonly string[])[]): string {
  // eslint-disable-next-line no-control-regex
  const visible = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "").length;
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, visible(cell))));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + " ".repeat(widths[i]! - visible(cell))))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const STATUS_COLOUR: Record<string, (s: string) => string> = {
  synced: colors.green,
  running: colors.green,
  healthy: colors.green,
  out_of_sync: colors.yellow,
  pending: colors.yellow,
  starting: colors.yellow,
  upgrading: colors.yellow,
  unknown: colors.dim,
  initializing: colors.dim,
  degraded: colors.red,
  error: colors.red,
  failed: colors.red,
  unhealthy: colors.red,
  stopped: colors.red,
};

const paint = (word: string) => (STATUS_COLOUR[word] ?? ((s: string) => s))(word);

/** "3m ago" style age of an ISO time relative to `now`. */
export function since(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** The `bc-gitops status` screen: the agent line, then one row per app. */
export function statusReport(status: AgentStatus, apps: readonly AppState[], now = Date.now()): string {
  const host =
    typeof status.host === "string"
      ? `  host ${status.host}${status.labels ? ` (${formatLabels(status.labels as Record<string, string>)})` : ""}`
      : "";
  const head = `${paint(status.status)}  commit ${status.last_commit?.slice(0, 12) ?? "-"}  ${status.healthy_count}/${status.app_count} healthy  last reconcile ${since(status.last_reconcile.at ?? undefined, now)} ago${status.last_reconcile.duration_ms !== null ? ` (${status.last_reconcile.duration_ms} ms)` : ""}${host}`;
  const rows = [["APP", "VERSION", "STATUS", "HEALTH", "REVISION", "SINCE", "LAST ERROR"]];
  for (const app of apps) {
    rows.push([
      app.name,
      app.version || "-",
      paint(app.status),
      paint(app.health),
      app.revision ? app.revision.slice(0, 12) : "-",
      since(app.started_at, now),
      (app.last_error ?? app.pending_reason ?? "").slice(0, 80),
    ]);
  }
  const errors = status.errors
    .filter((e) => !e.app)
    .map((e) => `${colors.red("error")} ${e.file ? `${e.file}${e.line ? `:${e.line}` : ""} ` : ""}${e.message}`);
  return [head, "", apps.length ? columns(rows) : "no apps", ...(errors.length ? ["", ...errors] : [])].join("\n");
}

/** One line per action outcome of a tick, then the resulting status. */
export function tickReport(result: TickResult): string {
  const lines = result.actions.map((a: ActionOutcome) => {
    const mark = a.outcome === "ok" ? colors.green("✔") : a.outcome === "failed" ? colors.red("✖") : colors.yellow("…");
    const detail = a.error ?? a.reason ?? "";
    return `${mark} ${a.type} ${a.app}${detail ? `: ${detail}` : ""}${a.duration_ms !== undefined ? colors.dim(` (${a.duration_ms} ms)`) : ""}`;
  });
  if (lines.length === 0) lines.push("nothing to do");
  lines.push(`${paint(result.status)} at ${result.commit?.slice(0, 12) ?? "-"} in ${result.duration_ms} ms`);
  return lines.join("\n");
}

/** One line per planned action (the `bc-gitops plan` output). */
export function planReport(actions: readonly Action[], errors: readonly { app: string; message: string }[]): string {
  const lines = actions.map((a) => {
    switch (a.type) {
      case "deploy":
        return `${colors.green("+")} deploy ${a.app} ${a.spec.version}`;
      case "remove":
        return `${colors.red("-")} remove ${a.app} ${a.from.version}`;
      case "upgrade":
        return `${colors.yellow("~")} upgrade ${a.app}: ${a.reason}`;
      case "reconfigure":
        return `${colors.yellow("~")} reconfigure ${a.app}${reconfigured(a)}`;
      case "hot_reload":
        return `${colors.yellow("~")} hot_reload ${a.app} ${a.fromRevision.slice(0, 12)} -> ${a.toRevision.slice(0, 12)}`;
      case "restart":
        return `${colors.yellow("↻")} restart ${a.app}: ${a.reason}`;
    }
  });
  for (const e of errors) lines.push(`${colors.red("✖")} ${e.app}: ${e.message}`);
  return lines.length ? lines.join("\n") : "nothing to do: the host matches the repository";
}

/** What a reconfigure changes: `: env +A ~B -C`, and `; secret changed: KEY` for secret keys (never values). */
function reconfigured(a: Extract<Action, { type: "reconfigure" }>): string {
  const secret = new Set(a.secrets ?? []);
  const plain = [...a.added.map((k) => `+${k}`), ...a.changed.map((k) => `~${k}`), ...a.removed.map((k) => `-${k}`)];
  const shown = plain.filter((item) => !secret.has(item.slice(1)));
  const parts = [
    ...(shown.length ? [`env ${shown.join(" ")}`] : []),
    ...(secret.size ? [`secret changed: ${[...secret].join(", ")}`] : []),
  ];
  return parts.length ? `: ${parts.join("; ")}` : "";
}

/** What one host runs (`validate --host`): its identity, each app it runs with the overrides and wave that apply, each app it does not run and why. */
export function placementReport(
  identity: HostIdentity,
  apps: readonly HostedApp[],
  notPlaced: readonly NotPlaced[],
): string {
  const lines = [`host ${identity.host} (${formatLabels(identity.labels, { builtins: true })})`];
  for (const app of apps) {
    const overrides = app.overrides.length
      ? `  overrides ${app.overrides.map((o) => `[${o.index}] ${o.match} (${o.fields.join(", ")})`).join("; ")}`
      : "";
    const wave = app.rollout
      ? `  wave ${app.rollout.wave} of ${app.rollout.waves}${app.rollout.paused ? " (paused)" : ""}`
      : "";
    lines.push(`${colors.green("+")} ${app.name} ${app.version}  ${colors.dim(app.file)}${overrides}${wave}`);
  }
  for (const app of notPlaced) lines.push(`${colors.dim("-")} ${app.name}  ${colors.dim(`not placed: ${app.reason}`)}`);
  return lines.join("\n");
}

/**
 * One event of the stream (`bc-gitops events`) as a line: time, app (or `-`), what happened and
 * its details, the duration, and the error in red.
 */
export function eventLine(event: StreamEvent): string {
  const m = event.metadata;
  const details: string[] = [];
  if (typeof m.from_version === "string" && typeof m.to_version === "string")
    details.push(`${m.from_version} -> ${m.to_version}`);
  else if (typeof m.version === "string") details.push(m.version);
  if (event.name === "bc_gitops:health:change") details.push(`${String(m.from)} -> ${String(m.to)}`);
  if (event.name === "bc_gitops:reconcile:stop" && typeof m.status === "string") details.push(m.status);
  if (Array.isArray(m.modules)) details.push(`${m.modules.length} module(s) changed`);
  if (typeof m.reason === "string") details.push(m.reason);
  if (typeof m.commit === "string" && event.area !== "health") details.push(`commit ${m.commit.slice(0, 12)}`);
  if (event.duration_ms !== undefined) details.push(colors.dim(`${event.duration_ms} ms`));
  const what = `${event.area}:${event.phase}`;
  const painted = event.phase === "error" ? colors.red(what) : event.phase === "stop" ? colors.green(what) : what;
  const line = `${colors.dim(event.at)}  ${event.app ?? "-"}  ${painted}${details.length ? `  ${details.join("  ")}` : ""}`;
  return event.error ? `${line}  ${colors.red(event.error)}` : line;
}
