/**
 * The SOPS envelope (getsops/sops: `sops.go` `Tree.Encrypt`/`Tree.Decrypt`, `cmd/sops/common`
 * `DecryptTree`/`EncryptTree`, `stores/stores.go` `Metadata`): reading a file's `sops` metadata,
 * decrypting its values with the data key its age stanzas hold, checking the MAC, and writing new
 * files that the `sops` tool decrypts.
 *
 * The MAC is the upper-case hex SHA-512 of every leaf's plaintext bytes in document order (only the
 * encrypted ones, after a fixed 32-byte prefix, with `mac_only_encrypted`), itself encrypted with
 * the data key and, as additional data, `lastmodified` in RFC 3339. A file with no age recipient
 * (PGP or cloud KMS only), key groups (Shamir) or comment-based encryption rules is refused with a
 * message saying so.
 */
import { createHash, randomBytes } from "node:crypto";
import { loadIdentities, unwrapDataKey, wrapDataKey, type AgeIdentity } from "./age-keys.ts";
import { additionalData, decryptLeaf, encryptLeaf, isEncrypted, SopsValueError } from "./sops-cipher.ts";
import { emitSopsText, parseSopsText, type SopsFormat } from "./sops-formats.ts";
import { RULE_NAMES, macBytes, mapLeaves, shouldEncrypt, type CryptRules, type SopsMap } from "./sops-tree.ts";

export { formatOfFile, type SopsFormat } from "./sops-formats.ts";

/** The `sops` block of a file, validated. */
export interface SopsMetadata {
  age: { recipient: string; enc: string }[];
  lastmodified: string;
  mac: string;
  rules: CryptRules;
  macOnlyEncrypted: boolean;
  version: string;
  /** Kinds of non-age master keys the file also lists (`pgp`, `kms`…): shown when no age key fits. */
  otherKeys: string[];
}

/** A parsed, structurally valid SOPS file (nothing decrypted yet). */
export interface SopsFile {
  format: SopsFormat;
  /** The values as the file holds them (`ENC[…]` strings where encrypted). */
  tree: SopsMap;
  metadata: SopsMetadata;
}

/** What is wrong with a SOPS file: its structure, its keys, a value or the MAC. `kind` says which. */
export class SopsError extends Error {
  override name = "SopsError";
  readonly kind: "format" | "no-key" | "tampered";
  readonly line: number | undefined;
  constructor(message: string, kind: SopsError["kind"], line?: number) {
    super(message);
    this.kind = kind;
    this.line = line;
  }
}

/** The 32 bytes sops hashes first with `mac_only_encrypted` (SHA-256 of "sops"). */
const MAC_ONLY_ENCRYPTED_INIT = createHash("sha256").update("sops").digest();
const OTHER_KEYS = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault"] as const;

/**
 * Reads a SOPS file's text: its values and validated metadata. Throws a {@link SopsError} (`format`)
 * for invalid syntax, a missing or malformed `sops` block, unsupported features, or a value that
 * the file's rules say is encrypted but that is not `ENC[…]`.
 */
export function parseSopsFile(text: string, format: SopsFormat): SopsFile {
  let doc;
  try {
    doc = parseSopsText(text, format);
  } catch (error) {
    throw new SopsError((error as Error).message, "format", (error as { line?: number }).line);
  }
  if (doc.metadata === undefined)
    throw new SopsError(
      `has no sops metadata (${format === "dotenv" ? "sops_* lines" : "a top-level sops: block"}): it is not encrypted; encrypt it with \`bc-gitops secrets encrypt --age …\` or \`sops encrypt\``,
      "format",
    );
  return { format, tree: doc.tree, metadata: metadataOf(doc.metadata) };
}

