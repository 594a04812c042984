/**
 * What a workspace refuses to materialise: path sources outside the repository or overlapping
 * local_path, symlinks leading out of a path source, and tarball entries that are not plain files,
 * directories or in-tree links.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lstat, mkdir, readdir, readFile, readlink, rename, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { unpack } from "../src/_tree.ts";
import { GitopsError } from "../src/errors.ts";
import { AppSpec } from "../src/spec.ts";
import type { AppSpecInput } from "../src/spec.ts";
import { Workspaces } from "../src/workspace.ts";
import { runtimeHarness } from "./helpers/runtime-harness.ts";
import { tarBytes } from "./helpers/tar.ts";
import type { TarEntry } from "./helpers/tar.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

const LONG = { timeout: 60_000 };
const APP = {
  "package.json": JSON.stringify({ name: "x", type: "module", main: "index.js" }),
  "index.js": "export default {};\n",
};

/**
 * A spec as the schema gives it. The schema already refuses a relative path with `..`; such a path
 * is put back after parsing, so what is tested is the runtime's own check (a custom runtime or a
 * spec from an older state.json never went through this schema).
 */
const spec = (input: AppSpecInput): AppSpec => {
  const source = input.source;
  if (
    typeof source === "object" &&
    source !== null &&
    "path" in source &&
    typeof source.path === "string" &&
    source.path.split(/[\\/]/).includes("..")
  ) {
    const parsed = AppSpec.parse({ ...input, source: { ...source, path: "placeholder" } });
    return { ...parsed, source: { ...parsed.source, path: source.path } } as AppSpec;
  }
  return AppSpec.parse(input);
};

