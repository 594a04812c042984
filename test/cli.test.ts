import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtimeName, runtimeVersion } from "../src/_platform.ts";
import { CONFIG_KEYS, type ConfigKey } from "../src/config.ts";
import { runCli } from "./helpers/cli.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

const EXAMPLE = fileURLToPath(new URL("../examples/gitops-repo", import.meta.url));

test("validate passes on the bundled example repository", async () => {
  const result = await runCli(["validate", EXAMPLE]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /✔ 3 valid apps, 0 errors, 0 warnings/);
});

test("validate prints each error as file:line:col path: message and exits 1", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, {
    "apps/web/app.yaml": 'name: web\nversion: "1"\nhealth:\n  type: http\n  interval: soon\n',
    "apps/ok/app.yaml": 'name: ok\nversion: "1"\nlisence: MIT\n',
  });
  const result = await runCli(["validate", root]);
  assert.equal(result.exitCode, 1);
  assert.match(
    result.stdout,
    /error {3}apps\/web\/app\.yaml:5:13 health\.interval: expected a duration like 30000 or "30s", got "soon"/,
  );
  assert.match(result.stdout, /warning apps\/ok\/app\.yaml:3:1 lisence: unknown key "lisence"/);
  assert.match(result.stdout, /✖ 1 valid app, 1 error, 1 warning/);
});

test("validate --strict fails on warnings, and --json prints apps, errors and warnings", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, { "apps/ok/app.yaml": 'name: ok\nversion: "1"\nlicense: MIT\n' });
  const lenient = await runCli(["validate", root, "--json"]);
  assert.equal(lenient.exitCode, 0);
  assert.deepEqual(JSON.parse(lenient.stdout), {
    apps: [{ name: "ok", version: "1", file: "apps/ok/app.yaml" }],
    errors: [],
    warnings: [
      {
        file: "apps/ok/app.yaml",
        line: 3,
        column: 1,
        path: "license",
        message: 'unknown key "license"; it is ignored',
      },
    ],
  });
  const strict = await runCli(["validate", root, "--strict", "--json"]);
  assert.equal(strict.exitCode, 1);
  assert.equal(JSON.parse(strict.stdout).errors.length, 1);
});

test("validate on a missing directory is one clear line on stderr, no stack trace", async () => {
  const result = await runCli(["validate", "/nonexistent/gitops"]);
  assert.equal(result.exitCode, 1);
  assert.equal(
    result.stderr.trim(),
    "error cannot read /nonexistent/gitops: no such directory; pass a gitops repository or its apps directory",
  );
});

