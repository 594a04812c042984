import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErlangSyntaxError, parseErlangTerms } from "../src/erlang.ts";

const value = (text: string): unknown => parseErlangTerms(text).value;

/** The thrown ErlangSyntaxError as [message, line, column]. */
function syntaxError(text: string): [string, number, number] {
  try {
    parseErlangTerms(text);
  } catch (error) {
    assert.ok(error instanceof ErlangSyntaxError, `expected an ErlangSyntaxError, got ${String(error)}`);
    assert.equal(error.name, "ErlangSyntaxError");
    return [error.message, error.line, error.column];
  }
  assert.fail(`expected ${JSON.stringify(text.slice(0, 80))} to be rejected`);
}

const SPEC = `%% apps/my_web_app/app.config
#{
    %% Application name
    name => my_web_app,
    version => <<"1.0.0">>,
    source => #{ type => git, url => <<"https://github.com/myorg/my_web_app.git">>, ref => <<"v1.0.0">> },
    env => #{ port => 8080, pool_size => 10 },
    health => #{ type => http, port => 8080, path => <<"/health">>, interval => 30000, timeout => 5000 },
    depends_on => [db_proxy]
}.
`;

const SPEC_VALUE = {
  name: "my_web_app",
  version: "1.0.0",
  source: { type: "git", url: "https://github.com/myorg/my_web_app.git", ref: "v1.0.0" },
  env: { port: 8080, pool_size: 10 },
  health: { type: "http", port: 8080, path: "/health", interval: 30000, timeout: 5000 },
  depends_on: ["db_proxy"],
};

describe("the three top-level forms of a bc_gitops spec", () => {
  test("a map spec converts to a plain object", () => {
    const result = value(SPEC);
    assert.deepEqual(result, SPEC_VALUE);
    assert.equal(Object.getPrototypeOf(result), Object.prototype);
  });

  test("a proplist spec converts to the same kind of object", () => {
    const text = `[{name, my_web_app}, {version, "1.0.0"}, {env, [{port, 8080}]}, {depends_on, [db_proxy]}].`;
    assert.deepEqual(value(text), {
      name: "my_web_app",
      version: "1.0.0",
      env: { port: 8080 },
      depends_on: ["db_proxy"],
    });
  });

  test("the file:consult form (several pairs, each ending with a dot) converts to one object", () => {
    assert.deepEqual(value(`{name, my_app}.\n{version, <<"1.0">>}.`), { name: "my_app", version: "1.0" });
    assert.deepEqual(value(`{name, first}.\n{name, second}.\n`), { name: "first" }, "the first pair wins");
  });

  const tops: Array<[string, string, unknown]> = [
    ["one pair alone stays a tuple", "{name, my_app}.", ["name", "my_app"]],
    ["several terms that are not all pairs give an array", "a.\n{b, 1}.\n", ["a", ["b", 1]]],
    ["several non-pair terms give an array", "1. 2. three.", [1, 2, "three"]],
    [
      "pairs with integer first elements are not a proplist",
      "{1, a}. {2, b}.",
      [
        [1, "a"],
        [2, "b"],
      ],
    ],
    ["a single atom", "hello.", "hello"],
    ["the final dot may be followed by a comment", "hello. % done", "hello"],
    ["whitespace may sit between the term and its dot", "hello \n .", "hello"],
    ["a byte-order mark is whitespace", "\uFEFFhello.", "hello"],
  ];
  for (const [name, text, expected] of tops) test(`top level: ${name}`, () => assert.deepEqual(value(text), expected));
});

