/**
 * The spec files of a commit, listed from git's trees rather than from a checkout: an app
 * directory whose tree id did not change costs one cached lookup, and a spec file is identified
 * by its blob id, so the loader reads and validates only blobs it has not seen.
 */
import { isAbsolute } from "node:path";
import { treePath, type GitObjects } from "./_git-objects.ts";
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
  const dirs = (await objects.tree(entry.id))
    .filter((e) => !e.name.startsWith("."))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const link of dirs.filter((e) => e.type === "link")) listing.links.push({ dir: link.name, file: at(link.name) });
  const trees = dirs.filter((e) => e.type === "tree");
  // Every tree request is in flight at once: git answers them in one stream.
  const contents = await Promise.all(trees.map((dir) => objects.tree(dir.id)));
  trees.forEach((dir, i) => {
    const files = new Map(contents[i]!.filter((e) => e.type === "blob" || e.type === "link").map((e) => [e.name, e]));
    const name = SPEC_FILE_NAMES.find((n) => files.has(n));
    if (name === undefined) return;
    const file = files.get(name)!;
    const ref: SpecFileRef = {
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
    listing.files.push(ref);
  });
  return listing;
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
