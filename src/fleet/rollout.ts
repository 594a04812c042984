/**
 * Staged rollouts coordinated by git alone (`rollout: { waves, interval, paused }` on an app). Every
 * host computes the same schedule from the same inputs: its wave (a stable hash of host and app
 * name, or its `rollout_wave` label) and the commit time of the app's last change, so no host
 * needs to talk to another. Wave `k` applies a change no earlier than `commit time + k × interval`.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { parseDuration } from "../duration.ts";
import { suggest } from "../suggest.ts";
import { WAVE_LABEL, type HostIdentity } from "./host.ts";

/** The most waves a rollout may have. */
export const MAX_WAVES = 1000;

/** Default time between two waves. */
export const DEFAULT_WAVE_INTERVAL = 10 * 60_000;

/** A validated `rollout` field. */
export interface Rollout {
  waves: number;
  /** Milliseconds between two waves. */
  interval: number;
  paused: boolean;
}

const ROLLOUT_KEYS = ["waves", "interval", "paused"] as const;

/**
 * The `rollout` field of the spec schema. Unknown keys are errors (a misspelt `paused` must not
 * be ignored), `waves` is a whole number from 1 to 1000, `interval` a duration above 0.
 */
export const RolloutField = z.unknown().transform((value, ctx): Rollout => {
  const issue = (path: string[], message: string) => ctx.addIssue({ code: "custom", path, message });
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    issue([], "expected a mapping like { waves: 4, interval: 10m }");
    return z.NEVER;
  }
  const input = value as Record<string, unknown>;
  let ok = true;
  for (const key of Object.keys(input)) {
    if ((ROLLOUT_KEYS as readonly string[]).includes(key)) continue;
    const hint = suggest(key, ROLLOUT_KEYS);
    issue(
      [key],
      `unknown key "${key}" in rollout${hint ? ` (did you mean "${hint}"?)` : ""}; rollout takes ${ROLLOUT_KEYS.join(", ")}`,
    );
    ok = false;
  }
  const waves = input.waves ?? 1;
  if (typeof waves !== "number" || !Number.isInteger(waves) || waves < 1 || waves > MAX_WAVES) {
    issue(
      ["waves"],
      `expected a whole number of waves from 1 to ${MAX_WAVES}, got ${JSON.stringify(waves)}${waves === 0 ? " (waves: 1 applies everywhere at once)" : ""}`,
    );
    ok = false;
  }
  const interval =
    input.interval === undefined || input.interval === null ? DEFAULT_WAVE_INTERVAL : parseDuration(input.interval);
  if (interval === undefined || interval <= 0) {
    issue(["interval"], `expected a duration above 0 like "10m" or 600000, got ${JSON.stringify(input.interval)}`);
    ok = false;
  }
  const paused = input.paused ?? false;
  if (typeof paused !== "boolean") {
    issue(["paused"], `expected true or false, got ${JSON.stringify(paused)}`);
    ok = false;
  }
  return ok ? { waves: waves as number, interval: interval!, paused: paused as boolean } : z.NEVER;
});

/**
 * The wave of `identity` for `app` in a rollout of `waves` waves: its `rollout_wave` label when it
 * has one (past the last wave it is the last wave), else a stable hash of host name and app name,
 * so each app rolls out to a different first group of hosts.
 */
export function waveOf(identity: HostIdentity, app: string, waves: number): number {
  const label = identity.labels[WAVE_LABEL];
  if (label !== undefined && /^\d+$/.test(label)) return Math.min(Number(label), waves - 1);
  const digest = createHash("sha256").update(`${identity.host}\0${app}`).digest();
  return digest.readUInt32BE(0) % waves;
}

/** When wave `wave` may apply a change committed at `commitTime` (ms): `commitTime + wave × interval`. */
export function waveDue(rollout: Rollout, wave: number, commitTime: number): number {
  return commitTime + wave * rollout.interval;
}

/** What a rollout decides for one host and one pending change. */
export type RolloutVerdict =
  | { hold: false; wave: number }
  | { hold: true; wave: number; paused: true; reason: string }
  | { hold: true; wave: number; paused: false; due: number; reason: string };

/**
 * Whether a pending change of `app` may apply on this host at `now`: wave 0 at once, wave `k` from
 * `commitTime + k × interval`, nothing while `paused`. `commitTime` is read only when needed.
 */
export async function rolloutVerdict(
  rollout: Rollout,
  identity: HostIdentity,
  app: string,
  now: number,
  commitTime: () => Promise<number>,
): Promise<RolloutVerdict> {
  const wave = waveOf(identity, app, rollout.waves);
  if (rollout.paused)
    return {
      hold: true,
      wave,
      paused: true,
      reason: `rollout paused (wave ${wave} of ${rollout.waves} has not applied)`,
    };
  if (wave === 0) return { hold: false, wave };
  const due = waveDue(rollout, wave, await commitTime());
  if (now >= due) return { hold: false, wave };
  return { hold: true, wave, paused: false, due, reason: `waiting for wave ${wave} at ${new Date(due).toISOString()}` };
}
