/**
 * The JSON Schema editors check spec files against (`bc-gitops schema`, the `app-spec.schema.json`
 * that `init` writes). It starts from zod's own JSON Schema of the spec, so fields, enums, required
 * keys and bounds follow the zod schema; this file patches what zod cannot export: the shorthands its
 * preprocessors accept, the rules of its refinements, and the loader's leniency (unknown keys are
 * warnings, `~` means "not set"). Plain draft 2020-12 only: no formats, no union `type` arrays, so
 * it compiles in Ajv's strict mode and every editor reads it the same way.
 *
 * The schema is never stricter than `validate`; what it cannot say (see README, "The app spec") only
 * `validate` checks. test/spec-schema.test.ts keeps the two in agreement on a corpus of specs.
 */

import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN } from "./fleet/host.ts";
import { MAX_WAVES } from "./fleet/rollout.ts";
import { OPERATORS } from "./fleet/selector.ts";

type Json = Record<string, unknown>;

/** A relative path inside the app: not empty, no leading "/", no ".." segment (the spec's InnerPath). */
const INNER_PATH = /^(?!\/)(?!(?:[\s\S]*[\\/])?\.\.(?:[\\/]|$))[\s\S]/u.source;
/** Not empty and not starting with "-", which git or tar would read as an option. */
const NO_DASH = /^[^-]/u.source;
/** A duration string as duration.ts reads it: `30000`, `"30s"`, `"1.5m"`, `"250ms"`, `"1h"`. */
const DURATION_TEXT = /^\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h)?\s*$/u.source;
/** An npm package name, either case (zod's regex has the `i` flag, which a JSON Schema pattern cannot carry). */
const NPM_PACKAGE = /^(?:@[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/u.source;
/** Only the scheme: whether the rest parses as a URL is checked by `validate`. */
const URL_SCHEME = /^\s*[A-Za-z][A-Za-z0-9+.-]*:/u.source;

const NULL = { type: "null" } as const;

/**
 * Turns zod's JSON Schema of `AppSpecObject` (`io: "input"`) into the editor schema. Throws if the
 * generated schema lacks a field it patches, so a change to the zod schema cannot pass unnoticed.
 */
export function editorSchema(generated: Json): Json {
  const schema = structuredClone(generated);
  // Unknown keys are warnings (real bc_gitops specs carry `license` and more): never editor errors.
  // `starts_with` is a zod-only format name that strict validators refuse; the pattern says the same.
  walk(schema, (node) => {
    if (node.additionalProperties === false) delete node.additionalProperties;
    if (node.format === "starts_with") delete node.format;
  });
  const props = propertiesOf(schema, "spec");

  const appName = field(field(props, "depends_on"), "items");
  props.depends_on = {
    description: "Apps that must be running first: one name, a list of names, or a list of { name } maps.",
    anyOf: [
      appName,
      {
        type: "array",
        uniqueItems: true,
        items: { anyOf: [appName, { type: "object", required: ["name"], properties: { name: appName } }] },
      },
    ],
  };

  const entry = field(props, "entry");
  entry.pattern = INNER_PATH;

  props.env = {
    description: "Settings passed to the app; an empty list means none.",
    anyOf: [field(props, "env"), { type: "array", maxItems: 0 }],
  };

  const icon = field(props, "icon");
  icon.if = { properties: { type: { enum: ["url", "base64"] } }, required: ["type"] };
  icon.then = { properties: { value: { type: "string" } }, required: ["value"] };
  allowNulls(icon);

  allowNulls(field(props, "limits"));

  const health = field(props, "health");
  const check = propertiesOf(health, "health");
  const healthType = field(check, "type");
  healthType.enum = [...(healthType.enum as string[]), "custom"]; // bc_gitops's name for `module`
  const duration = {
    anyOf: [
      { type: "number", minimum: 0 },
      { type: "string", pattern: DURATION_TEXT },
    ],
  };
  check.interval = { description: 'Milliseconds, or a string like "30s", "5m", "1h".', ...duration, default: 30_000 };
  check.timeout = { description: 'Milliseconds, or a string like "5s".', ...duration, default: 5_000 };
  allowNulls(health);

  props.source = {
    description: "Where the app's code comes from; default: the npm package named like the app.",
    anyOf: [
      { type: "string", const: "npm", description: "Shorthand for { type: npm }." },
      ...patchSources(field(props, "source")),
    ],
  };

  patchFleet(props, duration);

  allowNulls(schema);
  schema.description =
    "An app spec of a bc-gitops repository (apps/<name>/app.yaml). Editors check the form of each field; " +
    '`bc-gitops validate` also checks what a schema cannot (see the README, "The app spec"), and warns about unknown keys.';
  return schema;
}

/** A host-name glob as `validate` reads it, loosely: a set `[...]` is any characters up to the next `]`. */
const GLOB = /^(?:[A-Za-z0-9*?]|\[[\s\S][^\]]*\])(?:[A-Za-z0-9._*?-]|\[[\s\S][^\]]*\])*$/u.source;
/** A selector expression written as one string: `region in [eu, us]`, `gpu exists`, `!gpu`. */
const EXPRESSION = /^\s*(?:!\s*\S+|\S+\s+(?:in|notin)\s*[[(].*[\])]|\S+\s+(?:exists|doesnotexist))\s*$/u.source;

