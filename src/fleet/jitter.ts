/**
 * `reconcile_jitter`: how far each agent moves its polls off the interval, so that a fleet started
 * (or restarted) together does not poll the shared remote in lockstep. A duration (`"5s"`, `5000`)
 * or a fraction of the interval (`"10%"`, `0.1`); 0 turns it off.
 */
import { parseDuration } from "../duration.ts";
import type { Logger } from "../logger.ts";

/** The default jitter: a tenth of the interval. */
export const DEFAULT_JITTER = "10%";

/** A parsed jitter: a fixed duration, or a fraction of the interval. */
export type Jitter = { ms: number } | { fraction: number };

/**
 * Reads a jitter: `"10%"` or a number or numeric string between 0 and 1 (exclusive) is a fraction
 * of the interval (a duration under 1 ms would mean nothing); anything else is a duration. Returns
 * `undefined` when it is neither, or a fraction above 100%.
 */
export function parseJitter(value: unknown): Jitter | undefined {
  if (typeof value === "string") {
    const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(value);
    if (percent) {
      const fraction = Number(percent[1]) / 100;
      return fraction <= 1 ? { fraction } : undefined;
    }
    if (/^\s*0?\.\d+\s*$/.test(value)) return { fraction: Number(value) };
  }
  if (typeof value === "number" && value > 0 && value < 1) return { fraction: value };
  const ms = parseDuration(value);
  return ms === undefined ? undefined : { ms };
}

/** The jitter in milliseconds for `interval`; `undefined` input means the default. */
export function jitterMs(value: unknown, interval: number): number {
  const jitter = parseJitter(value ?? DEFAULT_JITTER) ?? { fraction: 0.1 };
  return "ms" in jitter ? jitter.ms : Math.round(jitter.fraction * interval);
}

/**
 * The delay to the next timed poll: `interval` moved by a random amount within ± `jitter` (never
 * below 50 ms). `random` returns a number in [0, 1), like `Math.random`.
 */
export function jitteredInterval(interval: number, jitter: number, random: () => number): number {
  return Math.max(50, Math.round(interval + (random() * 2 - 1) * jitter));
}

/** The wait before a restarted agent's first poll: a random part of `jitter`. */
export function firstTickDelay(jitter: number, random: () => number): number {
  return Math.round(random() * jitter);
}

/**
 * The delay to the next tick, given the reconciler's (`base`: the interval, or sooner for a retry):
 * a timed poll is moved by the jitter, retries are not, and a held rollout wave that falls due
 * (`due`, ms since the epoch) brings the tick forward to then, plus a small random part of the
 * jitter so a whole wave does not fetch at the same moment.
 */
export function nextPollDelay(
  base: number,
  options: { interval: number; jitter: number; due: number | undefined; now: number; random: () => number },
): number {
  const { interval, jitter, due, now, random } = options;
  let delay = base >= interval ? jitteredInterval(base, jitter, random) : base;
  if (due !== undefined) delay = Math.min(delay, Math.max(50, due - now + firstTickDelay(jitter / 10, random)));
  return delay;
}

/**
 * Waits a random part of `jitter` before a restarted agent's first poll (logged), or less when
 * `signal` aborts (the agent stops, or a reconcile was asked for).
 */
export function firstTickWait(
  jitter: number,
  random: () => number,
  signal: AbortSignal,
  logger: Logger,
): Promise<void> {
  if (jitter <= 0) return Promise.resolve();
  const wait = firstTickDelay(jitter, random);
  logger.info(`first reconcile in ${Math.round(wait / 1000)}s (reconcile_jitter)`);
  return sleep(wait, signal);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
