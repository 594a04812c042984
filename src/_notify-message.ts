/**
 * What notifications say: telemetry events turned into notification kinds (an upgrade, a rollback,
 * a failure, a recovery, a rejected commit…), each failure once per subject and message rather
 * than once per tick, and the bodies of the three formats (`generic` JSON, Slack's and Discord's
 * incoming webhooks).
 */
import { redact, redactValue } from "./redact.ts";
import type { TelemetryEvent } from "./telemetry.ts";

/** The notification kinds a target can ask for (`notify[].events`). */
export const NOTIFY_EVENTS = [
  "deploy",
  "upgrade",
  "rollback",
  "reconfigure",
  "hot_reload",
  "restart",
  "remove",
  "failed",
  "recovered",
  "verify_rejected",
] as const;

/** A notification kind. */
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** The kinds a target gets when it names none. */
export const DEFAULT_NOTIFY_EVENTS: readonly NotifyEvent[] = [
  "upgrade",
  "rollback",
  "remove",
  "failed",
  "recovered",
  "verify_rejected",
];

/** The body formats. */
export const NOTIFY_FORMATS = ["generic", "slack", "discord"] as const;
/** A body format. */
export type NotifyFormat = (typeof NOTIFY_FORMATS)[number];

/** One notification; the `generic` format posts it as it is (JSON). */
export interface Notification {
  kind: NotifyEvent;
  host: string;
  /** The app concerned; absent for the repository's failures and recoveries and rejected commits. */
  app?: string;
  version?: string;
  from_version?: string;
  to_version?: string;
  commit?: string;
  error?: string;
  /** One line for people: what happened, where. */
  summary: string;
  /** ISO-8601 time of the event. */
  at: string;
  /** The telemetry event it comes from (redacted). */
  event: { name: string; measurements: Record<string, unknown>; metadata: Record<string, unknown> };
}

const ACTIONS: ReadonlySet<string> = new Set(["deploy", "upgrade", "reconfigure", "remove", "hot_reload", "restart"]);
/** Successful actions after which a failing app counts as recovered. */
const HEALS: ReadonlySet<string> = new Set(["deploy", "upgrade", "reconfigure", "hot_reload", "restart"]);
/** The subject of the repository's own failures. */
const REPOSITORY = "\0repository";

/**
 * Turns telemetry events into notifications. Stateful: a subject (an app, or the repository) is
 * failing from its first failure until it recovers; a failure with the message already notified
 * for it is not notified again (a repository that stays unreachable is one notification, not one
 * per tick), and `recovered` is sent only for a subject that was failing.
 */
export class NotificationClassifier {
  readonly #host: string;
  readonly #now: () => number;
  /** Failing subjects -> the message last notified. */
  readonly #failing = new Map<string, string>();
  /** Commits whose rejection was notified. */
  readonly #rejected = new Set<string>();

  constructor(host: string, now: () => number = Date.now) {
    this.#host = host;
    this.#now = now;
  }

