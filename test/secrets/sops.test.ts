/**
 * The SOPS envelope against files written as the `sops` tool writes them (test/fixtures/secrets/,
 * made by make-fixtures.py from getsops/sops's source and the real `age` binary, independently of
 * this code), and bc-gitops's own files against an independent decrypter (sops-decrypt.py).
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { exec } from "../../src/exec.ts";
import { parseIdentities, type AgeIdentity } from "../../src/secrets/age-keys.ts";
import {
  decryptSopsFile,
  encryptSops,
  parseSopsFile,
  rfc3339,
  SopsError,
  type SopsFormat,
} from "../../src/secrets/sops.ts";
import { parseSopsText } from "../../src/secrets/sops-formats.ts";
import { goFloat, plainValue } from "../../src/secrets/sops-tree.ts";
import { tempDir } from "../helpers/tmp.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/secrets/", import.meta.url));
const fixture = (name: string) => readFile(join(FIXTURES, name), "utf8");
const key = async (name: string): Promise<AgeIdentity[]> => parseIdentities(await fixture(name), name);
const recipientOf = async (name: string) => (await key(name))[0]!.recipient;
const expected = async () => JSON.parse(await fixture("expected.json")) as Record<string, unknown>;

async function decrypt(text: string, format: SopsFormat, identities: AgeIdentity[]): Promise<unknown> {
  return plainValue(await decryptSopsFile(parseSopsFile(text, format), identities));
}

async function rejection(promise: Promise<unknown>): Promise<SopsError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SopsError, `a SopsError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a SopsError");
}

const FILES: [file: string, format: SopsFormat, what: string][] = [
  [
    "nested.sops.yaml",
    "yaml",
    "YAML: nested maps, a list, int/float/bool, an integer-like key, _unencrypted, empty, null",
  ],
  ["regex.sops.json", "json", "JSON: encrypted_regex, also inside a list of maps; numbers as floats"],
  ["app.sops.env", "dotenv", "dotenv: a multi-line value, _unencrypted, flattened metadata"],
  ["mac-only.sops.yaml", "yaml", "YAML: encrypted_suffix with mac_only_encrypted"],
];

for (const [file, format, what] of FILES) {
  test(`a file written as sops writes it decrypts, MAC checked: ${what}`, async () => {
    const identities = [...(await key("key1.txt")), ...(await key("key2.txt"))];
    assert.deepEqual(await decrypt(await fixture(file), format, identities), (await expected())[file]);
  });
}

test("a file for several recipients decrypts with the key of any one of them", async () => {
  const want = (await expected())["nested.sops.yaml"];
  assert.deepEqual(await decrypt(await fixture("nested.sops.yaml"), "yaml", await key("key1.txt")), want);
  assert.deepEqual(await decrypt(await fixture("nested.sops.yaml"), "yaml", await key("key2.txt")), want);
});

test("a tampered value is refused, naming its key", async () => {
  const text = await fixture("nested.sops.yaml");
  const data = /password: ENC\[AES256_GCM,data:([^,]+)/.exec(text)![1]!;
  const flipped = (data[0] === "A" ? "B" : "A") + data.slice(1);
  const error = await rejection(decrypt(text.replace(data, flipped), "yaml", await key("key1.txt")));
  assert.equal(error.kind, "tampered");
  assert.match(error.message, /^db\.password: does not decrypt/);
});

test("a value moved to another key is refused: the path is authenticated", async () => {
  const text = await fixture("nested.sops.yaml");
  const user = /user: (ENC\[[^\n]+)/.exec(text)![1]!;
  const password = /password: (ENC\[[^\n]+)/.exec(text)![1]!;
  const swapped = text.replace(user, "@@").replace(password, user).replace("@@", password);
  const error = await rejection(decrypt(swapped, "yaml", await key("key1.txt")));
  assert.equal(error.kind, "tampered");
});

test("a changed clear value, a reordered file or a tampered MAC is a MAC mismatch", async () => {
  const text = await fixture("nested.sops.yaml");
  const ids = await key("key1.txt");
  const clear = await rejection(decrypt(text.replace("kept in clear", "changed in clear"), "yaml", ids));
  assert.match(clear.message, /^MAC mismatch/);
  const mac = /mac: ENC\[AES256_GCM,data:([^,]+)/.exec(text)![1]!;
  const badMac = await rejection(
    decrypt(text.replace(mac, `${mac[0] === "A" ? "B" : "A"}${mac.slice(1)}`), "yaml", ids),
  );
  assert.match(badMac.message, /MAC does not decrypt/);
  const when = await rejection(decrypt(text.replace("2025-03-04T05:06:07Z", "2025-03-04T05:06:08Z"), "yaml", ids));
  assert.match(when.message, /MAC does not decrypt/);
  const env = await fixture("app.sops.env");
  const lines = env.split("\n");
  const reordered = [lines[1], lines[0], ...lines.slice(2)].join("\n");
  assert.match((await rejection(decrypt(reordered, "dotenv", ids))).message, /^MAC mismatch/);
});

test("with no key of this host the error names the file's recipients and the host's, and no key", async () => {
  const other = await key("other-key.txt");
  const error = await rejection(decrypt(await fixture("nested.sops.yaml"), "yaml", other));
  assert.equal(error.kind, "no-key");
  assert.ok(error.message.includes(await recipientOf("key1.txt")));
  assert.ok(error.message.includes(await recipientOf("key2.txt")));
  assert.ok(error.message.includes(other[0]!.recipient));
  assert.ok(!error.message.includes("AGE-SECRET-KEY"));
  assert.match((await rejection(decrypt(await fixture("nested.sops.yaml"), "yaml", []))).message, /set age_key_file/);
});

test("unsupported or broken metadata is refused with a message that says what to do", async () => {
  const text = await fixture("nested.sops.yaml");
  const pgpOnly = text.replace(
    / {4}age:\n(?: {8}.*\n| {14}.*\n)+/,
    "    pgp:\n        - fp: ABC\n          enc: x\n          created_at: '2020-01-01T00:00:00Z'\n",
  );
  assert.match(
    (await rejection(Promise.resolve().then(() => parseSopsFile(pgpOnly, "yaml")))).message,
    /only for pgp keys; bc-gitops decrypts age recipients only/,
  );
  const twoRules = text.replace(
    "unencrypted_suffix: _unencrypted",
    "unencrypted_suffix: _unencrypted\n    encrypted_regex: ^x$",
  );
  assert.match(
    (await rejection(Promise.resolve().then(() => parseSopsFile(twoRules, "yaml")))).message,
    /use only one of/,
  );
  const shamir = text.replace("    lastmodified:", "    key_groups:\n        - age: []\n    lastmodified:");
  assert.match((await rejection(Promise.resolve().then(() => parseSopsFile(shamir, "yaml")))).message, /key_groups/);
  assert.match(
    (await rejection(Promise.resolve().then(() => parseSopsFile("a: 1\n", "yaml")))).message,
    /not encrypted/,
  );
});

const ROUND_TRIPS: [format: SopsFormat, plain: string, options: Parameters<typeof encryptSops>[3], clear: RegExp[]][] =
  [
    [
      "yaml",
      "db:\n  password: p@ss word\n  port: 5432\n  ratio: 1.5\n  on: true\nlist: [a, {token: t}]\nnote_unencrypted: shown\n",
      {},
      [/note_unencrypted: "shown"/],
    ],
    ["yaml", "password: s3cret\nuser: app\n", { rules: { encrypted_regex: "^password$" } }, [/user: "app"/]],
    [
      "json",
      '{"20": "x", "token": "t0k3n", "n": 3, "deep": {"k": [1, 2]}}',
      { rules: { unencrypted_regex: "^n$" } },
      [/"n": 3/],
    ],
    [
      "dotenv",
      "API_KEY=abc123\nMULTI=a\\nb\nPUBLIC_plain=yes\n",
      { rules: { encrypted_suffix: "_KEY" }, macOnlyEncrypted: true },
      [/^MULTI=a\\nb$/m],
    ],
  ];

for (const [format, plain, options, clear] of ROUND_TRIPS) {
  test(`bc-gitops encrypt round-trips (${format}, ${JSON.stringify(options)}) for several recipients`, async () => {
    const [one, two] = [await key("key1.txt"), await key("key2.txt")];
    const text = await encryptSops(plain, format, [one[0]!.recipient, two[0]!.recipient], options);
    for (const pattern of clear) assert.match(text, pattern);
    const want = plainValue(parseSopsFileTree(plain, format));
    assert.deepEqual(await decrypt(text, format, one), want);
    assert.deepEqual(await decrypt(text, format, two), want);
    assert.match(text, /iv:[A-Za-z0-9+/]{43}=/, "32-byte IVs, as sops");
  });
}

/** The plaintext as the same reader sees it, for comparison. */
function parseSopsFileTree(plain: string, format: SopsFormat) {
  return parseSopsText(plain, format).tree;
}