describe("syntax elements and their JS values", () => {
  const cases: Array<[string, string, unknown]> = [
    // atoms
    ["a bare atom is a string", "my_app.", "my_app"],
    ["a bare atom may hold digits, _ and @", "node1@host_2.", "node1@host_2"],
    ["a bare atom may hold uppercase letters after the first", "myApp.", "myApp"],
    ["a quoted atom may hold spaces", "'hello world'.", "hello world"],
    ["a quoted atom may start with an uppercase letter", "'Elixir.Foo'.", "Elixir.Foo"],
    ["a quoted atom has escapes", String.raw`'it\'s\n\x41'.`, "it's\nA"],
    ["an empty quoted atom", "''.", ""],
    ["true is a boolean", "true.", true],
    ["false is a boolean", "false.", false],
    ["a quoted 'true' is the same atom", "'true'.", true],
    ["undefined is null", "undefined.", null],
    ["nil is null", "nil.", null],
    ["null is null", "null.", null],
    // strings
    ["a string", `"abc".`, "abc"],
    ["an empty string", `"".`, ""],
    ["adjacent strings concatenate", `"ab" "cd"\n  % comment\n  "ef".`, "abcdef"],
    ["a % inside a string is not a comment", `"100% sure".`, "100% sure"],
    ["a % inside a quoted atom is not a comment", `'50%'.`, "50%"],
    ["a string may span lines", `"a\nb".`, "a\nb"],
    ["a string keeps non-ASCII text", `"héllo ☺ 😀".`, "héllo ☺ 😀"],
    // binaries
    ["a binary string", `<<"text">>.`, "text"],
    ["a binary string with /utf8", `<<"héllo"/utf8>>.`, "héllo"],
    ["an empty binary", "<<>>.", ""],
    ["a binary with spaces inside", `<< "a" , "b" >>.`, "ab"],
    ["a binary of bytes is the string of those char codes", "<<1,2,3>>.", "\u0001\u0002\u0003"],
    ["a binary of ASCII bytes", "<<104, 105>>.", "hi"],
    ["bytes that are valid UTF-8 decode as UTF-8", "<<195, 169>>.", "é"],
    ["bytes that are not valid UTF-8 decode one char per byte", "<<233>>.", "é"],
    ["a binary mixes strings, bytes and char literals", `<<"a", 66, $c>>.`, "aBc"],
    ["adjacent strings concatenate inside a binary", `<<"ab" "cd">>.`, "abcd"],
    // escapes
    ["escape \\n", String.raw`"\n".`, "\n"],
    ["escape \\t", String.raw`"\t".`, "\t"],
    ["escape \\r", String.raw`"\r".`, "\r"],
    ['escape \\"', String.raw`"\"".`, '"'],
    ["escape \\\\", String.raw`"\\".`, "\\"],
    ["escape \\'", String.raw`"\'".`, "'"],
    ["escape \\s", String.raw`"\s".`, " "],
    ["escape \\e", String.raw`"\e".`, "\u001b"],
    ["escape \\d", String.raw`"\d".`, "\u007f"],
    ["escape \\b", String.raw`"\b".`, "\b"],
    ["escape \\f", String.raw`"\f".`, "\f"],
    ["escape \\v", String.raw`"\v".`, "\v"],
    ["octal escape", String.raw`"\101\0\7".`, "A\u0000\u0007"],
    ["octal escape takes at most three digits", String.raw`"\1011".`, "A1"],
    ["hex escape", String.raw`"\x41\x6a".`, "Aj"],
    ["braced hex escape", String.raw`"\x{263A}\x{1F600}".`, "☺😀"],
    ["control escape", String.raw`"\^a\^Z".`, "\u0001\u001a"],
    ["an unknown escape stands for the character", String.raw`"\q".`, "q"],
    ["escapes between plain text", String.raw`"a\tb\nc".`, "a\tb\nc"],
    // chars
    ["a char literal is an integer", "$a.", 97],
    ["an escaped char literal", String.raw`$\n.`, 10],
    ["a char literal of a space", "$ .", 32],
    ["a char literal with a hex escape", String.raw`$\x{263A}.`, 0x263a],
    ["a char literal outside the BMP", "$😀.", 0x1f600],
    ["a negated char literal", "-$a.", -97],
    // integers
    ["an integer", "123.", 123],
    ["a negative integer", "-5.", -5],
    ["a positive sign", "+5.", 5],
    ["a sign separated by whitespace", "- 5.", -5],
    ["negative zero is zero", "-0.", 0],
    ["base 16", "16#FF.", 255],
    ["base 16 in lowercase", "16#ff.", 255],
    ["base 2", "2#101.", 5],
    ["base 8", "8#777.", 511],
    ["base 36", "36#Z.", 35],
    ["a negative based integer", "-16#10.", -16],
    ["digit separators", "1_000_000.", 1000000],
    ["digit separators in a based integer", "16#FF_FF.", 65535],
    // floats
    ["a float", "1.5.", 1.5],
    ["a negative float with an exponent", "-2.0e3.", -2000],
    ["a float with a negative exponent", "1.0E-2.", 0.01],
    ["a float with a positive exponent", "1.5e+2.", 150],
    ["a float with separators", "1_000.5.", 1000.5],
    // lists, tuples, maps
    ["a list", "[a, b].", ["a", "b"]],
    ["an empty list", "[].", []],
    ["a list of integers stays a list", "[104, 105].", [104, 105]],
    ["nested lists", "[[1], [[2]]].", [[1], [[2]]]],
    ["a tuple is an array", '{a, 1, <<"x">>}.', ["a", 1, "x"]],
    ["an empty tuple", "{}.", []],
    ["a map with =>", "#{a => 1, b => two}.", { a: 1, b: "two" }],
    ["a map with :=", "#{a := 1}.", { a: 1 }],
    ["an empty map", "#{}.", {}],
    ["whitespace between # and {", "# {a => 1}.", { a: 1 }],
    ["map keys may be binaries and strings", `#{<<"k1">> => 1, "k2" => 2, 'k 3' => 3}.`, { k1: 1, k2: 2, "k 3": 3 }],
    ["integer map keys become decimal strings", "#{1 => a, -2 => b, 16#10 => c}.", { "1": "a", "-2": "b", "16": "c" }],
    ["true and undefined keys stay their atom names", "#{true => 1, undefined => 2}.", { true: 1, undefined: 2 }],
    ["duplicate map keys: the last one wins, as in Erlang", "#{a => 1, a => 2}.", { a: 2 }],
    ["comments and blank lines anywhere", "% head\n[ % open\n a % first\n ,\n\n b ] % close\n. % end\n", ["a", "b"]],
  ];
  for (const [name, text, expected] of cases)
    test(`${name}: ${text.trim()}`, () => assert.deepEqual(value(text), expected));
});

