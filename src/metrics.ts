/**
 * Prometheus metrics (`GET /metrics`, text exposition format 0.0.4). Counters and histograms are
 * fed by telemetry events as they happen; gauges (status, apps, memory) are read from a status
 * snapshot at scrape time. Every name starts with `bc_gitops_`; durations are in seconds.
 */
import { runtimeName, runtimeVersion } from "./_platform.ts";
import { DROP_REASONS, type NotificationStats } from "./notify.ts";
import { redact } from "./redact.ts";
import type { AppState } from "./runtime.ts";
import type { AgentStatus, AgentStatusName } from "./status.ts";
import type { TelemetryEvent } from "./telemetry.ts";
import { VERSION } from "./version.ts";

/** The `Content-Type` of {@link Metrics.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Histogram buckets (seconds): from a no-op tick to a slow npm install. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300] as const;

const STATUS_NAMES: readonly AgentStatusName[] = ["initializing", "synced", "out_of_sync", "degraded", "error"];
const APP_STATUSES = ["pending", "starting", "running", "upgrading", "stopped", "failed"] as const;
const APP_HEALTHS = ["healthy", "unhealthy", "unknown"] as const;
const ACTIONS = new Set(["deploy", "upgrade", "reconfigure", "remove", "hot_reload", "restart"]);

type Labels = Record<string, string>;

/** What {@link Metrics.render} reads at scrape time. */
export interface MetricsSnapshot {
  status: AgentStatus;
  apps: Record<string, AppState>;
  /** Each `notify` target's counters (absent: no notifications configured). */
  notifications?: readonly NotificationStats[];
}

class Histogram {
  readonly counts = DURATION_BUCKETS.map(() => 0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds < 0) return;
    this.sum += seconds;
    this.count++;
    DURATION_BUCKETS.forEach((le, i) => {
      if (seconds <= le) this.counts[i]!++;
    });
  }
}

/**
 * The agent's metrics. Feed it every telemetry event ({@link Metrics.observe}, e.g.
 * `agent.on("*", metrics.observe)`) and call {@link Metrics.render} on each scrape.
 */
export class Metrics {
  readonly #now: () => number;
  #reconciles = 0;
  #reconcileErrors = 0;
  #gitFetchErrors = 0;
  /** True from a tick's start until git answered: a reconcile error then is a fetch error. */
  #fetching = false;
  #lastReconcile: number | undefined;
  #lastSuccess: number | undefined;
  readonly #reconcileDuration = new Histogram();
  readonly #gitDuration = new Map<string, Histogram>();
  readonly #actionDuration = new Map<string, Histogram>();
  /** `action\0app\0result` -> count. */
  readonly #actions = new Map<string, number>();

