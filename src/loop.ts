/**
 * The one reconcile loop: ticks never overlap; triggers that arrive during a tick collapse into one
 * follow-up tick (every caller waiting on it gets its result); between ticks the loop sleeps for a
 * delay chosen after each tick (the interval, or sooner when a retry is due); `stop()` aborts the
 * running tick through its AbortSignal and waits for it to end.
 */

/** Options of {@link Loop}. */
export interface LoopOptions<R> {
  /** One tick. Must honour `signal` (abort = the agent is stopping). */
  tick: (signal: AbortSignal) => Promise<R>;
  /** Milliseconds until the next timed tick, decided after each tick from its outcome. */
  nextDelay: (outcome: { result?: R; error?: unknown }) => number;
}

interface Deferred<R> {
  promise: Promise<R>;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

function deferred<R>(): Deferred<R> {
  let resolve!: (value: R) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<R>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => {}); // a timed tick nobody awaits must not be an unhandled rejection
  return { promise, resolve, reject };
}

/** A self-scheduling, non-overlapping, coalescing loop. */
export class Loop<R> {
  readonly #options: LoopOptions<R>;
  readonly #abort = new AbortController();
  #running: Promise<R> | undefined;
  #followUp: Deferred<R> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: LoopOptions<R>) {
    this.#options = options;
  }

  /** Starts the loop with an immediate first tick; returns that tick's result. */
  start(): Promise<R> {
    return this.trigger();
  }

  /**
   * Asks for a tick. Idle: runs one now. Busy: the request joins the single follow-up tick that
   * runs right after the current one (so the caller sees a tick that started after it asked).
   */
  trigger(): Promise<R> {
    if (this.#abort.signal.aborted) return Promise.reject(new Error("the reconcile loop is stopped"));
    if (!this.#running) return this.#run();
    this.#followUp ??= deferred<R>();
    return this.#followUp.promise;
  }

  /** Stops the loop: no new ticks; the running one is aborted and awaited. */
  async stop(): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#abort.abort();
    clearTimeout(this.#timer);
    this.#followUp?.reject(new Error("the reconcile loop stopped"));
    this.#followUp = undefined;
    await this.#running?.catch(() => {});
  }

  #run(): Promise<R> {
    clearTimeout(this.#timer);
    const running = (async () => this.#options.tick(this.#abort.signal))();
    this.#running = running;
    running.then(
      (result) => this.#settled({ result }),
      (error: unknown) => this.#settled({ error }),
    );
    return running;
  }

  #settled(outcome: { result?: R; error?: unknown }): void {
    this.#running = undefined;
    if (this.#abort.signal.aborted) return;
    const followUp = this.#followUp;
    if (followUp) {
      this.#followUp = undefined;
      this.#run().then(followUp.resolve, followUp.reject);
      return;
    }
    const delay = Math.max(0, this.#options.nextDelay(outcome));
    // A started agent keeps its process alive until stop(), like a server does.
    this.#timer = setTimeout(() => void this.#run().catch(() => {}), delay);
  }
}
