/**
 * Reading one spec file: picking it by name, decoding it, and parsing YAML, JSON or Erlang terms
 * into a plain value plus a `locate(path)` that maps a field path back to a line and column.
 */
import type { Document, Node } from "yaml";
import { nativeYamlParse } from "./_platform.ts";
import { MAX_NESTING, TOO_DEEP, checkValue, tooDeepJson } from "./_spec-limits.ts";
import { ErlangSyntaxError, parseErlangTerms } from "./erlang.ts";

export { MAX_NESTING, MAX_VALUES } from "./_spec-limits.ts";

/** Spec file names in priority order: the first one present in an app directory wins (as in bc_gitops). */
export const SPEC_FILE_NAMES = [
  "app.config",
  "app.yaml",
  "app.yml",
  "app.json",
  "config.yaml",
  "config.yml",
  "config.json",
  "config",
] as const;

/** The largest spec file bc-gitops reads; a spec is a few hundred bytes, anything this big is a mistake. */
export const MAX_SPEC_BYTES = 1024 * 1024;

/** A spec file's format, from its name. */
export type SpecFormat = "yaml" | "json" | "erlang";

/** A 1-based position in a file. */
export interface Position {
  line: number;
  column: number;
}

/** A parsed spec file: its value and a way back from a field path to where it was written. */
export interface ParsedFile {
  value: unknown;
  /**
   * Where the value at `path` (or its nearest written ancestor) starts, or with `"key"` where its
   * key is written (YAML and JSON; Erlang terms give the value). Async: it may need a full parse.
   */
  locate(path: readonly PropertyKey[], at?: "key" | "value"): Promise<Position | undefined>;
}

// The `yaml` package costs ~30 ms to import; on Bun the native parser serves every valid file, so it
// is loaded only when a file needs positions or is not plain.
let yamlModule: Promise<typeof import("yaml")> | undefined;
const loadYaml = () => (yamlModule ??= import("yaml"));

/** A file that cannot be read as a spec at all (bad syntax, not text, too large). */
export class SpecSyntaxError extends Error {
  readonly line: number | undefined;
  readonly column: number | undefined;
  constructor(message: string, position?: Partial<Position>) {
    super(message);
    this.name = "SpecSyntaxError";
    this.line = position?.line;
    this.column = position?.column;
  }
}

