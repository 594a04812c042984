/**
 * The document model of a SOPS file, as getsops/sops holds it (`sops.go`: `TreeBranch`, `walkBranch`,
 * `shouldBeEncrypted`, `ToBytes`): an ordered tree whose leaves keep the type Go's decoders gave
 * them, because the type decides both the `type:` of an encrypted value and the bytes its MAC hashes.
 * Order matters too (the MAC covers it), so maps are lists of entries, never JavaScript objects
 * (which would move integer-like keys to the front).
 */

/** A leaf: a string, a YAML integer (`int`), a float (YAML floats, every JSON number), a boolean, raw bytes, or null. */
export type SopsLeaf =
  | { type: "str"; value: string }
  | { type: "int"; value: bigint }
  | { type: "float"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "bytes"; value: Uint8Array }
  | { type: "null" };

/** A mapping: entries in file order. Keys are strings (sops refuses other keys). */
export interface SopsMap {
  type: "map";
  entries: [string, SopsNode][];
}

/** A sequence. Its items add nothing to the path (sops's `walkSlice` passes the parent's path on). */
export interface SopsList {
  type: "list";
  items: SopsNode[];
}

/** Any node of the tree. */
export type SopsNode = SopsLeaf | SopsMap | SopsList;

/**
 * Which values a file encrypts (`sops.unencrypted_suffix` and friends; at most one is set, and a
 * file that sets none uses `unencrypted_suffix: _unencrypted`). Each is matched against every key of
 * a value's path, as `shouldBeEncrypted` does.
 */
export interface CryptRules {
  unencrypted_suffix?: string;
  encrypted_suffix?: string;
  unencrypted_regex?: string;
  encrypted_regex?: string;
}

/** The rule names, in the order sops applies them. */
export const RULE_NAMES = ["unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex"] as const;

/** Whether the value at `path` (the keys leading to it) is encrypted under `rules` (sops's `shouldBeEncrypted`). */
export function shouldEncrypt(path: readonly string[], rules: CryptRules): boolean {
  let encrypted = true;
  if (rules.unencrypted_suffix) encrypted = !path.some((k) => k.endsWith(rules.unencrypted_suffix!));
  if (rules.encrypted_suffix) encrypted = path.some((k) => k.endsWith(rules.encrypted_suffix!));
  if (rules.unencrypted_regex) {
    const re = goRegExp(rules.unencrypted_regex);
    if (path.some((k) => re.test(k))) encrypted = false;
  }
  if (rules.encrypted_regex) {
    const re = goRegExp(rules.encrypted_regex);
    encrypted = path.some((k) => re.test(k));
  }
  return encrypted;
}

/**
 * A Go (RE2) regular expression as a JavaScript one, unanchored like `regexp.Match`. RE2's leading
 * inline flags (`(?i)`, `(?s)`, `(?m)`) become JavaScript flags; the rest of RE2's syntax that
 * encryption rules use (classes, groups, alternation, anchors) means the same in both.
 */
export function goRegExp(pattern: string): RegExp {
  const flags = /^\(\?([imsU]+)\)/.exec(pattern);
  const body = flags ? pattern.slice(flags[0].length) : pattern;
  return new RegExp(body, [...new Set((flags?.[1] ?? "").replace(/U/g, ""))].join(""));
}

/**
 * Calls `visit` on every leaf in document order (depth first, map entries and list items in order)
 * with the path of keys leading to it, and returns a copy of the tree with each leaf replaced by
 * what `visit` returned. Null leaves are passed through untouched, as sops does.
 */
export async function mapLeaves(
  map: SopsMap,
  visit: (leaf: Exclude<SopsLeaf, { type: "null" }>, path: readonly string[]) => SopsLeaf | Promise<SopsLeaf>,
): Promise<SopsMap> {
  const walk = async (node: SopsNode, path: string[]): Promise<SopsNode> => {
    if (node.type === "map") {
      const entries: [string, SopsNode][] = [];
      for (const [key, value] of node.entries) entries.push([key, await walk(value, [...path, key])]);
      return { type: "map", entries };
    }
    if (node.type === "list") {
      const items: SopsNode[] = [];
      for (const item of node.items) items.push(await walk(item, path));
      return { type: "list", items };
    }
    return node.type === "null" ? node : visit(node, path);
  };
  return (await walk(map, [])) as SopsMap;
}

/** The bytes sops hashes into the MAC for a plaintext leaf (`ToBytes`): booleans as `True`/`False`, floats without exponent. */
export function macBytes(leaf: Exclude<SopsLeaf, { type: "null" }>): Uint8Array {
  switch (leaf.type) {
    case "str":
      return new TextEncoder().encode(leaf.value);
    case "bytes":
      return leaf.value;
    default:
      return new TextEncoder().encode(leafText(leaf));
  }
}

/** A non-string leaf as sops writes it before encrypting (`strconv.Itoa`, `FormatFloat(v, 'f', -1, 64)`, `True`/`False`). */
export function leafText(leaf: Exclude<SopsLeaf, { type: "null" }>): string {
  switch (leaf.type) {
    case "str":
      return leaf.value;
    case "bytes":
      return new TextDecoder().decode(leaf.value);
    case "int":
      return leaf.value.toString();
    case "float":
      return goFloat(leaf.value);
    case "bool":
      return leaf.value ? "True" : "False";
  }
}

/**
 * Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest decimal that reads back as `v`, never
 * in exponent form (`1e21` is `1000000000000000000000`, `1e-7` is `0.0000001`).
 */
export function goFloat(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  if (Object.is(v, -0)) return "-0";
  const text = String(v);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!m) return text;
  const [, sign, first, rest = "", exp] = m;
  const digits = first! + rest;
  const point = 1 + Number(exp);
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** A leaf as a plain value for an app's env: strings, numbers (large integers as decimal strings), booleans, `null`. */
export function plainValue(node: SopsNode): unknown {
  switch (node.type) {
    case "map":
      return Object.fromEntries(node.entries.map(([k, v]) => [k, plainValue(v)]));
    case "list":
      return node.items.map(plainValue);
    case "null":
      return null;
    case "int":
      return Number.isSafeInteger(Number(node.value)) ? Number(node.value) : node.value.toString();
    case "bytes":
      return new TextDecoder().decode(node.value);
    default:
      return node.value;
  }
}
