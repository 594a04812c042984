import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  SpecCache,
  formatIssue,
  loadApps,
  loadListing,
  resolveAppsDir,
  type LoadResult,
  type SpecFileRef,
} from "../src/loader.ts";
import { GitopsError } from "../src/errors.ts";
import { SPEC_FILE_NAMES } from "../src/spec-file.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

const YAML_SPEC = 'name: web\nversion: "1.0.0"\n';
const JSON_SPEC = '{"name": "web", "version": "1.0.0"}';
const ERLANG_SPEC = '#{name => web, version => <<"1.0.0">>}.';
const BODY: Record<string, string> = {
  "app.config": ERLANG_SPEC,
  "app.yaml": YAML_SPEC,
  "app.yml": YAML_SPEC,
  "app.json": JSON_SPEC,
  "config.yaml": YAML_SPEC,
  "config.yml": YAML_SPEC,
  "config.json": JSON_SPEC,
  config: ERLANG_SPEC,
};

async function load(
  t: Parameters<typeof tempDir>[0],
  files: Record<string, string | Uint8Array>,
  strict = false,
): Promise<LoadResult> {
  const root = await tempDir(t);
  await writeTree(root, files);
  return loadApps(join(root, "apps"), { root, strict });
}

for (const name of SPEC_FILE_NAMES) {
  test(`a spec in ${name} loads with every default filled in`, async (t) => {
    const result = await load(t, { [`apps/web/${name}`]: BODY[name]! });
    assert.deepEqual(result.errors, []);
    assert.equal(result.apps.length, 1);
    const { spec, file } = result.apps[0]!;
    assert.equal(file, `apps/web/${name}`);
    assert.equal(spec.name, "web");
    assert.equal(spec.version, "1.0.0");
    assert.deepEqual(spec.source, { type: "npm", package: "web" });
    assert.equal(spec.isolation, "embedded");
    assert.deepEqual(spec.env, {});
    assert.deepEqual(spec.depends_on, []);
    assert.deepEqual(spec.health, { type: "none", interval: 30000, timeout: 5000, path: "/" });
  });
}

test("the first spec file in priority order wins and the others are not read", async (t) => {
  for (let i = 0; i < SPEC_FILE_NAMES.length - 1; i++) {
    const files: Record<string, string> = {};
    // The winner carries the version; every lower-priority file is broken, so reading one would show.
    SPEC_FILE_NAMES.slice(i).forEach((name, j) => {
      files[`apps/web/${name}`] = j === 0 ? BODY[name]!.replace("1.0.0", `9.${i}`) : "{{{ not a spec";
    });
    const result = await load(t, files);
    assert.deepEqual(result.errors, [], `priority ${SPEC_FILE_NAMES[i]}`);
    assert.equal(result.apps[0]?.spec.version, `9.${i}`);
    assert.equal(result.apps[0]?.file, `apps/web/${SPEC_FILE_NAMES[i]}`);
  }
});

test("directories without a spec file, hidden directories and plain files in apps/ are ignored", async (t) => {
  const result = await load(t, {
    "apps/README.md": "# apps",
    "apps/notes/readme.txt": "nothing here",
    "apps/.hidden/app.yaml": "not: [valid",
    "apps/web/app.yaml": YAML_SPEC,
  });
  assert.deepEqual(result.errors, []);
  assert.deepEqual(
    result.apps.map((a) => a.spec.name),
    ["web"],
  );
});