/** Checks and types the `sops` block (`stores.Metadata.ToInternal`). */
function metadataOf(raw: unknown): SopsMetadata {
  const fail = (message: string): never => {
    throw new SopsError(`sops metadata: ${message}`, "format");
  };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return fail("expected a mapping");
  const m = raw as Record<string, unknown>;
  const keyGroups = m.key_groups;
  if (Array.isArray(keyGroups) && keyGroups.length > 0)
    fail("key_groups (Shamir secret sharing) is not supported by bc-gitops; list the age recipients directly");
  for (const key of ["unencrypted_comment_regex", "encrypted_comment_regex"])
    if (m[key]) fail(`${key} is not supported by bc-gitops; use encrypted_regex or unencrypted_suffix`);
  const str = (key: string): string => {
    const v = m[key];
    if (typeof v !== "string" || v === "") return fail(`${key} is missing (expected a string)`);
    return v;
  };
  const lastmodified = str("lastmodified");
  if (rfc3339(lastmodified) === undefined)
    fail(`lastmodified ${JSON.stringify(lastmodified)} is not an RFC 3339 time like 2024-01-02T03:04:05Z`);
  const mac = typeof m.mac === "string" ? m.mac : "";
  const rules: CryptRules = {};
  for (const name of RULE_NAMES) {
    const v = m[name];
    if (v === undefined || v === null || v === "") continue;
    if (typeof v !== "string") fail(`${name} must be a string`);
    rules[name] = v as string;
  }
  const set = Object.keys(rules);
  if (set.length > 1)
    fail(`sets ${set.join(" and ")}: use only one of ${RULE_NAMES.join(", ")} (sops refuses this file too)`);
  if (set.length === 0) rules.unencrypted_suffix = "_unencrypted";
  for (const name of ["unencrypted_regex", "encrypted_regex"] as const) {
    if (!rules[name]) continue;
    try {
      new RegExp(rules[name].replace(/^\(\?[imsU]+\)/, ""));
    } catch {
      fail(`${name} ${JSON.stringify(rules[name])} is not a regular expression`);
    }
  }
  const age: SopsMetadata["age"] = [];
  const list = m.age ?? [];
  if (!Array.isArray(list)) fail("age must be a list of { recipient, enc }");
  for (const [i, entry] of (list as unknown[]).entries()) {
    const e = entry as Record<string, unknown> | null;
    if (
      !e ||
      typeof e.recipient !== "string" ||
      typeof e.enc !== "string" ||
      !e.enc.includes("BEGIN AGE ENCRYPTED FILE")
    )
      fail(`age[${i}] must have a recipient (age1…) and enc (an armored age file)`);
    age.push({ recipient: e!.recipient as string, enc: e!.enc as string });
  }
  const otherKeys = OTHER_KEYS.filter((k) => Array.isArray(m[k]) && (m[k] as unknown[]).length > 0);
  if (age.length === 0)
    fail(
      otherKeys.length
        ? `the file is encrypted only for ${otherKeys.join(", ")} keys; bc-gitops decrypts age recipients only: add one with \`sops updatekeys\` (or re-encrypt with \`bc-gitops secrets encrypt --age …\`)`
        : "no age recipient: the file cannot be decrypted by any key",
    );
  const mo = m.mac_only_encrypted;
  return {
    age,
    lastmodified,
    mac,
    rules,
    macOnlyEncrypted: mo === true || mo === "true",
    version: typeof m.version === "string" ? m.version : String(m.version ?? ""),
    otherKeys,
  };
}

/**
 * Every value that the file's rules say is encrypted must be `ENC[…]` or empty, as sops requires.
 * Returns the problems (`key.path: …`), for `validate` and the loader; decrypting checks again.
 */
export async function structureProblems(file: SopsFile): Promise<string[]> {
  const problems: string[] = [];
  await mapLeaves(file.tree, (leaf, path) => {
    if (
      shouldEncrypt(path, file.metadata.rules) &&
      !(leaf.type === "str" && (leaf.value === "" || isEncrypted(leaf.value)))
    )
      problems.push(`${path.join(".")}: is not encrypted although the file's rules say it must be (edited by hand?)`);
    return leaf;
  });
  return problems;
}

/**
 * Decrypts every value and checks the MAC (`DecryptTree`). Identities default to this host's
 * ({@link loadIdentities}). Returns the plaintext tree. Throws a {@link SopsError}: `no-key` when no
 * identity opens a stanza (naming the recipients on both sides), `tampered` when a value does not
 * decrypt or the MAC does not match.
 */
