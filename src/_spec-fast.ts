/**
 * The fast path of spec validation. A cold process spends most of its validation time in zod's
 * generic machinery while the engine's JIT warms up (20-30 ms for 1000 specs on Bun, against
 * 4-11 ms for this file). Most spec files take one plain shape; for those, {@link plainSpec} returns
 * exactly what `AppSpec.parse` would (same values, same key order). Anything it is not sure of it
 * declines (`undefined`), and the caller validates with the zod schema, which stays the source of
 * truth: of every error message and path, of unknown-key warnings, and of every field this file
 * does not take (icons, registries, tarballs, health modules). The rules it does apply are the
 * schema's own (the predicates, names and aliases spec.ts exports), and it declines everything
 * when the schema has a field it does not know. test/spec-fast.test.ts checks that it agrees with
 * zod on the spec corpus and on mutations of it.
 */
import { parseDuration } from "./duration.ts";
import {
  APP_NAME,
  AppSpecObject,
  HEALTH_TYPES,
  Health,
  ISOLATIONS,
  NPM_PACKAGE,
  RELOAD_SIGNALS,
  SOURCE_VARIANTS,
  dependencyNames,
  escapes,
  healthTypeAlias,
  isInnerPath,
  sourceAliases,
  withDefaults,
  type AppSpec,
} from "./spec.ts";

type Obj = Record<string, unknown>;
/** A field's value, or {@link NO} when the fast path cannot vouch for it. */
type Field = (value: unknown) => unknown;
/** One mapping of the spec as the schema defines it: its fields in the schema's order, which must be written, defaults. */
interface Shape {
  fields: Readonly<Record<string, Field>>;
  order: readonly string[];
  required: ReadonlySet<string>;
  defaults: Readonly<Obj>;
}

/** Declines: the caller validates with zod. */
const NO = Symbol("decline");

const string: Field = (v) => (typeof v === "string" ? v : NO);
const nonEmpty: Field = (v) => (typeof v === "string" && v.length > 0 ? v : NO);
/** A git or tarball argument: not empty, not read as an option. */
const argument: Field = (v) => (typeof v === "string" && v.length > 0 && !v.startsWith("-") ? v : NO);
const innerPath: Field = (v) => (typeof v === "string" && isInnerPath(v) ? v : NO);
const oneOf =
  (choices: readonly string[]): Field =>
  (v) =>
    typeof v === "string" && choices.includes(v) ? v : NO;
const duration: Field = (v) => parseDuration(v) ?? NO;

/** The zod object schema's keys in order, and the ones it requires (neither optional nor defaulted). */
function shapeOf(
  schema: { shape: Record<string, unknown> },
  fields: Shape["fields"],
  defaults: Readonly<Obj> = {},
): Shape {
  const order = Object.keys(schema.shape);
  const optional = (key: string) =>
    (schema.shape[key] as { _zod?: { optin?: string } })._zod?.optin === "optional" || Object.hasOwn(defaults, key);
  return { fields, order, required: new Set(order.filter((key) => !optional(key))), defaults };
}

/** The source variants taken here, field by field (npm registries and tarballs go to zod). */
const SOURCES: Readonly<Record<string, Shape>> = {
  npm: shapeOf(SOURCE_VARIANTS.npm, {
    type: string,
    package: (v) => (typeof v === "string" && NPM_PACKAGE.test(v) ? v : NO),
  }),
  git: shapeOf(SOURCE_VARIANTS.git, { type: string, url: argument, ref: argument, subdir: innerPath }),
  path: shapeOf(SOURCE_VARIANTS.path, {
    type: string,
    path: (v) => (typeof v === "string" && v.length > 0 && !escapes(v) ? v : NO),
  }),
};

const HEALTH_DEFAULTS: Readonly<Obj> = { type: "none", interval: 30_000, timeout: 5_000 };
const HEALTH = shapeOf(
  Health,
  {
    type: (v) => oneOf(HEALTH_TYPES)(healthTypeAlias(v)),
    port: (v) => (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535 ? v : NO),
    path: (v) => (typeof v === "string" && v.startsWith("/") ? v : NO),
    interval: duration,
    timeout: duration,
  },
  HEALTH_DEFAULTS,
);

