import { test } from "node:test";
import assert from "node:assert/strict";
import { availableParallelism, hostname } from "node:os";
import { join } from "node:path";
import { defaultApplyConcurrency, defaultLocalPath, loadConfig } from "../src/config.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

test("defaults fill every key but repo_url", async () => {
  const config = await loadConfig({
    file: undefined,
    env: {},
    flags: { repoUrl: "https://git.example.com/gitops.git" },
  });
  assert.deepEqual(config, {
    repo_url: "https://git.example.com/gitops.git",
    branch: "main",
    local_path: defaultLocalPath(),
    apps_dir: "apps",
    reconcile_interval: 60000,
    runtime: "default",
    listen: "127.0.0.1:9477",
    log_level: "info",
    log_format: "pretty",
    git_timeout: 60000,
    reload_budget: 100,
    host: hostname().toLowerCase(),
    labels: {},
    reconcile_jitter: "10%",
    notify: [],
    apply_concurrency: defaultApplyConcurrency(),
  });
});

test("apply_concurrency defaults to twice the core count, at least 4 and at most 8", () => {
  assert.equal(defaultApplyConcurrency(), Math.min(8, Math.max(4, 2 * availableParallelism())));
});

test("apply_concurrency comes from the file, the environment or a flag, as a whole number", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, { "c.yaml": "repo_url: /r\napply_concurrency: 3\n" });
  const file = join(dir, "c.yaml");
  assert.equal((await loadConfig({ file, env: {} })).apply_concurrency, 3);
  assert.equal((await loadConfig({ file, env: { BC_GITOPS_APPLY_CONCURRENCY: "5" } })).apply_concurrency, 5);
  const flagged = await loadConfig({
    file,
    env: { BC_GITOPS_APPLY_CONCURRENCY: "5" },
    flags: { applyConcurrency: "1" },
  });
  assert.equal(flagged.apply_concurrency, 1);
});

test("flags beat env, env beats the file, the file beats defaults", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "bc-gitops.yaml");
  await writeTree(dir, {
    "bc-gitops.yaml":
      "repo_url: /srv/file-repo\nbranch: from-file\napps_dir: deploy\nreconcile_interval: 30s\nlog_format: json\n",
  });
  const config = await loadConfig({
    file,
    env: { BC_GITOPS_BRANCH: "from-env", BC_GITOPS_APPS_DIR: "env-apps", BC_GITOPS_RELOAD_BUDGET: "7", UNRELATED: "x" },
    flags: { branch: "from-flag", reconcileInterval: "5m" },
  });
  assert.equal(config.repo_url, "/srv/file-repo");
  assert.equal(config.branch, "from-flag");
  assert.equal(config.apps_dir, "env-apps");
  assert.equal(config.reconcile_interval, 300000);
  assert.equal(config.log_format, "json");
  assert.equal(config.reload_budget, 7);
});

test("a relative repository path and local path are made absolute", async () => {
  const config = await loadConfig({ env: {}, flags: { repoUrl: "./gitops", localPath: "state" } });
  assert.equal(config.repo_url, join(process.cwd(), "gitops"));
  assert.equal(config.local_path, join(process.cwd(), "state"));
  const remote = await loadConfig({ env: {}, flags: { repoUrl: "git@github.com:acme/gitops.git" } });
  assert.equal(remote.repo_url, "git@github.com:acme/gitops.git");
});