const BAD: Array<{
  name: string;
  files: Record<string, string | Uint8Array>;
  error: RegExp;
  at?: [number, number];
  path?: string;
}> = [
  {
    name: "bad YAML syntax",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nenv: [1, 2\nport: 3\n' },
    error: /invalid YAML/,
    at: [4, 1],
  },
  {
    name: "bad JSON syntax",
    files: { "apps/x/app.json": '{\n  "name": "x",\n  "version": "1",,\n}' },
    error: /invalid JSON/,
  },
  { name: "bad Erlang syntax", files: { "apps/x/app.config": '#{name => x,\n  version => <<"1">>\n' }, error: /./ },
  {
    name: "a numeric version",
    files: { "apps/x/app.yaml": "name: x\nversion: 1.0\n" },
    error: /expected a string, got the number 1: quote it/,
    at: [2, 10],
    path: "version",
  },
  {
    name: "a version of the wrong type",
    files: { "apps/x/app.json": '{"name": "x", "version": ["1"]}' },
    error: /expected a version string/,
    path: "version",
  },
  {
    name: "an unknown source type",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nsource:\n  type: ftp\n' },
    error: /expected type to be one of npm, git, path, tarball, got "ftp"/,
    at: [4, 9],
    path: "source.type",
  },
  {
    name: "a hex source",
    files: { "apps/x/app.config": '#{name => x, version => <<"1">>, source => #{type => hex}}.' },
    error:
      /^source type "hex" fetches Erlang\/Elixir packages from hex\.pm, which bc-gitops does not install; publish the app to npm and use type: npm/,
    path: "source.type",
  },
  {
    name: "a mesh source",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nsource: { type: mesh }\n' },
    error:
      /^source type "mesh" fetches from Macula's content system, which bc-gitops does not support; use type: npm, git, tarball or path$/,
    path: "source.type",
  },
  {
    name: "a git source without url",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nsource: { type: git }\n' },
    error: /expected a git URL/,
    path: "source.url",
  },
  {
    name: "a git ref starting with a dash",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nsource: { type: git, url: /r, ref: "--upload-pack=x" }\n' },
    error: /must not start with "-"/,
    path: "source.ref",
  },
  {
    name: "a tarball without a checksum",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nsource: { type: tarball, url: "https://h/x.tgz" }\n' },
    error: /needs sha256 or integrity/,
  },
  {
    name: "a name that escapes a directory",
    files: { "apps/x/app.yaml": 'name: ../../etc\nversion: "1"\n' },
    error: /not a valid app name/,
    path: "name",
  },
  {
    name: "a name with a slash",
    files: { "apps/x/app.yaml": 'name: a/b\nversion: "1"\n' },
    error: /not a valid app name/,
    path: "name",
  },
  {
    name: "a name starting with a dot",
    files: { "apps/x/app.yaml": 'name: .hidden\nversion: "1"\n' },
    error: /not a valid app name/,
    path: "name",
  },
  {
    name: "an entry outside the package",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nentry: ../../server.js\n' },
    error: /relative path inside the app/,
    path: "entry",
  },
  {
    name: "a bad duration",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nhealth:\n  type: http\n  interval: soon\n' },
    error: /expected a duration like 30000 or "30s", got "soon"/,
    at: [5, 13],
    path: "health.interval",
  },
  {
    name: "a bad isolation",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nisolation: docker\n' },
    error: /expected one of embedded, worker, process/,
    path: "isolation",
  },
  {
    name: "env that is not a mapping",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nenv: [a, b]\n' },
    error: /expected a mapping of settings/,
    path: "env",
  },
  {
    name: "a dependency on itself",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\ndepends_on: [x]\n' },
    error: /cannot depend on itself/,
    path: "depends_on[0]",
  },
  {
    name: "a missing name",
    files: { "apps/x/app.yaml": 'version: "1"\n' },
    error: /expected an app name, got nothing/,
    path: "name",
  },
  {
    name: "a list instead of a mapping",
    files: { "apps/x/app.yaml": "- name: x\n" },
    error: /expected a mapping of spec fields/,
  },
  { name: "an empty file", files: { "apps/x/app.yaml": "" }, error: /file is empty/ },
  {
    name: "a file of only comments",
    files: { "apps/x/app.yaml": "# nothing yet\n" },
    error: /expected a mapping of spec fields.*got nothing/,
  },
  {
    name: "binary garbage",
    files: { "apps/x/app.yaml": new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 0xff, 0xfe]) },
    error: /NUL bytes/,
  },
  {
    name: "invalid UTF-8",
    files: { "apps/x/app.json": new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) },
    error: /not valid UTF-8/,
  },
  {
    name: "a 10 MB file",
    files: { "apps/x/app.yaml": `name: x\nversion: "1"\ndescription: ${"x".repeat(10 * 1024 * 1024)}\n` },
    error: /at most 1 MB/,
  },
  {
    name: "duplicated YAML keys",
    files: { "apps/x/app.yaml": 'name: x\nversion: "1"\nversion: "2"\n' },
    error: /unique/,
    at: [3, 1],
  },
];

