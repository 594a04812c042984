/**
 * The desired state's source for the reconciler (SPEC section 4, steps 1-2): fetch the branch,
 * verify the commit, read its specs from a snapshot, and resolve the code revisions of floating
 * sources. It owns what the repository says and the repository's own error; the reconciler owns
 * what runs and decides what to do about the difference.
 */
import { isAbsolute } from "node:path";
import { treePath } from "./_git-objects.ts";
import { readCommit, type CommitRead } from "./_git-specs.ts";
import { Backoff } from "./backoff.ts";
import type { AgentConfig } from "./config.ts";
import { GitopsError, codeOf, messageOf, retryClassOf, type ErrorCode } from "./errors.ts";
import type { GitSource } from "./git.ts";
import { SpecCache, type LoadResult } from "./loader.ts";
import type { Logger } from "./logger.ts";
import { redact } from "./redact.ts";
import type { Runtime } from "./runtime.ts";
import { hasFloatingSource, type AppSpec } from "./spec.ts";
import type { Emit } from "./telemetry.ts";
import { verifyCommit } from "./verify.ts";

/** The collaborators of a {@link DesiredSource}. */
export interface DesiredSourceDeps {
  config: AgentConfig;
  git: GitSource;
  /** Resolves the code revision of floating sources (optional on custom runtimes). */
  runtime: Pick<Runtime, "resolveRevision">;
  emit: Emit;
  logger: Logger;
  now: () => number;
  /** Where the checkout of the current commit is published, for the runtime (`RuntimeContext.repoDir`, `treeOf`). */
  checkout?: Checkout;
}

/** The current commit's files as the runtime sees them (`RuntimeContext.repoDir` and `treeOf`). */
export interface Checkout {
  repoDir?: string | undefined;
  treeOf?: ((path: string) => string | undefined) | undefined;
}

/** What the trigger of a tick knows: `head`, the new branch head a verified webhook named. */
export interface SyncHint {
  head?: string | undefined;
}

/** What one read of the repository gave. */
export interface DesiredRead {
  commit: string;
  /** Committer time of `commit` (seconds since the epoch). */
  committedAt: number;
  /** The commit's sparse snapshot: the files of its path sources (relative to it) and nothing else. */
  repoDir: string;
  /** The git tree id of each path source directory inside the repository, by its path (`treePath`). */
  trees: ReadonlyMap<string, string>;
  load: LoadResult;
  /** The valid apps of `load` by name, with the file each came from: built once per read. */
  byName: ReadonlyMap<string, { spec: AppSpec; file: string }>;
}

/** Fetches, verifies and reads the gitops repository; one instance per agent, used one call at a time. */
export class DesiredSource {
  readonly #d: DesiredSourceDeps;
  readonly #cache = new SpecCache();
  /** Failures to fetch the remote: the next tick comes no later than the next retry. */
  readonly #backoff: Backoff;
  readonly #verifiedCommits = new Set<string>();
  /** Revisions of path sources inside the repository, by snapshot directory and path. */
  #pathRevisions = new Map<string, string>();
  /** Spec problems already logged for the commit they were found in: each is logged once, status keeps it. */
  #logged = new Map<string, Set<string>>();
  #read: DesiredRead | undefined;
  #error: string | undefined;
  #errorCode: ErrorCode | undefined;
  /** Apps whose source the runtime refused to resolve as unsafe (a path source escaping the repository), with why. */
  #refused = new Map<string, string>();

  constructor(deps: DesiredSourceDeps) {
    this.#d = deps;
    this.#backoff = new Backoff(1000, deps.config.reconcile_interval);
  }

  /** The last successful read, if any. */
  get current(): DesiredRead | undefined {
    return this.#read;
  }

  /** Why the repository cannot be fetched, verified or read right now (`undefined`: it can). */
  get error(): string | undefined {
    return this.#error;
  }

  /** The code of {@link error}. */
  get errorCode(): ErrorCode | undefined {
    return this.#errorCode;
  }

  /** Floating sources refused as unsafe by the last {@link revisions}, with why. */
  get refused(): ReadonlyMap<string, string> {
    return this.#refused;
  }

  /** When the remote should be tried again after a failed fetch, if it failed. */
  nextRetry(now: number): number | undefined {
    return this.#backoff.nextRetry(now);
  }

