/**
 * The narrow logger interface the library logs through. The CLI injects a consola-backed one;
 * library users may pass their own (or `silentLogger`).
 */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything (the library default: it never prints on its own). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A logger that prefixes every message with a tag, e.g. an app name. */
export function tagged(logger: Logger, tag: string): Logger {
  return {
    debug: (m, f) => logger.debug(`[${tag}] ${m}`, f),
    info: (m, f) => logger.info(`[${tag}] ${m}`, f),
    warn: (m, f) => logger.warn(`[${tag}] ${m}`, f),
    error: (m, f) => logger.error(`[${tag}] ${m}`, f),
  };
}
