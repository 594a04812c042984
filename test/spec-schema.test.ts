/**
 * The JSON Schema editors use (`bc-gitops schema`) must compile in Ajv's strict 2020-12 mode and
 * give the same verdict as `validate` on every spec of the corpus (test/helpers/spec-corpus.ts), except for the rules listed
 * in VALIDATE_ONLY, where the schema is looser by design (the README lists them for users).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import Ajv2020 from "ajv/dist/2020.js";
import { parse as parseYaml } from "yaml";
import { validateText } from "../src/loader.ts";
import { exampleRepoFiles } from "../src/scaffold.ts";
import { KNOWN_KEYS, appSpecJsonSchema } from "../src/spec.ts";
import { CORPUS, README, VALIDATE_ONLY, readmeExample, specFile } from "./helpers/spec-corpus.ts";

function compile(schema: unknown) {
  // strict: unknown keywords and formats, union types, ignored keywords all throw, as strict editors refuse them.
  // Ajv is CommonJS: the default import is its module.exports, whose `default` is the class (typed so under NodeNext).
  return new Ajv2020.default({ strict: true, allErrors: true }).compile(schema as Record<string, unknown>);
}

test("the schema compiles in Ajv's strict draft 2020-12 mode", () => {
  const schema = appSpecJsonSchema();
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.equal(typeof compile(schema), "function");
  assert.doesNotMatch(JSON.stringify(schema), /SPEC section/, "users have no SPEC document");
});

const schemaCheck = compile(appSpecJsonSchema());

for (const c of CORPUS) {
  test(`the schema and validate agree on ${c.valid ? "valid" : "invalid"} spec: ${c.title}`, async () => {
    const { text, format, value } = specFile(c.spec);
    const verdict = await validateText(text, format);
    assert.equal(verdict.errors.length === 0, c.valid, `validate: ${JSON.stringify(verdict.errors)}`);
    if (c.warns) assert.match(verdict.warnings.map((w) => w.message).join("\n"), /unknown key/);
    const accepted = schemaCheck(value);
    assert.equal(accepted, c.only ? true : c.valid, `schema: ${JSON.stringify(schemaCheck.errors)}`);
  });
}

test("the corpus holds at least 50 specs, valid and invalid, and exercises every validate-only rule", () => {
  assert.ok(CORPUS.length >= 50, `${CORPUS.length} specs`);
  assert.ok(readmeExample, "the README's app spec example is found");
  assert.ok(CORPUS.filter((c) => c.valid).length >= 20 && CORPUS.filter((c) => !c.valid).length >= 30);
  assert.deepEqual(new Set(CORPUS.flatMap((c) => c.only ?? [])), new Set(Object.keys(VALIDATE_ONLY)));
});

test("the schema offers editors exactly the keys validate knows, in every mapping", () => {
  type Node = { properties?: Record<string, Node>; anyOf?: Node[] };
  const keys = (node: Node | undefined): string[] =>
    [...new Set([...Object.keys(node?.properties ?? {}), ...(node?.anyOf ?? []).flatMap(keys)])].sort();
  const root = appSpecJsonSchema() as Node;
  assert.deepEqual(keys(root), [...KNOWN_KEYS[""]!].sort());
  for (const at of ["source", "health", "icon", "limits"])
    assert.deepEqual(keys(root.properties?.[at]), [...KNOWN_KEYS[at]!].sort(), at);
});

test("the README lists every rule only validate checks", () => {
  const section = README.slice(
    README.indexOf("## The app spec"),
    README.indexOf("\n## ", README.indexOf("## The app spec") + 1),
  );
  for (const rule of ["depend on itself", "same app twice", "registry", "override's `source`"])
    assert.match(section, new RegExp(rule), rule);
});

test("bc-gitops init writes the same schema, and it accepts the spec init writes", () => {
  const files = exampleRepoFiles(8123);
  const written = JSON.parse(files["app-spec.schema.json"]!);
  assert.deepEqual(written, appSpecJsonSchema());
  const spec = files["apps/hello/app.yaml"]!;
  assert.match(spec, /^# yaml-language-server: \$schema=\.\.\/\.\.\/app-spec\.schema\.json$/m);
  assert.equal(compile(written)(parseYaml(spec)), true);
});
