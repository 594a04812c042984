/**
 * Secrets as the loader, the planner and the runtime see them: the secrets file found by priority
 * and checked, host references, per-tick digests, resolution for the runtime only, and plan's
 * "secret changed".
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { loadApps } from "../../src/loader.ts";
import { currentState, desiredState, plan } from "../../src/plan.ts";
import { planReport } from "../../src/report.ts";
import { parseIdentities } from "../../src/secrets/age-keys.ts";
import { SecretResolver, stampFromDeployed } from "../../src/secrets/resolve.ts";
import { encryptSops } from "../../src/secrets/sops.ts";
import { codeOf, retryClassOf } from "../../src/errors.ts";
import { tempDir, writeTree } from "../helpers/tmp.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/secrets/", import.meta.url));
const identities = async () => parseIdentities(await readFile(join(FIXTURES, "key1.txt"), "utf8"), "key1.txt");

async function repoWith(t: Parameters<typeof tempDir>[0], files: Record<string, string>) {
  const root = await tempDir(t);
  await writeTree(root, files);
  return root;
}

async function encrypted(plain: string, format: "yaml" | "json" | "dotenv" = "yaml") {
  return encryptSops(plain, format, [(await identities())[0]!.recipient]);
}

const SPEC = 'name: web\nversion: "1.0.0"\nenv:\n  port: 8080\n';

test("the secrets file is found by priority (yaml, yml, json, env) and the others are warned about", async (t) => {
  const root = await repoWith(t, {
    "apps/web/app.yaml": SPEC,
    "apps/web/secrets.sops.json": await encrypted('{"FROM_JSON": "j"}', "json"),
    "apps/web/secrets.sops.yaml": await encrypted("FROM_YAML: y\n"),
  });
  const load = await loadApps(join(root, "apps"), { root });
  assert.deepEqual(load.errors, []);
  assert.equal(load.apps[0]!.spec.secrets?.file, "apps/web/secrets.sops.yaml");
  assert.deepEqual(Object.keys(load.apps[0]!.spec.secrets!.keys), ["FROM_YAML"]);
  assert.match(load.warnings[0]!.message, /is ignored: secrets\.sops\.yaml takes priority/);
  assert.equal(load.warnings[0]!.file, "apps/web/secrets.sops.json");
});

test("a key both in env and in the secrets file, a broken secrets file or a bad reference makes only that app invalid", async (t) => {
  const root = await repoWith(t, {
    "apps/web/app.yaml": SPEC,
    "apps/web/secrets.sops.yaml": await encrypted("port: 1\n"),
    "apps/api/app.yaml": 'name: api\nversion: "1"\n',
    "apps/api/secrets.sops.env": "PLAIN=not encrypted\n",
    "apps/ref/app.yaml":
      'name: ref\nversion: "1"\nenv:\n  A: { from_file: relative/path }\n  B: { from_env: BC_GITOPS_TOKEN }\n  C: { from_env: X, from_file: /y }\n',
    "apps/ok/app.yaml": 'name: ok\nversion: "1"\nenv:\n  DB: { from_file: /etc/db }\n',
  });
  const load = await loadApps(join(root, "apps"), { root });
  assert.deepEqual(
    load.apps.map((a) => a.spec.name),
    ["ok"],
  );
  assert.deepEqual(load.invalid, ["api", "ref", "web"]);
  const messages = load.errors.map((e) => `${e.file} ${e.path ?? ""} ${e.message}`).join("\n");
  assert.match(messages, /apps\/web\/secrets\.sops\.yaml port port is set both here and in apps\/web\/app\.yaml env/);
  assert.match(messages, /apps\/api\/secrets\.sops\.env {2}has no sops metadata/);
  assert.match(messages, /apps\/ref\/app\.yaml env\.A\.from_file expected an absolute path/);
  assert.match(messages, /env\.B\.from_env BC_GITOPS_TOKEN is the agent's own setting/);
  assert.match(messages, /env\.C a reference holds exactly one of from_file or from_env/);
});

test("a secrets file that is a symbolic link is refused, never followed", async (t) => {
  const root = await repoWith(t, { "apps/web/app.yaml": SPEC, "elsewhere.yaml": await encrypted("A: b\n") });
  await symlink(join(root, "elsewhere.yaml"), join(root, "apps/web/secrets.sops.yaml"));
  const load = await loadApps(join(root, "apps"), { root });
  assert.match(load.errors[0]!.message, /is a symbolic link/);
  assert.deepEqual(load.invalid, ["web"]);
});

test("the runtime gets the file's values and the references' values; the spec itself keeps refs and digests", async (t) => {
  const root = await repoWith(t, {
    "apps/web/app.yaml": `${SPEC}  DB_PASSWORD: { from_file: FILE }\n  API_KEY: { from_env: HOST_API_KEY }\n`,
    "apps/web/secrets.sops.yaml": await encrypted("SESSION_SECRET: from-the-file-123\nLIMITS:\n  max: 3\n"),
  });
  const secretFile = join(root, "db_password");
  await writeFile(secretFile, "from-a-host-file-456\n");
  const spec = join(root, "apps/web/app.yaml");
  await writeFile(spec, (await readFile(spec, "utf8")).replace("FILE", secretFile));
  const load = await loadApps(join(root, "apps"), { root });
  const env = { HOST_API_KEY: "from-the-host-env-789" };
  const local = await tempDir(t);
  const resolver = new SecretResolver({ repoDir: () => root, localPath: local, env, identities });
  const stamped = await resolver.stamp(load.apps[0]!.spec);
  const resolved = await resolver.resolve(stamped);
  assert.deepEqual(resolved.env, {
    port: 8080,
    DB_PASSWORD: "from-a-host-file-456",
    API_KEY: "from-the-host-env-789",
    SESSION_SECRET: "from-the-file-123",
    LIMITS: { max: 3 },
  });
  assert.equal(resolved.secrets, undefined);
  const kept = JSON.stringify(stamped);
  for (const value of ["from-a-host-file-456", "from-the-host-env-789", "from-the-file-123"])
    assert.ok(!kept.includes(value), `the spec never holds ${value}`);
  assert.deepEqual(stamped.env.DB_PASSWORD, { from_file: secretFile });
  // A keyed digest, not a plain hash an attacker could test guesses against.
  const plainHash = createHash("sha256").update("from-the-host-env-789").digest("hex");
  assert.match(stamped.secrets!.keys.API_KEY!, /^hmac-sha256:[0-9a-f]{64}$/);
  assert.ok(!kept.includes(plainHash));
  assert.equal((await stat(join(local, "secrets.key"))).mode & 0o777, 0o600);
  // The digest follows the value, not the reference.
  await writeFile(secretFile, "rotated-host-file-value\n");
  const again = await resolver.stamp(load.apps[0]!.spec);
  assert.notEqual(again.secrets!.keys.DB_PASSWORD, stamped.secrets!.keys.DB_PASSWORD);
  assert.equal(again.secrets!.keys.API_KEY, stamped.secrets!.keys.API_KEY);
  assert.equal(again.secrets!.keys.SESSION_SECRET, stamped.secrets!.keys.SESSION_SECRET);
});

test("a missing file or variable is an E_SECRETS error naming the key and where it looked, retried with backoff", async (t) => {
  const root = await repoWith(t, {
    "apps/web/app.yaml": `${SPEC}  A: { from_file: /nonexistent/bc-gitops-secret }\n  B: { from_env: BC_TEST_UNSET_VARIABLE }\n`,
  });
  const load = await loadApps(join(root, "apps"), { root });
  const resolver = new SecretResolver({ repoDir: () => root, env: {} });
  const stamped = await resolver.stamp(load.apps[0]!.spec);
  assert.equal(stamped.secrets!.keys.A, "unavailable");
  const error = await resolver.resolve(stamped).then(
    () => assert.fail("expected a failure"),
    (e: unknown) => e,
  );
  assert.equal(codeOf(error), "E_SECRETS");
  assert.equal(retryClassOf(error), "backoff");
  assert.match((error as Error).message, /env\.A: cannot read \/nonexistent\/bc-gitops-secret \(no such file\)/);
  await writeFile(join(root, "a"), "x");
  const onlyEnv = { ...stamped, env: { B: { from_env: "BC_TEST_UNSET_VARIABLE" } } };
  await assert.rejects(resolver.resolve(onlyEnv), /env\.B: the environment variable BC_TEST_UNSET_VARIABLE is not set/);
});

test("a tampered secrets file fails resolution as E_SECRETS, stalled until a new commit", async (t) => {
  const text = await encrypted("TOKEN: abcdef123456\n");
  const root = await repoWith(t, { "apps/web/app.yaml": SPEC, "apps/web/secrets.sops.yaml": text });
  const load = await loadApps(join(root, "apps"), { root });
  const data = /data:([^,]+)/.exec(text)![1]!;
  await writeFile(
    join(root, "apps/web/secrets.sops.yaml"),
    text.replace(data, `${data[0] === "A" ? "B" : "A"}${data.slice(1)}`),
  );
  const tampered = await loadApps(join(root, "apps"), { root });
  const resolver = new SecretResolver({ repoDir: () => root, env: {}, identities });
  const error = await resolver.resolve(tampered.apps[0]!.spec).then(
    () => assert.fail("expected a failure"),
    (e: unknown) => e,
  );
  assert.equal(codeOf(error), "E_SECRETS");
  assert.equal(retryClassOf(error), "stalled");
  assert.match((error as Error).message, /^apps\/web\/secrets\.sops\.yaml: TOKEN: does not decrypt/);
  // The version read before the change is not served from the changed file.
  await assert.rejects(resolver.resolve(load.apps[0]!.spec), /changed since this version of the app was read/);
});

test("a changed secret is a reconfigure that plan shows as 'secret changed', without values", async (t) => {
  const root = await repoWith(t, {
    "apps/web/app.yaml": `${SPEC}  DB_PASSWORD: { from_env: HOST_DB }\n`,
    "apps/web/secrets.sops.yaml": await encrypted("TOKEN: first-token-value\nOTHER: same\n"),
  });
  const resolver = new SecretResolver({ repoDir: () => root, env: { HOST_DB: "one" } });
  const before = await resolver.stampAll(await loadApps(join(root, "apps"), { root }));
  const deployed = { web: { spec: before.apps[0]!.spec } };
  const current = currentState(deployed, { web: { status: "running", health: "healthy" } });
  assert.deepEqual(plan(desiredState(before, deployed), current), [], "nothing changed, nothing to do");

  await writeFile(
    join(root, "apps/web/secrets.sops.yaml"),
    await encrypted("TOKEN: second-token-value\nOTHER: same\n"),
  );
  const changedResolver = new SecretResolver({ repoDir: () => root, env: { HOST_DB: "two" } });
  const after = await changedResolver.stampAll(await loadApps(join(root, "apps"), { root }));
  const actions = plan(desiredState(after, deployed), current);
  assert.equal(actions.length, 1);
  const action = actions[0]!;
  assert.equal(action.type, "reconfigure");
  // A re-encrypted file changes every ciphertext (a new data key): each of its keys counts as changed.
  assert.deepEqual(action.type === "reconfigure" && action.secrets, ["DB_PASSWORD", "OTHER", "TOKEN"]);
  const report = planReport(actions, []);
  assert.match(report, /reconfigure web: secret changed: DB_PASSWORD, OTHER, TOKEN/);
  for (const value of ["first-token-value", "second-token-value", "one", "two"]) assert.ok(!report.includes(value));

  // plan (outside the agent) keeps the deployed digest of an unchanged reference.
  const viaPlan = {
    ...before.apps[0]!,
    spec: stampFromDeployed((await loadApps(join(root, "apps"), { root })).apps[0]!.spec, deployed.web.spec),
  };
  const planned = plan(desiredState({ ...after, apps: [viaPlan] }, deployed), current);
  assert.deepEqual(planned[0]?.type === "reconfigure" && planned[0].secrets, ["OTHER", "TOKEN"]);
});