const LIMITS: Shape = {
  fields: { memory_mb: (m) => (Number.isSafeInteger(m) && (m as number) > 0 ? m : NO) },
  order: ["memory_mb"],
  required: new Set(),
  defaults: {},
};

const TOP = shapeOf(
  AppSpecObject,
  {
    name: (v) => (typeof v === "string" && APP_NAME.test(v) ? v : NO),
    version: nonEmpty,
    description: string,
    source: (v) => {
      const source = sourceAliases(v);
      const shape = isPlain(source) && typeof source.type === "string" ? own(SOURCES, source.type) : undefined;
      return shape ? mapping(source as Obj, shape) : NO;
    },
    entry: innerPath,
    isolation: (v) => {
      const isolation = oneOf(ISOLATIONS)(v);
      return isolation === "vm" ? "process" : isolation;
    },
    command: (v) => (Array.isArray(v) && v.length > 0 && v.every((a) => typeof a === "string") ? [...v] : NO),
    limits: (v) => (isPlain(v) ? mapping(v, LIMITS) : NO),
    env: (v) => {
      const env = Array.isArray(v) && v.length === 0 ? {} : v;
      if (!isPlain(env) || Object.hasOwn(env, "__proto__")) return NO;
      return { ...env };
    },
    health: (v) => (isPlain(v) ? mapping(v, HEALTH) : NO),
    depends_on: (v) => {
      const names = dependencyNames(v);
      if (!Array.isArray(names)) return NO;
      for (const name of names) if (typeof name !== "string" || !APP_NAME.test(name)) return NO;
      // Duplicates and self-dependencies are errors: zod words them.
      return new Set(names).size === names.length ? names : NO;
    },
    reload_signal: oneOf(RELOAD_SIGNALS),
  },
  { isolation: "embedded", env: {}, depends_on: [] },
);

/** Fields the schema has and this file leaves to zod (a spec that has one goes to zod). */
const LEFT_TO_ZOD = new Set(["icon", "module", "registry", "placement", "overrides", "rollout"]);
/**
 * Whether this file knows every field of the schema (taking it or leaving it to zod). A field
 * added to the schema and not here could have a default this file would not fill in: then every
 * spec goes to zod until it is added here.
 */
const enabled = [TOP, HEALTH, ...Object.values(SOURCES)].every((shape) =>
  shape.order.every((key) => Object.hasOwn(shape.fields, key) || LEFT_TO_ZOD.has(key)),
);

/**
 * `input` (a spec file's parsed value, nulls dropped) validated with every default filled in,
 * exactly as `AppSpec.parse(input)` returns it; `undefined` when the fast path cannot vouch for
 * it (invalid, unknown keys, or a field it leaves to zod): then validate with `AppSpec`.
 */
export function plainSpec(input: Obj): AppSpec | undefined {
  if (!enabled || !isPlain(input)) return undefined;
  const spec = mapping(input, TOP);
  if (spec === NO) return undefined;
  const out = spec as Obj;
  if ((out.depends_on as string[]).includes(out.name as string)) return undefined;
  // AppSpec's own transform: the defaults that depend on other fields.
  return withDefaults(out as unknown as Parameters<typeof withDefaults>[0]) as AppSpec;
}

/**
 * A strict object as zod builds it: every key of `value` must have a field here and every
 * required one must be there; the output has the keys of the schema that are present or have a
 * default, in the schema's order.
 */
function mapping(value: Obj, shape: Shape): Obj | typeof NO {
  for (const key of Object.keys(value)) if (!Object.hasOwn(shape.fields, key)) return NO;
  const out: Obj = {};
  for (const key of shape.order) {
    if (Object.hasOwn(value, key) && value[key] !== undefined) {
      const parsed = shape.fields[key]!(value[key]);
      if (parsed === NO) return NO;
      out[key] = parsed;
    } else if (Object.hasOwn(shape.defaults, key)) {
      const d = shape.defaults[key];
      out[key] = Array.isArray(d) ? [] : typeof d === "object" && d !== null ? {} : d;
    } else if (shape.required.has(key)) return NO;
  }
  return out;
}

/** A plain mapping as parsers build it (zod's `isPlainObject`, without the odd cases). */
function isPlain(value: unknown): value is Obj {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