  /** The valid specs of the commit read last, by app name. */
  specs(): Record<string, AppSpec> {
    return Object.fromEntries([...(this.#read?.byName ?? [])].map(([name, { spec }]) => [name, spec]));
  }

  /** The valid apps of the commit read last, by name. */
  names(): Iterable<string> {
    return this.#read?.byName.keys() ?? [];
  }

  /** Whether `app` is a valid app of the commit read last. */
  has(app: string): boolean {
    return this.#read?.byName.has(app) ?? false;
  }

  /** The spec file a valid app of the commit read last came from (`apps/web/app.yaml`). */
  fileOf(app: string): string | undefined {
    return this.#read?.byName.get(app)?.file;
  }

  /**
   * Reads the specs of `commit` (the last applied one) from its local snapshot, if it is still there,
   * so a restarted agent knows what the repo wants before it can reach the remote.
   */
  async prime(commit: string, signal?: AbortSignal): Promise<void> {
    this.#verifiedCommits.add(commit); // it was applied, so it passed verification then
    try {
      await this.#readCommit(commit, signal);
    } catch (error) {
      this.#d.logger.debug(`no local snapshot of ${commit.slice(0, 12)} to start from: ${messageOf(error)}`);
    }
  }

  /**
   * Fetches the branch and re-reads the specs when needed (a new commit, or the last read had
   * errors). Returns whether a new commit was read. Failures land in {@link error}; only an abort throws.
   */
  async sync(signal: AbortSignal, hint: SyncHint = {}): Promise<boolean> {
    const known = this.#read?.commit;
    let commit: string;
    try {
      commit = (await this.#d.git.fetch(known, signal, hint.head ? { head: hint.head } : {})).commit;
      this.#backoff.reset("git");
    } catch (error) {
      if (signal.aborted) throw error;
      this.#fail(error);
      this.#backoff.fail("git", this.#d.now());
      this.#d.emit("bc_gitops:reconcile:error", {}, { error: this.#error });
      this.#d.logger.warn(
        `cannot fetch ${this.#d.config.branch}: ${this.#error}${retryClassOf(error) === "stalled" ? "" : "; will retry"}`,
      );
      return false;
    }
    const mustRead = commit !== known || !this.#read || this.#read.load.errors.length > 0 || this.#error !== undefined;
    if (!mustRead) return false;
    if (commit !== known && !(await this.#verified(commit, signal))) return false;
    try {
      await this.#readCommit(commit, signal);
      this.#error = this.#errorCode = undefined;
    } catch (error) {
      if (signal.aborted) throw error;
      this.#fail(error);
      this.warnOnce(`cannot read the specs of ${commit.slice(0, 12)}: ${this.#error}`, commit);
      return false;
    }
    if (commit !== known) this.#d.logger.info(`applying commit ${commit.slice(0, 12)}`);
    return commit !== known;
  }

  /**
   * The code revision each floating source (git branch, path) points at now, by app name: of the
   * specs read last, or of `apps` (the same apps as this host runs them, overrides applied).
   */
  async revisions(
    signal: AbortSignal,
    apps: readonly { spec: AppSpec }[] | undefined = this.#read?.load.apps,
  ): Promise<Record<string, string>> {
    const resolve = this.#d.runtime.resolveRevision?.bind(this.#d.runtime);
    const out: Record<string, string> = {};
    const refused = new Map<string, string>();
    const read = this.#read;
    if (!resolve || !read || !apps) return out;
    const { repoDir, commit, trees } = read;
    const treeOf = (path: string) => trees.get(treePath(path));
    const floating = apps.filter(({ spec }) => hasFloatingSource(spec));
    for (let i = 0; i < floating.length; i += 8) {
      await Promise.all(
        floating.slice(i, i + 8).map(async ({ spec }) => {
          // A path inside the repository changes only with the commit (repoDir is that commit's
          // snapshot): resolve it once per commit, not on every tick.
          const fixed =
            spec.source.type === "path" && !isAbsolute(spec.source.path)
              ? `${repoDir}\0${spec.source.path}`
              : undefined;
          try {
            const revision =
              (fixed && this.#pathRevisions.get(fixed)) || (await resolve(spec, { repoDir, signal, treeOf }));
            if (fixed && revision) this.#pathRevisions.set(fixed, revision);
            if (revision) out[spec.name] = revision;
          } catch (error) {
            const message = redact(messageOf(error));
            // A refused source (unsafe) is the repository's mistake: say so, once per commit, and in
            // status; anything else (a source remote away) is retried quietly on the next tick.
            if (error instanceof GitopsError && error.code === "E_UNSAFE") {
              refused.set(spec.name, message);
              this.warnOnce(`${spec.name}: ${message}`, commit);
            } else this.#d.logger.debug(`cannot resolve the revision of ${spec.name}: ${message}`);
          }
        }),
      );
    }
    this.#refused = refused;
    return out;
  }

  /** Logs a problem the first time it is seen in a commit (default: the current one); status keeps showing it. */
  warnOnce(line: string, commit = this.#read?.commit ?? ""): void {
    let lines = this.#logged.get(commit);
    if (!lines) {
      // The current commit and one other (a newer one that cannot be read) stay remembered.
      if (this.#logged.size >= 2) this.#logged.delete(this.#logged.keys().next().value!);
      this.#logged.set(commit, (lines = new Set()));
    }
    if (lines.has(line)) return;
    lines.add(line);
    this.#d.logger.warn(line);
  }

  /**
   * With `verify` set, whether `commit` is signed by an allowed key. A rejected commit is not
   * applied: the last verified commit keeps running and status says why (checked again each
   * tick, since a fixed allowed_signers file can accept it without a new commit).
   */
  async #verified(commit: string, signal: AbortSignal): Promise<boolean> {
    const verify = this.#d.config.verify;
    if (!verify || this.#verifiedCommits.has(commit)) return true;
    const verdict = await verifyCommit(this.#d.git.gitDir, commit, verify, {
      signal,
      timeoutMs: this.#d.config.git_timeout,
    });
    if (verdict.ok) {
      this.#verifiedCommits.add(commit);
      this.#d.logger.info(`commit ${commit.slice(0, 12)} is signed by ${verdict.signer}`);
      return true;
    }
    const running = this.#read?.commit;
    this.#error = `not applying ${commit.slice(0, 12)}: ${verdict.reason}; ${running ? `still at the verified commit ${running.slice(0, 12)}` : "no verified commit yet"}`;
    this.#errorCode = "E_UNSAFE";
    this.#d.emit("bc_gitops:reconcile:error", {}, { commit, error: this.#error, verified: false });
    this.#d.logger.warn(this.#error);
    return false;
  }

  #fail(error: unknown): void {
    this.#error = redact(messageOf(error));
    this.#errorCode = codeOf(error);
  }

  async #readCommit(commit: string, signal?: AbortSignal): Promise<void> {
    const { emit, git, config } = this.#d;
    const started = this.#d.now();
    emit("bc_gitops:parse:start", {}, { commit });
    let read: CommitRead;
    try {
      read = await readCommit(git, commit, config.apps_dir, { cache: this.#cache, signal });
    } catch (error) {
      if (error instanceof GitopsError && error.code === "E_ABORTED") throw error;
      if (error instanceof GitopsError && error.code !== "E_SPEC") throw error;
      const message =
        error instanceof GitopsError
          ? `commit ${commit.slice(0, 12)}: ${error.message}`
          : `cannot read ${config.apps_dir}/ at ${commit.slice(0, 12)}: ${messageOf(error)}`;
      throw new GitopsError(message, { code: "E_SPEC", retry: "stalled", cause: error });
    }
    const { load, committedAt, repoDir, trees } = read;
    emit(
      "bc_gitops:parse:stop",
      { duration_ms: this.#d.now() - started, apps: load.apps.length, errors: load.errors.length },
      { commit },
    );
    for (const e of load.errors)
      this.warnOnce(
        `${e.file}${e.line ? `:${e.line}:${e.column ?? 1}` : ""} ${e.path ? `${e.path}: ` : ""}${e.message}`,
        commit,
      );
    if (repoDir !== this.#read?.repoDir) this.#pathRevisions = new Map();
    this.#read = {
      commit,
      committedAt,
      repoDir,
      trees,
      load,
      byName: new Map(load.apps.map((app) => [app.spec.name, app])),
    };
    if (this.#d.checkout) {
      this.#d.checkout.repoDir = repoDir;
      this.#d.checkout.treeOf = (path) => trees.get(treePath(path));
    }
  }
}
