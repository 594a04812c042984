/**
 * Reading one spec file: picking it by name, decoding it, and parsing YAML, JSON or Erlang terms
 * into a plain value plus a `locate(path)` that maps a field path back to a line and column.
 */
import type { Document } from "yaml";
import { nativeYamlParse } from "./_platform.ts";
import { ErlangSyntaxError, parseErlangTerms } from "./erlang.ts";

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

/** Parses a spec file's text. Throws {@link SpecSyntaxError} with a position where the format tells one. */
export async function parseSpecText(text: string, format: SpecFormat): Promise<ParsedFile> {
  if (text.trim() === "") throw new SpecSyntaxError("file is empty: expected the app's spec (name, version, …)");
  switch (format) {
    case "yaml":
      return parseYaml(text);
    case "json":
      return parseJson(text);
    case "erlang":
      try {
        const terms = parseErlangTerms(text);
        return { value: terms.value, locate: async (path) => terms.locate(path as readonly (string | number)[]) };
      } catch (error) {
        if (error instanceof ErlangSyntaxError) throw new SpecSyntaxError(error.message, error);
        throw error;
      }
  }
}

// ---------------------------------------------------------------------------------------------
// YAML

async function parseYaml(text: string): Promise<ParsedFile> {
  if (nativeYamlParse && !needsFullYaml(text)) {
    try {
      const value = nativeYamlParse(text);
      // Bun returns every document of a multi-document stream; the spec is the first one only.
      if (!Array.isArray(value) || !/^(---|\.\.\.)/m.test(text)) {
        let full: Promise<ParsedFile> | undefined;
        return { value, locate: async (path, at) => (await (full ??= parseYamlDocument(text))).locate(path, at) };
      }
    } catch {
      // The yaml package gives the error with its position.
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
  const { LineCounter, isCollection, isMap, isNode, isScalar, parseAllDocuments } = await loadYaml();
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, merge: true, uniqueKeys: true, prettyErrors: false });
  const doc = (Array.isArray(docs) ? docs[0] : undefined) as Document | undefined;
  if (!doc) return { value: null, locate: async () => undefined };
  const problem = doc.errors[0];
  if (problem) {
    const at = lineCounter.linePos(problem.pos[0]);
    throw new SpecSyntaxError(`invalid YAML: ${problem.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`, {
      line: at.line,
      column: at.col,
    });
  }
  const value = doc.toJS({ maxAliasCount: 100 });
  return {
    value,
    async locate(path, at = "value") {
      if (at === "key" && path.length > 0) {
        const parent = doc.getIn(path.slice(0, -1) as unknown[], true);
        const pair = isMap(parent) ? parent.items.find((p) => isScalar(p.key) && p.key.value === path.at(-1)) : undefined;
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
    },
  };
}

// ---------------------------------------------------------------------------------------------
// JSON

async function parseJson(text: string): Promise<ParsedFile> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SpecSyntaxError(`invalid JSON: ${jsonMessage(error)}`, await jsonErrorPosition(text, error));
  }
  // JSON is YAML: the yaml package maps paths back to positions, only when an error needs one.
  let full: Promise<ParsedFile> | undefined;
  return { value, locate: async (path, at) => (await (full ??= parseYamlDocument(text))).locate(path, at) };
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
    await parseYamlDocument(text);
  } catch (yamlError) {
    if (yamlError instanceof SpecSyntaxError && yamlError.line) return { line: yamlError.line, column: yamlError.column ?? 1 };
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