describe("proplists versus plain lists", () => {
  const cases: Array<[string, string, unknown]> = [
    ["a list of atoms stays an array", "[db_proxy, cache].", ["db_proxy", "cache"]],
    ["an empty list stays an array", "[].", []],
    ["pairs become an object", "[{a, 1}, {b, 2}].", { a: 1, b: 2 }],
    ["a bare atom among pairs means true", "[{a, 1}, verbose].", { a: 1, verbose: true }],
    ["the first duplicate key wins", "[{a, 1}, {a, 2}, a].", { a: 1 }],
    ["a bare atom first wins over a later pair", "[a, {a, 2}].", { a: true }],
    ["string and binary keys", `[{"k1", 1}, {<<"k2">>, 2}].`, { k1: 1, k2: 2 }],
    ["a quoted atom key", "[{'my key', 1}].", { "my key": 1 }],
    ["a true key is the text true", "[{true, x}].", { true: "x" }],
    ["a string element makes it a list", `[{a, 1}, "b"].`, [["a", 1], "b"]],
    ["an integer element makes it a list", "[{a, 1}, 2].", [["a", 1], 2]],
    ["an integer first element makes it a list", "[{1, a}].", [[1, "a"]]],
    ["a 3-tuple makes it a list", "[{a, 1, 2}].", [["a", 1, 2]]],
    ["a 1-tuple makes it a list", "[{a}].", [["a"]]],
    [
      "a list inside a pair is converted on its own",
      "[{deps, [a, b]}, {env, [{k, v}]}].",
      { deps: ["a", "b"], env: { k: "v" } },
    ],
    ["a pair value may be a map", "[{env, #{port => 1}}].", { env: { port: 1 } }],
  ];
  for (const [name, text, expected] of cases) test(`${name}: ${text}`, () => assert.deepEqual(value(text), expected));
});

