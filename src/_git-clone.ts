/**
 * The bare clone of one branch that a git source reads from: the remote's head (`git ls-remote`),
 * fetching it (or the head a webhook named), cloning from scratch into a temp directory swapped in,
 * checking that the clone is sound (and re-cloning it when it is not), the fingerprint that lets an
 * unchanged clone skip git, the queue that serialises every operation on it, and the reading of a
 * local disk problem. The object store's reader ({@link GitObjects}) belongs to the clone: it is
 * restarted whenever the clone is replaced.
 */
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { branchMissing, isAbort, reasonOf, unreachable, type Origin } from "./_git-errors.ts";
import { GitObjects } from "./_git-objects.ts";
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

/** Options of a {@link GitClone} (and of the git source that owns it). */
export interface GitCloneOptions {
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

/** What the owner of a {@link GitClone} keeps in step with it. */
export interface GitCloneHooks {
  /** Runs once, before the first queued operation, after the clone's own crash leftovers are swept. */
  sweep?: () => Promise<void>;
  /** Called when a new clone is about to be swapped in (the object reader was just closed). */
  replacing?: () => void;
}

/** The outcome of {@link GitClone.fetch}. */
export interface FetchResult {
  /** The branch head now in the local clone. */
  commit: string;
  /** `commit` differs from the `known` commit passed in. */
  changed: boolean;
  /** The local clone was created from scratch during this call (first use, or a missing/damaged/foreign one). */
  recloned: boolean;
}

/** The state of the clone {@link GitClone.verify} found: `commit` is its branch head, if it resolves. */
export type CloneState = { ok: true; commit: string | undefined } | { ok: false; reason: string };

/** The bare clone `<dir>/repo` of one branch of a remote, and the queue of operations on it. */
export class GitClone {
  readonly #url: string;
  /** The redacted URL and the branch, as logs and errors name them. */
  readonly origin: Origin;
  readonly #branch: string;
  readonly #ref: string;
  /** The working area, absolute. */
  readonly dir: string;
  /** The bare clone's directory, absolute. */
  readonly gitDir: string;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #emit: Emit;
  readonly #hooks: GitCloneHooks;
  /** Fingerprint of the clone when it was last verified; lets a no-change tick skip git entirely. */
  #trusted: string | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #tidied = false;
  readonly #objects: GitObjects;