for (const c of BAD) {
  test(`${c.name} is an error naming the file, and the valid app beside it still loads`, async (t) => {
    const result = await load(t, { ...c.files, "apps/good/app.yaml": 'name: good\nversion: "1.0.0"\n' });
    assert.deepEqual(
      result.apps.map((a) => a.spec.name),
      ["good"],
    );
    assert.equal(result.errors.length >= 1, true, "an error is reported");
    const error = result.errors[0]!;
    assert.equal(error.file, Object.keys(c.files)[0]);
    assert.match(error.message, c.error);
    if (c.path) assert.equal(error.path, c.path);
    if (c.at) assert.deepEqual([error.line, error.column], c.at);
    assert.ok(result.invalid.includes("x"), "the app's directory name is marked invalid");
  });
}

test("duplicate names are an error on both files and neither app loads", async (t) => {
  const result = await load(t, {
    "apps/a/app.yaml": 'name: same\nversion: "1"\n',
    "apps/b/app.json": '{"name": "same", "version": "2"}',
    "apps/c/app.yaml": 'name: c\nversion: "1"\n',
  });
  assert.deepEqual(
    result.apps.map((a) => a.spec.name),
    ["c"],
  );
  assert.deepEqual(
    result.errors.map((e) => e.file),
    ["apps/a/app.yaml", "apps/b/app.json"],
  );
  assert.match(result.errors[0]!.message, /duplicate app name "same": also used by apps\/b\/app.json/);
  assert.deepEqual([result.errors[0]!.line, result.errors[0]!.column], [1, 7]);
  assert.ok(result.invalid.includes("same"));
});

test("unknown keys are warnings with a did-you-mean hint, and the app still loads", async (t) => {
  const result = await load(t, {
    "apps/x/app.yaml": 'name: x\nversion: "1"\nlicense: MIT\nhealth:\n  tyep: http\ndepnds_on: [y]\n',
  });
  assert.deepEqual(result.errors, []);
  assert.equal(result.apps.length, 1);
  assert.deepEqual(
    result.warnings.map((w) => [w.path, w.line, w.message]),
    [
      ["license", 3, 'unknown key "license"; it is ignored'],
      ["health.tyep", 5, 'unknown key "tyep" (did you mean "type"?); it is ignored'],
      ["depnds_on", 6, 'unknown key "depnds_on" (did you mean "depends_on"?); it is ignored'],
    ],
  );
});

test('a source key that only another source type takes says which types take it, not "did you mean" itself', async (t) => {
  const result = await load(t, {
    "apps/x/app.yaml": 'name: x\nversion: "1"\nsource: { type: npm, url: "https://h/x.tgz" }\n',
    "apps/y/app.yaml": 'name: y\nversion: "1"\nsource: { type: git, url: /r, rf: main }\n',
    "apps/z/app.yaml": 'name: z\nversion: "1"\nsource: { type: git, url: /r, sha265: abc }\n',
  });
  assert.deepEqual(
    result.warnings.map((w) => `${w.file} ${w.path}: ${w.message}`),
    [
      'apps/x/app.yaml source.url: unknown key "url" for source type npm: url is used by git and tarball sources; it is ignored',
      'apps/y/app.yaml source.rf: unknown key "rf" for source type git (did you mean "ref"?); it is ignored',
      'apps/z/app.yaml source.sha265: unknown key "sha265" for source type git; it is ignored',
    ],
  );
});

test("strict mode turns warnings into errors and keeps the app out", async (t) => {
  const result = await load(
    t,
    { "apps/x/app.yaml": 'name: x\nversion: "1"\nlicense: MIT\ncommand: [node, s.js]\n' },
    true,
  );
  assert.equal(result.apps.length, 0);
  assert.equal(result.warnings.length, 0);
  assert.deepEqual(
    result.errors.map((e) => e.message),
    [
      'unknown key "license" (refused by --strict)',
      "command is only used with isolation: process (this app is embedded) (refused by --strict)",
    ],
  );
  for (const e of result.errors) assert.doesNotMatch(e.message, /ignored/, "an error does not say it is ignored");
  assert.deepEqual(result.invalid, ["x"]);
});

