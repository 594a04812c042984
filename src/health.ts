/**
 * Health checks (SPEC section 2, `health`): probes (`http`, `tcp`, `module`; `none` needs none)
 * and the monitor that runs one on its interval and turns results into an app's health: one
 * success is `healthy`, `threshold` failures in a row are `unhealthy`, before either it is `unknown`.
 */
import { request } from "node:http";
import { connect } from "node:net";
import { messageOf } from "./errors.ts";
import { silentLogger, type Logger } from "./logger.ts";
import type { AppHealth } from "./runtime.ts";
import type { AppSpec } from "./spec.ts";
import { noEmit, type Emit } from "./telemetry.ts";

/** One health check: resolves when healthy, rejects with the reason when not. Must stop when `signal` aborts. */
export type Probe = (signal: AbortSignal) => Promise<void>;

/** `GET http://host:port/path`: healthy on a 2xx answer. No keep-alive, so no socket outlives the check. */
export function httpProbe(target: { host: string; port: number; path: string }): Probe {
  return (signal) =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: target.host,
          port: target.port,
          path: target.path,
          method: "GET",
          agent: false,
          headers: { connection: "close", "user-agent": "bc-gitops-health" },
          signal,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          res.resume(); // drain the body so the socket closes
          res.once("end", () =>
            status >= 200 && status < 300 ? resolve() : reject(new Error(`GET ${target.path} answered ${status}`)),
          );
          res.once("error", reject);
        },
      );
      req.once("error", (error) =>
        reject(new Error(`GET http://${hostPort(target)}${target.path}: ${messageOf(error)}`)),
      );
      req.end();
    });
}

/** Healthy when a TCP connection to `host:port` opens (it is closed at once). */
export function tcpProbe(target: { host: string; port: number }): Probe {
  return (signal) =>
    new Promise<void>((resolve, reject) => {
      const socket = connect({ host: target.host, port: target.port });
      const onAbort = () => socket.destroy(new Error("aborted"));
      signal.addEventListener("abort", onAbort, { once: true });
      const settle = (error?: Error) => {
        signal.removeEventListener("abort", onAbort);
        socket.destroy();
        if (error) reject(new Error(`connecting to ${hostPort(target)}: ${error.message}`));
        else resolve();
      };
      socket.once("connect", () => settle());
      socket.once("error", settle);
    });
}

/** Calls the app's own check (the `health` export): throwing or returning `false` is unhealthy. */
export function moduleProbe(check: () => unknown): Probe {
  return async () => {
    if ((await check()) === false) throw new Error("health() returned false");
  };
}

/**
 * The probe `health` describes (`undefined` for `none`): `http`/`tcp` go to `target.host` and
 * `target.port` (where the app is checked: `probeAddress` of `_address.ts`), `module` calls
 * `target.module` (required for that type).
 */
export function probeFor(
  health: AppSpec["health"],
  target: { host: string; port: number; module?: () => unknown },
): Probe | undefined {
  const { host, port } = target;
  switch (health.type) {
    case "http":
      return httpProbe({ host, port, path: health.path ?? "/" });
    case "tcp":
      return tcpProbe({ host, port });
    case "module":
      if (!target.module) throw new Error("health.type module needs the app to export health(instance, ctx)");
      return moduleProbe(target.module);
    case "none":
      return undefined;
  }
}

/** Options of {@link HealthMonitor}. */
export interface HealthMonitorOptions {
  app: string;
  probe: Probe;
  /** Pause between the end of one scheduled check and the start of the next (ms). */
  intervalMs: number;
  /** Deadline of one check (ms); a check that takes longer failed. */
  timeoutMs: number;
  /** Failures in a row that make the app `unhealthy` (default 3). */
  threshold?: number;
  /** Receives `bc_gitops:health:check` per check and `bc_gitops:health:change` per transition. */
  emit?: Emit;
  logger?: Logger;
  /** Called on every transition, after the event. */
  onChange?: (from: AppHealth, to: AppHealth) => void;
}

/** Runs one app's probe on its interval and tracks its health. Starts idle: call {@link start}. */
export class HealthMonitor {
  readonly #o: Required<Omit<HealthMonitorOptions, "onChange">> & Pick<HealthMonitorOptions, "onChange">;
  #health: AppHealth = "unknown";
  #failures = 0;
  #lastError: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<AppHealth> | undefined;
  #started = false;
  #stopped = false;

  constructor(options: HealthMonitorOptions) {
    this.#o = { threshold: 3, emit: noEmit, logger: silentLogger, ...options };
  }

  /** The current health. */
  get health(): AppHealth {
    return this.#health;
  }

  /** Why the last check failed; `undefined` after a success. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Schedules checks every `intervalMs`, the first one `delayMs` from now (default: at once). */
  start(delayMs = 0): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#schedule(delayMs);
  }

  /** Runs a check now (or joins the one running) and resolves with the health after it. */
  checkNow(): Promise<AppHealth> {
    if (this.#stopped) return Promise.resolve(this.#health);
    this.#running ??= this.#check().finally(() => (this.#running = undefined));
    return this.#running;
  }

  /** Stops checking; a check in flight finishes but changes nothing. Idempotent. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.checkNow().then(() => this.#schedule(this.#o.intervalMs));
    }, delayMs);
  }

  async #check(): Promise<AppHealth> {
    const { app, probe, timeoutMs, emit } = this.#o;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`no answer within ${timeoutMs} ms`));
        controller.abort();
      }, timeoutMs);
    });
    const started = performance.now();
    let error: string | undefined;
    try {
      await Promise.race([probe(controller.signal), deadline]);
    } catch (failure) {
      error = messageOf(failure);
    } finally {
      clearTimeout(timer);
    }
    if (this.#stopped) return this.#health;
    emit(
      "bc_gitops:health:check",
      { duration_ms: performance.now() - started },
      { app, ok: error === undefined, ...(error ? { error } : {}) },
    );
    this.#lastError = error;
    if (error === undefined) {
      this.#failures = 0;
      this.#transition("healthy");
    } else {
      this.#failures++;
      this.#o.logger.debug(`health check of ${app} failed (${this.#failures} in a row): ${error}`);
      if (this.#failures >= this.#o.threshold) this.#transition("unhealthy", error);
    }
    return this.#health;
  }

  #transition(to: AppHealth, error?: string): void {
    const from = this.#health;
    if (from === to) return;
    this.#health = to;
    this.#o.emit("bc_gitops:health:change", {}, { app: this.#o.app, from, to, ...(error ? { error } : {}) });
    if (to === "unhealthy") this.#o.logger.warn(`${this.#o.app} is unhealthy: ${error ?? "checks failed"}`);
    else this.#o.logger.info(`${this.#o.app} is ${to}`);
    this.#o.onChange?.(from, to);
  }
}

function hostPort(target: { host: string; port: number }): string {
  return target.host.includes(":") ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}
