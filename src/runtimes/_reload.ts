/**
 * Hot reload in the default runtime (SPEC section 5): {@link reloadApp} prepares the new revision
 * (the workspace links unchanged dependencies to the packages already loaded), lists the modules
 * that differ from the running revision by content hash, and swaps the instance when some do.
 */
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { walk } from "../_tree.ts";
import { GitopsError, messageOf, retryClassOf } from "../errors.ts";
import type { HotReloadResult } from "../runtime.ts";
import type { AppSpec } from "../spec.ts";
import { WORKSPACE_MARKER, type PreparedWorkspace } from "../workspace.ts";
import type { AppOps, AppRecord } from "./_app-record.ts";
import type { Instance } from "./driver.ts";
import { stopStartRestore } from "./_driver-kit.ts";

/** Extensions of the files that count as modules when listing what a reload changed. */
const MODULE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".js",
  ".mjs",
  ".cjs",
  ".ts",
  ".mts",
  ".cts",
  ".jsx",
  ".tsx",
  ".json",
]);

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

async function moduleHashes(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const { rel, kind } of await walk(root, SKIP)) {
    if (kind === "dir" || !MODULE_EXTENSIONS.has(extname(rel))) continue;
    // A symlink counts by the file it points at (workspaces only keep links that stay inside); a linked directory is not followed.
    if (
      kind === "link" &&
      !(await stat(join(root, rel)).then(
        (s) => s.isFile(),
        () => false,
      ))
    )
      continue;
    out.set(
      rel,
      createHash("sha256")
        .update(await readFile(join(root, rel)))
        .digest("hex"),
    );
  }
  return out;
}

/**
 * A hot reload of `app` to the revision `spec` resolves to now (SPEC section 5): prepares it in a
 * new directory, lists the changed modules and, when there are some, swaps the instance (the
 * driver's `reload`, else stop and start with the old revision started again on failure). No
 * changed module: the new revision is recorded and nothing is reloaded. Throws a `GitopsError` with the old code serving when the new code fails.
 */
export async function reloadApp(app: AppRecord, spec: AppSpec, ops: AppOps): Promise<HotReloadResult> {
  const what = `hot reload of ${spec.name} ${spec.version}`;
  const previous = app.prepared;
  let prepared: PreparedWorkspace;
  try {
    prepared = await ops.prepare(spec);
  } catch (error) {
    throw new GitopsError(`${what} failed: ${messageOf(error)}; the running revision keeps serving`, {
      code: "E_RUNTIME",
      retry: retryClassOf(error),
      cause: error,
    });
  }
  const modules = prepared.dir === previous.dir ? [] : await changedModules(previous.dir, prepared.dir);
  if (!app.instance) {
    // Nothing runs (it crashed or was stopped): start the new revision.
    Object.assign(app, { spec, prepared });
    await ops.launch(app);
  } else if (modules.length > 0) {
    await swap(app, spec, prepared, `${what} to ${prepared.revision}`, ops);
    app.reloads++;
    app.reloadedAt = new Date().toISOString();
  } else {
    Object.assign(app, { spec, prepared }); // the code running is what this revision holds
  }
  await ops.prune(spec.name, [prepared.revision, previous.revision]);
  return { app: spec.name, revision: prepared.revision, modules };
}

async function swap(
  app: AppRecord,
  spec: AppSpec,
  prepared: PreparedWorkspace,
  what: string,
  ops: AppOps,
): Promise<void> {
  const old = app.instance!;
  if (!old.reload) {
    const before = { spec: app.spec, prepared: app.prepared };
    return stopStartRestore({
      stop: () => ops.halt(app),
      start: () => {
        Object.assign(app, { spec, prepared });
        return ops.launch(app);
      },
      restore: () => {
        Object.assign(app, before);
        return ops.launch(app);
      },
      failed: (error, again) => {
        const failed = `${what} failed: ${messageOf(error)}`;
        app.lastError = again
          ? `${failed}; starting the previous revision again failed too: ${messageOf(again.error)}`
          : `${failed}; the previous revision was started again`;
        return new GitopsError(app.lastError, {
          code: "E_RUNTIME",
          ...(again ? { retry: "backoff", cause: again.error } : { retry: retryClassOf(error), cause: error }),
        });
      },
    });
  }
  let next: Instance | undefined;
  try {
    next = await old.reload(await ops.options(spec, prepared, (error) => ops.crashed(app, next, error)));
  } catch (error) {
    app.lastError = `${what} failed: ${messageOf(error)}`;
    throw new GitopsError(`${app.lastError}; the running revision keeps serving`, {
      code: "E_RUNTIME",
      retry: retryClassOf(error),
      cause: error,
    });
  }
  Object.assign(app, { spec, prepared, instance: next });
  delete app.lastError;
  await ops.adopt(app, next);
}