test("a spec written for bc_gitops in Erlang terms loads with its git source and dependencies", async (t) => {
  const result = await load(t, {
    "apps/my_web_app/app.config": `%% apps/my_web_app/app.config
#{
    name => my_web_app,
    version => <<"1.0.0">>,
    source => #{ type => git, url => <<"https://github.com/myorg/my_web_app.git">>, ref => <<"v1.0.0">> },
    env => #{ port => 8080, pool_size => 10 },
    health => #{ type => http, port => 8080, path => <<"/health">>, interval => 30000, timeout => 5000 },
    depends_on => [db_proxy]
}.`,
    "apps/db_proxy/config":
      '[{name, db_proxy}, {version, "0.3.0"}, {env, []}, {icon, [{type, url}, {value, "https://x/i.png"}]}].',
  });
  assert.deepEqual(result.errors, []);
  const [db, web] = result.apps.map((a) => a.spec);
  assert.deepEqual(web?.source, { type: "git", url: "https://github.com/myorg/my_web_app.git", ref: "v1.0.0" });
  assert.deepEqual(web?.env, { port: 8080, pool_size: 10 });
  assert.deepEqual(web?.depends_on, ["db_proxy"]);
  assert.equal(web?.health.type, "http");
  assert.equal(web?.health.path, "/health");
  assert.deepEqual(db?.env, {});
  assert.deepEqual(db?.icon, { type: "url", value: "https://x/i.png" });
});

test("depends_on normalises to names whatever the format wrote", async (t) => {
  const result = await load(t, {
    "apps/a/app.yaml": 'name: a\nversion: "1"\ndepends_on: db\n',
    "apps/b/app.json": '{"name": "b", "version": "1", "depends_on": [{"name": "db"}]}',
    "apps/c/app.config": '#{name => c, version => <<"1">>, depends_on => [<<"db">>]}.',
    "apps/d/config": '[{name, d}, {version, "1"}, {depends_on, ["db"]}].',
  });
  assert.deepEqual(result.errors, []);
  for (const app of result.apps) assert.deepEqual(app.spec.depends_on, ["db"], app.file);
});

test("aliases from bc_gitops map onto the bc-gitops names", async (t) => {
  const result = await load(t, {
    "apps/x/app.yaml": [
      "name: x",
      'version: "1"',
      "isolation: vm",
      "health: { type: custom, port: 9000 }",
      `source: { type: release, url: "https://h/x.tgz", sha256: "${"a".repeat(64)}" }`,
    ].join("\n"),
  });
  assert.deepEqual(result.errors, []);
  const spec = result.apps[0]!.spec;
  assert.equal(spec.isolation, "process");
  assert.equal(spec.health.type, "module");
  assert.equal(spec.source.type, "tarball");
});

test("health.port stays unset unless the spec sets it (the app is then checked where it listens)", async (t) => {
  const result = await load(t, {
    "apps/a/app.yaml": 'name: a\nversion: "1"\nenv: { port: 3000 }\nhealth: { type: http }\n',
    "apps/b/app.yaml": 'name: b\nversion: "1"\nhealth: { type: tcp }\n',
    "apps/c/app.yaml": 'name: c\nversion: "1"\nenv: { port: 0 }\nhealth: { type: http, port: 8080, interval: 2m }\n',
  });
  assert.deepEqual(
    result.apps.map((a) => [a.spec.health.port, a.spec.health.interval]),
    [
      [undefined, 30000],
      [undefined, 30000],
      [8080, 120000],
    ],
  );
});

test("fields that have no effect as written are warnings", async (t) => {
  const result = await load(t, {
    "apps/x/app.yaml":
      'name: x\nversion: "1"\ncommand: [node, s.js]\nlimits: { memory_mb: 64 }\nreload_signal: SIGHUP\n',
  });
  assert.equal(result.apps.length, 1);
  assert.deepEqual(
    result.warnings.map((w) => w.path),
    ["command", "limits", "reload_signal"],
  );
  assert.equal(
    result.warnings[2]!.message,
    "reload_signal is only used with isolation: process (this app is embedded); it is ignored",
  );
  const proc = await load(t, {
    "apps/x/app.yaml": 'name: x\nversion: "1"\nisolation: process\ncommand: [node, s.js]\nreload_signal: SIGHUP\n',
  });
  assert.deepEqual(proc.warnings, [], "a process app uses reload_signal");
});

test("formatIssue prints file:line:col path: message", () => {
  assert.equal(
    formatIssue({
      file: "apps/web/app.yaml",
      line: 7,
      column: 3,
      path: "health.interval",
      message: 'expected a duration like 30000 or "30s", got "soon"',
    }),
    'apps/web/app.yaml:7:3 health.interval: expected a duration like 30000 or "30s", got "soon"',
  );
  assert.equal(formatIssue({ file: "apps/x/app.yaml", message: "file is empty" }), "apps/x/app.yaml file is empty");
});

