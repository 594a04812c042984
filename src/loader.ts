/**
 * Loading the desired state: every `apps_dir/<app>/` spec file, parsed and validated. One bad file
 * never hides the others: the result holds every valid app, every error and every warning, and
 * the names of apps whose specs are broken (so the reconciler leaves those apps alone).
 */
import { readdirSync, readFileSync, type Dirent } from "node:fs";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { join, relative } from "node:path";
import { validateText, type FileIssue, type FileResult } from "./_spec-validation.ts";
import { GitopsError, messageOf } from "./errors.ts";
import type { AppSpec } from "./spec.ts";
import {
  secretsFilesOnDisk,
  secretsOfApp,
  type AppSecretsResult,
  type SecretsFileRef,
} from "./secrets/secrets-file.ts";
import { SPEC_FILE_NAMES, decodeSpec, formatOf, parseSpecText, type SpecFormat } from "./spec-file.ts";
import { order, plan } from "./plan.ts";

export { formatPath, validateText } from "./_spec-validation.ts";

/** One problem found in a spec file. `file` is relative to the directory given to {@link loadApps}'s `root`. */
export interface SpecIssue extends FileIssue {
  file: string;
}

/** A valid app spec and the file it came from. */
export interface LoadedApp {
  spec: AppSpec;
  file: string;
}

/** Everything loading found: valid apps, errors, warnings, and the names of apps whose spec is broken. */
export interface LoadResult {
  apps: LoadedApp[];
  errors: SpecIssue[];
  warnings: SpecIssue[];
  /** Directory names and (where readable) `name` fields of apps whose spec did not validate. */
  invalid: string[];
  /** Broken spec files that give no readable `name` (relative to `root`): any app could be in them. */
  unnamed: string[];
}

/** Options of {@link loadApps}. */
export interface LoadOptions {
  /** Issue paths are relative to this directory (default: the apps directory's parent). */
  root?: string;
  /** Warnings become errors (`validate --strict`). */
  strict?: boolean;
  /** Reuses results for files whose content did not change (a running agent re-reading its repo). */
  cache?: SpecCache;
}

/**
 * Remembers the validation result of each distinct file content, so re-reading an unchanged
 * repository costs only the file reads. Results are shared: treat returned specs as read-only.
 */
export class SpecCache {
  readonly #entries = new Map<string, FileResult>();
  /**
   * What a listing's file ref came to, by the ref object: a store whose files never change (a git
   * commit's trees) hands out the same ref for an unchanged app directory, so an unchanged app
   * costs one lookup. Refs listed from a directory on disk are new objects each time: never found.
   */
  readonly #byRef = new WeakMap<SpecFileRef, ListedFile>();
  readonly maxEntries: number;

