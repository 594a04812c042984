/**
 * A hand-written parser for Erlang term files (`app.config`, `config`) as bc_gitops reads them with
 * `file:consult/1`, so existing bc_gitops repositories load unchanged. The scanner (comments,
 * literals, numbers) is in `_erlang-lexer.ts`, the values and position tree terms become in
 * `_erlang-values.ts`; this module is the grammar: terms, lists, tuples, maps, binaries, and files.
 * Linear time; terms convert straight to JSON-like values.
 */
import {
  ErlangLexer,
  K_ATOM,
  K_INT,
  K_OTHER,
  K_PAIR,
  K_STR,
  decodeBytes,
  isDigit,
  isLower,
  isNameChar,
  isSpace,
  isUpper,
  type Position,
} from "./_erlang-lexer.ts";
import { atomValue, locator, proplist, setKey, startOf, type PosNode } from "./_erlang-values.ts";

export { ErlangSyntaxError, type Position } from "./_erlang-lexer.ts";

/** The converted value of a term file, and where each part of it starts in the source. */
export interface ParsedTerms {
  readonly value: unknown;
  /**
   * Where the value at `path` starts (object keys for maps and proplists, indexes for lists and
   * tuples); `[]` is the top-level value. An unknown path gives its deepest known ancestor's
   * position. Never throws.
   */
  locate(path: readonly (string | number)[]): Position | undefined;
}

/** Nesting beyond this is a syntax error rather than a risk of overflowing the stack. */
const MAX_DEPTH = 1000;

class Parser extends ErlangLexer {
  depth = 0;
  // Describe the last parsed term (see K_*; `kind` is the lexer's): its key text and position node.
  key = "";
  node: PosNode = 0;
  // Filled by items(): see there.
  keys: string[] | undefined;
  pairs = false;
  nodes: PosNode[] = [];

  term(): unknown {
    this.skip();
    const s = this.s;
    const at = this.i;
    const c = s.charCodeAt(at);
    this.kind = K_OTHER;
    this.node = at;
    if (isLower(c)) {
      let j = at + 1;
      while (isNameChar(s.charCodeAt(j))) j++;
      this.i = j;
      this.kind = K_ATOM;
      return atomValue((this.key = s.slice(at, j)));
    }
    if (c === 39) {
      this.kind = K_ATOM;
      return atomValue((this.key = this.literal(39, "quoted atom")));
    }
    if (c === 34) {
      this.kind = K_STR;
      return (this.key = this.strings());
    }
    if (isDigit(c)) return this.number(at, false);
    if (c === 36) return this.char(at);
    if (c === 45 || c === 43) {
      this.i++;
      this.skip();
      const d = s.charCodeAt(this.i);
      if (!isDigit(d) && d !== 36) this.fail(`expected a number after "${s[at]}", got ${this.got(this.i)}`, this.i);
      const v = d === 36 ? this.char(this.i) : this.number(this.i, c === 45);
      this.node = at;
      return c === 45 && d === 36 ? 0 - v : v;
    }
    if (c === 91) return this.list(at);
    if (c === 123) return this.tuple(at);
    if (c === 35) return this.map(at);
    if (c === 60 && s.charCodeAt(at + 1) === 60) return this.binary(at);
    if (isUpper(c))
      this.fail(
        `unexpected ${this.got(at)}: a variable is not a value; write atoms in lowercase or quote them ('Name')`,
        at,
      );
    if (at >= s.length) this.fail("unexpected end of file: expected a term", at);
    this.fail(`unexpected ${this.got(at)}: expected a term (atom, number, string, binary, list, tuple or map)`, at);
  }

