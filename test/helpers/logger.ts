/** A logger for tests that keeps what it is told to warn about (warnings and errors). */
import type { Logger } from "../../src/logger.ts";

/** A logger that keeps its warnings and errors (and, apart, its debug lines), for counting and matching them. */
export function recordingLogger(): Logger & { warnings: string[]; debugs: string[] } {
  const warnings: string[] = [];
  const debugs: string[] = [];
  return {
    warnings,
    debugs,
    debug: (message: string) => void debugs.push(message),
    info() {},
    warn: (message: string) => void warnings.push(message),
    error: (message: string) => void warnings.push(message),
  };
}
