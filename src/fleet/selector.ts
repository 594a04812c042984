/**
 * Selectors (`placement`, and each override's `match`): which hosts an app, or a value, is for.
 * A selector is `{ hosts?: [glob], exclude_hosts?: [glob], labels?: { k: v }, expressions?: [...] }`
 * and every part given must match. This module reads one from a spec (every mistake an issue at its
 * field), matches it against a {@link HostIdentity}, and says why it does not match.
 */
import { z } from "zod";
import { suggest } from "../suggest.ts";
import { HOST_CHARS, labelKeyProblem, labelValueProblem, type HostIdentity } from "./host.ts";

/** The parts of a selector. */
export const SELECTOR_KEYS = ["hosts", "exclude_hosts", "labels", "expressions"] as const;

/** Set operators of a selector expression. */
export const OPERATORS = ["in", "notin", "exists", "doesnotexist"] as const;
/** A set operator. */
export type Operator = (typeof OPERATORS)[number];

/** One set expression: `region in [eu, us]`, `tier notin [canary]`, `gpu exists`, `gpu doesnotexist`. */
export interface Expression {
  key: string;
  operator: Operator;
  values: string[];
}

/** A validated selector. An empty one matches every host. */
export interface Selector {
  hosts?: string[];
  exclude_hosts?: string[];
  labels?: Record<string, string>;
  expressions?: Expression[];
}

/** A problem in a selector, at its path inside the selector. */
export interface SelectorIssue {
  path: (string | number)[];
  message: string;
}

/**
 * A selector field of the spec schema: reads the value with {@link readSelector} and reports every
 * issue at its own path (`placement.hosts[1]`). Unknown keys are errors, not warnings: a misspelt
 * part would otherwise be ignored and the selector match every host.
 */
export const SelectorField = z.unknown().transform((value, ctx): Selector => {
  const { selector, issues } = readSelector(value);
  for (const issue of issues) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
  return issues.length ? z.NEVER : selector;
});

/** Reads a selector as a spec writes it; `issues` is empty when it is valid. */
export function readSelector(value: unknown): { selector: Selector; issues: SelectorIssue[] } {
  const issues: SelectorIssue[] = [];
  const selector: Selector = {};
  if (!isRecord(value)) {
    issues.push({ path: [], message: `expected a selector mapping (${SELECTOR_KEYS.join(", ")}), got ${kind(value)}` });
    return { selector, issues };
  }
  for (const [key, part] of Object.entries(value)) {
    if (part === null || part === undefined) continue;
    if (key === "hosts" || key === "exclude_hosts") {
      const globs = readList(part, [key], issues, "host-name globs");
      globs.forEach((glob, i) => {
        const problem = globProblem(glob);
        if (problem) issues.push({ path: [key, i], message: problem });
      });
      selector[key] = globs;
    } else if (key === "labels") {
      selector.labels = readLabels(part, issues);
    } else if (key === "expressions") {
      selector.expressions = readExpressions(part, issues);
    } else {
      const hint = suggest(key, SELECTOR_KEYS);
      issues.push({
        path: [key],
        message: `unknown key "${key}" in a selector${hint ? ` (did you mean "${hint}"?)` : ""}; a selector takes ${SELECTOR_KEYS.join(", ")}`,
      });
    }
  }
  return { selector, issues };
}

/** Whether `identity` matches every part `selector` gives (an empty selector matches every host). */
export function matches(selector: Selector, identity: HostIdentity): boolean {
  return mismatch(selector, identity) === undefined;
}

/**
 * Why `identity` does not match `selector` (the first part that fails, e.g. `label role is "api",
 * not "web"`), or `undefined` when it matches.
 */
