/**
 * The app side of the module contract (SPEC section 3): the `AppContext` an app receives, the
 * shape check of an imported entry module (lifecycle app or fetch app), and env change sets.
 */
import type { Logger } from "./logger.ts";
import { GitopsError } from "./errors.ts";

/** What every app function receives. `env` is replaced (never mutated) when the app is reconfigured. */
export interface AppContext {
  name: string;
  version: string;
  /** The code revision running (git commit, content hash, or the npm version). */
  revision: string;
  env: Record<string, unknown>;
  /** The agent's logger; every line carries `{ app }`. */
  log: Logger;
  /** Aborted when the app is stopped (after its `stop` returned or timed out). */
  signal: AbortSignal;
  /** `<local_path>/data/<app>`: survives upgrades, reloads and removal of the app's code. */
  dataDir: string;
}

/** The change handed to `reconfigure(instance, change, ctx)`: the new env and the key names that differ. */
export interface EnvChange {
  env: Record<string, unknown>;
  changed: string[];
  added: string[];
  removed: string[];
}

/** A fetch handler object (the default export of a fetch app). */
export interface FetchApp {
  fetch(request: Request, ctx: AppContext): Response | Promise<Response>;
}

/** An entry module that passed {@link checkAppModule}. */
export interface AppModule {
  /** `lifecycle`: it exports `start`; `fetch`: its default export has `fetch` and there is no `start`. */
  kind: "lifecycle" | "fetch";
  start?: (ctx: AppContext) => unknown;
  stop?: (instance: unknown, ctx: AppContext) => unknown;
  reconfigure?: (instance: unknown, change: EnvChange, ctx: AppContext) => unknown;
  health?: (instance: unknown, ctx: AppContext) => unknown;
  hotReload?: (previous: unknown, ctx: AppContext) => unknown;
  /** The default export, for fetch apps. */
  handler?: FetchApp;
}

const HOOKS = ["start", "stop", "reconfigure", "health", "hotReload"] as const;

/**
 * Checks an imported entry module against the contract and returns its parts. Throws a
 * `GitopsError` (`E_RUNTIME`, `stalled`: only new code can fix it) that names `entry` and says what
 * to export when the module is neither a lifecycle app nor a fetch app, or exports a hook that is
 * not a function.
 */
export function checkAppModule(module: Record<string, unknown>, entry: string): AppModule {
  const bad = (message: string) => new GitopsError(`${entry}: ${message}`, { code: "E_RUNTIME", retry: "stalled" });
  const out: AppModule = { kind: "lifecycle" };
  for (const hook of HOOKS) {
    const value = module[hook];
    if (value === undefined) continue;
    if (typeof value !== "function") throw bad(`the export "${hook}" must be a function, got ${typeof value}`);
    (out as unknown as Record<string, unknown>)[hook] = value;
  }
  const fallback = module.default as { fetch?: unknown } | null | undefined;
  const handler = typeof fallback === "object" || typeof fallback === "function" ? fallback : undefined;
  if (out.start) return out;
  if (handler && typeof handler.fetch === "function") return { ...out, kind: "fetch", handler: handler as FetchApp };
  throw bad(
    "is not an app: export async function start(ctx) (and stop(instance, ctx)) for a lifecycle app, " +
      "or export default { fetch(request) { … } } for a fetch app the agent serves on env.port",
  );
}

/** The key names that differ between two env objects (sorted), with `after` as the new env. */
export function envChange(before: Record<string, unknown>, after: Record<string, unknown>): EnvChange {
  const had = new Set(Object.keys(before).filter((k) => before[k] !== undefined));
  const has = Object.keys(after).filter((k) => after[k] !== undefined);
  const hasSet = new Set(has);
  return {
    env: after,
    changed: has.filter((k) => had.has(k) && stable(before[k]) !== stable(after[k])).sort(),
    added: has.filter((k) => !had.has(k)).sort(),
    removed: [...had].filter((k) => !hasSet.has(k)).sort(),
  };
}

/** True when an {@link EnvChange} changes nothing. */
export function isEmptyChange(change: EnvChange): boolean {
  return change.changed.length + change.added.length + change.removed.length === 0;
}

/** JSON with sorted object keys, so key order never counts as a change. */
function stable(value: unknown): string {
  return (
    JSON.stringify(value, (_key, v: unknown) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
          )
        : v,
    ) ?? "undefined"
  );
}
