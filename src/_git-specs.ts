/**
 * The spec files of a commit, listed from git's trees rather than from a checkout: an app
 * directory whose tree id did not change costs one cached lookup, and a spec file is identified
 * by its blob id, so the loader reads and validates only blobs it has not seen.
 */
import { isAbsolute } from "node:path";
import { treePath, type GitObjects, type TreeEntry } from "./_git-objects.ts";
import { treesOf } from "./_sparse-snapshot.ts";
import { possibleSources } from "./fleet/overrides.ts";
import type { GitSource } from "./git.ts";
import {
  appsDirError,
  loadListing,
  type LoadResult,
  type SpecCache,
  type SpecFileRef,
  type SpecListing,
} from "./loader.ts";
import type { AppSpec, Source } from "./spec.ts";
import { SECRETS_FILE_NAMES } from "./secrets/secrets-file.ts";
import { SPEC_FILE_NAMES } from "./spec-file.ts";

/**
 * Lists the spec files under `appsDir` of the tree `root` (a commit's tree), as
 * {@link loadListing} takes them. Throws E_SPEC (stalled) when `appsDir` is missing or not a
 * directory, with the same messages as for a directory on disk.
 */
export async function listSpecs(objects: GitObjects, root: string, appsDir: string): Promise<SpecListing> {
  const prefix = treePath(appsDir);
  const shown = `${prefix || "."}/`;
  const { entry } = await objects.entryAt(root, prefix);
  if (!entry) throw appsDirError(shown, "ENOENT");
  if (entry.type === "link")
    throw appsDirError(shown, "it is a symbolic link in the repository; commit the directory itself");
  if (entry.type !== "tree") throw appsDirError(shown, "ENOTDIR");
  const at = (name: string) => (prefix ? `${prefix}/${name}` : name);
  const listing: SpecListing = { files: [], links: [] };
  // One pass over what may be thousands of entries: git lists a tree by name already, except that
  // it compares a directory as `name/`; sorted again only when that put one out of order.
  const entries = await objects.tree(entry.id);
  let dirs: TreeEntry[] = [];
  let sorted = true;
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    if (sorted && dirs.length > 0 && dirs[dirs.length - 1]!.name > e.name) sorted = false;
    dirs.push(e);
  }
  if (!sorted) dirs = dirs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // An app directory with the tree id it had before gives the same ref: the loader remembers what
  // a ref came to, so an unchanged app costs a lookup here and one there.
  let known = refsByTree.get(objects);
  if (!known || known.size > MAX_REMEMBERED_REFS) refsByTree.set(objects, (known = new Map()));
  const trees: { dir: TreeEntry; key: string }[] = [];
  const unseen: { dir: TreeEntry; key: string }[] = [];
  for (const dir of dirs) {
    if (dir.type === "link") listing.links.push({ dir: dir.name, file: at(dir.name) });
    if (dir.type !== "tree") continue;
    const tree = { dir, key: `${prefix}\0${dir.name}\0${dir.id}` };
    trees.push(tree);
    if (!known.has(tree.key)) unseen.push(tree);
  }
  // Every tree request is in flight at once: git answers them in one stream.
  const contents = await Promise.all(unseen.map(({ dir }) => objects.tree(dir.id)));
  unseen.forEach(({ dir, key }, i) => known.set(key, specRef(objects, dir, contents[i]!, at)));
  for (const { key } of trees) {
    const ref = known.get(key);
    if (ref) listing.files.push(ref);
  }
  return listing;
}

/** The spec file refs of app directories already listed, by object store, then apps directory, name and tree id (`null`: no spec file). */
const refsByTree = new WeakMap<GitObjects, Map<string, SpecFileRef | null>>();
/** Past this many, the remembered refs of an object store are forgotten and listed again. */
const MAX_REMEMBERED_REFS = 20_000;

/** The ref of the spec file in the app directory `dir` (whose entries are `entries`), or `null` when it has none. */
function specRef(
  objects: GitObjects,
  dir: TreeEntry,
  entries: readonly TreeEntry[],
  at: (name: string) => string,
): SpecFileRef | null {
  const files = new Map(entries.filter((e) => e.type === "blob" || e.type === "link").map((e) => [e.name, e]));
  const name = SPEC_FILE_NAMES.find((n) => files.has(n));
  if (name === undefined) return null;
  const file = files.get(name)!;
  return {
    dir: dir.name,
    name,
    file: at(`${dir.name}/${name}`),
    link: file.type === "link",
    id: file.id,
    read: () => objects.blob(file.id),
    secrets: SECRETS_FILE_NAMES.flatMap((n) => {
      const entry = files.get(n);
      if (!entry) return [];
      return [
        { name: n, file: at(`${dir.name}/${n}`), link: entry.type === "link", read: () => objects.blob(entry.id) },
      ];
    }),
  };
}

/** What {@link readCommit} gives. */
export interface CommitRead {
  load: LoadResult;
  /** Committer time (seconds since the epoch). */
  committedAt: number;
  /** The commit's sparse snapshot: the files its path sources and in-repository tarballs need, nothing else. */
  repoDir: string;
  /** The git tree id of each path source directory inside the repository, by `treePath`. */
  trees: Map<string, string>;
}

/**
 * Reads the specs of `commit` from the object store (blobs already validated are not read again
 * when `cache` is given), and writes the sparse snapshot of the paths they need as files.
 */
export async function readCommit(
  git: GitSource,
  commit: string,
  appsDir: string,
  options: { cache?: SpecCache; signal?: AbortSignal | undefined } = {},
): Promise<CommitRead> {
  const { signal } = options;
  // One read of the object store: the commit, its specs, and the tree ids of the path sources
  // they name (in a fleet, an override may give some hosts another source: every one counts).
  const { load, committedAt, possible, trees } = await git.read(
    commit,
    async (objects) => {
      const { tree, committedAt } = await objects.commit(commit);
      const listing = await listSpecs(objects, tree, appsDir);
      const load = await loadListing(listing, options.cache ? { cache: options.cache } : {});
      const possible = load.apps.flatMap(({ spec }) => possibleSources(spec));
      const sources = possible.flatMap((source) =>
        source.type === "path" && !isAbsolute(source.path) ? [source.path] : [],
      );
      const trees = sources.length ? await treesOf(objects, tree, sources) : new Map<string, string>();
      return { load, committedAt, possible, trees };
    },
    signal,
  );
  const repoDir = await git.snapshot(commit, {
    // Secrets files too: the runtime's specs are resolved from them (`secrets/resolve.ts`).
    paths: [
      ...possible.flatMap((source) => repoPathOf(source) ?? []),
      ...load.apps.flatMap(({ spec }) => spec.secrets?.file ?? []),
    ],
    ...(signal ? { signal } : {}),
  });
  return { load, committedAt, repoDir, trees };
}

/** The path inside the repository whose files `source` needs on disk, if any. */
function repoPathOf(source: Source): string | undefined {
  if (source.type === "path") return isAbsolute(source.path) ? undefined : treePath(source.path);
  if (source.type === "tarball" && !/^[a-z][a-z0-9+.-]*:/i.test(source.url) && !isAbsolute(source.url))
    return treePath(source.url);
  return undefined;
}
