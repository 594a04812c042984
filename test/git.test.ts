import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import type { Socket } from "node:net";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { useGitCommand } from "../src/_git.ts";
import { GitopsError } from "../src/errors.ts";
import { exec } from "../src/exec.ts";
import { GitSource } from "../src/git.ts";
import type { GitSourceOptions } from "../src/git.ts";
import type { TelemetryEvent } from "../src/telemetry.ts";
import { git } from "./helpers/gitops-repo.ts";
import { tempDir } from "./helpers/tmp.ts";

/** A bare remote plus a work clone that commits and pushes to it, all in one temp dir. */
interface Fixture {
  root: string;
  bare: string;
  /** The GitSource's own directory. */
  dir: string;
  /** Replaces the work tree's files with `files`, commits and pushes; returns the commit. */
  commit(files: Record<string, string>, options?: { orphan?: boolean }): Promise<string>;
  source(extra?: Partial<GitSourceOptions>): GitSource;
  events: TelemetryEvent[];
}

async function fixture(): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), "bc-gitops-git-"));
  const bare = join(root, "remote.git");
  const work = join(root, "work");
  await git(root, "init", "-q", "--bare", "-b", "main", bare);
  await git(root, "init", "-q", "-b", "main", work);
  let counter = 0;
  const events: TelemetryEvent[] = [];
  return {
    root,
    bare,
    dir: join(root, "source"),
    events,
    async commit(files, options = {}) {
      if (options.orphan) await git(work, "checkout", "-q", "--orphan", `orphan-${++counter}`);
      for (const name of await readdir(work)) if (name !== ".git") await rm(join(work, name), { recursive: true });
      for (const [name, content] of Object.entries(files)) {
        await mkdir(dirname(join(work, name)), { recursive: true });
        await writeFile(join(work, name), content);
      }
      await git(work, "add", "-A");
      await git(work, "commit", "-q", "--allow-empty", "-m", `commit ${++counter}`);
      await git(work, "push", "-q", "--force", bare, "HEAD:refs/heads/main");
      return git(work, "rev-parse", "HEAD");
    },
    source(extra = {}) {
      return new GitSource({
        repoUrl: bare,
        branch: "main",
        dir: join(root, "source"),
        timeoutMs: 20_000,
        emit: (name, measurements = {}, metadata = {}) => events.push({ name, measurements, metadata }),
        ...extra,
      });
    },
  };
}

/** Runs a test body against a fresh fixture and removes it afterwards. */
function withFixture(fn: (fx: Fixture) => Promise<void>): () => Promise<void> {
  return async () => {
    const fx = await fixture();
    try {
      await fn(fx);
    } finally {
      await rm(fx.root, { recursive: true, force: true });
    }
  };
}

async function failure(promise: Promise<unknown>): Promise<GitopsError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GitopsError, `expected a GitopsError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a rejection");
}

/** Every file under `dir` (relative path -> content), skipping nothing. */
async function tree(dir: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) Object.assign(out, await tree(dir, path));
    else out[path] = await readFile(join(dir, path), "utf8");
  }
  return out;
}

/**
 * Runs `fn` with a `git` shim first on PATH that logs each subcommand and then runs the real git;
 * returns the subcommands in order.
 */
async function recordGitCalls(root: string, fn: () => Promise<void>): Promise<string[]> {
  const realGit = (await exec("which", ["git"])).stdout.trim();
  const bin = join(root, "shim-bin");
  const log = join(root, "git-calls.log");
  await mkdir(bin, { recursive: true });
  await writeFile(log, "");
  // Only calls made from inside this fixture count.
  await writeFile(
    join(bin, "git"),
    `#!/bin/sh\ncase "$PWD" in '${root}'*) echo "$1" >> '${log}';; esac\nexec '${realGit}' "$@"\n`,
    { mode: 0o755 },
  );
  // The agent's git calls go to the shim; PATH is left alone (test files running in parallel in
  // one process share it, and could find a shim already deleted).
  const previous = useGitCommand(join(bin, "git"));
  try {
    await fn();
  } finally {
    useGitCommand(previous);
  }
  return (await readFile(log, "utf8")).split("\n").filter(Boolean);
}

/**
 * Runs `fn` with a `git` first on PATH that fails the subcommands named in `failures` (exit 128,
 * the given stderr: git's own wording of a full or read-only disk) for calls made inside the
 * fixture, and runs the real git for everything else. Builds the disks CI cannot: a full or
 * read-only file system needs mount privileges, and root ignores file permissions.
 */
