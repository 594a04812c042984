/**
 * The agent's identity in a fleet: its host name and labels (configuration keys `host` and
 * `labels`), the built-in labels it sets itself (`host`, `os`, `arch`, `runtime`), and the rules
 * every host name, label key and label value follows. Placement, overrides and rollout waves all
 * decide from a {@link HostIdentity}.
 */
import { hostname } from "node:os";
import { runtimeName } from "../_platform.ts";

/** Labels the agent sets itself; configuration cannot set them (`host` is its own key). */
export const BUILTIN_LABELS = ["host", "os", "arch", "runtime"] as const;

/** The label that puts a host in an explicit rollout wave (`rollout_wave=0` is the first wave). */
export const WAVE_LABEL = "rollout_wave";

/** Characters a host name may hold (besides its first, a letter or digit), also what a host glob may name literally. */
export const HOST_CHARS = /^[a-z0-9._-]$/i;

/** A host name: 1-253 letters, digits, `-`, `_` and `.`, starting with a letter or digit. */
const HOST_NAME = /^[a-z0-9][a-z0-9._-]{0,252}$/i;

/**
 * A label key, as a pattern without flags (the editor JSON Schema uses it too): a name of 1-63
 * characters (letters, digits, `-`, `_`, `.`; alphanumeric at both ends), optionally prefixed
 * `example.com/`.
 */
export const LABEL_KEY_PATTERN =
  "^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$";

/** A label value, as a pattern without flags: empty, or up to 253 letters, digits, `-`, `_` and `.`, alphanumeric at both ends (a host name fits). */
export const LABEL_VALUE_PATTERN = "^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?)?$";

const LABEL_KEY = new RegExp(LABEL_KEY_PATTERN);
const LABEL_VALUE = new RegExp(LABEL_VALUE_PATTERN);

/** Who this agent is: its host name (lower case) and every label, built-in ones included. */
export interface HostIdentity {
  readonly host: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Why `name` is not a valid host name, or `undefined` when it is. */
export function hostNameProblem(name: string): string | undefined {
  if (HOST_NAME.test(name)) return undefined;
  return `${JSON.stringify(name)} is not a valid host name: use 1-253 letters, digits, "-", "_" or ".", starting with a letter or digit`;
}

/** Why `key` is not a valid label key, or `undefined` when it is. */
export function labelKeyProblem(key: string): string | undefined {
  if (LABEL_KEY.test(key)) return undefined;
  return `${JSON.stringify(key)} is not a valid label key: use up to 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit (optionally prefixed like example.com/)`;
}

/** Why `value` is not a valid label value, or `undefined` when it is. */
export function labelValueProblem(value: string): string | undefined {
  if (LABEL_VALUE.test(value)) return undefined;
  return `${JSON.stringify(value)} is not a valid label value: use up to 253 letters, digits, "-", "_" or ".", starting and ending with a letter or digit (or leave it empty)`;
}

/**
 * Why the configured labels cannot be used (a bad key or value, a built-in label, a `rollout_wave`
 * that is not a whole number), naming the label; `undefined` when they are fine.
 */
export function labelsProblem(labels: Readonly<Record<string, string>>): string | undefined {
  for (const [key, value] of Object.entries(labels)) {
    const bad = labelKeyProblem(key) ?? labelValueProblem(value);
    if (bad) return bad;
    if ((BUILTIN_LABELS as readonly string[]).includes(key))
      return `"${key}" is a built-in label the agent sets itself${key === "host" ? " (set the host key instead)" : ""}`;
    if (key === WAVE_LABEL && !/^\d{1,6}$/.test(value))
      return `${WAVE_LABEL} must be a whole number (0 is the first wave), got ${JSON.stringify(value)}`;
  }
  return undefined;
}

/**
 * Labels written as `key=value` items, from `BC_GITOPS_LABELS="role=web,region=eu"` (one string,
 * comma-separated) or repeated `--label role=web` flags (a list). Throws an `Error` naming the
 * item when one has no `=`. Keys and values are checked later, with the configuration.
 */
export function parseLabelList(input: string | readonly string[]): Record<string, string> {
  const items = (typeof input === "string" ? [input] : input).flatMap((item) => item.split(","));
  const out: Record<string, string> = {};
  for (const raw of items) {
    const item = raw.trim();
    if (item === "") continue;
    const eq = item.indexOf("=");
    if (eq <= 0) throw new Error(`expected key=value, got ${JSON.stringify(item)}`);
    out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

/** This machine's host name in lower case (the default of `host`). */
export function defaultHostName(): string {
  return hostname().toLowerCase();
}

/** The identity of a host: its name (lower-cased) and its labels plus the built-in ones. */
export function hostIdentity(
  host: string,
  labels: Readonly<Record<string, string>> = {},
  platform: { os?: string; arch?: string; runtime?: string } = {},
): HostIdentity {
  const name = host.toLowerCase();
  return {
    host: name,
    labels: {
      ...labels,
      host: name,
      os: platform.os ?? process.platform,
      arch: platform.arch ?? process.arch,
      runtime: platform.runtime ?? runtimeName,
    },
  };
}

/** `role=web, region=eu` (built-in labels left out), for status lines; `-` when there are none. */
export function formatLabels(labels: Readonly<Record<string, string>>, options: { builtins?: boolean } = {}): string {
  const shown = Object.entries(labels)
    .filter(([key]) => options.builtins || !(BUILTIN_LABELS as readonly string[]).includes(key))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`);
  return shown.length ? shown.join(", ") : "-";
}

/**
 * The host `validate --host NAME --label k=v…` describes: `os`, `arch` and `runtime` are this
 * machine's unless given as labels. Throws an `Error` naming the flag for a bad name or label.
 */
export function identityOf(host: string | undefined, labelItems: readonly string[]): HostIdentity {
  const name = String(host ?? defaultHostName());
  const problem = hostNameProblem(name);
  if (problem) throw new Error(`--host: ${problem}`);
  let labels: Record<string, string>;
  try {
    labels = parseLabelList(labelItems.map(String));
  } catch (error) {
    throw new Error(`--label: ${(error as Error).message}`);
  }
  const { os, arch, runtime, ...rest } = labels;
  const bad = labelsProblem(rest);
  if (bad) throw new Error(`--label: ${bad}`);
  return hostIdentity(name, rest, { os, arch, runtime });
}
