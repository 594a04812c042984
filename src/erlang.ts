/**
 * A hand-written parser for Erlang term files (`app.config`, `config`) as bc_gitops reads them with
 * `file:consult/1`, so existing bc_gitops repositories load unchanged. It scans with `charCodeAt`
 * and slices (linear time, no per-character regex), converts terms straight to JSON-like values,
 * and keeps source positions in a parallel tree so `locate(path)` can point errors at a line.
 */

/** A 1-based position in the source text; columns count UTF-16 code units (a tab is one column). */
export interface Position {
  line: number;
  column: number;
}

/**
 * Thrown for every malformed term file. `line` and `column` are 1-based and point at the offending
 * character (or at the opening bracket or quote of something never closed); the message has no
 * position prefix so callers can add `file:line:col`.
 */
export class ErlangSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  constructor(message: string, line: number, column: number) {
    super(message);
    this.name = "ErlangSyntaxError";
    this.line = line;
    this.column = column;
  }
}

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

// A leaf is its start offset; a container also holds its children's positions, named by `names`
// for objects (cheaper to build than a Map; looked up only when an error is reported).
type PosNode = number | Container;
interface Container {
  at: number;
  kids: PosNode[];
  names?: string[];
}

// What the last parsed term was: converted values forget it, map keys and proplists need it.
const K_OTHER = 0;
const K_ATOM = 1;
const K_STR = 2; // string or binary
const K_INT = 3;
const K_PAIR = 4; // a 2-tuple whose first element is an atom, string or binary

// \n \t \r \s \e \d \b \f \v; any other escaped character stands for itself, as in Erlang.
const ESCAPES = new Map([
  [110, 10],
  [116, 9],
  [114, 13],
  [115, 32],
  [101, 27],
  [100, 127],
  [98, 8],
  [102, 12],
  [118, 11],
]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isLower = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 0xdf && c <= 0xff && c !== 0xf7);
const isUpper = (c: number): boolean => (c >= 65 && c <= 90) || c === 95 || (c >= 0xc0 && c <= 0xde && c !== 0xd7);
const isNameChar = (c: number): boolean => isLower(c) || isUpper(c) || isDigit(c) || c === 64;
const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0xfeff;
const digitValue = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : c >= 65 && c <= 90 ? c - 55 : 99;
const clean = (digits: string): string => (digits.includes("_") ? digits.replaceAll("_", "") : digits);
const startOf = (node: PosNode): number => (typeof node === "number" ? node : node.at);

function atomValue(name: string): unknown {
  if (name === "true" || name === "false") return name === "true";
  return name === "undefined" || name === "nil" || name === "null" ? null : name;
}

// `obj[key] = v` with the key "__proto__" would replace the prototype instead of adding a key.
function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key !== "__proto__") obj[key] = value;
  else Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Byte segments as UTF-8 when they are valid UTF-8, else one character per byte (Latin-1). */
function decodeBytes(bytes: number[]): string {
  if (bytes.some((b) => b >= 0x80)) {
    try {
      return utf8.decode(Uint8Array.from(bytes));
    } catch {
      // not UTF-8: fall through to Latin-1
    }
  }
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) out += String.fromCharCode(...bytes.slice(i, i + 8192));
  return out;
}

/** Builds a proplist object (the first key wins, as `proplists:get_value/2`); a bare atom is `true`. */
function proplist(at: number, vals: unknown[], nodes: PosNode[], keys: string[]): [Record<string, unknown>, Container] {
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
    kids.push(isPair ? (nodes[j] as Container).kids[1]! : nodes[j]!);
  }
  return [obj, { at, kids, names }];
}

function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", nl + 1)) starts.push(nl + 1);
  return starts;
}

function positionIn(lineStarts: number[], at: number): Position {
  let lo = 0;
  let hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid]! <= at) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: at - lineStarts[lo]! + 1 };
}

class Parser {
  readonly s: string;
  i = 0;
  depth = 0;
  // Describe the last parsed term (see K_*): its kind, key text and position node.
  kind = K_OTHER;
  key = "";
  node: PosNode = 0;
  // Filled by items(): see there.
  keys: string[] | undefined;
  pairs = false;
  nodes: PosNode[] = [];

  constructor(text: string) {
    this.s = text;
  }

  fail(message: string, at: number): never {
    const { line, column } = positionIn(lineStartsOf(this.s), at);
    throw new ErlangSyntaxError(message, line, column);
  }

  where(at: number): string {
    const { line, column } = positionIn(lineStartsOf(this.s), at);
    return `${line}:${column}`;
  }

