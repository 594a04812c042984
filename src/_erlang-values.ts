/**
 * How the Erlang term parser (see `erlang.ts`) turns terms into JSON-like values, and the parallel
 * tree of source positions it keeps beside them so `locate(path)` can point an error at a line.
 */
import { lineStartsOf, positionIn, type Position } from "./_erlang-lexer.ts";

/**
 * Where a term starts: a leaf is its start offset; a container also holds its children's positions,
 * named by `names` for objects (cheaper to build than a Map; looked up only when an error is reported).
 */
export type PosNode = number | PosContainer;

/** The position node of a list, tuple, map or proplist: its start and its children's nodes. */
export interface PosContainer {
  at: number;
  kids: PosNode[];
  names?: string[];
}

/** The start offset of the term at `node`. */
export const startOf = (node: PosNode): number => (typeof node === "number" ? node : node.at);

/** An atom's value: `true`/`false` booleans, `undefined`/`nil`/`null` null, any other its name. */
export function atomValue(name: string): unknown {
  if (name === "true" || name === "false") return name === "true";
  return name === "undefined" || name === "nil" || name === "null" ? null : name;
}

/** `obj[key] = value`, except that the key "__proto__" adds an own key instead of replacing the prototype. */
export function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key !== "__proto__") obj[key] = value;
  else Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/**
 * Builds a proplist object from its elements' values, position nodes and key texts (the first key
 * wins, as `proplists:get_value/2`); a bare atom is `true`. Returns the object and its position node.
 */
export function proplist(
  at: number,
  vals: unknown[],
  nodes: PosNode[],
  keys: string[],
): [Record<string, unknown>, PosContainer] {
  const obj: Record<string, unknown> = {};
  const names: string[] = [];
  const kids: PosNode[] = [];
  for (let j = 0; j < vals.length; j++) {
    const key = keys[j]!;
    if (Object.hasOwn(obj, key)) continue;
    const pair = vals[j];
    const isPair = Array.isArray(pair); // bare atoms convert to booleans, null or strings
    setKey(obj, key, isPair ? pair[1] : true);
    names.push(key);
    kids.push(isPair ? (nodes[j] as PosContainer).kids[1]! : nodes[j]!);
  }
  return [obj, { at, kids, names }];
}

/**
 * The `locate(path)` of a parsed text whose position tree is `root`: where the value at `path`
 * starts (object keys by their last occurrence, indexes for arrays), or its deepest known
 * ancestor's position for an unknown path. Line starts are computed on the first call only.
 */
export function locator(text: string, root: PosNode): (path: readonly (string | number)[]) => Position | undefined {
  let lineStarts: number[] | undefined;
  return (path) => {
    let node = root;
    for (const seg of path) {
      if (typeof node === "number") break;
      const index = node.names
        ? node.names.lastIndexOf(String(seg))
        : typeof seg === "number"
          ? seg
          : /^\d+$/.test(seg)
            ? Number(seg)
            : -1;
      const next = node.kids[index];
      if (next === undefined) break;
      node = next;
    }
    return positionIn((lineStarts ??= lineStartsOf(text)), startOf(node));
  };
}