/**
 * `placement`, `overrides` and `rollout`: written by hand, since zod reads selectors and rollouts
 * with custom code. Unlike the rest of the spec, unknown keys in them are errors in `validate`
 * (a misspelt part would silently widen where an app runs), so the schema refuses them too.
 */
function patchFleet(props: Json, duration: Json): void {
  field(props, "placement");
  field(props, "overrides");
  field(props, "rollout");
  const globs = {
    anyOf: [
      { type: "string", pattern: GLOB },
      { type: "array", items: { type: "string", pattern: GLOB } },
    ],
  };
  const labelValue = {
    anyOf: [{ type: "string", pattern: LABEL_VALUE_PATTERN }, { type: "number" }, { type: "boolean" }],
  };
  const selector: Json = {
    type: "object",
    description: "Hosts this applies to; every part given must match. {} matches every host.",
    additionalProperties: false,
    properties: {
      hosts: { description: 'Host-name globs, e.g. ["web-*", "db-1"].', ...globs },
      exclude_hosts: { description: "Host-name globs this never applies to.", ...globs },
      labels: {
        description: "Labels the host must have, with these values.",
        type: "object",
        propertyNames: { pattern: LABEL_KEY_PATTERN },
        additionalProperties: labelValue,
      },
      expressions: {
        description: 'Set expressions: "region in [eu, us]", "tier notin [canary]", "gpu exists", "gpu doesnotexist".',
        type: "array",
        items: {
          anyOf: [
            { type: "string", pattern: EXPRESSION },
            {
              type: "object",
              additionalProperties: false,
              required: ["key", "operator"],
              properties: {
                key: { type: "string", pattern: LABEL_KEY_PATTERN },
                operator: { enum: [...OPERATORS] },
                values: { anyOf: [{ type: "array", items: labelValue }, NULL] },
              },
              if: { properties: { operator: { enum: ["in", "notin"] } } },
              then: { required: ["values"], properties: { values: { type: "array", minItems: 1 } } },
              else: { properties: { values: NULL } },
            },
          ],
        },
      },
    },
  };
  allowNulls(selector);
  props.placement = { description: "Which hosts run this app; absent: every host.", ...selector };

  const check = propertiesOf(field(props, "health"), "health");
  const source = props.source as { anyOf: Json[] };
  const sourceKeys: Json = {};
  for (const variant of source.anyOf.slice(1)) Object.assign(sourceKeys, propertiesOf(variant, "source"));
  sourceKeys.type = { enum: ["npm", "git", "path", "tarball", "release"] };
  const override: Json = {
    type: "object",
    required: ["match"],
    additionalProperties: false,
    properties: {
      match: selector,
      version: field(props, "version"),
      source: {
        description: "Merged into the app's source (a type of its own replaces it); the result must be a valid source.",
        anyOf: [{ type: "string" }, { type: "object", additionalProperties: false, properties: sourceKeys }],
      },
      env: { description: "Merged into the app's env, key by key.", ...field(props, "env") },
      limits: field(props, "limits"),
      health: {
        description: "Merged into the app's health settings, key by key.",
        type: "object",
        properties: Object.fromEntries(
          Object.entries({ ...check, interval: duration, timeout: duration }).map(([key, value]) => {
            const { default: _, ...rest } = value as Json;
            return [key, rest];
          }),
        ),
      },
    },
  };
  props.overrides = {
    description: "Per-host values, in order: each applies where its match selects, and later ones win.",
    type: "array",
    items: override,
  };

  const rollout: Json = {
    type: "object",
    description: "Stage changes: wave k applies them no earlier than commit time + k × interval.",
    additionalProperties: false,
    properties: {
      waves: { type: "integer", minimum: 1, maximum: MAX_WAVES, default: 1 },
      interval: { description: 'Time between waves, e.g. "10m" (default).', ...duration },
      paused: { type: "boolean", default: false, description: "true holds every wave that has not applied yet." },
    },
  };
  allowNulls(rollout);
  props.rollout = rollout;
}

