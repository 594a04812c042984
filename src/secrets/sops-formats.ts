/**
 * The three file formats of a SOPS secrets file, read into and written from the ordered tree of
 * `sops-tree.ts` exactly as getsops/sops's stores do (`stores/yaml`, `stores/json`, `stores/dotenv`):
 *
 * - YAML: yaml.v3 types (integers `int`, other numbers `float`, `true`/`false` only as booleans),
 *   aliases followed, one document; written with 4-space indentation.
 * - JSON: every number is a `float` (Go's `json.Decoder` without `UseNumber`); written tab-indented.
 * - dotenv: `KEY=value` lines (everything up to the first `=` is the key), `#` comment lines, `\n`
 *   in a value is a newline; metadata as `sops_`-prefixed flattened keys (`sops_age__list_0__map_enc`),
 *   written sorted.
 *
 * The top-level `sops` entry (the metadata) is returned apart as plain data; comments are not kept.
 */
import {
  Document,
  LineCounter,
  Pair,
  Scalar,
  YAMLMap,
  YAMLSeq,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseAllDocuments,
} from "yaml";
import type { Node as YamlNode } from "yaml";
import type { SopsLeaf, SopsMap, SopsNode } from "./sops-tree.ts";

/** A format of secrets file. */
export type SopsFormat = "yaml" | "json" | "dotenv";

/** What a secrets file holds: its values (the tree) and, apart, its `sops` metadata as plain data (absent: not encrypted). */
export interface SopsDocument {
  tree: SopsMap;
  metadata: unknown;
}

/** A file that is not valid in its format, with the line where the parser can tell. */
export class SopsFormatError extends Error {
  override name = "SopsFormatError";
  readonly line: number | undefined;
  constructor(message: string, line?: number) {
    super(message);
    this.line = line;
  }
}

/** Nesting deeper than this is refused (a secrets file is flat in practice; this keeps hostile files off the stack). */
const MAX_DEPTH = 100;

/** The format a file name implies, as sops picks its store (`.yaml`/`.yml`, `.json`, `.env`); `undefined` for others. */
export function formatOfFile(name: string): SopsFormat | undefined {
  if (/\.ya?ml$/i.test(name)) return "yaml";
  if (/\.json$/i.test(name)) return "json";
  if (/\.env$/i.test(name) || /(^|\/)\.env$/.test(name)) return "dotenv";
  return undefined;
}

/** Reads a file's text into its tree and metadata. Throws a {@link SopsFormatError}. */
export function parseSopsText(text: string, format: SopsFormat): SopsDocument {
  const tree = format === "yaml" ? parseYaml(text) : format === "json" ? parseJson(text) : parseDotenv(text);
  const at = tree.entries.findIndex(([key]) => key === "sops");
  if (format === "dotenv") {
    const meta = tree.entries.filter(([key]) => key.startsWith("sops_"));
    const rest = tree.entries.filter(([key]) => !key.startsWith("sops_"));
    const flat = Object.fromEntries(meta.map(([k, v]) => [k.slice(5), v.type === "str" ? v.value : undefined]));
    return { tree: { type: "map", entries: rest }, metadata: meta.length ? unflatten(flat) : undefined };
  }
  if (at < 0) return { tree, metadata: undefined };
  const metadata = toPlain(tree.entries[at]![1]);
  return { tree: { type: "map", entries: tree.entries.filter((_, i) => i !== at) }, metadata };
}

