/**
 * Hot reload in the default runtime (SPEC section 5): {@link reloadApp} prepares the new revision
 * (the workspace links unchanged dependencies to the packages already loaded), lists the modules
 * that differ from the running revision (hard-linked files are the same file; others by content),
 * and swaps the instance when some do.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { statIfAny } from "../_fs-sync.ts";
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
 * between the workspace directories `fromDir` and `toDir`. A file that is the same file in both
 * (a hard link: the workspaces of a path source link the commit's snapshot, which links the files a
 * commit did not change) is unchanged without being read; others are compared by size, then by
 * sha256 of their content. `node_modules`, `.git` and the workspace marker are not looked at; nor
 * is any file whose extension is not in {@link MODULE_EXTENSIONS}.
 */
async function changedModules(fromDir: string, toDir: string): Promise<string[]> {
  const [before, after] = await Promise.all([moduleFiles(fromDir), moduleFiles(toDir)]);
  const changed = new Set<string>();
  await Promise.all(
    [...after].map(async ([path, file]) => {
      const old = before.get(path);
      if (!old) return void changed.add(path);
      if (old.dev === file.dev && old.ino === file.ino) return;
      if (old.size !== file.size) return void changed.add(path);
      const [a, b] = await Promise.all([hashOf(join(fromDir, path)), hashOf(join(toDir, path))]);
      if (a !== b) changed.add(path);
    }),
  );
  for (const path of before.keys()) if (!after.has(path)) changed.add(path);
  return [...changed].sort();
}

/** The module files under `root` with their identity (a symlink counts by the file it points at). */
async function moduleFiles(root: string): Promise<Map<string, { dev: number; ino: number; size: number }>> {
  const out = new Map<string, { dev: number; ino: number; size: number }>();
  for (const { rel, kind } of await walk(root, SKIP)) {
    if (kind === "dir" || !MODULE_EXTENSIONS.has(extname(rel))) continue;
    // Workspaces only keep links that stay inside; a linked directory is not followed.
    const info = statIfAny(join(root, rel)); // synchronous: see _fs-sync.ts
    if (info?.isFile()) out.set(rel, { dev: info.dev, ino: info.ino, size: info.size });
  }
  return out;
}

async function hashOf(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
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
