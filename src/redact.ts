/**
 * Credential redaction. Every string that may carry a repository URL or a secret passes through
 * {@link redact} before it reaches a log line, an error, status or metrics.
 */

// scheme://user:password@host or scheme://token@host -> scheme://***@host. Up to the *last* "@" of
// the authority (which ends at "/", "?" or "#"): a password may hold an unencoded "@".
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]+@/gi;

/** Extra secrets (tokens, webhook secrets) registered by the agent at start-up. */
const registered = new Set<string>();
/** {@link registered}, longest first: a secret that contains another is hidden whole. */
let longestFirst: string[] = [];

/** Registers a literal secret that {@link redact} must hide wherever it appears. */
export function registerSecret(secret: string | undefined): void {
  if (!secret || secret.length < 4 || registered.has(secret)) return;
  registered.add(secret);
  longestFirst = [...registered].sort((a, b) => b.length - a.length);
}

/**
 * Registers the password of a `scheme://user:password@host/…` URL (everything between the first
 * ":" of the user info and the last "@" of the authority), as written and percent-decoded, so that
 * {@link redact} hides it even where git prints it without its URL.
 */
export function registerUrlCredentials(url: string): void {
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/([^\s/?#]+)@/i.exec(url)?.[1];
  const colon = userinfo?.indexOf(":") ?? -1;
  if (userinfo === undefined || colon < 0) return;
  const password = userinfo.slice(colon + 1);
  registerSecret(password);
  try {
    registerSecret(decodeURIComponent(password));
  } catch {
    // Not valid percent-encoding: git passes it on as written, which is registered already.
  }
}

/** Hides URL credentials and registered secrets in `text`. */
export function redact(text: string): string {
  let out = text.replace(URL_CREDENTIALS, "$1***@");
  for (const secret of longestFirst) {
    if (out.includes(secret)) out = out.split(secret).join("***");
  }
  return out;
}

/**
 * Env keys whose values are shown as `"***"` in status and the API: a key that contains, in any
 * case, `secret`, `token`, `passw` (password, passwd), `passphrase`, `pass` not followed by a
 * letter (`DB_PASS`, `PASS_FILE`), `pwd`, `key`, `credential`, `creds`, `auth` (auth_header,
 * authorization, oauth), `session`, `cookie`, `private` or `dsn`. Masking a harmless value
 * (`AUTHOR`, `SESSION_TIMEOUT`) costs a line of visibility; showing a secret costs the secret.
 */
export const SECRET_KEY =
  /secret|token|passw|passphrase|pass(?![a-z])|pwd|key|credential|creds|auth|session|cookie|private|dsn/i;

/**
 * Env values that are secrets whatever their key: an HTTP credential (`Bearer …` anywhere,
 * `Basic …` or `Token …` at the start) or a URL with user info (`scheme://user:pass@host`).
 */
export const SECRET_VALUE = /\bbearer\s+\S|^\s*(?:basic|token)\s+\S|[a-z][a-z0-9+.-]*:\/\/[^\s/?#]*@/i;

/**
 * The values an env shows as `"***"` (see {@link SECRET_KEY} and {@link SECRET_VALUE}), as text, at
 * any depth (at most 10 levels), so they can be hidden wherever they appear (an app's log lines).
 * Values shorter than 4 characters are left out: hiding every "1" would hide nothing useful.
 */
export function secretValues(env: Record<string, unknown> | undefined): string[] {
  const found = new Set<string>();
  const visit = (value: unknown, secret: boolean, depth: number) => {
    if (depth > 10 || value === null || value === undefined) return;
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) visit(v, secret || SECRET_KEY.test(k), depth + 1);
      return;
    }
    const text = String(value);
    if ((secret || SECRET_VALUE.test(text)) && text.length >= 4) found.add(text);
  };
  visit(env ?? {}, false, 0);
  return [...found];
}

/** Deepest nesting {@link redactValue} copies (spec files may nest at most 1000 levels). */
export const MAX_SHOWN_DEPTH = 1024;

/** Options of {@link redactValue}. */
export interface RedactValueOptions {
  /** Env rules too: values of {@link SECRET_KEY} keys and {@link SECRET_VALUE} values become `"***"`, at any depth. */
  secrets?: boolean;
}

type Slot = Record<string | number, unknown>;

/**
 * A JSON-ready copy of `value` with every string through {@link redact} (and the env rules with
 * `secrets`). Iterative, so no value can overflow the call stack: containers nested deeper than
 * {@link MAX_SHOWN_DEPTH} become a `"[nested deeper than … levels: not shown]"` note, which keeps the
 * copy shallow enough for `JSON.stringify` on every runtime (Node's overflows near 4000 levels).
 * Key order is kept; `toJSON()` is honoured as `JSON.stringify` would.
 */
export function redactValue(value: unknown, options: RedactValueOptions = {}): unknown {
  const root: Slot = {};
  const todo: [unknown, Slot, string | number, number][] = [[value, root, "value", 0]];
  while (todo.length > 0) {
    const [input, parent, key, depth] = todo.pop()!;
    let v = input;
    if (v !== null && typeof v === "object" && typeof (v as { toJSON?: unknown }).toJSON === "function")
      v = (v as { toJSON(): unknown }).toJSON();
    if (typeof v === "string") {
      parent[key] = options.secrets && SECRET_VALUE.test(v) ? "***" : redact(v);
    } else if (v === null || typeof v !== "object") {
      parent[key] = v;
    } else if (depth >= MAX_SHOWN_DEPTH) {
      parent[key] = `[nested deeper than ${MAX_SHOWN_DEPTH} levels: not shown]`;
    } else if (Array.isArray(v)) {
      const copy: unknown[] = new Array(v.length);
      parent[key] = copy;
      for (let i = v.length - 1; i >= 0; i--) todo.push([v[i], copy as unknown as Slot, i, depth + 1]);
    } else {
      const copy: Slot = {};
      parent[key] = copy;
      const entries = Object.entries(v);
      for (const [k] of entries) {
        // Reserve the key now so the copy keeps the original order; "__proto__" as data, not a prototype.
        Object.defineProperty(copy, k, {
          value: options.secrets && SECRET_KEY.test(k) ? "***" : undefined,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, item] = entries[i]!;
        if (!(options.secrets && SECRET_KEY.test(k))) todo.push([item, copy, k, depth + 1]);
      }
    }
  }
  return root.value;
}
