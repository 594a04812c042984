/** `bc-gitops secrets encrypt|decrypt FILE`: SOPS secrets files without the sops tool. */
import type { CAC } from "cac";
import { decryptFile, encryptFile } from "../secrets/commands.ts";
import { UsageError } from "./output.ts";

/** Registers `secrets`: encrypt prints the SOPS file on stdout; decrypt prints plaintext, to a terminal only unless --force. */
export function registerSecretsCommand(cli: CAC): void {
  cli
    .command(
      "secrets <action> <file>",
      "SOPS secrets files without the sops tool: `secrets encrypt --age age1… FILE` (on stdout), `secrets decrypt FILE`",
    )
    .option("--age <recipient>", "encrypt: an age recipient (age1…); repeat it or comma-separate several")
    .option("--encrypted-regex <regex>", "encrypt: only values under keys matching it")
    .option("--unencrypted-regex <regex>", "encrypt: not the values under keys matching it")
    .option("--encrypted-suffix <suffix>", "encrypt: only values under keys ending with it")
    .option("--unencrypted-suffix <suffix>", "encrypt: not the values under keys ending with it (default _unencrypted)")
    .option("--mac-only-encrypted", "encrypt: the MAC covers encrypted values only")
    .option("--input-type <type>", "yaml, json or dotenv (default: from the file name)")
    .option("--age-key-file <file>", "decrypt: age identities (also SOPS_AGE_KEY_FILE, SOPS_AGE_KEY)")
    .option("--force", "decrypt: print even when stdout is not a terminal")
    .action(secrets);
}

async function secrets(action: string, file: string, options: Record<string, unknown>): Promise<number> {
  const text = (key: string) => (options[key] === undefined ? undefined : String(options[key]));
  if (action === "encrypt") {
    const age = options.age === undefined ? [] : [options.age].flat().map(String);
    process.stdout.write(
      await encryptFile(file, {
        age,
        inputType: text("inputType"),
        encrypted_regex: text("encryptedRegex"),
        unencrypted_regex: text("unencryptedRegex"),
        encrypted_suffix: text("encryptedSuffix"),
        unencrypted_suffix: text("unencryptedSuffix"),
        macOnlyEncrypted: options.macOnlyEncrypted === true,
      }),
    );
    return 0;
  }
  if (action === "decrypt") {
    // Plaintext secrets are for a person at a terminal, not for a pipe or a log file by accident.
    if (!process.stdout.isTTY && options.force !== true)
      throw new UsageError(
        "refusing to print decrypted secrets to something that is not a terminal (a pipe, a file, a CI log); pass --force if that is really what you want",
      );
    process.stdout.write(await decryptFile(file, { ageKeyFile: text("ageKeyFile"), inputType: text("inputType") }));
    return 0;
  }
  throw new UsageError(
    `unknown secrets action "${action}": use secrets encrypt --age age1… FILE, or secrets decrypt FILE`,
  );
}
