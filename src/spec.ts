/**
 * The app spec (SPEC section 2): one zod schema that is both the validator and the TypeScript type.
 * Input is what a spec file holds after format parsing; output has every default filled in.
 */
import { z } from "zod";
import { parseDuration } from "./duration.ts";
import { RolloutField } from "./fleet/rollout.ts";
import { SelectorField } from "./fleet/selector.ts";
import type { AppSecrets } from "./secrets/secrets-file.ts";
import { editorSchema } from "./spec-schema.ts";
import { suggest } from "./suggest.ts";

/** App names become directory names: nothing in them may escape a directory. */
export const APP_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const show = (value: unknown): string => {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  return Array.isArray(value) ? "a list" : "a mapping";
};

const typeName = (value: unknown): string =>
  value === undefined
    ? "nothing"
    : value === null
      ? "null"
      : Array.isArray(value)
        ? "a list"
        : typeof value === "object"
          ? "a mapping"
          : `the ${typeof value} ${show(value)}`;

const text = (what: string) => z.string({ error: (iss) => `expected ${what}, got ${typeName(iss.input)}` });

/** An app name (`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`). */
export const AppName = text("an app name").regex(APP_NAME, {
  error: (iss) =>
    `${show(iss.input)} is not a valid app name: use 1-64 letters, digits, "_", "." or "-", starting with a letter or digit`,
});

const Duration = z
  .union([z.number(), z.string()], {
    error: (iss) => `expected a duration like 30000 or "30s", got ${show(iss.input)}`,
  })
  .transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: `expected a duration like 30000 or "30s", got ${show(value)}` });
      return z.NEVER;
    }
    return ms;
  });

const Port = z
  .number({ error: (iss) => `expected a port number, got ${typeName(iss.input)}` })
  .int({ error: "expected a whole port number" })
  .min(1, { error: "expected a port from 1 to 65535" })
  .max(65535, { error: "expected a port from 1 to 65535" });

/** Whether `p` is a relative path inside a package or repository: not empty, not absolute, no `..` segment. */
export const isInnerPath = (p: string): boolean =>
  p.length > 0 && !p.startsWith("/") && !p.split(/[\\/]/).includes("..");

/** A relative path inside a package or repository: no absolute paths, no `..` segments. */
const InnerPath = text("a relative path").refine(isInnerPath, {
  error: (iss) => `${show(iss.input)} must be a relative path inside the app (no leading "/", no "..")`,
});

const noDash = (what: string) =>
  text(what)
    .min(1, { error: `expected ${what}, got an empty string` })
    .refine((s) => !s.startsWith("-"), {
      error: `must not start with "-" (it would be read as an option)`,
    });

/** An npm package name (`web`, `@acme/web`). */
export const NPM_PACKAGE = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/i;

const NpmSource = z.strictObject({
  type: z.literal("npm"),
  package: text("an npm package name")
    .regex(NPM_PACKAGE, {
      error: (iss) => `${show(iss.input)} is not an npm package name (e.g. "web" or "@acme/web")`,
    })
    .optional(),
  registry: z
    .url({ error: (iss) => `expected a registry URL like https://registry.npmjs.org/, got ${show(iss.input)}` })
    .optional(),
});

const GitSource = z.strictObject({
  type: z.literal("git"),
  url: noDash("a git URL or path"),
  ref: noDash("a branch, tag or commit").optional(),
  subdir: InnerPath.optional(),
});

/** Whether a relative path climbs above where it starts (`..`, `a/../..`); absolute paths do not. */
export const escapes = (p: string): boolean => {
  if (p.startsWith("/") || /^[A-Za-z]:[\\/]/.test(p)) return false;
  let depth = 0;
  for (const part of p.split(/[\\/]/)) {
    if (part === "..") depth--;
    else if (part !== "" && part !== ".") depth++;
    if (depth < 0) return true;
  }
  return false;
};

const PathSource = z.strictObject({
  type: z.literal("path"),
  path: text("a directory path")
    .min(1, { error: "expected a directory path, got an empty string" })
    .refine((p) => !escapes(p), {
      error: (iss) =>
        `${show(iss.input)} leaves the repository: a relative path is read from the repository root and must stay inside it; commit the app's code to the repository and give its path from the root (e.g. "services/web")`,
    }),
});

