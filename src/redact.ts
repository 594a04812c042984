/**
 * Credential redaction. Every string that may carry a repository URL or a secret passes through
 * {@link redact} before it reaches a log line, an error, status or metrics.
 */

// scheme://user:password@host or scheme://token@host -> scheme://***@host. Up to the *last* "@" of
// the authority (which ends at "/", "?" or "#"): a password may hold an unencoded "@".
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]+@/gi;

/** Extra secrets (tokens, webhook secrets) registered by the agent at start-up. */
const registered = new Set<string>();

/** Registers a literal secret that {@link redact} must hide wherever it appears. */
export function registerSecret(secret: string | undefined): void {
  if (secret && secret.length >= 4) registered.add(secret);
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
  for (const secret of registered) {
    if (out.includes(secret)) out = out.split(secret).join("***");
  }
  return out;
}

/** Env keys whose values are shown as `"***"` in status and the API. */
export const SECRET_KEY = /secret|token|password|key/i;