test("a cache returns the same result for unchanged files and re-validates changed ones", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, { "apps/a/app.yaml": 'name: a\nversion: "1"\n', "apps/b/app.yaml": 'name: b\nversion: "1"\n' });
  const cache = new SpecCache();
  const first = await loadApps(join(root, "apps"), { cache });
  await writeTree(root, { "apps/b/app.yaml": 'name: b\nversion: "2"\n' });
  const second = await loadApps(join(root, "apps"), { cache });
  assert.equal(second.apps[0]!.spec, first.apps[0]!.spec, "unchanged file: the very same validated object");
  assert.equal(second.apps[1]!.spec.version, "2");
});

test("a listed file whose read failed is read again next time; one that was read is remembered by its ref", async () => {
  // Refs as a git commit's trees give them: the same object while the app directory is unchanged.
  let reads = 0;
  let failing = true;
  const flaky: SpecFileRef = {
    dir: "a",
    name: "app.yaml",
    file: "apps/a/app.yaml",
    link: false,
    id: "1".repeat(40),
    read: () => {
      reads++;
      if (failing) throw new Error("git cat-file --batch did not answer within 60000 ms");
      return new TextEncoder().encode('name: a\nversion: "1"\n');
    },
  };
  const cache = new SpecCache();
  const listing = { files: [flaky], links: [] };
  const first = await loadListing(listing, { cache });
  assert.deepEqual(first.invalid, ["a"]);
  assert.match(first.errors[0]?.message ?? "", /cannot read file: git cat-file --batch did not answer/);
  failing = false;
  const second = await loadListing(listing, { cache });
  assert.deepEqual(
    second.apps.map((app) => app.spec.name),
    ["a"],
    "the failed read was not remembered",
  );
  const third = await loadListing(listing, { cache });
  assert.equal(third.apps[0]!.spec, second.apps[0]!.spec);
  assert.equal(reads, 2, "the successful read is remembered by the ref");
});

test("resolveAppsDir accepts a repository or its apps directory", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, {
    "apps/a/app.yaml": 'name: a\nversion: "1"\n',
    "deploy/b/app.yaml": 'name: b\nversion: "1"\n',
  });
  assert.deepEqual(await resolveAppsDir(root), { appsDir: join(root, "apps"), root });
  assert.deepEqual(await resolveAppsDir(join(root, "apps")), { appsDir: join(root, "apps"), root: join(root, "apps") });
  assert.deepEqual(await resolveAppsDir(root, "deploy"), { appsDir: join(root, "deploy"), root });
  await rm(join(root, "apps"), { recursive: true });
  assert.equal(await resolveAppsDir(join(root, "apps")), undefined);
});

test("a missing apps directory is a stalled E_SPEC error that names it from the repository root and says how to remove every app", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, { "README.md": "# gitops\n" });
  const error = await loadApps(join(root, "deploy", "apps"), { root }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof GitopsError, String(error));
  assert.equal(error.code, "E_SPEC");
  assert.equal(error.retry, "stalled");
  assert.match(
    error.message,
    /^deploy\/apps\/ does not exist, so every running app is kept .*commit an empty deploy\/apps\/ holding a \.gitkeep file$/,
  );
  assert.ok(!error.message.includes(root), error.message);
});

test("an apps path that is a file is an error saying it must be a directory", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, { apps: "not a directory\n" });
  await assert.rejects(loadApps(join(root, "apps"), { root }), (error: unknown) => {
    assert.ok(error instanceof GitopsError);
    assert.equal(error.message, "apps/ is not a directory: it must hold one directory per app");
    return true;
  });
});

test("a relative path source that climbs out of the repository is an error at source.path; paths inside it and absolute paths are fine", async (t) => {
  const source = (path: string) => `name: app\nversion: "1"\nsource:\n  type: path\n  path: "${path}"\n`;
  for (const path of ["..", "../..", "code/../..", "./a/../../b"]) {
    const result = await load(t, { "apps/app/app.yaml": source(path) });
    assert.equal(result.apps.length, 0, path);
    assert.deepEqual(
      result.errors.map((e) => [e.line, e.column, e.path]),
      [[5, 9, "source.path"]],
      path,
    );
    assert.match(
      result.errors[0]!.message,
      /leaves the repository: a relative path is read from the repository root and must stay inside it/,
    );
  }
  for (const path of ["code/web", "./code/../web", ".", "/srv/apps/web"]) {
    const result = await load(t, { "apps/app/app.yaml": source(path) });
    assert.deepEqual(result.errors, [], path);
  }
});