const TarballSource = z
  .strictObject({
    type: z.literal("tarball"),
    url: noDash("a tarball URL or path"),
    sha256: text("a sha256 hex digest")
      .regex(/^[0-9a-f]{64}$/i, { error: "expected 64 hex characters (sha256sum of the tarball)" })
      .optional(),
    integrity: text("an SRI integrity string")
      .regex(/^sha(256|384|512)-[A-Za-z0-9+/]+={0,2}$/, {
        error: 'expected an SRI string like "sha512-…" (the integrity field of package-lock.json)',
      })
      .optional(),
  })
  .refine((s) => s.sha256 !== undefined || s.integrity !== undefined, {
    error: "a tarball source needs sha256 or integrity, so the download can be verified",
    path: ["sha256"],
  });

/** The source types, in the order error messages list them. */
export const SOURCE_TYPES = ["npm", "git", "path", "tarball"] as const;

/** The `source: npm` shorthand, and bc_gitops's `release` source (url + sha256), which is our tarball source. */
export const sourceAliases = (v: unknown): unknown => {
  if (typeof v === "string") return { type: v };
  return isRecord(v) && v.type === "release" ? { ...v, type: "tarball" } : v;
};

/** Where an app's code comes from. */
export const Source = z.preprocess(
  sourceAliases,
  z.discriminatedUnion("type", [NpmSource, GitSource, PathSource, TarballSource], {
    error: (iss) => {
      const type = isRecord(iss.input) ? iss.input.type : undefined;
      if (type === "hex") {
        return 'source type "hex" fetches Erlang/Elixir packages from hex.pm, which bc-gitops does not install; publish the app to npm and use type: npm (or git, tarball, path)';
      }
      if (type === "mesh") {
        return 'source type "mesh" fetches from Macula\'s content system, which bc-gitops does not support; use type: npm, git, tarball or path';
      }
      if (!isRecord(iss.input))
        return `expected a mapping with a type (${SOURCE_TYPES.join(", ")}), got ${typeName(iss.input)}`;
      return `expected type to be one of ${SOURCE_TYPES.join(", ")}, got ${show(type)}`;
    },
  }),
);
/** A validated source. */
export type Source = z.output<typeof Source>;

/** The health check types. */
export const HEALTH_TYPES = ["http", "tcp", "module", "none"] as const;

/** bc_gitops's `custom` health check is our `module` one. */
export const healthTypeAlias = (v: unknown): unknown => (v === "custom" ? "module" : v);

const HealthType = z.preprocess(
  healthTypeAlias,
  z.enum(HEALTH_TYPES, {
    error: (iss) => `expected one of ${HEALTH_TYPES.join(", ")}, got ${show(iss.input)}`,
  }),
);
const HealthPath = text("a URL path").startsWith("/", { error: 'expected a URL path starting with "/"' });

/** Health check settings. */
export const Health = z.strictObject({
  type: HealthType.default("none"),
  port: Port.optional(),
  path: HealthPath.optional(),
  interval: Duration.default(30_000),
  timeout: Duration.default(5_000),
  /** bc_gitops's custom-check module name; accepted for compatibility, unused. */
  module: z.string().optional(),
});

/** Health settings an override changes: the same fields, none filled in by default. */
const HealthPatch = z.strictObject({
  type: HealthType.optional(),
  port: Port.optional(),
  path: HealthPath.optional(),
  interval: Duration.optional(),
  timeout: Duration.optional(),
  module: z.string().optional(),
});

const ICON_TYPES = ["identicon", "url", "base64"] as const;

/** The app's icon; identicon when absent. */
export const Icon = z
  .strictObject({
    type: z
      .enum(ICON_TYPES, { error: (iss) => `expected one of ${ICON_TYPES.join(", ")}, got ${show(iss.input)}` })
      .default("identicon"),
    value: text("the icon URL or base64 data").optional(),
    mime_type: text("a MIME type like image/png").optional(),
  })
  .refine((icon) => icon.type === "identicon" || icon.value !== undefined, {
    error: "a url or base64 icon needs a value",
    path: ["value"],
  });

/** The isolation levels a spec may name (`vm` is read as `process`). */
export const ISOLATIONS = ["embedded", "worker", "process", "vm"] as const;
/** The signals a process app may be told to reload with. */
export const RELOAD_SIGNALS = ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const;

/** `depends_on` entries become names whatever the format wrote (strings, atoms, `{name: x}`). */
export const dependencyNames = (v: unknown): unknown => {
  if (typeof v === "string") return [v];
  if (!Array.isArray(v)) return v;
  return v.map((d) => (isRecord(d) && typeof d.name === "string" ? d.name : d));
};

const Version = z
  .string({
    error: (iss) =>
      typeof iss.input === "number"
        ? `expected a string, got the number ${iss.input}: quote it (version: "1.0", not version: 1.0) so it is not read as a number`
        : `expected a version string like "1.0.0", got ${typeName(iss.input)}`,
  })
  .min(1, { error: 'expected a version string like "1.0.0", got an empty string' });