test("schema prints a JSON Schema that describes the spec", async () => {
  const result = await runCli(["schema"]);
  assert.equal(result.exitCode, 0);
  const schema = JSON.parse(result.stdout);
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.deepEqual(schema.required, ["name", "version"]);
  assert.equal(schema.properties.name.pattern, "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
  assert.deepEqual(schema.properties.isolation.enum, ["embedded", "worker", "process", "vm", null]); // null: `isolation: ~` means "not set"
});

test("--version prints the package version and the real runtime version, and --help lists the commands", async () => {
  const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
  const version = await runCli(["--version"]);
  assert.equal(
    version.stdout,
    `bc-gitops/${pkg.version} ${process.platform}-${process.arch} ${runtimeName}-v${runtimeVersion}\n`,
  );
  if (runtimeName !== "node")
    assert.notEqual(
      runtimeVersion,
      process.versions.node,
      "Bun and Deno report their own version, not Node's compatibility one",
    );
  const help = await runCli(["--help"]);
  for (const command of ["run", "validate", "schema"]) assert.match(help.stdout, new RegExp(`\\b${command}\\b`));
});

/** A value each configuration key refuses, and what the refusal says. */
const BAD_FLAG_VALUES: Record<ConfigKey, [value: string, message: RegExp]> = {
  repo_url: ["-x", /^error --repo-url: a git URL or path of the gitops repository must not start with "-"$/],
  branch: ["-x", /^error --branch: a branch name must not start with "-"$/],
  local_path: ["/dev/null/state", /^error ENOTDIR: not a directory, mkdir '\/dev\/null\/state'/m],
  apps_dir: ["/etc", /^error --apps-dir: apps_dir must be a relative path inside the repository$/],
  reconcile_interval: ["soon", /^error --reconcile-interval: expected a duration like 60000 or "60s", got "soon"$/],
  runtime: ["/nonexistent/runtime.mjs", /^error cannot load the runtime module \/nonexistent\/runtime\.mjs/m],
  listen: ["nowhere", /^error listen: expected HOST:PORT/],
  token: ["short", /^error --token: must be at least 8 characters/],
  webhook_secret: ["short", /^error --webhook-secret: must be at least 8 characters/],
  verify: ["ssh", /^error --verify: expected JSON/],
  log_level: ["loud", /^error --log-level: .*"debug"/],
  log_format: ["xml", /^error --log-format: .*"pretty"/],
  git_timeout: ["soon", /^error --git-timeout: expected a duration like 60000 or "60s", got "soon"$/],
  reload_budget: ["0", /^error --reload-budget: /],
  age_key_file: ["/nonexistent/age.txt", /^error cannot read age_key_file \/nonexistent\/age\.txt: ENOENT$/],
  host: ["web 1", /^error --host: "web 1" is not a valid host name/],
  labels: ["role", /^error --label: expected key=value, got "role"/],
  reconcile_jitter: ["often", /^error --reconcile-jitter: expected a duration like "5s" or a fraction/],
  notify: [
    '[{"url":"ftp://example.com/x"}]',
    /^error --notify: notify\.0\.url: expected an http:\/\/ or https:\/\/ URL$/,
  ],
  apply_concurrency: [
    "0",
    /^error --apply-concurrency: expected how many actions to apply at once, a whole number of at least 1 \(1: one after another\), got 0$/,
  ],
};

test("every configuration key is a flag of run and plan, listed in their --help and checked like its variable", async (t) => {
  const dir = await tempDir(t);
  const [runHelp, planHelp] = await Promise.all([runCli(["run", "--help"]), runCli(["plan", "--help"])]);
  for (const key of CONFIG_KEYS) {
    const flag = key === "labels" ? "--label" : `--${key.replace(/_/g, "-")}`;
    assert.match(runHelp.stdout, new RegExp(`^ +${flag} <`, "m"), `run --help lists ${flag}`);
    assert.match(planHelp.stdout, new RegExp(`^ +${flag} <`, "m"), `plan --help lists ${flag}`);
    const bad = BAD_FLAG_VALUES[key];
    assert.ok(bad, `a bad value for ${flag} is in the table`);
    const base: Partial<Record<ConfigKey, string>> = { repo_url: join(dir, "missing"), local_path: dir, listen: "off" };
    const args = Object.entries(base).flatMap(([k, v]) => (k === key ? [] : [`--${k.replace(/_/g, "-")}`, v]));
    const result = await runCli(["run", ...args, `${flag}=${bad[0]}`]);
    assert.equal(result.exitCode, 1, `${flag}: ${result.stdout}${result.stderr}`);
    assert.doesNotMatch(result.stderr, /Unknown option/, flag);
    assert.match(result.stderr.trim(), bad[1], flag);
  }
});

test("an unknown command and bad configuration are one clear line each", async () => {
  const unknown = await runCli(["frobnicate"]);
  assert.equal(unknown.exitCode, 1);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const config = await runCli(["run", "--repo-url", "/tmp/x", "--reconcile-interval", "soon"]);
  assert.equal(config.exitCode, 1);
  assert.match(config.stderr, /--reconcile-interval: expected a duration/);
  assert.doesNotMatch(config.stderr, /\n\s+at /, "no stack trace");
});

test("run deploys the repository's apps, logs JSON lines, and stops cleanly on SIGTERM", async (t) => {
  const { gitopsRepo } = await import("./helpers/gitops-repo.ts");
  const repo = await gitopsRepo(t, { "apps/a/app.yaml": 'name: a\nversion: "1"\n' });
  const runtime = join(repo.root, "runtime.mjs");
  const marker = join(repo.root, "deployed.txt");
  await writeTree(repo.root, {
    "runtime.mjs": `import { appendFileSync } from "node:fs";
const apps = new Map();
export default {
  async deploy(spec) { appendFileSync(${JSON.stringify(marker)}, "deploy " + spec.name + "\\n"); const s = { name: spec.name, version: spec.version, status: "running", health: "healthy" }; apps.set(spec.name, s); return s; },
  async remove(name) { appendFileSync(${JSON.stringify(marker)}, "stop " + name + "\\n"); apps.delete(name); },
  async upgrade(spec) { return this.deploy(spec); },
  async reconfigure(spec) { return this.deploy(spec); },
  async getCurrentState() { return Object.fromEntries(apps); },
};
`,
  });
  const { cliCommand } = await import("./helpers/cli.ts");
  const { spawn } = await import("node:child_process");
  const [command, prefix] = cliCommand();
  const child = spawn(
    command,
    [
      ...prefix,
      "run",
      "--repo-url",
      repo.bare,
      "--local-path",
      join(repo.root, "local"),
      "--runtime",
      runtime,
      "--listen",
      "off",
      "--log-format",
      "json",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  t.after(() => child.kill("SIGKILL"));
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const deadline = Date.now() + 30_000;
  while (!out.includes("first reconcile") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /first reconcile: synced/);
  // By pid: Deno's ChildProcess.kill() escalates, and the agent must get the plain SIGTERM a supervisor sends.
  process.kill(child.pid!, "SIGTERM");
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) =>
    child.on("exit", (c, s) => resolve(c ?? (s as unknown as number))),
  );
  assert.equal(stderr, "", "nothing on stderr");
  assert.equal(code, 0);
  for (const line of out.trim().split("\n")) assert.doesNotThrow(() => JSON.parse(line), line);
  assert.equal(await readFile(marker, "utf8"), "deploy a\nstop a\n");
});

test("numeric-looking flag values reach the configuration as typed", async (t) => {
  const dir = await tempDir(t);
  const result = await runCli([
    "plan",
    "--repo-url",
    join(dir, "missing"),
    "--branch",
    "1.10",
    "--token",
    "123456789",
    "--local-path",
    dir,
    "--url",
    "http://127.0.0.1:1",
  ]);
  assert.equal(result.exitCode, 1);
  assert.match(result.stderr, /branch 1\.10\)/, "the branch keeps its trailing zero");
  assert.doesNotMatch(result.stderr, /expected string/);
});

