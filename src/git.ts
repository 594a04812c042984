/**
 * The git source of the reconciler: a bare clone of one branch of the gitops repository, and
 * read-only snapshots of given commits that are created atomically, so apps are always read from
 * a checkout that is never half-updated.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join, posix, resolve } from "node:path";
import { branchMissing, isAbort, missingCommit, reasonOf, unreachable, type Origin } from "./_git-errors.ts";
import { GitObjects } from "./_git-objects.ts";
import { Snapshots } from "./_snapshots.ts";
import { writeSparse, type SnapshotManifest } from "./_sparse-snapshot.ts";
import { sweepAbandoned, tempName } from "./_temp.ts";
import { isDir as isDirectory } from "./_tree.ts";
import { diskError, FULL_SHA, invalidBranch, isLocalPath, refusedTransport, runGit } from "./_git.ts";
import { GitopsError } from "./errors.ts";
import type { ExecResult } from "./exec.ts";
import type { Logger } from "./logger.ts";
import { silentLogger } from "./logger.ts";
import { redact, registerUrlCredentials } from "./redact.ts";
import type { Emit } from "./telemetry.ts";
import { noEmit } from "./telemetry.ts";

/** Options of {@link GitSource}. */
export interface GitSourceOptions {
  /** URL or local path of the repository; must not start with "-". Relative paths are resolved against the cwd. */
  repoUrl: string;
  /** Branch to track; must be a valid branch name (`git check-ref-format --branch` rules). */
  branch: string;
  /** Working area owned by the source: it holds `repo` (the bare clone) and `snapshots/<commit>/`. */
  dir: string;
  /** Deadline of every git call (default 60 000 ms). */
  timeoutMs?: number;
  logger?: Logger;
  /** Receives `bc_gitops:git:clone_start|clone_stop` and `bc_gitops:git:pull` (when commits were fetched). */
  emit?: Emit;
}

/** The outcome of {@link GitSource.fetch}. */
export interface FetchResult {
  /** The branch head now in the local clone. */
  commit: string;
  /** `commit` differs from the `known` commit passed in. */
  changed: boolean;
  /** The local clone was created from scratch during this call (first use, or a missing/damaged/foreign one). */
  recloned: boolean;
}

/** A remote, a clone and its snapshots of one branch, all kept under `dir`. */
export class GitSource {
  readonly #url: string;
  /** The redacted URL and the branch, as logs and errors name them. */
  readonly #origin: Origin;
  readonly #branch: string;
  readonly #ref: string;
  /** `dir`, the clone in it and the snapshots directory, all absolute. */
  readonly #dir: string;
  readonly #repo: string;
  readonly #snapshots: Snapshots;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #emit: Emit;
  /** Fingerprint of the clone when it was last verified; lets a no-change tick skip git entirely. */
  #trusted: string | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #tidied = false;
  /** The object store's reader (one `git cat-file --batch`), replaced with the clone. */
  readonly #objects: GitObjects;
  /** The sparse snapshot written last, to hard-link unchanged files from. */
  #lastSparse: { dir: string; manifest: SnapshotManifest } | undefined;

  /** Validates the options (E_CONFIG); touches nothing on disk. */
  constructor(options: GitSourceOptions) {
    const { repoUrl, branch, dir } = options;
    const config = (message: string) => new GitopsError(redact(message), { code: "E_CONFIG", retry: "stalled" });
    if (typeof repoUrl === "string") registerUrlCredentials(repoUrl);
    if (typeof repoUrl !== "string" || repoUrl.trim() === "") throw config("repo_url is empty");
    if (repoUrl.startsWith("-")) throw config(`repo_url ${repoUrl} must not start with "-"`);
    if (/[\u0000-\u001f\u007f]/.test(repoUrl))
      throw config(`repo_url ${JSON.stringify(repoUrl)} contains a control character`);
    const refused = refusedTransport(repoUrl);
    if (refused) throw config(`repo_url ${repoUrl} is refused: ${refused}`);
    const why = invalidBranch(branch);
    if (why)
      throw config(
        `branch ${JSON.stringify(branch)} is not a valid branch name: ${why} (see git check-ref-format --branch)`,
      );
    if (typeof dir !== "string" || dir === "") throw config("the git working directory is empty");
    if (options.timeoutMs !== undefined && !(options.timeoutMs > 0))
      throw config("git timeout must be a positive number of ms");
    this.#url = isLocalPath(repoUrl) ? resolve(repoUrl) : repoUrl;
    this.#branch = branch;
    this.#origin = { url: redact(this.#url), branch };
    this.#ref = `refs/heads/${branch}`;
    this.#dir = resolve(dir);
    this.#repo = join(this.#dir, "repo");
    this.#snapshots = new Snapshots(join(this.#dir, "snapshots"));
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#logger = options.logger ?? silentLogger;
    this.#emit = options.emit ?? noEmit;
    this.#objects = new GitObjects({ gitDir: this.#repo, cwd: this.#dir, timeoutMs: this.#timeoutMs });
  }

