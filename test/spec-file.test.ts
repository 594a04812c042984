import { test } from "node:test";
import assert from "node:assert/strict";
import { SpecSyntaxError, parseSpecText, type SpecFormat } from "../src/spec-file.ts";

/** The nesting limit of src/_spec-limits.ts. */
const MAX_NESTING = 100;

/**
 * A spec whose value nests `levels` deep (the top-level mapping is level 1, env level 2), and the
 * position of the opening of its deepest level.
 */
const shapes: Record<
  string,
  (levels: number) => { format: SpecFormat; text: string; deepest: { line: number; column: number } }
> = {
  JSON: (levels) => {
    const head = `{"name":"x","version":"1.0.0","env":{"a":`;
    const k = levels - 2;
    return {
      format: "json",
      text: `${head}${"[".repeat(k)}${"]".repeat(k)}}}`,
      deepest: { line: 1, column: head.length + k },
    };
  },
  "YAML flow": (levels) => {
    const k = levels - 2;
    return {
      format: "yaml",
      text: `name: x\nversion: "1.0.0"\nenv:\n  a: ${"[".repeat(k)}${"]".repeat(k)}\n`,
      deepest: { line: 4, column: 5 + k },
    };
  },
  "YAML block sequence": (levels) => {
    const k = levels - 2;
    return {
      format: "yaml",
      text: `name: x\nversion: "1.0.0"\nenv:\n  a:\n    ${"- ".repeat(k)}1\n`,
      deepest: { line: 5, column: 5 + 2 * (k - 1) },
    };
  },
  "YAML block mapping": (levels) => {
    const k = levels - 1; // env's value is the mapping at level 2
    const lines = Array.from({ length: k }, (_, j) => `${" ".repeat(j + 2)}k${j}:`).join("\n");
    return {
      format: "yaml",
      text: `name: x\nversion: "1.0.0"\nenv:\n${lines} 1\n`,
      deepest: { line: 3 + k, column: k + 2 },
    };
  },
  "Erlang terms": (levels) => {
    const head = `#{name => x, version => <<"1.0.0">>, env => #{a => `;
    const k = levels - 2;
    return {
      format: "erlang",
      text: `${head}${"[".repeat(k)}${"]".repeat(k)}}}.`,
      deepest: { line: 1, column: head.length + k },
    };
  },
};

for (const [name, shape] of Object.entries(shapes)) {
  test(`${name} nested exactly ${MAX_NESTING} levels parses, and one level more is an error where that level opens`, async () => {
    const fits = shape(MAX_NESTING);
    const parsed = await parseSpecText(fits.text, fits.format);
    assert.equal((parsed.value as { name: unknown }).name, "x");

    const deeper = shape(MAX_NESTING + 1);
    const error = await parseSpecText(deeper.text, deeper.format).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof SpecSyntaxError, String(error));
    assert.match(error.message, /^nesting deeper than 100 levels/);
    assert.deepEqual({ line: error.line, column: error.column }, deeper.deepest);
  });

  test(`${name} nested thousands of levels is the same error, not a stack overflow`, async () => {
    // Indentation costs a block mapping one more space per level: 1400 levels is what 1 MB holds.
    const deep = shape(name === "YAML block mapping" ? 1400 : 20_000);
    const error = await parseSpecText(deep.text, deep.format).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof SpecSyntaxError, String(error));
    assert.match(
      error.message,
      name === "Erlang terms" ? /^nesting deeper than 1000 levels/ : /^nesting deeper than 100 levels/,
    );
  });
}

test("a YAML alias that refers to its own anchor is an error at the alias, not an endless value", async () => {
  const error = await parseSpecText("name: x\nversion: '1'\nenv: &e { self: *e }\n", "yaml").then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof SpecSyntaxError, String(error));
  assert.match(error.message, /refers to a value that contains it/);
  assert.deepEqual([error.line, error.column], [3, 17]);
});

test("aliases used within the limits still parse, shared values and merge keys included", async () => {
  const text = "name: x\nversion: '1'\nenv:\n  base: &b { a: 1, list: [1, 2] }\n  one: *b\n  two: { <<: *b, a: 2 }\n";
  const { value } = await parseSpecText(text, "yaml");
  assert.deepEqual((value as { env: unknown }).env, {
    base: { a: 1, list: [1, 2] },
    one: { a: 1, list: [1, 2] },
    two: { a: 2, list: [1, 2] },
  });
});

test("JSON positions come from the text itself: nested keys and values, list items, repeated keys, and the nearest written parent", async () => {
  const text = [
    "{",
    '  "name": "x", "version": "1",',
    '  "env": { "a\\"]}": [1, "[{,", { "deep": true }], "b": {} },',
    '  "env": { "port": 8080, "list": [ 10 , 20 ] }',
    "}",
  ].join("\n");
  const { value, locate } = await parseSpecText(text, "json");
  assert.deepEqual((value as { env: unknown }).env, { port: 8080, list: [10, 20] }, "JSON.parse keeps the last env");
  const at = async (path: PropertyKey[], where?: "key" | "value") => {
    const p = await locate(path, where);
    return p && [p.line, p.column];
  };
  assert.deepEqual(await at(["name"]), [2, 11]);
  assert.deepEqual(await at(["version"], "key"), [2, 16]);
  assert.deepEqual(await at(["env"]), [4, 10], "the last of repeated keys, as JSON.parse");
  assert.deepEqual(await at(["env", "port"]), [4, 20]);
  assert.deepEqual(await at(["env", "list", 1]), [4, 41]);
  assert.deepEqual(await at(["env", "list", 5]), [4, 34], "a missing item: its list");
  assert.deepEqual(await at(["env", "missing"], "key"), [4, 10], "a missing key: its mapping");
  assert.deepEqual(await at([]), [1, 1]);
});
