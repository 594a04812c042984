/**
 * Credential redaction. Every string that may carry a repository URL or a secret passes through
 * {@link redact} before it reaches a log line, an error, status or metrics.
 */

// scheme://user:password@host or scheme://token@host -> scheme://***@host
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi;

/** Extra secrets (tokens, webhook secrets) registered by the agent at start-up. */
const registered = new Set<string>();

/** Registers a literal secret that {@link redact} must hide wherever it appears. */
export function registerSecret(secret: string | undefined): void {
  if (secret && secret.length >= 4) registered.add(secret);
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
