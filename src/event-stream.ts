/**
 * The live event stream (`GET /events`): every telemetry event, numbered and kept in a bounded
 * in-memory history, served as Server-Sent Events with `id:` so a client that reconnects with
 * `Last-Event-ID` resumes where it left off. Events are redacted once, when they are recorded.
 */
import { sseResponse } from "./_sse.ts";
import { redact, redactValue } from "./redact.ts";
import type { EventName, TelemetryEvent } from "./telemetry.ts";

/** The app actions (SPEC section 4); an event of one of these areas names its `action`. */
const ACTIONS: ReadonlySet<string> = new Set(["deploy", "upgrade", "reconfigure", "remove", "hot_reload", "restart"]);

/** Default number of events the history keeps. */
export const DEFAULT_EVENT_HISTORY = 1000;

/** One event as the stream carries it (the `data:` of each message, JSON). */
export interface StreamEvent {
  /** Increasing from 1 for the life of the agent (the SSE `id:` is `<run>.<id>`). */
  id: number;
  /** ISO-8601 time the event was emitted. */
  at: string;
  /** The host the agent runs on. */
  host: string;
  /** `bc_gitops:<area>:<phase>`. */
  name: EventName;
  area: string;
  phase: string;
  app?: string;
  /** The app action (`deploy`, `upgrade`, …) for the events of one. */
  action?: string;
  duration_ms?: number;
  error?: string;
  measurements: TelemetryEvent["measurements"];
  metadata: TelemetryEvent["metadata"];
}

/** Options of {@link EventStream}. */
export interface EventStreamOptions {
  /** Reported in each event's `host`. */
  host: string;
  /** Events kept for clients that resume (default {@link DEFAULT_EVENT_HISTORY}). */
  capacity?: number;
  /** The clock (ms since the epoch). */
  now?: () => number;
  /** Names this agent's run in the SSE ids (default: random), so an id of an earlier run is told apart. */
  run?: string;
}

/** What a client resuming after `Last-Event-ID` gets from the history. */
export interface Resume {
  events: StreamEvent[];
  /**
   * Events the client cannot get: a count when the history no longer holds them, `null` when the
   * id is unknown here (from before the agent restarted). Absent when nothing was missed.
   */
  missed?: number | null;
}

/**
 * The bounded history and the live fan-out. Feed it with {@link EventStream.observe} (e.g.
 * `agent.on("*", stream.observe)`); {@link EventStream.response} answers `GET /events`.
 */
export class EventStream {
  readonly #host: string;
  readonly #capacity: number;
  readonly #now: () => number;
  readonly #history: StreamEvent[] = [];
  readonly #listeners = new Set<(event: StreamEvent) => void>();
  #lastId = 0;
  /** This run's name: SSE ids are `<run>.<id>`, and a `Last-Event-ID` of another run resumes nothing. */
  readonly run: string;

  constructor(options: EventStreamOptions) {
    this.run = options.run ?? Math.random().toString(36).slice(2, 8);
    this.#host = options.host;
    this.#capacity = Math.max(1, options.capacity ?? DEFAULT_EVENT_HISTORY);
    this.#now = options.now ?? Date.now;
  }

  /** The id of the newest event (0 before the first). */
  get lastId(): number {
    return this.#lastId;
  }

  /** Records one telemetry event and passes it to every open stream. Bound, so it can be a subscriber. */
  readonly observe = (event: TelemetryEvent): void => {
    const [, area = "", phase = ""] = event.name.split(":");
    const metadata = redactValue(event.metadata) as TelemetryEvent["metadata"];
    const duration = event.measurements.duration_ms;
    const recorded: StreamEvent = {
      id: ++this.#lastId,
      at: new Date(this.#now()).toISOString(),
      host: this.#host,
      name: event.name,
      area,
      phase,
      ...(typeof event.metadata.app === "string" ? { app: event.metadata.app } : {}),
      ...(ACTIONS.has(area) ? { action: area } : {}),
      ...(typeof duration === "number" && Number.isFinite(duration) ? { duration_ms: Math.round(duration) } : {}),
      ...(event.metadata.error !== undefined ? { error: redact(String(event.metadata.error)) } : {}),
      measurements: { ...event.measurements },
      metadata,
    };
    this.#history.push(recorded);
    if (this.#history.length > this.#capacity) this.#history.splice(0, this.#history.length - this.#capacity);
    for (const listener of this.#listeners) listener(recorded);
  };

  /**
   * The events after `lastEventId` still in the history. Without an id (a new client): the newest
   * `backlog` events (default: all kept). An id of another run (`otherRun`; or past the newest one)
   * was given by the agent before it restarted: everything kept, `missed: null`.
   */
  since(lastEventId?: number, backlog?: number, otherRun = false): Resume {
    const oldest = this.#history[0]?.id ?? this.#lastId + 1;
    if (otherRun) return { events: [...this.#history], missed: null };
    if (lastEventId === undefined) {
      const count = backlog === undefined ? this.#history.length : Math.max(0, Math.floor(backlog));
      return { events: count === 0 ? [] : this.#history.slice(-count) };
    }
    if (lastEventId > this.#lastId) return { events: [...this.#history], missed: null };
    const events = this.#history.filter((event) => event.id > lastEventId);
    const missed = oldest - lastEventId - 1;
    return missed > 0 ? { events, missed } : { events };
  }

  /** Calls `listener` with each new event until the returned function is called. */
  subscribe(listener: (event: StreamEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /**
   * The answer to `GET /events`: the history after the request's `Last-Event-ID` (or, without one,
   * the newest `?backlog=N` events, default all kept), then each new event as it happens. Events
   * the client cannot get any more are announced first as an `event: gap` message whose data is
   * `{ "missed": N }` (`null`: unknown, the agent restarted). Each message's `id:` is
   * `<run>.<id>`; a bare number is taken as an id of this run.
   */
  response(request: Request, signal?: AbortSignal): Response {
    const header = /^(?:([0-9a-z]{1,16})\.)?(\d{1,15})$/.exec(request.headers.get("last-event-id")?.trim() ?? "");
    const otherRun = header?.[1] !== undefined && header[1] !== this.run;
    const lastEventId = header && !otherRun ? Number(header[2]) : undefined;
    const param = new URL(request.url, "http://localhost").searchParams.get("backlog");
    const backlog = param !== null && /^\d{1,9}$/.test(param) ? Number(param) : undefined;
    return sseResponse({
      ...(signal ? { signal } : {}),
      start: (sink) => {
        // Subscribe before reading the history, so nothing emitted in between is lost or doubled.
        const pending: StreamEvent[] = [];
        let live = false;
        let sent = lastEventId ?? 0;
        const deliver = (event: StreamEvent) => {
          if (event.id <= sent) return;
          sent = event.id;
          sink.send({ id: `${this.run}.${event.id}`, data: JSON.stringify(event) });
        };
        const unsubscribe = this.subscribe((event) => (live ? deliver(event) : pending.push(event)));
        const resume = this.since(lastEventId, backlog, otherRun);
        if (resume.missed !== undefined) sink.send({ event: "gap", data: JSON.stringify({ missed: resume.missed }) });
        if (resume.missed === null) sent = 0;
        for (const event of resume.events) deliver(event);
        for (const event of pending) deliver(event);
        live = true;
        return unsubscribe;
      },
    });
  }
}
