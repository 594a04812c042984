/**
 * Telemetry events named after bc_gitops's (`bc_gitops:<area>:<phase>`), delivered to
 * `agent.on(name, handler)` subscribers and on `node:diagnostics_channel` channels of the same name.
 */
import diagnostics from "node:diagnostics_channel";

/** Every event name bc-gitops emits. */
export const EVENT_NAMES = [
  "bc_gitops:reconcile:start",
  "bc_gitops:reconcile:stop",
  "bc_gitops:reconcile:error",
  "bc_gitops:deploy:start",
  "bc_gitops:deploy:stop",
  "bc_gitops:deploy:error",
  "bc_gitops:upgrade:start",
  "bc_gitops:upgrade:stop",
  "bc_gitops:upgrade:error",
  "bc_gitops:reconfigure:start",
  "bc_gitops:reconfigure:stop",
  "bc_gitops:reconfigure:error",
  "bc_gitops:remove:start",
  "bc_gitops:remove:stop",
  "bc_gitops:remove:error",
  "bc_gitops:hot_reload:start",
  "bc_gitops:hot_reload:stop",
  "bc_gitops:hot_reload:error",
  "bc_gitops:restart:start",
  "bc_gitops:restart:stop",
  "bc_gitops:restart:error",
  "bc_gitops:git:pull",
  "bc_gitops:git:clone_start",
  "bc_gitops:git:clone_stop",
  "bc_gitops:deps:start",
  "bc_gitops:deps:stop",
  "bc_gitops:code:load",
  "bc_gitops:code:purge",
  "bc_gitops:process:spawn",
  "bc_gitops:process:exit",
  "bc_gitops:parse:start",
  "bc_gitops:parse:stop",
  "bc_gitops:health:check",
  "bc_gitops:health:change",
] as const;

/** A telemetry event name. */
export type EventName = (typeof EVENT_NAMES)[number];

/**
 * One diagnostics channel per event name, held for the life of the process. `diagnostics_channel`
 * keeps channels weakly: on Bun a channel that `diagnostics.subscribe(name, fn)` created can be
 * collected before the agent publishes, and the channel it then gets has no subscribers.
 */
const CHANNELS: ReadonlyMap<string, diagnostics.Channel> = new Map(
  EVENT_NAMES.map((name) => [name, diagnostics.channel(name)]),
);

/** One telemetry event. Durations are milliseconds. */
export interface TelemetryEvent {
  name: EventName;
  measurements: { duration_ms?: number; [key: string]: number | undefined };
  metadata: {
    app?: string;
    version?: string;
    from_version?: string;
    to_version?: string;
    commit?: string;
    error?: string;
    [key: string]: unknown;
  };
}

/** A subscriber callback (may be async; its errors are ignored). */
export type EventHandler = (event: TelemetryEvent) => unknown;

/** The function components call to emit an event (a narrow seam, easy to fake in tests). */
export type Emit = (
  name: EventName,
  measurements?: TelemetryEvent["measurements"],
  metadata?: TelemetryEvent["metadata"],
) => void;

/** An emitter does nothing when nobody listens. */
export const noEmit: Emit = () => {};

/**
 * Fan-out of events to subscribers and diagnostics channels. A throwing subscriber never breaks
 * the emitter or the other subscribers.
 */
export class Telemetry {
  readonly #handlers = new Map<string, Set<EventHandler>>();
  readonly #context: (() => TelemetryEvent["metadata"]) | undefined;

  /** @param options.context metadata every event carries (the agent's host and labels); an event's own keys win. */
  constructor(options: { context?: () => TelemetryEvent["metadata"] } = {}) {
    this.#context = options.context;
  }

  /** Subscribes to one event name, or `"*"` for all; returns the unsubscribe function. */
  on(name: EventName | "*", handler: EventHandler): () => void {
    let set = this.#handlers.get(name);
    if (!set) this.#handlers.set(name, (set = new Set()));
    set.add(handler);
    return () => void set.delete(handler);
  }

  /** Emits one event; bound, so it can be passed around as an {@link Emit}. */
  readonly emit: Emit = (name, measurements = {}, metadata = {}) => {
    const event: TelemetryEvent = {
      name,
      measurements,
      metadata: this.#context ? { ...this.#context(), ...metadata } : metadata,
    };
    for (const key of [name, "*"]) {
      for (const handler of this.#handlers.get(key) ?? []) {
        try {
          // An async subscriber's rejection is swallowed too: it must not become an unhandled rejection.
          const result = handler(event) as unknown;
          if (result && typeof (result as PromiseLike<unknown>).then === "function")
            (result as Promise<unknown>).then(undefined, () => {});
        } catch {
          // A subscriber's bug must not break reconciliation.
        }
      }
    }
    const channel = CHANNELS.get(name) ?? diagnostics.channel(name);
    if (channel.hasSubscribers) channel.publish(event);
  };
}
