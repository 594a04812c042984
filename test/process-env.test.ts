import { test } from "node:test";
import assert from "node:assert/strict";
import { envName, envValue, exportEnv } from "../src/process-env.ts";

test("env keys become variable names: upper case, camelCase and punctuation as underscores", () => {
  const cases: [string, string | undefined][] = [
    ["port", "PORT"],
    ["pool_size", "POOL_SIZE"],
    ["poolSize", "POOL_SIZE"],
    ["db.url", "DB_URL"],
    ["api-key", "API_KEY"],
    ["HTTPServer", "HTTPSERVER"],
    ["_private_", "PRIVATE"],
    ["2fa", "_2FA"],
    ["--", undefined],
  ];
  for (const [key, name] of cases) assert.equal(envName(key), name, key);
});

test("values are exported as text: strings as they are, scalars printed, objects and lists as JSON, null not at all", () => {
  const cases: [unknown, string | undefined][] = [
    ["hello", "hello"],
    [8080, "8080"],
    [1.5, "1.5"],
    [true, "true"],
    [{ a: [1, "b"] }, '{"a":[1,"b"]}'],
    [[1, 2], "[1,2]"],
    [null, undefined],
    [undefined, undefined],
  ];
  for (const [value, text] of cases) assert.equal(envValue(value), text, JSON.stringify(value));
});

test("exportEnv gives one variable per key plus BC_GITOPS_ENV with the whole env", () => {
  const env = { port: 8080, pool_size: 10, nested: { deep: true }, gone: null, greeting: "hi" };
  assert.deepEqual(exportEnv(env), {
    PORT: "8080",
    POOL_SIZE: "10",
    NESTED: '{"deep":true}',
    GREETING: "hi",
    BC_GITOPS_ENV: JSON.stringify(env),
  });
});
