/**
 * The secrets file of an app directory, as the loader sees it: which file (by priority), whether
 * it is a well-formed SOPS file, which top-level keys it adds to `env`, and a digest per key for
 * change detection. Nothing is decrypted here (keys are not needed to load specs): the digests are
 * SHA-256 of the *encrypted* values, which are public in git already, so they reveal nothing.
 */
import { createHash } from "node:crypto";
import { lstatSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { z } from "zod";
import { refProblems } from "./env-refs.ts";
import type { SopsFile } from "./sops.ts";
import type { SopsNode } from "./sops-tree.ts";

/** Secrets file names, first found wins: YAML, then JSON, then dotenv (SPEC section 12). */
export const SECRETS_FILE_NAMES = [
  "secrets.sops.yaml",
  "secrets.sops.yml",
  "secrets.sops.json",
  "secrets.sops.env",
] as const;

/** Larger secrets files are refused unread, like spec files. */
const MAX_BYTES = 1 << 20;

/**
 * What a spec carries about its secrets: never a value. `file` is the secrets file (repo-relative),
 * `sha256` its content hash, `keys` a digest per env key whose value is secret: `sops:<sha256 of
 * the encrypted value>` for keys of the file, `hmac-sha256:<hex>` (keyed, see `resolve.ts`) for
 * host references, stamped at each tick.
 */
export const AppSecrets = z.strictObject({
  file: z.string().optional(),
  sha256: z.string().optional(),
  keys: z.record(z.string(), z.string()),
});
/** See {@link AppSecrets}. */
export type AppSecrets = z.infer<typeof AppSecrets>;

/** One problem found, on a file relative to the loader's root. */
export interface SecretsIssue {
  file: string;
  line?: number;
  path?: string;
  message: string;
}

/** What {@link secretsOfApp} found. */
export interface AppSecretsResult<S> {
  /** The spec with `secrets` attached (the same object when the app has neither a secrets file nor references). */
  spec: S;
  errors: SecretsIssue[];
  warnings: SecretsIssue[];
}

/** A secrets file next to a spec file, wherever it is stored (a directory on disk, a git tree). */
export interface SecretsFileRef {
  /** Its name (`secrets.sops.yaml`). */
  name: string;
  /** Its path as issues name it and the runtime finds it (relative to the repository). */
  file: string;
  /** It is a symbolic link: an error, never followed. */
  link: boolean;
  read(): Uint8Array | Promise<Uint8Array>;
}

/**
 * The secrets files of the app directory `dir` on disk, in priority order ({@link SECRETS_FILE_NAMES});
 * `root` makes names repo-relative. `entries`, the directory's files and links when the caller
 * listed it already, saves a look-up per name.
 */
export function secretsFilesOnDisk(
  dir: string,
  root: string,
  entries?: ReadonlyMap<string, { isFile(): boolean; isSymbolicLink(): boolean }>,
): SecretsFileRef[] {
  const out: SecretsFileRef[] = [];
  for (const name of SECRETS_FILE_NAMES) {
    const path = join(dir, name);
    let info;
    try {
      info = entries ? entries.get(name) : lstatSync(path);
    } catch {
      continue;
    }
    if (!info || (!info.isFile() && !info.isSymbolicLink())) continue;
    out.push({ name, file: relative(root, path) || name, link: info.isSymbolicLink(), read: () => readFileSync(path) });
  }
  return out;
}

/**
 * Checks the secrets file of an app (the first of `found`, which are in priority order) and the
 * env references of `spec`: a malformed file, a key both in `env` and in the file, or a malformed
 * reference is an error (the app is then left as it runs); another secrets file is a warning.
 * `specFile` is the spec's own path (for reference errors). Returns the spec with `secrets`.
 */
export async function secretsOfApp<S extends { env: Record<string, unknown>; secrets?: AppSecrets }>(
  found: readonly SecretsFileRef[],
  spec: S,
  options: { specFile: string },
): Promise<AppSecretsResult<S>> {
  const errors: SecretsIssue[] = refProblems(spec.env).map((p) => ({ file: options.specFile, ...p }));
  const warnings: SecretsIssue[] = [];
  const [first, ...ignored] = found;
  if (!first) return { spec, errors, warnings };
  const { file } = first;
  for (const other of ignored)
    warnings.push({
      file: other.file,
      message: `is ignored: ${first.name} takes priority (${SECRETS_FILE_NAMES.join(", ")}); merge them into one file`,
    });
  if (first.link) {
    errors.push({
      file,
      message: "is a symbolic link: bc-gitops reads only regular files of the repository; commit the file itself",
    });
    return { spec, errors, warnings };
  }
  // Loaded only for an app that has a secrets file: loading specs need not load SOPS and age.
  const sops = await import("./sops.ts");
  const bytes = await first.read();
  if (bytes.length > MAX_BYTES) {
    errors.push({ file, message: "is larger than 1 MB; a secrets file holds a few values" });
    return { spec, errors, warnings };
  }
  let parsed;
  try {
    parsed = sops.parseSopsFile(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      sops.formatOfFile(first.name)!,
    );
  } catch (error) {
    const line = error instanceof sops.SopsError ? error.line : undefined;
    const message = error instanceof TypeError ? "is not UTF-8 text" : (error as Error).message;
    errors.push({ file, ...(line ? { line } : {}), message });
    return { spec, errors, warnings };
  }
  for (const message of await sops.structureProblems(parsed)) errors.push({ file, message });
  for (const [key] of parsed.tree.entries) {
    if (Object.hasOwn(spec.env, key))
      errors.push({
        file,
        path: key,
        message: `${key} is set both here and in ${options.specFile} env; remove one of them (a secret never silently shadows a setting, nor the other way round)`,
      });
  }
  const secrets: AppSecrets = {
    file,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    keys: keyDigests(parsed),
  };
  return { spec: { ...spec, secrets }, errors, warnings };
}

/** The digest of each top-level key of a parsed secrets file: `sops:` and the SHA-256 of its encrypted value. */
export function keyDigests(parsed: SopsFile): Record<string, string> {
  return Object.fromEntries(
    parsed.tree.entries.map(([key, node]) => [
      key,
      `sops:${createHash("sha256").update(nodeText(node)).digest("hex")}`,
    ]),
  );
}

/** A canonical text of an encrypted subtree (its digest input): types and order included. */
function nodeText(node: SopsNode): string {
  switch (node.type) {
    case "map":
      return `{${node.entries.map(([k, v]) => `${JSON.stringify(k)}:${nodeText(v)}`).join(",")}}`;
    case "list":
      return `[${node.items.map(nodeText).join(",")}]`;
    case "null":
      return "null";
    case "bytes":
      return `bytes:${Buffer.from(node.value).toString("base64")}`;
    default:
      return `${node.type}:${String(node.value)}`;
  }
}

/**
 * A remembered spec (state.json, the journal) apart from its `secrets`, which the spec schema does
 * not know: validate `spec` with it, then put `secrets` back (`undefined` when absent or malformed,
 * which only costs a reconfigure).
 */
export function splitSecrets(raw: unknown): { spec: unknown; secrets: AppSecrets | undefined } {
  if (raw === null || typeof raw !== "object" || !("secrets" in raw)) return { spec: raw, secrets: undefined };
  const { secrets, ...spec } = raw as Record<string, unknown>;
  const parsed = AppSecrets.safeParse(secrets);
  return { spec, secrets: parsed.success ? parsed.data : undefined };
}
