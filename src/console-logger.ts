/**
 * The CLI's logger: consola's pretty output for people, or one JSON object per line
 * (`log_format: json`) for log shippers. Every line passes through `redact()`.
 */
import { createConsola } from "consola";
import type { Logger } from "./logger.ts";
import { redact } from "./redact.ts";

const LEVELS = { debug: 4, info: 3, warn: 1, error: 0 } as const;

/** Options of {@link createConsoleLogger}. */
export interface ConsoleLoggerOptions {
  level: keyof typeof LEVELS;
  format: "pretty" | "json";
  /** Where JSON lines go (default stdout). */
  write?: (line: string) => void;
}

/** A {@link Logger} that prints, pretty or as JSON lines, at or above `level`. */
export function createConsoleLogger(options: ConsoleLoggerOptions): Logger {
  const threshold = LEVELS[options.level];
  if (options.format === "json") {
    const write = options.write ?? ((line: string) => void process.stdout.write(line));
    const log = (level: keyof typeof LEVELS) => (message: string, fields?: Record<string, unknown>) => {
      if (LEVELS[level] > threshold) return;
      write(redact(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })) + "\n");
    };
    return { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  }
  const consola = createConsola({ level: threshold, formatOptions: { date: true, colors: process.stdout.isTTY } });
  // The app a line is about leads it as `[app]`; other fields follow as JSON.
  const text = (message: string, fields: Record<string, unknown> = {}) => {
    const { app, ...rest } = fields;
    const line = typeof app === "string" ? `[${app}] ${message}` : message;
    return redact(Object.keys(rest).length ? `${line} ${JSON.stringify(rest)}` : line);
  };
  return {
    debug: (m, f) => consola.debug(text(m, f)),
    info: (m, f) => consola.info(text(m, f)),
    warn: (m, f) => consola.warn(text(m, f)),
    error: (m, f) => consola.error(text(m, f)),
  };
}