  /**
   * The comma-separated terms between `open` and the `close` character, with their position nodes.
   * Also sets `keys` (the key texts if every element is a pair or an atom, for proplists), `pairs`
   * (some element is a pair), and `kind`/`key` to the first element's.
   */
  items(at: number, open: number, close: number, what: string): unknown[] {
    if (++this.depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels is not supported`, at);
    const s = this.s;
    const vals: unknown[] = [];
    const nodes: PosNode[] = [];
    let keys: string[] | undefined = [];
    let pairs = false;
    let firstKind = K_OTHER;
    let firstKey = "";
    this.i = open + 1;
    this.skip();
    if (s.charCodeAt(this.i) === close) this.i++;
    else {
      for (;;) {
        if (what === "map") this.entry(vals, nodes);
        else {
          vals.push(this.term());
          nodes.push(this.node);
        }
        if (this.kind === K_PAIR) pairs = true;
        if (keys && (this.kind === K_PAIR || this.kind === K_ATOM)) keys.push(this.key);
        else keys = undefined;
        if (vals.length === 1) {
          firstKind = this.kind;
          firstKey = this.key;
        }
        this.skip();
        const c = s.charCodeAt(this.i++);
        if (c === close) break;
        if (c === 44) continue;
        this.i--;
        const closer = String.fromCharCode(close);
        if (c === 124 && close === 93)
          this.fail('improper lists ("[Head | Tail]") are not supported; separate elements with ","', this.i);
        if (this.i >= s.length) this.fail(`unterminated ${what}: "${s[open]}" is never closed by "${closer}"`, open);
        this.fail(
          `expected "," or "${closer}" after ${what} element, got ${this.got(this.i)} (the ${what} opens at ${this.where(open)})`,
          this.i,
        );
      }
    }
    this.depth--;
    this.keys = keys;
    this.pairs = pairs;
    this.kind = firstKind;
    this.key = firstKey;
    this.nodes = nodes;
    return vals;
  }

  list(at: number): unknown {
    const vals = this.items(at, at, 93, "list");
    const nodes = this.nodes;
    this.kind = K_OTHER;
    if (!this.keys || !this.pairs) {
      this.node = { at, kids: nodes };
      return vals;
    }
    const [obj, node] = proplist(at, vals, nodes, this.keys);
    this.node = node;
    return obj;
  }

  tuple(at: number): unknown {
    const vals = this.items(at, at, 125, "tuple");
    const nodes = this.nodes;
    this.kind = vals.length === 2 && (this.kind === K_ATOM || this.kind === K_STR) ? K_PAIR : K_OTHER;
    this.node = { at, kids: nodes };
    return vals;
  }

  /** `Key => Value` (or `Key := Value`) in a map: pushes the key's text and the value. */
  entry(vals: unknown[], nodes: PosNode[]): void {
    const k = this.term();
    if (this.kind !== K_ATOM && this.kind !== K_STR && this.kind !== K_INT) {
      this.fail("map keys must be atoms or strings", startOf(this.node));
    }
    vals.push(this.kind === K_INT ? String(k) : this.key);
    nodes.push(this.node);
    this.skip();
    const c = this.s.charCodeAt(this.i);
    const d = this.s.charCodeAt(this.i + 1);
    if (!((c === 61 && d === 62) || (c === 58 && d === 61))) {
      this.fail(`expected "=>" or ":=" after map key, got ${this.got(this.i)}`, this.i);
    }
    this.i += 2;
    vals.push(this.term());
    nodes.push(this.node);
  }

  map(at: number): unknown {
    const s = this.s;
    this.i = at + 1;
    this.skip();
    const open = this.i;
    if (s.charCodeAt(open) !== 123) {
      if (isLower(s.charCodeAt(open))) this.fail("records (#name{...}) are not supported; use a map #{...}", at);
      this.fail(`expected "{" after "#", got ${this.got(open)}`, open);
    }
    const vals = this.items(at, open, 125, "map");
    const nodes = this.nodes;
    const obj: Record<string, unknown> = {};
    const names: string[] = [];
    const kids: PosNode[] = [];
    // Duplicate keys: the last one wins, as when Erlang builds the map (and locate() searches from the end).
    for (let j = 0; j < vals.length; j += 2) {
      setKey(obj, vals[j] as string, vals[j + 1]);
      names.push(vals[j] as string);
      kids.push(nodes[j + 1]!);
    }
    this.kind = K_OTHER;
    this.node = { at, kids, names };
    return obj;
  }

  /** `<<"text">>`, `<<"text"/utf8>>`, `<<1,2,3>>` and mixes of them, as one string. */
  binary(at: number): string {
    const s = this.s;
    const parts: string[] = [];
    const bytes: number[] = [];
    const unterminated = () => this.fail('unterminated binary: "<<" is never closed by ">>"', at);
    this.i = at + 2;
    this.skip();
    if (s.charCodeAt(this.i) === 62 && s.charCodeAt(this.i + 1) === 62) this.i += 2;
    else {
      for (;;) {
        const seg = this.i;
        const c = s.charCodeAt(seg);
        if (c === 34) {
          if (bytes.length > 0) parts.push(decodeBytes(bytes.splice(0)));
          parts.push(this.strings());
        } else if (isDigit(c) || c === 36 || c === 45 || c === 43) {
          const v = this.term() as number;
          if (this.kind !== K_INT || !(v >= 0 && v <= 255))
            this.fail("binary bytes must be integers from 0 to 255", seg);
          bytes.push(v);
        } else if (seg >= s.length) unterminated();
        else this.fail(`expected a string or a byte (0..255) in binary, got ${this.got(seg)}`, seg);
        this.skip();
        if (s.charCodeAt(this.i) === 58) this.fail("sized binary segments (Value:Size) are not supported", this.i);
        if (s.charCodeAt(this.i) === 47) {
          this.i++;
          this.skip();
          const t = this.i;
          while (isNameChar(s.charCodeAt(this.i))) this.i++;
          if (c !== 34 || s.slice(t, this.i) !== "utf8") {
            this.fail(`unsupported binary segment type ${this.got(t)}: only "text"/utf8 is supported`, t);
          }
          this.skip();
        }
        const e = s.charCodeAt(this.i);
        if (e === 62 && s.charCodeAt(this.i + 1) === 62) break;
        if (e !== 44) {
          if (this.i >= s.length) unterminated();
          this.fail(
            `expected "," or ">>" in binary, got ${this.got(this.i)} (the binary opens at ${this.where(at)})`,
            this.i,
          );
        }
        this.i++;
        this.skip();
      }
      this.i += 2;
    }
    if (bytes.length > 0) parts.push(decodeBytes(bytes));
    this.kind = K_STR;
    this.node = at;
    return (this.key = parts.length === 1 ? parts[0]! : parts.join(""));
  }
}

/**
 * Parses an Erlang term file: one term (`#{...}.` or `[{k, v}].`) gives that term's value; several
 * terms (the `file:consult` form) give one proplist object when all are `{Key, Value}` pairs, else
 * an array. Maps and proplists become plain objects (a `__proto__` key is an own property, never
 * the prototype); atoms strings (`true`/`false` booleans, `undefined`/`nil`/`null` null); binaries
 * and strings strings; numbers numbers; other lists and tuples arrays. Runs in linear time.
 * Throws {@link ErlangSyntaxError} on malformed input.
 */
export function parseErlangTerms(text: string): ParsedTerms {
  const p = new Parser(text);
  const len = text.length;
  const vals: unknown[] = [];
  const nodes: PosNode[] = [];
  const keys: string[] = [];
  p.skip();
  if (p.i >= len) p.fail('empty file: expected one term ending with "."', 0);
  while (p.i < len) {
    try {
      vals.push(p.term());
    } catch (error) {
      // MAX_DEPTH fits the default stacks; a caller on a smaller one gets a syntax error too.
      if (error instanceof RangeError) p.fail("nesting is too deep for the available stack", p.i);
      throw error;
    }
    nodes.push(p.node);
    if (p.kind === K_PAIR) keys.push(p.key);
    const end = p.i;
    p.skip();
    const c = text.charCodeAt(p.i);
    if (c === 46) {
      const n = text.charCodeAt(++p.i);
      if (p.i < len && !isSpace(n) && n !== 37) {
        p.fail('"." ending a term must be followed by whitespace, a comment or the end of the file', p.i);
      }
      p.skip();
    } else if (p.i >= len) p.fail('missing "." after the last term', end);
    else if (c === 93 || c === 125 || c === 41 || (c === 62 && text.charCodeAt(p.i + 1) === 62)) {
      p.fail(`unbalanced ${p.got(p.i)}: nothing is open here to close`, p.i);
    } else p.fail(`expected "." after the term, got ${p.got(p.i)}`, p.i);
  }
  const first = startOf(nodes[0]!);
  let [value, root]: [unknown, PosNode] = [vals, { at: first, kids: nodes }];
  if (vals.length === 1) [value, root] = [vals[0], nodes[0]!];
  else if (keys.length === vals.length) [value, root] = proplist(first, vals, nodes, keys);
  return { value, locate: locator(text, root) };
}
