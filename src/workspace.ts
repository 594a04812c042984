/**
 * Workspaces: an app's code materialised on disk, one directory per revision
 * (`<localPath>/workspace/<app>/<revision>/`), built in a temp directory and renamed into place
 * only when complete, so a crash never leaves a half-installed workspace that is later used.
 * Sources (SPEC section 2): npm (integrity-checked registry tarball), git (a commit's tree),
 * path (a copy) and tarball (checksum verified before anything is unpacked).
 */
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmdirSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gitRevision, gitTree } from "./_git-source.ts";
import { download, npmTarball, verify } from "./_npm.ts";
import { SerialQueues } from "./_serial.ts";
import { dependencyKey, installDependencies, linkDependencies, withHomes } from "./_dependencies.ts";
import { entryOf } from "./_entry.ts";
import { checkLinks, copyTree, exists, readJson, sourceDir, treeHash, unpack } from "./_tree.ts";
import { GitopsError, messageOf, redactedError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { silentLogger } from "./logger.ts";
import { APP_NAME } from "./spec.ts";
import type { AppSpec, Source } from "./spec.ts";
import type { Emit } from "./telemetry.ts";
import { noEmit } from "./telemetry.ts";

/** A complete workspace, ready to import. */
export interface PreparedWorkspace {
  app: string;
  /** What was materialised: npm version, git commit, or `sha256-<hex16>` content/checksum hash. */
  revision: string;
  /** `<localPath>/workspace/<app>/<revision>`: the package root (a git `subdir` is the root). */
  dir: string;
  /** Absolute path of the module to import (spec `entry`, else package.json exports/module/main, else index.js|ts|mjs); a process app with `command` and none of these: the package root. */
  entry: string;
  /** True when an existing complete workspace was reused: no network, no install. */
  reused: boolean;
}

/** Options of {@link Workspaces}. */
export interface WorkspacesOptions {
  /** The agent's `local_path`; workspaces go to `workspace/`, app data to `data/`. */
  localPath: string;
  logger?: Logger;
  /** Receives `bc_gitops:deps:start|stop`. */
  emit?: Emit;
  /** Deadline of each subprocess and download (default 120 000 ms). */
  timeoutMs?: number;
}

/** File written into every complete workspace; a revision directory without it is never used. */
export const WORKSPACE_MARKER = ".bc-gitops-workspace.json";

const REVISION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

interface Marker {
  format: 1;
  source: string;
  deps: string | null;
}
interface Context {
  repoDir?: string;
  /** The git tree id of a path inside the repository, where known: a path source's revision, without hashing its files. */
  treeOf?: ((path: string) => string | undefined) | undefined;
  signal?: AbortSignal;
}

const fail = redactedError;
/** Materialises, lists and deletes app workspaces under one `local_path`. */
export class Workspaces {
  readonly #localPath: string;
  readonly #root: string;
  readonly #data: string;
  readonly #logger: Logger;
  readonly #emit: Emit;
  readonly #timeoutMs: number;
  readonly #queues = new SerialQueues();

  /** Touches nothing on disk. */
  constructor(options: WorkspacesOptions) {
    if (!options.localPath) throw fail("local_path is empty", "E_CONFIG", "stalled");
    this.#localPath = resolve(options.localPath);
    this.#root = resolve(options.localPath, "workspace");
    this.#data = resolve(options.localPath, "data");
    this.#logger = options.logger ?? silentLogger;
    this.#emit = options.emit ?? noEmit;
    this.#timeoutMs = options.timeoutMs ?? 120_000;
  }

  /**
   * The revision `spec`'s source points at now: npm → the exact version; git → the full commit sha
   * of `ref` (a full sha as is, else `git ls-remote`; default the remote's HEAD); path → `sha256-<hex16>`
   * over the sorted relative paths and contents (node_modules and .git skipped); tarball →
   * `sha256-<hex16>` of the declared checksum. Relative paths and git urls are relative to `repoDir`.
   * A path source that breaks the path rules (`sourceDir` in _tree.ts) is refused with `E_UNSAFE`.
   */
  async resolveRevision(spec: AppSpec, context: Context = {}): Promise<string> {
    const source = spec.source;
    if (source.type === "npm") return checkRevision(spec.version);
    if (source.type === "git") return gitRevision(source, this.#gitOptions(context));
    if (source.type === "path") {
      const { dir, what } = await this.#pathSource(spec, context.repoDir);
      return treeOf(spec, context) ?? named(what, treeHash(dir));
    }
    const digest =
      source.sha256?.toLowerCase() ??
      createHash("sha256")
        .update(source.integrity ?? "")
        .digest("hex");
    return `sha256-${digest.slice(0, 16)}`;
  }

  /**
   * The complete workspace of `spec` at `revision` (default: {@link resolveRevision}), reused when it
   * exists; else built in `<app>/.tmp-<random>/` and renamed into place once complete. Stale `.tmp-*`
   * directories of the app are deleted first. Calls for the same app run one at a time. For npm the
   * revision is the version fetched, for git the commit; for path and tarball sources a given
   * revision only selects an existing workspace, and a new one is named by its content.
   * Dependencies unchanged since an earlier revision are linked from it (`shareWith`'s first: the
   * revision that runs, whose packages are loaded already).
   */
  async prepare(
    spec: AppSpec,
    context: Context & { revision?: string; shareWith?: string } = {},
  ): Promise<PreparedWorkspace> {
    const app = checkApp(spec.name);
    return this.#serial(app, async () => {
      // Checked even when a revision is given: a cached workspace of a now refused path is not
      // reused (a missing one may be: that is how a restarted agent runs offline).
      if (spec.source.type === "path") await this.#pathSource(spec, context.repoDir).catch(notFoundOk);
      let revision = checkRevision(context.revision ?? (await this.resolveRevision(spec, context)));
      const appDir = join(this.#root, app);
      // Synchronous calls where they are single and small (see _fs-sync.ts).
      mkdirSync(appDir, { recursive: true });
      for (const name of readdirSync(appDir)) {
        if (name.startsWith(".tmp-")) await rm(join(appDir, name), { recursive: true, force: true });
      }
      const key = sourceKey(spec.source);
      const reuse = async (rev: string) => {
        const dir = join(appDir, rev);
        const marker = await readMarker(dir);
        return marker?.source === key
          ? { app, revision: rev, dir, entry: await entryOf(dir, spec), reused: true }
          : undefined;
      };
      const existing = await reuse(revision);
      if (existing) return existing;

      const started = performance.now();
      const tmp = mkdtempSync(join(appDir, ".tmp-"));
      try {
        const root = await named(describe(spec), this.#materialise(spec, revision, tmp, context));
        await named(describe(spec), checkLinks(root));
        // Path and tarball revisions name content: what was copied (files may have changed since the
        // revision was resolved) or what the checksum pins, whatever revision the caller asked for.
        const type = spec.source.type;
        const tree = treeOf(spec, context);
        const actual =
          type === "path"
            ? (tree ?? (await treeHash(root)))
            : type === "tarball"
              ? await this.resolveRevision(spec)
              : revision;
        if (actual !== revision) {
          revision = actual;
          const same = await reuse(revision);
          if (same) return same;
        }
        const deps = await this.#dependencies(spec, appDir, root, revision, context);
        // A package without a usable entry never becomes a workspace.
        const entry = relative(root, await entryOf(root, spec));
        writeFileSync(join(root, WORKSPACE_MARKER), JSON.stringify({ format: 1, source: key, deps } satisfies Marker));
        const dir = join(appDir, revision);
        if (await exists(dir)) renameSync(dir, join(tmp, "replaced"));
        renameSync(root, dir);
        this.#logger.debug(`prepared ${app} ${revision} in ${Math.round(performance.now() - started)} ms`, {
          app,
          revision,
          dir,
        });
        return { app, revision, dir, entry: join(dir, entry), reused: false };
      } finally {
        // Empty once the workspace moved out of it; else (a failure, a replaced workspace) removed whole.
        if (!removedEmpty(tmp)) await rm(tmp, { recursive: true, force: true });
      }
    });
  }

  /** The complete revisions present for `app`, oldest first. */
  async revisions(app: string): Promise<string[]> {
    const appDir = join(this.#root, checkApp(app));
    const found: { name: string; at: number }[] = [];
    for (const name of await readdir(appDir).catch(() => [])) {
      if (!REVISION.test(name)) continue;
      const marker = join(appDir, name, WORKSPACE_MARKER);
      const info = await stat(marker).catch(() => undefined);
      if (info?.isFile() && (await readMarker(join(appDir, name)))) found.push({ name, at: info.mtimeMs });
    }
    return found.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : 1)).map((r) => r.name);
  }

  /** Deletes every revision (and leftover) of `app` except those in `keep` and the revisions whose `node_modules` they link to. */
  async prune(app: string, keep: readonly string[]): Promise<void> {
    const appDir = join(this.#root, checkApp(app));
    return this.#serial(app, async () => {
      const kept = await withHomes(appDir, keep);
      const doomed = (await readdir(appDir).catch(() => [])).filter((name) => !kept.includes(name));
      if (doomed.length === 0) return;
      // Renamed away first: a half-deleted directory must never look like a revision.
      const trash = await mkdtemp(join(appDir, ".tmp-prune-"));
      for (const name of doomed) await rename(join(appDir, name), join(trash, name));
      await rm(trash, { recursive: true, force: true });
    });
  }

  /** Deletes all of `app`'s workspaces (its data directory stays). */
  async remove(app: string): Promise<void> {
    checkApp(app);
    return this.#serial(app, async () => {
      await mkdir(this.#root, { recursive: true });
      for (const name of await readdir(this.#root)) {
        if (name.startsWith(`.tmp-remove~${app}~`)) await rm(join(this.#root, name), { recursive: true, force: true });
      }
      const trash = join(this.#root, `.tmp-remove~${app}~${randomBytes(6).toString("hex")}`);
      if (!(await exists(join(this.#root, app)))) return;
      await rename(join(this.#root, app), trash);
      await rm(trash, { recursive: true, force: true });
    });
  }

  /** `<localPath>/data/<app>`, created on demand; survives upgrades and workspace removal. */
  async dataDir(app: string): Promise<string> {
    const dir = join(this.#data, checkApp(app));
    mkdirSync(dir, { recursive: true }); // synchronous: see _fs-sync.ts
    return dir;
  }

  #serial<T>(app: string, task: () => Promise<T>): Promise<T> {
    return this.#queues.run(app, task);
  }

  /** Puts the source's files into a directory under `tmp` and returns that package root. */
  async #materialise(spec: AppSpec, revision: string, tmp: string, context: Context): Promise<string> {
    const source = spec.source;
    const tree = join(tmp, "tree");
    if (source.type === "path") {
      const { dir, what } = await this.#pathSource(spec, context.repoDir);
      // A path the commit's tree names is read from a snapshot that never changes: its files are
      // hard-linked, not copied.
      await named(what, copyTree(dir, tree, { link: treeOf(spec, context) !== undefined }));
      return tree;
    }
    if (source.type === "git") {
      await gitTree(source, revision, tmp, tree, this.#gitOptions(context));
      return tree;
    }
    const archive = join(tmp, "download.tgz");
    if (source.type === "npm") {
      await writeFile(
        archive,
        await npmTarball(source.package ?? spec.name, revision, source.registry, this.#download(context.signal)),
      );
    } else {
      const bytes = await this.#read(source.url, context);
      const expected = source.sha256 ? [`sha256-${Buffer.from(source.sha256, "hex").toString("base64")}`] : [];
      for (const sri of [...expected, ...(source.integrity ? [source.integrity] : [])]) {
        verify(bytes, sri, `tarball ${source.url} of ${spec.name}`, "stalled");
      }
      await writeFile(archive, bytes);
    }
    await this.#unpack(archive, tree, context.signal);
    // npm tarballs hold `package/`, release tarballs `<name>-<version>/`: one top directory is the root.
    const top = await readdir(tree, { withFileTypes: true });
    return top.length === 1 && top[0]?.isDirectory() ? join(tree, top[0].name) : tree;
  }

  /** The real directory of a path source once it passes the path rules (see {@link sourceDir}), and how errors name it. */
  async #pathSource(spec: AppSpec, repoDir: string | undefined): Promise<{ dir: string; what: string }> {
    const given = spec.source.type === "path" ? spec.source.path : "";
    const what = describe(spec);
    return { dir: await sourceDir(given, repoDir ?? process.cwd(), this.#localPath, what), what };
  }

  #download(signal: AbortSignal | undefined) {
    return { timeoutMs: this.#timeoutMs, signal };
  }

  /** A tarball source's bytes: http(s) download, `file://` URL or a local path (relative to the repo). */
  async #read(url: string, context: Context): Promise<Uint8Array> {
    if (/^https?:\/\//i.test(url)) {
      const response = await download(url, this.#download(context.signal));
      if (!response.ok) throw fail(`downloading ${url} failed: HTTP ${response.status}`, "E_RUNTIME", "backoff");
      return new Uint8Array(await response.arrayBuffer());
    }
    if (/^[a-z][a-z0-9+.-]+:/i.test(url) && !/^file:/i.test(url)) {
      throw fail(`tarball url ${url}: use http(s)://, file:// or a path`, "E_SPEC", "stalled");
    }
    const file = /^file:/i.test(url) ? fileURLToPath(url) : local(url, context.repoDir);
    return new Uint8Array(
      await readFile(file).catch((error) => {
        throw fail(`cannot read tarball ${file}: ${messageOf(error)}`, "E_NOT_FOUND", "stalled", error);
      }),
    );
  }

  /** Lists the archive first and refuses special files, escaping names and links; only then extracts it. */
  async #unpack(archive: string, into: string, signal?: AbortSignal): Promise<void> {
    await unpack(archive, into, this.#timeoutMs, signal);
  }

  #gitOptions(context: Context) {
    return { timeoutMs: this.#timeoutMs, logger: this.#logger, repoDir: context.repoDir, signal: context.signal };
  }

  /**
   * Installs the dependencies when package.json has any; when an earlier revision has the same
   * dependency key, links its packages instead (see _dependencies.ts), preferring `shareWith`'s.
   * Returns their key.
   */
  async #dependencies(
    spec: AppSpec,
    appDir: string,
    root: string,
    revision: string,
    context: Context & { shareWith?: string },
  ): Promise<string | null> {
    const key = await dependencyKey(spec, root);
    if (key === null) return null;
    if (!(await exists(join(root, "node_modules")))) {
      const newestFirst = (await this.revisions(spec.name)).reverse();
      const order =
        context.shareWith === undefined
          ? newestFirst
          : [context.shareWith, ...newestFirst.filter((r) => r !== context.shareWith)];
      const candidates: string[] = [];
      for (const rev of order) if ((await readMarker(join(appDir, rev)))?.deps === key) candidates.push(rev);
      if (await linkDependencies(appDir, root, revision, candidates, this.#logger)) return key;
    }
    await installDependencies(spec, root, {
      logger: this.#logger,
      emit: this.#emit,
      timeoutMs: this.#timeoutMs,
      signal: context.signal,
    });
    return key;
  }
}

function checkApp(app: string): string {
  if (typeof app !== "string" || !APP_NAME.test(app)) {
    throw fail(`${JSON.stringify(app)} is not a valid app name`, "E_UNSAFE", "stalled");
  }
  return app;
}

/** The git tree id of `spec`'s path source, when it is a path inside the repository whose tree the context knows. */
function treeOf(spec: AppSpec, context: Context): string | undefined {
  const source = spec.source;
  if (source.type !== "path" || isAbsolute(source.path) || !context.treeOf) return undefined;
  const tree = context.treeOf(source.path);
  return tree && REVISION.test(tree) ? tree : undefined;
}

function checkRevision(revision: string): string {
  if (typeof revision !== "string" || !REVISION.test(revision)) {
    const why = 'use letters, digits, ".", "_", "+" or "-", starting with a letter or digit';
    throw fail(`${JSON.stringify(revision)} cannot be a revision: ${why}`, "E_UNSAFE", "stalled");
  }
  return revision;
}

/** What besides the revision decides a workspace's content (another package or subdir at the same revision is another workspace). */
function sourceKey(source: Source): string {
  if (source.type === "npm") return `npm:${source.package ?? ""}`;
  return source.type === "git" ? `git:${source.subdir ?? ""}` : source.type;
}

/** Removes `dir` when it is an empty directory; false when it is not (or is gone). */
function removedEmpty(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/** Rethrows anything but `E_NOT_FOUND`. */
const notFoundOk = (error: unknown) => {
  if (!(error instanceof GitopsError && error.code === "E_NOT_FOUND")) throw error;
};

/** How errors name an app's source: `path source "code/web" of web`, `tarball https://… of web`. */
function describe(spec: AppSpec): string {
  const source = spec.source;
  if (source.type === "path") return `path source ${JSON.stringify(source.path)} of ${spec.name}`;
  if (source.type === "npm") return `npm package ${source.package ?? spec.name}@${spec.version} of ${spec.name}`;
  return `${source.type === "git" ? "git source" : "tarball"} ${source.url} of ${spec.name}`;
}

/** `promise`, with a refusal of the source's files (`E_UNSAFE`) prefixed by `what` names them, unless it already is. */
async function named<T>(what: string, promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    if (!(error instanceof GitopsError) || error.code !== "E_UNSAFE" || error.message.startsWith(what)) throw error;
    throw fail(`${what}: ${error.message}`, "E_UNSAFE", "stalled", error);
  }
}

function local(path: string, repoDir: string | undefined): string {
  return resolve(repoDir ?? process.cwd(), path);
}

async function readMarker(dir: string): Promise<Marker | undefined> {
  const marker = (await readJson(join(dir, WORKSPACE_MARKER))) as Partial<Marker> | undefined;
  return marker?.format === 1 && typeof marker.source === "string" ? (marker as Marker) : undefined;
}
