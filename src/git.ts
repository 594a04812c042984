/**
 * The git source of the reconciler: a bare clone of one branch of the gitops repository (kept by
 * {@link GitClone}, src/_git-clone.ts), and read-only snapshots of given commits written from its
 * object store and created atomically, so apps are always read from a checkout that is never
 * half-updated; reads of the object store that re-clone a damaged store once.
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { GitClone, type FetchResult, type GitCloneOptions } from "./_git-clone.ts";
import { isAbort, missingCommit, reasonOf } from "./_git-errors.ts";
import type { GitObjects } from "./_git-objects.ts";
import { Snapshots } from "./_snapshots.ts";
import { writeSparse, type SnapshotManifest } from "./_sparse-snapshot.ts";
import { isDir as isDirectory } from "./_tree.ts";
import { FULL_SHA } from "./_git.ts";
import { GitopsError } from "./errors.ts";
import { redact } from "./redact.ts";

export type { FetchResult } from "./_git-clone.ts";

/** Options of {@link GitSource}: the remote, the branch, the working area `dir` (see GitCloneOptions). */
export type GitSourceOptions = GitCloneOptions;

/** A remote, a clone and its snapshots of one branch, all kept under `dir`. */
export class GitSource {
  /** The bare clone, its object reader and the queue every operation below runs in. */
  readonly #clone: GitClone;
  readonly #snapshots: Snapshots;
  /** The sparse snapshot written last, to hard-link unchanged files from; forgotten with the clone. */
  #lastSparse: { dir: string; manifest: SnapshotManifest } | undefined;

