/**
 * File-tree helpers of the workspaces: walking, copying, hard-linking and hashing a directory, and
 * the safety checks that keep a workspace's files inside it (symlink targets, archive entries).
 */
import { createHash } from "node:crypto";
import { copyFile, link, lstat, mkdir, readdir, readFile, readlink, realpath, stat, symlink } from "node:fs/promises";
import { isAbsolute, join, relative, sep } from "node:path";
import { GitopsError, messageOf } from "./errors.ts";
import type { ErrorCode, RetryClass } from "./errors.ts";
import { exec } from "./exec.ts";
import { redact } from "./redact.ts";

/** What content hashes and copies of a source tree leave out. */
const SKIP: ReadonlySet<string> = new Set(["node_modules", ".git"]);

const fail = (message: string, code: ErrorCode, retry: RetryClass, cause?: unknown) =>
  new GitopsError(redact(message), { code, retry, cause });

/** `sha256-<hex16>` over the sorted relative paths and contents under `dir` (node_modules, .git skipped). */
export async function treeHash(dir: string): Promise<string> {
  const entries = (await walk(dir, SKIP)).filter((e) => e.kind !== "dir").sort((a, b) => (a.rel < b.rel ? -1 : 1));
  const hash = createHash("sha256");
  for (const entry of entries) {
    const content = entry.kind === "link" ? `->${await readlink(join(dir, entry.rel))}` : await readFile(join(dir, entry.rel));
    hash.update(`${entry.kind}\0${entry.rel}\0${content.length}\0`).update(content);
  }
  return `sha256-${hash.digest("hex").slice(0, 16)}`;
}

interface Entry { rel: string; kind: "file" | "dir" | "link" }

/** Every file, directory and symlink under `dir` (symlinks are not followed), parents before children. */
async function walk(dir: string, skip: ReadonlySet<string>, rel = "", out: Entry[] = []): Promise<Entry[]> {
  for (const dirent of await readdir(join(dir, rel), { withFileTypes: true })) {
    if (skip.has(dirent.name)) continue;
    const path = rel ? `${rel}/${dirent.name}` : dirent.name;
    if (dirent.isSymbolicLink()) out.push({ rel: path, kind: "link" });
    else if (dirent.isDirectory()) {
      out.push({ rel: path, kind: "dir" });
      await walk(dir, skip, path, out);
    } else if (dirent.isFile()) out.push({ rel: path, kind: "file" });
  }
  return out;
}

/** Copies `from` into `to` (created), node_modules and .git left out; symlinks are recreated as they were. */
export async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const entry of await walk(from, SKIP)) {
    const [src, dst] = [join(from, entry.rel), join(to, entry.rel)];
    if (entry.kind === "dir") await mkdir(dst);
    else if (entry.kind === "link") await symlink(await readlink(src), dst);
    else await copyFile(src, dst);
  }
}

/** A copy of `from` made of hard links (copies across devices); symlinks are recreated as they were. `to` must not exist. */
export async function linkTree(from: string, to: string): Promise<void> {
  await mkdir(to);
  for (const entry of await walk(from, new Set())) {
    const [src, dst] = [join(from, entry.rel), join(to, entry.rel)];
    if (entry.kind === "dir") await mkdir(dst);
    else if (entry.kind === "link") await symlink(await readlink(src), dst);
    else await link(src, dst).catch(() => copyFile(src, dst));
  }
}

/** Refuses (`E_UNSAFE`) symlinks under `root` that lead outside it: absolute targets, and `..` targets that do not resolve inside. */
export async function checkLinks(root: string): Promise<void> {
  const real = await realpath(root);
  for (const entry of await walk(root, new Set())) {
    if (entry.kind !== "link") continue;
    const path = join(root, entry.rel);
    const target = await readlink(path);
    // Relative targets without `..` only descend; `..` ones must really resolve inside (a dangling one cannot).
    const escapes = isAbsolute(target) || (target.split(/[\\/]/).includes("..") && !inside(real, await realpath(path).catch(() => "")));
    if (escapes) throw fail(`the symlink ${entry.rel} -> ${target} leads outside the workspace`, "E_UNSAFE", "stalled");
  }
}

/** True when `path` (non-empty) is `root` or below it, lexically. */
export function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return path !== "" && !rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel);
}

/**
 * Extracts the tar `archive` into `into` (created): lists it first and refuses (`E_UNSAFE`) any
 * absolute or `..` entry, so nothing is extracted from an archive that would write outside.
 */
export async function unpack(archive: string, into: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const options = { timeoutMs, ...(signal ? { signal } : {}) };
  const listing = await exec("tar", ["-tf", archive], options).catch((error) => {
    throw fail(`cannot read the archive: ${messageOf(error)}`, "E_RUNTIME", "stalled", error);
  });
  const escapes = (entry: string) => isAbsolute(entry) || /^[A-Za-z]:/.test(entry) || entry.split(/[\\/]/).includes("..");
  const bad = listing.stdout.split("\n").find(escapes);
  if (bad !== undefined) {
    throw fail(`the archive contains the entry ${JSON.stringify(bad)}, which would land outside the workspace`, "E_UNSAFE", "stalled");
  }
  await mkdir(into, { recursive: true });
  await exec("tar", ["-xf", archive, "-C", into, "--no-same-owner"], options);
}

/** True when something (even a dangling symlink) is at `path`. */
export const exists = (path: string): Promise<boolean> => lstat(path).then(() => true, () => false);
/** True when `path` is (or links to) a directory. */
export const isDir = (path: string): Promise<boolean> => stat(path).then((s) => s.isDirectory(), () => false);
/** True when `path` is (or links to) a regular file. */
export const isFile = (path: string): Promise<boolean> => stat(path).then((s) => s.isFile(), () => false);