const Limits = z.strictObject({
  memory_mb: z
    .number({ error: (iss) => `expected megabytes as a number, got ${typeName(iss.input)}` })
    .int()
    .positive()
    .optional(),
});

const Env = z.preprocess(
  (v) => (Array.isArray(v) && v.length === 0 ? {} : v),
  z.record(z.string(), z.unknown(), {
    error: (iss) => `expected a mapping of settings, got ${typeName(iss.input)}`,
  }),
);

/** The fields an override may set (SPEC section 12); `match` says where it applies. */
export const OVERRIDE_FIELDS = ["version", "source", "env", "limits", "health"] as const;

/**
 * One entry of `overrides`: a `match` selector and the values it sets on matching hosts. A field
 * an override may not set is an error (it would otherwise be ignored on every host). `source` is a
 * mapping checked against the app's own source by {@link AppSpec} (see {@link overrideSource}).
 */
const Override = z
  .looseObject({
    match: SelectorField,
    version: Version.optional(),
    source: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
    env: Env.optional(),
    limits: Limits.optional(),
    health: HealthPatch.optional(),
  })
  .superRefine((override, ctx) => {
    for (const key of Object.keys(override)) {
      if (key === "match" || (OVERRIDE_FIELDS as readonly string[]).includes(key)) continue;
      const hint = suggest(key, OVERRIDE_FIELDS);
      const message = Object.hasOwn(AppSpecObject.shape, key)
        ? `an override cannot change ${key}; overrides may set ${OVERRIDE_FIELDS.join(", ")}`
        : `unknown key "${key}" in an override${hint ? ` (did you mean "${hint}"?)` : ""}; overrides may set ${OVERRIDE_FIELDS.join(", ")}`;
      ctx.addIssue({ code: "custom", path: [key], message });
    }
  })
  .transform(({ match, version, source, env, limits, health }) => ({
    match,
    ...(version !== undefined ? { version } : {}),
    ...(source !== undefined ? { source } : {}),
    ...(env !== undefined ? { env } : {}),
    ...(limits !== undefined ? { limits } : {}),
    ...(health !== undefined ? { health } : {}),
  }));
/** A validated override. */
export type Override = z.output<typeof Override>;

/** The app spec object, before the defaults that need other fields are filled in. */
export const AppSpecObject = z.strictObject({
  name: AppName,
  version: Version,
  description: text("a description").optional(),
  icon: Icon.optional(),
  source: Source.optional(),
  entry: InnerPath.optional(),
  isolation: z
    .enum(ISOLATIONS, { error: (iss) => `expected one of embedded, worker, process (or vm), got ${show(iss.input)}` })
    .default("embedded")
    .transform((v) => (v === "vm" ? "process" : v)),
  command: z
    .array(text("a command argument"), {
      error: (iss) => `expected a list like ["node", "server.js"], got ${typeName(iss.input)}`,
    })
    .min(1, { error: 'expected at least the program, like ["node", "server.js"]' })
    .optional(),
  limits: Limits.optional(),
  env: Env.default({}),
  health: Health.optional(),
  depends_on: z
    .preprocess(
      dependencyNames,
      z.array(AppName, { error: (iss) => `expected a list of app names, got ${typeName(iss.input)}` }),
    )
    .default([]),
  reload_signal: z.enum(RELOAD_SIGNALS, { error: "expected SIGHUP, SIGUSR1 or SIGUSR2" }).optional(),
  /** Which hosts run the app (absent: every host). */
  placement: SelectorField.optional(),
  /** Per-host values, in order; later matches win. */
  overrides: z
    .array(Override, { error: (iss) => `expected a list of { match, … } overrides, got ${typeName(iss.input)}` })
    .optional(),
  /** Staged rollout of the app's changes across hosts. */
  rollout: RolloutField.optional(),
});

