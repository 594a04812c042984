/**
 * The seam between the default runtime and the isolation levels (SPEC section 2, `isolation`): a
 * driver starts instances of an app in its own way (`embedded`: in the agent's process; `worker`
 * and `process` later), and the runtime handles everything around them (workspaces, health,
 * upgrades with rollback, ordering). Types only.
 */
import type { EnvChange } from "../app-context.ts";
import type { Emit } from "../telemetry.ts";
import type { FetchHandler } from "../http-server.ts";
import type { Logger } from "../logger.ts";
import type { AppSpec } from "../spec.ts";
import type { PreparedWorkspace } from "../workspace.ts";

/** An isolation level (`vm` is already `process` after validation). */
export type Isolation = AppSpec["isolation"];

/** What a driver needs to start one app instance. */
export interface DriverStartOptions {
  spec: AppSpec;
  prepared: PreparedWorkspace;
  /** `<local_path>/data/<app>`, created. */
  dataDir: string;
  /** The runtime's logger (the driver tags it with the app name for the app). */
  logger: Logger;
  emit: Emit;
  /** How long `stop` may take before the instance is considered stopped anyway. */
  stopTimeoutMs: number;
  /** How long `start` (and other app calls) may take. */
  startTimeoutMs: number;
  /** The driver calls this when the running instance crashes (uncaught error, worker error, process exit). */
  onCrash(error: unknown): void;
}

/** One running instance of an app, as a driver controls it. */
export interface Instance {
  readonly kind: "lifecycle" | "fetch" | "process";
  /** The port it serves on, when known (a fetch app's listener; a lifecycle instance's numeric `port` property). */
  readonly port?: number;
  /** The address a fetch app's listener is bound to. */
  readonly host?: string;
  /** A fetch app's current handler. */
  readonly fetch?: FetchHandler;
  /** Stops it. Rejects (`E_TIMEOUT`, `E_RUNTIME`) when the app's `stop` hung or threw; it is stopped all the same. Idempotent. */
  stop(): Promise<void>;
  /** Applies an env change in place; `false` = not supported, restart it. */
  reconfigure?(change: EnvChange): Promise<boolean>;
  /** The app's own health check (`health` export), for `health.type: module`. */
  health?(): Promise<unknown>;
  /**
   * Hot reload (SPEC section 5): replaces this instance's code with the revision in
   * `options.prepared` without a full restart of the app's host, and resolves with the instance
   * now serving (this one, or a new one that replaced it). Throws to leave this instance serving
   * the old code. Absent: the runtime restarts the app on the new revision instead.
   */
  reload?(options: DriverStartOptions): Promise<Instance>;
  /** Memory attributable to this instance in bytes, when the driver can tell (a worker's heap, a process's RSS). */
  memory?(): Promise<number | undefined>;
  /**
   * Extra `AppState` fields (a process's `pid`, `last_exit`). `restarts` counts crash restarts the
   * instance did itself (added to the runtime's own); `status: "starting"` says it is between two
   * of them.
   */
  info?(): { restarts?: number; status?: "starting"; [field: string]: unknown };
}

/** Starts instances of one isolation level. */
export interface Driver {
  readonly isolation: Isolation;
  start(options: DriverStartOptions): Promise<Instance>;
  /**
   * True when an instance of `to` may start while one of `from` still runs: an upgrade then starts
   * the new instance first and stops the old one once the new one is healthy (default: stop, then start).
   */
  overlaps?(from: AppSpec, to: AppSpec): boolean;
  /** Releases what the driver holds across instances (process handlers, worker pools). */
  dispose?(): Promise<void>;
  /**
   * Ends what a previous agent left running (it was killed) of every app `keep` says no to, giving
   * each `graceMs` after SIGTERM; resolves with the apps that had something left. The runtime
   * calls it once before its first operation, and on `remove` of an app it does not run.
   */
  sweep?(keep: (app: string) => boolean, graceMs: number): Promise<string[]>;
}
