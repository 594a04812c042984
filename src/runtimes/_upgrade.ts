/**
 * An upgrade in the default runtime (SPEC section 4): the new version is prepared first (a fetch or
 * install failure leaves the old one running untouched), then started and given a window to become
 * healthy; if it fails to start or never becomes healthy, the previous version runs again.
 */
import { GitopsError, messageOf, retryClassOf } from "../errors.ts";
import type { AppSpec } from "../spec.ts";
import type { PreparedWorkspace } from "../workspace.ts";
import type { AppOps, AppRecord } from "./_app-record.ts";

/**
 * Upgrades the running app `old` (on `oldVersion`) to `spec`; returns the record of the new
 * version, which then runs, healthy and monitored. A driver whose instances can run side by side
 * starts the new one before it stops the old; others stop the old first. On failure the old
 * version runs again and this throws a stalled `GitopsError` that says so, with
 * `details.rolled_back_to` (`backoff` when even the old version could not start again).
 */
export async function upgradeApp(old: AppRecord, spec: AppSpec, oldVersion: string, ops: AppOps): Promise<AppRecord> {
  const what = `upgrade ${spec.name} ${oldVersion} -> ${spec.version}`;
  let prepared: PreparedWorkspace;
  try {
    prepared = await ops.prepare(spec);
  } catch (error) {
    throw new GitopsError(`${what} failed: ${messageOf(error)}; ${oldVersion} keeps running`, {
      code: "E_RUNTIME",
      retry: retryClassOf(error),
      cause: error,
    });
  }
  old.status = "upgrading";
  const overlap = ops.overlaps(old.spec, spec);
  if (!overlap) await ops.halt(old);
  const next: AppRecord = {
    spec,
    prepared,
    status: "starting",
    restarts: 0,
    reloads: old.reloads,
    heapBase: old.heapBase,
    memory: old.memory,
  };
  ops.install(next);
  let reason: string | undefined;
  try {
    await ops.start(next);
    const window = ops.startWindowMs(spec);
    if (!(await becomesHealthy(next, window))) {
      reason = `it did not become healthy within ${window} ms${next.monitor?.lastError ? ` (${next.monitor.lastError})` : ""}`;
    }
  } catch (error) {
    reason = messageOf(error);
  }
  if (reason === undefined) {
    if (overlap) await ops.halt(old);
    next.monitor?.start(spec.health.interval);
    await ops.prune(spec.name, [prepared.revision, old.prepared.revision]);
    return next;
  }
  ops.logger.warn(`${what} failed: ${reason}; rolling back to ${oldVersion}`);
  await ops.halt(next);
  ops.install(old);
  try {
    if (overlap) old.status = "running";
    else await ops.launch(old);
  } catch (error) {
    old.lastError = `${what} failed: ${reason}; rolling back to ${oldVersion} failed too: ${messageOf(error)}`;
    throw new GitopsError(old.lastError, { code: "E_RUNTIME", retry: "backoff", cause: error });
  }
  old.lastError = `${what} failed: ${reason}; rolled back to ${oldVersion}`;
  throw new GitopsError(old.lastError, {
    code: "E_RUNTIME",
    retry: "stalled",
    details: { rolled_back_to: oldVersion },
  });
}

/** Checks `app` until it is healthy or `windowMs` passed; true when healthy. */
async function becomesHealthy(app: AppRecord, windowMs: number): Promise<boolean> {
  const monitor = app.monitor;
  if (!monitor) return app.status === "running";
  const until = Date.now() + windowMs;
  const pause = Math.min(app.spec.health.interval, 250);
  for (;;) {
    if ((await monitor.checkNow()) === "healthy") return app.status === "running";
    if (app.status !== "running" || Date.now() + pause >= until) return false;
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
