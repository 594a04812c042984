/** A real gitops repository for tests: a bare remote plus a work clone that commits and pushes to it. */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { TestContext } from "node:test";
import { exec } from "../../src/exec.ts";
import { tempDir } from "./tmp.ts";

/** Git with a fixed identity and no machine or user configuration, so tests run anywhere. */
export const GIT_ENV = {
  GIT_AUTHOR_NAME: "Test",
  GIT_AUTHOR_EMAIL: "test@example.com",
  GIT_COMMITTER_NAME: "Test",
  GIT_COMMITTER_EMAIL: "test@example.com",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

/** Runs git in `cwd` and returns its trimmed stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  return (await exec("git", args, { cwd, env: GIT_ENV })).stdout.trim();
}

/** A gitops repository under test. */
export interface GitopsRepo {
  /** Temp dir holding everything (also a good place for the agent's local_path). */
  root: string;
  /** The bare remote: the agent's repo_url. */
  bare: string;
  work: string;
  /** Writes (string) or deletes (null) files in the work tree, commits and pushes; returns the new commit. */
  commit(files: Record<string, string | null>, message?: string): Promise<string>;
  /** Replaces the whole branch with a new root commit of `files` (a force-push of unrelated history). */
  forcePush(files: Record<string, string>): Promise<string>;
}

/** A YAML spec for tests. */
export function yamlSpec(name: string, version: string, extra = ""): string {
  return `name: ${name}\nversion: "${version}"\n${extra}`;
}

/** Creates a bare repo on branch `main` with an optional first commit of `files`. */
export async function gitopsRepo(t: Pick<TestContext, "after">, files?: Record<string, string>): Promise<GitopsRepo> {
  const root = await tempDir(t, "bc-gitops-repo-");
  const bare = join(root, "remote.git");
  const work = join(root, "work");
  await git(root, "init", "-q", "--bare", "-b", "main", bare);
  await git(root, "init", "-q", "-b", "main", work);
  let orphans = 0;
  const write = async (changes: Record<string, string | null>) => {
    for (const [path, content] of Object.entries(changes)) {
      const full = join(work, path);
      if (content === null) await rm(full, { recursive: true, force: true });
      else {
        await mkdir(dirname(full), { recursive: true });
        await writeFile(full, content);
      }
    }
  };
  const repo: GitopsRepo = {
    root,
    bare,
    work,
    async commit(changes, message = "update") {
      await write(changes);
      await git(work, "add", "-A");
      await git(work, "commit", "-q", "--allow-empty", "-m", message);
      await git(work, "push", "-q", "--force", bare, "HEAD:refs/heads/main");
      return git(work, "rev-parse", "HEAD");
    },
    async forcePush(newFiles) {
      await git(work, "checkout", "-q", "--orphan", `rewrite-${++orphans}`);
      await git(work, "rm", "-q", "-rf", "--ignore-unmatch", ".");
      return repo.commit(newFiles, "rewritten history");
    },
  };
  if (files) await repo.commit(files, "initial");
  return repo;
}