/**
 * The four source variants: `release` is a tarball, patterns zod's refinements imply, a checksum for
 * tarballs. Returned as a list for one flat `anyOf` (their `type` constants exclude each other).
 */
function patchSources(source: Json): Json[] {
  const variants = source.oneOf as Json[] | undefined;
  if (!Array.isArray(variants)) throw new Error("the generated JSON Schema has no source variants (oneOf)");
  const byType = new Map(variants.map((v) => [String(field(propertiesOf(v, "source"), "type").const), v]));
  const variant = (type: string) => {
    const v = byType.get(type);
    if (!v) throw new Error(`the generated JSON Schema has no "${type}" source`);
    return v;
  };

  const npm = propertiesOf(variant("npm"), "source");
  field(npm, "package").pattern = NPM_PACKAGE;
  const registry = field(npm, "registry");
  delete registry.format;
  registry.pattern = URL_SCHEME;

  const git = propertiesOf(variant("git"), "source");
  field(git, "url").pattern = NO_DASH;
  field(git, "ref").pattern = NO_DASH;
  field(git, "subdir").pattern = INNER_PATH;

  const tarball = variant("tarball");
  const tar = propertiesOf(tarball, "source");
  tar.type = { type: "string", enum: ["tarball", "release"] }; // bc_gitops's `release` source is a tarball
  field(tar, "url").pattern = NO_DASH;
  field(tar, "sha256").pattern = /^[0-9A-Fa-f]{64}$/u.source;
  tarball.anyOf = ["sha256", "integrity"].map((key) => ({
    properties: { [key]: { type: "string" } },
    required: [key],
  }));

  for (const v of variants) allowNulls(v);
  return variants;
}

/** `~` (and Erlang `undefined`) mean "not set": every optional field of a mapping may be null. */
function allowNulls(object: Json): void {
  const props = propertiesOf(object, "object");
  const required = new Set((object.required as string[] | undefined) ?? []);
  for (const [key, value] of Object.entries(props)) {
    if (required.has(key)) continue;
    const choices = (value as Json).enum;
    // An enum takes null as one more value (editors then still offer the choices); others get a branch.
    if (Array.isArray(choices)) {
      delete (value as Json).type;
      (value as Json).enum = [...choices, null];
    } else if (Array.isArray((value as Json).anyOf) && !("type" in (value as Json))) {
      (value as Json).anyOf = [...((value as Json).anyOf as Json[]), NULL];
    } else {
      props[key] = { anyOf: [value, NULL] };
    }
  }
}

function propertiesOf(schema: Json, what: string, key = "properties"): Json {
  const props = schema[key];
  if (typeof props !== "object" || props === null)
    throw new Error(`the generated JSON Schema has no ${key} for ${what}`);
  return props as Json;
}

function field(props: Json, key: string): Json {
  const value = props[key];
  if (typeof value !== "object" || value === null) throw new Error(`the generated JSON Schema has no field "${key}"`);
  return value as Json;
}

function walk(node: unknown, visit: (node: Json) => void): void {
  if (Array.isArray(node)) return node.forEach((n) => walk(n, visit));
  if (typeof node !== "object" || node === null) return;
  visit(node as Json);
  for (const child of Object.values(node)) walk(child, visit);
}
