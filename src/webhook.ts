/**
 * Push webhooks (SPEC section 8, `POST /webhook`): signature verification over the raw body bytes
 * and push-event parsing for GitHub, GitLab, Gitea/Forgejo/Gogs and a generic HMAC sender.
 *
 * Accepted proofs, the first header present decides:
 * - `X-Hub-Signature-256: sha256=<hex>`: HMAC-SHA256 of the body with the secret (GitHub, Gitea,
 *   Forgejo and Gogs all send it);
 * - `X-Signature-256: sha256=<hex>`: the same HMAC, for any other sender (curl, CI jobs);
 * - `X-Gitea-Signature`, `X-Forgejo-Signature`, `X-Gogs-Signature: <hex>`: the same HMAC, bare hex;
 * - `X-Gitlab-Token: <secret>`: GitLab sends the secret itself.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** Who sent a webhook, from its headers. */
export type WebhookProvider = "github" | "gitlab" | "gitea" | "generic";

/** HMAC signature headers, in the order they are checked. */
export const SIGNATURE_HEADERS = [
  "x-hub-signature-256",
  "x-signature-256",
  "x-gitea-signature",
  "x-forgejo-signature",
  "x-gogs-signature",
] as const;

/** The outcome of {@link verifyWebhook}. */
export type WebhookVerification =
  { ok: true; provider: WebhookProvider; header: string } | { ok: false; reason: string };

/** What a verified webhook asks for. */
export type WebhookEvent =
  | { kind: "ping"; provider: WebhookProvider }
  /** A push; `ref` is absent when the sender did not say (a generic "check now"). */
  | { kind: "push"; provider: WebhookProvider; ref?: string; commit?: string }
  | { kind: "ignored"; provider: WebhookProvider; reason: string }
  | { kind: "invalid"; provider: WebhookProvider; reason: string };

/**
 * Compares two secrets in time independent of where they differ: both are hashed first, so
 * `timingSafeEqual` always sees equal-length inputs and the length of the secret does not leak.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** The `X-Hub-Signature-256` / `X-Signature-256` value for `body`: `sha256=<hex HMAC-SHA256>`. */
export function signWebhook(body: Uint8Array | string, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** The sender, from its event or token headers. */
export function webhookProvider(headers: Headers): WebhookProvider {
  if (headers.has("x-github-event")) return "github";
  if (headers.has("x-gitea-event") || headers.has("x-forgejo-event") || headers.has("x-gogs-event")) return "gitea";
  if (headers.has("x-gitlab-event") || headers.has("x-gitlab-token")) return "gitlab";
  return "generic";
}

/**
 * Checks the proof a webhook carries against `secret`, over the raw `body` bytes (so an edited
 * body fails even if it still parses). Constant-time comparisons; never throws.
 */
export function verifyWebhook(headers: Headers, body: Uint8Array, secret: string): WebhookVerification {
  const provider = webhookProvider(headers);
  for (const header of SIGNATURE_HEADERS) {
    const given = headers.get(header);
    if (given === null) continue;
    const hex = given
      .trim()
      .replace(/^sha256=/i, "")
      .toLowerCase();
    const ok = constantTimeEqual(signWebhook(body, secret), `sha256=${hex}`);
    return ok ? { ok, provider, header } : { ok, reason: `the ${header} signature does not match the body` };
  }
  const token = headers.get("x-gitlab-token");
  if (token !== null) {
    return constantTimeEqual(token, secret)
      ? { ok: true, provider, header: "x-gitlab-token" }
      : { ok: false, reason: "the X-Gitlab-Token does not match" };
  }
  return {
    ok: false,
    reason:
      "missing signature: send X-Hub-Signature-256 or X-Signature-256 (sha256=<hex HMAC-SHA256 of the body>) or X-Gitlab-Token",
  };
}

const FORM_WITHOUT_PAYLOAD =
  "a form-encoded webhook (Content-Type: application/x-www-form-urlencoded) must carry its JSON in the payload= field; send a raw JSON body as application/json";

/**
 * Reads what a (verified) webhook asks for: a ping, a push (with its ref and commit when given),
 * an event that is not a push, or a body that cannot be read. Two content types: a JSON body
 * (`application/json`, or none; an empty body is a push naming no ref, a generic "check now"), and
 * GitHub's default form encoding (`application/x-www-form-urlencoded`, `payload=<url-encoded
 * JSON>`; the signature covers the raw form bytes). A form body without a `payload` field is invalid.
 */
export function parseWebhook(headers: Headers, body: Uint8Array): WebhookEvent {
  const provider = webhookProvider(headers);
  const event = (
    headers.get("x-github-event") ??
    headers.get("x-gitea-event") ??
    headers.get("x-forgejo-event") ??
    headers.get("x-gogs-event")
  )?.toLowerCase();
  const gitlabEvent = headers.get("x-gitlab-event");
  if (event === "ping") return { kind: "ping", provider };
  if (event !== undefined && event !== "push")
    return { kind: "ignored", provider, reason: `"${event}" events do not trigger a reconcile` };
  if (gitlabEvent !== null && gitlabEvent !== "Push Hook" && gitlabEvent !== "System Hook") {
    return { kind: "ignored", provider, reason: `"${gitlabEvent}" events do not trigger a reconcile` };
  }
  let payload: unknown;
  try {
    let text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    if (/^application\/x-www-form-urlencoded\b/i.test(headers.get("content-type") ?? "")) {
      // GitHub's default content type: the JSON is the `payload` field. A form without it (raw
      // JSON sent with a form type) is not read as an empty "check now" push: that would trigger.
      const field = new URLSearchParams(text).get("payload");
      if (field === null || field.trim() === "") return { kind: "invalid", provider, reason: FORM_WITHOUT_PAYLOAD };
      text = field;
    }
    payload = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return { kind: "invalid", provider, reason: "the body is not a JSON push payload" };
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    return { kind: "invalid", provider, reason: "the body is not a JSON object" };
  }
  const data = payload as Record<string, unknown>;
  if (gitlabEvent === "System Hook" && data.event_name !== "push") {
    return {
      kind: "ignored",
      provider,
      reason: `system hook "${String(data.event_name)}" does not trigger a reconcile`,
    };
  }
  const ref = typeof data.ref === "string" ? data.ref : undefined;
  const commit =
    typeof data.after === "string" ? data.after : typeof data.checkout_sha === "string" ? data.checkout_sha : undefined;
  return { kind: "push", provider, ...(ref !== undefined ? { ref } : {}), ...(commit !== undefined ? { commit } : {}) };
}

/**
 * Whether a push concerns the tracked `branch`: its `ref` is `refs/heads/<branch>` (or the bare
 * branch name), or it names no ref at all. Tags and other branches do not.
 */
export function pushTargets(event: { ref?: string }, branch: string): boolean {
  if (event.ref === undefined) return true;
  return event.ref === `refs/heads/${branch}` || (!event.ref.startsWith("refs/") && event.ref === branch);
}
