/** A logger for tests that keeps what it is told to warn about (warnings and errors). */
import type { Logger } from "../../src/logger.ts";

/** A logger that keeps its warnings and errors, for counting and matching them. */
export function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    debug() {},
    info() {},
    warn: (message: string) => void warnings.push(message),
    error: (message: string) => void warnings.push(message),
  };
}
