/**
 * The git source of a workspace (SPEC section 2): the commit a `ref` points at now (`git ls-remote`,
 * branch before tag), and that commit's tree (or its `subdir`) fetched into a bare repository and
 * unpacked through `git archive`, so nothing of the remote's checkout hooks or attributes runs.
 */
import { join, posix, resolve } from "node:path";
import { FULL_SHA_ANY_CASE as FULL_SHA, isLocalPath, runGit } from "./_git.ts";
import { unpack } from "./_tree.ts";
import { GitopsError, messageOf, redactedError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { Source } from "./spec.ts";

/** A spec's `source` of `type: git`. */
export type GitSource = Extract<Source, { type: "git" }>;

/** What the git calls of one workspace operation need. */
export interface GitSourceOptions {
  /** Deadline of each git subprocess. */
  timeoutMs: number;
  logger: Logger;
  /** The gitops checkout: relative local urls are relative to it (default: the working directory). */
  repoDir?: string | undefined;
  signal?: AbortSignal | undefined;
}

const fail = redactedError;
/** The full commit sha `source.ref` points at now (a full sha as is; default the remote's HEAD). */
export async function gitRevision(source: GitSource, options: GitSourceOptions): Promise<string> {
  if (source.ref !== undefined && FULL_SHA.test(source.ref)) return source.ref.toLowerCase();
  const url = gitUrl(source.url, options.repoDir);
  const ref = source.ref;
  // Branch first, then an annotated tag's commit (`^{}`), then a lightweight tag.
  const wanted =
    ref === undefined
      ? ["HEAD"]
      : ref.startsWith("refs/")
        ? [ref, `${ref}^{}`]
        : [`refs/heads/${ref}`, `refs/tags/${ref}^{}`, `refs/tags/${ref}`];
  const { stdout } = await git(["ls-remote", "--", url, ...wanted], process.cwd(), options, url).catch((error) => {
    throw fail(`cannot reach git repository ${url}: ${messageOf(error)}`, "E_GIT_UNREACHABLE", "backoff", error);
  });
  const refs = new Map(
    stdout
      .split("\n")
      .map((line) => line.split("\t"))
      .map(([sha, name]) => [name, sha]),
  );
  const sha = wanted.map((name) => refs.get(name)).find((s) => s !== undefined && FULL_SHA.test(s));
  if (sha) return sha.toLowerCase();
  const what = ref === undefined ? "HEAD" : `branch or tag ${ref} (for a commit, give its full sha)`;
  throw fail(`${url} has no ${what}`, "E_GIT_REF", "stalled");
}

/**
 * Unpacks the tree of commit `revision` of `source` (its `subdir` when given) into `tree`, through a
 * bare repository in `tmp`. A `subdir` that leaves the repository is refused with `E_UNSAFE`.
 */
export async function gitTree(
  source: GitSource,
  revision: string,
  tmp: string,
  tree: string,
  options: GitSourceOptions,
): Promise<void> {
  const repo = join(tmp, "repo.git");
  await git(["init", "-q", "--bare", repo], tmp, options);
  await gitFetch(repo, gitUrl(source.url, options.repoDir), revision, source.ref, options);
  const subdir = source.subdir === undefined ? "" : posix.normalize(source.subdir).replace(/^\.\/|\/$/g, "");
  if (subdir.split("/").includes("..")) throw fail(`subdir ${subdir} leaves the repository`, "E_UNSAFE", "stalled");
  const archive = join(tmp, "tree.tar");
  const treeish = subdir && subdir !== "." ? `${revision}:${subdir}` : revision;
  await git(["-C", repo, "archive", "--format=tar", "-o", archive, treeish], tmp, options).catch((error) => {
    if (treeish === revision) throw error;
    throw fail(
      `subdir ${subdir} is not a directory in commit ${revision} of ${source.url}`,
      "E_NOT_FOUND",
      "stalled",
      error,
    );
  });
  // Lists the archive first and refuses special files, escaping names and links; only then extracts it.
  await unpack(archive, tree, options.timeoutMs, options.signal);
}

/** Fetches one commit: by sha, shallow (most servers allow it); else the whole ref and checks the commit is there. */
async function gitFetch(
  repo: string,
  url: string,
  sha: string,
  ref: string | undefined,
  options: GitSourceOptions,
): Promise<void> {
  if (!FULL_SHA.test(sha)) throw fail(`git revision ${sha} is not a full commit sha`, "E_GIT_REF", "stalled");
  try {
    await git(["-C", repo, "fetch", "-q", "--depth=1", "--no-tags", "--", url, sha], repo, options, url);
    return;
  } catch (error) {
    if (error instanceof GitopsError && error.code === "E_ABORTED") throw error;
    options.logger.debug(`fetching commit ${sha} by sha failed, fetching refs instead: ${messageOf(error)}`);
  }
  const refspecs = ref && !FULL_SHA.test(ref) ? [ref] : ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
  await git(["-C", repo, "fetch", "-q", "--no-tags", "--", url, ...refspecs], repo, options, url).catch((error) => {
    throw fail(`cannot fetch ${url}: ${messageOf(error)}`, "E_GIT_UNREACHABLE", "backoff", error);
  });
  await git(["-C", repo, "cat-file", "-e", `${sha}^{commit}`], repo, options).catch((error) => {
    throw fail(`commit ${sha} is not in ${url}`, "E_GIT_REF", "stalled", error);
  });
}

/** `url`: the remote this call talks to (http is allowed for an http:// one only). */
async function git(args: string[], cwd: string, options: GitSourceOptions, url?: string) {
  const { timeoutMs, signal } = options;
  return runGit(args, { cwd, timeoutMs, signal, ...(url === undefined ? {} : { url }) });
}

/** Relative local git urls are relative to the gitops repo; `scheme://` and `host:path` urls are remote. */
function gitUrl(url: string, repoDir: string | undefined): string {
  if (url.startsWith("-")) throw fail(`git url ${url} must not start with "-"`, "E_UNSAFE", "stalled");
  return isLocalPath(url) ? resolve(repoDir ?? process.cwd(), url) : url;
}