const BAD: Array<[string, Parameters<typeof loadConfig>[0], RegExp]> = [
  [
    "a missing repo_url",
    { env: {}, flags: {} },
    /repo_url is required: pass --repo-url URL, set BC_GITOPS_REPO_URL, or add repo_url to bc-gitops.yaml/,
  ],
  [
    "a repo_url that looks like an option",
    { env: {}, flags: { repoUrl: "--upload-pack=touch /tmp/x" } },
    /--repo-url: a git URL or path of the gitops repository must not start with "-"/,
  ],
  [
    "a bad interval from the environment",
    { env: { BC_GITOPS_RECONCILE_INTERVAL: "often" }, flags: { repoUrl: "/r" } },
    /BC_GITOPS_RECONCILE_INTERVAL: expected a duration like 60000 or "60s", got "often"$/,
  ],
  [
    "an apps_dir that escapes the repository",
    { env: {}, flags: { repoUrl: "/r", appsDir: "../etc" } },
    /apps_dir must be a relative path inside the repository/,
  ],
  ["a bad log format", { env: {}, flags: { repoUrl: "/r", logFormat: "xml" } }, /--log-format: .*"pretty"/],
  [
    "a short token",
    { env: {}, flags: { repoUrl: "/r", token: "abc" } },
    /^--token: must be at least 8 characters; use a long random string/,
  ],
  [
    "a short webhook secret flag",
    { env: {}, flags: { repoUrl: "/r", webhookSecret: "abc" } },
    /^--webhook-secret: must be at least 8 characters; use a long random string, e.g. from `openssl rand -hex 32`$/,
  ],
  [
    "a short webhook secret variable",
    { env: { BC_GITOPS_WEBHOOK_SECRET: "abc" }, flags: { repoUrl: "/r" } },
    /^BC_GITOPS_WEBHOOK_SECRET: must be at least 8 characters;/,
  ],
  [
    "a --verify flag that is not JSON",
    { env: {}, flags: { repoUrl: "/r", verify: "ssh" } },
    /^--verify: expected JSON, e.g. \{"mode":"ssh"/,
  ],
  [
    "a bad verify mode from a flag",
    { env: {}, flags: { repoUrl: "/r", verify: '{"mode":"pgp"}' } },
    /^--verify: verify\.mode: /,
  ],
  [
    "verify JSON that does not parse",
    { env: { BC_GITOPS_VERIFY: "{mode" }, flags: { repoUrl: "/r" } },
    /BC_GITOPS_VERIFY: expected JSON/,
  ],
  [
    "an apply_concurrency of 0 from a flag",
    { env: {}, flags: { repoUrl: "/r", applyConcurrency: "0" } },
    /^--apply-concurrency: expected how many actions to apply at once, a whole number of at least 1 \(1: one after another\), got 0$/,
  ],
  [
    "a fractional apply_concurrency from the environment",
    { env: { BC_GITOPS_APPLY_CONCURRENCY: "1.5" }, flags: { repoUrl: "/r" } },
    /^BC_GITOPS_APPLY_CONCURRENCY: expected how many actions to apply at once, .* got 1\.5$/,
  ],
  [
    "an apply_concurrency that is not a number",
    { env: { BC_GITOPS_APPLY_CONCURRENCY: "many" }, flags: { repoUrl: "/r" } },
    /^BC_GITOPS_APPLY_CONCURRENCY: expected how many actions to apply at once, .* got "many"$/,
  ],
  [
    "a missing config file given explicitly",
    { file: "/nonexistent/bc-gitops.yaml", env: {}, flags: {} },
    /cannot read config file \/nonexistent\/bc-gitops.yaml/,
  ],
];

for (const [name, sources, message] of BAD) {
  test(`${name} is refused with a message naming where it came from`, async () => {
    await assert.rejects(loadConfig(sources), (error: Error & { code?: string }) => {
      assert.equal(error.code, "E_CONFIG");
      assert.match(error.message, message);
      return true;
    });
  });
}

test("an unknown key in the config file is refused with a did-you-mean hint", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, { "c.yaml": "repo_url: /r\nreconcile_intervall: 10s\n" });
  await assert.rejects(
    loadConfig({ file: join(dir, "c.yaml"), env: {} }),
    /c\.yaml: unknown key "reconcile_intervall" \(did you mean "reconcile_interval"\?\)/,
  );
});

test("a short webhook secret in the config file is named once, with the minimum length", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, { "c.yaml": "repo_url: /r\nwebhook_secret: short\n" });
  await assert.rejects(loadConfig({ file: join(dir, "c.yaml"), env: {} }), (error: Error) => {
    assert.equal(
      error.message,
      `${join(dir, "c.yaml")}: webhook_secret: must be at least 8 characters; use a long random string, e.g. from \`openssl rand -hex 32\``,
    );
    return true;
  });
});

test("every key can be given as a flag, verify as JSON like its variable", async () => {
  const config = await loadConfig({
    env: {},
    flags: { repoUrl: "/r", gitTimeout: "5s", reloadBudget: "7", verify: '{"mode":"ssh","allowed_signers":"/s"}' },
  });
  assert.equal(config.git_timeout, 5000);
  assert.equal(config.reload_budget, 7);
  assert.deepEqual(config.verify, { mode: "ssh", allowed_signers: "/s" });
});

test("a config file that is not a mapping is refused", async (t) => {
  const dir = await tempDir(t);
  await writeTree(dir, { "c.yaml": "- repo_url\n" });
  await assert.rejects(loadConfig({ file: join(dir, "c.yaml"), env: {} }), /expected a mapping of settings/);
});

test("values that look like numbers stay text, and host aliases stay remote", async () => {
  const config = await loadConfig({
    env: {},
    flags: { repoUrl: "github:acme/gitops.git", branch: "1.10", token: "123456789" },
  });
  assert.equal(config.branch, "1.10");
  assert.equal(config.token, "123456789");
  assert.equal(config.repo_url, "github:acme/gitops.git");
});

test("a loaded configuration becomes createAgent options key by key, and every agent key has an option", async () => {
  const { agentOptionsOf } = await import("../src/agent.ts");
  const { CONFIG_KEYS, loadConfig } = await import("../src/config.ts");
  const config = await loadConfig({
    env: {},
    flags: { repo_url: "/tmp/r.git", branch: "prod", git_timeout: "5s", reload_budget: 7, webhook_secret: "12345678" },
  });
  const options = agentOptionsOf(config) as unknown as Record<string, unknown>;
  assert.equal(options.repoUrl, "/tmp/r.git");
  assert.equal(options.branch, "prod");
  assert.equal(options.gitTimeout, 5000);
  assert.equal(options.reloadBudget, 7);
  assert.equal(options.webhookSecret, "12345678");
  assert.equal(options.logLevel, undefined, "log settings stay with the CLI");
  for (const key of CONFIG_KEYS.filter((k) => !k.startsWith("log_"))) {
    const name = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    if ((config as Record<string, unknown>)[key] !== undefined) assert.ok(name in options, `${key} -> ${name}`);
  }
});
