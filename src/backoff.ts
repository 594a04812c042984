/**
 * Exponential backoff per key (an app, or the git remote): after each failure the next attempt
 * waits twice as long, from `baseMs` up to `maxMs`; a success resets it. Pure bookkeeping: the
 * caller passes the clock.
 */
export class Backoff {
  readonly #entries = new Map<string, { failures: number; retryAt: number }>();
  readonly baseMs: number;
  /** The cap; may change at run time (it is the reconcile interval). */
  maxMs: number;

  constructor(baseMs: number, maxMs: number) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  /** Records a failure at `now`; returns when the next attempt is due. */
  fail(key: string, now: number): number {
    const failures = (this.#entries.get(key)?.failures ?? 0) + 1;
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(failures - 1, 30));
    const retryAt = now + delay;
    this.#entries.set(key, { failures, retryAt });
    return retryAt;
  }

  /** The keys that have failed since their last reset. */
  keys(): string[] {
    return [...this.#entries.keys()];
  }

  /** Forgets the failures of `key` (it succeeded, or is gone). */
  reset(key: string): void {
    this.#entries.delete(key);
  }

  /** Whether `key` must still wait at `now`. */
  waiting(key: string, now: number): boolean {
    return (this.#entries.get(key)?.retryAt ?? 0) > now;
  }

  /** When `key` may be tried again, if it is waiting at `now`. */
  retryAt(key: string, now: number): number | undefined {
    const at = this.#entries.get(key)?.retryAt;
    return at !== undefined && at > now ? at : undefined;
  }

  /** Consecutive failures of `key`. */
  failures(key: string): number {
    return this.#entries.get(key)?.failures ?? 0;
  }

  /** The earliest pending retry time after `now`, if any. */
  nextRetry(now: number): number | undefined {
    let next: number | undefined;
    for (const { retryAt } of this.#entries.values())
      if (retryAt > now && (next === undefined || retryAt < next)) next = retryAt;
    return next;
  }
}
