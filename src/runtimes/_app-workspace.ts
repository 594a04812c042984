/**
 * The workspace an app of the default runtime runs from: prepared from its source, or, when the
 * source cannot be resolved or fetched (a git remote or registry that is down), the still complete
 * workspace of the revision the agent remembers this same spec running, so a restarted agent brings
 * its apps back offline.
 */
import { messageOf } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { RememberedApp } from "../runtime.ts";
import type { AppSpec } from "../spec.ts";
import type { PreparedWorkspace, Workspaces } from "../workspace.ts";

/** Where {@link appWorkspace} prepares, and what it may fall back to. */
export interface AppWorkspaceOptions {
  workspaces: Workspaces;
  /** The gitops checkout (relative sources are relative to it), when there is one. */
  repoDir: string | undefined;
  /** See `RuntimeContext.treeOf`. */
  treeOf?: ((path: string) => string | undefined) | undefined;
  /** The revision the app runs now: unchanged dependencies are linked from it (its packages are loaded already). */
  running: string | undefined;
  /** The apps the agent remembers running (`RuntimeContext.remembered`), asked only when preparing failed. */
  remembered: () => Readonly<Record<string, RememberedApp>> | undefined;
  logger: Logger;
}

/**
 * The workspace of `spec`. When its revision cannot be resolved or fetched, the revision this same
 * spec ran last time (as the agent remembers it) is used if its workspace is still complete; else
 * this throws the preparing error.
 */
export async function appWorkspace(spec: AppSpec, options: AppWorkspaceOptions): Promise<PreparedWorkspace> {
  const { workspaces, repoDir, running } = options;
  const context = {
    ...(repoDir ? { repoDir } : {}),
    ...(options.treeOf ? { treeOf: options.treeOf } : {}),
    ...(running ? { shareWith: running } : {}),
  };
  try {
    return await workspaces.prepare(spec, context);
  } catch (error) {
    const remembered = rememberedRevision(spec, options.remembered());
    if (!remembered) throw error;
    const prepared = await workspaces.prepare(spec, { ...context, revision: remembered }).catch(() => undefined);
    if (!prepared?.reused) throw error;
    options.logger.warn(`${messageOf(error)}; starting the cached revision ${remembered}`, { app: spec.name });
    return prepared;
  }
}

/** The revision the agent remembers `spec`'s app running, when it ran this same version from this same source. */
function rememberedRevision(
  spec: AppSpec,
  remembered: Readonly<Record<string, RememberedApp>> | undefined,
): string | undefined {
  const app = remembered?.[spec.name];
  const same = app?.version === spec.version && JSON.stringify(app.spec.source) === JSON.stringify(spec.source);
  return same ? app.revision : undefined;
}