async function withGitFailing(root: string, failures: Record<string, string>, fn: () => Promise<void>): Promise<void> {
  const realGit = (await exec("which", ["git"])).stdout.trim();
  const bin = join(root, "failing-bin");
  await mkdir(bin, { recursive: true });
  for (const [subcommand, stderr] of Object.entries(failures))
    await writeFile(join(root, `fail-${subcommand}`), `${stderr}\n`);
  await writeFile(
    join(bin, "git"),
    `#!/bin/sh\ncase "$PWD" in '${root}'*) if [ -f '${root}'/fail-"$1" ]; then cat '${root}'/fail-"$1" >&2; exit 128; fi;; esac\nexec '${realGit}' "$@"\n`,
    { mode: 0o755 },
  );
  const previous = useGitCommand(join(bin, "git"));
  try {
    await fn();
  } finally {
    useGitCommand(previous);
    for (const subcommand of Object.keys(failures)) await rm(join(root, `fail-${subcommand}`), { force: true });
  }
}

/** git's stderr when a fetch cannot write its objects, per errno (recorded from git 2.39 on a real full/read-only disk). */
const FETCH_DISK_ERRORS: [string, string, RegExp][] = [
  [
    "ENOSPC",
    "fatal: unable to write loose object file: No space left on device\nfatal: unpack-objects failed",
    /file system is full/,
  ],
  [
    "EACCES",
    "error: insufficient permission for adding an object to repository database ./objects\nfatal: failed to write object\nfatal: unpack-objects failed",
    /may not write there/,
  ],
  [
    "EROFS",
    "error: unable to create temporary file: Read-only file system\nfatal: failed to write object\nfatal: unpack-objects failed",
    /read-only/,
  ],
];

/**
 * Mounts a tmpfs of `size` at `dir` and returns its unmount, or undefined where mounting needs
 * privileges this process lacks (CI containers): the real full and read-only disk tests then skip.
 */