/** Writes a tree (values already encrypted) and its metadata in `format`, as sops lays the file out. */
export function emitSopsText(tree: SopsMap, metadata: Record<string, unknown>, format: SopsFormat): string {
  if (format === "dotenv") {
    const lines = tree.entries.map(([key, value]) => {
      if (value.type === "map" || value.type === "list")
        throw new SopsFormatError(`${key}: a dotenv file holds only flat values, not a nested list or mapping`);
      return `${key}=${dotenvText(value).replaceAll("\n", "\\n")}`;
    });
    const flat = flatten(metadata);
    for (const key of Object.keys(flat).sort(byBytes)) lines.push(`sops_${key}=${flat[key]!.replaceAll("\n", "\\n")}`);
    return `${lines.join("\n")}\n`;
  }
  const full: SopsMap = { type: "map", entries: [...tree.entries, ["sops", fromPlain(metadata)]] };
  if (format === "json") return `${jsonText(full, 0)}\n`;
  const doc = new Document();
  doc.contents = yamlNode(full, true) as YAMLMap;
  return doc.toString({ indent: 4, indentSeq: true, lineWidth: 0 });
}

/** The plaintext of a decrypted tree in `format` (what `bc-gitops secrets decrypt` prints). */
export function emitPlainText(tree: SopsMap, format: SopsFormat): string {
  if (format === "dotenv")
    return tree.entries.map(([key, value]) => `${key}=${dotenvText(value).replaceAll("\n", "\\n")}\n`).join("");
  if (format === "json") return `${jsonText(tree, 0)}\n`;
  const doc = new Document();
  doc.contents = yamlNode(tree, false) as YAMLMap;
  return doc.toString({ indent: 4, indentSeq: true, lineWidth: 0 });
}

// ---------------------------------------------------------------------------------------------- YAML

function parseYaml(text: string): SopsMap {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, {
    intAsBigInt: true,
    uniqueKeys: true,
    prettyErrors: false,
    lineCounter: lines,
  });
  const lineOf = (node: YamlNode | undefined) => (node?.range ? lines.linePos(node.range[0]).line : undefined);
  if (!Array.isArray(docs)) return { type: "map", entries: [] };
  if (docs.length > 1)
    throw new SopsFormatError(`holds ${docs.length} YAML documents; a secrets file holds one mapping`);
  const doc = docs[0];
  if (!doc) return { type: "map", entries: [] };
  const problem = doc.errors[0];
  if (problem) throw new SopsFormatError(`invalid YAML: ${problem.message.split("\n")[0]}`, problem.linePos?.[0]?.line);
  const convert = (node: unknown, depth: number): SopsNode => {
    if (depth > MAX_DEPTH) throw new SopsFormatError(`nests deeper than ${MAX_DEPTH} levels`);
    if (isAlias(node)) return convert(node.resolve(doc), depth + 1);
    if (isMap(node)) {
      const entries: [string, SopsNode][] = [];
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? pair.key.value : undefined;
        if (typeof key !== "string")
          throw new SopsFormatError(
            `has a key that is not a string (${isScalar(pair.key) ? String(pair.key.value) : "a collection"}); sops supports only string keys`,
            lineOf(pair.key as YamlNode),
          );
        entries.push([key, convert(pair.value, depth + 1)]);
      }
      return { type: "map", entries };
    }
    if (isSeq(node)) return { type: "list", items: node.items.map((item) => convert(item, depth + 1)) };
    const value = isScalar(node) ? node.value : node === null || node === undefined ? null : undefined;
    return leafOf(value);
  };
  const root = doc.contents === null ? { type: "map" as const, entries: [] } : convert(doc.contents, 1);
  if (root.type !== "map") throw new SopsFormatError("is not a mapping at the top level (KEY: value lines)");
  return root;
}

function leafOf(value: unknown): SopsLeaf {
  if (value === null || value === undefined) return { type: "null" };
  if (typeof value === "string") return { type: "str", value };
  if (typeof value === "bigint") return { type: "int", value };
  if (typeof value === "number") return { type: "float", value };
  if (typeof value === "boolean") return { type: "bool", value };
  if (value instanceof Uint8Array) return { type: "bytes", value };
  throw new SopsFormatError(`holds a value sops cannot encrypt (${Object.prototype.toString.call(value)})`);
}

