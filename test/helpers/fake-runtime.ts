/**
 * A runtime that runs nothing: it records calls and reports states the test controls. The seam the
 * project owns between the reconciler and real apps (SPEC section 10's runtime interface).
 */
import type { AppHealth, AppState, Runtime } from "../../src/runtime.ts";
import type { AppSpec } from "../../src/spec.ts";

/** A controllable fake of the runtime interface. */
export class FakeRuntime implements Runtime {
  /** Every call, as `"deploy web 1.0.0"`, `"remove web"`, … */
  readonly calls: string[] = [];
  readonly apps = new Map<string, AppState>();
  /** Apps whose next deploy/upgrade/restart/reconfigure throws this error (consumed). */
  readonly failNext = new Map<string, Error>();
  /** Apps that fail every time. */
  readonly failAlways = new Set<string>();
  /** Health reported after a successful start (default healthy). */
  readonly healthOf = new Map<string, AppHealth>();
  /** When set, every call awaits it first (lets a test hold a tick in the middle). */
  gate: Promise<void> | undefined;

  async deploy(spec: AppSpec): Promise<AppState> {
    return this.#start("deploy", spec);
  }

  async upgrade(spec: AppSpec, oldVersion: string): Promise<AppState> {
    return this.#start("upgrade", spec, ` from ${oldVersion}`);
  }

  async reconfigure(spec: AppSpec): Promise<AppState> {
    return this.#start("reconfigure", spec);
  }

  async restart(spec: AppSpec): Promise<AppState> {
    return this.#start("restart", spec);
  }

  async remove(name: string): Promise<void> {
    await this.gate;
    this.calls.push(`remove ${name}`);
    this.apps.delete(name);
  }

  async getCurrentState(): Promise<Record<string, AppState>> {
    return Object.fromEntries([...this.apps].map(([name, state]) => [name, { ...state }]));
  }

  /** Simulates a crash of a running app. */
  crash(name: string): void {
    const app = this.apps.get(name);
    if (app) Object.assign(app, { status: "failed", health: "unhealthy", last_error: "exited with code 1" });
  }

  /** Changes an app's health as a health checker would. */
  setHealth(name: string, health: AppHealth): void {
    this.healthOf.set(name, health);
    const app = this.apps.get(name);
    if (app) app.health = health;
  }

  async #start(verb: string, spec: AppSpec, suffix = ""): Promise<AppState> {
    await this.gate;
    this.calls.push(`${verb} ${spec.name} ${spec.version}${suffix}`);
    const failure =
      this.failNext.get(spec.name) ??
      (this.failAlways.has(spec.name) ? new Error(`${spec.name} failed to start`) : undefined);
    this.failNext.delete(spec.name);
    if (failure) throw failure;
    const state: AppState = {
      name: spec.name,
      version: spec.version,
      status: "running",
      health: this.healthOf.get(spec.name) ?? "healthy",
      revision: spec.version,
      source: spec.source,
      isolation: spec.isolation,
      started_at: new Date().toISOString(),
      env: spec.env,
      reloads: 0,
    };
    this.apps.set(spec.name, state);
    return { ...state };
  }
}
