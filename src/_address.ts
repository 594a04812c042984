/**
 * Where an app listens and where the agent checks it: the one rule every driver, the process
 * readiness check and the health monitor use (SPEC section 2, `env.port`, `env.host`, `health.port`).
 *
 * - An agent-owned listener (a fetch app) binds `env.host` (default 127.0.0.1) and `env.port`
 *   (default 8080; 0 = a free port).
 * - A process app gets `env.port` as `PORT`; with 0 it gets a port that was free a moment ago.
 * - Checks connect to `env.host`, or 127.0.0.1 when it is a wildcard (0.0.0.0, ::) or not set, on
 *   `health.port` when the spec sets it, else on the port the app listens on: `env.port`, the real
 *   one when `env.port` is 0, 8080 when `env.port` is not set.
 */
import { GitopsError } from "./errors.ts";
import type { AppSpec } from "./spec.ts";

/** Where a fetch app listens when its env has no `host`: loopback, so nothing is exposed by accident. */
export const DEFAULT_HOST = "127.0.0.1";
/** Where a fetch app listens, and an app is checked, when its env has no `port`. */
export const DEFAULT_PORT = 8080;

const WILDCARDS: ReadonlySet<string> = new Set(["", "0.0.0.0", "::", "[::]"]);

type Env = Readonly<Record<string, unknown>>;

/** The host an agent-owned listener binds: `env.host`, else {@link DEFAULT_HOST}. */
export function bindHost(env: Env): string {
  return typeof env.host === "string" && env.host !== "" ? env.host : DEFAULT_HOST;
}

/** The host to connect to the app on: `env.host` unless it is a wildcard or not set, else 127.0.0.1. */
export function connectHost(env: Env): string {
  return typeof env.host === "string" && !WILDCARDS.has(env.host) ? env.host : DEFAULT_HOST;
}

/**
 * `env.port` (a number or numeric string; 0 = any free port), `undefined` when not set (absent,
 * `null` or ""). Throws a `GitopsError` (`E_RUNTIME`) naming `who` for anything else.
 */
export function envPort(env: Env, who: string): number | undefined {
  const raw = env.port;
  if (raw === undefined || raw === null || raw === "") return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new GitopsError(`${who}: env.port must be a port number from 0 to 65535, got ${JSON.stringify(raw)}`, {
      code: "E_RUNTIME",
      retry: "stalled",
    });
  }
  return port;
}

/** The port an agent-owned listener binds: `env.port` (0 = any free port), else {@link DEFAULT_PORT}. Throws like {@link envPort}. */
export function listenPort(env: Env, who: string): number {
  return envPort(env, who) ?? DEFAULT_PORT;
}

/**
 * Where `http`/`tcp` checks (readiness of a process app, the health monitor) connect:
 * {@link connectHost}, and `health.port` when the spec sets it, else the port the app listens on:
 * `env.port`, `listening` (the real port, when known) when `env.port` is 0, {@link DEFAULT_PORT}
 * when `env.port` is not set or not a port.
 */
export function probeAddress(
  spec: Pick<AppSpec, "env" | "health">,
  listening: number | undefined,
): { host: string; port: number } {
  return { host: connectHost(spec.env), port: spec.health.port ?? appPort(spec.env, listening) };
}

function appPort(env: Env, listening: number | undefined): number {
  let port: number | undefined;
  try {
    port = envPort(env, "");
  } catch {
    return DEFAULT_PORT; // the driver reports the bad value; the check just has nowhere better to go
  }
  if (port === 0) return listening ?? DEFAULT_PORT;
  return port ?? DEFAULT_PORT;
}
