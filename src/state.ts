/**
 * Durable state: what the agent has deployed (app, spec, version, revision, workspace) and the last
 * applied commit, in `<local_path>/state.json`, written atomically (temp file + rename) so a crash
 * mid-write never leaves a torn file. A restarted agent reads it to bring apps back before (and
 * even without) network access.
 */
import { mkdirSync, renameSync } from "node:fs";
import { open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { splitSecrets } from "./secrets/secrets-file.ts";
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

/** The largest entry one app may take in state.json (compact JSON bytes); a bigger one is left out. */
export const MAX_APP_STATE_BYTES = 1024 * 1024;
/** The deepest nesting an app's entry may have (spec files may nest at most 1000 levels). */
export const MAX_APP_STATE_DEPTH = 1024;
/** The largest state.json read back: far above what {@link writeState} writes, below what a runtime can hold as one string. */
export const MAX_STATE_FILE_BYTES = 256 * 1024 * 1024;

/** What {@link writeState} left out: app name -> a message naming the app and the limit it broke. */
export type OmittedApps = Record<string, string>;

/**
 * Reads state.json. A missing file is an empty state; an unreadable, corrupt or oversized one is
 * moved aside (`state.json.corrupt-<time>`) and reported, never fatal: the next reconcile rebuilds
 * it from git. One bad app entry (invalid, too deep, or left out when written) is skipped with a
 * warning naming it; the other apps are kept. With `readOnly` (`bc-gitops plan`, which reads the
 * state of an agent that may be running), a bad file is reported and read as empty, never moved.
 */
export async function readState(
  file: string,
  logger: Logger,
  options: { readOnly?: boolean } = {},
): Promise<DurableState> {
  const setAside = (why: string) => (options.readOnly ? reportOnly(file, logger, why) : moveAside(file, logger, why));
  let text: string;
  try {
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      if (size > MAX_STATE_FILE_BYTES)
        return await setAside(
          `it is ${mb(size)}, more than bc-gitops writes (at most ${mb(MAX_APP_STATE_BYTES)} per app); an older version may have written a deeply nested spec`,
        );
      text = new TextDecoder().decode(await handle.readFile());
    } finally {
      await handle.close();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    logger.warn(`cannot read ${file}: ${(error as Error).message}; starting with no remembered apps`);
    return emptyState();
  }
  let raw: Partial<DurableState> & { omitted?: unknown };
  try {
    raw = JSON.parse(text) as typeof raw;
    if (raw.version !== 1 || typeof raw.apps !== "object" || raw.apps === null)
      throw new Error("not a bc-gitops state file");
  } catch (error) {
    return setAside((error as Error).message);
  }
  const state: DurableState = {
    version: 1,
    apps: {},
    ...(typeof raw.commit === "string" ? { commit: raw.commit } : {}),
  };
  const later = "it is deployed from git once the repository is read";
  for (const message of Object.values(typeof raw.omitted === "object" && raw.omitted !== null ? raw.omitted : {})) {
    logger.warn(`${file}: ${String(message)}; ${later}`);
  }
  for (const [name, app] of Object.entries(raw.apps)) {
    const why = entryProblem(app);
    if (why) {
      logger.warn(`${file}: ignoring the remembered app "${name}": ${why}; ${later}`);
      continue;
    }
    let spec: ReturnType<typeof AppSpec.safeParse> | undefined;
    const remembered = splitSecrets(app.spec);
    try {
      spec = AppSpec.safeParse(remembered.spec);
      if (spec.success && remembered.secrets) (spec.data as AppSpec).secrets = remembered.secrets;
    } catch {
      // A value the schema's own code cannot digest: the same as invalid, for this app only.
    }
    if (spec?.success && raw.specs !== 2) forgetDefaultHealthPort(spec.data);
    if (spec?.success && spec.data.name === name) state.apps[name] = { ...app, spec: spec.data };
    else logger.warn(`${file}: ignoring the remembered app "${name}": its spec no longer validates; ${later}`);
  }
  return state;
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

/**
 * Writes state.json atomically: a temp file in the same directory, flushed, then renamed over.
 * Each app is one line of compact JSON, so the file grows linearly with the specs (indented JSON
 * grows with the square of their nesting: 800 MB for one 20,000-level env). An app whose entry
 * nests deeper than {@link MAX_APP_STATE_DEPTH} or takes more than {@link MAX_APP_STATE_BYTES} is
 * left out (listed under `omitted` with the reason, and returned) so it cannot fill the disk or
 * stop the other apps from being remembered; it keeps running, and is redeployed from git after a
 * restart instead of restored.
 */
export async function writeState(file: string, state: DurableState): Promise<OmittedApps> {
  const omitted: OmittedApps = {};
  const lines: string[] = [];
  for (const [name, app] of Object.entries(state.apps)) {
    const entry = serialize(app);
    if ("json" in entry) lines.push(`    ${JSON.stringify(name)}: ${entry.json}`);
    else omitted[name] = `app "${name}" is not saved in state.json: ${entry.error}`;
  }
  const head = {
    version: state.version,
    specs: 2,
    ...(state.commit !== undefined ? { commit: state.commit } : {}),
    updated_at: new Date().toISOString(),
  };
  const top = Object.entries(head).map(([key, value]) => `  ${JSON.stringify(key)}: ${JSON.stringify(value)}`);
  if (Object.keys(omitted).length > 0) top.push(`  "omitted": ${JSON.stringify(omitted)}`);
  top.push(lines.length > 0 ? `  "apps": {\n${lines.join(",\n")}\n  }` : `  "apps": {}`);
  // Synchronous where the call is single and small (see _fs-sync.ts); the write and its flush are not.
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.writeFile(`{\n${top.join(",\n")}\n}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    renameSync(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return omitted;
}

/**
 * Entries already serialized, by object: an entry is replaced, never changed in place, when its
 * app changes, so a state of 1000 apps of which one changed serializes one.
 */
const serialized = new WeakMap<DeployedApp, { json: string } | { error: string }>();

/** One app's entry as compact JSON, or why it cannot be saved. */
function serialize(app: DeployedApp): { json: string } | { error: string } {
  const known = app !== null && typeof app === "object" ? serialized.get(app) : undefined;
  if (known) return known;
  const result = serializeOnce(app);
  if (app !== null && typeof app === "object") serialized.set(app, result);
  return result;
}

function serializeOnce(app: DeployedApp): { json: string } | { error: string } {
  const problem = entryProblem(app);
  if (problem) return { error: problem };
  let json: string;
  try {
    json = JSON.stringify(app);
  } catch (error) {
    return { error: `its entry cannot be written as JSON (${(error as Error).message})` };
  }
  const size = new TextEncoder().encode(json).byteLength;
  if (size > MAX_APP_STATE_BYTES)
    return {
      error: `its entry takes ${mb(size)}, over the ${mb(MAX_APP_STATE_BYTES)} limit per app: shrink its spec (env)`,
    };
  return { json };
}

/** Why an app entry cannot be kept (not an object, or nested too deep), or `undefined`. Iterative: the value may nest deeper than the stack. */
function entryProblem(app: unknown): string | undefined {
  if (app === null || typeof app !== "object" || Array.isArray(app)) return "its entry is not an object";
  const todo: [object, number][] = [[app, 1]];
  while (todo.length > 0) {
    const [value, depth] = todo.pop()!;
    if (depth > MAX_APP_STATE_DEPTH) return `its spec nests deeper than ${MAX_APP_STATE_DEPTH} levels`;
    for (const child of Object.values(value))
      if (child !== null && typeof child === "object") todo.push([child, depth + 1]);
  }
  return undefined;
}

async function reportOnly(file: string, logger: Logger, why: string): Promise<DurableState> {
  logger.warn(`${file} is corrupt (${why}); reading it as no remembered apps`);
  return emptyState();
}

async function moveAside(file: string, logger: Logger, why: string): Promise<DurableState> {
  const aside = `${file}.corrupt-${Date.now()}`;
  logger.warn(`${file} is corrupt (${why}); moved it to ${aside} and starting with no remembered apps`);
  await rename(file, aside).catch(() => {});
  return emptyState();
}

function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}