function yamlNode(node: SopsNode, encrypted: boolean): unknown {
  if (node.type === "map") {
    const map = new YAMLMap();
    for (const [key, value] of node.entries) map.items.push(new Pair(new Scalar(key), yamlNode(value, encrypted)));
    return map;
  }
  if (node.type === "list") {
    const seq = new YAMLSeq();
    for (const item of node.items) seq.items.push(yamlNode(item, encrypted));
    return seq;
  }
  if (node.type === "null") return new Scalar(null);
  const scalar = new Scalar(node.type === "bytes" ? new TextDecoder().decode(node.value) : node.value);
  // A string that YAML could read as something else, or that spans lines, is quoted; `ENC[…]` stays plain.
  // In an encrypted file, a string that is not `ENC[…]` is double-quoted, so no YAML reader takes it for a
  // number, a boolean or a timestamp (the MAC hashes it as a string); plaintext output quotes only where needed.
  if (encrypted && node.type === "str" && !node.value.startsWith("ENC[") && !node.value.includes("\n"))
    scalar.type = Scalar.QUOTE_DOUBLE;
  if (node.type === "str" && node.value.includes("\n")) scalar.type = Scalar.BLOCK_LITERAL;
  return scalar;
}

// ---------------------------------------------------------------------------------------------- JSON

/** An order-keeping JSON reader (JSON.parse would move integer-like keys to the front, and the MAC covers order). */
function parseJson(text: string): SopsMap {
  let i = 0;
  const line = () => text.slice(0, i).split("\n").length;
  const fail = (what: string): never => {
    throw new SopsFormatError(`invalid JSON: ${what}`, line());
  };
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const str = (): string => {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(i));
    if (!m) return fail("expected a string");
    i += m[0].length;
    return JSON.parse(m[0]) as string;
  };
  const value = (depth: number): SopsNode => {
    if (depth > MAX_DEPTH) fail(`nests deeper than ${MAX_DEPTH} levels`);
    space();
    const c = text[i];
    if (c === "{") {
      i++;
      const entries: [string, SopsNode][] = [];
      space();
      if (text[i] === "}") return (i++, { type: "map", entries });
      for (;;) {
        space();
        const key = str();
        space();
        if (text[i++] !== ":") fail(`expected ":" after the key "${key}"`);
        entries.push([key, value(depth + 1)]);
        space();
        const next = text[i++];
        if (next === "}") return { type: "map", entries };
        if (next !== ",") fail('expected "," or "}"');
      }
    }
    if (c === "[") {
      i++;
      const items: SopsNode[] = [];
      space();
      if (text[i] === "]") return (i++, { type: "list", items });
      for (;;) {
        items.push(value(depth + 1));
        space();
        const next = text[i++];
        if (next === "]") return { type: "list", items };
        if (next !== ",") fail('expected "," or "]"');
      }
    }
    if (c === '"') return { type: "str", value: str() };
    const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i));
    if (!m) return fail(c === undefined ? "unexpected end of file" : `unexpected ${JSON.stringify(c)}`);
    i += m[0].length;
    if (m[0] === "null") return { type: "null" };
    if (m[0] === "true" || m[0] === "false") return { type: "bool", value: m[0] === "true" };
    return { type: "float", value: Number(m[0]) };
  };
  const root = value(1);
  space();
  if (i < text.length) fail("unexpected text after the top-level object");
  if (root.type !== "map") throw new SopsFormatError('is not a JSON object at the top level ({"KEY": "value"})');
  return root;
}

