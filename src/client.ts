/**
 * A small client of the control API for the CLI (`status`, `reconcile`, `reload`, `plan`): one
 * request, JSON in and out, errors that say what to check.
 */
import { GitopsError } from "./errors.ts";
import { redact } from "./redact.ts";

/** Where the agent's control API is and how to authenticate. */
export interface ClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:9477`. */
  url: string;
  token?: string;
  /** Deadline of the request (default 120 s: a reconcile can take a while). */
  timeoutMs?: number;
}

/** The default control API URL: the agent's default `listen`. */
export const DEFAULT_API_URL = "http://127.0.0.1:9477";

/** The control API URL for a `listen` setting (`127.0.0.1:9477`, `:9477`, `0.0.0.0:80`…). */
export function apiUrlFor(listen: string | undefined): string {
  if (!listen || listen === "off") return DEFAULT_API_URL;
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen);
  if (!match) return DEFAULT_API_URL;
  const host = match[1] ? `[${match[1]}]` : match[2] && match[2] !== "0.0.0.0" ? match[2] : "127.0.0.1";
  return `http://${host === "[::]" ? "[::1]" : host}:${match[3]}`;
}

/** Calls the control API; returns the parsed JSON body. Throws a `GitopsError` with a message a person can act on. */
export async function apiRequest<T = unknown>(
  options: ClientOptions,
  method: "GET" | "POST",
  path: string,
): Promise<T> {
  const url = new URL(path, options.url.endsWith("/") ? options.url : `${options.url}/`);
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { accept: "application/json", ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
      signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
    });
  } catch (error) {
    const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    throw new GitopsError(
      `cannot reach the agent at ${redact(options.url)} (${reason}): is \`bc-gitops run\` running there? (set --url)`,
      {
        code: "E_RUNTIME",
        retry: "backoff",
        cause: error,
      },
    );
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  if (!response.ok) {
    const message =
      (body as { error?: string } | undefined)?.error ?? (typeof body === "string" ? body : response.statusText);
    const hint = response.status === 401 ? " (pass --token or set BC_GITOPS_TOKEN)" : "";
    throw new GitopsError(`${method} ${url.pathname}: ${response.status} ${message}${hint}`, {
      code: response.status === 404 ? "E_NOT_FOUND" : "E_RUNTIME",
      retry: "stalled",
      details: { status: response.status },
    });
  }
  return body as T;
}
