/**
 * Reading the gitops repository from git's object store (issue 13): one `cat-file --batch`
 * process, only changed spec blobs read, path sources named by their tree id and materialised
 * with hard links, and a webhook-named head fetched without `ls-remote`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, stat, symlink } from "node:fs/promises";
import { join } from "node:path";
import { GitObjects } from "../src/_git-objects.ts";
import { readCommit } from "../src/_git-specs.ts";
import { GitSource } from "../src/git.ts";
import { SpecCache } from "../src/loader.ts";
import { Workspaces } from "../src/workspace.ts";
import { git, gitopsRepo, yamlSpec, type GitopsRepo } from "./helpers/gitops-repo.ts";
import { recordingLogger } from "./helpers/logger.ts";
import { tempDir } from "./helpers/tmp.ts";
import type { TestContext } from "node:test";

const LONG = { timeout: 120_000 };

function sourceOn(t: TestContext, repo: GitopsRepo, dir = join(repo.root, "local", "git")): GitSource {
  const source = new GitSource({ repoUrl: repo.bare, branch: "main", dir });
  t.after(() => source.close());
  return source;
}

const apps = (n: number, version = "1.0.0") =>
  Object.fromEntries(
    Array.from({ length: n }, (_, i) => [
      `apps/app${String(i).padStart(2, "0")}/app.yaml`,
      yamlSpec(`app${i}`, version),
    ]),
  );

test(
  "a commit with one changed spec among 30 reads one blob, and reading an unchanged commit reads none",
  LONG,
  async (t) => {
    const repo = await gitopsRepo(t, apps(30));
    const source = sourceOn(t, repo);
    const cache = new SpecCache();
    const first = (await source.fetch(undefined)).commit;
    const before = await readCommit(source, first, "apps", { cache });
    assert.equal(before.load.apps.length, 30);
    assert.equal(source.objects.stats.blobs, 30, "the first read reads every spec once");
    assert.equal(source.objects.stats.processes, 1, "one cat-file process answers every read");

    await readCommit(source, first, "apps", { cache });
    assert.equal(source.objects.stats.blobs, 30, "the same commit again reads no blob");

    const second = await repo.commit({ "apps/app07/app.yaml": yamlSpec("app7", "2.0.0") });
    await source.fetch(first);
    const trees = source.objects.stats.trees;
    const after = await readCommit(source, second, "apps", { cache });
    assert.equal(source.objects.stats.blobs, 31, "exactly the changed spec's blob is read");
    assert.equal(source.objects.stats.trees - trees, 3, "the new root tree, apps/ and the changed app's own tree");
    assert.equal(after.load.apps.find((a) => a.spec.name === "app7")?.spec.version, "2.0.0");
    assert.equal(after.load.apps.length, 30);
    assert.equal(source.objects.stats.processes, 1);
  },
);

test(
  "the object reader answers concurrent reads in order, names a missing object, and restarts after its process dies",
  LONG,
  async (t) => {
    const repo = await gitopsRepo(t, { "a.txt": "alpha\n", "b/c.txt": "gamma\n" });
    const head = await git(repo.work, "rev-parse", "HEAD");
    const objects = new GitObjects({ gitDir: repo.bare, cwd: repo.root, timeoutMs: 30_000 });
    t.after(() => objects.close());
    const { tree } = await objects.commit(head);
    const ids = await Promise.all(["a.txt", "b/c.txt", "b"].map((p) => objects.entryAt(tree, p)));
    assert.deepEqual(
      ids.map(({ entry }) => entry?.type),
      ["blob", "blob", "tree"],
    );
    const [a, c] = await Promise.all([objects.blob(ids[0]!.entry!.id), objects.blob(ids[1]!.entry!.id)]);
    assert.deepEqual([a.toString(), c.toString()], ["alpha\n", "gamma\n"]);
    assert.equal(ids[2]!.entry!.id, await git(repo.work, "rev-parse", "HEAD:b"), "a tree id is git's own");
    await assert.rejects(objects.blob("0".repeat(40)), /object 0{40} is missing from the local clone/);
    await assert.rejects(objects.blob(tree), /is a tree, not a blob/);
    await assert.rejects(objects.blob("../../etc"), /not an object id/);

    await objects.close();
    assert.equal((await objects.blob(ids[0]!.entry!.id)).toString(), "alpha\n", "a closed reader starts again");
    assert.equal(objects.stats.processes, 2);
  },
);

test(
  "a path source's revision is its git tree id; unchanged files are hard links from the previous snapshot and into the workspace, unchanged directories move over",
  LONG,
  async (t) => {
    const repo = await gitopsRepo(t, {
      "apps/web/app.yaml": yamlSpec("web", "1.0.0", "source:\n  type: path\n  path: code/web\n"),
      "apps/other/app.yaml": yamlSpec("other", "1.0.0"),
      "code/web/package.json": '{"name":"web","type":"module","main":"index.js"}',
      "code/web/index.js": "export const v = 1;\n",
      "code/web/lib/util.js": "export const u = 1;\n",
      "docs/big.md": "not needed by any app\n",
    });
    const source = sourceOn(t, repo);
    const local = await tempDir(t);
    const workspaces = new Workspaces({ localPath: local });
    const first = (await source.fetch(undefined)).commit;
    const one = await readCommit(source, first, "apps");
    const tree1 = await git(repo.work, "rev-parse", "HEAD:code/web");
    assert.equal(one.trees.get("code/web"), tree1);
    const treeOf = (path: string) => one.trees.get(path.replace(/^\.\//, ""));
    assert.equal(
      await workspaces.resolveRevision(one.load.apps.find((a) => a.spec.name === "web")!.spec, {
        repoDir: one.repoDir,
        treeOf,
      }),
      tree1,
    );
    assert.deepEqual((await readdir(one.repoDir)).sort(), ["code"], "the snapshot holds only the path source");
    assert.deepEqual((await readdir(join(one.repoDir, "code"))).sort(), ["web"]);

    const web = one.load.apps.find((a) => a.spec.name === "web")!.spec;
    const prepared = await workspaces.prepare(web, { repoDir: one.repoDir, treeOf });
    assert.equal(prepared.revision, tree1, "the workspace is named by the tree id");
    const ino = async (path: string) => (await stat(path)).ino;
    assert.equal(
      await ino(join(prepared.dir, "index.js")),
      await ino(join(one.repoDir, "code/web/index.js")),
      "workspace files are hard links to the snapshot's",
    );

    const second = await repo.commit({ "code/web/index.js": "export const v = 2;\n" });
    await source.fetch(first);
    const two = await readCommit(source, second, "apps");
    const tree2 = await git(repo.work, "rev-parse", "HEAD:code/web");
    assert.notEqual(tree2, tree1);
    assert.equal(two.trees.get("code/web"), tree2);
    // Unchanged files are the same files as before: linked one by one (package.json, next to the
    // changed index.js), or in a directory moved over whole from the superseded snapshot (lib/).
    for (const file of ["package.json", "lib/util.js"])
      assert.equal(
        await ino(join(two.repoDir, "code/web", file)),
        await ino(join(prepared.dir, file)),
        `${file} is the file the running workspace has`,
      );
    assert.notEqual(await ino(join(two.repoDir, "code/web/index.js")), await ino(join(prepared.dir, "index.js")));
    assert.equal(await readFile(join(two.repoDir, "code/web/index.js"), "utf8"), "export const v = 2;\n");
    assert.equal(
      await readFile(join(prepared.dir, "index.js"), "utf8"),
      "export const v = 1;\n",
      "the running revision is untouched",
    );
  },
);

test(
  "a path source reached through an in-repository symbolic link is written with its target; one leaving the repository is left for the path rules",
  LONG,
  async (t) => {
    const repo = await gitopsRepo(t, {
      "apps/web/app.yaml": yamlSpec("web", "1.0.0", "source:\n  type: path\n  path: current/web\n"),
      "apps/out/app.yaml": yamlSpec("out", "1.0.0", "source:\n  type: path\n  path: escape\n"),
      "releases/v1/web/index.js": "export const v = 1;\n",
    });
    await symlink("releases/v1", join(repo.work, "current"));
    await symlink("..", join(repo.work, "escape"));
    await repo.commit({});
    const source = sourceOn(t, repo);
    const head = (await source.fetch(undefined)).commit;
    const read = await readCommit(source, head, "apps");
    assert.equal(await readFile(join(read.repoDir, "current/web/index.js"), "utf8"), "export const v = 1;\n");
    assert.equal(read.trees.get("current/web"), undefined, "no tree id through a link: the runtime hashes it");
    const workspaces = new Workspaces({ localPath: await tempDir(t) });
    const out = read.load.apps.find((a) => a.spec.name === "out")!.spec;
    await assert.rejects(
      workspaces.resolveRevision(out, { repoDir: read.repoDir }),
      /must stay inside the gitops repository/,
    );
  },
);

test("a fetch given the head a webhook named runs no ls-remote, and follows a force-push exactly", LONG, async (t) => {
  const repo = await gitopsRepo(t, apps(2));
  const logger = recordingLogger();
  const source = new GitSource({ repoUrl: repo.bare, branch: "main", dir: join(repo.root, "local", "git"), logger });
  t.after(() => source.close());
  const first = (await source.fetch(undefined)).commit;
  const asked = () => logger.debugs.filter((line) => line.startsWith("ls-remote:")).length;
  const fetched = () => logger.debugs.filter((line) => line.startsWith("fetched main")).length;
  assert.equal(asked(), 1, "a fetch without a head asks the remote first");

  const second = await repo.commit({ "apps/app00/app.yaml": yamlSpec("app0", "2.0.0") });
  const hinted = await source.fetch(first, undefined, { head: second });
  assert.deepEqual([hinted.commit, hinted.changed], [second, true]);
  assert.deepEqual([asked(), fetched()], [1, 1], "fetched without ls-remote");

  // A replayed, older head never takes the branch back: the fetch says where it really is.
  const replay = await source.fetch(second, undefined, { head: first });
  assert.equal(replay.commit, second);

  const rewritten = await repo.forcePush({ "apps/solo/app.yaml": yamlSpec("solo", "1.0.0") });
  const forced = await source.fetch(second, undefined, { head: rewritten });
  assert.deepEqual([forced.commit, forced.changed], [rewritten, true]);
  assert.equal(asked(), 1, "still no ls-remote");
  // Without a head, the usual ls-remote first.
  await source.fetch(rewritten);
  assert.equal(asked(), 2);
});
