/**
 * The rules the drivers share, written once so they cannot drift: the listener of an in-process
 * fetch app (at the address `_address.ts` gives) and when a change moves it, the errors for a failed start, a reload of a stopping
 * instance and a reload that changes the app's kind, the count of requests a swapped-out handler
 * still runs, and the restart-style swap ("stop the old one, start the new one, start the old one
 * again when the new one does not start") that every driver and the runtime's hot reload use.
 */
import { bindHost, listenPort } from "../_address.ts";
import { GitopsError, messageOf } from "../errors.ts";
import { listen, type FetchHandler, type HttpListener } from "../http-server.ts";
import { appLogger } from "../logger.ts";
import type { AppSpec } from "../spec.ts";
import type { DriverStartOptions } from "./driver.ts";

/**
 * The agent-owned listener of a fetch app started with `options`: on its env's address, logging
 * what `handler` throws under the app's name, and closing within the stop timeout (5 s at most).
 */
export function listenFor(options: DriverStartOptions, handler: FetchHandler): Promise<HttpListener> {
  const { spec, prepared } = options;
  const log = appLogger(options.logger, spec.name);
  return listen({
    host: bindHost(spec.env),
    port: listenPort(spec.env, prepared.entry),
    handler,
    onError: (error) => log.error(`fetch failed: ${stackOf(error)}`),
    closeTimeoutMs: Math.min(options.stopTimeoutMs, 5000),
  });
}

/** True when env `to` puts a fetch app served by `listener` (started on env `from`) on another address: only a new listener can serve it. */
export function movesAddress(
  listener: HttpListener,
  from: Record<string, unknown>,
  to: Record<string, unknown>,
): boolean {
  return bindHost(to) !== listener.host || listenPort(to, "") !== listenPort(from, "");
}

/** The error of a failed start of `spec` (a `GitopsError` is kept as it is: it already says what went wrong). */
export function startFailure(spec: AppSpec, error: unknown): GitopsError {
  if (error instanceof GitopsError) return error;
  return new GitopsError(`start() of ${spec.name} ${spec.version} failed: ${messageOf(error)}`, {
    code: "E_RUNTIME",
    retry: "backoff",
    cause: error,
  });
}

/** Throws when `stopping` is set: an instance being stopped takes no new code. */
export function notStopping(app: string, stopping: unknown): void {
  if (stopping) throw new GitopsError(`${app} is stopping; nothing to reload`, { code: "E_RUNTIME", retry: "backoff" });
}

/** The error for a hot reload from a `running` app to a `next` one of another kind, or `undefined` when the kinds match. */
export function kindChange(app: string, running: string, next: string): GitopsError | undefined {
  if (running === next) return undefined;
  const why = `${app}'s new revision is a ${next} app and the running one a ${running} app: a hot reload cannot change that; bump the version to upgrade it`;
  return new GitopsError(why, { code: "E_RUNTIME", retry: "stalled" });
}

/** The error for a hot reload that would move a fetch app to another address. */
export function addressChange(app: string): GitopsError {
  return new GitopsError(
    `${app}: a hot reload cannot move a fetch app to another address; change env to reconfigure it`,
    { code: "E_RUNTIME", retry: "stalled" },
  );
}

/** Requests a fetch handler is still running, so that a swap can let them finish before the old code goes. */
export class Inflight {
  #count = 0;
  #idle: (() => void) | undefined;

  /** A request started. */
  add(): void {
    this.#count++;
  }

  /** A request ended. */
  done(): void {
    if (--this.#count <= 0) this.clear();
  }

  /** None of them can end on its own any more (their runner died): nothing to wait for. */
  clear(): void {
    this.#count = 0;
    this.#idle?.();
  }

  /** Resolves once no request runs, or after `timeoutMs` (a request that hangs does not hold the swap up). */
  async drained(timeoutMs: number): Promise<void> {
    if (this.#count === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#idle = resolve;
      timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
  }
}

/** The steps of a restart-style swap, for {@link stopStartRestore}. */
export interface RestartSwap<T> {
  /** Stops the old one (what it throws is thrown: a step that tolerates a failed stop catches it). */
  stop(): Promise<void>;
  /** Starts the new one. */
  start(): Promise<T>;
  /** Starts the old one again, after `start` threw. */
  restore(): Promise<void>;
  /** What to throw after a failed `start`: `error` is its error, `again` the error of `restore` when the old one did not start again either. */
  failed(error: unknown, again: { error: unknown } | undefined): unknown;
}

/**
 * Stops the old one, starts the new one and resolves with what `start` gave; when `start` throws,
 * starts the old one again and throws what `failed` makes of it. For swaps that cannot run both at once.
 */
export async function stopStartRestore<T>(swap: RestartSwap<T>): Promise<T> {
  await swap.stop();
  try {
    return await swap.start();
  } catch (error) {
    let again: { error: unknown } | undefined;
    await swap.restore().catch((restoreError: unknown) => void (again = { error: restoreError }));
    throw swap.failed(error, again);
  }
}

/**
 * The error of a driver's in-place reload whose new `start` failed (`error`) after the old one was
 * stopped; when starting the old one again failed too (`again`), `crash` reports that first, so
 * the runtime marks the app failed.
 */
export function restartFailure(
  spec: AppSpec,
  error: unknown,
  again: { error: unknown } | undefined,
  crash: (error: Error) => void,
): GitopsError {
  const failure = startFailure(spec, error);
  if (again)
    crash(new Error(`${failure.message}; starting the previous revision again failed too: ${messageOf(again.error)}`));
  return new GitopsError(`${failure.message}; the previous revision was started again`, {
    code: "E_RUNTIME",
    retry: failure.retry,
    cause: error,
  });
}

/** An error's stack (with its message), for logs. */
export function stackOf(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return messageOf(error);
}