describe("locate()", () => {
  const parsed = parseErlangTerms(SPEC);
  const cases: Array<[string, Array<string | number>, number, number]> = [
    ["the top-level value", [], 2, 1],
    ["a map value", ["name"], 4, 13],
    ["a binary value", ["version"], 5, 16],
    ["a nested map", ["source"], 6, 15],
    ["a value in a nested map", ["source", "url"], 6, 38],
    ["a value two levels down", ["env", "port"], 7, 23],
    ["a list element", ["depends_on", 0], 9, 20],
    ["a list element by numeric string", ["depends_on", "0"], 9, 20],
    ["an unknown key: its parent", ["health", "nope"], 8, 15],
    ["an unknown top key: the top", ["nope"], 2, 1],
    ["a path through a leaf: the leaf", ["name", "deeper", 3], 4, 13],
    ["an out-of-range index: the list", ["depends_on", 5], 9, 19],
    ["a negative index: the list", ["depends_on", -1], 9, 19],
  ];
  for (const [name, path, line, column] of cases) {
    test(`gives ${name} (${JSON.stringify(path)} at ${line}:${column})`, () => {
      assert.deepEqual(parsed.locate(path), { line, column });
    });
  }

  test("locates inside proplists, tuples and the consult form", () => {
    const text = '{name, my_app}.\n{env, [{port, 8080},\n       verbose]}.\n{hosts, [{a, "x"}, b]}.';
    const p = parseErlangTerms(text);
    assert.deepEqual(p.locate([]), { line: 1, column: 1 });
    assert.deepEqual(p.locate(["name"]), { line: 1, column: 8 });
    assert.deepEqual(p.locate(["env"]), { line: 2, column: 7 });
    assert.deepEqual(p.locate(["env", "port"]), { line: 2, column: 15 });
    assert.deepEqual(p.locate(["env", "verbose"]), { line: 3, column: 8 });
    assert.deepEqual(p.locate(["hosts", "a"]), { line: 4, column: 14 });

    const q = parseErlangTerms("[0,\n {a, [1,\n  {b, 2.5}]}].");
    assert.deepEqual(q.value, [0, ["a", [1, ["b", 2.5]]]]);
    assert.deepEqual(q.locate([1, 1, 1, 1]), { line: 3, column: 7 });
    assert.deepEqual(q.locate([1, 1, 1]), { line: 3, column: 3 });
    const r = parseErlangTerms("[flag,\n {a, 1}].");
    assert.deepEqual(r.value, { flag: true, a: 1 });
    assert.deepEqual(r.locate(["flag"]), { line: 1, column: 2 });
    assert.deepEqual(r.locate(["a"]), { line: 2, column: 6 });
  });

  test("locates the terms of a top-level array and keeps positions out of the values", () => {
    const p = parseErlangTerms("% x\n  a.\n  #{k => [1]}.\n");
    assert.deepEqual(p.value, ["a", { k: [1] }]);
    assert.deepEqual(p.locate([]), { line: 2, column: 3 });
    assert.deepEqual(p.locate([1, "k", 0]), { line: 3, column: 11 });
    assert.deepEqual(Object.keys((p.value as unknown[])[1] as object), ["k"]);
  });

  test("locates a top-level leaf and never throws for odd paths", () => {
    const p = parseErlangTerms("\n\n   42.");
    assert.deepEqual(p.locate([]), { line: 3, column: 4 });
    assert.deepEqual(p.locate(["a", 1, "b"]), { line: 3, column: 4 });
    const m = parseErlangTerms("#{a => 1}.");
    for (const path of [["__proto__"], ["constructor"], ["toString"], [""], [Number.NaN], [1.5]]) {
      assert.deepEqual(m.locate(path), { line: 1, column: 1 });
    }
  });

  test("duplicate keys locate the value that was kept", () => {
    assert.deepEqual(parseErlangTerms("#{a => 1,\n  a => 2}.").locate(["a"]), { line: 2, column: 8 });
    assert.deepEqual(parseErlangTerms("[{a, 1},\n {a, 2}].").locate(["a"]), { line: 1, column: 6 });
    assert.deepEqual(parseErlangTerms("{a, 1}.\n{a, 2}.").locate(["a"]), { line: 1, column: 5 });
  });

  test("positions still work after the caller mutates the value", () => {
    const p = parseErlangTerms("#{env =>\n  #{port => 1}}.");
    delete (p.value as Record<string, unknown>).env;
    assert.deepEqual(p.locate(["env", "port"]), { line: 2, column: 13 });
  });
});

