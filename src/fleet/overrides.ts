/**
 * The effective spec of an app on one host: its spec with every matching override applied, in
 * order (later matches win), and without the fleet fields (`placement`, `overrides`, `rollout`),
 * which decide where and when, not what runs. The planner compares effective specs, so a change to
 * an override that does not match this host changes nothing here.
 *
 * Merge rules: `version` is replaced; `env`, `limits` and `health` are merged key by key; `source`
 * without a `type` (or with the app's type) changes only the keys it gives, and with another type
 * replaces the source.
 */
import { Source, overrideSource, withDefaults, type AppSpec, type Override } from "../spec.ts";
import type { HostIdentity } from "./host.ts";
import { describeSelector, matches } from "./selector.ts";

/** An override that applied on this host: its place in `overrides` and what it matched. */
export interface AppliedOverride {
  index: number;
  /** The match selector in one line (`tier=canary`). */
  match: string;
  /** The fields it set. */
  fields: string[];
}

/** The effective spec of an app on a host, or why its overrides cannot be combined there. */
export type Effective =
  | { ok: true; spec: AppSpec; applied: AppliedOverride[] }
  | { ok: false; path: string; message: string; applied: AppliedOverride[] };

/**
 * `spec` as it runs on `identity`: every override whose `match` selects the host applied in
 * order, the fleet fields removed, the defaults that follow from other fields filled in again.
 * Each override was checked against the app's own source when the spec was validated; two
 * overrides that change the source in ways that do not combine are reported here (`ok: false`).
 */
export function effectiveSpec(spec: AppSpec, identity: HostIdentity): Effective {
  // No fleet fields: the spec itself, the same object (the planner compares unchanged specs by identity).
  if (spec.placement === undefined && spec.overrides === undefined && spec.rollout === undefined)
    return { ok: true, spec, applied: [] };
  const { placement: _placement, overrides = [], rollout: _rollout, ...base } = spec;
  let out: AppSpec = base as AppSpec;
  const applied: AppliedOverride[] = [];
  for (const [index, override] of overrides.entries()) {
    if (!matches(override.match, identity)) continue;
    applied.push({ index, match: describeSelector(override.match), fields: fieldsOf(override) });
    if (override.source !== undefined) {
      const source = Source.safeParse(overrideSource(out.source, override.source));
      if (!source.success) {
        const issue = source.error.issues[0]!;
        const at = issue.path.length ? `.${issue.path.join(".")}` : "";
        return {
          ok: false,
          path: `overrides[${index}].source${at}`,
          message: `on this host, overrides ${applied.map((a) => a.index).join(" and ")} together make an invalid source: ${issue.message}`,
          applied,
        };
      }
      // withDefaults below fills in an npm package the new source leaves out.
      out = { ...out, source: source.data as AppSpec["source"] };
    }
    out = {
      ...out,
      ...(override.version !== undefined ? { version: override.version } : {}),
      ...(override.env ? { env: { ...out.env, ...override.env } } : {}),
      ...(override.limits ? { limits: { ...out.limits, ...override.limits } } : {}),
      ...(override.health ? { health: { ...out.health, ...override.health } } : {}),
    };
  }
  // An npm source whose package came from the app's name keeps it; one an override brought in gets it.
  return { ok: true, spec: withDefaults(out) as AppSpec, applied };
}

function fieldsOf(override: Override): string[] {
  return Object.keys(override).filter((key) => key !== "match");
}

/** Overrides with a `source` beyond which {@link possibleSources} stops listing every combination. */
const MAX_SOURCE_OVERRIDES = 8;

/**
 * Every source `spec` can run from on some host: its own, and each combination of its overrides
 * that set one, applied in order (for more than 8 such overrides: each alone and each prefix). The
 * files of a commit that path sources need are written to disk for all of them, so a host whose
 * labels change finds its new source's files there.
 */
export function possibleSources(spec: AppSpec): Source[] {
  const changes = (spec.overrides ?? []).flatMap((o) => (o.source === undefined ? [] : [o.source]));
  if (changes.length === 0) return [spec.source];
  const sets: (typeof changes)[] =
    changes.length <= MAX_SOURCE_OVERRIDES
      ? Array.from({ length: 2 ** changes.length }, (_, mask) => changes.filter((_, i) => mask & (1 << i)))
      : [[], ...changes.map((c) => [c]), ...changes.map((_, i) => changes.slice(0, i + 1))];
  const out = new Map<string, Source>();
  for (const set of sets) {
    let source: Source | undefined = spec.source;
    for (const change of set) {
      const next = Source.safeParse(overrideSource(source, change));
      source = next.success ? next.data : undefined;
      if (!source) break;
    }
    if (source) out.set(JSON.stringify(source), source);
  }
  return [...out.values()];
}
