/**
 * Outgoing notifications (config `notify`): each target gets the kinds of events it asks for, as
 * `generic` JSON signed like the webhooks bc-gitops accepts (`X-Bc-Gitops-Signature-256:
 * sha256=<hex HMAC-SHA256 of the body>`), or as a Slack or Discord incoming-webhook message.
 *
 * Delivery never blocks a tick: each target has a bounded queue worked in the background, one
 * request at a time (so a target sees events in order). A failed attempt (network error, timeout,
 * 408, 425, 429, 5xx) is retried with exponential backoff (or the `Retry-After` asked for) until
 * the notification's deadline; a full queue drops its oldest waiting notification. Every drop is
 * counted (`bc_gitops_notifications_dropped_total`) and the first of a run of drops is logged. A
 * target's URL is a secret (Slack's and Discord's carry their token in the path): it is registered
 * for redaction and shown as `scheme://host/***`.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import {
  DEFAULT_NOTIFY_EVENTS,
  NOTIFY_EVENTS,
  NOTIFY_FORMATS,
  NotificationClassifier,
  notificationBody,
  type Notification,
  type NotifyEvent,
  type NotifyFormat,
} from "./_notify-message.ts";
import { messageOf } from "./errors.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { redact, registerSecret } from "./redact.ts";
import type { TelemetryEvent } from "./telemetry.ts";
import { VERSION } from "./version.ts";
import { signWebhook } from "./webhook.ts";

export { DEFAULT_NOTIFY_EVENTS, NOTIFY_EVENTS, NOTIFY_FORMATS, type Notification, type NotifyEvent, type NotifyFormat };

/** The header carrying a `generic` notification's signature. */
export const NOTIFY_SIGNATURE_HEADER = "X-Bc-Gitops-Signature-256";

const isHttpUrl = (value: string) => {
  try {
    return ["http:", "https:"].includes(new URL(value).protocol);
  } catch {
    return false;
  }
};

/** One `notify` target, validated (`events` defaults to {@link DEFAULT_NOTIFY_EVENTS}). */
export const NotifyTarget = z
  .strictObject({
    url: z.string().refine(isHttpUrl, { error: "expected an http:// or https:// URL" }),
    format: z.enum(NOTIFY_FORMATS).default("generic"),
    events: z
      .array(
        z.preprocess(
          (value) =>
            typeof value === "string"
              ? value
                  .trim()
                  .toLowerCase()
                  .replace(/[\s-]+/g, "_")
              : value,
          z.enum(NOTIFY_EVENTS),
        ),
      )
      .min(1, { error: "list at least one event, or leave events out for the defaults" })
      .default([...DEFAULT_NOTIFY_EVENTS]),
    secret: z
      .string()
      .min(8, { error: "must be at least 8 characters; use a long random string, e.g. from `openssl rand -hex 32`" })
      .optional(),
  })
  .refine((target) => target.secret === undefined || target.format === "generic", {
    error: "secret signs generic notifications only; Slack and Discord URLs carry their own token",
    path: ["secret"],
  });
/** A validated `notify` target. */
export type NotifyTarget = z.output<typeof NotifyTarget>;
/** A `notify` target as given (`format` and `events` may be left out). */
export type NotifyTargetInput = z.input<typeof NotifyTarget>;

/** A target's URL as it may be shown: scheme and host, the rest (path, query, credentials) hidden. */
export function shownUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}/***`;
  } catch {
    return "***";
  }
}

/** Why a notification was dropped. */
export type DropReason = "overflow" | "deadline" | "rejected" | "shutdown";
/** Every drop reason, in the order metrics list them. */
export const DROP_REASONS: readonly DropReason[] = ["overflow", "deadline", "rejected", "shutdown"];

/** One target's counters (the `/metrics` series). */
export interface NotificationStats {
  /** The URL as shown ({@link shownUrl}). */
  target: string;
  format: NotifyFormat;
  sent: number;
  dropped: Record<DropReason, number>;
  /** Waiting or being delivered now. */
  queued: number;
}

