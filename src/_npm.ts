/**
 * The npm registry client of the workspaces: which registry serves a package (spec, npmrc scope,
 * environment, npmrc, default), its packument, and its tarball downloaded and verified against the
 * registry's integrity before anything is unpacked. Also the plain http(s) download and the SRI
 * check that tarball sources use.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { messageOf, redactedError } from "./errors.ts";
import type { RetryClass } from "./errors.ts";
import { registerSecret } from "./redact.ts";

const DEFAULT_REGISTRY = "https://registry.npmjs.org/";

interface Packument {
  "dist-tags"?: Record<string, string>;
  versions?: Record<string, { dist?: { tarball?: string; integrity?: string; shasum?: string } }>;
}

/** Deadline and cancellation of one download. */
export interface DownloadOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

const fail = redactedError;
/**
 * The tarball bytes of `name@version`, verified against the registry's `integrity` (else `shasum`).
 * The registry is `explicit`, else the npmrc `@scope:registry`, `npm_config_registry`, npmrc
 * `registry`, else registry.npmjs.org; npmrc `_authToken`s are sent and redacted. Throws
 * `E_NOT_FOUND` (no such package or version), `E_RUNTIME` (bad answer, no or wrong integrity),
 * `E_TIMEOUT`, `E_ABORTED` or `E_UNSAFE` (non-http tarball url).
 */
export async function npmTarball(
  name: string,
  version: string,
  explicit: string | undefined,
  options: DownloadOptions,
): Promise<Uint8Array> {
  const npmrc = await readNpmrc();
  const env = (key: string) => process.env[`npm_config_${key}`] ?? process.env[`NPM_CONFIG_${key.toUpperCase()}`];
  const scope = name.startsWith("@") ? name.split("/")[0] : undefined;
  let registry =
    explicit ?? (scope && npmrc[`${scope}:registry`]) ?? env("registry") ?? npmrc.registry ?? DEFAULT_REGISTRY;
  if (!registry.endsWith("/")) registry += "/";
  const packumentUrl = new URL(name.replace("/", "%2f"), registry).href;
  const accept = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"; // the small packument will do
  const response = await download(packumentUrl, options, npmrc, { accept });
  if (response.status === 404)
    throw fail(`package ${name} is not in the registry ${registry}`, "E_NOT_FOUND", "stalled");
  if (!response.ok) throw fail(`registry ${registry} answered ${response.status} for ${name}`, "E_RUNTIME", "backoff");
  const packument = (await response.json()) as Packument;
  const dist = packument.versions?.[version]?.dist;
  if (!dist?.tarball) {
    const latest = packument["dist-tags"]?.latest;
    throw fail(
      `version ${version} of ${name} is not in ${registry}${latest ? ` (latest is ${latest})` : ""}`,
      "E_NOT_FOUND",
      "stalled",
    );
  }
  const sri =
    dist.integrity ?? (dist.shasum ? `sha1-${Buffer.from(dist.shasum, "hex").toString("base64")}` : undefined);
  if (!sri)
    throw fail(
      `${name}@${version} has no integrity or shasum in ${registry}; refusing it unverified`,
      "E_RUNTIME",
      "stalled",
    );
  const tarball = await download(dist.tarball, options, npmrc);
  if (!tarball.ok) throw fail(`downloading ${dist.tarball} failed: HTTP ${tarball.status}`, "E_RUNTIME", "backoff");
  const bytes = new Uint8Array(await tarball.arrayBuffer());
  verify(bytes, sri, `${name}@${version} from ${dist.tarball}`, "backoff");
  return bytes;
}

/**
 * GET `url` (http or https only, else `E_UNSAFE`) with the deadline, the caller's signal and the
 * longest matching npmrc `//host/path/:_authToken` as a bearer token. Any HTTP status resolves;
 * a failure to get an answer throws `E_ABORTED`, `E_TIMEOUT` or `E_RUNTIME`.
 */
export async function download(
  url: string,
  options: DownloadOptions,
  npmrc: Record<string, string> = {},
  headers: Record<string, string> = {},
): Promise<Response> {
  const { signal, timeoutMs } = options;
  const parsed = new URL(url);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw fail(`refusing to download ${url}: only http(s) is supported`, "E_UNSAFE", "stalled");
  }
  // npm's rule: the longest `//host/path/:_authToken` that prefixes the URL.
  const scoped = `//${parsed.host}${parsed.pathname}`;
  const tokenKey = Object.keys(npmrc)
    .filter((k) => k.endsWith(":_authToken") && scoped.startsWith(k.slice(0, -":_authToken".length)))
    .sort((a, b) => b.length - a.length)[0];
  const token = tokenKey ? npmrc[tokenKey] : undefined;
  registerSecret(token);
  if (token) headers = { ...headers, authorization: `Bearer ${token}` };
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    return await fetch(url, {
      headers,
      signal: signal ? AbortSignal.any([deadline, signal]) : deadline,
      redirect: "follow",
    });
  } catch (error) {
    if (signal?.aborted) throw fail(`downloading ${url} was aborted`, "E_ABORTED", "backoff", error);
    if (deadline.aborted)
      throw fail(`cannot download ${url}: no answer within ${timeoutMs} ms`, "E_TIMEOUT", "backoff", error);
    throw fail(`cannot download ${url}: ${messageOf(error)}`, "E_RUNTIME", "backoff", error);
  }
}

/**
 * Throws `E_RUNTIME` (with `retry`, and `details.expected`/`actual`) unless `bytes` match the SRI
 * string `sri` by the strongest of its sha1/256/384/512 hashes; `what` names the bytes in the message.
 */
export function verify(bytes: Uint8Array, sri: string, what: string, retry: RetryClass): void {
  const rank = ["sha1", "sha256", "sha384", "sha512"];
  const algorithmOf = (hash: string) => hash.slice(0, Math.max(0, hash.indexOf("-")));
  const hashes = sri
    .trim()
    .split(/\s+/)
    .map((h) => h.split("?")[0] ?? "")
    .filter((h) => rank.includes(algorithmOf(h)));
  const best = hashes.sort((a, b) => rank.indexOf(algorithmOf(b)) - rank.indexOf(algorithmOf(a)))[0];
  if (!best) throw fail(`${what}: unsupported integrity ${sri}`, "E_RUNTIME", "stalled");
  const algorithm = algorithmOf(best);
  const actual = `${algorithm}-${createHash(algorithm).update(bytes).digest("base64")}`;
  if (actual !== best) {
    const show = (s: string) =>
      algorithm === "sha256" ? `sha256 ${Buffer.from(s.slice(7), "base64").toString("hex")}` : s;
    const message = `${what} failed verification: expected ${show(best)}, got ${show(actual)}; nothing was unpacked`;
    throw fail(message, "E_RUNTIME", retry, undefined, { expected: best, actual });
  }
}

/** The user's npmrc (`NPM_CONFIG_USERCONFIG` or `~/.npmrc`) as key/value pairs, `${VAR}` expanded. */
async function readNpmrc(): Promise<Record<string, string>> {
  const file = process.env.NPM_CONFIG_USERCONFIG ?? process.env.npm_config_userconfig ?? join(homedir(), ".npmrc");
  const out: Record<string, string> = {};
  for (const line of (await readFile(file, "utf8").catch(() => "")).split(/\r?\n/)) {
    const match = /^\s*([^#;=\s][^=]*?)\s*=\s*(.*?)\s*$/.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    out[match[1]] = match[2]
      .replace(/^"(.*)"$/, "$1")
      .replace(/\$\{([^}]+)\}/g, (_, name: string) => process.env[name] ?? "");
  }
  return out;
}