describe("syntax errors say what is wrong and where", () => {
  const cases: Array<[string, string, string | RegExp, number, number]> = [
    ["an empty file", "", 'empty file: expected one term ending with "."', 1, 1],
    ["a file of comments only", "% nothing\n   \n", 'empty file: expected one term ending with "."', 1, 1],
    ["an unterminated string", 'x.\n  "abc', 'unterminated string: missing closing "', 2, 3],
    ["an unterminated quoted atom", "[\n 'abc].", "unterminated quoted atom: missing closing '", 2, 2],
    ["an unterminated binary", '#{a => <<"x"', 'unterminated binary: "<<" is never closed by ">>"', 1, 8],
    [
      "a binary closed by one >",
      '<<"x">.',
      /^expected "," or ">>" in binary, got ">" \(the binary opens at 1:1\)$/,
      1,
      6,
    ],
    ["an unterminated list", "[a,\n b", 'unterminated list: "[" is never closed by "]"', 1, 1],
    ["an unterminated tuple", "{a, b", 'unterminated tuple: "{" is never closed by "}"', 1, 1],
    ["an unterminated map", "#{a => 1,\n b => 2", 'unterminated map: "{" is never closed by "}"', 1, 2],
    [
      "a missing comma in a list",
      "[a\n b].",
      'expected "," or "]" after list element, got "b" (the list opens at 1:1)',
      2,
      2,
    ],
    [
      "a missing comma in a map",
      "#{a => 1 b => 2}.",
      'expected "," or "}" after map element, got "b" (the map opens at 1:2)',
      1,
      10,
    ],
    ["a missing => in a map", "#{a 1}.", 'expected "=>" or ":=" after map key, got "1"', 1, 5],
    ["a map closed right after a key", "#{a}.", 'expected "=>" or ":=" after map key, got "}"', 1, 4],
    [
      "a mismatched closing bracket",
      "[a, b}.",
      'expected "," or "]" after list element, got "}" (the list opens at 1:1)',
      1,
      6,
    ],
    ["an extra closing bracket", "[a]].", 'unbalanced "]": nothing is open here to close', 1, 4],
    ["a trailing comma", "[a, ].", /^unexpected "\]": expected a term/, 1, 5],
    ["a missing final dot", "#{a => 1}\n", 'missing "." after the last term', 1, 10],
    ["a missing dot between terms", "{a, 1}\n{b, 2}.", 'expected "." after the term, got "{"', 2, 1],
    [
      "a dot glued to the next term",
      "{a, 1}.{b, 2}.",
      '"." ending a term must be followed by whitespace, a comment or the end of the file',
      1,
      8,
    ],
    [
      "an unexpected character",
      "#{a => ;}.",
      'unexpected ";": expected a term (atom, number, string, binary, list, tuple or map)',
      1,
      8,
    ],
    ["a NUL byte", "[a, \u0000].", /^unexpected character U\+0000: expected a term/, 1, 5],
    ["a variable", "#{a => Foo}.", /^unexpected "Foo": a variable is not a value/, 1, 8],
    ["an underscore variable", "[_].", /^unexpected "_": a variable/, 1, 2],
    [
      "an improper list",
      "[a | b].",
      'improper lists ("[Head | Tail]") are not supported; separate elements with ","',
      1,
      4,
    ],
    ["a list as a map key", "#{[a] => 1}.", "map keys must be atoms or strings", 1, 3],
    ["a float as a map key", "#{\n  1.5 => 1}.", "map keys must be atoms or strings", 2, 3],
    ["a tuple as a map key", "#{{a} => 1}.", "map keys must be atoms or strings", 1, 3],
    ["a record", "#rec{a = 1}.", "records (#name{...}) are not supported; use a map #{...}", 1, 1],
    ["a # without {", "#[].", 'expected "{" after "#", got "["', 1, 2],
    ["a byte out of range", "<<1, 256>>.", "binary bytes must be integers from 0 to 255", 1, 6],
    ["a negative byte", "<<-1>>.", "binary bytes must be integers from 0 to 255", 1, 3],
    ["a sized binary segment", "<<1:16>>.", "sized binary segments (Value:Size) are not supported", 1, 4],
    ["an unsupported binary type", '<<"a"/utf16>>.', /^unsupported binary segment type "utf16"/, 1, 7],
    ["an atom in a binary", "<<a>>.", /^expected a string or a byte \(0\.\.255\) in binary, got "a"/, 1, 3],
    ["a bad hex escape", String.raw`"ab\xZZ".`, /^invalid \\x escape/, 1, 4],
    ["an unclosed braced hex escape", String.raw`"\x{41".`, /^invalid \\x escape/, 1, 2],
    ["a code point beyond Unicode", String.raw`"\x{110000}".`, /^escape is beyond the last Unicode code point/, 1, 2],
    ["an escape at the end of the file", '"abc\\', "unterminated escape sequence", 1, 5],
    ["a $ at the end of the file", "$", 'expected a character after "$"', 1, 1],
    ["a sign without a number", "- a.", 'expected a number after "-", got "a"', 1, 3],
    ["a bad base", "37#1.", "invalid base 37: must be 2 to 36", 1, 1],
    ["a based integer without digits", "16#.", 'expected base-16 digits after "#", got "."', 1, 4],
    ["a digit out of its base", "2#102.", 'unexpected "2" right after a number', 1, 5],
    ["an exponent without a fraction", "1e3.", 'unexpected "e3" right after a number', 1, 2],
    ["an exponent without digits", "1.0e.", /^expected digits in the float's exponent/, 1, 5],
    ["a float out of range", "1.0e999.", "float is out of range", 1, 1],
    ["a double underscore", "1__0.", 'unexpected "__0" right after a number', 1, 2],
    ["a term cut off after a map arrow", "#{a =>", "unexpected end of file: expected a term", 1, 7],
  ];
  for (const [name, text, message, line, column] of cases) {
    test(`reports ${name} at ${line}:${column}`, () => {
      const [m, l, c] = syntaxError(text);
      if (typeof message === "string") assert.equal(m, message);
      else assert.match(m, message);
      assert.deepEqual([l, c], [line, column]);
    });
  }

  test("error messages carry no position prefix", () => {
    assert.doesNotMatch(syntaxError("[a b].")[0], /^\d+:\d+/);
  });
});

describe("hostile input", () => {
  // A small deterministic PRNG, so a failure is reproducible.
  function bytes(seed: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  }

  test("random binary garbage is a syntax error, decoded either way", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const raw = bytes(seed, 1 + ((seed * 37) % 4096));
      syntaxError(new TextDecoder("latin1").decode(raw));
      syntaxError(new TextDecoder("utf-8").decode(raw));
    }
    syntaxError("\u0000\u0000\u0000");
    syntaxError("a.\u0000");
    syntaxError("\uFFFD\uFFFD");
  });

  test("a prototype-pollution attempt stays an own key and pollutes nothing", () => {
    const texts = [
      "#{'__proto__' => #{polluted => true}}.",
      '#{<<"__proto__">> => #{polluted => true}}.',
      "[{'__proto__', [{polluted, true}]}].",
      "{'__proto__', #{polluted => true}}.\n{name, x}.",
    ];
    for (const text of texts) {
      const result = value(text) as Record<string, unknown>;
      assert.equal(Object.getPrototypeOf(result), Object.prototype, text);
      assert.ok(Object.hasOwn(result, "__proto__"), text);
      assert.deepEqual(Object.getOwnPropertyDescriptor(result, "__proto__")?.value, { polluted: true });
      assert.equal((result as { polluted?: unknown }).polluted, undefined, text);
      assert.equal(({} as { polluted?: unknown }).polluted, undefined, text);
      assert.equal((Object.prototype as { polluted?: unknown }).polluted, undefined, text);
    }
    const other = value("#{constructor => 1, toString => 2, hasOwnProperty => 3}.") as Record<string, unknown>;
    assert.deepEqual({ ...other }, { constructor: 1, toString: 2, hasOwnProperty: 3 });
    assert.deepEqual(value("[{constructor, 1}, {constructor, 2}]."), { constructor: 1 });
  });

  test("nesting up to 1000 levels parses and deeper nesting is a clear error", () => {
    let nested: unknown = value(`${"[".repeat(1000)}${"]".repeat(1000)}.`);
    for (let depth = 1; depth < 1000; depth++) nested = (nested as unknown[])[0];
    assert.deepEqual(nested, []);
    assert.deepEqual(syntaxError(`${"[".repeat(1001)}${"]".repeat(1001)}.`), [
      "nesting deeper than 1000 levels is not supported",
      1,
      1001,
    ]);
    const maps = value(`${"#{a => ".repeat(1000)}1${"}".repeat(1000)}.`);
    assert.equal(JSON.stringify(maps), `${'{"a":'.repeat(1000)}1${"}".repeat(1000)}`);
    const [message] = syntaxError(`${"#{a => {".repeat(100_000)}`);
    assert.equal(message, "nesting deeper than 1000 levels is not supported");
    assert.equal(syntaxError("[".repeat(1_000_000))[0], "nesting deeper than 1000 levels is not supported");
  });

  test("a 10 MB spec parses, and a 10 MB broken one fails with a position", () => {
    const item =
      '  #{name => app_N, version => <<"1.0.0">>, env => #{port => 8080, tags => [a, "b\\n", 1.5, 16#FF]}},\n';
    const count = Math.ceil(10_000_000 / item.length);
    const text = `[\n${item.repeat(count)}  last].\n`;
    assert.ok(text.length >= 10_000_000);
    const parsed = parseErlangTerms(text);
    const list = parsed.value as unknown[];
    assert.equal(list.length, count + 1);
    assert.deepEqual(list[count - 1], {
      name: "app_N",
      version: "1.0.0",
      env: { port: 8080, tags: ["a", "b\n", 1.5, 255] },
    });
    assert.equal(list[count], "last");
    assert.deepEqual(parsed.locate([count]), { line: count + 2, column: 3 });
    assert.deepEqual(parsed.locate([count - 1, "env", "port"]), { line: count + 1, column: 61 });

    assert.deepEqual(syntaxError(text.slice(0, -3)), ['unterminated list: "[" is never closed by "]"', 1, 1]);
    assert.deepEqual(syntaxError(`x.\n"${"a".repeat(10_000_000)}`), ['unterminated string: missing closing "', 2, 1]);
    assert.deepEqual(syntaxError(`%${"%".repeat(10_000_000)}`), [
      'empty file: expected one term ending with "."',
      1,
      1,
    ]);
    const escapes = value(`"${"\\n".repeat(2_000_000)}".`) as string;
    assert.equal(escapes.length, 2_000_000);
    assert.equal(value(`<<${"7,".repeat(1_000_000)}200>>.`) as string, "\u0007".repeat(1_000_000) + "\u00c8");
  });
});
