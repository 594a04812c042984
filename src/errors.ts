/**
 * The error family of bc-gitops. Every error the library throws or reports carries a stable `code`
 * and a `retry` class that tells the reconcile loop what to do with it; the loop reads the class,
 * never the message text.
 *
 * - `stalled`: retrying will not help until the input changes (a new commit, a fixed spec).
 * - `backoff`: transient; retry with exponential backoff (unreachable remote, crashed app).
 */
import { redact } from "./redact.ts";

export type RetryClass = "stalled" | "backoff";

/** Stable machine-readable error codes. */
export type ErrorCode =
  | "E_CONFIG"
  | "E_SPEC"
  | "E_UNSAFE"
  | "E_EXEC"
  | "E_TIMEOUT"
  | "E_ABORTED"
  | "E_GIT"
  | "E_GIT_UNREACHABLE"
  | "E_GIT_REF"
  | "E_RUNTIME"
  | "E_UNSUPPORTED"
  | "E_NOT_FOUND"
  | "E_SECRETS";

/** Options accepted by {@link GitopsError}. */
export interface GitopsErrorOptions {
  code: ErrorCode;
  retry?: RetryClass;
  cause?: unknown;
  /** Extra structured context (app name, file, exit code…); must never hold secrets. */
  details?: Record<string, unknown>;
}

/** Base class of every error bc-gitops raises on purpose. */
export class GitopsError extends Error {
  readonly code: ErrorCode;
  readonly retry: RetryClass;
  readonly details: Record<string, unknown>;

  constructor(message: string, options: GitopsErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GitopsError";
    this.code = options.code;
    this.retry = options.retry ?? "backoff";
    this.details = options.details ?? {};
  }
}

/** The retry class of any thrown value: a {@link GitopsError}'s own class, else `backoff`. */
export function retryClassOf(error: unknown): RetryClass {
  return error instanceof GitopsError ? error.retry : "backoff";
}

/**
 * A {@link GitopsError} whose message has credentials redacted: for messages that quote URLs, paths
 * or a tool's output.
 */
export function redactedError(
  message: string,
  code: ErrorCode,
  retry: RetryClass,
  cause?: unknown,
  details?: Record<string, unknown>,
): GitopsError {
  return new GitopsError(redact(message), { code, retry, cause, ...(details ? { details } : {}) });
}

/** The code of any thrown value: a {@link GitopsError}'s own, else `undefined` (an app's or the platform's error). */
export function codeOf(error: unknown): ErrorCode | undefined {
  return error instanceof GitopsError ? error.code : undefined;
}

/** A one-line message for any thrown value (no stack). */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : (JSON.stringify(error) ?? String(error));
}
