/**
 * Host-local references in an app's `env`: a top-level value `{ from_file: "/abs/path" }` or
 * `{ from_env: "HOST_VARIABLE" }` is replaced, on the host, at deploy and reconfigure, by the file's
 * content (one trailing newline dropped) or the variable's value. The spec, state.json and every
 * view keep the reference as written.
 */
import { readFile, stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { GitopsError } from "../errors.ts";

/**
 * Environment variables that hold or point at age keys: they are the agent's, never an app's.
 * Here rather than in age-keys.ts, so that loading specs does not load the age implementation.
 */
export const AGE_KEY_VARIABLES = [
  "SOPS_AGE_KEY",
  "SOPS_AGE_KEY_FILE",
  "SOPS_AGE_KEY_CMD",
  "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
] as const;

/** A reference as written in a spec. */
export type EnvRef = { from_file: string } | { from_env: string };

/** Referenced files larger than this are refused (a secret is small; a wrong path to a big file is a mistake). */
const MAX_FILE_BYTES = 1 << 20;

/** Whether `value` is meant as a reference: a mapping with a `from_file` or `from_env` key. */
export function looksLikeRef(value: unknown): value is Record<string, unknown> {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    (Object.hasOwn(value, "from_file") || Object.hasOwn(value, "from_env"))
  );
}

/** The references of an env, by key (only top-level keys are references). Assumes {@link refProblems} found none. */
export function refsOf(env: Readonly<Record<string, unknown>>): Record<string, EnvRef> {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => looksLikeRef(v))) as Record<string, EnvRef>;
}

/** Whether `env` holds a host reference (no allocation: asked for every app on every tick). */
export function hasRefs(env: Readonly<Record<string, unknown>>): boolean {
  for (const key in env) if (Object.hasOwn(env, key) && looksLikeRef(env[key])) return true;
  return false;
}

/**
 * What is wrong with the references of an env, as `{ path, message }` (path `env.KEY`): extra keys,
 * a non-string or relative `from_file`, a `from_env` that is not a variable name or that names the
 * agent's own settings (`BC_GITOPS_*`) or age keys (`SOPS_AGE_KEY*`).
 */
export function refProblems(env: Readonly<Record<string, unknown>>): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  for (const [key, value] of Object.entries(env)) {
    if (!looksLikeRef(value)) continue;
    const path = `env.${key}`;
    const keys = Object.keys(value);
    if (keys.length !== 1) {
      out.push({
        path,
        message: `a reference holds exactly one of from_file or from_env, got ${keys.join(", ")}`,
      });
      continue;
    }
    if ("from_file" in value) {
      const file = value.from_file;
      if (typeof file !== "string" || !isAbsolute(file))
        out.push({
          path: `${path}.from_file`,
          message: `expected an absolute path on the host, like /etc/bc-gitops/secrets/${key.toLowerCase()}, got ${JSON.stringify(file)}`,
        });
    } else {
      const name = value.from_env;
      if (typeof name !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        out.push({
          path: `${path}.from_env`,
          message: `expected an environment variable name like HOST_API_KEY, got ${JSON.stringify(name)}`,
        });
      else if (name.startsWith("BC_GITOPS_") || (AGE_KEY_VARIABLES as readonly string[]).includes(name))
        out.push({
          path: `${path}.from_env`,
          message: `${name} is the agent's own setting and is never given to an app; export the value under another name`,
        });
    }
  }
  return out;
}

/**
 * Reads one reference on this host. Throws a {@link GitopsError} (`E_SECRETS`, retried with backoff:
 * the operator may add the file or variable) naming the key and where it looked, never a value.
 */
export async function readRef(
  key: string,
  ref: EnvRef,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<string> {
  if ("from_env" in ref) {
    const value = env[ref.from_env];
    if (value === undefined)
      throw secretsError(
        `env.${key}: the environment variable ${ref.from_env} is not set in the agent's environment; set it (e.g. in the systemd EnvironmentFile) and reconcile`,
      );
    return value;
  }
  const path = ref.from_file;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw secretsError(`env.${key}: ${path} is not a regular file`);
    if (info.size > MAX_FILE_BYTES)
      throw secretsError(`env.${key}: ${path} is larger than 1 MB; a referenced secret file holds one value`);
    const text = await readFile(path, "utf8");
    return text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text;
  } catch (error) {
    if (error instanceof GitopsError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw secretsError(
      `env.${key}: cannot read ${path} (${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied for the agent's user" : (code ?? "unreadable")}); create it on this host and reconcile`,
    );
  }
}

function secretsError(message: string): GitopsError {
  return new GitopsError(message, { code: "E_SECRETS", retry: "backoff" });
}
