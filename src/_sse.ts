/**
 * Server-Sent Events on the server side: the frame format (`id:`, `event:`, `data:` lines, comments)
 * and a streaming `Response` that keeps the connection alive, ends when the client leaves or the
 * agent stops, and drops a client that stops reading instead of buffering for it without bound.
 * `GET /events` and `GET /apps/:name/logs?follow=1` both answer with {@link sseResponse}.
 */

/** One SSE message. `data` may hold newlines: each line becomes a `data:` line. */
export interface SseMessage {
  id?: string | number;
  /** The event type; absent: `message` (what `EventSource.onmessage` receives). */
  event?: string;
  data: string;
}

/** What a stream's producer writes to. */
export interface SseSink {
  /** Queues one message; false when the stream is closed (the client left, or was too slow). */
  send(message: SseMessage): boolean;
  /** Ends the stream; idempotent. */
  close(): void;
  /** True once the stream ended. */
  readonly closed: boolean;
}

/** Options of {@link sseResponse}. */
export interface SseOptions {
  /**
   * Ends the stream (the agent stops). A client that disconnects ends it too: every server cancels
   * the body then (`request.signal` is not used: on Deno, reading it prints a deprecation warning).
   */
  signal?: AbortSignal;
  /**
   * Interval of `: keep-alive` comments, in ms (default 5000). Bun's server closes a connection
   * after 10 s without a byte written, and proxies do much the same.
   */
  heartbeatMs?: number;
  /** Messages queued for a client that does not read, past which it is dropped (default 1000). */
  maxQueued?: number;
  /** The reconnection delay the client is told (`retry:`, ms; default 2000). */
  retryMs?: number;
  /**
   * Starts producing: called once the stream is open, with the sink. May return a clean-up run
   * when the stream ends (unsubscribe, stop polling).
   */
  start(sink: SseSink): void | (() => void) | Promise<void | (() => void)>;
}

/** The `Content-Type` and caching headers of an event stream. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-store",
  // nginx buffers responses unless told not to; an event stream must arrive as it is written.
  "x-accel-buffering": "no",
};

/**
 * One message as SSE text. A carriage return or a line break inside a field would end the field
 * (CR alone is a line terminator in SSE), so `id` and `event` lose them and `data` is split there.
 */
export function sseFrame(message: SseMessage): string {
  const oneLine = (value: string) => value.replace(/[\r\n]/g, " ");
  let frame = "";
  if (message.id !== undefined) frame += `id: ${oneLine(String(message.id))}\n`;
  if (message.event !== undefined) frame += `event: ${oneLine(message.event)}\n`;
  for (const line of message.data.split(/\r\n|\r|\n/)) frame += `data: ${line}\n`;
  return `${frame}\n`;
}

/**
 * A `200 text/event-stream` response fed by `options.start`. The stream opens with a `retry:` line,
 * writes a keep-alive comment every `heartbeatMs` (which also lets the `node:http` bridge notice a
 * client that left), and ends (running the producer's clean-up) when the client disconnects,
 * `options.signal` aborts, the producer closes it, or the client falls more
 * than `maxQueued` messages behind (it reconnects and, on `/events`, resumes from `Last-Event-ID`).
 */
export function sseResponse(options: SseOptions): Response {
  const encoder = new TextEncoder();
  const maxQueued = options.maxQueued ?? 1000;
  let closed = false;
  let cleanup: (() => void) | undefined;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const onAbort = () => sink.close();

  const write = (text: string): boolean => {
    if (closed) return false;
    if ((controller.desiredSize ?? 0) < -maxQueued) {
      sink.close();
      return false;
    }
    try {
      controller.enqueue(encoder.encode(text));
      return true;
    } catch {
      sink.close();
      return false;
    }
  };

  const sink: SseSink = {
    send: (message) => write(sseFrame(message)),
    close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      options.signal?.removeEventListener("abort", onAbort);
      try {
        cleanup?.();
      } catch {
        // A producer's clean-up failing must not keep the stream open.
      }
      try {
        controller.close();
      } catch {
        // Already closed or cancelled by the client.
      }
    },
    get closed() {
      return closed;
    },
  };

  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      if (options.signal?.aborted) {
        closed = true;
        c.close();
        return;
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });
      write(`retry: ${options.retryMs ?? 2000}\n\n`);
      heartbeat = setInterval(() => write(": keep-alive\n\n"), options.heartbeatMs ?? 5000);
      (heartbeat as { unref?: () => void }).unref?.();
      void Promise.resolve()
        .then(() => options.start(sink))
        .then(
          (done) => {
            if (typeof done !== "function") return;
            if (closed) done();
            else cleanup = done;
          },
          () => sink.close(),
        );
    },
    cancel() {
      sink.close();
    },
  });
  return new Response(body, { headers: { ...SSE_HEADERS } });
}
