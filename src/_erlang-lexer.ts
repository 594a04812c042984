/**
 * The lexical layer of the Erlang term parser (see `erlang.ts`): character classes, source
 * positions, the syntax error, and a scanner over the text that reads comments and whitespace,
 * quoted literals with their escapes, characters (`$a`) and numbers. It scans with `charCodeAt` and
 * slices (linear time, no per-character regex).
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

// What the last scanned or parsed term was: converted values forget it, map keys and proplists need it.
/** Term kind: anything not listed below. */
export const K_OTHER = 0;
/** Term kind: an atom (bare or quoted). */
export const K_ATOM = 1;
/** Term kind: a string or a binary. */
export const K_STR = 2;
/** Term kind: an integer (including a `$c` character). */
export const K_INT = 3;
/** Term kind: a 2-tuple whose first element is an atom, string or binary. */
export const K_PAIR = 4;

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

/** `0`-`9`. */
export const isDigit = (c: number): boolean => c >= 48 && c <= 57;
/** A character that starts a bare atom (Latin-1 lowercase). */
export const isLower = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 0xdf && c <= 0xff && c !== 0xf7);
/** A character that starts a variable (Latin-1 uppercase or `_`). */
export const isUpper = (c: number): boolean =>
  (c >= 65 && c <= 90) || c === 95 || (c >= 0xc0 && c <= 0xde && c !== 0xd7);
/** A character that may continue an atom or variable name. */
export const isNameChar = (c: number): boolean => isLower(c) || isUpper(c) || isDigit(c) || c === 64;
/** Whitespace between tokens (ASCII, no-break space, BOM). */
export const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0xfeff;
const digitValue = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : c >= 65 && c <= 90 ? c - 55 : 99;
const clean = (digits: string): string => (digits.includes("_") ? digits.replaceAll("_", "") : digits);

/** Byte segments as UTF-8 when they are valid UTF-8, else one character per byte (Latin-1). */
export function decodeBytes(bytes: number[]): string {
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

/** The offset at which each line of `text` starts (the first is 0). */
export function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", nl + 1)) starts.push(nl + 1);
  return starts;
}

/** The line and column of offset `at`, given the text's {@link lineStartsOf}. */
export function positionIn(lineStarts: number[], at: number): Position {
  let lo = 0;
  let hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid]! <= at) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: at - lineStarts[lo]! + 1 };
}

/**
 * A cursor (`i`) over the source text with the token readers the parser builds on. Readers advance
 * `i` past what they read; `number` and `char` set `kind` to the kind of what they read. Errors are
 * thrown as {@link ErlangSyntaxError} at an offset.
 */
export class ErlangLexer {
  readonly s: string;
  i = 0;
  /** The kind of the last term read (see `K_*`). */
  kind = K_OTHER;

  constructor(text: string) {
    this.s = text;
  }

  /** Throws an {@link ErlangSyntaxError} with `message` at offset `at`. */
  fail(message: string, at: number): never {
    const { line, column } = positionIn(lineStartsOf(this.s), at);
    throw new ErlangSyntaxError(message, line, column);
  }

  /** `line:column` of offset `at`, for messages that point at a second place. */
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

  /** Skips whitespace and `%` comments. */
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

  /** The character literal `$c` (or `$\escape`) at `at`, as its code point. */
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

  /** The integer (`42`, `16#ff`, `1_000`) or float (`1.5e3`) starting at `start`, negated if `negative`. */
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
}