test("files bc-gitops encrypts decrypt with an independent implementation of sops's format (python + age)", async (t) => {
  const tools = await exec("python3", ["-c", "import cryptography, yaml"], { allowExitCodes: [0, 1] }).catch(
    () => undefined,
  );
  const age = await exec("age", ["--version"]).catch(() => undefined);
  if (tools?.exitCode !== 0 || !age) return t.skip("needs python3 with cryptography and PyYAML, and age");
  const dir = await tempDir(t);
  const recipient = await recipientOf("key1.txt");
  const cases: [string, SopsFormat, string, Parameters<typeof encryptSops>[3]][] = [
    [
      "a.yaml",
      "yaml",
      "db:\n  password: p\n  port: 5432\n  ratio: 0.5\n  enabled: false\nhosts: [x, y]\nn_unencrypted: clear\n",
      {},
    ],
    [
      "b.json",
      "json",
      '{"10": "ten", "token": "t", "list": [{"token": "u"}], "n": 2}',
      { rules: { encrypted_regex: "token" } },
    ],
    [
      "c.env",
      "dotenv",
      "A=1\nB_secret=two\\nlines\n",
      { rules: { encrypted_suffix: "_secret" }, macOnlyEncrypted: true },
    ],
  ];
  for (const [name, format, plain, options] of cases) {
    await writeFile(join(dir, name), await encryptSops(plain, format, [recipient], options));
    const out = await exec("python3", [join(FIXTURES, "sops-decrypt.py"), join(dir, name), join(FIXTURES, "key1.txt")]);
    assert.deepEqual(JSON.parse(out.stdout), plainValue(parseSopsFileTree(plain, format)), name);
  }
});

test("Go's float formatting and RFC 3339 normalisation, as the MAC and its additional data need them", () => {
  const floats: [number, string][] = [
    [0.75, "0.75"],
    [5432, "5432"],
    [1e21, "1000000000000000000000"],
    [1.5e-7, "0.00000015"],
    [-2.5, "-2.5"],
    [-0, "-0"],
  ];
  for (const [n, text] of floats) assert.equal(goFloat(n), text, String(n));
  assert.equal(rfc3339("2025-03-04T05:06:07.123Z"), "2025-03-04T05:06:07Z");
  assert.equal(rfc3339("2025-03-04T05:06:07+00:00"), "2025-03-04T05:06:07Z");
  assert.equal(rfc3339("2025-03-04T05:06:07+02:00"), "2025-03-04T05:06:07+02:00");
  assert.equal(rfc3339("yesterday"), undefined);
});
