/**
 * App logs (`GET /apps/:name/logs`, `bc-gitops logs`): the last lines of an app's log and, with
 * follow, each new line as it is written. A process app's log is its file
 * (`<local_path>/logs/<app>.log`, see `log-file.ts`); an embedded or worker app's is a bounded
 * in-memory ring of what it logged through `ctx.log` (and the agent's own lines about it), kept
 * by {@link AppLogs.tee}. Every line served passes the redaction rules, plus the app's own
 * secret-looking env values.
 */
import { open, stat } from "node:fs/promises";
import { sseResponse } from "./_sse.ts";
import { appLogPath } from "./log-file.ts";
import type { Logger } from "./logger.ts";
import { redact, secretValues } from "./redact.ts";
import type { AppState } from "./runtime.ts";

/** Default number of lines the ring of one embedded or worker app keeps. */
export const DEFAULT_RING_LINES = 1000;
/** Longest line kept or served (longer ones are cut, marked with `…`). */
export const MAX_LOG_LINE = 16 * 1024;
/** How often a followed log file is checked for new lines (ms). */
const FOLLOW_POLL_MS = 200;
/** Largest read of a followed file at once; the rest is read on the next round. */
const FOLLOW_CHUNK = 256 * 1024;

/** Where an app's log lines come from. */
export type LogSource = "file" | "memory";

/** The last lines of an app's log. */
export interface LogTail {
  app: string;
  source: LogSource;
  /** The log file (`source: "file"`). */
  path?: string;
  lines: string[];
}

type Level = keyof Logger;

/** One app's ring: the newest `capacity` lines and whoever follows them. */
class Ring {
  readonly lines: string[] = [];
  readonly listeners = new Set<(line: string) => void>();
  readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity);
    for (const listener of this.listeners) listener(line);
  }
}

/** Options of {@link AppLogs}. */
export interface AppLogsOptions {
  /** `<local_path>`: where process apps' log files are. */
  localPath: string;
  /** Lines each in-memory ring keeps (default {@link DEFAULT_RING_LINES}). */
  ringLines?: number;
  /** The clock (ms since the epoch), for the time stamp of ring lines. */
  now?: () => number;
}

/** The logs of every app: process apps' files, and the rings of the others. */
export class AppLogs {
  readonly localPath: string;
  readonly #ringLines: number;
  readonly #now: () => number;
  readonly #rings = new Map<string, Ring>();

  constructor(options: AppLogsOptions) {
    this.localPath = options.localPath;
    this.#ringLines = Math.max(1, options.ringLines ?? DEFAULT_RING_LINES);
    this.#now = options.now ?? Date.now;
  }

  /**
   * Keeps one line of `app`'s log, formatted like the lines of a process app's file:
   * `<ISO time> <message>`, with `[warn]`/`[error]` (`[debug]`) after the time.
   */
  record(app: string, level: Level, message: string): void {
    const mark = level === "info" ? "" : ` [${level}]`;
    const at = new Date(this.#now()).toISOString();
    const ring = this.#ring(app);
    for (const line of message.split(/\r\n|\r|\n/)) ring.push(`${at}${mark} ${cut(line)}`);
  }

  /**
   * A logger that forwards everything to `logger` and also keeps, in the ring of that app, each
   * line whose fields name an `app` (what apps log through `ctx.log`, and the runtime's lines
   * about them), debug lines excepted. A process app's output lines (fields with `stream`) are
   * left out: its file has them.
   */
  tee(logger: Logger): Logger {
    const line =
      (level: Level) =>
      (message: string, fields?: Record<string, unknown>): void => {
        logger[level](message, fields);
        const app = fields?.app;
        if (typeof app === "string" && level !== "debug" && fields?.stream === undefined)
          this.record(app, level, message);
      };
    return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
  }

  /** The file a process app writes its output to. */
  filePath(app: string): string {
    return appLogPath(this.localPath, app);
  }

  /** The last `lines` lines of `app`'s log (`process` isolation: its file; else its ring), unredacted. */
  async tail(app: string, isolation: string | undefined, lines: number): Promise<LogTail> {
    if (isolation === "process") {
      const path = this.filePath(app);
      return { app, source: "file", path, lines: (await readTail(path, lines)).lines };
    }
    const kept = this.#rings.get(app)?.lines ?? [];
    return { app, source: "memory", lines: lines <= 0 ? [] : kept.slice(-lines) };
  }

  /**
   * Calls `onLines` with the last `count` lines of `app`'s log, then with each batch of new lines
   * as they are written, until `signal` aborts; no line is skipped or repeated in between. A file
   * that is replaced (rotated) or shrinks is read again from its start.
   */
  async follow(
    app: string,
    isolation: string | undefined,
    count: number,
    onLines: (lines: string[]) => void,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    if (isolation === "process") {
      const path = this.filePath(app);
      const tail = await readTail(path, count);
      if (tail.lines.length > 0) onLines(tail.lines);
      await followFile(path, tail, onLines, signal);
      return;
    }
    const ring = this.#ring(app);
    const kept = count <= 0 ? [] : ring.lines.slice(-count);
    if (kept.length > 0) onLines(kept);
    const listener = (line: string) => onLines([line]);
    ring.listeners.add(listener);
    signal.addEventListener("abort", () => ring.listeners.delete(listener), { once: true });
  }

  #ring(app: string): Ring {
    let ring = this.#rings.get(app);
    if (!ring) this.#rings.set(app, (ring = new Ring(this.#ringLines)));
    return ring;
  }
}

