/**
 * An app's `env` as environment variables for a child process (SPEC section 3, `process`
 * isolation): `port` -> `PORT`, `pool_size` -> `POOL_SIZE`, nested values as JSON, plus the whole
 * env as JSON in `BC_GITOPS_ENV`.
 */

/**
 * The variable name of an env key: camelCase split into words, anything but letters and digits
 * turned into `_`, upper-cased (`port` -> `PORT`, `pool_size` -> `POOL_SIZE`, `poolSize` ->
 * `POOL_SIZE`, `db.url` -> `DB_URL`); a leading digit gets a `_` in front. `undefined` for a key
 * with no letter or digit.
 */
export function envName(key: string): string | undefined {
  const name = key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .toUpperCase();
  if (name === "") return undefined;
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/** The text of one value: strings as they are, numbers and booleans printed, objects and lists as JSON. */
export function envValue(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  return JSON.stringify(value);
}

/**
 * The variables an app's `env` exports: one per top-level key (see {@link envName} and
 * {@link envValue}; `null` values are not exported; when two keys map to one name the later key
 * wins) and `BC_GITOPS_ENV` with the whole env as JSON.
 */
export function exportEnv(env: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    const name = envName(key);
    const text = envValue(value);
    if (name !== undefined && text !== undefined) out[name] = text;
  }
  out.BC_GITOPS_ENV = JSON.stringify(env);
  return out;
}