function jsonText(node: SopsNode, depth: number): string {
  const pad = "\t".repeat(depth + 1);
  const end = "\t".repeat(depth);
  switch (node.type) {
    case "map":
      if (node.entries.length === 0) return "{}";
      return `{\n${node.entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${jsonText(v, depth + 1)}`).join(",\n")}\n${end}}`;
    case "list":
      if (node.items.length === 0) return "[]";
      return `[\n${node.items.map((v) => `${pad}${jsonText(v, depth + 1)}`).join(",\n")}\n${end}]`;
    case "null":
      return "null";
    case "str":
      return JSON.stringify(node.value);
    case "bytes":
      return JSON.stringify(new TextDecoder().decode(node.value));
    case "int":
      return node.value.toString();
    case "float":
      return Number.isFinite(node.value) ? String(node.value) : "null";
    case "bool":
      return String(node.value);
  }
}

// -------------------------------------------------------------------------------------------- dotenv

function parseDotenv(text: string): SopsMap {
  const entries: [string, SopsNode][] = [];
  const seen = new Set<string>();
  text.split("\n").forEach((line, index) => {
    if (line.length === 0 || line.startsWith("#")) return;
    const at = line.indexOf("=");
    if (at < 0) throw new SopsFormatError(`invalid dotenv line (expected KEY=value)`, index + 1);
    const key = line.slice(0, at);
    if (seen.has(key)) throw new SopsFormatError(`the key ${JSON.stringify(key)} is set twice`, index + 1);
    seen.add(key);
    entries.push([key, { type: "str", value: line.slice(at + 1).replaceAll("\\n", "\n") }]);
  });
  return { type: "map", entries };
}

function dotenvText(leaf: SopsNode): string {
  switch (leaf.type) {
    case "str":
      return leaf.value;
    case "null":
      return "";
    case "bytes":
      return new TextDecoder().decode(leaf.value);
    case "int":
    case "float":
    case "bool":
      return String(leaf.value);
    default:
      return JSON.stringify(leaf);
  }
}

/** sops's `Flatten`: nested maps and lists as `a__map_b` and `a__list_0` keys, leaves as text. */
function flatten(value: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (v: unknown, prefix: string) => {
    if (Array.isArray(v)) v.forEach((item, i) => walk(item, `${prefix}__list_${i}`));
    else if (v !== null && typeof v === "object")
      for (const [k, item] of Object.entries(v)) walk(item, prefix === "" ? k : `${prefix}__map_${k}`);
    else if (v !== undefined && v !== null) out[prefix] = String(v);
  };
  walk(value, "");
  return out;
}

/** sops's `Unflatten`, the inverse of {@link flatten}. */
function unflatten(flat: Record<string, string | undefined>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [path, value] of Object.entries(flat)) {
    const tokens: (string | number)[] = [];
    let rest = path;
    const first = /^(.*?)(?=__map_|__list_|$)/.exec(rest)![1]!;
    tokens.push(first);
    rest = rest.slice(first.length);
    while (rest.length > 0) {
      const m = /^__(map|list)_(.*?)(?=__map_|__list_|$)/.exec(rest)!;
      tokens.push(m[1] === "list" ? Number(m[2]) : m[2]!);
      rest = rest.slice(m[0].length);
    }
    let node: Record<string | number, unknown> = root;
    tokens.forEach((token, i) => {
      if (i === tokens.length - 1) node[token] = value;
      else {
        node[token] ??= typeof tokens[i + 1] === "number" ? [] : {};
        node = node[token] as Record<string | number, unknown>;
      }
    });
  }
  return root;
}

// ---------------------------------------------------------------------------------------------- shared

/** A subtree as plain data (the metadata block). */
function toPlain(node: SopsNode): unknown {
  if (node.type === "map") return Object.fromEntries(node.entries.map(([k, v]) => [k, toPlain(v)]));
  if (node.type === "list") return node.items.map(toPlain);
  if (node.type === "null") return null;
  if (node.type === "int") return Number(node.value);
  if (node.type === "bytes") return new TextDecoder().decode(node.value);
  return node.value;
}

/** Plain data (the metadata block) as a subtree. */
function fromPlain(value: unknown): SopsNode {
  if (Array.isArray(value)) return { type: "list", items: value.map(fromPlain) };
  if (value !== null && typeof value === "object")
    return {
      type: "map",
      entries: Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, fromPlain(v)]),
    };
  if (typeof value === "number") return Number.isInteger(value) ? { type: "int", value: BigInt(value) } : leafOf(value);
  return leafOf(value);
}

/** Go's `sort.Strings` order (bytes, not locale). */
function byBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