export function mismatch(selector: Selector, identity: HostIdentity): string | undefined {
  const { host, labels } = identity;
  if (selector.hosts && !selector.hosts.some((glob) => globMatches(glob, host)))
    return `host ${host} is not in hosts [${selector.hosts.join(", ")}]`;
  const excluded = selector.exclude_hosts?.find((glob) => globMatches(glob, host));
  if (excluded !== undefined) return `host ${host} is excluded by exclude_hosts ${excluded}`;
  for (const [key, want] of Object.entries(selector.labels ?? {})) {
    const have = own(labels, key);
    if (have !== want) return `label ${key} is ${have === undefined ? "not set" : JSON.stringify(have)}, not "${want}"`;
  }
  for (const { key, operator, values } of selector.expressions ?? []) {
    const have = own(labels, key);
    const set = `[${values.join(", ")}]`;
    if (operator === "exists" && have === undefined) return `label ${key} is not set`;
    if (operator === "doesnotexist" && have !== undefined) return `label ${key} is set (${JSON.stringify(have)})`;
    if (operator === "in" && (have === undefined || !values.includes(have)))
      return `label ${key} is ${have === undefined ? "not set" : JSON.stringify(have)}, not in ${set}`;
    if (operator === "notin" && have !== undefined && values.includes(have))
      return `label ${key} is ${JSON.stringify(have)}, which is in ${set}`;
  }
  return undefined;
}

/** `role=web, region in [eu, us], hosts web-*`: a selector in one line, for status and messages. */
export function describeSelector(selector: Selector): string {
  const parts = [
    ...(selector.hosts ? [`hosts ${selector.hosts.join(", ")}`] : []),
    ...(selector.exclude_hosts ? [`not hosts ${selector.exclude_hosts.join(", ")}`] : []),
    ...Object.entries(selector.labels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(selector.expressions ?? []).map(({ key, operator, values }) =>
      values.length ? `${key} ${operator} [${values.join(", ")}]` : `${key} ${operator}`,
    ),
  ];
  return parts.length ? parts.join(", ") : "every host";
}

/**
 * Whether a host-name glob matches `host` (case-insensitive, like host names): `*` is any run of
 * characters, `?` one character, `[abc]`/`[a-z]` one of a set, `[!abc]` one not in it.
 */
export function globMatches(glob: string, host: string): boolean {
  return globRegExp(glob).test(host);
}

const compiled = new Map<string, RegExp>();

function globRegExp(glob: string): RegExp {
  let re = compiled.get(glob);
  if (!re) {
    const body = tokens(glob)
      .map((t) =>
        t.kind === "star"
          ? ".*"
          : t.kind === "one"
            ? "."
            : t.kind === "set"
              ? `[${t.negated ? "^" : ""}${t.body.replace(/[\\\]^]/g, "\\$&")}]`
              : t.text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&"),
      )
      .join("");
    re = new RegExp(`^${body}$`, "i");
    if (compiled.size > 1000) compiled.clear();
    compiled.set(glob, re);
  }
  return re;
}

type Token =
  { kind: "star" } | { kind: "one" } | { kind: "set"; body: string; negated: boolean } | { kind: "text"; text: string };

/** A glob's parts; throws on an unclosed `[` (see {@link globProblem}). */
function tokens(glob: string): Token[] {
  const out: Token[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") out.push({ kind: "star" });
    else if (c === "?") out.push({ kind: "one" });
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) throw new Error(`unclosed "[" in ${JSON.stringify(glob)}`);
      const negated = glob[i + 1] === "!" || glob[i + 1] === "^";
      out.push({ kind: "set", body: glob.slice(i + (negated ? 2 : 1), end), negated });
      i = end;
    } else out.push({ kind: "text", text: c });
  }
  return out;
}

/**
 * Why a host-name glob can never match a valid host name (empty, an unclosed `[`, a character no
 * host name holds, a first character a host name cannot start with), or `undefined`.
 */