  constructor(maxEntries = 10_000) {
    this.maxEntries = maxEntries;
  }
  /** @internal */
  get(key: string): FileResult | undefined {
    return this.#entries.get(key);
  }
  /** @internal */
  set(key: string, result: FileResult): void {
    if (this.#entries.size >= this.maxEntries) this.#entries.clear();
    this.#entries.set(key, result);
  }
  /** @internal */
  listed(ref: SpecFileRef): ListedFile | undefined {
    return this.#byRef.get(ref);
  }
  /** @internal */
  remember(ref: SpecFileRef, listed: ListedFile): void {
    this.#byRef.set(ref, listed);
  }
}

/** One spec file of a listing, validated, with its secrets file and references checked. */
interface ListedFile {
  outcome: FileResult;
  secrets: AppSecretsResult<AppSpec> | undefined;
}

/**
 * Loads and validates every app spec under `appsDir`. Never throws for bad specs (each one is an
 * error on its own file); throws a {@link GitopsError} (`E_SPEC`, stalled) only if `appsDir` itself
 * cannot be read, naming it relative to `root`.
 */
export async function loadApps(appsDir: string, options: LoadOptions = {}): Promise<LoadResult> {
  const root = options.root ?? join(appsDir, "..");
  const listing: SpecListing = { files: [], links: [] };
  const entries = readAppsDir(appsDir, root);
  const visible = entries.filter((e) => !e.name.startsWith("."));
  const dirs = visible
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  // git stores symlinks; one could make the agent read a file outside the repository.
  for (const link of visible.filter((e) => e.isSymbolicLink())) {
    listing.links.push({ dir: link.name, file: relative(root, join(appsDir, link.name)) });
  }
  for (const dir of dirs) {
    const found = specFileIn(join(appsDir, dir));
    if (!found) continue;
    const path = join(appsDir, dir, found.name);
    listing.files.push({
      dir,
      name: found.name,
      file: relative(root, path) || found.name,
      link: found.link,
      read: () => readFileSync(path),
      secrets: secretsFilesOnDisk(join(appsDir, dir), root, found.entries),
    });
  }
  return loadListing(listing, options);
}

/** A spec file of an apps directory, wherever it is stored (a directory on disk, a git tree). @internal */
export interface SpecFileRef {
  /** The app directory's name. */
  dir: string;
  /** The file's name (`app.yaml`). */
  name: string;
  /** Its path as issues name it (relative to the repository). */
  file: string;
  /** The file is a symbolic link: an error, never followed. */
  link: boolean;
  /** An id of the content when the store has one (a git blob id): results are cached by it, and a known one is not read again. */
  id?: string;
  /** The file's bytes. */
  read(): Uint8Array | Promise<Uint8Array>;
  /** The secrets files next to it (`secrets.sops.*`, see `secrets/secrets-file.ts`), in priority order. */
  secrets?: SecretsFileRef[];
}

/** What an apps directory holds: one spec file per app directory, and entries that are symbolic links. @internal */
export interface SpecListing {
  files: SpecFileRef[];
  links: { dir: string; file: string }[];
}

/**
 * Validates the spec files of a listing (see {@link loadApps}, which lists a directory on disk;
 * the agent lists a commit's tree). Never throws for bad specs.
 */
export async function loadListing(listing: SpecListing, options: LoadOptions = {}): Promise<LoadResult> {
  const result: LoadResult = { apps: [], errors: [], warnings: [], invalid: [], unnamed: [] };
  for (const link of listing.links) {
    result.errors.push({ file: link.file, message: SYMLINK });
    result.invalid.push(link.dir);
    result.unnamed.push(link.file);
  }

  // Reads in batches of 100: synchronous reads of files on disk are several times faster than
  // promise-based fs on Deno and as fast on Bun, and yielding between batches keeps apps served
  // in-process from stalling.
  // A batch's reads from an object store are in flight together (git answers them in one stream).
  const files: { ref: SpecFileRef; listed: ListedFile }[] = [];
  let yielded = performance.now();
  for (let i = 0; i < listing.files.length; i += 100) {
    // Unchanged files are cache hits and cost microseconds: yield only when a batch took a while.
    if (performance.now() - yielded > 5) {
      await yieldToEventLoop();
      yielded = performance.now();
    }
    const batch = listing.files.slice(i, i + 100);
    const known = batch.map((ref) => options.cache?.listed(ref));
    // Only refs not seen before are awaited: an unchanged repository costs no promise per app.
    const fresh = known.includes(undefined)
      ? await Promise.all(batch.map((ref, j) => known[j] ?? listFile(ref, options)))
      : (known as ListedFile[]);
    batch.forEach((ref, j) => files.push({ ref, listed: fresh[j]! }));
  }

  const byName = new Map<string, LoadedApp[]>();
  const refs = new Map<string, SpecFileRef>();
  for (const { ref, listed } of files) {
    const { dir, file } = ref;
    const { outcome, secrets } = listed;
    for (const i of outcome.errors) result.errors.push({ file, ...i });
    for (const i of outcome.warnings) result.warnings.push({ file, ...i });
    if (secrets) {
      result.errors.push(...secrets.errors);
      result.warnings.push(...secrets.warnings);
    }
    if (outcome.spec && secrets && secrets.errors.length === 0) {
      const list = byName.get(outcome.spec.name) ?? [];
      list.push({ spec: secrets.spec, file });
      refs.set(file, ref);
      byName.set(outcome.spec.name, list);
    } else {
      result.invalid.push(dir);
      const name = outcome.spec?.name ?? outcome.name;
      if (name && name !== dir) result.invalid.push(name);
      if (!name) result.unnamed.push(file);
    }
  }
  for (const [name, apps] of byName) {
    if (apps.length === 1) {
      result.apps.push(apps[0]!);
      continue;
    }
    for (const app of apps) {
      const at = await locateName(refs.get(app.file)!);
      const others = apps
        .filter((a) => a !== app)
        .map((a) => a.file)
        .join(", ");
      result.errors.push({
        file: app.file,
        ...at,
        path: "name",
        message: `duplicate app name "${name}": also used by ${others}; app names must be unique`,
      });
    }
    result.invalid.push(name);
  }
  if (options.strict) {
    // A warning made an error is no longer "ignored": say that --strict refuses it.
    result.errors.push(
      ...result.warnings.map((w) => ({
        ...w,
        message: `${w.message.replace(/; it is ignored$/, "")} (refused by --strict)`,
      })),
    );
    const warned = new Set(result.warnings.map((w) => w.file));
    result.apps = result.apps.filter((app) => !warned.has(app.file) || void result.invalid.push(app.spec.name));
    result.warnings = [];
  }
  result.invalid = [...new Set(result.invalid)].sort();
  result.errors.sort(byPosition);
  result.warnings.sort(byPosition);
  return result;
}

/**
 * Repository-level problems the agent would report: dependency cycles and dependencies that are
 * not in the repository, one issue per app involved (at its `depends_on`).
 */
export function dependencyIssues(result: Pick<LoadResult, "apps" | "invalid">): SpecIssue[] {
  const desired = {
    apps: Object.fromEntries(result.apps.map(({ spec }) => [spec.name, { spec }])),
    invalid: new Set(result.invalid),
  };
  const files = new Map(result.apps.map(({ spec, file }) => [spec.name, file]));
  return order(plan(desired, {}), desired, {}).errors.map((e) => ({
    file: files.get(e.app) ?? e.app,
    path: "depends_on",
    message: e.message,
  }));
}

const SYMLINK =
  "is a symbolic link: bc-gitops reads only regular files and directories of the repository (a link could point outside it); commit the file itself";

/** The spec file an app directory uses, by the priority of {@link SPEC_FILE_NAMES}; `undefined` if none. */
export function findSpecFile(dir: string): string | undefined {
  const found = specFileIn(dir);
  return found && !found.link ? found.name : undefined;
}

/** The spec file name of `dir` by priority, and whether it is a symlink (an error, never followed). */
function specFileIn(dir: string): { name: string; link: boolean; entries: ReadonlyMap<string, Dirent> } | undefined {
  let entries: Map<string, Dirent>;
  try {
    entries = new Map(
      readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isFile() || e.isSymbolicLink())
        .map((e) => [e.name, e]),
    );
  } catch {
    return undefined;
  }
  const name = SPEC_FILE_NAMES.find((n) => entries.has(n));
  return name === undefined ? undefined : { name, link: entries.get(name)!.isSymbolicLink(), entries };
}

