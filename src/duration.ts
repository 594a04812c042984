/**
 * Durations as specs and configuration write them: milliseconds as a number (`30000`), or a string
 * with a unit (`"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1.5s"`); a bare numeric string means ms.
 */

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds for a duration value, or `undefined` when it is not one. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  }
  if (typeof value !== "string") return undefined;
  const match = DURATION.exec(value);
  if (!match) return undefined;
  const unit = (match[2] ?? "ms") as keyof typeof UNIT_MS;
  return Math.round(Number(match[1]) * UNIT_MS[unit]);
}

/** A short human form of a millisecond duration: `850ms`, `30s`, `5m`, `1h30m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) {
    const s = Math.round((ms % 60_000) / 1000);
    return `${Math.floor(ms / 60_000)}m${s ? `${s}s` : ""}`;
  }
  const m = Math.round((ms % 3_600_000) / 60_000);
  return `${Math.floor(ms / 3_600_000)}h${m ? `${m}m` : ""}`;
}
