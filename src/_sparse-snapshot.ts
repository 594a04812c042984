/**
 * Sparse snapshots: only the paths of a commit that something needs as files on disk (path
 * sources, tarballs committed to the repository), written from the object store. A file whose
 * blob the previous snapshot already holds at the same path is hard-linked from it, so a new
 * commit costs only its changed blobs. Symbolic links are written as links, and a needed path
 * that goes through one also gets the link's target (inside the repository), so the files look
 * exactly as in a full checkout and the path rules (`sourceDir`) judge them the same way.
 */
import { linkSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import { slicer } from "./_fs-sync.ts";
import { treePath, type GitObjects, type TreeEntry } from "./_git-objects.ts";

/**
 * What a written snapshot holds, to reuse next time: `path` → `<kind>:<blob id>` of every file and
 * link, and `path/` → `tree:<id>` of every directory.
 */
export type SnapshotManifest = Map<string, string>;

/** How many symbolic links one needed path may go through. */
const MAX_HOPS = 40;

/**
 * The tree id of each of `paths` (relative, `/`-separated) in the tree `root`, for those that are
 * directories reached without a symbolic link: the revision of a path source, free of hashing.
 */
export async function treesOf(
  objects: GitObjects,
  root: string,
  paths: readonly string[],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await Promise.all(
    paths.map(async (path) => {
      const { entry, at } = await objects.entryAt(root, path);
      if (entry?.type === "tree" && at === treePath(path)) out.set(treePath(path), entry.id);
    }),
  );
  return out;
}

/**
 * Writes the entries of `paths` of tree `root` under `into` (which exists and is empty), linking
 * unchanged files from `previous` (a snapshot written earlier, and its manifest). Returns the new
 * snapshot's manifest. Paths that do not exist are skipped (the reader reports them missing).
 */
export async function writeSparse(
  objects: GitObjects,
  root: string,
  paths: readonly string[],
  into: string,
  previous?: { dir: string; manifest: SnapshotManifest },
): Promise<SnapshotManifest> {
  const manifest: SnapshotManifest = new Map();
  const done = new Set<string>();
  // Synchronous file system calls, yielding now and then (see _fs-sync.ts).
  const sys = slicer();
  const mkdir = (dir: string) => sys(() => mkdirSync(dir, { recursive: true }));
  const covered = (path: string) => [...done].some((d) => d === "" || path === d || path.startsWith(`${d}/`));

  const writeFileEntry = async (rel: string, entry: TreeEntry, parentExists = false) => {
    const key = `${entry.type}${entry.executable ? "+x" : ""}:${entry.id}`;
    manifest.set(rel, key);
    const target = join(into, rel);
    if (!parentExists) await mkdir(dirname(target));
    if (entry.type === "link") {
      const to = (await objects.blob(entry.id)).toString("utf8");
      return sys(() => symlinkSync(to, target));
    }
    if (previous?.manifest.get(rel) === key) {
      try {
        return await sys(() => linkSync(join(previous.dir, rel), target));
      } catch {
        // Gone or on another file system: written from the object store below.
      }
    }
    const bytes = await objects.blob(entry.id);
    await sys(() => writeFileSync(target, bytes, { mode: entry.executable ? 0o755 : 0o644 }));
  };

  const writeTree = async (rel: string, id: string): Promise<void> => {
    // A directory the previous snapshot holds with the same tree id is moved over whole (one
    // rename): that snapshot is superseded by this one and only pruned afterwards.
    if (rel !== "" && previous?.manifest.get(`${rel}/`) === `tree:${id}`) {
      await mkdir(dirname(join(into, rel)));
      const moved = await sys(() => {
        try {
          renameSync(join(previous.dir, rel), join(into, rel));
          return true;
        } catch {
          return false;
        }
      });
      if (moved) {
        for (const [path, key] of previous.manifest)
          if (path.startsWith(`${rel}/`)) {
            manifest.set(path, key);
            previous.manifest.delete(path);
          }
        return;
      }
    }
    manifest.set(`${rel}/`, `tree:${id}`);
    await mkdir(join(into, rel));
    const entries = await objects.tree(id);
    await Promise.all(
      entries.map((entry) => {
        const child = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.type === "tree") return writeTree(child, entry.id);
        if (entry.type === "commit") return mkdir(join(into, child));
        return writeFileEntry(child, entry, true);
      }),
    );
  };

  const queue = [...new Set(paths.map(treePath))]
    .sort((a, b) => a.length - b.length)
    .map((path) => ({ path, hops: 0 }));
  while (queue.length > 0) {
    const { path, hops } = queue.shift()!;
    if (path.startsWith("..") || covered(path)) continue;
    const { entry, at } = await objects.entryAt(root, path);
    if (!entry) continue;
    done.add(at);
    if (entry.type === "tree") await writeTree(at, entry.id);
    else if (entry.type === "blob") {
      if (at === path) await writeFileEntry(at, entry);
    } else if (entry.type === "link") {
      if (!manifest.has(at)) await writeFileEntry(at, entry);
      const target = (await objects.blob(entry.id)).toString("utf8");
      // A link out of the repository is written and left for the path rules to refuse.
      if (hops < MAX_HOPS && !posix.isAbsolute(target)) {
        const rest = path.slice(at.length).replace(/^\//, "");
        const resolved = treePath(posix.join(posix.dirname(at), target, rest));
        if (!resolved.startsWith("..")) queue.push({ path: resolved, hops: hops + 1 });
      }
      done.delete(at);
    }
  }
  return manifest;
}