/** The entries of the apps directory; a clear error, naming it relative to the repository, when there is none. */
function readAppsDir(appsDir: string, root: string): Dirent[] {
  try {
    return readdirSync(appsDir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const shown = `${relative(root, appsDir) || "."}/`;
    // Never the error's own message: it names the agent's local path.
    throw appsDirError(shown, code ?? messageOf(error).replaceAll(appsDir, shown), error);
  }
}

/**
 * The error for an apps directory (`shown`, e.g. `apps/`) that cannot be listed: `ENOENT` (it does
 * not exist), `ENOTDIR` (it is a file) or any other reason. E_SPEC, stalled. @internal
 */
export function appsDirError(shown: string, reason: string, cause?: unknown): GitopsError {
  const options = { code: "E_SPEC" as const, retry: "stalled" as const, cause, details: { apps_dir: shown } };
  if (reason === "ENOENT") {
    return new GitopsError(
      `${shown} does not exist, so every running app is kept (git drops an empty directory: deleting the last app deletes ${shown}); to remove every app, commit an empty ${shown} holding a .gitkeep file`,
      options,
    );
  }
  if (reason === "ENOTDIR")
    return new GitopsError(`${shown} is not a directory: it must hold one directory per app`, options);
  return new GitopsError(`cannot read ${shown}: ${reason}`, options);
}

/** Where a (valid, so parseable) spec file writes its name; only needed for the rare duplicate-name error. */
async function locateName(ref: SpecFileRef): Promise<{ line?: number; column?: number }> {
  const text = decodeSpec(await ref.read());
  return (await (await parseSpecText(text, formatOf(ref.name))).locate(["name"])) ?? {};
}

/** Validates the spec file `ref` and checks the app's secrets file and references (remembered by `ref` in the cache). */
async function listFile(ref: SpecFileRef, options: LoadOptions): Promise<ListedFile> {
  const loaded = ref.link
    ? { outcome: { errors: [{ message: SYMLINK }], warnings: [] }, readFailed: false }
    : await loadFile(ref, formatOf(ref.name), options);
  const { outcome } = loaded;
  // The app's secrets file and env references (src/secrets/): a broken one makes the app invalid.
  const secrets = outcome.spec && (await secretsOfApp(ref.secrets ?? [], outcome.spec, { specFile: ref.file }));
  const listed = { outcome, secrets };
  // A file that could not be read (a store that did not answer in time) is read again next time.
  if (!loaded.readFailed) options.cache?.remember(ref, listed);
  return listed;
}

async function loadFile(
  ref: SpecFileRef,
  format: SpecFormat,
  options: LoadOptions,
): Promise<{ outcome: FileResult; readFailed: boolean }> {
  try {
    return { outcome: await loadFileOnce(ref, format, options), readFailed: false };
  } catch (error) {
    if (!(error instanceof ReadFailure)) throw error;
    return { outcome: { errors: [{ message: error.message }], warnings: [] }, readFailed: true };
  }
}

/** A spec file's bytes could not be read (not remembered: the next read may work). */
class ReadFailure extends Error {}

async function loadFileOnce(ref: SpecFileRef, format: SpecFormat, options: LoadOptions): Promise<FileResult> {
  const byId = ref.id === undefined ? undefined : `${format}\0#${ref.id}`;
  const known = byId === undefined ? undefined : options.cache?.get(byId);
  if (known) return known;
  let bytes: Uint8Array;
  try {
    bytes = await ref.read();
  } catch (error) {
    throw new ReadFailure(`cannot read file: ${messageOf(error)}`);
  }
  let text: string;
  try {
    text = decodeSpec(bytes);
  } catch (error) {
    return { errors: [{ message: (error as Error).message }], warnings: [] };
  }
  const key = byId ?? `${format}\0${text}`;
  const cached = options.cache?.get(key);
  if (cached) return cached;
  let outcome: FileResult;
  try {
    outcome = await validateText(text, format);
  } catch (error) {
    // A parser or validator failing in a way nobody foresaw is still this file's problem alone.
    outcome = { errors: [{ message: `cannot read this spec: ${messageOf(error)}` }], warnings: [] };
  }
  options.cache?.set(key, outcome);
  return outcome;
}

/** `file:line:col path: message`, as every bc-gitops error about a spec is printed. */
export function formatIssue(issue: SpecIssue): string {
  const where = [issue.file, issue.line, issue.line ? issue.column : undefined]
    .filter((p) => p !== undefined)
    .join(":");
  return `${where} ${issue.path ? `${issue.path}: ` : ""}${issue.message}`;
}

function byPosition(a: SpecIssue, b: SpecIssue): number {
  return a.file.localeCompare(b.file) || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}

/**
 * Where the specs of `path` are: `path/<appsDir>` when `path` is a gitops repository, else `path`
 * itself when it already is an apps directory. Issue paths are reported relative to `path`.
 */
export async function resolveAppsDir(
  path: string,
  appsDir = "apps",
): Promise<{ appsDir: string; root: string } | undefined> {
  const candidate = join(path, appsDir);
  if (await isDirectory(candidate)) return { appsDir: candidate, root: path };
  if (await isDirectory(path)) return { appsDir: path, root: path };
  return undefined;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    readdirSync(path);
    return true;
  } catch {
    return false;
  }
}
