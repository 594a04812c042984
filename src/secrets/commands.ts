/**
 * What `bc-gitops secrets encrypt|decrypt` and `validate` do with secrets files, for a team without
 * the `sops` tool: the CLI prints the results (this module never prints). Files written here
 * decrypt with `sops decrypt`, and files `sops` wrote decrypt here.
 */
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { checkRecipient, loadIdentities, type AgeIdentity } from "./age-keys.ts";
import { decryptSopsFile, encryptSops, formatOfFile, parseSopsFile, SopsError, type SopsFormat } from "./sops.ts";
import { emitPlainText } from "./sops-formats.ts";
import type { CryptRules } from "./sops-tree.ts";

/** A mistake the user can fix, printed as one line. */
export class SecretsCommandError extends Error {
  override name = "SecretsCommandError";
}

/** Options of {@link encryptFile}. */
export interface EncryptFileOptions extends CryptRules {
  /** age recipients (`age1…`); each entry may hold several, comma-separated (as `sops --age`). */
  age: readonly string[];
  /** yaml, json or dotenv; default from the file name. */
  inputType?: string | undefined;
  macOnlyEncrypted?: boolean | undefined;
}

/** Encrypts the plaintext `file` for the recipients; returns the SOPS file's text. */
export async function encryptFile(file: string, options: EncryptFileOptions): Promise<string> {
  const format = formatFor(file, options.inputType);
  const recipients = options.age
    .flatMap((r) => r.split(","))
    .map((r) => r.trim())
    .filter(Boolean);
  if (recipients.length === 0)
    throw new SecretsCommandError("no recipient: pass --age age1… (age-keygen -y KEYFILE prints a key's recipient)");
  for (const recipient of recipients) await checkRecipient(recipient);
  const rules: CryptRules = {};
  for (const key of ["unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex"] as const)
    if (options[key]) rules[key] = options[key];
  try {
    return await encryptSops(await read(file), format, recipients, {
      rules,
      macOnlyEncrypted: options.macOnlyEncrypted ?? false,
    });
  } catch (error) {
    throw asCommandError(file, error);
  }
}

/** Decrypts the SOPS `file` (MAC checked) and returns its plaintext in the same format. */
export async function decryptFile(
  file: string,
  options: { ageKeyFile?: string | undefined; inputType?: string | undefined } = {},
): Promise<string> {
  const format = formatFor(file, options.inputType);
  try {
    const parsed = parseSopsFile(await read(file), format);
    const plain = await decryptSopsFile(parsed, await loadIdentities({ ageKeyFile: options.ageKeyFile }));
    return emitPlainText(plain, format);
  } catch (error) {
    throw asCommandError(file, error);
  }
}

/**
 * `validate`'s check of the secrets files the loader found (structure is checked by the loader):
 * each one is decrypted with this host's keys when it has any, so a tampered value or MAC is an
 * error; a file no local key opens is a warning (the MAC cannot be checked here). Values never leave
 * this function.
 */
export async function checkSecretsFiles(
  files: readonly string[],
  root: string,
  options: { ageKeyFile?: string | undefined; identities?: readonly AgeIdentity[] } = {},
): Promise<{ errors: { file: string; message: string }[]; warnings: { file: string; message: string }[] }> {
  const errors: { file: string; message: string }[] = [];
  const warnings: { file: string; message: string }[] = [];
  if (files.length === 0) return { errors, warnings };
  let identities: readonly AgeIdentity[];
  try {
    identities = options.identities ?? (await loadIdentities({ ageKeyFile: options.ageKeyFile }));
  } catch (error) {
    return { errors: [{ file: options.ageKeyFile ?? "age keys", message: (error as Error).message }], warnings };
  }
  if (identities.length === 0) return { errors, warnings };
  for (const file of files) {
    try {
      const parsed = parseSopsFile(await readFile(join(root, file), "utf8"), formatOfFile(file)!);
      await decryptSopsFile(parsed, identities);
    } catch (error) {
      if (error instanceof SopsError && error.kind === "no-key")
        warnings.push({ file, message: `the MAC is not checked: ${error.message}` });
      else errors.push({ file, message: (error as Error).message });
    }
  }
  return { errors, warnings };
}

function formatFor(file: string, inputType: string | undefined): SopsFormat {
  if (inputType !== undefined) {
    if (inputType === "yaml" || inputType === "json" || inputType === "dotenv") return inputType;
    throw new SecretsCommandError(`--input-type: expected yaml, json or dotenv, got ${JSON.stringify(inputType)}`);
  }
  const format = formatOfFile(basename(file));
  if (!format)
    throw new SecretsCommandError(
      `${file}: cannot tell its format from the name; name it .yaml, .json or .env, or pass --input-type yaml|json|dotenv`,
    );
  return format;
}

async function read(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new SecretsCommandError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

function asCommandError(file: string, error: unknown): Error {
  if (error instanceof SecretsCommandError) return error;
  const line = error instanceof SopsError && error.line ? `:${error.line}` : "";
  return new SecretsCommandError(`${file}${line}: ${(error as Error).message}`);
}