/** A temp dir holding `repo/` (the gitops repository) and `local/` (local_path), and workspaces over it. */
async function setup(t: TestContext) {
  const root = await tempDir(t, "bc-gitops-safety-");
  const [repo, local] = [join(root, "repo"), join(root, "local")];
  await mkdir(repo);
  return { root, repo, local, workspaces: new Workspaces({ localPath: local, timeoutMs: 60_000 }) };
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

/** The revision and the workspace of `s` are both refused with E_UNSAFE whose message matches every pattern; nothing is left. */
async function refused(
  workspaces: Workspaces,
  local: string,
  s: AppSpec,
  repoDir: string,
  patterns: RegExp[],
): Promise<void> {
  for (const error of [
    await failure(workspaces.resolveRevision(s, { repoDir })),
    await failure(workspaces.prepare(s, { repoDir })),
  ]) {
    assert.deepEqual([error.code, error.retry], ["E_UNSAFE", "stalled"], error.message);
    for (const pattern of patterns) assert.match(error.message, pattern);
  }
  assert.deepEqual(await readdir(join(local, "workspace", s.name)).catch(() => []), []);
}

test(
  "an absolute path source that is, contains or is inside local_path is refused, symlinks followed on both sides",
  LONG,
  async (t) => {
    const { root, repo, local, workspaces } = await setup(t);
    await writeTree(join(local, "data", "other"), APP);
    await writeTree(join(root, "elsewhere"), APP);
    await symlink(local, join(root, "alias"));
    const cases = [
      { path: local, rule: /is or contains local_path/ },
      { path: root, rule: /is or contains local_path/ },
      { path: join(root, "alias"), rule: /is or contains local_path/ },
      { path: join(local, "data", "other"), rule: /an absolute path must be outside local_path/ },
      { path: join(root, "alias", "data", "other"), rule: /an absolute path must be outside local_path/ },
    ];
    for (const { path, rule } of cases) {
      const s = spec({ name: "web", version: "1", source: { type: "path", path } });
      await refused(workspaces, local, s, repo, [
        /path source ".*" of web/,
        new RegExp(JSON.stringify(path).replace(/[/.]/g, "\\$&")),
        rule,
      ]);
    }
    // local_path itself given through a symlink.
    const throughLink = new Workspaces({ localPath: join(root, "alias") });
    const inside = spec({ name: "web", version: "1", source: { type: "path", path: join(local, "data", "other") } });
    assert.equal((await failure(throughLink.resolveRevision(inside, { repoDir: repo }))).code, "E_UNSAFE");
    // A directory beside local_path is fine.
    const ok = await workspaces.prepare(
      spec({ name: "ok", version: "1", source: { type: "path", path: join(root, "elsewhere") } }),
      { repoDir: repo },
    );
    assert.equal(await readFile(ok.entry, "utf8"), APP["index.js"]);
  },
);

test(
  "a relative path source that leaves the repository, by .. or through a symlinked directory, is refused",
  LONG,
  async (t) => {
    const { root, repo, local, workspaces } = await setup(t);
    await writeTree(join(root, "outside", "app"), APP);
    await writeTree(join(repo, "code", "web"), APP);
    await symlink(join(root, "outside"), join(repo, "link"));
    await symlink("../../outside", join(repo, "code", "up"));
    for (const path of ["../outside/app", "link/app", "code/../../outside/app", "code/up/app", "link", "../missing"]) {
      const s = spec({ name: "web", version: "1", source: { type: "path", path } });
      await refused(workspaces, local, s, repo, [
        new RegExp(`path source "${path.replace(/[.]/g, "\\.")}" of web`),
        /must stay inside the gitops repository/,
      ]);
    }
    // A relative path that is the repository but contains local_path is refused too.
    const nested = new Workspaces({ localPath: join(repo, "state") });
    const whole = spec({ name: "web", version: "1", source: { type: "path", path: "." } });
    assert.match(
      (await failure(nested.resolveRevision(whole, { repoDir: repo }))).message,
      /is or contains local_path/,
    );
    await writeTree(join(repo, "state", "data", "other"), APP);
    const theirs = spec({ name: "web", version: "1", source: { type: "path", path: "state/data/other" } });
    assert.match((await failure(nested.resolveRevision(theirs, { repoDir: repo }))).message, /is inside local_path/);
  },
);

test("a path source that became unsafe is refused even when its cached revision is asked for", LONG, async (t) => {
  const { root, repo, local, workspaces } = await setup(t);
  await writeTree(join(repo, "code", "web"), APP);
  const s = spec({ name: "web", version: "1", source: { type: "path", path: "code/web" } });
  const first = await workspaces.prepare(s, { repoDir: repo });
  await writeTree(join(root, "outside"), APP);
  await rename(join(repo, "code", "web"), join(root, "moved"));
  await symlink(join(root, "outside"), join(repo, "code", "web"));
  const error = await failure(workspaces.prepare(s, { repoDir: repo, revision: first.revision }));
  assert.equal(error.code, "E_UNSAFE");
  assert.match(error.message, /must stay inside the gitops repository/);
  assert.deepEqual(
    await readdir(join(local, "workspace", "web")),
    [first.revision],
    "the old workspace is left as it was",
  );
});

test(
  "a relative path source inside the repository deploys, also through a symlink that stays in it",
  LONG,
  async (t) => {
    const { repo, workspaces } = await setup(t);
    await writeTree(join(repo, "code", "web"), APP);
    await symlink("code", join(repo, "alias"));
    const ws = await workspaces.prepare(
      spec({ name: "web", version: "1", source: { type: "path", path: "alias/web" } }),
      { repoDir: repo },
    );
    assert.equal(await readFile(ws.entry, "utf8"), APP["index.js"]);
  },
);

test(
  "a symlink inside a path source that leads outside it is refused by the revision hash and by the copy",
  LONG,
  async (t) => {
    const { root, repo, local, workspaces } = await setup(t);
    await writeFile(join(root, "secret.txt"), "secret\n");
    await writeFile(join(repo, "secret.txt"), "secret\n");
    const cases: [string, string][] = [
      ["secret", "../../../secret.txt"], // climbs out
      ["abs", "/etc/passwd"], // absolute
      ["dir", "../.."], // a directory outside
      ["s/out", "up/../../secret.txt"], // lexically inside, but s/up is a link to the root: really outside
      ["s/gone", "../nowhere/.."], // dangling through ..: where it lands cannot be checked
    ];
    for (const [i, [name, target]] of cases.entries()) {
      const src = join(repo, "code", `app${i}`);
      await writeTree(src, APP);
      await mkdir(join(src, "s"), { recursive: true });
      await symlink("..", join(src, "s", "up")); // in-tree: s/up is the source root
      await symlink(target, join(src, name));
      const s = spec({ name: `app${i}`, version: "1", source: { type: "path", path: `code/app${i}` } });
      await refused(workspaces, local, s, repo, [
        new RegExp(`path source "code/app${i}" of app${i}`),
        new RegExp(`symlink ${name} -> `),
        /leads outside the path source/,
      ]);
    }
  },
);

test("in-tree symlinks of a path source are copied as links, not as the files they point at", LONG, async (t) => {
  const { repo, workspaces } = await setup(t);
  const src = join(repo, "code", "web");
  await writeTree(src, { ...APP, "v1/a.js": "export const a = 1;\n" });
  await symlink("v1", join(src, "current"));
  await mkdir(join(src, "bin"));
  await symlink("../index.js", join(src, "bin", "web"));
  await symlink("later/built.js", join(src, "dangling"));
  const ws = await workspaces.prepare(spec({ name: "web", version: "1", source: { type: "path", path: "code/web" } }), {
    repoDir: repo,
  });
  const kept: [string, string][] = [
    ["current", "v1"],
    ["bin/web", "../index.js"],
    ["dangling", "later/built.js"],
  ];
  for (const [name, target] of kept) {
    assert.ok((await lstat(join(ws.dir, name))).isSymbolicLink(), name);
    assert.equal(await readlink(join(ws.dir, name)), target);
  }
});

test("a deploy of an escaping path source fails with the rule in its error and starts nothing", LONG, async (t) => {
  const h = await runtimeHarness(t, { prefix: "bc-gitops-safety-rt-", options: () => ({}) });
  await writeTree(join(h.repo, "..", "outside"), APP);
  await writeTree(join(h.repo, "code", "web"), APP);
  const s = spec({ name: "web", version: "1", source: { type: "path", path: "../outside" } });
  await assert.rejects(
    h.runtime.deploy(s),
    /path source "\.\.\/outside" of web .*must stay inside the gitops repository/,
  );
  assert.deepEqual(await h.runtime.getCurrentState(), {});
});

// ---------------------------------------------------------------------------------------------

/** A tarball source of app `name` holding `entries` under `package/`, with its sha256. */
async function tarball(dir: string, name: string, entries: TarEntry[]) {
  const file = join(dir, `${name}.tar`);
  const bytes = tarBytes([
    { name: "package/", type: "5" },
    { name: "package/index.js", content: APP["index.js"] },
    ...entries,
  ]);
  await writeFile(file, bytes);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  return { file, spec: spec({ name, version: "1", source: { type: "tarball", url: file, sha256 } }) };
}

/** The archive's refusal by unpack (nothing written to its target) and by prepare (naming the app). */
async function refusedArchive(t: TestContext, entries: TarEntry[], pattern: RegExp): Promise<void> {
  const { root, local, workspaces } = await setup(t);
  const { file, spec: s } = await tarball(root, "rel", entries);
  const into = join(root, "into");
  const direct = await failure(unpack(file, into, 60_000));
  assert.equal(direct.code, "E_UNSAFE");
  assert.match(direct.message, pattern);
  assert.match(direct.message, /nothing was unpacked/);
  assert.equal(await stat(into).catch(() => undefined), undefined, "nothing was unpacked");
  const error = await failure(workspaces.prepare(s));
  assert.deepEqual([error.code, error.retry], ["E_UNSAFE", "stalled"]);
  assert.match(error.message, new RegExp(`^tarball .*rel\\.tar of rel: `));
  assert.match(error.message, pattern);
  assert.deepEqual(await readdir(join(local, "workspace", "rel")).catch(() => []), []);
}

const special: { type: TarEntry["type"]; kind: RegExp }[] = [
  { type: "3", kind: /is a character device/ },
  { type: "4", kind: /is a block device/ },
  { type: "6", kind: /is a FIFO/ },
  { type: "7", kind: /is a contiguous file/ },
];
for (const { type, kind } of special) {
  test(`a tarball with ${kind.source.slice(3)} entry is refused before anything is unpacked`, LONG, async (t) => {
    await refusedArchive(
      t,
      [{ name: "package/null dev", type }],
      new RegExp(`entry "package/null dev" ${kind.source}`),
    );
  });
}

const links: { name: string; entry: TarEntry; pattern: RegExp }[] = [
  {
    name: "a hard link out of the archive",
    entry: { name: "package/h", type: "1", link: "../../etc/passwd" },
    pattern: /hard link package\/h -> (\.\.\/\.\.\/)?etc\/passwd does not point at a regular file/,
  },
  {
    name: "an absolute hard link",
    entry: { name: "package/h", type: "1", link: "/etc/passwd" },
    pattern: /hard link package\/h -> \/?etc\/passwd does not point at a regular file/,
  },
  {
    name: "a hard link to an entry not listed before it",
    entry: { name: "package/h", type: "1", link: "package/later.js" },
    pattern: /not point at a regular file listed before it/,
  },
  {
    name: "a hard link to a directory",
    entry: { name: "package/h", type: "1", link: "package/" },
    pattern: /hard link package\/h -> package\//,
  },
  {
    name: "a symlink out of the archive",
    entry: { name: "package/s", type: "2", link: "../../x" },
    pattern: /symlink package\/s -> \.\.\/\.\.\/x leads outside/,
  },
  {
    name: "an absolute symlink",
    entry: { name: "package/s", type: "2", link: "/etc" },
    pattern: /symlink package\/s -> \/etc leads outside/,
  },
  {
    name: "a symlink whose name holds an arrow",
    entry: { name: "package/x -> y", type: "2", link: "../../etc" },
    pattern: /symlink package\/x -> y -> \.\.\/\.\.\/etc leads outside/,
  },
  {
    name: "a ../ name",
    entry: { name: "package/../../evil", content: "x" },
    pattern: /entry "package\/\.\.\/\.\.\/evil" would land outside/,
  },
];
for (const { name, entry, pattern } of links) {
  test(`a tarball with ${name} is refused before anything is unpacked`, LONG, async (t) => {
    await refusedArchive(t, [entry], pattern);
  });
}

test(
  "a tarball's in-tree links and names with spaces, arrows or newlines are unpacked as they are",
  LONG,
  async (t) => {
    const { root, workspaces } = await setup(t);
    const { spec: s } = await tarball(root, "rel", [
      { name: "package/node_modules/t/cli.js", content: "cli\n" },
      { name: "package/node_modules/.bin/t", type: "2", link: "../t/cli.js" },
      { name: "package/a -> /etc", content: "a file\n" },
      { name: "package/two words.js", content: "two\n" },
      { name: "package/new\nline", content: "nl\n" },
      { name: "package/same.js", type: "1", link: "package/two words.js" },
    ]);
    const ws = await workspaces.prepare(s);
    assert.equal(await readlink(join(ws.dir, "node_modules", ".bin", "t")), "../t/cli.js");
    assert.equal(await readFile(join(ws.dir, "a -> /etc"), "utf8"), "a file\n");
    assert.equal(await readFile(join(ws.dir, "new\nline"), "utf8"), "nl\n");
    assert.equal((await stat(join(ws.dir, "same.js"))).ino, (await stat(join(ws.dir, "two words.js"))).ino);
  },
);

test("setuid and setgid bits of a tarball's files are dropped", LONG, async (t) => {
  const { root, workspaces } = await setup(t);
  const { spec: s } = await tarball(root, "rel", [{ name: "package/tool", content: "#!/bin/sh\n", mode: 0o6755 }]);
  const ws = await workspaces.prepare(s);
  const mode = (await stat(join(ws.dir, "tool"))).mode;
  assert.equal(mode & 0o6000, 0, `mode ${mode.toString(8)}`);
  assert.equal(mode & 0o100, 0o100, "still executable");
});

test("TAR_OPTIONS in the agent's environment cannot change how archives are listed or unpacked", LONG, async (t) => {
  const { root, workspaces } = await setup(t);
  const { spec: s } = await tarball(root, "rel", []);
  const saved = process.env.TAR_OPTIONS;
  process.env.TAR_OPTIONS = "--to-stdout";
  try {
    const ws = await workspaces.prepare(s);
    assert.equal(await readFile(ws.entry, "utf8"), APP["index.js"]);
  } finally {
    if (saved === undefined) delete process.env.TAR_OPTIONS;
    else process.env.TAR_OPTIONS = saved;
  }
});
