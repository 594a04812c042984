// End to end: secrets from a SOPS file in the repository and from host-local references reach a
// process app, a change to either reconfigures it, a tampered file fails that app only, and no
// plaintext is anywhere the agent writes or answers: state dir, logs, API answers, metrics, events.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { createAgent, type Agent } from "../src/agent.ts";
import type { Logger } from "../src/logger.ts";
import { parseIdentities } from "../src/secrets/age-keys.ts";
import { encryptSops } from "../src/secrets/sops.ts";
import { code, until } from "./helpers/e2e.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { tempDir } from "./helpers/tmp.ts";

const KEY = fileURLToPath(new URL("./fixtures/secrets/key1.txt", import.meta.url));
const sha = (value: string) => createHash("sha256").update(value).digest("hex");

/** Every file under `dir`, as bytes (git objects are compressed, so the clone is checked through its checkout too). */
async function filesUnder(dir: string): Promise<{ path: string; bytes: Buffer }[]> {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.push({ path, bytes: await readFile(path) });
  }
  return out;
}

test("secrets reach a process app, changes reconfigure it, tampering fails it alone, and no plaintext is written or shown anywhere", async (t) => {
  const plaintexts = {
    file1: "db-password-from-a-host-file-1",
    file2: "db-password-from-a-host-file-2",
    env: "api-key-from-the-host-environment",
    sops1: "session-secret-from-the-sops-file-1",
    sops2: "session-secret-from-the-sops-file-2",
    // Too short to be registered with redact: only the views' structure keeps it out.
    short: "q~7!z",
  };
  const host = await tempDir(t);
  const keyFile = join(host, "age.txt");
  await copyFile(KEY, keyFile);
  const recipient = (await parseIdentities(await readFile(KEY, "utf8"), "key"))[0]!.recipient;
  const dbFile = join(host, "db_password");
  await writeFile(dbFile, `${plaintexts.file1}\n`);
  process.env.E2E_SECRETS_API_KEY = plaintexts.env;
  t.after(() => void delete process.env.E2E_SECRETS_API_KEY);

  const secrets = (session: string) =>
    encryptSops(`SIGNING_SALT: ${session}\nPIN: "${plaintexts.short}"\n`, "yaml", [recipient]);
  const spec = [
    "name: vault",
    'version: "1.0.0"',
    "isolation: process",
    "source: { type: path, path: code/vault }",
    "health: { type: http, path: /health, interval: 60s, timeout: 2000 }",
    "env:",
    "  port: 0",
    "  check: DB_PASSWORD,API_KEY,SIGNING_SALT,PIN",
    `  DB_PASSWORD: { from_file: ${dbFile} }`,
    "  API_KEY: { from_env: E2E_SECRETS_API_KEY }",
  ].join("\n");
  const repo = await gitopsRepo(t, {
    "apps/vault/app.yaml": `${spec}\n`,
    "apps/vault/secrets.sops.yaml": await secrets(plaintexts.sops1),
    ...(await code("proc-secrets", "vault")),
  });
  const localPath = join(repo.root, "local");
  const lines: string[] = [];
  const record =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void =>
      void lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
  const logger: Logger = { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
  const options = {
    repoUrl: repo.bare,
    localPath,
    ageKeyFile: keyFile,
    listen: "127.0.0.1:0",
    reconcileInterval: "1h",
    logger,
  };
  const agent = createAgent(options);
  t.after(() => agent.stop());
  const events: unknown[] = [];
  agent.on("*", (event) => void events.push(event));
  const answers: string[] = [];

  const digests = (expected: Record<string, string>, from: Agent = agent) =>
    until(`vault to answer with ${JSON.stringify(expected)}`, async () => {
      const port = (await from.getAppStatus("vault"))?.port;
      if (typeof port !== "number") return undefined;
      const body = (await (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })).json()) as {
        sha256: Record<string, string>;
        pid: number;
      };
      const want = Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, sha(v)]));
      return JSON.stringify(body.sha256) === JSON.stringify(want) ? body : undefined;
    });

  const first = await agent.start();
  answers.push(JSON.stringify(first));
  assert.deepEqual(
    first.actions.map((a) => [a.type, a.app, a.outcome]),
    [["deploy", "vault", "ok"]],
  );
  await digests({
    DB_PASSWORD: plaintexts.file1,
    API_KEY: plaintexts.env,
    SIGNING_SALT: plaintexts.sops1,
    PIN: plaintexts.short,
  });

  // A host file changed, same commit: a reconfigure of that key, as for any env change.
  await writeFile(dbFile, `${plaintexts.file2}\n`);
  const rotated = await agent.reconcile();
  answers.push(JSON.stringify(rotated));
  assert.deepEqual(
    rotated.actions.map((a) => [a.type, a.app, a.outcome]),
    [["reconfigure", "vault", "ok"]],
  );
  await digests({
    DB_PASSWORD: plaintexts.file2,
    API_KEY: plaintexts.env,
    SIGNING_SALT: plaintexts.sops1,
    PIN: plaintexts.short,
  });
  const reconfigured = events.find((e) => (e as { name: string }).name === "bc_gitops:reconfigure:stop") as {
    metadata: { changed: string[] };
  };
  assert.deepEqual(reconfigured.metadata.changed, ["DB_PASSWORD"]);

  // A new secrets file in git: its key changes.
  await repo.commit({ "apps/vault/secrets.sops.yaml": await secrets(plaintexts.sops2) });
  const committed = await agent.reconcile();
  answers.push(JSON.stringify(committed));
  assert.deepEqual(
    committed.actions.map((a) => [a.type, a.app, a.outcome]),
    [["reconfigure", "vault", "ok"]],
  );
  const running = await digests({
    DB_PASSWORD: plaintexts.file2,
    API_KEY: plaintexts.env,
    SIGNING_SALT: plaintexts.sops2,
    PIN: plaintexts.short,
  });

  // A tampered file: the reconfigure fails on this app, which keeps running as it was.
  const good = await secrets(plaintexts.sops1);
  const data = /data:([^,]+)/.exec(good)![1]!;
  await repo.commit({
    "apps/vault/secrets.sops.yaml": good.replace(data, `${data[0] === "A" ? "B" : "A"}${data.slice(1)}`),
  });
  const tampered = await agent.reconcile();
  answers.push(JSON.stringify(tampered));
  assert.deepEqual(
    tampered.actions.map((a) => [a.type, a.app, a.outcome]),
    [["reconfigure", "vault", "failed"]],
  );
  assert.match(tampered.actions[0]!.error ?? "", /apps\/vault\/secrets\.sops\.yaml: SIGNING_SALT: does not decrypt/);
  const state = await agent.getAppStatus("vault");
  assert.equal(state?.last_error_code, "E_SECRETS");
  assert.equal(state?.status, "running");
  const still = await digests({
    DB_PASSWORD: plaintexts.file2,
    API_KEY: plaintexts.env,
    SIGNING_SALT: plaintexts.sops2,
    PIN: plaintexts.short,
  });
  assert.equal(still.pid, running.pid, "the running version keeps running");

  // Everything the agent answers…
  const base = `http://${agent.address}`;
  for (const path of [
    "/status",
    "/apps",
    "/apps/vault",
    "/state/desired",
    "/state/current?include=deployed",
    "/metrics",
  ])
    answers.push(`${path} ${await (await fetch(`${base}${path}`)).text()}`);
  answers.push(JSON.stringify(await agent.getCurrentState()), JSON.stringify(await agent.getDesiredState()));
  const shown = JSON.parse(answers.find((a) => a.startsWith("/apps/vault "))!.slice("/apps/vault ".length)) as {
    env: Record<string, unknown>;
  };
  assert.deepEqual(shown.env.DB_PASSWORD, "***", "a secret-looking key is masked as before");
  assert.deepEqual(shown.env.API_KEY, "***");
  assert.equal(shown.env.SIGNING_SALT, "***", "a secrets file key is listed, its value never");
  assert.equal(shown.env.PIN, "***");
  await agent.stop();

  // A restarted agent brings the app back with the secrets it ran with, although the checkout now
  // holds the tampered file (the ciphertext it ran from was kept), and the new commit still fails.
  const again = createAgent(options);
  t.after(() => again.stop());
  const restarted = await again.start();
  answers.push(JSON.stringify(restarted));
  assert.deepEqual(
    restarted.actions.map((a) => [a.type, a.app, a.outcome]),
    [["reconfigure", "vault", "failed"]],
  );
  await digests(
    { DB_PASSWORD: plaintexts.file2, API_KEY: plaintexts.env, SIGNING_SALT: plaintexts.sops2, PIN: plaintexts.short },
    again,
  );
  answers.push(
    JSON.stringify(await again.getCurrentState()),
    await (await fetch(`http://${again.address}/metrics`)).text(),
  );
  await again.stop();

  // …and everything it wrote (state.json, the journal, logs, workspaces, the clone's checkouts).
  const written = await filesUnder(localPath);
  assert.ok(written.some((f) => f.path.endsWith("state.json")));
  assert.ok(written.some((f) => f.path.endsWith(join("logs", "vault.log"))));
  const haystacks = [
    ...written.map((f) => ({ where: f.path, text: f.bytes.toString("latin1") })),
    ...lines.map((text, i) => ({ where: `log line ${i}`, text })),
    ...answers.map((text, i) => ({ where: `answer ${i}`, text })),
    ...events.map((e, i) => ({ where: `event ${i}`, text: JSON.stringify(e) })),
  ];
  for (const [name, plaintext] of Object.entries(plaintexts))
    for (const { where, text } of haystacks) assert.ok(!text.includes(plaintext), `${name} found in ${where}`);
  // What state.json keeps instead: the references as written and digests.
  const saved = JSON.parse(await readFile(join(localPath, "state.json"), "utf8")) as {
    apps: Record<
      string,
      { spec: { env: Record<string, unknown>; secrets: { file: string; keys: Record<string, string> } } }
    >;
  };
  assert.deepEqual(saved.apps.vault!.spec.env.DB_PASSWORD, { from_file: dbFile });
  assert.equal(saved.apps.vault!.spec.secrets.file, "apps/vault/secrets.sops.yaml");
  assert.match(saved.apps.vault!.spec.secrets.keys.API_KEY!, /^hmac-sha256:/);
});