/** The format a spec file name implies. */
export function formatOf(fileName: string): SpecFormat {
  if (fileName.endsWith(".json")) return "json";
  if (fileName.endsWith(".yaml") || fileName.endsWith(".yml")) return "yaml";
  return "erlang";
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes a spec file's bytes, refusing binary content with a message that says what is wrong. */
export function decodeSpec(bytes: Uint8Array): string {
  if (bytes.length > MAX_SPEC_BYTES) {
    throw new SpecSyntaxError(
      `file is ${(bytes.length / 1048576).toFixed(1)} MB; a spec file may be at most 1 MB (is this the right file?)`,
    );
  }
  if (bytes.includes(0)) throw new SpecSyntaxError("file contains NUL bytes: a spec file must be UTF-8 text");
  try {
    return utf8.decode(bytes).replace(/^\uFEFF/, "");
  } catch {
    throw new SpecSyntaxError("file is not valid UTF-8 text");
  }
}

/**
 * Parses a spec file's text. Throws {@link SpecSyntaxError} with a position where the format tells
 * one, also when the value nests deeper than {@link MAX_NESTING} or holds more than
 * {@link MAX_VALUES} values (aliases counted where they are used): the value returned is safe to
 * walk, store and serve.
 */
export async function parseSpecText(text: string, format: SpecFormat): Promise<ParsedFile> {
  if (text.trim() === "") throw new SpecSyntaxError("file is empty: expected the app's spec (name, version, …)");
  switch (format) {
    case "yaml":
      return parseYaml(text);
    case "json":
      return parseJson(text);
    case "erlang": {
      let parsed: ParsedFile;
      try {
        const terms = parseErlangTerms(text);
        parsed = { value: terms.value, locate: async (path) => terms.locate(path as readonly (string | number)[]) };
      } catch (error) {
        if (error instanceof ErlangSyntaxError) throw new SpecSyntaxError(error.message, error);
        throw error;
      }
      return checked(parsed);
    }
  }
}

/** `parsed`, once its value is within the shape limits; else the error, where the value is. */
async function checked(parsed: ParsedFile): Promise<ParsedFile> {
  const problem = checkValue(parsed.value);
  if (problem) throw new SpecSyntaxError(problem.message, await parsed.locate(problem.path));
  return parsed;
}

/** A `locate` that answers `undefined` rather than throwing: finding a position is never the error. */
function safe(locate: ParsedFile["locate"]): ParsedFile["locate"] {
  return (path, at) => locate(path, at).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// YAML

async function parseYaml(text: string): Promise<ParsedFile> {
  if (nativeYamlParse && !needsFullYaml(text)) {
    try {
      const value = nativeYamlParse(text);
      // Bun returns every document of a multi-document stream; the spec is the first one only.
      // A value over the shape limits goes to the yaml package too, which says where it is.
      if ((!Array.isArray(value) || !/^(---|\.\.\.)/m.test(text)) && !checkValue(value)) {
        let full: Promise<ParsedFile> | undefined;
        return { value, locate: safe(async (path, at) => (await (full ??= composeYaml(text))).locate(path, at)) };
      }
    } catch {
      // The yaml package gives the error with its position (Bun throws a RangeError past ≈5000 levels).
    }
  }
  return parseYamlDocument(text);
}

/**
 * Input the native parser would read differently from the `yaml` package: anchors (alias bombs)
 * and possibly duplicated keys (native parsing keeps the last one silently; we report them).
 */
function needsFullYaml(text: string): boolean {
  if (/(?:^|[\s[{,])&\S/.test(text)) return true;
  const levels: Array<Set<string> | undefined> = [];
  for (const line of text.split("\n")) {
    const m = /^( *)(- +)?("[^"]*"|'[^']*'|[^\s#"'{}[\],&*!|>%@`-][^:#]*?)\s*:(?:\s|$)/.exec(line);
    if (!m) continue;
    const indent = m[1]!.length + (m[2]?.length ?? 0);
    if (m[2]) levels.length = m[1]!.length + 1; // a sequence item starts a new mapping
    levels.length = Math.min(levels.length, indent + 1);
    const keys = (levels[indent] ??= new Set());
    if (keys.has(m[3]!)) return true;
    keys.add(m[3]!);
  }
  return false;
}

async function parseYamlDocument(text: string): Promise<ParsedFile> {
  return checked(await composeYaml(text));
}

/**
 * The first document of a YAML (or JSON) text, parsed by the yaml package with positions; the
 * nesting depth is checked, the number of values is not (see {@link parseYamlDocument}).
 */
async function composeYaml(text: string): Promise<ParsedFile> {
  const yaml = await loadYaml();
  const { Composer, Lexer, LineCounter, Parser, isCollection, isMap, isNode, isScalar } = yaml;
  const lineCounter = new LineCounter();
  const where = (offset: number): Position => {
    const at = lineCounter.linePos(offset);
    return { line: at.line, column: at.col };
  };
  // parseAllDocuments, with the CST's depth checked after every token: composing and converting
  // recurse once per level, so nothing deeper than MAX_NESTING reaches them.
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  function* tokens() {
    for (const lexeme of new Lexer().lex(text)) {
      yield* parser.next(lexeme);
      if (parser.stack.length > MAX_NESTING + 1) {
        const open = parser.stack.filter(
          (t) => t.type === "block-map" || t.type === "block-seq" || t.type === "flow-collection",
        );
        if (open.length > MAX_NESTING) throw new SpecSyntaxError(TOO_DEEP, where(open[MAX_NESTING]!.offset));
      }
    }
    yield* parser.end();
  }
  const docs = [...new Composer({ merge: true, uniqueKeys: true }).compose(tokens())];
  const doc = docs[0] as Document | undefined;
  if (!doc) return { value: null, locate: async () => undefined };
  const problem = doc.errors[0];
  if (problem) {
    throw new SpecSyntaxError(
      `invalid YAML: ${problem.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`,
      where(problem.pos[0]),
    );
  }
  let value: unknown;
  try {
    // yaml's own alias limit also stops merge-key (`<<`) bombs, which would otherwise take exponential time.
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    const culprit = conversionCulprit(yaml, doc, error);
    throw new SpecSyntaxError(culprit.message, culprit.node?.range ? where(culprit.node.range[0]) : undefined);
  }
  return {
    value,
    locate: safe(async (path, at = "value") => {
      if (at === "key" && path.length > 0) {
        const parent = doc.getIn(path.slice(0, -1) as unknown[], true);
        const pair = isMap(parent)
          ? parent.items.find((p) => isScalar(p.key) && p.key.value === path.at(-1))
          : undefined;
        const offset = isNode(pair?.key) ? pair.key.range?.[0] : undefined;
        if (offset !== undefined) {
          const pos = lineCounter.linePos(offset);
          return { line: pos.line, column: pos.col };
        }
      }
      for (let n = path.length; n >= 0; n--) {
        const node = doc.getIn(path.slice(0, n) as unknown[], true);
        const offset = isNode(node) ? node.range?.[0] : undefined;
        if (offset !== undefined) {
          const at = lineCounter.linePos(offset);
          return { line: at.line, column: at.col };
        }
        // A key whose value is absent: point at the parent collection.
        if (n > 0 && isCollection(doc.getIn(path.slice(0, n - 1) as unknown[], true))) continue;
      }
      return undefined;
    }),
  };
}

/**
 * Why converting a composed document failed, and the node to blame: the alias that expands the
 * most (an alias bomb), an alias with no anchor, or a `<<` merge of something not a mapping.
 */
function conversionCulprit(
  yaml: typeof import("yaml"),
  doc: Document,
  error: unknown,
): { message: string; node?: Node } {
  const { isAlias, isCollection, isMap, isNode, isPair, isScalar, isSeq, visit } = yaml;
  const reason = error instanceof Error ? error.message : String(error);
  const sizes = new Map<unknown, number>();
  // Aliases only point backwards, and visit() goes in document order, so every alias inside an
  // anchored value was sized before the value itself: the recursion stays as deep as the CST.
  const sizeOf = (node: unknown): number => {
    const target = isAlias(node) ? node.resolve(doc) : node;
    if (!isCollection(target)) return 1;
    const known = sizes.get(target);
    if (known !== undefined) return known;
    sizes.set(target, 1); // an alias inside its own anchor
    let n = 1;
    for (const item of target.items as unknown[])
      n += isPair(item) ? sizeOf(item.key) + sizeOf(item.value) : sizeOf(item);
    sizes.set(target, Math.min(n, Number.MAX_SAFE_INTEGER));
    return sizes.get(target)!;
  };
  let worst: { node: Node; size: number } | undefined;
  let unresolved: Node | undefined;
  let badMerge: Node | undefined;
  visit(doc, {
    Alias(_, node) {
      if (!node.resolve(doc)) unresolved ??= node;
      const size = sizeOf(node);
      if (!worst || size > worst.size) worst = { node, size };
    },
    Pair(_, pair) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      if (badMerge || (key !== "<<" && !(typeof key === "symbol" && key.description === "<<"))) return;
      const sources: unknown[] = isSeq(pair.value) ? pair.value.items : [pair.value];
      const bad = sources.find((s) => !isMap(isAlias(s) ? s.resolve(doc) : s));
      if (bad !== undefined) badMerge = isNode(bad) ? bad : isNode(pair.value) ? pair.value : undefined;
    },
  });
  if (/alias count/i.test(reason) && worst) {
    const name = (worst.node as unknown as { source: string }).source;
    return {
      node: worst.node,
      message: `too many aliases: *${name} here expands to ${worst.size} values and is repeated (a YAML "billion laughs" alias bomb?); write the values out or alias fewer of them`,
    };
  }
  if (unresolved) return { node: unresolved, message: `invalid YAML: ${reason}` };
  if (badMerge)
    return {
      node: badMerge,
      message: `invalid YAML: ${reason} (<< merges a mapping, or a list of mappings, into this one)`,
    };
  return { message: `invalid YAML: ${reason}` };
}

// ---------------------------------------------------------------------------------------------
// JSON

async function parseJson(text: string): Promise<ParsedFile> {
  const deep = tooDeepJson(text);
  if (deep !== undefined) throw new SpecSyntaxError(TOO_DEEP, positionAt(text, deep));
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SpecSyntaxError(`invalid JSON: ${jsonMessage(error)}`, await jsonErrorPosition(text, error));
  }
  return checked({ value, locate: async (path, at) => locateJson(text, path, at) });
}

/**
 * Where the value at `path` (or its nearest written ancestor) starts in valid JSON text, or with
 * `"key"` where its key is: one linear scan, so even a 1 MB file answers at once. Like JSON.parse,
 * the last of repeated keys counts.
 */
function locateJson(text: string, path: readonly PropertyKey[], at: "key" | "value" = "value"): Position {
  let value = skipSpace(text, 0);
  let key: number | undefined;
  for (const segment of path) {
    let next: number | undefined;
    let nextKey: number | undefined;
    let i = skipSpace(text, value + 1);
    if (text[value] === "{") {
      while (text[i] === '"') {
        const end = skipValue(text, i);
        const name: unknown = JSON.parse(text.slice(i, end));
        const start = skipSpace(text, skipSpace(text, end) + 1); // past the ":"
        if (name === String(segment)) [next, nextKey] = [start, i];
        i = skipSpace(text, skipValue(text, start));
        i = text[i] === "," ? skipSpace(text, i + 1) : text.length;
      }
    } else if (text[value] === "[" && typeof segment === "number") {
      for (let n = 0; i < text.length && text[i] !== "]"; n++) {
        if (n === segment) {
          next = i;
          break;
        }
        i = skipSpace(text, skipValue(text, i));
        i = text[i] === "," ? skipSpace(text, i + 1) : text.length;
      }
    }
    if (next === undefined) return positionAt(text, value);
    [value, key] = [next, nextKey];
  }
  return positionAt(text, at === "key" && key !== undefined ? key : value);
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && (text[i] === " " || text[i] === "\n" || text[i] === "\r" || text[i] === "\t")) i++;
  return i;
}

/** The offset just past the JSON value starting at `i` (strings, nested containers, literals). */
function skipValue(text: string, i: number): number {
  let depth = 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
      if (depth === 0) return i + 1;
    } else if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") {
      if (depth === 0) return i; // a literal right before its container's end
      if (--depth === 0) return i + 1;
    } else if (depth === 0 && (c === "," || c === " " || c === "\n" || c === "\r" || c === "\t")) return i;
  }
  return i;
}

function jsonMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .replace(/^JSON Parse error: /, "")
    .replace(/,? "[^"]*"(\.\.\.)? is not valid JSON$/, "")
    .replace(/ (in JSON )?at position \d+( \(line \d+ column \d+\))?$/, "");
}

async function jsonErrorPosition(text: string, error: unknown): Promise<Position | undefined> {
  const message = error instanceof Error ? error.message : "";
  const lineCol = /line (\d+) column (\d+)/.exec(message);
  if (lineCol) return { line: Number(lineCol[1]), column: Number(lineCol[2]) };
  const offset = /position (\d+)/.exec(message);
  if (offset) return positionAt(text, Number(offset[1]));
  // Runtimes that give no position (Bun, Node 20): ask the YAML parser, which reads JSON too.
  try {
    await composeYaml(text);
  } catch (yamlError) {
    if (yamlError instanceof SpecSyntaxError && yamlError.line)
      return { line: yamlError.line, column: yamlError.column ?? 1 };
  }
  return undefined;
}

function positionAt(text: string, offset: number): Position {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}