export function globProblem(glob: string): string | undefined {
  const cannot = `${JSON.stringify(glob)} cannot match any host name`;
  if (glob === "") return `${cannot}: it is empty`;
  let parts: Token[];
  try {
    parts = tokens(glob);
  } catch (error) {
    return `${cannot}: ${(error as Error).message}`;
  }
  for (const part of parts) {
    if (part.kind === "text" && !HOST_CHARS.test(part.text))
      return `${cannot}: ${JSON.stringify(part.text)} is not allowed in host names (letters, digits, "-", "_" and ".")`;
    if (part.kind === "set" && !part.negated && ![...expandSet(part.body)].some((c) => HOST_CHARS.test(c)))
      return `${cannot}: [${part.body}] holds no character allowed in host names`;
  }
  const first = parts[0]!;
  if (first.kind === "text" && !/^[a-z0-9]$/i.test(first.text))
    return `${cannot}: host names start with a letter or digit`;
  if (parts.filter((p) => p.kind !== "star").length > 253) return `${cannot}: host names have at most 253 characters`;
  return undefined;
}

/** The characters of a `[...]` set body (`a-c` expanded). */
function expandSet(body: string): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < body.length; i++) {
    if (body[i + 1] === "-" && i + 2 < body.length) {
      for (let c = body.charCodeAt(i); c <= body.charCodeAt(i + 2); c++) out.add(String.fromCharCode(c));
      i += 2;
    } else out.add(body[i]!);
  }
  return out;
}

function readList(value: unknown, path: (string | number)[], issues: SelectorIssue[], what: string): string[] {
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list)) {
    issues.push({ path, message: `expected a list of ${what}, got ${kind(value)}` });
    return [];
  }
  const out: string[] = [];
  list.forEach((item, i) => {
    const text = scalar(item);
    if (text === undefined) issues.push({ path: [...path, i], message: `expected text, got ${kind(item)}` });
    else out.push(text);
  });
  return out;
}

function readLabels(value: unknown, issues: SelectorIssue[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(value)) {
    issues.push({ path: ["labels"], message: `expected a mapping of label: value, got ${kind(value)}` });
    return out;
  }
  for (const [key, raw] of Object.entries(value)) {
    const text = scalar(raw);
    const problem =
      labelKeyProblem(key) ??
      (text === undefined ? `expected a label value (text), got ${kind(raw)}` : labelValueProblem(text));
    if (problem) issues.push({ path: ["labels", key], message: problem });
    else out[key] = text!;
  }
  return out;
}

function readExpressions(value: unknown, issues: SelectorIssue[]): Expression[] {
  if (!Array.isArray(value)) {
    issues.push({
      path: ["expressions"],
      message: `expected a list of expressions like "region in [eu, us]" or { key, operator, values }, got ${kind(value)}`,
    });
    return [];
  }
  const out: Expression[] = [];
  value.forEach((item, i) => {
    const path = ["expressions", i];
    const before = issues.length;
    const expression =
      typeof item === "string" ? parseExpression(item, path, issues) : objectExpression(item, path, issues);
    if (expression && issues.length === before) out.push(expression);
  });
  return out;
}