export async function decryptSopsFile(file: SopsFile, identities?: readonly AgeIdentity[]): Promise<SopsMap> {
  let dataKey: Uint8Array;
  try {
    dataKey = await unwrapDataKey(file.metadata.age, identities ?? (await loadIdentities()));
  } catch (error) {
    throw new SopsError((error as Error).message, "no-key");
  }
  if (dataKey.length !== 32) throw new SopsError(`the data key is ${dataKey.length} bytes; sops uses 32`, "tampered");
  const { rules, macOnlyEncrypted } = file.metadata;
  const hash = createHash("sha512");
  if (macOnlyEncrypted) hash.update(MAC_ONLY_ENCRYPTED_INIT);
  const plain = await mapLeaves(file.tree, (leaf, path) => {
    const encrypted = shouldEncrypt(path, rules);
    let out = leaf;
    if (encrypted) {
      if (leaf.type !== "str")
        throw new SopsError(`${path.join(".")}: is not encrypted although the file's rules say it must be`, "tampered");
      try {
        out = decryptLeaf(leaf.value, dataKey, additionalData(path));
      } catch (error) {
        if (error instanceof SopsValueError) throw new SopsError(`${path.join(".")}: ${error.message}`, "tampered");
        throw error;
      }
    }
    if (!macOnlyEncrypted || encrypted) hash.update(macBytes(out));
    return out;
  });
  const computed = hash.digest("hex").toUpperCase();
  let stored: string;
  try {
    const leaf = decryptLeaf(file.metadata.mac, dataKey, rfc3339(file.metadata.lastmodified)!);
    stored = leaf.type === "str" ? leaf.value : "";
  } catch {
    throw new SopsError(
      "the MAC does not decrypt with the file's data key: the sops metadata (mac or lastmodified) was changed or the MAC is missing",
      "tampered",
    );
  }
  if (stored !== computed)
    throw new SopsError(
      "MAC mismatch: a value, a key or their order was changed without re-encrypting the file (edited by hand, or tampered with)",
      "tampered",
    );
  return plain;
}

/** Options of {@link encryptSops}. */
export interface EncryptOptions {
  /** Which values to encrypt (default: every value, except keys ending in `_unencrypted`). At most one rule. */
  rules?: CryptRules;
  macOnlyEncrypted?: boolean;
  /** The clock (tests). */
  now?: Date;
}

/**
 * Encrypts a plaintext file (`EncryptTree` plus the store's emitter) for the age `recipients`
 * (each gets its own armored copy of one random 32-byte data key). The result decrypts with `sops`
 * and with {@link decryptSopsFile}. Comments are dropped. Throws a {@link SopsError} (`format`)
 * when the input is invalid or already encrypted.
 */
export async function encryptSops(
  text: string,
  format: SopsFormat,
  recipients: readonly string[],
  options: EncryptOptions = {},
): Promise<string> {
  let doc;
  try {
    doc = parseSopsText(text, format);
  } catch (error) {
    throw new SopsError((error as Error).message, "format", (error as { line?: number }).line);
  }
  if (doc.metadata !== undefined) throw new SopsError("is already encrypted (it has sops metadata)", "format");
  if (recipients.length === 0) throw new SopsError("no recipient: pass at least one --age age1…", "format");
  const rules: CryptRules = Object.fromEntries(Object.entries(options.rules ?? {}).filter(([, v]) => v));
  if (Object.keys(rules).length > 1) throw new SopsError(`use only one of ${RULE_NAMES.join(", ")}`, "format");
  if (Object.keys(rules).length === 0) rules.unencrypted_suffix = "_unencrypted";
  const dataKey = randomBytes(32);
  const hash = createHash("sha512");
  const macOnlyEncrypted = options.macOnlyEncrypted ?? false;
  if (macOnlyEncrypted) hash.update(MAC_ONLY_ENCRYPTED_INIT);
  const tree = await mapLeaves(doc.tree, (leaf, path) => {
    const encrypted = shouldEncrypt(path, rules);
    if (!macOnlyEncrypted || encrypted) hash.update(macBytes(leaf));
    return encrypted ? { type: "str", value: encryptLeaf(leaf, dataKey, additionalData(path)) } : leaf;
  });
  const lastmodified = rfc3339((options.now ?? new Date()).toISOString())!;
  const mac = encryptLeaf({ type: "str", value: hash.digest("hex").toUpperCase() }, dataKey, lastmodified);
  const age = [];
  for (const recipient of recipients) age.push({ recipient, enc: await wrapDataKey(dataKey, recipient) });
  const metadata: Record<string, unknown> = {
    age,
    lastmodified,
    mac,
    ...rules,
    ...(macOnlyEncrypted ? { mac_only_encrypted: true } : {}),
    // The sops release whose file layout this follows; sops reads the field as a version number.
    version: "3.9.4",
  };
  return emitSopsText(tree, metadata, format);
}

/**
 * A time as Go's `time.Format(time.RFC3339)` writes it after `time.Parse(time.RFC3339, …)`: whole
 * seconds, `Z` for UTC, else the offset as written. `undefined` when it does not parse.
 */
export function rfc3339(text: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return undefined;
  // Go prints a zero offset as "Z" whatever the text said ("+00:00" included).
  const zone = /^([Zz]|[+-]00:00)$/.test(m[4]!) ? "Z" : m[4];
  return `${m[1]}T${m[2]}${zone}`;
}