  /** Validates the options (E_CONFIG); touches nothing on disk. */
  constructor(options: GitCloneOptions, hooks: GitCloneHooks = {}) {
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
    this.origin = { url: redact(this.#url), branch };
    this.#ref = `refs/heads/${branch}`;
    this.dir = resolve(dir);
    this.gitDir = join(this.dir, "repo");
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#logger = options.logger ?? silentLogger;
    this.#emit = options.emit ?? noEmit;
    this.#hooks = hooks;
    this.#objects = new GitObjects({ gitDir: this.gitDir, cwd: this.dir, timeoutMs: this.#timeoutMs });
  }

  /** The reader of the clone's object store (one `git cat-file --batch`), replaced with the clone. */
  get objects(): GitObjects {
    return this.#objects;
  }

  /**
   * Returns the remote branch head, bringing the local clone up to it. Clones the first time;
   * re-clones a missing or damaged clone (its branch does not resolve, `git fsck` fails, a stale
   * lock blocks it), or one whose origin is not `repoUrl`; follows force-pushes. When the head
   * equals `known` and the clone is intact it runs one `git ls-remote` and nothing else. Throws
   * E_GIT_UNREACHABLE (backoff) when the remote cannot be read, also when a fetch fails on a sound
   * clone, leaving the clone as it was; E_GIT (backoff, `details.errno`) naming the directory when
   * the local disk is full, read-only or not writable, never re-cloning for it; E_GIT_REF (stalled)
   * when the branch does not exist; E_ABORTED when `signal` aborts. With `head` (the new head a
   * verified webhook named), the branch is fetched without `ls-remote`.
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
    return this.exclusive(async () => {
      const trusted = await this.#isTrusted();
      if ((remote ?? hinted) === known && trusted) return { commit: known!, changed: false, recloned: false };
      // A clone unchanged on disk since it was last verified needs no second look; a failing fetch looks closer (#damage).
      const state = trusted ? { ok: true as const, commit: undefined } : await this.verify(signal);
      if (!state.ok) {
        const commit = await this.reclone(state.reason, signal);
        return { commit, changed: commit !== known, recloned: true };
      }
      if (remote !== undefined && state.commit === remote)
        return { commit: remote, changed: remote !== known, recloned: false };
      const started = performance.now();
      let commit: string;
      try {
        const refspec = `+${this.#ref}:${this.#ref}`; // "+": a force-push replaces the ref
        await this.git(["fetch", "--force", "--no-tags", "--", "origin", refspec], signal);
        // Read by the running object reader: no rev-parse process.
        const head = await this.#objects.head(this.#ref).catch(() => undefined);
        commit = head && FULL_SHA.test(head) ? head : await this.#head(this.gitDir, signal);
      } catch (error) {
        if (isAbort(error)) throw error;
        const disk = this.diskError(error);
        if (disk) throw disk;
        // A re-clone downloads everything again: only a clone that is really damaged gets one.
        const damage = await this.#damage(error, signal);
        if (damage === undefined) throw unreachable(error, this.origin, this.#timeoutMs);
        const commit = await this.reclone(damage, signal);
        return { commit, changed: commit !== known, recloned: true };
      }
      this.#emit("bc_gitops:git:pull", { duration_ms: performance.now() - started }, { commit });
      this.#logger.debug(`fetched ${this.#branch} at ${commit}`, { url: this.origin.url });
      return { commit, changed: commit !== known, recloned: false };
    });
  }

  /** Checks that the clone is a readable repository of `repoUrl`; `commit` is its branch head, if any. */
  async verify(signal: AbortSignal | undefined): Promise<CloneState> {
    this.#trusted = undefined;
    if (!(await isDirectory(this.gitDir))) return { ok: false, reason: "no local clone" };
    let head: ExecResult;
    let origin: ExecResult;
    try {
      [head, origin] = await Promise.all([
        this.git(["rev-parse", "--verify", "--quiet", `${this.#ref}^{commit}`], signal, [0, 1]),
        this.git(["config", "--get", "remote.origin.url"], signal, [0, 1]),
      ]);
    } catch (error) {
      if (isAbort(error)) throw error;
      const disk = this.diskError(error);
      if (disk) throw disk;
      return { ok: false, reason: `the local clone is damaged: ${reasonOf(error)}` };
    }
    const url = origin.stdout.trim();
    if (url !== this.#url)
      return { ok: false, reason: `the local clone's origin is ${redact(url) || "unset"}, not ${this.origin.url}` };
    const sha = head.stdout.trim();
    this.#trusted = await this.#fingerprint();
    return { ok: true, commit: FULL_SHA.test(sha) ? sha : undefined };
  }

  /**
   * Clones the branch into a temp directory and swaps it in, for `reason` (logged and emitted);
   * returns its head. The old clone survives a failure.
   */
  async reclone(reason: string, signal: AbortSignal | undefined): Promise<string> {
    const started = performance.now();
    const tmp = join(this.dir, tempName(".tmp-clone-"));
    const old = join(this.dir, tempName(".old-"));
    this.#trusted = undefined;
    this.#logger[reason === "no local clone" ? "info" : "warn"](
      `cloning ${this.origin.url} (branch ${this.#branch}): ${reason}`,
    );
    this.#emit("bc_gitops:git:clone_start", {}, { ...this.origin, reason });
    try {
      await mkdir(this.dir, { recursive: true }).catch((error: unknown) => {
        throw this.diskError(error) ?? error;
      });
      try {
        await this.#run(
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
          throw branchMissing(this.origin);
        }
        throw this.diskError(error) ?? unreachable(error, this.origin, this.#timeoutMs);
      }
      const commit = await this.#head(tmp, signal);
      // The reader holds the old clone's files open: it starts again on the new one.
      await this.#objects.close();
      this.#objects.forget();
      this.#hooks.replacing?.();
      let moved = true;
      await rename(this.gitDir, old).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw this.diskError(error) ?? error;
        moved = false;
      });
      await rename(tmp, this.gitDir).catch(async (error: unknown) => {
        if (moved) await rename(old, this.gitDir).catch(() => {});
        throw this.diskError(error) ?? error;
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

  /** Whether the clone holds `commit` (`git cat-file -e`). */
  async hasCommit(commit: string, signal: AbortSignal | undefined): Promise<boolean> {
    const { exitCode } = await this.git(["cat-file", "-e", `${commit}^{commit}`], signal, [0, 1, 128]);
    return exitCode === 0;
  }

  /** Whether `git fsck --connectivity-only` finds the clone's history complete. */
  async intactObjects(signal: AbortSignal | undefined): Promise<boolean> {
    try {
      await this.#fsck(signal);
      return true;
    } catch (error) {
      if (isAbort(error)) throw error;
      const disk = this.diskError(error);
      if (disk) throw disk;
      return false;
    }
  }

  /** Runs git on the clone (`GIT_DIR` is the clone; see runGit), with the deadline. */
  git(args: string[], signal: AbortSignal | undefined, allowExitCodes?: number[]): Promise<ExecResult> {
    return this.#run(args, signal, { GIT_DIR: this.gitDir }, allowExitCodes);
  }

  /**
   * Serialises operations on the clone (and whatever its owner keeps beside it); the first one
   * sweeps leftovers of a crash (the owner's too, through the `sweep` hook).
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (!this.#tidied) {
        this.#tidied = true;
        await sweepAbandoned(this.dir, [".tmp-clone-", ".old-"]);
        await this.#hooks.sweep?.();
      }
      return task();
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** E_GIT (backoff) naming `dir` when `error` is a local disk problem, which no re-clone can fix; else undefined. */
  diskError(error: unknown): GitopsError | undefined {
    return diskError(error, `the git clone in ${this.dir}`, { path: this.dir, ...this.origin });
  }

  /** The remote head of the branch, by one `git ls-remote`. */
  async #lsRemote(signal: AbortSignal | undefined): Promise<string> {
    await mkdir(this.dir, { recursive: true }).catch((error: unknown) => {
      throw this.diskError(error) ?? error;
    });
    let result: ExecResult;
    try {
      result = await this.#run(["ls-remote", "--refs", "--exit-code", "--", this.#url, this.#ref], signal, {}, [0, 2]);
    } catch (error) {
      throw unreachable(error, this.origin, this.#timeoutMs);
    }
    for (const line of result.stdout.split("\n")) {
      const [sha, ref] = line.trim().split("\t");
      if (ref === this.#ref && sha !== undefined && FULL_SHA.test(sha)) {
        this.#logger.debug(`ls-remote: ${this.#branch} is at ${sha}`, { url: this.origin.url });
        return sha;
      }
    }
    throw branchMissing(this.origin);
  }

  /** Is the clone there and in the state it was in when last verified (no subprocess)? */
  async #isTrusted(): Promise<boolean> {
    return this.#trusted !== undefined && (await this.#fingerprint()) === this.#trusted;
  }

  async #fingerprint(): Promise<string | undefined> {
    try {
      const [head, config] = await Promise.all([
        readFile(join(this.gitDir, "HEAD"), "utf8"),
        readFile(join(this.gitDir, "config"), "utf8"),
        stat(join(this.gitDir, "objects")),
        stat(join(this.gitDir, "refs")),
      ]);
      return `${head}\0${config}`;
    } catch {
      return undefined;
    }
  }

  /**
   * Why the clone must be re-cloned after `failure` of a fetch, or undefined when it is sound and
   * the remote is to blame: a stale lock left by a killed git, an unusable clone (see verify), a
   * branch that does not resolve, or history that `git fsck --connectivity-only` finds broken.
   */
  async #damage(failure: unknown, signal: AbortSignal | undefined): Promise<string | undefined> {
    const stderr =
      failure instanceof GitopsError && typeof failure.details.stderr === "string" ? failure.details.stderr : "";
    const lock = /Unable to create '([^']+\.lock)': File exists/.exec(stderr)?.[1];
    if (lock !== undefined) return `a stale lock file ${lock} blocks the local clone`;
    const state = await this.verify(signal);
    if (!state.ok) return state.reason;
    if (state.commit === undefined) return `branch ${this.#branch} does not resolve in the local clone`;
    try {
      await this.#fsck(signal);
    } catch (error) {
      if (isAbort(error)) throw error;
      const disk = this.diskError(error);
      if (disk) throw disk;
      this.#trusted = undefined;
      return `the local clone is damaged: ${reasonOf(error)}`;
    }
    return undefined;
  }

  #fsck(signal: AbortSignal | undefined): Promise<ExecResult> {
    return this.git(["fsck", "--connectivity-only", "--no-dangling", "--no-progress"], signal);
  }

  async #head(gitDir: string, signal: AbortSignal | undefined): Promise<string> {
    const { stdout } = await this.#run(["rev-parse", "--verify", `${this.#ref}^{commit}`], signal, { GIT_DIR: gitDir });
    const sha = stdout.trim();
    if (!FULL_SHA.test(sha))
      throw new GitopsError(`git rev-parse printed ${JSON.stringify(sha)}, not a commit id`, { code: "E_GIT" });
    return sha;
  }

  /** Runs git in `dir` (see runGit: no prompts, C messages, pinned transports), with the deadline. */
  #run(args: string[], signal: AbortSignal | undefined, env: Record<string, string> = {}, allowExitCodes?: number[]) {
    return runGit(args, {
      cwd: this.dir,
      url: this.#url,
      timeoutMs: this.#timeoutMs,
      signal,
      env,
      ...(allowExitCodes ? { allowExitCodes } : {}),
    });
  }
}