/** `region in [eu, us]`, `tier notin (canary)`, `gpu exists`, `gpu doesnotexist`, `!gpu`. */
function parseExpression(text: string, path: (string | number)[], issues: SelectorIssue[]): Expression | undefined {
  const source = text.trim();
  const negated = /^!\s*([^\s]+)$/.exec(source);
  if (negated) return checked({ key: negated[1]!, operator: "doesnotexist", values: [] }, path, issues, text);
  const m = /^(\S+?)\s+(\S+?)\s*(?:([[(])(.*)([\])]))?$/.exec(source);
  if (!m) {
    const equality = /^([^\s=!]+)\s*!?==?\s*(\S*)$/.exec(source);
    issues.push({
      path,
      message: equality
        ? `${JSON.stringify(text)}: write label equality under labels (labels: { ${equality[1]}: ${equality[2] || "value"} }), or an expression like "${equality[1]} in [${equality[2] || "value"}]"`
        : `${JSON.stringify(text)} is not an expression: write "key in [a, b]", "key notin [a]", "key exists" or "key doesnotexist"`,
    });
    return undefined;
  }
  const values =
    m[4] === undefined
      ? []
      : m[4]
          .split(",")
          .map((v) => v.trim().replace(/^(["'])(.*)\1$/, "$2"))
          .filter((v) => v !== "");
  return checked({ key: m[1]!, operator: m[2]! as Operator, values }, path, issues, text, m[3] !== undefined);
}

function objectExpression(item: unknown, path: (string | number)[], issues: SelectorIssue[]): Expression | undefined {
  if (!isRecord(item)) {
    issues.push({
      path,
      message: `expected an expression like "region in [eu, us]" or { key, operator, values }, got ${kind(item)}`,
    });
    return undefined;
  }
  for (const key of Object.keys(item)) {
    if (!["key", "operator", "values"].includes(key)) {
      const hint = suggest(key, ["key", "operator", "values"]);
      issues.push({
        path: [...path, key],
        message: `unknown key "${key}" in an expression${hint ? ` (did you mean "${hint}"?)` : ""}; an expression takes key, operator and values`,
      });
    }
  }
  const key = scalar(item.key);
  const operator = scalar(item.operator);
  if (key === undefined)
    issues.push({ path: [...path, "key"], message: `expected a label key, got ${kind(item.key)}` });
  if (operator === undefined)
    issues.push({
      path: [...path, "operator"],
      message: `expected one of ${OPERATORS.join(", ")}, got ${kind(item.operator)}`,
    });
  if (key === undefined || operator === undefined) return undefined;
  const values =
    item.values === undefined || item.values === null
      ? []
      : readList(item.values, [...path, "values"], issues, "label values");
  return checked({ key, operator: operator as Operator, values }, path, issues, undefined, item.values != null);
}

/** Checks an expression's key, operator and values, reporting at `path` (quoting `text` when it was one string). */
function checked(
  expression: Expression,
  path: (string | number)[],
  issues: SelectorIssue[],
  text?: string,
  valuesGiven = expression.values.length > 0,
): Expression | undefined {
  const { key, operator, values } = expression;
  const at = (field: string) => (text === undefined ? [...path, field] : path);
  const quote = text === undefined ? "" : `${JSON.stringify(text)}: `;
  const keyProblem = labelKeyProblem(key);
  if (keyProblem) {
    issues.push({ path: at("key"), message: `${quote}${keyProblem}` });
    return undefined;
  }
  if (!(OPERATORS as readonly string[]).includes(operator)) {
    const hint = suggest(operator, OPERATORS);
    issues.push({
      path: at("operator"),
      message: `${quote}unknown selector operator ${JSON.stringify(operator)}${hint ? ` (did you mean "${hint}"?)` : ""}; use ${OPERATORS.join(", ")}`,
    });
    return undefined;
  }
  const takesValues = operator === "in" || operator === "notin";
  if (takesValues && values.length === 0) {
    issues.push({
      path: at("values"),
      message: `${quote}${operator} needs at least one value, like "${key} ${operator} [a, b]"`,
    });
    return undefined;
  }
  if (!takesValues && valuesGiven) {
    issues.push({ path: at("values"), message: `${quote}${operator} takes no values` });
    return undefined;
  }
  const badValue = values.map(labelValueProblem).find((p) => p !== undefined);
  if (badValue) {
    issues.push({ path: at("values"), message: `${quote}${badValue}` });
    return undefined;
  }
  return expression;
}

/** Label values are text; YAML's `canary: true` or `zone: 3` mean the text "true" and "3". */
function scalar(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "boolean") return String(value);
  return undefined;
}

function kind(value: unknown): string {
  if (value === undefined || value === null) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `the ${typeof value} ${JSON.stringify(value)}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function own(record: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