  /** The notifications `event` gives (often none). */
  classify(event: TelemetryEvent): Notification[] {
    const [, area = "", phase = ""] = event.name.split(":");
    const meta = event.metadata;
    const app = typeof meta.app === "string" ? meta.app : undefined;
    const error = meta.error === undefined ? undefined : redact(String(meta.error));
    const out: Notification[] = [];
    const note = (kind: NotifyEvent, summary: string) => out.push(this.#notification(kind, event, summary, error));

    if (area === "reconcile" && phase === "error") {
      if (meta.verified === false) {
        const commit = String(meta.commit ?? "");
        if (!this.#rejected.has(commit)) {
          this.#rejected.add(commit);
          note(
            "verify_rejected",
            `commit ${commit.slice(0, 12)} rejected on ${this.#host}: ${error ?? "not verified"}`,
          );
        }
      } else if (this.#fail(REPOSITORY, error ?? "")) {
        note("failed", `repository failed on ${this.#host}: ${error ?? "unknown error"}`);
      }
    } else if (area === "reconcile" && phase === "stop" && meta.status !== "error") {
      if (this.#heal(REPOSITORY)) note("recovered", `repository recovered on ${this.#host}`);
    } else if (area === "health" && phase === "change" && app) {
      if (meta.to === "unhealthy" && this.#fail(app, `unhealthy${error ? `: ${error}` : ""}`))
        note("failed", `${app} is unhealthy on ${this.#host}${error ? `: ${error}` : ""}`);
      if (meta.to === "healthy" && this.#heal(app)) note("recovered", `${app} recovered on ${this.#host}`);
    } else if (ACTIONS.has(area) && app && phase === "stop") {
      const modules = meta.modules;
      const reloadedNothing = area === "hot_reload" && Array.isArray(modules) && modules.length === 0;
      if (!reloadedNothing) note(area as NotifyEvent, this.#done(area, app, meta));
      if (area === "remove") this.#failing.delete(app);
      else if (HEALS.has(area) && this.#heal(app)) note("recovered", `${app} recovered on ${this.#host}`);
    } else if (ACTIONS.has(area) && app && phase === "error") {
      if (area === "upgrade" && typeof meta.rolled_back_to === "string") {
        note(
          "rollback",
          `${app} upgrade ${String(meta.from_version ?? "?")} -> ${String(meta.to_version ?? meta.version ?? "?")} rolled back to ${meta.rolled_back_to} on ${this.#host}: ${error ?? ""}`,
        );
      } else if (this.#fail(app, error ?? "")) {
        note("failed", `${app} ${area.replace("_", " ")} failed on ${this.#host}: ${error ?? "unknown error"}`);
      }
    }
    return out;
  }

  /** Marks `subject` failing with `message`; true when that is news (not the message last notified). */
  #fail(subject: string, message: string): boolean {
    if (this.#failing.get(subject) === message) return false;
    this.#failing.set(subject, message);
    return true;
  }

  /** Marks `subject` well again; true when it was failing. */
  #heal(subject: string): boolean {
    return this.#failing.delete(subject);
  }

  #done(area: string, app: string, meta: TelemetryEvent["metadata"]): string {
    const version = meta.version ? ` ${String(meta.version)}` : "";
    switch (area) {
      case "deploy":
        return `${app}${version} deployed on ${this.#host}`;
      case "upgrade":
        return `${app} upgraded ${String(meta.from_version ?? "?")} -> ${String(meta.to_version ?? meta.version ?? "?")} on ${this.#host}`;
      case "reconfigure":
        return `${app} reconfigured on ${this.#host}`;
      case "hot_reload": {
        const count = Array.isArray(meta.modules) ? meta.modules.length : 0;
        return `${app} hot-reloaded (${count} module${count === 1 ? "" : "s"}) on ${this.#host}`;
      }
      case "restart":
        return `${app} restarted on ${this.#host}`;
      default:
        return `${app} removed from ${this.#host}`;
    }
  }

  #notification(kind: NotifyEvent, event: TelemetryEvent, summary: string, error: string | undefined): Notification {
    const meta = event.metadata;
    const text = (key: string) => (typeof meta[key] === "string" ? { [key]: redact(meta[key] as string) } : {});
    return {
      kind,
      host: this.#host,
      ...text("app"),
      ...text("version"),
      ...text("from_version"),
      ...text("to_version"),
      ...text("commit"),
      ...(error !== undefined ? { error } : {}),
      summary: redact(summary),
      at: new Date(this.#now()).toISOString(),
      event: {
        name: event.name,
        measurements: { ...event.measurements },
        metadata: redactValue(meta) as Record<string, unknown>,
      },
    };
  }
}

/** Kinds that report something wrong (shown with a cross in chat formats). */
const BAD: ReadonlySet<NotifyEvent> = new Set(["failed", "rollback", "verify_rejected"]);

/** Longest Discord message (its limit). */
const DISCORD_MAX = 2000;

/**
 * The request body of `notification` in `format`: `generic` the notification itself as JSON;
 * `slack` `{ text }` (Slack's incoming webhook, `&`, `<`, `>` escaped as Slack requires);
 * `discord` `{ content, username, allowed_mentions }` (no mention in an error text can ping anyone).
 */
export function notificationBody(notification: Notification, format: NotifyFormat): string {
  if (format === "generic") return JSON.stringify(notification);
  const mark = BAD.has(notification.kind) ? "✖" : "✔";
  const line = `${mark} bc-gitops: ${notification.summary}`;
  if (format === "slack")
    return JSON.stringify({ text: line.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;") });
  const content = line.length > DISCORD_MAX ? `${line.slice(0, DISCORD_MAX - 1)}…` : line;
  return JSON.stringify({ content, username: "bc-gitops", allowed_mentions: { parse: [] } });
}
