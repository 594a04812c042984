/**
 * SOPS's value cipher (getsops/sops `aes/cipher.go`): each value is AES-256-GCM encrypted with the
 * file's 32-byte data key, a random **32-byte** IV and, as additional data, the path of keys leading
 * to it joined by `:` with a trailing `:` (`db:password:`), and written as
 * `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|int64|float|bool|bytes|comment>]`.
 * An empty string is neither encrypted nor decrypted (sops leaves `""` as it is).
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { leafText, type SopsLeaf } from "./sops-tree.ts";

/** sops's nonce size: 32 bytes, not GCM's usual 12 (`aes/cipher.go`, `nonceSize`). */
const IV_BYTES = 32;
const TAG_BYTES = 16;

/** The same pattern sops parses values with: anchored at the start only, as Go's `encre` is. */
const ENC = /^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]/;

/** A value of a SOPS file that is not what its place in the file says (bad encoding, wrong key, tampered). */
export class SopsValueError extends Error {
  override name = "SopsValueError";
}

/** Whether `value` is written in sops's encrypted form. */
export function isEncrypted(value: unknown): value is string {
  return typeof value === "string" && ENC.test(value);
}

/** The additional authenticated data of the value at `path`: its keys joined by `:`, with a trailing `:`. */
export function additionalData(path: readonly string[]): string {
  return `${path.join(":")}:`;
}

/**
 * Encrypts one leaf as sops does (`Cipher.Encrypt`). `iv` is for reproducible test vectors only;
 * leave it out. Returns `""` for an empty string, which sops never encrypts.
 */
export function encryptLeaf(
  leaf: Exclude<SopsLeaf, { type: "null" }>,
  key: Uint8Array,
  aad: string,
  iv?: Uint8Array,
): string {
  if ((leaf.type === "str" && leaf.value === "") || (leaf.type === "bytes" && leaf.value.length === 0)) return "";
  const nonce = iv ?? randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(new TextEncoder().encode(aad));
  const plain = leaf.type === "bytes" ? leaf.value : new TextEncoder().encode(leafText(leaf));
  const data = Buffer.concat([cipher.update(plain), cipher.final()]);
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
  return `ENC[AES256_GCM,data:${b64(data)},iv:${b64(nonce)},tag:${b64(cipher.getAuthTag())},type:${leaf.type}]`;
}

/**
 * Decrypts one `ENC[…]` value (`Cipher.Decrypt`) into a typed leaf; `""` decrypts to `""`. Throws a
 * {@link SopsValueError} when the value is not in sops's form, its type is unknown, or GCM refuses
 * it (wrong data key, a changed value, or a value moved to another path). Comments decrypt to strings.
 */
export function decryptLeaf(value: string, key: Uint8Array, aad: string): Exclude<SopsLeaf, { type: "null" }> {
  if (value === "") return { type: "str", value: "" };
  const m = ENC.exec(value);
  if (!m) throw new SopsValueError("is not an encrypted value (ENC[AES256_GCM,…])");
  const [, data, iv, tag, type] = m as unknown as [string, string, string, string, string];
  const bytes = (b64: string, what: string) => {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0)
      throw new SopsValueError(`has a malformed ${what} (not base64)`);
    return Buffer.from(b64, "base64");
  };
  const nonce = bytes(iv, "iv");
  const authTag = bytes(tag, "tag");
  if (nonce.length === 0) throw new SopsValueError("has an empty iv");
  if (authTag.length !== TAG_BYTES) throw new SopsValueError(`has a ${authTag.length}-byte tag; GCM's is ${TAG_BYTES}`);
  let plain: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce);
    decipher.setAAD(new TextEncoder().encode(aad));
    decipher.setAuthTag(authTag);
    plain = Buffer.concat([decipher.update(bytes(data, "data")), decipher.final()]);
  } catch {
    throw new SopsValueError(
      "does not decrypt with the file's data key: it was changed, moved to another key, or comes from another file",
    );
  }
  const text = new TextDecoder().decode(plain);
  switch (type) {
    case "str":
    case "comment":
      return { type: "str", value: text };
    case "bytes":
      return { type: "bytes", value: new Uint8Array(plain) };
    case "int":
    case "int64":
      if (!/^[+-]?\d+$/.test(text)) throw new SopsValueError(`is typed ${type} but does not hold an integer`);
      return { type: "int", value: BigInt(text) };
    case "float": {
      const n = goParseFloat(text);
      if (n === undefined) throw new SopsValueError("is typed float but does not hold a number");
      return { type: "float", value: n };
    }
    case "bool": {
      // Go's strconv.ParseBool.
      if (["1", "t", "T", "TRUE", "true", "True"].includes(text)) return { type: "bool", value: true };
      if (["0", "f", "F", "FALSE", "false", "False"].includes(text)) return { type: "bool", value: false };
      throw new SopsValueError("is typed bool but does not hold a boolean");
    }
    default:
      throw new SopsValueError(`has an unknown type "${type}"`);
  }
}

/** Go's `strconv.ParseFloat` for the texts sops writes (decimal, exponent, `Inf`, `NaN`); `undefined` otherwise. */
function goParseFloat(text: string): number | undefined {
  if (/^[+-]?(inf|infinity)$/i.test(text)) return text.startsWith("-") ? -Infinity : Infinity;
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}