  /** A short quoted description of what is at `at`, for "got …" messages. */
  got(at: number): string {
    const s = this.s;
    if (at >= s.length) return "end of file";
    if (isNameChar(s.charCodeAt(at))) {
      let j = at + 1;
      while (j - at < 24 && isNameChar(s.charCodeAt(j))) j++;
      return JSON.stringify(s.slice(at, j));
    }
    const cp = s.codePointAt(at)!;
    if (cp < 32 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0xd800 && cp < 0xe000) || cp === 0xfffd) {
      return `character U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
    }
    return JSON.stringify(String.fromCodePoint(cp));
  }

  skip(): void {
    const s = this.s;
    let i = this.i;
    for (let c = s.charCodeAt(i); ; c = s.charCodeAt(i)) {
      if (isSpace(c)) i++;
      else if (c !== 37) break;
      else if ((i = s.indexOf("\n", i)) < 0) i = s.length;
    }
    this.i = i;
  }

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

  /** One literal quoted by `q` starting at `this.i`, unescaped; slices, so no per-character work. */
  literal(q: number, what: string): string {
    const s = this.s;
    const start = this.i;
    let parts: string[] | undefined;
    let from = start + 1;
    for (let i = from; ; i++) {
      const c = s.charCodeAt(i);
      if (c === q) {
        this.i = i + 1;
        if (!parts) return s.slice(from, i);
        parts.push(s.slice(from, i));
        return parts.join("");
      }
      if (c === 92) {
        (parts ??= []).push(s.slice(from, i));
        this.i = i + 1;
        parts.push(String.fromCodePoint(this.escape()));
        i = (from = this.i) - 1;
      } else if (i >= s.length) this.fail(`unterminated ${what}: missing closing ${String.fromCharCode(q)}`, start);
    }
  }

  /** A string literal plus any adjacent ones ("a" "b" is "ab", as in Erlang). */
  strings(): string {
    const first = this.literal(34, "string");
    let parts: string[] | undefined;
    for (;;) {
      const end = this.i;
      this.skip();
      if (this.s.charCodeAt(this.i) !== 34) {
        this.i = end;
        return parts ? parts.join("") : first;
      }
      (parts ??= [first]).push(this.literal(34, "string"));
    }
  }

  /** Decodes the escape after the backslash at `this.i - 1`; returns a code point. */
  escape(): number {
    const s = this.s;
    const at = this.i - 1;
    const c = s.charCodeAt(this.i);
    if (c >= 48 && c <= 55) {
      let v = 0;
      for (let n = 0, d = c; n < 3 && d >= 48 && d <= 55; n++, d = s.charCodeAt(this.i)) {
        v = v * 8 + d - 48;
        this.i++;
      }
      return v;
    }
    if (c === 120) {
      const brace = s.charCodeAt(this.i + 1) === 123;
      const first = this.i + (brace ? 2 : 1);
      let j = first;
      let v = 0;
      while (digitValue(s.charCodeAt(j)) < 16 && (brace || j - first < 2)) {
        v = v * 16 + digitValue(s.charCodeAt(j++));
        if (v > 0x10ffff) this.fail("escape is beyond the last Unicode code point (10FFFF)", at);
      }
      if (brace ? j === first || s.charCodeAt(j++) !== 125 : j - first !== 2) {
        this.fail("invalid \\x escape: expected \\xHH or \\x{H…}", at);
      }
      this.i = j;
      return v;
    }
    if (this.i >= s.length || (c === 94 && this.i + 1 >= s.length)) this.fail("unterminated escape sequence", at);
    if (c === 94) return s.charCodeAt((this.i += 2) - 1) & 31; // \^A is control-A
    const cp = s.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return ESCAPES.get(cp) ?? cp;
  }

  char(at: number): number {
    const s = this.s;
    this.i = at + 1;
    if (this.i >= s.length) this.fail('expected a character after "$"', at);
    this.kind = K_INT;
    if (s.charCodeAt(this.i) === 92) {
      this.i++;
      return this.escape();
    }
    const cp = s.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return cp;
  }

  /** Index after the run of base-`base` digits from `i`; `_` only between two digits. */
  digits(i: number, base: number): number {
    const s = this.s;
    for (const start = i; ; i++) {
      const c = s.charCodeAt(i);
      if (!(digitValue(c) < base || (c === 95 && i > start && digitValue(s.charCodeAt(i + 1)) < base))) return i;
    }
  }

  number(start: number, negative: boolean): number {
    const s = this.s;
    let i = this.digits(start, 10);
    let value: number;
    this.kind = K_INT;
    if (s.charCodeAt(i) === 35) {
      const base = Number(clean(s.slice(start, i)));
      if (!(base >= 2 && base <= 36)) this.fail(`invalid base ${base}: must be 2 to 36`, start);
      const from = i + 1;
      i = this.digits(from, base);
      if (i === from) this.fail(`expected base-${base} digits after "#", got ${this.got(i)}`, i);
      value = parseInt(clean(s.slice(from, i)), base);
    } else if (s.charCodeAt(i) === 46 && isDigit(s.charCodeAt(i + 1))) {
      i = this.digits(i + 1, 10);
      if ((s.charCodeAt(i) | 32) === 101) {
        const sign = s.charCodeAt(i + 1);
        const from = sign === 43 || sign === 45 ? i + 2 : i + 1;
        if (!isDigit(s.charCodeAt(from)))
          this.fail(`expected digits in the float's exponent, got ${this.got(from)}`, from);
        i = this.digits(from, 10);
      }
      this.kind = K_OTHER;
      value = Number(clean(s.slice(start, i)));
      if (!Number.isFinite(value)) this.fail("float is out of range", start);
    } else value = Number(clean(s.slice(start, i)));
    if (isNameChar(s.charCodeAt(i))) this.fail(`unexpected ${this.got(i)} right after a number`, i);
    this.i = i;
    // `0 - 0` keeps an integer -0 at 0; floats keep their sign.
    return negative ? (this.kind === K_INT ? 0 - value : -value) : value;
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

  let lineStarts: number[] | undefined;
  const locate = (path: readonly (string | number)[]): Position | undefined => {
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
  return { value, locate };
}
