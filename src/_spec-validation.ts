/**
 * Validating one spec file's text: parsing, the schema, unknown keys (warnings with a did-you-mean
 * hint), and semantic warnings, every issue at the line and field it is about. The loader runs it
 * on each file of an apps directory.
 */
import type { z } from "zod";
import { plainSpec } from "./_spec-fast.ts";
import { AppSpec, KNOWN_KEYS, SOURCE_KEYS } from "./spec.ts";
import { SpecSyntaxError, parseSpecText, type ParsedFile, type SpecFormat } from "./spec-file.ts";
import { suggest } from "./suggest.ts";

/** One problem in a spec file's text, at its line and column when known. */
export interface FileIssue {
  line?: number;
  column?: number;
  /** The field path, e.g. `health.interval` or `depends_on[1]`. */
  path?: string;
  message: string;
}

/** What validating one spec file found: the spec when it is valid, and every error and warning. */
export interface FileResult {
  spec?: AppSpec;
  /** The `name` the file gives, even when the rest is invalid. */
  name?: string;
  errors: FileIssue[];
  warnings: FileIssue[];
}

/** Parses and validates one spec file's text (exported for tests and `validate` of a single file). */
export async function validateText(text: string, format: SpecFormat): Promise<FileResult> {
  let parsed: ParsedFile;
  try {
    parsed = await parseSpecText(text, format);
  } catch (error) {
    if (!(error instanceof SpecSyntaxError)) throw error;
    return { errors: [{ ...position(error), message: error.message }], warnings: [] };
  }
  const { value } = parsed;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    const got =
      value === null ? "nothing" : Array.isArray(value) ? "a list" : `the ${typeof value} ${JSON.stringify(value)}`;
    return {
      errors: [
        { ...(await parsed.locate([])), message: `expected a mapping of spec fields (name, version, …), got ${got}` },
      ],
      warnings: [],
    };
  }
  const input = dropNulls(value as Record<string, unknown>);
  const name = typeof input.name === "string" ? input.name : undefined;
  // Most files take one plain shape: validated without zod's cold start (see _spec-fast.ts).
  const plain = plainSpec(input);
  if (plain) return { spec: plain, name, errors: [], warnings: await lint(plain, parsed) };
  const warnings: FileIssue[] = [];
  let outcome = AppSpec.safeParse(input);
  // Unknown keys are warnings (real bc_gitops repos carry extra keys such as `license`): report, drop, validate again.
  if (!outcome.success && outcome.error.issues.some((i) => i.code === "unrecognized_keys")) {
    for (const issue of outcome.error.issues) {
      if (issue.code !== "unrecognized_keys") continue;
      const known = KNOWN_KEYS[issue.path.join(".")] ?? [];
      for (const key of issue.keys) {
        warnings.push({
          ...(await parsed.locate([...issue.path, key], "key")),
          path: formatPath([...issue.path, key]),
          message: `${unknownKey(key, issue.path, input, known)}; it is ignored`,
        });
        deleteAt(input, [...issue.path, key]);
      }
    }
    outcome = AppSpec.safeParse(input);
  }
  if (!outcome.success) {
    return { name, errors: await Promise.all(outcome.error.issues.map((i) => toIssue(i, parsed))), warnings };
  }
  return {
    spec: outcome.data,
    name,
    errors: [],
    warnings: [...warnings, ...(await lint(outcome.data, parsed))],
  };
}

/**
 * `unknown key "x"` with a did-you-mean hint. A source key is matched against the keys of its own
 * type, and a key that only another type takes says which (`url` on an npm source).
 */
function unknownKey(
  key: string,
  at: readonly PropertyKey[],
  input: Record<string, unknown>,
  known: readonly string[],
): string {
  const source = at.length === 1 && at[0] === "source" ? (input.source as { type?: unknown } | undefined) : undefined;
  const type = source?.type === "release" ? "tarball" : source?.type;
  const own = typeof type === "string" && Object.hasOwn(SOURCE_KEYS, type) ? SOURCE_KEYS[type]! : undefined;
  if (!own) {
    const hint = suggest(key, known);
    return `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ""}`;
  }
  const takers = Object.keys(SOURCE_KEYS).filter((t) => SOURCE_KEYS[t]!.includes(key));
  if (takers.length > 0)
    return `unknown key "${key}" for source type ${type}: ${key} is used by ${takers.join(" and ")} sources`;
  const hint = suggest(key, own);
  return `unknown key "${key}" for source type ${type}${hint ? ` (did you mean "${hint}"?)` : ""}`;
}

/** Semantic warnings: fields that are valid but have no effect as written. */
async function lint(spec: AppSpec, parsed: ParsedFile): Promise<FileIssue[]> {
  const out: FileIssue[] = [];
  if (spec.command && spec.isolation !== "process") {
    out.push({
      ...(await parsed.locate(["command"])),
      path: "command",
      message: `command is only used with isolation: process (this app is ${spec.isolation}); it is ignored`,
    });
  }
  if (spec.reload_signal && spec.isolation !== "process") {
    out.push({
      ...(await parsed.locate(["reload_signal"])),
      path: "reload_signal",
      message: `reload_signal is only used with isolation: process (this app is ${spec.isolation}); it is ignored`,
    });
  }
  if (spec.limits && spec.isolation === "embedded") {
    out.push({
      ...(await parsed.locate(["limits"])),
      path: "limits",
      message: "limits apply to worker and process isolation only; embedded apps share the agent's heap",
    });
  }
  return out;
}

async function toIssue(issue: z.core.$ZodIssue, parsed: ParsedFile): Promise<FileIssue> {
  const path = issue.code === "invalid_union" && issue.path.at(-1) === "source" ? [...issue.path, "type"] : issue.path;
  return { ...(await parsed.locate(path)), ...(path.length ? { path: formatPath(path) } : {}), message: issue.message };
}

/** `["depends_on", 1]` -> `depends_on[1]`, `["health", "interval"]` -> `health.interval`. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, part) => (typeof part === "number" ? `${out}[${part}]` : out ? `${out}.${String(part)}` : String(part)),
    "",
  );
}

function position(error: SpecSyntaxError): { line?: number; column?: number } {
  return error.line === undefined
    ? {}
    : { line: error.line, ...(error.column === undefined ? {} : { column: error.column }) };
}

/** Erlang `undefined` and YAML `~` mean "not set": drop them, except inside `env` where null is a value (the input of the schema). */
export function dropNulls(value: Record<string, unknown>, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === null || v === undefined) continue;
    out[key] =
      depth < 2 && key !== "env" && typeof v === "object" && !Array.isArray(v)
        ? dropNulls(v as Record<string, unknown>, depth + 1)
        : v;
  }
  return out;
}

function deleteAt(target: Record<string, unknown>, path: readonly PropertyKey[]): void {
  let node: unknown = target;
  for (const part of path.slice(0, -1)) node = (node as Record<PropertyKey, unknown>)?.[part];
  if (node && typeof node === "object") delete (node as Record<PropertyKey, unknown>)[path.at(-1)!];
}
