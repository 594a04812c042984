/**
 * A corpus of spec files, valid and invalid, covering every form the README documents and every
 * class of error `validate` reports: the editor schema (test/spec-schema.test.ts) and the fast path
 * of validation (test/spec-fast.test.ts) are each checked against `validate` on all of them.
 */
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { exampleRepoFiles } from "../../src/scaffold.ts";

/** Rules `validate` checks and the schema cannot, each with why (keep README "The app spec" in step). */
export const VALIDATE_ONLY = {
  "self-dependency": "an app cannot depend on itself: a schema cannot compare depends_on with name",
  "dependency written twice":
    "depends_on [db, { name: db }]: uniqueItems compares items as written, not the names they mean",
  "registry URL":
    "source.registry must parse as a URL: the schema checks only the scheme (formats are optional in JSON Schema)",
  "override source":
    "an override's source merged into the app's must be a valid source: a schema cannot merge two fields and check the result",
} as const;

export interface Case {
  title: string;
  /** YAML text, or a spec object (written as JSON) merged over a minimal valid spec. */
  spec: string | Record<string, unknown>;
  valid: boolean;
  /** validate refuses it by a rule the schema cannot express; the schema must accept it. */
  only?: keyof typeof VALIDATE_ONLY;
  /** validate accepts it with an unknown-key warning. */
  warns?: boolean;
}

const ok = (title: string, spec: Case["spec"], extra: Partial<Case> = {}): Case => ({
  title,
  spec,
  valid: true,
  ...extra,
});
const bad = (title: string, spec: Case["spec"], extra: Partial<Case> = {}): Case => ({
  title,
  spec,
  valid: false,
  ...extra,
});
const sha = "a".repeat(64);

export const README = await readFile(new URL("../../README.md", import.meta.url), "utf8");
// Its "https://…" placeholders become real URLs (validate checks that a registry parses as one).
export const readmeExample = /## The app spec\s+```yaml\n([\s\S]*?)```/
  .exec(README)?.[1]
  ?.replaceAll("…", "example.com");
const EXAMPLES = new URL("../../examples/gitops-repo/apps/", import.meta.url);

