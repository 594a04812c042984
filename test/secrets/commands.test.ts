/** `bc-gitops secrets encrypt|decrypt` and `validate` on secrets files, as real CLI processes. */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { parseIdentities } from "../../src/secrets/age-keys.ts";
import { runCli } from "../helpers/cli.ts";
import { tempDir, writeTree } from "../helpers/tmp.ts";

const KEY = fileURLToPath(new URL("../fixtures/secrets/key1.txt", import.meta.url));
const OTHER = fileURLToPath(new URL("../fixtures/secrets/other-key.txt", import.meta.url));
const recipient = async (file: string) => (await parseIdentities(await readFile(file, "utf8"), file))[0]!.recipient;
/** No key from the environment of whoever runs the tests. */
const NO_KEYS = { SOPS_AGE_KEY: "", SOPS_AGE_KEY_FILE: "", XDG_CONFIG_HOME: "/nonexistent" };

test("secrets encrypt writes a SOPS file on stdout; decrypt refuses a pipe unless --force, then prints the plaintext", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "secrets.yaml"), "DB_PASSWORD: correct-horse-battery\nport: 5432\n");
  const encrypted = await runCli(
    ["secrets", "encrypt", "--age", await recipient(KEY), "--age", await recipient(OTHER), join(dir, "secrets.yaml")],
    { env: NO_KEYS },
  );
  assert.equal(encrypted.exitCode, 0, encrypted.stderr);
  assert.ok(!encrypted.stdout.includes("correct-horse-battery"));
  assert.match(encrypted.stdout, /^DB_PASSWORD: ENC\[AES256_GCM,/);
  assert.equal(encrypted.stdout.match(/recipient: /g)?.length, 2);
  await writeFile(join(dir, "secrets.sops.yaml"), encrypted.stdout);

  const refused = await runCli(["secrets", "decrypt", "--age-key-file", KEY, join(dir, "secrets.sops.yaml")], {
    env: NO_KEYS,
  });
  assert.equal(refused.exitCode, 1);
  assert.equal(refused.stdout, "");
  assert.match(refused.stderr, /refusing to print decrypted secrets to something that is not a terminal/);

  const forced = await runCli(["secrets", "decrypt", "--force", join(dir, "secrets.sops.yaml")], {
    env: { ...NO_KEYS, SOPS_AGE_KEY_FILE: OTHER },
  });
  assert.equal(forced.exitCode, 0, forced.stderr);
  assert.equal(forced.stdout, "DB_PASSWORD: correct-horse-battery\nport: 5432\n");

  const noRecipient = await runCli(["secrets", "encrypt", join(dir, "secrets.yaml")], { env: NO_KEYS });
  assert.match(noRecipient.stderr, /no recipient: pass --age age1/);
  const badRecipient = await runCli(["secrets", "encrypt", "--age", "age1nope", join(dir, "secrets.yaml")]);
  assert.match(badRecipient.stderr, /"age1nope" is not an age recipient/);
});

test("validate checks secrets files: structure always, the MAC when a key is at hand, and never prints a value", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "plain.env"), "API_TOKEN=tok-abcdef-123456\n");
  const encrypted = await runCli(["secrets", "encrypt", "--age", await recipient(KEY), join(dir, "plain.env")]);
  const repo = join(dir, "repo");
  await writeTree(repo, {
    "apps/web/app.yaml": 'name: web\nversion: "1.0.0"\n',
    "apps/web/secrets.sops.env": encrypted.stdout.replace(
      /^API_TOKEN=ENC\[AES256_GCM,data:(.)/m,
      (m, c: string) => m.slice(0, -1) + (c === "A" ? "B" : "A"),
    ),
  });
  const withoutKey = await runCli(["validate", repo], { env: NO_KEYS });
  assert.equal(withoutKey.exitCode, 0, withoutKey.stdout);

  const withKey = await runCli(["validate", repo, "--age-key-file", KEY], { env: NO_KEYS });
  assert.equal(withKey.exitCode, 1);
  assert.match(withKey.stdout, /apps\/web\/secrets\.sops\.env API_TOKEN: does not decrypt with the file's data key/);
  assert.ok(!withKey.stdout.includes("tok-abcdef-123456"));

  const otherKey = await runCli(["validate", repo, "--json"], { env: { ...NO_KEYS, SOPS_AGE_KEY_FILE: OTHER } });
  const report = JSON.parse(otherKey.stdout) as { errors: unknown[]; warnings: { file: string; message: string }[] };
  assert.deepEqual(report.errors, []);
  assert.match(report.warnings[0]!.message, /the MAC is not checked: no age key of this host can decrypt it/);

  await writeFile(join(repo, "apps/web/secrets.sops.env"), encrypted.stdout);
  const good = await runCli(["validate", repo, "--age-key-file", KEY], { env: NO_KEYS });
  assert.equal(good.exitCode, 0, good.stdout);
});