function cut(line: string): string {
  return line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}…` : line;
}

/** Where a read of a log file ended: its inode and the offset read up to. */
interface FilePosition {
  ino: number | undefined;
  offset: number;
}

/**
 * The last `count` lines of the file at `path` (none when it does not exist), read backwards from
 * its end, and where that end was.
 */
export async function readTail(path: string, count: number): Promise<{ lines: string[] } & FilePosition> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return { lines: [], ino: undefined, offset: 0 };
    throw error;
  }
  try {
    const { size, ino } = await handle.stat();
    const chunks: Buffer[] = [];
    let position = size;
    let newlines = 0;
    // Read backwards until there are more line breaks than lines wanted (the last may end the file).
    while (count > 0 && position > 0 && newlines <= count) {
      const length = Math.min(64 * 1024, position);
      position -= length;
      const chunk = Buffer.alloc(length);
      await handle.read(chunk, 0, length, position);
      chunks.unshift(chunk);
      for (const byte of chunk) if (byte === 0x0a) newlines++;
    }
    const lines = Buffer.concat(chunks).toString("utf8").split("\n");
    // The text after the last line break is a line still being written: the follow reads it whole.
    const unfinished = lines.pop() ?? "";
    // Reading stopped inside a line: its start is not ours to show.
    if (position > 0) lines.shift();
    return {
      lines: lines.slice(-count).map((line) => cut(line.endsWith("\r") ? line.slice(0, -1) : line)),
      ino,
      offset: size - Buffer.byteLength(unfinished),
    };
  } finally {
    await handle.close();
  }
}

/**
 * Follows the file at `path` from `from`, polling: new whole lines go to `onLines`. When
 * the file is replaced (rotated: another inode) or shrinks, the new file is read from its start.
 */
async function followFile(
  path: string,
  from: FilePosition,
  onLines: (lines: string[]) => void,
  signal: AbortSignal,
): Promise<void> {
  let { ino, offset } = from;
  let partial = "";
  const decoder = new TextDecoder();
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, FOLLOW_POLL_MS);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
    if (signal.aborted) return;
    const now = await stat(path).catch(() => undefined);
    if (!now) continue;
    if (now.ino !== ino || now.size < offset) {
      ino = now.ino;
      offset = 0;
      partial = "";
    }
    if (now.size <= offset) continue;
    const length = Math.min(now.size - offset, FOLLOW_CHUNK);
    const buffer = Buffer.alloc(length);
    try {
      const handle = await open(path, "r");
      try {
        await handle.read(buffer, 0, length, offset);
      } finally {
        await handle.close();
      }
    } catch {
      continue;
    }
    offset += length;
    const parts = (partial + decoder.decode(buffer, { stream: true })).split("\n");
    partial = parts.pop() ?? "";
    if (partial.length > MAX_LOG_LINE) {
      parts.push(partial);
      partial = "";
    }
    if (parts.length > 0) onLines(parts.map((line) => cut(line.endsWith("\r") ? line.slice(0, -1) : line)));
  }
}

/** Options of {@link logsResponse}. */
export interface LogsRequest {
  request: Request;
  logs: AppLogs;
  /** The app (its `isolation` says where its log is). */
  app: Pick<AppState, "name" | "isolation">;
  /** Its env as its specs give it (desired, deployed): its secret-looking values are hidden in every line. */
  env: readonly (Record<string, unknown> | undefined)[];
  /** Ends a follow stream (the agent stops). */
  signal?: AbortSignal;
}

/** Lines served by default, and at most. */
export const DEFAULT_LOG_LINES = 100;
export const MAX_LOG_LINES = 10_000;

/**
 * The answer to `GET /apps/:name/logs?lines=N&follow=1`. Without `follow`: JSON
 * `{ app, source, path?, lines: [...] }` (the last `lines`, default 100, at most 10 000). With
 * `follow=1`: Server-Sent Events, one message per line (data: `{ "line": "…" }`), the last `lines`
 * first. Every line is redacted. A malformed `lines` is a 400.
 */
export async function logsResponse(options: LogsRequest): Promise<Response> {
  const params = new URL(options.request.url, "http://localhost").searchParams;
  const given = params.get("lines");
  if (given !== null && !/^\d{1,9}$/.test(given)) {
    const message = `lines: expected a number of lines (0 to ${MAX_LOG_LINES}), got ${JSON.stringify(given.slice(0, 40))}`;
    return jsonResponse({ error: message }, 400);
  }
  const count = Math.min(given === null ? DEFAULT_LOG_LINES : Number(given), MAX_LOG_LINES);
  const follow = ["1", "true", "yes"].includes((params.get("follow") ?? "").toLowerCase());
  const clean = cleaner(options.env.flatMap((env) => secretValues(env)));
  const { logs } = options;
  const { name, isolation } = options.app;
  if (!follow) {
    const tail = await logs.tail(name, isolation, count);
    return jsonResponse({ ...tail, ...(tail.path ? { path: redact(tail.path) } : {}), lines: tail.lines.map(clean) });
  }
  return sseResponse({
    ...(options.signal ? { signal: options.signal } : {}),
    start: (sink) => {
      const stop = new AbortController();
      const send = (lines: string[]) => {
        for (const line of lines) if (!sink.send({ data: JSON.stringify({ line: clean(line) }) })) stop.abort();
      };
      void logs.follow(name, isolation, count, send, stop.signal).catch(() => sink.close());
      return () => stop.abort();
    },
  });
}

function jsonResponse(body: unknown, status = 200): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/**
 * Redacts one log line: each of `secrets` wherever it appears (longest first, so a secret is hidden
 * whole even when a shorter registered one is part of it), then {@link redact}.
 */
export function cleaner(secrets: readonly string[]): (line: string) => string {
  const sorted = [...secrets].sort((a, b) => b.length - a.length);
  return (line) => {
    let out = line;
    for (const secret of sorted) if (out.includes(secret)) out = out.split(secret).join("***");
    return redact(out);
  };
}