export const CORPUS: Case[] = [
  // Every form the README documents, and what real bc_gitops specs carry.
  ok("the README's full example", readmeExample ?? "README example not found"),
  ok("the example repository's YAML spec", await readFile(new URL("hello/app.yaml", EXAMPLES), "utf8")),
  ok("the example repository's JSON spec", await readFile(new URL("clock/app.json", EXAMPLES), "utf8")),
  ok("the spec bc-gitops init writes", exampleRepoFiles()["apps/hello/app.yaml"]!),
  ok("a spec with only name and version", {}),
  ok("a 64-character name with dots, dashes and underscores", { name: `a${"._-9".repeat(15)}abc` }),
  ok("source: npm as a bare string", { source: "npm" }),
  ok("an npm source with a scoped package and a registry", {
    source: { type: "npm", package: "@acme/web", registry: "https://npm.acme.dev/" },
  }),
  ok("an npm package name with capitals", { source: { type: "npm", package: "@Acme/WebApp" } }),
  ok("a git source with url, ref and subdir", {
    source: { type: "git", url: "https://git.acme.dev/web.git", ref: "v1.2", subdir: "packages/web" },
  }),
  ok("a git source pinned to a full commit", {
    source: { type: "git", url: "/srv/git/web.git", ref: "0123456789abcdef0123456789abcdef01234567" },
  }),
  ok("a subdir with a segment that only starts with dots", { source: { type: "git", url: "x", subdir: "a/..b/c.." } }),
  ok("a path source", { source: { type: "path", path: "code/web" } }),
  ok("a tarball source with sha256", { source: { type: "tarball", url: "https://x/web.tgz", sha256: sha } }),
  ok("a tarball source with an upper-case sha256", {
    source: { type: "tarball", url: "https://x/web.tgz", sha256: sha.toUpperCase() },
  }),
  ok("a tarball source with an SRI integrity", {
    source: { type: "tarball", url: "web.tgz", integrity: "sha512-AbC+/x==" },
  }),
  ok("bc_gitops's release source with url and sha256", {
    source: { type: "release", url: "https://x/web.tgz", sha256: sha },
  }),
  ok("a url icon with a value", { icon: { type: "url", value: "https://x/i.png" } }),
  ok("an icon mapping without a type", { icon: {} }),
  ok("a base64 icon with a MIME type", { icon: { type: "base64", value: "iVBORw0KGgo=", mime_type: "image/png" } }),
  ok("an entry inside the package", { entry: "src/server.ts" }),
  ok("worker isolation with limits", { isolation: "worker", limits: { memory_mb: 256 } }),
  ok('isolation: vm (read as "process") with a command and a reload signal', {
    isolation: "vm",
    command: ["node", "server.js"],
    reload_signal: "SIGUSR2",
  }),
  ok("an env mapping with nested and null values", { env: { port: 8080, pool: { size: 10 }, token: null } }),
  ok("an empty env list (Erlang's [])", { env: [] }),
  ok("health with every field and string durations", {
    health: { type: "http", port: 8080, path: "/health", interval: "1.5m", timeout: "250ms" },
  }),
  ok("durations in milliseconds, zero, and with spaces", { health: { type: "tcp", interval: 0, timeout: " 5 s " } }),
  ok("health.type custom (bc_gitops's name for module) with a module", {
    health: { type: "custom", module: "my_check" },
  }),
  ok("health.type module and none", { health: { type: "none" } }),
  ok("depends_on as one name", { depends_on: "db" }),
  ok("depends_on as a list of names", { depends_on: ["db", "cache"] }),
  ok("depends_on as a list of { name } maps", { depends_on: [{ name: "db" }, { name: "cache", version: "2" }] }),
  ok("depends_on mixing names and maps", { depends_on: ["db", { name: "cache" }] }),
  ok(
    "description: ~ and every optional field set to ~",
    'name: web\nversion: "1"\ndescription: ~\nsource: ~\nentry:\nenv: ~\nhealth: ~\nicon: ~\ndepends_on: ~\nisolation: ~\n',
  ),
  ok(
    "optional fields inside source, health, icon and limits set to ~",
    'name: web\nversion: "1"\nsource: { type: git, url: x, ref: ~, subdir: ~ }\nhealth: { type: ~, port: ~, interval: ~ }\nicon: { type: ~, value: ~ }\nlimits: { memory_mb: ~ }\n',
  ),
  ok("an extra top-level key such as license", { license: "Apache-2.0" }, { warns: true }),
  ok(
    "unknown keys inside source and health",
    { source: { type: "npm", url: "x" }, health: { type: "http", retries: 3 } },
    { warns: true },
  ),
  // Every class of error validate reports.
  bad("a spec without a name", { name: undefined }),
  bad("a spec without a version", { version: undefined }),
  bad("name: ~", 'name: ~\nversion: "1"\n'),
  bad("an app name with a slash", { name: "../etc" }),
  bad("an app name starting with a dot", { name: ".hidden" }),
  bad("an app name of 65 characters", { name: "a".repeat(65) }),
  bad("an unquoted version number", "name: web\nversion: 1.0\n"),
  bad("an empty version", { version: "" }),
  bad("a description that is a number", { description: 42 }),
  bad("a list instead of a mapping", "- name: web\n- version: 1\n"),
  bad("a bare string source other than npm", { source: "git" }),
  bad("a hex source", { source: { type: "hex", package: "web" } }),
  bad("a mesh source", { source: { type: "mesh" } }),
  bad("an unknown source type", { source: { type: "ftp", url: "x" } }),
  bad("a source without a type", "name: web\nversion: '1'\nsource: { type: ~, url: x }\n"),
  bad("a source that is a list", { source: ["npm"] }),
  bad("an npm package name with spaces", { source: { type: "npm", package: "my app" } }),
  bad("a registry that is not a URL", { source: { type: "npm", registry: "npm.acme.dev" } }),
  bad(
    "a registry with a scheme but nothing else",
    { source: { type: "npm", registry: "http://" } },
    { only: "registry URL" },
  ),
  bad("a git source without a url", { source: { type: "git", ref: "main" } }),
  bad("a git URL starting with -", { source: { type: "git", url: "-oProxyCommand=evil" } }),
  bad("a git ref starting with -", { source: { type: "git", url: "x", ref: "--upload-pack=evil" } }),
  bad("an empty git URL", { source: { type: "git", url: "" } }),
  bad("subdir: ../..", { source: { type: "git", url: "x", subdir: "../.." } }),
  bad("an absolute subdir", { source: { type: "git", url: "x", subdir: "/etc" } }),
  bad("a path source without a path", { source: { type: "path" } }),
  bad("a path source with an empty path", { source: { type: "path", path: "" } }),
  bad("a tarball without a checksum", { source: { type: "tarball", url: "https://x/web.tgz" } }),
  bad("a tarball whose sha256 is ~", 'name: web\nversion: "1"\nsource: { type: tarball, url: x.tgz, sha256: ~ }\n'),
  bad("a release without a checksum", { source: { type: "release", url: "https://x/web.tgz" } }),
  bad("a sha256 of the wrong length", { source: { type: "tarball", url: "x", sha256: "abc123" } }),
  bad("an integrity with an unknown algorithm", { source: { type: "tarball", url: "x", integrity: "md5-abc=" } }),
  bad("a tarball URL starting with -", { source: { type: "tarball", url: "-x", sha256: sha } }),
  bad("entry: ../../etc/passwd", { entry: "../../etc/passwd" }),
  bad("an absolute entry", { entry: "/etc/passwd" }),
  bad("an empty entry", { entry: "" }),
  bad("an entry climbing out with backslashes", { entry: "src\\..\\..\\x.js" }),
  bad("an entry climbing out after a line break", { entry: "a\n/../x.js" }),
  bad("an unknown isolation", { isolation: "container" }),
  bad("an empty command", { isolation: "process", command: [] }),
  bad("a command written as one string", { isolation: "process", command: "node server.js" }),
  bad("a command with a number in it", { isolation: "process", command: ["node", 1] }),
  bad("limits.memory_mb of 0", { isolation: "worker", limits: { memory_mb: 0 } }),
  bad("a fractional limits.memory_mb", { isolation: "worker", limits: { memory_mb: 1.5 } }),
  bad("limits.memory_mb as a string", { isolation: "worker", limits: { memory_mb: "256" } }),
  bad("env as a string", { env: "PORT=8080" }),
  bad("env as a non-empty list", { env: ["PORT=8080"] }),
  bad("an unknown health type", { health: { type: "grpc" } }),
  bad("health.port 0", { health: { type: "tcp", port: 0 } }),
  bad("health.port 70000", { health: { type: "tcp", port: 70000 } }),
  bad("a fractional health.port", { health: { type: "tcp", port: 80.5 } }),
  bad("health.port as a string", { health: { type: "tcp", port: "8080" } }),
  bad("health.path without a leading slash", { health: { type: "http", path: "health" } }),
  bad("health.interval: soon", { health: { interval: "soon" } }),
  bad("health.timeout: -5", { health: { timeout: -5 } }),
  bad('health.timeout: "-5s"', { health: { timeout: "-5s" } }),
  bad("a duration in words", { health: { interval: "5 minutes" } }),
  bad("a duration that is a boolean", { health: { interval: true } }),
  bad("a url icon without a value", { icon: { type: "url" } }),
  bad("an unknown icon type", { icon: { type: "svg", value: "<svg/>" } }),
  bad("depends_on naming an invalid app name", { depends_on: "../db" }),
  bad("depends_on with a number", { depends_on: [1] }),
  bad("depends_on with a map whose name is not a string", { depends_on: [{ name: 5 }] }),
  bad("depends_on as a single map", { depends_on: { name: "db" } }),
  bad("depends_on listing a name twice", { depends_on: ["db", "db"] }),
  bad("depends_on listing a { name } map twice", { depends_on: [{ name: "db" }, { name: "db" }] }),
  bad("depends_on listing the app itself", { depends_on: ["web"] }, { only: "self-dependency" }),
  bad(
    "depends_on naming one app as a name and as a map",
    { depends_on: ["db", { name: "db" }] },
    { only: "dependency written twice" },
  ),
  bad("an unknown reload signal", { reload_signal: "SIGKILL" }),
  // Fleets: placement, overrides and rollout (unknown keys in them are errors, not warnings).
  ok("a placement with every part, expressions as strings and as objects", {
    placement: {
      hosts: ["web-*", "db-[0-9]", "api-?"],
      exclude_hosts: "web-9",
      labels: { role: "web", canary: true, zone: 3, "example.com/team": "core" },
      expressions: [
        "region in [eu, us]",
        "tier notin (canary)",
        "gpu exists",
        "spot doesnotexist",
        "!legacy",
        { key: "region", operator: "in", values: ["eu"] },
        { key: "gpu", operator: "exists" },
      ],
    },
  }),
  ok("overrides of version, source, env, limits and health", {
    source: { type: "git", url: "https://git.acme.dev/web.git", ref: "main" },
    overrides: [
      { match: { labels: { tier: "canary" } }, version: "2.0.0", source: { ref: "v2" } },
      { match: { hosts: ["eu-*"] }, env: { pool_size: 20 }, limits: { memory_mb: 512 }, health: { timeout: "10s" } },
      { match: {}, source: { type: "tarball", url: "https://x/web.tgz", sha256: sha } },
    ],
  }),
  ok("a rollout with waves, interval and paused", { rollout: { waves: 4, interval: "10m", paused: false } }),
  ok("a rollout that only pauses", { rollout: { paused: true } }),
  bad("an unknown selector operator in a string expression", { placement: { expressions: ["region nin [eu]"] } }),
  bad("an unknown selector operator in an object expression", {
    placement: { expressions: [{ key: "region", operator: "nin", values: ["eu"] }] },
  }),
  bad("in without values", { placement: { expressions: [{ key: "region", operator: "in" }] } }),
  bad("exists with values", { placement: { expressions: [{ key: "gpu", operator: "exists", values: ["x"] }] } }),
  bad("a host glob with a space", { placement: { hosts: ["db 1"] } }),
  bad("a host glob starting with a dash", { placement: { exclude_hosts: ["-web*"] } }),
  bad("a label key with a space", { placement: { labels: { "my role": "web" } } }),
  bad("a label value with a slash", { placement: { labels: { role: "web/api" } } }),
  bad("a misspelt selector part", { placement: { host: ["web-*"] } }),
  bad("an override of isolation", { overrides: [{ match: {}, isolation: "worker" }] }),
  bad("an override of depends_on", { overrides: [{ match: {}, depends_on: ["db"] }] }),
  bad("an override without match", { overrides: [{ version: "2" }] }),
  bad("overrides as a mapping", { overrides: { match: {} } }),
  bad("an override source with a key no source takes", { overrides: [{ match: {}, source: { branch: "v2" } }] }),
  bad(
    "an override source that leaves a git source without a url",
    { overrides: [{ match: {}, source: { type: "git", ref: "v2" } }] },
    { only: "override source" },
  ),
  bad("waves: 0", { rollout: { waves: 0 } }),
  bad("a fractional number of waves", { rollout: { waves: 1.5 } }),
  bad("a rollout interval in words", { rollout: { waves: 2, interval: "ten minutes" } }),
  bad("a misspelt rollout key", { rollout: { waves: 2, pasued: true } }),
  bad("paused as a string", { rollout: { paused: "yes" } }),
];

/** The spec file text and the value an editor's YAML parser sees. */
export function specFile(spec: Case["spec"]): { text: string; format: "yaml" | "json"; value: unknown } {
  if (typeof spec === "string") return { text: spec, format: "yaml", value: parseYaml(spec) };
  const text = JSON.stringify({ name: "web", version: "1.0.0", ...spec });
  return { text, format: "json", value: JSON.parse(text) };
}
