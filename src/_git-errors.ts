/**
 * The errors of a git source, each naming the remote (its redacted URL) and the branch, so a
 * failed tick says which repository to look at and what to fix.
 */
import { GitopsError, messageOf } from "./errors.ts";
import { redact } from "./redact.ts";

/** The remote a git source reads, as its errors name it: the redacted URL and the branch. */
export interface Origin {
  url: string;
  branch: string;
}

/**
 * E_GIT_UNREACHABLE (backoff) for a git call that failed or timed out talking to the remote;
 * any other error is returned as it is.
 */
export function unreachable(error: unknown, origin: Origin, timeoutMs: number): unknown {
  if (!(error instanceof GitopsError) || (error.code !== "E_EXEC" && error.code !== "E_TIMEOUT")) return error;
  const stderr = typeof error.details.stderr === "string" ? error.details.stderr : "";
  const why = error.code === "E_TIMEOUT" ? `timed out after ${timeoutMs} ms` : stderr || error.message;
  return new GitopsError(redact(`cannot reach ${origin.url} (branch ${origin.branch}): ${why}`), {
    code: "E_GIT_UNREACHABLE",
    retry: "backoff",
    cause: error,
    details: { url: origin.url, branch: origin.branch, stderr: redact(stderr) },
  });
}

/** E_GIT_REF (stalled): the branch does not exist on the remote. */
export function branchMissing(origin: Origin): GitopsError {
  const details = { url: origin.url, branch: origin.branch };
  const message = `branch "${origin.branch}" not found on ${origin.url}: check \`branch\``;
  return new GitopsError(message, { code: "E_GIT_REF", retry: "stalled", details });
}

/** E_GIT (stalled): `commit` cannot be checked out, even from a fresh clone. */
export function missingCommit(commit: string, origin: Origin, cause: unknown): GitopsError {
  const details = { url: origin.url, branch: origin.branch, commit };
  const message = `commit ${commit} cannot be checked out from ${origin.url} (branch ${origin.branch}): ${reasonOf(cause)}`;
  return new GitopsError(redact(message), { code: "E_GIT", retry: "stalled", cause, details });
}

/** The operation was aborted by its signal (never a reason to re-clone or to wrap). */
export function isAbort(error: unknown): boolean {
  return error instanceof GitopsError && error.code === "E_ABORTED";
}

/** A one-line, redacted reason for logs and wrapped errors. */
export function reasonOf(error: unknown): string {
  return redact(messageOf(error));
}
