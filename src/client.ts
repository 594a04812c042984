/**
 * A small client of the control API for the CLI (`status`, `reconcile`, `reload`, `plan`): one
 * request, JSON in and out, errors that say what to check; and {@link followStream}, a reader of
 * its Server-Sent Events (`events`, `logs -f`), reconnecting to `/events` as a browser would.
 */
import { GitopsError } from "./errors.ts";
import { redact } from "./redact.ts";

/** Where the agent's control API is and how to authenticate. */
export interface ClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:9477`. */
  url: string;
  token?: string;
  /** Deadline of the request (default 120 s: a reconcile can take a while). */
  timeoutMs?: number;
}

/** The default control API URL: the agent's default `listen`. */
export const DEFAULT_API_URL = "http://127.0.0.1:9477";

/** The control API URL for a `listen` setting (`127.0.0.1:9477`, `:9477`, `0.0.0.0:80`…). */
export function apiUrlFor(listen: string | undefined): string {
  if (!listen || listen === "off") return DEFAULT_API_URL;
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen);
  if (!match) return DEFAULT_API_URL;
  const host = match[1] ? `[${match[1]}]` : match[2] && match[2] !== "0.0.0.0" ? match[2] : "127.0.0.1";
  return `http://${host === "[::]" ? "[::1]" : host}:${match[3]}`;
}

/** Calls the control API; returns the parsed JSON body. Throws a `GitopsError` with a message a person can act on. */
export async function apiRequest<T = unknown>(
  options: ClientOptions,
  method: "GET" | "POST",
  path: string,
): Promise<T> {
  const url = new URL(path, options.url.endsWith("/") ? options.url : `${options.url}/`);
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { accept: "application/json", ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
      signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
    });
  } catch (error) {
    throw unreachable(options, error);
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  if (!response.ok) {
    const message =
      (body as { error?: string } | undefined)?.error ?? (typeof body === "string" ? body : response.statusText);
    const hint = response.status === 401 ? " (pass --token or set BC_GITOPS_TOKEN)" : "";
    throw new GitopsError(`${method} ${url.pathname}: ${response.status} ${message}${hint}`, {
      code: response.status === 404 ? "E_NOT_FOUND" : "E_RUNTIME",
      retry: "stalled",
      details: { status: response.status },
    });
  }
  return body as T;
}

/** One Server-Sent Events message. */
export interface StreamMessage {
  id?: string;
  /** `message` unless the server named another type (`gap`). */
  event: string;
  data: string;
}

/** Options of {@link followStream}. */
export interface FollowOptions {
  /** Sent as `Last-Event-ID`: the server resumes after it. */
  lastEventId?: string;
  /** Ends the stream. */
  signal?: AbortSignal;
}

/**
 * Opens the event stream at `path` of the control API and calls `onMessage` with each message
 * until the server ends it (resolves) or `signal` aborts (resolves). Throws a `GitopsError` when the
 * agent cannot be reached or refuses (401 says to pass the token), like {@link apiRequest}.
 */
export async function followStream(
  options: ClientOptions,
  path: string,
  onMessage: (message: StreamMessage) => void,
  follow: FollowOptions = {},
): Promise<void> {
  const url = new URL(path, options.url.endsWith("/") ? options.url : `${options.url}/`);
  let response: Response;
  try {
    response = await fetch(url, {
      headers: {
        accept: "text/event-stream",
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        ...(follow.lastEventId ? { "last-event-id": follow.lastEventId } : {}),
      },
      ...(follow.signal ? { signal: follow.signal } : {}),
    });
  } catch (error) {
    if (follow.signal?.aborted) return;
    throw unreachable(options, error);
  }
  if (!response.ok) {
    const text = await response.text();
    let message = response.statusText;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? message;
    } catch {
      message = text || message;
    }
    const hint = response.status === 401 ? " (pass --token or set BC_GITOPS_TOKEN)" : "";
    throw new GitopsError(`GET ${url.pathname}: ${response.status} ${message}${hint}`, {
      code: response.status === 404 ? "E_NOT_FOUND" : "E_RUNTIME",
      retry: "stalled",
      details: { status: response.status },
    });
  }
  if (!response.body) return;
  const decoder = new TextDecoder();
  let buffer = "";
  let message: { id?: string; event?: string; data: string[] } = { data: [] };
  const line = (text: string) => {
    if (text === "") {
      if (message.data.length > 0)
        onMessage({
          ...(message.id !== undefined ? { id: message.id } : {}),
          event: message.event ?? "message",
          data: message.data.join("\n"),
        });
      message = { data: [] };
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    const value = colon < 0 ? "" : text.slice(colon + 1).replace(/^ /, "");
    if (field === "data") message.data.push(value);
    else if (field === "id") message.id = value;
    else if (field === "event") message.event = value;
  };
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? "";
      for (const text of lines) line(text);
    }
  } catch (error) {
    if (follow.signal?.aborted) return;
    throw new GitopsError(`the stream from ${redact(options.url)} broke: ${(error as Error).message}`, {
      code: "E_RUNTIME",
      retry: "backoff",
      cause: error,
    });
  }
}

/** What {@link followEvents} reports. */
export interface EventsFollower {
  /** Past events to get first (`?backlog=N`). */
  backlog: number;
  /** Each event, as the JSON text the stream carries. */
  onEvent(data: string): void;
  /** Events the agent could not give (`null`: it restarted). */
  onGap(missed: number | null): void;
  /** The stream ended or broke; a new connection is tried after `retryMs`. */
  onReconnect(): void;
  /** Ends the follow. */
  signal?: AbortSignal;
  /** Wait before reconnecting (default 2000 ms). */
  retryMs?: number;
}

/**
 * Follows `GET /events` until `follower.signal` aborts: the recent events, then each new one. When
 * the stream ends or breaks (the agent restarts), reconnects with `Last-Event-ID`, so nothing is
 * missed or repeated. Throws when the first connection fails (no agent there, 401…).
 */
export async function followEvents(options: ClientOptions, follower: EventsFollower): Promise<void> {
  let lastEventId: string | undefined;
  let connected = false;
  while (!follower.signal?.aborted) {
    try {
      await followStream(
        options,
        `/events?backlog=${follower.backlog}`,
        (message) => {
          connected = true;
          if (message.id) lastEventId = message.id;
          if (message.event === "gap") follower.onGap((JSON.parse(message.data) as { missed: number | null }).missed);
          else if (message.event === "message") follower.onEvent(message.data);
        },
        { ...(lastEventId ? { lastEventId } : {}), ...(follower.signal ? { signal: follower.signal } : {}) },
      );
    } catch (error) {
      if (!connected) throw error;
    }
    if (follower.signal?.aborted) return;
    follower.onReconnect();
    await new Promise((resolve) => setTimeout(resolve, follower.retryMs ?? 2000));
  }
}

function unreachable(options: ClientOptions, error: unknown): GitopsError {
  const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
  return new GitopsError(
    `cannot reach the agent at ${redact(options.url)} (${reason}): is \`bc-gitops run\` running there? (set --url)`,
    { code: "E_RUNTIME", retry: "backoff", cause: error },
  );
}