  /** The reader of the clone's object store (trees and blobs without a checkout). */
  get objects(): GitObjects {
    return this.#objects;
  }

  /** Ends the object reader's process (an agent stopping); a later read starts a new one. */
  async close(): Promise<void> {
    await this.#objects.close();
  }

  /** The bare clone's directory (for commit verification). */
  get gitDir(): string {
    return this.#repo;
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
  async fetch(known: string | undefined, signal?: AbortSignal, options: { head?: string } = {}): Promise<FetchResult> {
    // A verified webhook named the new head: fetch the branch at once, no ls-remote first. The
    // fetch itself says where the branch is (an older or replayed head is never taken for it).
    // (A deleted branch's all-zero `after` is no head.)
    const hinted =
      options.head !== undefined && FULL_SHA.test(options.head) && !/^0+$/.test(options.head)
        ? options.head
        : undefined;
    const remote = hinted === undefined ? await this.#lsRemote(signal) : undefined;
    return this.#exclusive(async () => {
      const trusted = await this.#isTrusted();
      if ((remote ?? hinted) === known && trusted) return { commit: known!, changed: false, recloned: false };
      // A clone unchanged on disk since it was last verified needs no second look; a failing fetch looks closer (#damage).
      const state = trusted ? { ok: true as const, commit: undefined } : await this.#verify(signal);
      if (!state.ok) {
        const commit = await this.#clone(state.reason, signal);
        return { commit, changed: commit !== known, recloned: true };
      }
      if (remote !== undefined && state.commit === remote)
        return { commit: remote, changed: remote !== known, recloned: false };
      const started = performance.now();
      let commit: string;
      try {
        const refspec = `+${this.#ref}:${this.#ref}`; // "+": a force-push replaces the ref
        await this.#git(["fetch", "--force", "--no-tags", "--", "origin", refspec], signal, { GIT_DIR: this.#repo });
        // Read by the running object reader: no rev-parse process.
        const head = await this.#objects.head(this.#ref).catch(() => undefined);
        commit = head && FULL_SHA.test(head) ? head : await this.#head(this.#repo, signal);
      } catch (error) {
        if (isAbort(error)) throw error;
        const disk = this.#diskError(error);
        if (disk) throw disk;
        // A re-clone downloads everything again: only a clone that is really damaged gets one.
        const damage = await this.#damage(error, signal);
        if (damage === undefined) throw unreachable(error, this.#origin, this.#timeoutMs);
        const commit = await this.#clone(damage, signal);
        return { commit, changed: commit !== known, recloned: true };
      }
      this.#emit("bc_gitops:git:pull", { duration_ms: performance.now() - started }, { commit });
      this.#logger.debug(`fetched ${this.#branch} at ${commit}`, { url: this.#origin.url });
      return { commit, changed: commit !== known, recloned: false };
    });
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
    return this.#exclusive(async () => {
      if (await isDirectory(target)) return target;
      const write = async () => {
        await mkdir(this.#snapshots.dir, { recursive: true });
        const { tree } = await this.#objects.commit(commit);
        let manifest: SnapshotManifest | undefined;
        await this.#snapshots.create(name, async (into) => {
          signal?.throwIfAborted();
          manifest = await writeSparse(this.#objects, tree, paths ?? [""], into, this.#lastSparse);
        });
        this.#lastSparse = { dir: target, manifest: manifest! };
      };
      try {
        await write();
        return target;
      } catch (error) {
        if (isAbort(error) || signal?.aborted) throw error;
        const disk = this.#diskError(error);
        if (disk) throw disk;
        // A sound clone (its branch resolves) that lacks the commit cannot be helped by a re-clone.
        const state = await this.#verify(signal);
        const sound = state.ok && state.commit !== undefined;
        if (sound && !(await this.#hasCommit(commit, signal))) throw missingCommit(commit, this.#origin, error);
        await this.#clone(state.ok ? `cannot check out ${commit}: ${reasonOf(error)}` : state.reason, signal);
        try {
          await write();
        } catch (again) {
          if (isAbort(again)) throw again;
          throw this.#diskError(again) ?? missingCommit(commit, this.#origin, again);
        }
        return target;
      }
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
      return await task(this.#objects);
    } catch (error) {
      if (isAbort(error) || signal?.aborted) throw error;
      if (!(error instanceof GitopsError) || (error.code !== "E_GIT" && error.code !== "E_TIMEOUT")) throw error;
      const recovered = await this.#exclusive(async () => {
        const state = await this.#verify(signal);
        const sound = state.ok && state.commit !== undefined;
        if (sound && !(await this.#hasCommit(commit, signal))) throw missingCommit(commit, this.#origin, error);
        if (sound && (await this.#intactObjects(signal))) return false;
        await this.#clone(state.ok ? `cannot read ${commit}: ${reasonOf(error)}` : state.reason, signal);
        return true;
      });
      if (!recovered) throw error;
      try {
        return await task(this.#objects);
      } catch (again) {
        if (isAbort(again)) throw again;
        throw missingCommit(commit, this.#origin, again);
      }
    }
  }

  /** Removes every snapshot (and leftover temp directory) whose name is not in `keep`. */
  async prune(keep: readonly string[]): Promise<void> {
    await this.#exclusive(() => this.#snapshots.prune(keep));
  }

  /** Removes the snapshot of `commit` (if any), so the next {@link snapshot} checks it out again from the object store. */
  async dropSnapshot(commit: string): Promise<void> {
    if (typeof commit !== "string" || !FULL_SHA.test(commit)) return;
    await this.#exclusive(() => this.#snapshots.drop(commit));
  }

  /**
   * The regular files under `dir` in `commit`, relative to `dir`, read from the object store with
   * one `git ls-tree` (no checkout): what a snapshot of the commit must show there.
   */
  async filesIn(commit: string, dir: string, signal?: AbortSignal): Promise<string[]> {
    if (typeof commit !== "string" || !FULL_SHA.test(commit))
      throw new GitopsError(`not a full commit id: ${JSON.stringify(commit)}`, { code: "E_UNSAFE" });
    const prefix = posix
      .normalize(dir.replaceAll("\\", "/"))
      .replace(/^\.\/?|\/$/g, "")
      .replace(/^\.$/, "");
    const { stdout } = await this.#exclusive(() =>
      this.#git(["ls-tree", "-r", "-z", commit, ...(prefix ? ["--", `${prefix}/`] : [])], signal, {
        GIT_DIR: this.#repo,
      }),
    );
    const regular = stdout.split("\0").filter((record) => /^100(644|755) blob [0-9a-f]+\t/.test(record));
    return regular.map((record) => record.slice(record.indexOf("\t") + 1 + (prefix ? prefix.length + 1 : 0)));
  }

  /**
   * When the last commit up to `commit` that changed `path` was committed (ms since the epoch, the
   * committer date, `git log -1 --format=%ct`), read from the clone: the same answer on every host.
   */
  async commitTime(commit: string, path: string, signal?: AbortSignal): Promise<number> {
    if (typeof commit !== "string" || !FULL_SHA.test(commit))
      throw new GitopsError(`not a full commit id: ${JSON.stringify(commit)}`, { code: "E_UNSAFE" });
    const { stdout } = await this.#exclusive(() =>
      this.#git(["log", "-1", "--format=%ct", commit, "--", path], signal, { GIT_DIR: this.#repo }),
    );
    const seconds = Number(stdout.trim());
    if (!stdout.trim() || !Number.isFinite(seconds))
      throw new GitopsError(`no commit up to ${commit.slice(0, 12)} changed ${path}`, { code: "E_GIT" });
    return seconds * 1000;
  }

  /** The remote head of the branch, by one `git ls-remote`. */
  async #lsRemote(signal: AbortSignal | undefined): Promise<string> {
    await mkdir(this.#dir, { recursive: true }).catch((error: unknown) => {
      throw this.#diskError(error) ?? error;
    });
    let result: ExecResult;
    try {
      result = await this.#git(["ls-remote", "--refs", "--exit-code", "--", this.#url, this.#ref], signal, {}, [0, 2]);
    } catch (error) {
      throw unreachable(error, this.#origin, this.#timeoutMs);
    }
    for (const line of result.stdout.split("\n")) {
      const [sha, ref] = line.trim().split("\t");
      if (ref === this.#ref && sha !== undefined && FULL_SHA.test(sha)) {
        this.#logger.debug(`ls-remote: ${this.#branch} is at ${sha}`, { url: this.#origin.url });
        return sha;
      }
    }
    throw branchMissing(this.#origin);
  }

  /** Is the clone there and in the state it was in when last verified (no subprocess)? */
  async #isTrusted(): Promise<boolean> {
    return this.#trusted !== undefined && (await this.#fingerprint()) === this.#trusted;
  }

  async #fingerprint(): Promise<string | undefined> {
    try {
      const [head, config] = await Promise.all([
        readFile(join(this.#repo, "HEAD"), "utf8"),
        readFile(join(this.#repo, "config"), "utf8"),
        stat(join(this.#repo, "objects")),
        stat(join(this.#repo, "refs")),
      ]);
      return `${head}\0${config}`;
    } catch {
      return undefined;
    }
  }

  /** Checks that the clone is a readable repository of `repoUrl`; `commit` is its branch head, if any. */
  async #verify(
    signal: AbortSignal | undefined,
  ): Promise<{ ok: true; commit: string | undefined } | { ok: false; reason: string }> {
    this.#trusted = undefined;
    if (!(await isDirectory(this.#repo))) return { ok: false, reason: "no local clone" };
    let head: ExecResult;
    let origin: ExecResult;
    try {
      [head, origin] = await Promise.all([
        this.#git(
          ["rev-parse", "--verify", "--quiet", `${this.#ref}^{commit}`],
          signal,
          { GIT_DIR: this.#repo },
          [0, 1],
        ),
        this.#git(["config", "--get", "remote.origin.url"], signal, { GIT_DIR: this.#repo }, [0, 1]),
      ]);
    } catch (error) {
      if (isAbort(error)) throw error;
      const disk = this.#diskError(error);
      if (disk) throw disk;
      return { ok: false, reason: `the local clone is damaged: ${reasonOf(error)}` };
    }
    const url = origin.stdout.trim();
    if (url !== this.#url)
      return { ok: false, reason: `the local clone's origin is ${redact(url) || "unset"}, not ${this.#origin.url}` };
    const sha = head.stdout.trim();
    this.#trusted = await this.#fingerprint();
    return { ok: true, commit: FULL_SHA.test(sha) ? sha : undefined };
  }

  /**
   * Why the clone must be re-cloned after `failure` of a fetch, or undefined when it is sound and
   * the remote is to blame: a stale lock left by a killed git, an unusable clone (see #verify), a
   * branch that does not resolve, or history that `git fsck --connectivity-only` finds broken.
   */
  async #damage(failure: unknown, signal: AbortSignal | undefined): Promise<string | undefined> {
    const stderr =
      failure instanceof GitopsError && typeof failure.details.stderr === "string" ? failure.details.stderr : "";
    const lock = /Unable to create '([^']+\.lock)': File exists/.exec(stderr)?.[1];
    if (lock !== undefined) return `a stale lock file ${lock} blocks the local clone`;
    const state = await this.#verify(signal);
    if (!state.ok) return state.reason;
    if (state.commit === undefined) return `branch ${this.#branch} does not resolve in the local clone`;
    try {
      await this.#git(["fsck", "--connectivity-only", "--no-dangling", "--no-progress"], signal, {
        GIT_DIR: this.#repo,
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      const disk = this.#diskError(error);
      if (disk) throw disk;
      this.#trusted = undefined;
      return `the local clone is damaged: ${reasonOf(error)}`;
    }
    return undefined;
  }

  /** Clones the branch into a temp directory and swaps it in; the old clone survives a failure. */
  async #clone(reason: string, signal: AbortSignal | undefined): Promise<string> {
    const started = performance.now();
    const tmp = join(this.#dir, tempName(".tmp-clone-"));
    const old = join(this.#dir, tempName(".old-"));
    this.#trusted = undefined;
    this.#logger[reason === "no local clone" ? "info" : "warn"](
      `cloning ${this.#origin.url} (branch ${this.#branch}): ${reason}`,
    );
    this.#emit("bc_gitops:git:clone_start", {}, { ...this.#origin, reason });
    try {
      await mkdir(this.#dir, { recursive: true }).catch((error: unknown) => {
        throw this.#diskError(error) ?? error;
      });
      try {
        await this.#git(
          [
            "clone",
            "--bare",
            "--single-branch",
            "--no-tags",
            `--branch=${this.#branch}`,
            "--template=",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "--",
            this.#url,
            tmp,
          ],
          signal,
        );
      } catch (error) {
        if (error instanceof GitopsError && /Remote branch .* not found/i.test(String(error.details.stderr))) {
          throw branchMissing(this.#origin);
        }
        throw this.#diskError(error) ?? unreachable(error, this.#origin, this.#timeoutMs);
      }
      const commit = await this.#head(tmp, signal);
      // The reader holds the old clone's files open: it starts again on the new one.
      await this.#objects.close();
      this.#objects.forget();
      this.#lastSparse = undefined;
      let moved = true;
      await rename(this.#repo, old).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw this.#diskError(error) ?? error;
        moved = false;
      });
      await rename(tmp, this.#repo).catch(async (error: unknown) => {
        if (moved) await rename(old, this.#repo).catch(() => {});
        throw this.#diskError(error) ?? error;
      });
      this.#trusted = await this.#fingerprint();
      this.#emit("bc_gitops:git:clone_stop", { duration_ms: performance.now() - started }, { commit });
      return commit;
    } catch (error) {
      this.#emit("bc_gitops:git:clone_stop", { duration_ms: performance.now() - started }, { error: reasonOf(error) });
      throw error;
    } finally {
      await rm(tmp, { recursive: true, force: true });
      await rm(old, { recursive: true, force: true });
    }
  }

  async #head(gitDir: string, signal: AbortSignal | undefined): Promise<string> {
    const { stdout } = await this.#git(["rev-parse", "--verify", `${this.#ref}^{commit}`], signal, { GIT_DIR: gitDir });
    const sha = stdout.trim();
    if (!FULL_SHA.test(sha))
      throw new GitopsError(`git rev-parse printed ${JSON.stringify(sha)}, not a commit id`, { code: "E_GIT" });
    return sha;
  }

  async #hasCommit(commit: string, signal: AbortSignal | undefined): Promise<boolean> {
    const { exitCode } = await this.#git(
      ["cat-file", "-e", `${commit}^{commit}`],
      signal,
      { GIT_DIR: this.#repo },
      [0, 1, 128],
    );
    return exitCode === 0;
  }

  /** Whether `git fsck --connectivity-only` finds the clone's history complete. */
  async #intactObjects(signal: AbortSignal | undefined): Promise<boolean> {
    try {
      await this.#git(["fsck", "--connectivity-only", "--no-dangling", "--no-progress"], signal, {
        GIT_DIR: this.#repo,
      });
      return true;
    } catch (error) {
      if (isAbort(error)) throw error;
      const disk = this.#diskError(error);
      if (disk) throw disk;
      return false;
    }
  }

  /** Runs git in `dir` (see runGit: no prompts, C messages, pinned transports), with the deadline. */
  #git(args: string[], signal: AbortSignal | undefined, env: Record<string, string> = {}, allowExitCodes?: number[]) {
    return runGit(args, {
      cwd: this.#dir,
      url: this.#url,
      timeoutMs: this.#timeoutMs,
      signal,
      env,
      ...(allowExitCodes ? { allowExitCodes } : {}),
    });
  }

  /** Serialises operations on the clone and the snapshots; the first one sweeps leftovers of a crash. */
  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (!this.#tidied) {
        this.#tidied = true;
        await this.#sweep();
      }
      return task();
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  async #sweep(): Promise<void> {
    await sweepAbandoned(this.#dir, [".tmp-clone-", ".old-"]);
    await this.#snapshots.sweep();
  }

  /** E_GIT (backoff) naming `dir` when `error` is a local disk problem, which no re-clone can fix; else undefined. */
  #diskError(error: unknown): GitopsError | undefined {
    return diskError(error, `the git clone in ${this.#dir}`, { path: this.#dir, ...this.#origin });
  }
}

/** Throws E_UNSAFE unless `commit` is a full object id (it names directories). */
function checkCommit(commit: string): void {
  if (typeof commit !== "string" || !FULL_SHA.test(commit)) {
    const shown = JSON.stringify(redact(String(commit)));
    throw new GitopsError(`refusing to read ${shown}: not a full commit id`, { code: "E_UNSAFE", retry: "stalled" });
  }
}