/** The app spec: validates a parsed spec file and fills in every default (SPEC section 2). */
export const AppSpec = AppSpecObject.superRefine((spec, ctx) => {
  const seen = new Set<string>();
  spec.depends_on.forEach((dep, i) => {
    if (dep === spec.name)
      ctx.addIssue({ code: "custom", path: ["depends_on", i], message: "an app cannot depend on itself" });
    else if (seen.has(dep))
      ctx.addIssue({ code: "custom", path: ["depends_on", i], message: `"${dep}" is listed twice` });
    seen.add(dep);
  });
  // An override's source is merged into the app's: the result must be a valid source on its own.
  spec.overrides?.forEach((override, i) => {
    if (override.source === undefined) return;
    const source = overrideSource(spec.source, override.source) as { type?: unknown };
    for (const issue of Source.safeParse(source).error?.issues ?? []) {
      const at = ["overrides", i, "source", ...issue.path];
      if (issue.code !== "unrecognized_keys") ctx.addIssue({ code: "custom", path: at, message: issue.message });
      for (const key of issue.code === "unrecognized_keys" ? issue.keys : []) {
        const takers = Object.keys(SOURCE_KEYS).filter((t) => SOURCE_KEYS[t]!.includes(key));
        const by = takers.length ? `: ${key} is used by ${takers.join(" and ")} sources` : "";
        const message = `unknown key "${key}" for source type ${String(source.type)}${by} (the override is merged into the app's source)`;
        ctx.addIssue({ code: "custom", path: [...at, key], message });
      }
    }
  });
}).transform(withDefaults);

/**
 * The defaults that depend on other fields: an npm source's package is the app's name, a missing
 * health check is `none`, `health.path` is `/`. Applied again to a spec changed by overrides.
 */
export function withDefaults<T extends z.output<typeof AppSpecObject>>(spec: T) {
  const source: Source = spec.source ?? { type: "npm" };
  // `health.port` stays unset when not given: the app is then checked where it listens (`_address.ts`).
  const health: z.output<typeof Health> = spec.health ?? { type: "none", interval: 30_000, timeout: 5_000 };
  return {
    ...spec,
    source: source.type === "npm" ? { ...source, package: source.package ?? spec.name } : source,
    health: { ...health, path: health.path ?? "/" },
  };
}

/**
 * The source an override makes of `base` (the app's own, npm when absent): an override without a
 * `type`, or with the app's type, changes only the keys it gives (`{ ref: v2 }` on a git source);
 * one with another type replaces the source. Not validated here: parse the result with {@link Source}.
 */
export function overrideSource(base: Source | undefined, patch: string | Record<string, unknown>): unknown {
  const from: Record<string, unknown> = { ...(base ?? { type: "npm" }) };
  const change: Record<string, unknown> = typeof patch === "string" ? { type: patch } : patch;
  const type = change.type === "release" ? "tarball" : change.type;
  if (type !== undefined && type !== from.type) return change;
  return { ...from, ...change, type: from.type };
}

/**
 * A validated app spec with every default filled in. `secrets` is never written in a spec file: the
 * loader attaches it (the app's secrets file and a digest per secret key, see `secrets/`).
 */
export type AppSpec = z.output<typeof AppSpec> & { secrets?: AppSecrets };
/** What a spec file may contain (before defaults). */
export type AppSpecInput = z.input<typeof AppSpec>;

/** Known keys per object path, for unknown-key warnings with a did-you-mean hint. */
export const KNOWN_KEYS: Readonly<Record<string, readonly string[]>> = {
  "": Object.keys(AppSpecObject.shape),
  source: [...new Set([NpmSource, GitSource, PathSource, TarballSource].flatMap(keysOf))],
  health: Object.keys(Health.shape),
  icon: ["type", "value", "mime_type"],
  limits: ["memory_mb"],
};

/** The schema of each source type. */
export const SOURCE_VARIANTS = { npm: NpmSource, git: GitSource, path: PathSource, tarball: TarballSource } as const;

/** The keys each source type takes, to say which type an unknown source key belongs to. */
export const SOURCE_KEYS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(SOURCE_VARIANTS).map(([type, schema]) => [type, keysOf(schema)]),
);

function keysOf(schema: unknown): string[] {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Whether the code under `spec` can change without its spec changing: a path source (its files) or
 * a git source tracking a branch or tag rather than a full commit. Their revision must be resolved
 * to see same-version code changes (hot reload).
 */
export function hasFloatingSource(spec: AppSpec): boolean {
  return spec.source.type === "path" || (spec.source.type === "git" && !/^[0-9a-f]{40}$/.test(spec.source.ref ?? ""));
}

/**
 * A JSON Schema (draft 2020-12) of the spec file, for editors and the YAML language server
 * (`bc-gitops schema`): zod's own, patched by {@link editorSchema} where zod cannot say what
 * `validate` accepts.
 */
export function appSpecJsonSchema(): Record<string, unknown> {
  const { $schema, description, ...rest } = editorSchema(
    z.toJSONSchema(AppSpecObject, { io: "input", unrepresentable: "any" }),
  );
  return {
    $schema,
    $id: "https://bc-gitops.dev/schema/app-spec.json",
    title: "bc-gitops app spec",
    description,
    ...rest,
  };
}