async function mountTmpfs(dir: string, size: string): Promise<(() => Promise<void>) | undefined> {
  if (process.platform !== "linux") return undefined;
  await mkdir(dir, { recursive: true });
  try {
    await exec("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir], { timeoutMs: 10_000 });
  } catch {
    return undefined;
  }
  return async () => {
    await exec("umount", ["-l", dir], { timeoutMs: 10_000 });
  };
}

const CAN_MOUNT = await (async () => {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-mount-"));
  try {
    const unmount = await mountTmpfs(dir, "64k");
    await unmount?.();
    return unmount !== undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
})();

const cloneStarts = (events: TelemetryEvent[]) => events.filter((e) => e.name === "bc_gitops:git:clone_start");

/** Deletes every loose and packed object of a repository, keeping its directory layout. */
async function loseObjects(repo: string): Promise<void> {
  const objects = join(repo, "objects");
  let lost = 0;
  for (const name of await readdir(objects)) {
    if (/^[0-9a-f]{2}$/.test(name)) lost += (await readdir(join(objects, name))).length;
    if (/^[0-9a-f]{2}$/.test(name)) await rm(join(objects, name), { recursive: true });
  }
  for (const name of await readdir(join(objects, "pack"))) {
    lost += 1;
    await rm(join(objects, "pack", name));
  }
  assert.ok(lost > 0, "the clone had objects to lose");
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

const APP = { "apps/web/app.yaml": "name: web\nversion: '1.0.0'\n" };

describe("GitSource.fetch", () => {
  test(
    "the first fetch clones the branch and reports its head as changed",
    withFixture(async (fx) => {
      const head = await fx.commit(APP);
      const result = await fx.source().fetch(undefined);
      assert.deepEqual(result, { commit: head, changed: true, recloned: true });
      assert.deepEqual(
        fx.events.map((e) => e.name),
        ["bc_gitops:git:clone_start", "bc_gitops:git:clone_stop"],
      );
      assert.equal(fx.events[1]?.metadata.commit, head);
      assert.equal(typeof fx.events[1]?.measurements.duration_ms, "number");
      assert.equal(await git(fx.root, "--git-dir", join(fx.dir, "repo"), "rev-parse", "refs/heads/main"), head);
    }),
  );

  test(
    "a tick with no new commit runs no git fetch, in the same process or after a restart",
    withFixture(async (fx) => {
      await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const head = await fx.commit({ ...APP, "README.md": "v2" });
      assert.equal((await source.fetch(undefined)).commit, head);
      const fetchHead = join(fx.dir, "repo", "FETCH_HEAD");
      const old = new Date("2001-01-01T00:00:00Z");
      await utimes(fetchHead, old, old);
      fx.events.length = 0;

      const calls = await recordGitCalls(fx.root, async () => {
        assert.deepEqual(await source.fetch(head), { commit: head, changed: false, recloned: false });
      });
      assert.deepEqual(calls, ["ls-remote"], "the no-change tick runs exactly one git process");
      const restartCalls = await recordGitCalls(fx.root, async () => {
        assert.deepEqual(await fx.source().fetch(head), { commit: head, changed: false, recloned: false });
      });
      assert.ok(!restartCalls.includes("fetch") && !restartCalls.includes("clone"), restartCalls.join(" "));
      assert.equal((await stat(fetchHead)).mtimeMs, old.getTime(), "git fetch rewrote FETCH_HEAD");
      assert.deepEqual(fx.events, []);
    }),
  );

  test(
    "a new commit is fetched and reported as changed with a git:pull event",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const second = await fx.commit({ ...APP, "apps/db/app.yaml": "name: db\nversion: '2'\n" });
      fx.events.length = 0;
      assert.deepEqual(await source.fetch(first), { commit: second, changed: true, recloned: false });
      assert.deepEqual(
        fx.events.map((e) => [e.name, e.metadata.commit]),
        [["bc_gitops:git:pull", second]],
      );
    }),
  );

  test(
    "a force-push to an unrelated history is followed",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const rewritten = await fx.commit({ "apps/other/app.yaml": "name: other\n" }, { orphan: true });
      assert.deepEqual(await source.fetch(first), { commit: rewritten, changed: true, recloned: false });
      assert.deepEqual(await tree(await source.snapshot(rewritten)), { "apps/other/app.yaml": "name: other\n" });
    }),
  );

  test(
    "a relative repository path is resolved against the current directory",
    withFixture(async (fx) => {
      const head = await fx.commit(APP);
      const result = await fx.source({ repoUrl: relative(process.cwd(), fx.bare) }).fetch(undefined);
      assert.equal(result.commit, head);
    }),
  );

  const damages: [string, (repo: string) => Promise<unknown>][] = [
    ["the clone directory is deleted", (repo) => rm(repo, { recursive: true })],
    ["HEAD holds garbage", (repo) => writeFile(join(repo, "HEAD"), "garbage\n")],
    ["the objects directory is deleted", (repo) => rm(join(repo, "objects"), { recursive: true })],
    [
      "origin points at another URL",
      (repo) => git(repo, "--git-dir", repo, "config", "remote.origin.url", "/elsewhere.git"),
    ],
  ];
  for (const [what, damage] of damages) {
    for (const [when, pushFirst] of [
      ["with no new commit", false],
      ["with a new commit", true],
    ] as const) {
      test(
        `a clone where ${what} is re-cloned ${when}`,
        withFixture(async (fx) => {
          const first = await fx.commit(APP);
          const source = fx.source();
          await source.fetch(undefined);
          await damage(join(fx.dir, "repo"));
          const head = pushFirst ? await fx.commit({ ...APP, "new.txt": "new" }) : first;
          assert.deepEqual(await source.fetch(first), { commit: head, changed: pushFirst, recloned: true });
          assert.equal((await tree(await source.snapshot(head)))["apps/web/app.yaml"], APP["apps/web/app.yaml"]);
          assert.deepEqual((await readdir(fx.dir)).sort(), ["repo", "snapshots"], "no temp clone is left behind");
        }),
      );
    }
  }

  test(
    "a clone whose objects were deleted (loose and packed) recovers on the next fetch",
    withFixture(async (fx) => {
      await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      await loseObjects(join(fx.dir, "repo"));
      const head = await fx.commit({ ...APP, "new.txt": "new" });
      const result = await source.fetch(undefined);
      assert.equal(result.commit, head);
      assert.deepEqual(await tree(await source.snapshot(head)), { ...APP, "new.txt": "new" });
    }),
  );

  test(
    "a snapshot from a clone that lost its objects re-clones once and succeeds",
    withFixture(async (fx) => {
      const head = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      await loseObjects(join(fx.dir, "repo"));
      fx.events.length = 0;
      assert.deepEqual(await tree(await source.snapshot(head)), APP);
      assert.deepEqual(
        fx.events.map((e) => e.name),
        ["bc_gitops:git:clone_start", "bc_gitops:git:clone_stop"],
      );
    }),
  );

  test(
    "a source configured with another repository re-clones instead of reusing the old clone",
    withFixture(async (fx) => {
      await fx.commit(APP);
      await fx.source().fetch(undefined);
      const otherBare = join(fx.root, "other.git");
      await git(fx.root, "clone", "-q", "--bare", fx.bare, otherBare);
      const work = join(fx.root, "other-work");
      await git(fx.root, "clone", "-q", otherBare, work);
      await writeFile(join(work, "other.txt"), "other");
      await git(work, "add", "-A");
      await git(work, "commit", "-q", "-m", "other");
      await git(work, "push", "-q", "origin", "HEAD:main");
      const otherHead = await git(work, "rev-parse", "HEAD");
      const result = await fx.source({ repoUrl: otherBare }).fetch(undefined);
      assert.deepEqual(result, { commit: otherHead, changed: true, recloned: true });
    }),
  );

  for (const [errno, stderr, hint] of FETCH_DISK_ERRORS) {
    test(
      `a fetch that fails with ${errno} keeps the clone, names the directory and backs off instead of re-cloning`,
      withFixture(async (fx) => {
        const first = await fx.commit(APP);
        const source = fx.source();
        await source.fetch(undefined);
        const second = await fx.commit({ ...APP, "new.txt": "new" });
        fx.events.length = 0;
        await withGitFailing(fx.root, { fetch: stderr }, async () => {
          for (let tick = 1; tick <= 3; tick++) {
            const error = await failure(source.fetch(first));
            assert.equal(error.code, "E_GIT", error.message);
            assert.equal(error.retry, "backoff");
            assert.equal(error.details.errno, errno);
            assert.equal(error.details.path, fx.dir);
            assert.ok(error.message.startsWith(`cannot write the git clone in ${fx.dir}: `), error.message);
            assert.match(error.message, hint);
          }
        });
        assert.deepEqual(cloneStarts(fx.events), [], "nothing was re-cloned");
        assert.equal(await git(fx.root, "--git-dir", join(fx.dir, "repo"), "rev-parse", "refs/heads/main"), first);
        assert.deepEqual(
          await source.fetch(first),
          { commit: second, changed: true, recloned: false },
          "the same clone catches up once the disk is fixed",
        );
      }),
    );
  }

  const realDisk = CAN_MOUNT ? {} : { skip: "mounting a tmpfs needs root with CAP_SYS_ADMIN" };
  test(
    "on a real full, then read-only file system a new commit is neither fetched nor re-cloned, and the error names the disk",
    realDisk,
    withFixture(async (fx) => {
      const disk = join(fx.root, "disk");
      const unmount = await mountTmpfs(disk, "1m");
      assert.ok(unmount, "the tmpfs mounted");
      try {
        const first = await fx.commit(APP);
        const source = fx.source({ dir: join(disk, "source") });
        await source.fetch(undefined);
        // More than the disk can take, and incompressible: the fetch must write it.
        const second = await fx.commit({ ...APP, "data.bin": randomBytes(300_000).toString("base64") });
        const filler = join(disk, "filler");
        await assert.rejects(
          writeFile(filler, Buffer.alloc(2 * 1024 * 1024)),
          (e: NodeJS.ErrnoException) => e.code === "ENOSPC",
        );
        fx.events.length = 0;
        for (let tick = 1; tick <= 3; tick++) {
          const error = await failure(source.fetch(first));
          assert.equal(error.code, "E_GIT", error.message);
          assert.equal(error.retry, "backoff");
          assert.equal(error.details.errno, "ENOSPC");
          assert.ok(
            error.message.startsWith(`cannot write the git clone in ${join(disk, "source")}: the file system is full`),
            error.message,
          );
        }
        await rm(filler);
        await exec("mount", ["-o", "remount,ro", disk], { timeoutMs: 10_000 });
        const readOnly = await failure(source.fetch(first));
        assert.equal(readOnly.details.errno, "EROFS", readOnly.message);
        assert.deepEqual(cloneStarts(fx.events), [], "nothing was re-cloned");
        await exec("mount", ["-o", "remount,rw", disk], { timeoutMs: 10_000 });
        assert.deepEqual(await source.fetch(first), { commit: second, changed: true, recloned: false });
      } finally {
        await unmount();
      }
    }),
  );

  test(
    "a snapshot that cannot be written to a really full disk names the directory and does not re-clone",
    realDisk,
    withFixture(async (fx) => {
      const disk = join(fx.root, "disk");
      const unmount = await mountTmpfs(disk, "1m");
      assert.ok(unmount, "the tmpfs mounted");
      try {
        const head = await fx.commit({ ...APP, "data.txt": randomBytes(150_000).toString("base64") });
        const source = fx.source({ dir: join(disk, "source") });
        await source.fetch(undefined);
        const filler = join(disk, "filler");
        await assert.rejects(
          writeFile(filler, Buffer.alloc(2 * 1024 * 1024)),
          (e: NodeJS.ErrnoException) => e.code === "ENOSPC",
        );
        fx.events.length = 0;
        const error = await failure(source.snapshot(head));
        assert.equal(error.code, "E_GIT", error.message);
        assert.equal(error.retry, "backoff");
        assert.equal(error.details.errno, "ENOSPC");
        assert.match(error.message, /file system is full/);
        assert.deepEqual(cloneStarts(fx.events), []);
        await rm(filler);
        assert.deepEqual((await tree(await source.snapshot(head)))["apps/web/app.yaml"], APP["apps/web/app.yaml"]);
        await source.close();
      } finally {
        await unmount!();
      }
    }),
  );

  test(
    "a first clone onto a read-only disk is reported as a disk problem, not as an unreachable remote",
    withFixture(async (fx) => {
      await fx.commit(APP);
      const stderr = `fatal: could not create leading directories of '${fx.dir}/.tmp-clone-1': Read-only file system`;
      await withGitFailing(fx.root, { clone: stderr }, async () => {
        const error = await failure(fx.source().fetch(undefined));
        assert.equal(error.code, "E_GIT");
        assert.equal(error.details.errno, "EROFS");
        assert.doesNotMatch(error.message, /cannot reach/);
      });
    }),
  );

  test(
    "a fetch that fails while the remote still lists the branch keeps a sound clone and blames the remote",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const second = await fx.commit({ ...APP, "new.txt": "new" });
      // The remote advertises the new head but cannot send it: ls-remote works, every fetch fails.
      const object = join(fx.bare, "objects", second.slice(0, 2), second.slice(2));
      await rename(object, `${object}.away`);
      fx.events.length = 0;
      for (let tick = 1; tick <= 2; tick++) {
        const error = await failure(source.fetch(first));
        assert.equal(error.code, "E_GIT_UNREACHABLE", error.message);
        assert.equal(error.retry, "backoff");
        assert.ok(error.message.startsWith(`cannot reach ${fx.bare} (branch main): `), error.message);
      }
      assert.deepEqual(cloneStarts(fx.events), [], "a flaky remote never costs a re-clone");
      await rename(`${object}.away`, object);
      assert.deepEqual(await source.fetch(first), { commit: second, changed: true, recloned: false });
    }),
  );

  test(
    "a fetch failure on a clone whose history git fsck finds broken re-clones it",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const second = await fx.commit({ ...APP, "b.txt": "b" });
      const source = fx.source();
      await source.fetch(undefined);
      await rm(join(fx.dir, "repo", "objects", first.slice(0, 2), first.slice(2)));
      const third = await fx.commit({ ...APP, "c.txt": "c" });
      fx.events.length = 0;
      let result: unknown;
      await withGitFailing(fx.root, { fetch: `fatal: bad object ${first}` }, async () => {
        result = await source.fetch(second);
      });
      assert.deepEqual(result, { commit: third, changed: true, recloned: true });
      assert.match(String(cloneStarts(fx.events)[0]?.metadata.reason), /damaged/);
    }),
  );

  test(
    "a stale ref lock left by a killed git is cleared by a re-clone",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      await writeFile(join(fx.dir, "repo", "refs", "heads", "main.lock"), "");
      const second = await fx.commit({ ...APP, "new.txt": "new" });
      fx.events.length = 0;
      assert.deepEqual(await source.fetch(first), { commit: second, changed: true, recloned: true });
      assert.match(String(cloneStarts(fx.events)[0]?.metadata.reason), /stale lock file .*main\.lock/);
    }),
  );

  test(
    "an unreachable remote fails with E_GIT_UNREACHABLE, leaves clone and snapshots alone, and recovers",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const snapshot = await source.snapshot(first);
      const headFile = await readFile(join(fx.dir, "repo", "HEAD"), "utf8");
      await rename(fx.bare, `${fx.bare}.away`);

      const error = await failure(source.fetch(first));
      assert.equal(error.code, "E_GIT_UNREACHABLE");
      assert.equal(error.retry, "backoff");
      assert.ok(error.message.startsWith(`cannot reach ${fx.bare} (branch main): `), error.message);
      assert.deepEqual(await tree(snapshot), APP);
      assert.equal(await readFile(join(fx.dir, "repo", "HEAD"), "utf8"), headFile);

      await rename(`${fx.bare}.away`, fx.bare);
      const second = await fx.commit({ ...APP, v: "2" });
      assert.deepEqual(await source.fetch(first), { commit: second, changed: true, recloned: false });
    }),
  );

  test(
    "an unreachable remote on first use leaves no clone behind",
    withFixture(async (fx) => {
      const source = fx.source({ repoUrl: join(fx.root, "missing.git") });
      assert.equal((await failure(source.fetch(undefined))).code, "E_GIT_UNREACHABLE");
      assert.deepEqual(await readdir(fx.dir).catch(() => []), []);
    }),
  );

  test(
    "a branch missing on the remote fails with E_GIT_REF naming the branch",
    withFixture(async (fx) => {
      await fx.commit(APP);
      const error = await failure(fx.source({ branch: "release/next" }).fetch(undefined));
      assert.equal(error.code, "E_GIT_REF");
      assert.equal(error.retry, "stalled");
      assert.match(error.message, /branch "release\/next" not found on .*check `branch`/);
    }),
  );

  test(
    "credentials in the repository URL never reach errors, logs or events",
    withFixture(async (fx) => {
      const logged: string[] = [];
      const log = (message: string, fields?: Record<string, unknown>) =>
        void logged.push(message, JSON.stringify(fields ?? {}));
      const source = fx.source({
        repoUrl: "https://user:s3cret@127.0.0.1:1/repo.git",
        logger: { debug: log, info: log, warn: log, error: log },
      });
      const error = await failure(source.fetch(undefined));
      assert.equal(error.code, "E_GIT_UNREACHABLE");
      assert.match(error.message, /^cannot reach https:\/\/\*\*\*@127\.0\.0\.1:1\/repo\.git \(branch main\): /);
      const seen: string[] = [...logged, JSON.stringify(fx.events)];
      for (let e: unknown = error; e instanceof Error; e = e.cause) {
        seen.push(e.message, JSON.stringify((e as GitopsError).details ?? {}));
      }
      assert.ok(!seen.join("\n").includes("s3cret"), seen.join("\n"));
    }),
  );

  test(
    "a password holding an unencoded @ never reaches errors, logs or events",
    withFixture(async (fx) => {
      const logged: string[] = [];
      const log = (message: string, fields?: Record<string, unknown>) =>
        void logged.push(message, JSON.stringify(fields ?? {}));
      const source = fx.source({
        repoUrl: "http://deploy:p@ss-w0rd@127.0.0.1:1/repo.git",
        logger: { debug: log, info: log, warn: log, error: log },
      });
      const error = await failure(source.fetch(undefined));
      assert.match(error.message, /^cannot reach http:\/\/\*\*\*@127\.0\.0\.1:1\/repo\.git \(branch main\): /);
      const seen: string[] = [...logged, JSON.stringify(fx.events)];
      for (let e: unknown = error; e instanceof Error; e = e.cause) {
        seen.push(e.message, JSON.stringify((e as GitopsError).details ?? {}));
      }
      assert.ok(!/p@ss|ss-w0rd/.test(seen.join("\n")), seen.join("\n"));
    }),
  );

  test(
    "a hung remote is given up at the deadline and its git processes are killed",
    withFixture(async (fx) => {
      const sockets = new Set<Socket>();
      const server = createServer((socket) => {
        sockets.add(socket);
        socket.resume(); // a paused socket never reports the peer's end
        socket.on("close", () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      try {
        const { port } = server.address() as { port: number };
        const source = fx.source({ repoUrl: `http://127.0.0.1:${port}/repo.git`, timeoutMs: 1000 });
        const error = await failure(source.fetch(undefined));
        assert.equal(error.code, "E_GIT_UNREACHABLE");
        assert.match(error.message, /timed out after 1000 ms/);
        assert.equal((error.cause as GitopsError).code, "E_TIMEOUT");
        // The connection belongs to git-remote-http, a grandchild: it closes only if the whole group died.
        const deadline = Date.now() + 5000;
        while (sockets.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
        assert.equal(sockets.size, 0, "a git process still holds the connection");

        const controller = new AbortController();
        setTimeout(() => controller.abort(), 300);
        const aborted = await failure(
          fx.source({ repoUrl: `http://127.0.0.1:${port}/repo.git` }).fetch(undefined, controller.signal),
        );
        assert.equal(aborted.code, "E_ABORTED");
      } finally {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => server.close(resolve));
      }
    }),
  );
});

describe("GitSource.snapshot and prune", () => {
  test(
    "a snapshot holds exactly the commit's files, including export-ignored ones",
    withFixture(async (fx) => {
      const files: Record<string, string> = { ".gitattributes": "secret.txt export-ignore\n", "secret.txt": "kept" };
      for (let i = 0; i < 60; i++) files[`src/dir${i % 6}/module${i}.ts`] = `export const n = ${i};\n`;
      const head = await fx.commit(files);
      const source = fx.source();
      await source.fetch(undefined);
      const path = await source.snapshot(head);
      assert.equal(path, join(fx.dir, "snapshots", head));
      assert.deepEqual(await tree(path), files);
      assert.deepEqual(await readdir(join(fx.dir, "snapshots")), [head], "no temp directory or index is left behind");
    }),
  );

  test(
    "an existing snapshot is returned as it is, without git",
    withFixture(async (fx) => {
      const head = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const path = await source.snapshot(head);
      await writeFile(join(path, "marker"), "still here");
      await rm(join(fx.dir, "repo"), { recursive: true });
      const [a, b] = await Promise.all([source.snapshot(head), fx.source().snapshot(head)]);
      assert.equal(a, path);
      assert.equal(b, path);
      assert.equal(await readFile(join(path, "marker"), "utf8"), "still here");
      assert.equal(await exists(join(fx.dir, "repo")), false, "nothing was cloned");
    }),
  );

  test(
    "concurrent snapshots of one commit agree on one complete directory",
    withFixture(async (fx) => {
      const head = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const paths = await Promise.all([source.snapshot(head), source.snapshot(head), fx.source().snapshot(head)]);
      assert.deepEqual(new Set(paths), new Set([join(fx.dir, "snapshots", head)]));
      assert.deepEqual(await tree(paths[0]!), APP);
    }),
  );

  test(
    "a snapshot of a commit the repository does not have fails with E_GIT and leaves nothing",
    withFixture(async (fx) => {
      await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      const error = await failure(source.snapshot("0123456789abcdef0123456789abcdef01234567"));
      assert.equal(error.code, "E_GIT");
      assert.deepEqual(await readdir(join(fx.dir, "snapshots")), []);
    }),
  );

  test(
    "snapshot refuses anything but a full lowercase commit id",
    withFixture(async (fx) => {
      const source = fx.source();
      for (const bad of [
        "HEAD",
        "main",
        "abc123",
        "../../etc/passwd",
        "-".repeat(40),
        "0123456789ABCDEF0123456789ABCDEF01234567",
        `${"a".repeat(40)}/..`,
      ]) {
        const error = await failure(source.snapshot(bad));
        assert.equal(error.code, "E_UNSAFE", bad);
      }
      assert.equal(await exists(fx.dir), false);
    }),
  );

  test(
    "prune removes every snapshot not kept, and leftover temp directories",
    withFixture(async (fx) => {
      const first = await fx.commit(APP);
      const source = fx.source();
      await source.fetch(undefined);
      await source.snapshot(first);
      const second = await fx.commit({ ...APP, b: "b" });
      await source.fetch(first);
      await source.snapshot(second);
      await mkdir(join(fx.dir, "snapshots", ".tmp-leftover"));
      await source.prune([second]);
      assert.deepEqual(await readdir(join(fx.dir, "snapshots")), [second]);
      await source.prune([]);
      assert.deepEqual(await readdir(join(fx.dir, "snapshots")), []);
    }),
  );

  test(
    "the first operation sweeps what a killed agent left (temp and old clones, half-written snapshots), not a live writer's",
    withFixture(async (fx) => {
      await fx.commit(APP);
      // A pid above any pid_max: no process has it, as after the agent that wrote these was killed.
      const gone = `${2 ** 31 - 2}-0123abcd`;
      const live = `${process.pid}-4567ef01`;
      const left = [`.tmp-clone-${gone}`, `.old-${gone}`, `snapshots/.tmp-${gone}`, `snapshots/.tmp-${gone}.index`];
      const kept = [`.tmp-clone-${live}`, `snapshots/.tmp-${live}`];
      for (const name of [...left, ...kept]) await mkdir(join(fx.dir, name), { recursive: true });
      await fx.source().fetch(undefined);
      for (const name of left) assert.equal(await exists(join(fx.dir, name)), false, `${name} is swept`);
      for (const name of kept) assert.equal(await exists(join(fx.dir, name)), true, `${name} is a live process's`);
    }),
  );

  test(
    "after a re-clone the next snapshot links nothing from one written before it",
    withFixture(async (fx) => {
      const first = await fx.commit({ ...APP, "lib/same.js": "unchanged\n" });
      const source = fx.source();
      await source.fetch(undefined);
      const ino = async (dir: string) => (await stat(join(dir, "lib/same.js"))).ino;
      const original = await ino(await source.snapshot(first));
      const second = await fx.commit({ ...APP, "lib/same.js": "unchanged\n", b: "b" });
      await source.fetch(first);
      const linked = await source.snapshot(second);
      assert.equal(await ino(linked), original, "without a re-clone an unchanged file is reused (linked or moved)");
      await rm(join(fx.dir, "repo"), { recursive: true });
      const third = await fx.commit({ ...APP, "lib/same.js": "unchanged\n", c: "c" });
      assert.equal((await source.fetch(second)).recloned, true);
      const after = await source.snapshot(third);
      assert.notEqual(await ino(after), await ino(linked), "the new clone's snapshot is written from its own objects");
      assert.equal(await readFile(join(after, "lib/same.js"), "utf8"), "unchanged\n");
    }),
  );
});

describe("GitSource options", () => {
  test("a repository URL using the ext:: or fd:: transport is refused before git runs", async () => {
    const root = await mkdtemp(join(tmpdir(), "bc-gitops-git-"));
    try {
      const marker = join(root, "pwned");
      for (const repoUrl of [`ext::sh -c touch% ${marker}`, "fd::3", "EXT::sh -c true"]) {
        assert.throws(
          () => new GitSource({ repoUrl, branch: "main", dir: join(root, "source") }),
          (e: unknown) => e instanceof GitopsError && e.code === "E_CONFIG" && /transport; only https/.test(e.message),
          repoUrl,
        );
      }
      assert.equal(await exists(marker), false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("repository URLs starting with '-' or holding control characters are refused", () => {
    for (const repoUrl of ["-uhack", "--upload-pack=touch /tmp/pwned", "", "/tmp/repo\n.git"]) {
      assert.throws(
        () => new GitSource({ repoUrl, branch: "main", dir: "/tmp/x" }),
        (e: unknown) => e instanceof GitopsError && e.code === "E_CONFIG",
        repoUrl,
      );
    }
  });

  test("branch names are accepted exactly when git check-ref-format --branch accepts them", async (t) => {
    // Outside any repository: inside one, git expands "@{-1}" to the branch checked out before.
    const outside = await tempDir(t);
    const names = [
      "main",
      "feature/x-1",
      "release-1.0",
      "@",
      "a@b",
      "é",
      "-x",
      "--upload-pack=x",
      "a..b",
      "a b",
      "HEAD",
      "x.lock",
      "a/b.lock/c",
      "",
      "a//b",
      "@{-1}",
      "a@{b",
      ".hidden",
      "a/.b",
      "a/",
      "/a",
      "a.",
      "a~1",
      "a^",
      "a:b",
      "a?",
      "a*",
      "a[",
      "a\\b",
      "a\tb",
    ];
    for (const branch of names) {
      const gitSays =
        (
          await exec("git", ["check-ref-format", "--branch", branch], {
            cwd: outside,
            env: { GIT_CEILING_DIRECTORIES: dirname(outside) },
            allowExitCodes: [0, 1, 128],
          })
        ).exitCode === 0;
      let accepted = true;
      try {
        new GitSource({ repoUrl: "/tmp/repo.git", branch, dir: "/tmp/x" });
      } catch (error) {
        assert.ok(error instanceof GitopsError && error.code === "E_CONFIG");
        assert.match(error.message, /is not a valid branch name/);
        accepted = false;
      }
      assert.equal(accepted, gitSays, JSON.stringify(branch));
    }
  });
});