test("validate reports dependency cycles and missing dependencies as the agent would", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, {
    "apps/a/app.yaml": 'name: a\nversion: "1"\ndepends_on: [b]\n',
    "apps/b/app.yaml": 'name: b\nversion: "1"\ndepends_on: [a]\n',
    "apps/c/app.yaml": 'name: c\nversion: "1"\ndepends_on: [ghost]\n',
  });
  const result = await runCli(["validate", root]);
  assert.equal(result.exitCode, 1);
  assert.match(result.stdout, /apps\/a\/app\.yaml depends_on: dependency cycle: a -> b -> a/);
  assert.match(result.stdout, /apps\/b\/app\.yaml depends_on: dependency cycle: a -> b -> a/);
  assert.match(result.stdout, /apps\/c\/app\.yaml depends_on: depends on "ghost", which is not in the repository/);
});

test("validate on a folder with no apps directory says so and exits 1, as run would refuse it", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, { "README.md": "# not a gitops repository\n" });
  const result = await runCli(["validate", root]);
  assert.equal(result.exitCode, 1, result.stdout);
  assert.equal(result.stdout, "");
  assert.match(
    result.stderr,
    new RegExp(`^error no apps directory found: ${join(root, "apps")} does not exist and ${root} holds no app specs`),
  );
  const empty = join(root, "apps");
  await writeTree(empty, { ".keep": "" });
  for (const target of [root, empty]) {
    const ok = await runCli(["validate", target]);
    assert.equal(ok.exitCode, 0, `an empty apps directory is a valid (empty) repository: ${target}`);
    assert.match(ok.stdout, /✔ 0 valid apps, 0 errors, 0 warnings/);
  }
});

test("an app whose dependency is missing is counted and listed as an error, not as valid", async (t) => {
  const root = await tempDir(t);
  await writeTree(root, {
    "apps/ok/app.yaml": 'name: ok\nversion: "1"\n',
    "apps/orphan/app.yaml": 'name: orphan\nversion: "1"\ndepends_on: [ghost]\n',
  });
  const text = await runCli(["validate", root]);
  assert.equal(text.exitCode, 1);
  assert.match(text.stdout, /✖ 1 valid app, 1 error, 0 warnings/);
  const json = JSON.parse((await runCli(["validate", root, "--json"])).stdout);
  assert.deepEqual(
    json.apps.map((a: { name: string }) => a.name),
    ["ok"],
  );
  assert.deepEqual(
    json.errors.map((e: { file: string }) => e.file),
    ["apps/orphan/app.yaml"],
  );
});
