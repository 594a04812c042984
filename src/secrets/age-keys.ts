/**
 * age identities (private keys) of this host, read where sops reads them, and the unwrapping of a
 * SOPS data key from a file's `sops.age` recipient stanzas. The crypto is the `age-encryption`
 * package (the reference TypeScript implementation of age); nothing here writes age by hand.
 *
 * Where identities come from, all of them together (several keys per source allowed): config
 * `age_key_file`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY` (the keys themselves), and sops's default file
 * `$XDG_CONFIG_HOME/sops/age/keys.txt` (else `~/.config/sops/age/keys.txt`) when it exists. A key
 * file holds one `AGE-SECRET-KEY-1…` per line; empty lines and `#` comments are skipped (what
 * `age-keygen` writes). No key is ever part of an error message.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
/**
 * The age implementation, loaded on first use: an agent whose repository holds no secrets file
 * never loads it (about 10 MB of memory on Bun).
 */
const age = () => import("age-encryption");

/** One identity and the recipient (public key) it decrypts for. */
export interface AgeIdentity {
  /** The private key, `AGE-SECRET-KEY-1…` (or `AGE-SECRET-KEY-PQ-1…`). Never log it. */
  readonly identity: string;
  /** Its public key, `age1…`. */
  readonly recipient: string;
  /** Where it was read (`age_key_file /etc/bc-gitops/age.txt`, `SOPS_AGE_KEY`), for messages. */
  readonly source: string;
}

export { AGE_KEY_VARIABLES } from "./env-refs.ts";

/** A key file or variable that cannot be used; names the source and line, never the key. */
export class AgeKeyError extends Error {
  override name = "AgeKeyError";
}

/** The identities in `text` (a key file's content or `SOPS_AGE_KEY`). Throws an {@link AgeKeyError} naming `source` and the line. */
export async function parseIdentities(text: string, source: string): Promise<AgeIdentity[]> {
  const out: AgeIdentity[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `${source}${lines.length > 1 ? ` line ${i + 1}` : ""}`;
    if (!/^AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]+$/.test(line))
      throw new AgeKeyError(
        `${where}: expected an age identity (AGE-SECRET-KEY-1…, as age-keygen writes), found something else`,
      );
    const { identityToRecipient } = await age();
    let recipient: string;
    try {
      recipient = await identityToRecipient(line);
    } catch {
      throw new AgeKeyError(`${where}: not a valid age identity (bad checksum or length)`);
    }
    out.push({ identity: line, recipient, source });
  }
  return out;
}

/** Where {@link loadIdentities} looks. */
export interface IdentitySources {
  /** Config `age_key_file`. */
  ageKeyFile?: string | undefined;
  /** The environment (`SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, `XDG_CONFIG_HOME`); default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Read sops's default key file too (`~/.config/sops/age/keys.txt`) when it exists; default true. */
  sopsDefault?: boolean;
}

/**
 * Every identity this host has, from all sources. A configured file that cannot be read or holds
 * a malformed line is an error (naming it); sops's default file is only read when it exists.
 */
export async function loadIdentities(sources: IdentitySources = {}): Promise<AgeIdentity[]> {
  const env = sources.env ?? process.env;
  const out: AgeIdentity[] = [];
  const fromFile = async (path: string, label: string, optional = false) => {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (optional && code === "ENOENT") return;
      throw new AgeKeyError(`cannot read ${label} ${path}: ${code ?? (error as Error).message}`);
    }
    out.push(...(await parseIdentities(text, `${label} ${path}`)));
  };
  if (sources.ageKeyFile) await fromFile(sources.ageKeyFile, "age_key_file");
  if (env.SOPS_AGE_KEY_FILE) await fromFile(env.SOPS_AGE_KEY_FILE, "SOPS_AGE_KEY_FILE");
  if (env.SOPS_AGE_KEY) out.push(...(await parseIdentities(env.SOPS_AGE_KEY, "SOPS_AGE_KEY")));
  if (sources.sopsDefault ?? true) {
    const home = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
    await fromFile(join(home, "sops", "age", "keys.txt"), "sops key file", true);
  }
  const seen = new Set<string>();
  return out.filter((id) => !seen.has(id.identity) && seen.add(id.identity));
}

/** A data key that none of this host's identities can unwrap. */
export class NoAgeKeyError extends Error {
  override name = "NoAgeKeyError";
}

/**
 * The SOPS data key, unwrapped from the first `sops.age` stanza one of `identities` opens (an
 * identity is tried first on the stanza of its own recipient, then on the others). Throws a
 * {@link NoAgeKeyError} that names the file's recipients and this host's, so the fix is obvious.
 */
export async function unwrapDataKey(
  stanzas: readonly { recipient: string; enc: string }[],
  identities: readonly AgeIdentity[],
): Promise<Uint8Array> {
  const mine = new Set(identities.map((id) => id.recipient));
  const ordered = [...stanzas].sort(
    (a, b) => Number(mine.has(b.recipient.trim())) - Number(mine.has(a.recipient.trim())),
  );
  const problems: string[] = [];
  if (identities.length > 0) {
    const { Decrypter, armor } = await age();
    const decrypter = new Decrypter();
    for (const id of identities) decrypter.addIdentity(id.identity);
    for (const stanza of ordered) {
      try {
        return await decrypter.decrypt(armor.decode(stanza.enc), "uint8array");
      } catch (error) {
        if (mine.has(stanza.recipient.trim()))
          problems.push(`the stanza of ${stanza.recipient.trim()} does not decrypt: ${(error as Error).message}`);
      }
    }
  }
  const theirs = stanzas.map((s) => s.recipient.trim()).join(", ") || "none";
  const ours = identities.length ? [...mine].join(", ") : "none (set age_key_file, SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)";
  throw new NoAgeKeyError(
    `no age key of this host can decrypt it: the file is encrypted for ${theirs}; this host has keys for ${ours}${problems.length ? `; ${problems.join("; ")}` : ""}`,
  );
}

/**
 * Wraps `dataKey` for one recipient as sops stores it: an age file holding the 32 bytes, ASCII
 * armored (`-----BEGIN AGE ENCRYPTED FILE-----`, with a final newline).
 */
export async function wrapDataKey(dataKey: Uint8Array, recipient: string): Promise<string> {
  const { Encrypter, armor } = await age();
  const encrypter = new Encrypter();
  encrypter.addRecipient(recipient);
  return armor.encode(await encrypter.encrypt(dataKey));
}

/** Whether `recipient` is an age public key this package can encrypt to (`age1…`), checked by trying. */
export async function checkRecipient(recipient: string): Promise<void> {
  try {
    new (await age()).Encrypter().addRecipient(recipient);
    await wrapDataKey(new Uint8Array(32), recipient);
  } catch {
    throw new AgeKeyError(
      `${JSON.stringify(recipient)} is not an age recipient: expected a public key like age1… (age-keygen -y KEYFILE prints it)`,
    );
  }
}

/**
 * Checks config `age_key_file` at agent start: readable, well-formed, at least one identity. Throws
 * an {@link AgeKeyError} naming the file (never a key), so a typo stops the agent at once rather
 * than failing every app with secrets later.
 */
export async function checkAgeKeyFile(path: string): Promise<void> {
  const identities = await loadIdentities({ ageKeyFile: path, env: {}, sopsDefault: false });
  if (identities.length === 0)
    throw new AgeKeyError(
      `age_key_file ${path} holds no age identity (AGE-SECRET-KEY-1…); create one with age-keygen -o ${path}`,
    );
}
