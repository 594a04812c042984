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

/**
 * A logger for one app: every line carries `{ app }` as a field, so JSON logs can be filtered by
 * app (the CLI's pretty logs show it as a `[app]` prefix).
 */
export function appLogger(logger: Logger, app: string): Logger {
  return {
    debug: (m, f) => logger.debug(m, { app, ...f }),
    info: (m, f) => logger.info(m, { app, ...f }),
    warn: (m, f) => logger.warn(m, { app, ...f }),
    error: (m, f) => logger.error(m, { app, ...f }),
  };
}