/** Options of {@link Notifier}. */
export interface NotifierOptions {
  targets: readonly NotifyTarget[];
  /** Named in every notification. */
  host: string;
  logger?: Logger;
  now?: () => number;
  /** Notifications a target's queue holds (default 100). */
  queueSize?: number;
  /** Deadline of one request (default 10 s). */
  attemptTimeoutMs?: number;
  /** How long a notification is retried after it was queued (default 2 min). */
  deadlineMs?: number;
  /** Delay before the first retry, doubled at each (default 1 s, at most 30 s). */
  retryDelayMs?: number;
}

interface Item {
  notification: Notification;
  body: string;
  id: string;
  queuedAt: number;
  attempts: number;
}

type Attempt = { ok: true } | { ok: false; retry: boolean; why: string; afterMs?: number };

/** One target: its queue, its worker and its counters. */
class Target {
  readonly shown: string;
  readonly queue: Item[] = [];
  sent = 0;
  readonly dropped: Record<DropReason, number> = { overflow: 0, deadline: 0, rejected: 0, shutdown: 0 };
  /** A drop was logged and nothing was delivered since. */
  warned = false;
  working: Promise<void> | undefined;
  /** Aborts the request in flight and the wait before a retry (close). */
  readonly abort = new AbortController();

  readonly config: NotifyTarget;

  constructor(config: NotifyTarget, shown: string) {
    this.config = config;
    this.shown = shown;
  }
}

/**
 * Sends notifications for telemetry events. Feed it every event ({@link Notifier.observe}, e.g.
 * `agent.on("*", notifier.observe)`); it returns at once, delivery runs in the background.
 */
export class Notifier {
  readonly #targets: Target[];
  readonly #classifier: NotificationClassifier;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #queueSize: number;
  readonly #attemptTimeoutMs: number;
  readonly #deadlineMs: number;
  readonly #retryDelayMs: number;
  #closed = false;

