/**
 * The health monitor of an app the default runtime runs: its spec's probe (http, tcp, or the
 * app's own `health()`) aimed at where the app is at each check, failing `threshold` checks in a
 * row before the app is unhealthy.
 */
import { probeAddress } from "../_address.ts";
import { HealthMonitor, probeFor, type Probe } from "../health.ts";
import type { Logger } from "../logger.ts";
import type { AppSpec } from "../spec.ts";
import type { Emit } from "../telemetry.ts";
import type { AppRecord } from "./_app-record.ts";
import type { Instance } from "./driver.ts";

/** What an app's health monitor reports to, and when it calls the app unhealthy. */
export interface AppHealthOptions {
  /** Failed checks in a row that make the app unhealthy. */
  threshold: number;
  emit: Emit;
  logger: Logger;
}

/**
 * A new (not started) health monitor of `instance`, which runs `app`; `undefined` when its spec
 * asks for no health check. Throws when the spec's check cannot be built.
 */
export function appHealthMonitor(
  app: AppRecord,
  instance: Instance,
  options: AppHealthOptions,
): HealthMonitor | undefined {
  const { spec } = app;
  const module = instance.health ? { module: () => instance.health!() } : {};
  const check = (current: AppSpec) => probeFor(spec.health, { ...probeAddress(current, instance.port), ...module });
  // Each check asks where the app is now: an env change applied in place may move it (env.port, env.host).
  const probe: Probe | undefined = check(spec) && ((signal) => check(app.spec)!(signal));
  if (!probe) return undefined;
  return new HealthMonitor({
    app: spec.name,
    probe,
    intervalMs: spec.health.interval,
    timeoutMs: spec.health.timeout,
    threshold: options.threshold,
    emit: options.emit,
    logger: options.logger,
  });
}