  /** @param options.now the clock for the reconcile timestamps (ms since the epoch). */
  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** Records one telemetry event. Bound, so it can be passed as a subscriber. */
  readonly observe = (event: TelemetryEvent): void => {
    const [, area = "", phase = ""] = event.name.split(":");
    const seconds = (event.measurements.duration_ms ?? NaN) / 1000;
    if (area === "reconcile") {
      if (phase === "start") this.#fetching = true;
      if (phase === "error") {
        this.#reconcileErrors++;
        if (this.#fetching) this.#gitFetchErrors++;
      }
      if (phase === "stop") {
        this.#fetching = false;
        this.#reconciles++;
        this.#reconcileDuration.observe(seconds);
        this.#lastReconcile = this.#now();
        if (event.metadata.status !== "error") this.#lastSuccess = this.#lastReconcile;
      }
      return;
    }
    if (area === "git" && (phase === "pull" || (phase === "clone_stop" && event.metadata.error === undefined))) {
      histogram(this.#gitDuration, phase === "pull" ? "fetch" : "clone").observe(seconds);
    }
    if (
      area === "parse" ||
      ACTIONS.has(area) ||
      (area === "git" && phase !== "clone_start" && event.metadata.error === undefined)
    )
      this.#fetching = false;
    if (ACTIONS.has(area) && (phase === "stop" || phase === "error")) {
      // A hot reload that found nothing changed (modules: []) reloaded nothing.
      const modules = event.metadata.modules;
      if (area === "hot_reload" && phase === "stop" && Array.isArray(modules) && modules.length === 0) return;
      const key = `${area}\0${String(event.metadata.app ?? "")}\0${phase === "stop" ? "ok" : "error"}`;
      this.#actions.set(key, (this.#actions.get(key) ?? 0) + 1);
      if (phase === "stop") histogram(this.#actionDuration, area).observe(seconds);
    }
  };

  /** The metrics in Prometheus text format, with gauges taken from `snapshot`. */
  render(snapshot: MetricsSnapshot): string {
    const out = new Exposition();
    out.family(
      "bc_gitops_build_info",
      "gauge",
      "Build information: bc-gitops version and the JavaScript runtime it runs on.",
    );
    out.sample("bc_gitops_build_info", { version: VERSION, runtime: runtimeName, runtime_version: runtimeVersion }, 1);
    const host = typeof snapshot.status.host === "string" ? snapshot.status.host : undefined;
    // Series about this host's apps carry its name, so a central Prometheus can group by host.
    const onHost: Labels = host === undefined ? {} : { host };
    out.family(
      "bc_gitops_host_info",
      "gauge",
      "This host in the fleet: its name and labels (label_<key>, key characters other than letters, digits and _ as _).",
    );
    if (host !== undefined) out.sample("bc_gitops_host_info", { host, ...labelsOf(snapshot.status.labels) }, 1);

    out.family("bc_gitops_status", "gauge", "The agent's status: 1 for the current one, 0 for the others.");
    for (const name of STATUS_NAMES)
      out.sample("bc_gitops_status", { status: name }, snapshot.status.status === name ? 1 : 0);
    out.family("bc_gitops_errors", "gauge", "Problems shown in status (repository, spec, plan and app errors).");
    out.sample("bc_gitops_errors", {}, snapshot.status.errors.length);

    out.family("bc_gitops_reconcile_total", "counter", "Reconcile ticks completed.");
    out.sample("bc_gitops_reconcile_total", {}, this.#reconciles);
    out.family(
      "bc_gitops_reconcile_errors_total",
      "counter",
      "Reconcile errors (the repository could not be fetched or read, or a tick failed).",
    );
    out.sample("bc_gitops_reconcile_errors_total", {}, this.#reconcileErrors);
    out.histogram(
      "bc_gitops_reconcile_duration_seconds",
      "Duration of reconcile ticks.",
      new Map([["", this.#reconcileDuration]]),
      "",
    );
    out.family(
      "bc_gitops_last_reconcile_timestamp_seconds",
      "gauge",
      "When the last reconcile tick ended (Unix time).",
    );
    if (this.#lastReconcile !== undefined)
      out.sample("bc_gitops_last_reconcile_timestamp_seconds", {}, this.#lastReconcile / 1000);
    out.family(
      "bc_gitops_last_success_timestamp_seconds",
      "gauge",
      "When the last reconcile tick without a repository error ended (Unix time).",
    );
    if (this.#lastSuccess !== undefined)
      out.sample("bc_gitops_last_success_timestamp_seconds", {}, this.#lastSuccess / 1000);

    out.histogram(
      "bc_gitops_git_duration_seconds",
      "Duration of git fetches and clones that brought new commits.",
      this.#gitDuration,
      "operation",
    );
    out.family("bc_gitops_git_fetch_errors_total", "counter", "Reconcile ticks whose git fetch failed.");
    out.sample("bc_gitops_git_fetch_errors_total", {}, this.#gitFetchErrors);

    out.family(
      "bc_gitops_actions_total",
      "counter",
      "Actions applied to apps (deploy, upgrade, reconfigure, remove, hot_reload, restart) by result.",
    );
    for (const [key, count] of [...this.#actions].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const [action = "", app = "", result = ""] = key.split("\0");
      out.sample("bc_gitops_actions_total", { action, app, result }, count);
    }
    out.histogram(
      "bc_gitops_action_duration_seconds",
      "Duration of successful actions (deploy and upgrade include install and health checks).",
      this.#actionDuration,
      "action",
    );

    const apps = Object.values(snapshot.apps);
    out.family("bc_gitops_apps", "gauge", "Apps by status.");
    const statuses = new Set<string>([...APP_STATUSES, ...apps.map((a) => a.status)]);
    for (const status of statuses)
      out.sample("bc_gitops_apps", { status }, apps.filter((a) => a.status === status).length);
    out.family("bc_gitops_apps_health", "gauge", "Apps by health.");
    const healths = new Set<string>([...APP_HEALTHS, ...apps.map((a) => a.health)]);
    for (const health of healths)
      out.sample("bc_gitops_apps_health", { health }, apps.filter((a) => a.health === health).length);
    out.family("bc_gitops_app_info", "gauge", "One series per app: its version, status, health and isolation.");
    for (const a of apps) {
      out.sample(
        "bc_gitops_app_info",
        {
          app: a.name,
          version: a.version,
          status: a.status,
          health: a.health,
          isolation: String(a.isolation ?? ""),
          ...onHost,
        },
        1,
      );
    }
    out.family(
      "bc_gitops_app_desired_version_info",
      "gauge",
      "One series per app placed on this host: the version the repository wants here (overrides applied).",
    );
    for (const a of apps)
      if (typeof a.desired_version === "string")
        out.sample("bc_gitops_app_desired_version_info", { app: a.name, version: a.desired_version, ...onHost }, 1);
    out.family("bc_gitops_app_rollout_wave", "gauge", "The rollout wave of this host for each app with a rollout.");
    out.family(
      "bc_gitops_app_rollout_waiting",
      "gauge",
      "1 while a change to the app waits for this host's rollout wave (or a paused rollout), else 0.",
    );
    for (const a of apps) {
      const rollout = a.rollout as { wave?: unknown; waiting?: unknown } | undefined;
      if (typeof rollout?.wave !== "number") continue;
      out.sample("bc_gitops_app_rollout_wave", { app: a.name, ...onHost }, rollout.wave);
      out.sample("bc_gitops_app_rollout_waiting", { app: a.name, ...onHost }, rollout.waiting === true ? 1 : 0);
    }
    out.family("bc_gitops_app_restarts", "gauge", "Crash restarts of each app since its last deploy or upgrade.");
    for (const a of apps) out.sample("bc_gitops_app_restarts", { app: a.name }, a.restarts ?? 0);
    out.family(
      "bc_gitops_app_restarts_refused",
      "gauge",
      "Restarts of each app refused without starting anything (a crash loop's cool-down), since its last deploy or upgrade.",
    );
    for (const a of apps)
      if (typeof a.restarts_refused === "number")
        out.sample("bc_gitops_app_restarts_refused", { app: a.name }, a.restarts_refused);
    out.family("bc_gitops_app_reloads", "gauge", "Hot reloads applied to each app's running instance.");
    for (const a of apps) out.sample("bc_gitops_app_reloads", { app: a.name }, a.reloads ?? 0);
    out.family(
      "bc_gitops_app_memory_bytes",
      "gauge",
      "Memory of each app as its status reports it: a worker's heap, a process's RSS, or for embedded apps the agent heap's growth from the app's start to its last reload (an estimate).",
    );
    for (const a of apps) {
      if (typeof a.memory_mb === "number")
        out.sample(
          "bc_gitops_app_memory_bytes",
          { app: a.name, isolation: String(a.isolation ?? "") },
          Math.round(a.memory_mb * 1024 * 1024),
        );
    }

    const targets = snapshot.notifications ?? [];
    out.family(
      "bc_gitops_notifications_sent_total",
      "counter",
      "Notifications delivered, by target (URL shown as scheme://host/***).",
    );
    for (const t of targets) out.sample("bc_gitops_notifications_sent_total", { target: t.target }, t.sent);
    out.family(
      "bc_gitops_notifications_dropped_total",
      "counter",
      "Notifications given up on, by target and reason: overflow (queue full), deadline (retried until its deadline), rejected (a 4xx answer), shutdown (the agent stopped).",
    );
    for (const t of targets)
      for (const reason of DROP_REASONS)
        out.sample("bc_gitops_notifications_dropped_total", { target: t.target, reason }, t.dropped[reason]);
    out.family("bc_gitops_notifications_queued", "gauge", "Notifications waiting for delivery, by target.");
    for (const t of targets) out.sample("bc_gitops_notifications_queued", { target: t.target }, t.queued);

    const memory = process.memoryUsage();
    out.family(
      "bc_gitops_process_resident_memory_bytes",
      "gauge",
      "Resident memory of the agent process (embedded apps included).",
    );
    out.sample("bc_gitops_process_resident_memory_bytes", {}, memory.rss);
    out.family("bc_gitops_process_heap_used_bytes", "gauge", "JavaScript heap in use in the agent process.");
    out.sample("bc_gitops_process_heap_used_bytes", {}, memory.heapUsed);
    return out.text();
  }
}

/** Host labels as Prometheus labels: `label_<key>`, characters a label name cannot hold as `_` (`host` is a label of its own). */
function labelsOf(labels: unknown): Labels {
  const out: Labels = {};
  if (typeof labels !== "object" || labels === null) return out;
  for (const [key, value] of Object.entries(labels as Record<string, unknown>)) {
    if (key === "host") continue;
    out[`label_${key.replace(/[^a-zA-Z0-9_]/g, "_")}`] = String(value);
  }
  return out;
}

function histogram(map: Map<string, Histogram>, key: string): Histogram {
  let h = map.get(key);
  if (!h) map.set(key, (h = new Histogram()));
  return h;
}

/** Label values escaped as the format requires: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "+Inf" : "-Inf";
  return String(value);
}

/** Accumulates exposition lines. Label values pass through `redact` too: they may carry an app's source URL one day. */
class Exposition {
  readonly #lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Labels, value: number): void {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(redact(v))}"`);
    this.#lines.push(`${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${formatValue(value)}`);
  }

  histogram(name: string, help: string, series: Map<string, Histogram>, label: string): void {
    this.family(name, "histogram", help);
    for (const [key, h] of [...series].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const base: Labels = label ? { [label]: key } : {};
      DURATION_BUCKETS.forEach((le, i) => this.sample(`${name}_bucket`, { ...base, le: String(le) }, h.counts[i]!));
      this.sample(`${name}_bucket`, { ...base, le: "+Inf" }, h.count);
      this.sample(`${name}_sum`, base, h.sum);
      this.sample(`${name}_count`, base, h.count);
    }
  }

  text(): string {
    return `${this.#lines.join("\n")}\n`;
  }
}
