/**
 * The shape limits every parsed spec file must meet, whatever its format: how deep its values nest
 * and how many values it holds once shared (aliased) values are counted where they appear. Past
 * them a file is an error on its own, so no parser, no `JSON.stringify` of the state and no API
 * response ever walks a hostile value.
 */

/**
 * Deepest nesting of lists and mappings in a spec; the top-level mapping is level 1. A spec needs
 * a handful. 100 (Ruby's JSON `max_nesting` default) stays far below where parsers overflow the
 * stack: the `yaml` package fails at ≈800-1250 levels on Deno and Node depending on the caller's
 * stack, so a limit of 1000 would have given a stack error instead of this one.
 */
export const MAX_NESTING = 100;

/**
 * Most values (scalars, lists and mappings) a spec may hold, counting an aliased value at every
 * place it is used, as `JSON.stringify` (state.json, the HTTP API) would print it. A 1 MB file
 * without aliases stays under it unless it is a data dump; a YAML alias bomb does not.
 */
export const MAX_VALUES = 100_000;

/** The message of a file nested deeper than {@link MAX_NESTING}. */
export const TOO_DEEP = `nesting deeper than ${MAX_NESTING} levels: a spec holds an app's settings, not data; flatten this value (or have the app read it from a file)`;

/** What {@link checkValue} found wrong, and the path of the value where it was found. */
export interface ValueProblem {
  path: (string | number)[];
  message: string;
}

interface Frame {
  value: unknown;
  key: string | number;
  parent: Frame | undefined;
  depth: number;
}

/**
 * Checks a parsed value against {@link MAX_NESTING} and {@link MAX_VALUES} without recursion (the
 * value may be a thousand levels deep, or cyclic). Visits in document order and stops at the
 * first problem; a shared value is walked at every place it appears, within the budget.
 */
export function checkValue(value: unknown): ValueProblem | undefined {
  const seen = new Set<object>();
  let shared = false;
  // Values are counted when their container is opened, not when visited, so that a wide shared
  // list cannot pile up more than MAX_VALUES frames before the count notices.
  let count = 1;
  const stack: Frame[] = [{ value, key: "", parent: undefined, depth: 0 }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const v = frame.value;
    if (typeof v !== "object" || v === null || ArrayBuffer.isView(v)) continue;
    const depth = frame.depth + 1;
    if (depth > MAX_NESTING) return { path: pathOf(frame), message: isCycle(frame) ? CYCLE : TOO_DEEP };
    if (seen.has(v)) shared = true;
    else seen.add(v);
    const keys: Array<string | number> = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
    if (count + keys.length > MAX_VALUES) {
      const message = shared
        ? `aliases expand this file to more than ${MAX_VALUES} values (a YAML "billion laughs" alias bomb?); write the values out or alias fewer of them`
        : `this file holds more than ${MAX_VALUES} values: a spec holds an app's settings, not data (have the app read it from a file)`;
      return { path: [...pathOf(frame), keys[MAX_VALUES - count]!], message };
    }
    count += keys.length;
    for (let i = keys.length - 1; i >= 0; i--) {
      stack.push({ value: (v as Record<string | number, unknown>)[keys[i]!], key: keys[i]!, parent: frame, depth });
    }
  }
  return undefined;
}

const CYCLE = "an alias here refers to a value that contains it, so the value never ends; remove the alias";

function isCycle(frame: Frame): boolean {
  for (let f = frame.parent; f; f = f.parent) if (f.value === frame.value) return true;
  return false;
}

function pathOf(frame: Frame): (string | number)[] {
  const path: (string | number)[] = [];
  for (let f: Frame | undefined = frame; f?.parent; f = f.parent) path.push(f.key);
  return path.reverse();
}

/**
 * The offset of the first `[` or `{` of JSON text that opens level {@link MAX_NESTING} + 1, found
 * by one scan outside strings, so JSON that deep is never parsed. Exact for valid JSON; invalid
 * JSON only needs not to crash it.
 */
export function tooDeepJson(text: string): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > MAX_NESTING) return i;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return undefined;
}