  constructor(options: NotifierOptions) {
    const seen = new Map<string, number>();
    this.#targets = options.targets.map((config) => {
      // Two targets on one host would look alike: the second is "https://host/*** (2)".
      const shown = shownUrl(config.url);
      const n = (seen.get(shown) ?? 0) + 1;
      seen.set(shown, n);
      return new Target(config, n === 1 ? shown : `${shown} (${n})`);
    });
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
    this.#classifier = new NotificationClassifier(options.host, this.#now);
    this.#queueSize = Math.max(1, options.queueSize ?? 100);
    this.#attemptTimeoutMs = options.attemptTimeoutMs ?? 10_000;
    this.#deadlineMs = options.deadlineMs ?? 120_000;
    this.#retryDelayMs = options.retryDelayMs ?? 1000;
    for (const { config } of this.#targets) {
      registerSecret(config.url);
      registerSecret(config.secret);
      const url = new URL(config.url);
      const tail = `${url.pathname}${url.search}`;
      // The path of a chat webhook is its token; a short path ("/hook") is no secret and hiding it would hide words.
      if (tail.length >= 16) registerSecret(tail);
    }
  }

  /** Queues the notifications `event` gives for the targets that asked for their kind. Bound; never throws. */
  readonly observe = (event: TelemetryEvent): void => {
    if (this.#closed || this.#targets.length === 0) return;
    for (const notification of this.#classifier.classify(event)) {
      for (const target of this.#targets) {
        if (target.config.events.includes(notification.kind)) this.#enqueue(target, notification);
      }
    }
  };

  /** Each target's counters. */
  stats(): NotificationStats[] {
    return this.#targets.map((t) => ({
      target: t.shown,
      format: t.config.format,
      sent: t.sent,
      dropped: { ...t.dropped },
      queued: t.queue.length,
    }));
  }

  /**
   * Stops taking notifications, gives those queued up to `graceMs` (default 2 s) to be delivered,
   * then abandons the rest (dropped, reason `shutdown`).
   */
  async close(graceMs = 2000): Promise<void> {
    this.#closed = true;
    const working = this.#targets.flatMap((t) => (t.working ? [t.working] : []));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(working), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const target of this.#targets) {
      target.abort.abort();
      await target.working;
      const left = target.queue.splice(0).length;
      if (left > 0) this.#drop(target, "shutdown", `the agent stopped with ${left} notification(s) undelivered`, left);
    }
  }

  #enqueue(target: Target, notification: Notification): void {
    const body = notificationBody(notification, target.config.format);
    target.queue.push({ notification, body, id: randomUUID(), queuedAt: this.#now(), attempts: 0 });
    if (target.queue.length > this.#queueSize) {
      // The oldest waiting one goes (not the one in flight): the newest events say the most.
      const index = target.working ? 1 : 0;
      target.queue.splice(index, 1);
      this.#drop(target, "overflow", `the queue of ${this.#queueSize} is full`);
    }
    target.working ??= this.#work(target).finally(() => (target.working = undefined));
  }

  async #work(target: Target): Promise<void> {
    while (target.queue.length > 0 && !target.abort.signal.aborted) {
      const item = target.queue[0]!;
      item.attempts++;
      const result = await this.#attempt(target, item);
      if (target.abort.signal.aborted) return;
      if (result.ok) {
        target.queue.shift();
        target.sent++;
        target.warned = false;
        continue;
      }
      this.#logger.debug(`notification to ${target.shown} failed (attempt ${item.attempts}): ${result.why}`);
      if (!result.retry) {
        target.queue.shift();
        this.#drop(target, "rejected", result.why);
        continue;
      }
      const backoff = Math.min(this.#retryDelayMs * 2 ** (item.attempts - 1), 30_000);
      const delay = result.afterMs ?? backoff;
      if (this.#now() + delay > item.queuedAt + this.#deadlineMs) {
        target.queue.shift();
        this.#drop(target, "deadline", `${result.why}; still failing after ${item.attempts} attempt(s)`);
        continue;
      }
      await sleep(delay, target.abort.signal);
    }
  }

  async #attempt(target: Target, item: Item): Promise<Attempt> {
    const { config } = target;
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": `bc-gitops/${VERSION}`,
      "x-bc-gitops-event": item.notification.kind,
      "x-bc-gitops-delivery": item.id,
    };
    if (config.secret) headers[NOTIFY_SIGNATURE_HEADER.toLowerCase()] = signWebhook(item.body, config.secret);
    const timeout = AbortSignal.timeout(this.#attemptTimeoutMs);
    try {
      const response = await fetch(config.url, {
        method: "POST",
        headers,
        body: item.body,
        redirect: "manual",
        signal: AbortSignal.any([timeout, target.abort.signal]),
      });
      await response.body?.cancel().catch(() => {});
      if (response.ok) return { ok: true };
      const retry =
        response.status === 408 || response.status === 425 || response.status === 429 || response.status >= 500;
      const after = retryAfterMs(response.headers.get("retry-after"), this.#now());
      return {
        ok: false,
        retry,
        why: `answered ${response.status}`,
        ...(retry && after !== undefined ? { afterMs: after } : {}),
      };
    } catch (error) {
      const why = timeout.aborted ? `no answer within ${this.#attemptTimeoutMs} ms` : redact(messageOf(error));
      return { ok: false, retry: true, why };
    }
  }

  #drop(target: Target, reason: DropReason, why: string, count = 1): void {
    target.dropped[reason] += count;
    if (target.warned) return;
    target.warned = true;
    this.#logger.warn(
      `notification to ${target.shown} dropped (${reason}): ${redact(why)}; further drops are counted in bc_gitops_notifications_dropped_total until one is delivered`,
    );
  }
}

/** The wait a `Retry-After` header asks for (seconds, or an HTTP date), in ms. */
function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
