/**
 * Hot reload in the default runtime (SPEC section 5): the reload itself ({@link reloadApp}), which
 * modules differ between two revision directories (by content hash), the reload and memory
 * fields of `AppState`, and sharing an unchanged `node_modules` between revisions by symlink. Runtimes identify a module by its real path, so a hard-linked copy of a
 * dependency in a new revision directory is a new module that would be evaluated (and kept in
 * memory) again; a symlink resolves to the files the previous revision already loaded.
 */
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, realpath, rename, rm, stat, symlink } from "node:fs/promises";
import { basename, dirname, extname, join, relative, sep } from "node:path";
import { GitopsError, messageOf, retryClassOf } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { HotReloadResult } from "../runtime.ts";
import type { AppSpec } from "../spec.ts";
import { WORKSPACE_MARKER, type PreparedWorkspace } from "../workspace.ts";
import type { DriverStartOptions, Instance } from "./driver.ts";
import { stopStartRestore } from "./_driver-kit.ts";

/** Extensions of the files that count as modules when listing what a reload changed. */
const MODULE_EXTENSIONS: ReadonlySet<string> = new Set([".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".json"]);

const SKIP = new Set(["node_modules", ".git", WORKSPACE_MARKER]);

/**
 * The module files (relative `/`-separated paths, sorted) that were added, removed or changed
 * between the workspace directories `fromDir` and `toDir`, by sha256 of their content.
 * `node_modules`, `.git` and the workspace marker are not looked at; nor is any file whose
 * extension is not in {@link MODULE_EXTENSIONS}.
 */
async function changedModules(fromDir: string, toDir: string): Promise<string[]> {
  const [before, after] = await Promise.all([cachedHashes(fromDir), cachedHashes(toDir)]);
  const changed = new Set<string>();
  for (const [path, hash] of after) if (before.get(path) !== hash) changed.add(path);
  for (const path of before.keys()) if (!after.has(path)) changed.add(path);
  return [...changed].sort();
}

/** Module hashes of recent revision directories: a complete revision directory never changes, and each reload diffs against the last one. */
const recent = new Map<string, Promise<Map<string, string>>>();

function cachedHashes(dir: string): Promise<Map<string, string>> {
  let hashes = recent.get(dir);
  if (!hashes) {
    hashes = moduleHashes(dir);
    recent.set(dir, hashes);
    hashes.catch(() => recent.delete(dir));
    for (const old of [...recent.keys()].slice(0, -16)) recent.delete(old);
  }
  return hashes;
}

async function moduleHashes(root: string, rel = "", out = new Map<string, string>()): Promise<Map<string, string>> {
  for (const dirent of await readdir(join(root, rel), { withFileTypes: true })) {
    if (SKIP.has(dirent.name)) continue;
    const path = rel ? `${rel}/${dirent.name}` : dirent.name;
    if (dirent.isDirectory()) {
      await moduleHashes(root, path, out);
      continue;
    }
    if (!MODULE_EXTENSIONS.has(extname(dirent.name))) continue;
    // A symlink counts by the file it points at (workspaces only keep links that stay inside); a linked directory is not followed.
    if (dirent.isSymbolicLink() && !(await stat(join(root, path)).then((s) => s.isFile(), () => false))) continue;
    if (!dirent.isFile() && !dirent.isSymbolicLink()) continue;
    out.set(path, createHash("sha256").update(await readFile(join(root, path))).digest("hex"));
  }
  return out;
}

/**
 * When the workspace `toDir` has the same dependency key as `fromDir` (its dependency manifests
 * did not change, so the workspace reused `fromDir`'s packages), replaces `toDir/node_modules`
 * with a relative symlink to the directory that really holds `fromDir`'s packages. Both must be
 * revision directories of the same app. Does nothing when there are no dependencies, when they
 * differ, or when both already resolve to the same directory.
 */
async function shareDependencies(fromDir: string, toDir: string): Promise<void> {
  const [from, to] = await Promise.all([dependencyKey(fromDir), dependencyKey(toDir)]);
  if (!from || from !== to) return;
  const real = await realpath(join(fromDir, "node_modules")).catch(() => undefined);
  if (!real) return;
  const target = join(toDir, "node_modules");
  const current = await realpath(target).catch(() => undefined);
  if (current === real) return;
  // `.tmp-` names in the app directory are cleaned up by the next prepare if this is interrupted.
  const aside = join(dirname(toDir), `.tmp-node_modules-${randomBytes(6).toString("hex")}`);
  if (current !== undefined) await rename(target, aside);
  await symlink(relative(await realpath(toDir), real), target, "dir");
  await rm(aside, { recursive: true, force: true });
}

/**
 * `keep` (revision names of the app whose revision directories live in `appDir`) plus the
 * revisions whose `node_modules` they use through {@link shareDependencies}, so pruning never
 * deletes packages a kept revision still needs.
 */
export async function withDependencyHomes(appDir: string, keep: readonly string[]): Promise<string[]> {
  const out = new Set(keep);
  const base = await realpath(appDir).catch(() => appDir);
  for (const revision of keep) {
    const real = await realpath(join(appDir, revision, "node_modules")).catch(() => undefined);
    if (!real) continue;
    const rel = relative(base, real);
    const home = rel.split(sep)[0];
    if (home && home !== ".." && rel === join(home, "node_modules") && basename(real) === "node_modules") out.add(home);
  }
  return [...out];
}

async function dependencyKey(dir: string): Promise<string | undefined> {
  try {
    const marker = JSON.parse(await readFile(join(dir, WORKSPACE_MARKER), "utf8")) as { deps?: unknown };
    return typeof marker.deps === "string" ? marker.deps : undefined;
  } catch {
    return undefined;
  }
}

/** What the runtime knows about an app's reloads and memory, for {@link reloadFields}. */
export interface ReloadStats {
  isolation: string;
  /** Hot reloads since the app was deployed in this agent. */
  reloads: number;
  reloadedAt?: string | undefined;
  /**
   * Bytes: what the instance reported last (`Instance.memory()`: a Worker's heap, a process's
   * RSS), or for an embedded app the agent heap's growth from the app's start to its last reload.
   */
  memory?: number | undefined;
  /** Reloads of an embedded app before it gets a warning. */
  budget: number;
}

/** What each kind of memory figure means, as `AppState.memory_source` says. */
const MEMORY_SOURCES: Readonly<Record<string, string>> = {
  worker: "worker heap",
  process: "process RSS",
  embedded: "agent heap growth from the app's start to its last reload (estimate: embedded apps share the agent's heap)",
};

const MB = 1024 * 1024;

/**
 * The `AppState` fields of SPEC section 5's reload accounting: `reloads`, `reloaded_at`,
 * `memory_mb` with `memory_source`, and, for an embedded app past its reload budget, a `warning`
 * that says to use `isolation: worker`.
 */
export function reloadFields(stats: ReloadStats): Record<string, unknown> {
  const out: Record<string, unknown> = { reloads: stats.reloads };
  if (stats.reloadedAt) out.reloaded_at = stats.reloadedAt;
  const bytes = stats.memory;
  if (bytes !== undefined) Object.assign(out, { memory_mb: Math.round((bytes / MB) * 10) / 10, memory_source: MEMORY_SOURCES[stats.isolation] ?? stats.isolation });
  if (stats.isolation === "embedded" && stats.reloads > stats.budget) {
    const grown = bytes !== undefined ? ` (the agent's heap grew by about ${Math.round(bytes / MB)} MB)` : "";
    out.warning =
      `${stats.reloads} hot reloads, past the reload budget of ${stats.budget}: an embedded app leaves every old module graph in the ` +
      `agent's memory${grown}. Set isolation: worker in its spec to run each revision in a Worker that is terminated after the swap.`;
  }
  return out;
}

/** The runtime's record of one app, as {@link reloadApp} reads and updates it. */
export interface Reloadable {
  spec: AppSpec;
  prepared: PreparedWorkspace;
  instance?: Instance;
  lastError?: string;
  reloads: number;
  reloadedAt?: string;
}

/** The runtime's own operations on the app that {@link reloadApp} needs. */
export interface ReloadOps {
  prepare(spec: AppSpec): Promise<PreparedWorkspace>;
  /** Driver options to run `prepared`; `onCrash` belongs to the instance that will run it. */
  options(spec: AppSpec, prepared: PreparedWorkspace, onCrash: (error: unknown) => void): Promise<DriverStartOptions>;
  /** Starts the app on its current `spec` and `prepared`, checks its health once; throws (the app is failed) when it cannot. */
  launch(): Promise<void>;
  /** Stops the app's instance and health monitor. */
  halt(): Promise<void>;
  /** Makes `instance` the one health checks watch. */
  adopt(instance: Instance): Promise<void>;
  crashed(instance: Instance | undefined, error: unknown): void;
  prune(keep: string[]): Promise<void>;
  logger: Logger;
}

/**
 * A hot reload of `app` to the revision `spec` resolves to now (SPEC section 5): prepares it in a
 * new directory, shares unchanged `node_modules`, lists the changed modules and, when there are
 * some, swaps the instance (the driver's `reload`, else stop and start with the old revision
 * started again on failure). No changed module: the new revision is recorded and nothing is
 * reloaded. Throws a `GitopsError` with the old code serving when the new code fails.
 */
export async function reloadApp(app: Reloadable, spec: AppSpec, ops: ReloadOps): Promise<HotReloadResult> {
  const what = `hot reload of ${spec.name} ${spec.version}`;
  const previous = app.prepared;
  let prepared: PreparedWorkspace;
  try {
    prepared = await ops.prepare(spec);
  } catch (error) {
    throw new GitopsError(`${what} failed: ${messageOf(error)}; the running revision keeps serving`, { code: "E_RUNTIME", retry: retryClassOf(error), cause: error });
  }
  await shareDependencies(previous.dir, prepared.dir).catch((error) => ops.logger.debug(`[${spec.name}] cannot share node_modules: ${messageOf(error)}`));
  const modules = prepared.dir === previous.dir ? [] : await changedModules(previous.dir, prepared.dir);
  if (!app.instance) {
    // Nothing runs (it crashed or was stopped): start the new revision.
    Object.assign(app, { spec, prepared });
    await ops.launch();
  } else if (modules.length > 0) {
    await swap(app, spec, prepared, `${what} to ${prepared.revision}`, ops);
    app.reloads++;
    app.reloadedAt = new Date().toISOString();
  } else {
    Object.assign(app, { spec, prepared }); // the code running is what this revision holds
  }
  await ops.prune([prepared.revision, previous.revision]);
  return { app: spec.name, revision: prepared.revision, modules };
}

async function swap(app: Reloadable, spec: AppSpec, prepared: PreparedWorkspace, what: string, ops: ReloadOps): Promise<void> {
  const old = app.instance!;
  if (!old.reload) {
    const before = { spec: app.spec, prepared: app.prepared };
    return stopStartRestore({
      stop: () => ops.halt(),
      start: () => {
        Object.assign(app, { spec, prepared });
        return ops.launch();
      },
      restore: () => {
        Object.assign(app, before);
        return ops.launch();
      },
      failed: (error, again) => {
        const failed = `${what} failed: ${messageOf(error)}`;
        app.lastError = again ? `${failed}; starting the previous revision again failed too: ${messageOf(again.error)}` : `${failed}; the previous revision was started again`;
        return new GitopsError(app.lastError, { code: "E_RUNTIME", ...(again ? { retry: "backoff", cause: again.error } : { retry: retryClassOf(error), cause: error }) });
      },
    });
  }
  let next: Instance | undefined;
  try {
    next = await old.reload(await ops.options(spec, prepared, (error) => ops.crashed(next, error)));
  } catch (error) {
    app.lastError = `${what} failed: ${messageOf(error)}`;
    throw new GitopsError(`${app.lastError}; the running revision keeps serving`, { code: "E_RUNTIME", retry: retryClassOf(error), cause: error });
  }
  Object.assign(app, { spec, prepared, instance: next });
  delete app.lastError;
  await ops.adopt(next);
}
