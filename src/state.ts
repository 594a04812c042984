/**
 * Durable state: what the agent has deployed (app, spec, version, revision, workspace) and the last
 * applied commit, in `<local_path>/state.json`, written atomically (temp file + rename) so a crash
 * mid-write never leaves a torn file. A restarted agent reads it to bring apps back before (and
 * even without) network access.
 */
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AppSpec } from "./spec.ts";
import type { Logger } from "./logger.ts";

/** One deployed app as remembered across restarts. */
export interface DeployedApp {
  spec: AppSpec;
  version: string;
  revision?: string;
  workspace?: string;
  /** The spec file it was deployed from (`apps/web/app.yaml`), so a broken file still protects it. */
  file?: string;
  deployed_at: string;
}

/** The content of state.json. */
export interface DurableState {
  /** Format version of this file. */
  version: 1;
  /**
   * 2: specs keep `health.port` unset unless their file sets it. Older files hold a filled-in default
   * there (`env.port`, else 8080), which {@link readState} removes.
   */
  specs?: 2;
  /** The last commit whose specs were applied. */
  commit?: string;
  updated_at?: string;
  apps: Record<string, DeployedApp>;
}

/** An empty state (first start). */
export function emptyState(): DurableState {
  return { version: 1, apps: {} };
}

/** The state.json of a local path. */
export function statePath(localPath: string): string {
  return join(localPath, "state.json");
}

/**
 * Reads state.json. A missing file is an empty state; an unreadable or corrupt one is moved aside
 * (`state.json.corrupt-<time>`) and reported, never fatal: the next reconcile rebuilds it from git.
 */
export async function readState(file: string, logger: Logger): Promise<DurableState> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    logger.warn(`cannot read ${file}: ${(error as Error).message}; starting with no remembered apps`);
    return emptyState();
  }
  try {
    const raw = JSON.parse(text) as Partial<DurableState>;
    if (raw.version !== 1 || typeof raw.apps !== "object" || raw.apps === null) throw new Error("not a bc-gitops state file");
    const state: DurableState = { version: 1, apps: {}, ...(raw.commit ? { commit: raw.commit } : {}) };
    for (const [name, app] of Object.entries(raw.apps)) {
      const spec = AppSpec.safeParse(app?.spec);
      if (spec.success && raw.specs !== 2) forgetDefaultHealthPort(spec.data);
      if (spec.success && spec.data.name === name) state.apps[name] = { ...app, spec: spec.data };
      else logger.warn(`${file}: ignoring the remembered app "${name}": its spec no longer validates`);
    }
    return state;
  } catch (error) {
    const aside = `${file}.corrupt-${Date.now()}`;
    logger.warn(`${file} is corrupt (${(error as Error).message}); moved it to ${aside} and starting with no remembered apps`);
    await rename(file, aside).catch(() => {});
    return emptyState();
  }
}

/**
 * Removes the `health.port` an older agent filled in (`env.port` when it is a port from 1 to 65535,
 * else 8080) so a remembered spec equals the same spec file read today: the app is checked where it
 * listens, and the first tick after an upgrade of the agent sees no change. A port that the file set
 * to that same value means the same, except 8080 with `env.port: 0`, which the older agent took for
 * the default too: the first tick then applies the spec file's port as a health change.
 */
function forgetDefaultHealthPort(spec: AppSpec): void {
  const port = Number(spec.env.port);
  const filledIn = Number.isInteger(port) && port > 0 && port < 65536 ? port : 8080;
  if (spec.health.port === filledIn) delete spec.health.port;
}

/** Writes state.json atomically: a temp file in the same directory, flushed, then renamed over. */
export async function writeState(file: string, state: DurableState): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.writeFile(JSON.stringify({ ...state, specs: 2, updated_at: new Date().toISOString() }, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