  /** Validates the options (E_CONFIG); touches nothing on disk. */
  constructor(options: GitSourceOptions) {
    this.#clone = new GitClone(options, {
      sweep: () => this.#snapshots.sweep(),
      replacing: () => {
        this.#lastSparse = undefined;
      },
    });
    this.#snapshots = new Snapshots(join(this.#clone.dir, "snapshots"));
  }

  /** The reader of the clone's object store (trees and blobs without a checkout). */
  get objects(): GitObjects {
    return this.#clone.objects;
  }

  /** Ends the object reader's process (an agent stopping); a later read starts a new one. */
  async close(): Promise<void> {
    await this.#clone.objects.close();
  }

  /** The bare clone's directory (for commit verification). */
  get gitDir(): string {
    return this.#clone.gitDir;
  }

  /**
   * Returns the remote branch head, bringing the local clone up to it. Clones the first time;
   * re-clones a missing or damaged clone (its branch does not resolve, `git fsck` fails, a stale
   * lock blocks it), or one whose origin is not `repoUrl`; follows force-pushes. When the head
   * equals `known` and the clone is intact it runs one `git ls-remote` and nothing else. Throws
   * E_GIT_UNREACHABLE (backoff) when the remote cannot be read, also when a fetch fails on a sound
   * clone, leaving the clone and snapshots as they were; E_GIT (backoff, `details.errno`) naming the
   * directory when the local disk is full, read-only or not writable, never re-cloning for it;
   * E_GIT_REF (stalled) when the branch does not exist; E_ABORTED when `signal` aborts. With
   * `head` (the new head a verified webhook named), the branch is fetched without `ls-remote`.
   */
  fetch(known: string | undefined, signal?: AbortSignal, options: { head?: string } = {}): Promise<FetchResult> {
    return this.#clone.fetch(known, signal, options);
  }

  /**
   * A checkout of `commit` written from the object store: the whole tree at
   * `<dir>/snapshots/<commit>`, or with `paths` only those paths (relative to the repository) at
   * `<dir>/snapshots/<commit>-<digest of the paths>`. Files the snapshot written before holds
   * unchanged are hard-linked from it. Returned at once if it exists, else written into a temp
   * directory and renamed into place, so a snapshot never changes once there. A clone that cannot
   * produce the commit is re-cloned once. Throws E_UNSAFE for anything but a full hex object name,
   * E_GIT (stalled) when the commit is not in the repository, E_GIT (backoff, `details.errno`)
   * naming the directory when the disk is full or not writable.
   */
  async snapshot(commit: string, options: { paths?: readonly string[]; signal?: AbortSignal } = {}): Promise<string> {
    checkCommit(commit);
    const { signal } = options;
    const paths = options.paths ? [...new Set(options.paths)].sort() : undefined;
    const name = paths
      ? `${commit}-${createHash("sha256").update(paths.join("\0")).digest("hex").slice(0, 12)}`
      : commit;
    const target = this.#snapshots.pathOf(name);
    if (await isDirectory(target)) return target;
    return this.#clone.exclusive(async () => {
      if (await isDirectory(target)) return target;
      const write = async () => {
        mkdirSync(this.#snapshots.dir, { recursive: true });
        const { tree } = await this.#clone.objects.commit(commit);
        let manifest: SnapshotManifest | undefined;
        await this.#snapshots.create(name, async (into) => {
          signal?.throwIfAborted();
          manifest = await writeSparse(this.#clone.objects, tree, paths ?? [""], into, this.#lastSparse);
        });
        this.#lastSparse = { dir: target, manifest: manifest! };
      };
      try {
        await write();
      } catch (error) {
        if (isAbort(error) || signal?.aborted) throw error;
        const disk = this.#clone.diskError(error);
        if (disk) throw disk;
        await this.#repair(commit, error, "check out", signal);
        try {
          await write();
        } catch (again) {
          if (isAbort(again)) throw again;
          throw this.#clone.diskError(again) ?? missingCommit(commit, this.#clone.origin, again);
        }
      }
      return target;
    });
  }

  /**
   * Runs `task` on the object store for `commit`. When the commit cannot be read, a clone that
   * lacks it while its branch resolves is reported (E_GIT, stalled); a damaged one is re-cloned
   * once and `task` runs again.
   */
  async read<T>(commit: string, task: (objects: GitObjects) => Promise<T>, signal?: AbortSignal): Promise<T> {
    checkCommit(commit);
    try {
      return await task(this.#clone.objects);
    } catch (error) {
      if (isAbort(error) || signal?.aborted) throw error;
      if (!(error instanceof GitopsError) || (error.code !== "E_GIT" && error.code !== "E_TIMEOUT")) throw error;
      // An intact store that still fails this read is not the clone's fault: no re-clone.
      const recovered = await this.#clone.exclusive(() =>
        this.#repair(commit, error, "read", signal, { keepIntact: true }),
      );
      if (!recovered) throw error;
      try {
        return await task(this.#clone.objects);
      } catch (again) {
        if (isAbort(again)) throw again;
        throw missingCommit(commit, this.#clone.origin, again);
      }
    }
  }

  /**
   * After `error` reading `commit`, inside the queue: a sound clone (its branch resolves) that lacks
   * the commit cannot be helped by a re-clone (E_GIT, stalled); with `keepIntact`, neither can one
   * whose history `git fsck` finds complete (returns false). Else the clone is re-cloned (true).
   */
  async #repair(
    commit: string,
    error: unknown,
    doing: string,
    signal: AbortSignal | undefined,
    options: { keepIntact?: boolean } = {},
  ): Promise<boolean> {
    const state = await this.#clone.verify(signal);
    const sound = state.ok && state.commit !== undefined;
    if (sound && !(await this.#clone.hasCommit(commit, signal))) throw missingCommit(commit, this.#clone.origin, error);
    if (sound && options.keepIntact && (await this.#clone.intactObjects(signal))) return false;
    await this.#clone.reclone(state.ok ? `cannot ${doing} ${commit}: ${reasonOf(error)}` : state.reason, signal);
    return true;
  }

  /** Removes every snapshot (and leftover temp directory) whose name is not in `keep`. */
  async prune(keep: readonly string[]): Promise<void> {
    await this.#clone.exclusive(() => this.#snapshots.prune(keep));
  }

  /**
   * When the last commit up to `commit` that changed `path` was committed (ms since the epoch, the
   * committer date, `git log -1 --format=%ct`), read from the clone: the same answer on every host.
   */
  async commitTime(commit: string, path: string, signal?: AbortSignal): Promise<number> {
    checkCommit(commit);
    const { stdout } = await this.#clone.exclusive(() =>
      this.#clone.git(["log", "-1", "--format=%ct", commit, "--", path], signal),
    );
    const seconds = Number(stdout.trim());
    if (!stdout.trim() || !Number.isFinite(seconds))
      throw new GitopsError(`no commit up to ${commit.slice(0, 12)} changed ${path}`, { code: "E_GIT" });
    return seconds * 1000;
  }
}

/** Throws E_UNSAFE unless `commit` is a full object id (it names directories). */
function checkCommit(commit: string): void {
  if (typeof commit !== "string" || !FULL_SHA.test(commit)) {
    const shown = JSON.stringify(redact(String(commit)));
    throw new GitopsError(`refusing to read ${shown}: not a full commit id`, { code: "E_UNSAFE", retry: "stalled" });
  }
}
