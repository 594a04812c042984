/**
 * The script every `worker` isolation Worker runs (internal; started by `./worker.ts`): it imports
 * one revision of one app into this Worker's own module graph and runs it on the agent's
 * messages: lifecycle calls (`start`, `stop`, `reconfigure`, `health`, `memory`) and, for a fetch
 * app, the requests the agent's listener forwards (the response streams back in chunks).
 * Terminating the Worker frees the whole graph. Its console is the app's: lines go to the parent as
 * log messages. Imported by the parent only for its types.
 */
import { format } from "node:util";
import { getHeapStatistics } from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import { checkAppModule, type AppContext, type AppModule, type EnvChange } from "../app-context.ts";
import type { Logger } from "../logger.ts";

/** What the parent hands a new Worker (`workerData`). */
export interface HostData {
  /** `file:` URL of the entry module (in the revision's own directory). */
  entry: string;
  /** The entry's path, for messages. */
  entryPath: string;
  ctx: { name: string; version: string; revision: string; env: Record<string, unknown>; dataDir: string };
  /** `limits.memory_mb`: past it the Worker throws (and so crashes); checked every {@link HostData.watchMs}. */
  memoryLimitMb?: number;
  watchMs: number;
}

/** An error as it crosses the thread boundary. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
}

/** Lifecycle calls the parent makes. */
export type CallOp = "start" | "stop" | "reconfigure" | "health" | "memory";

/** Parent -> Worker. */
export type ToHost =
  | { type: "call"; id: number; op: CallOp; arg?: EnvChange }
  | { type: "fetch"; id: number; method: string; url: string; headers: [string, string][]; body: ArrayBuffer | null };

/** Worker -> parent. */
export type FromHost =
  | {
      type: "ready";
      kind: AppModule["kind"];
      hooks: { stop: boolean; reconfigure: boolean; health: boolean; hotReload: boolean };
    }
  | { type: "fatal"; stage: "load" | "check"; error: WireError }
  | { type: "reply"; id: number; ok: true; value: unknown }
  | { type: "reply"; id: number; ok: false; error: WireError }
  | { type: "log"; level: keyof Logger; message: string }
  | { type: "head"; id: number; status: number; statusText: string; headers: [string, string][]; body: boolean }
  | { type: "chunk"; id: number; bytes: ArrayBuffer }
  | { type: "end"; id: number }
  | { type: "fail"; id: number; error: WireError };

/** Turns anything thrown into a {@link WireError}. */
function toWire(error: unknown): WireError {
  if (error instanceof Error)
    return { name: error.name, message: error.message, ...(error.stack ? { stack: error.stack } : {}) };
  return { name: "Error", message: typeof error === "string" ? error : (JSON.stringify(error) ?? String(error)) };
}

if (parentPort) void main(parentPort, workerData as HostData);

async function main(port: NonNullable<typeof parentPort>, data: HostData): Promise<void> {
  const post = (message: FromHost, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
  const log = (level: keyof Logger) => (message: string) => post({ type: "log", level, message });
  // This Worker runs one app only, so what it prints is the app's: its console goes where ctx.log
  // goes (the agent's log, tagged with the app, and the app's log that `bc-gitops logs` reads).
  const consoleTo =
    (level: keyof Logger) =>
    (...args: unknown[]) =>
      log(level)(format(...args));
  Object.assign(console, {
    log: consoleTo("info"),
    info: consoleTo("info"),
    debug: consoleTo("debug"),
    warn: consoleTo("warn"),
    error: consoleTo("error"),
  });
  let controller = new AbortController();
  const ctx: AppContext = {
    ...data.ctx,
    log: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
    signal: controller.signal,
  };
  let mod: AppModule;
  try {
    const exports = (await import(data.entry)) as Record<string, unknown>;
    try {
      mod = checkAppModule(exports, data.entryPath);
    } catch (error) {
      post({ type: "fatal", stage: "check", error: toWire(error) });
      return;
    }
  } catch (error) {
    post({ type: "fatal", stage: "load", error: toWire(error) });
    return;
  }
  if (data.memoryLimitMb !== undefined) watchMemory(data.memoryLimitMb, data.watchMs);
  let instance: unknown;

  const call = async (op: CallOp, arg?: EnvChange): Promise<unknown> => {
    switch (op) {
      case "start": {
        if (controller.signal.aborted) ctx.signal = (controller = new AbortController()).signal;
        instance = await mod.start!(ctx);
        const reported = (instance as { port?: unknown } | null | undefined)?.port;
        return typeof reported === "number" ? reported : undefined;
      }
      case "stop":
        try {
          if (mod.stop) await mod.stop(instance, ctx);
        } finally {
          controller.abort();
        }
        return undefined;
      case "reconfigure": {
        if (!mod.reconfigure || !arg) return false;
        const before = ctx.env;
        ctx.env = arg.env;
        try {
          await mod.reconfigure(instance, arg, ctx);
        } catch (error) {
          ctx.env = before;
          throw error;
        }
        return true;
      }
      case "health":
        return mod.health ? await mod.health(instance, ctx) : undefined;
      case "memory":
        return getHeapStatistics().used_heap_size;
    }
  };

  const serve = async (message: Extract<ToHost, { type: "fetch" }>): Promise<void> => {
    const { id } = message;
    let response: unknown;
    try {
      const request = new Request(message.url, {
        method: message.method,
        headers: message.headers,
        ...(message.body ? { body: message.body } : {}),
      });
      response = await mod.handler!.fetch(request, ctx);
      if (!(response instanceof Response))
        throw new TypeError(`the app's fetch() returned ${typeof response}, not a Response`);
    } catch (error) {
      post({ type: "fail", id, error: toWire(error) });
      return;
    }
    const hasBody = response.body !== null && message.method !== "HEAD";
    post({
      type: "head",
      id,
      status: response.status,
      statusText: response.statusText,
      headers: [...response.headers],
      body: hasBody,
    });
    if (!hasBody) return;
    const reader = response.body!.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const bytes = new Uint8Array(value).buffer; // a copy we own, so it can be transferred
        post({ type: "chunk", id, bytes }, [bytes]);
      }
      post({ type: "end", id });
    } catch (error) {
      post({ type: "fail", id, error: toWire(error) });
    }
  };

  port.on("message", (message: ToHost) => {
    if (message.type === "fetch") {
      void serve(message);
      return;
    }
    call(message.op, message.arg).then(
      (value) => post({ type: "reply", id: message.id, ok: true, value }),
      (error: unknown) => post({ type: "reply", id: message.id, ok: false, error: toWire(error) }),
    );
  });
  post({
    type: "ready",
    kind: mod.kind,
    hooks: { stop: !!mod.stop, reconfigure: !!mod.reconfigure, health: !!mod.health, hotReload: !!mod.hotReload },
  });
}

/**
 * A soft heap limit: Bun ignores `resourceLimits`, and Deno stalls the Worker without an error or
 * an exit when it hits them, so the Worker checks its own heap and throws (which ends it and
 * reports the error to the agent) once it is over the limit.
 */
function watchMemory(limitMb: number, everyMs: number): void {
  const timer = setInterval(() => {
    const usedMb = getHeapStatistics().used_heap_size / 1024 / 1024;
    if (usedMb <= limitMb) return;
    clearInterval(timer);
    throw new Error(`the worker's heap (${Math.round(usedMb)} MB) exceeds limits.memory_mb (${limitMb} MB)`);
  }, everyMs);
  timer.unref?.();
}
