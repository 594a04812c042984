import { test } from "node:test";
import assert from "node:assert/strict";
import { hostIdentity } from "../../src/fleet/host.ts";
import { globMatches, globProblem, matches, mismatch, readSelector } from "../../src/fleet/selector.ts";

const web1 = hostIdentity("web-1", { role: "web", region: "eu", tier: "canary" }, { os: "linux" });
const db2 = hostIdentity("DB-2", { role: "db", region: "us", gpu: "" }, { os: "linux" });

/** Reads a selector that must be valid. */
function selector(value: unknown) {
  const { selector, issues } = readSelector(value);
  assert.deepEqual(issues, [], JSON.stringify(value));
  return selector;
}

const CASES: [title: string, selector: unknown, web1: boolean, db2: boolean][] = [
  ["an empty selector matches every host", {}, true, true],
  ["a host glob", { hosts: ["web-*"] }, true, false],
  ["one of several globs, and a single glob as a string", { hosts: "db-?" }, false, true],
  ["globs ignore case, like host names", { hosts: ["db-2"] }, false, true],
  ["a character set in a glob", { hosts: ["web-[0-4]", "db-[!2]"] }, true, false],
  ["exclude_hosts wins over hosts", { hosts: ["*"], exclude_hosts: ["web-1"] }, false, true],
  ["label equality", { labels: { role: "web" } }, true, false],
  ["every label must match", { labels: { role: "web", region: "us" } }, false, false],
  ["a built-in label", { labels: { os: "linux", host: "web-1" } }, true, false],
  ["in", { expressions: ["region in [eu, ap]"] }, true, false],
  ["in with parentheses and quotes", { expressions: ["region in ('us')"] }, false, true],
  ["notin holds hosts without the label too", { expressions: ["tier notin [canary]"] }, false, true],
  ["exists, also with an empty value", { expressions: ["gpu exists"] }, false, true],
  ["doesnotexist and its ! shorthand", { expressions: ["gpu doesnotexist", "!spot"] }, true, false],
  ["an object expression", { expressions: [{ key: "role", operator: "in", values: ["db", "cache"] }] }, false, true],
  ["YAML true and numbers are label text", { labels: { canary: true, zone: 3 } }, false, false],
  ["all parts together", { hosts: ["*-1"], labels: { role: "web" }, expressions: ["region in [eu]"] }, true, false],
];

for (const [title, value, onWeb, onDb] of CASES) {
  test(`selector: ${title}`, () => {
    const s = selector(value);
    assert.equal(matches(s, web1), onWeb, `web-1: ${mismatch(s, web1)}`);
    assert.equal(matches(s, db2), onDb, `db-2: ${mismatch(s, db2)}`);
  });
}

test("a mismatch says which part failed and with which value", () => {
  const why = (value: unknown) => mismatch(selector(value), web1);
  assert.equal(why({ hosts: ["db-*"] }), "host web-1 is not in hosts [db-*]");
  assert.equal(why({ exclude_hosts: ["web-?"] }), "host web-1 is excluded by exclude_hosts web-?");
  assert.equal(why({ labels: { role: "db" } }), 'label role is "web", not "db"');
  assert.equal(why({ labels: { zone: "a" } }), 'label zone is not set, not "a"');
  assert.equal(why({ expressions: ["region in [us, ap]"] }), 'label region is "eu", not in [us, ap]');
  assert.equal(why({ expressions: ["tier notin [canary]"] }), 'label tier is "canary", which is in [canary]');
  assert.equal(why({ expressions: ["gpu exists"] }), "label gpu is not set");
  assert.equal(why({ expressions: ["!tier"] }), 'label tier is set ("canary")');
  assert.equal(why({ labels: { role: "web" } }), undefined);
});

const BAD: [title: string, selector: unknown, path: (string | number)[], message: RegExp][] = [
  [
    "an unknown operator, with a hint",
    { expressions: ["region nin [eu]"] },
    ["expressions", 0],
    /"region nin \[eu\]": unknown selector operator "nin" \(did you mean "in"\?\); use in, notin, exists, doesnotexist/,
  ],
  [
    "an unknown operator in an object",
    { expressions: [{ key: "a", operator: "exist" }] },
    ["expressions", 0, "operator"],
    /unknown selector operator "exist" \(did you mean "exists"\?\)/,
  ],
  ["in without values", { expressions: ["region in []"] }, ["expressions", 0], /in needs at least one value/],
  ["exists with values", { expressions: ["gpu exists [a]"] }, ["expressions", 0], /exists takes no values/],
  [
    "equality written as an expression",
    { expressions: ["role=web"] },
    ["expressions", 0],
    /write label equality under labels/,
  ],
  ["a glob with a space", { hosts: ["db 1"] }, ["hosts", 0], /"db 1" cannot match any host name: " " is not allowed/],
  ["a glob with a slash", { exclude_hosts: ["web/*"] }, ["exclude_hosts", 0], /"\/" is not allowed in host names/],
  ["a glob starting with a dot", { hosts: [".web"] }, ["hosts", 0], /host names start with a letter or digit/],
  ["an empty glob", { hosts: [""] }, ["hosts", 0], /it is empty/],
  ["an unclosed set", { hosts: ["web-[12"] }, ["hosts", 0], /unclosed "\["/],
  ["a set of no host character", { hosts: ["web[ /]"] }, ["hosts", 0], /holds no character allowed/],
  ["a bad label key", { labels: { "my role": "web" } }, ["labels", "my role"], /is not a valid label key/],
  ["a bad label value", { labels: { role: "web api" } }, ["labels", "role"], /is not a valid label value/],
  [
    "a misspelt part",
    { label: { role: "web" } },
    ["label"],
    /unknown key "label" in a selector \(did you mean "labels"\?\)/,
  ],
  ["not a mapping", ["web-*"], [], /expected a selector mapping/],
];

for (const [title, value, path, message] of BAD) {
  test(`a selector is refused at its field: ${title}`, () => {
    const { issues } = readSelector(value);
    assert.equal(issues.length, 1, JSON.stringify(issues));
    assert.deepEqual(issues[0]!.path, path);
    assert.match(issues[0]!.message, message);
  });
}

test("globs match whole names and can always match some valid host name when accepted", () => {
  assert.equal(globMatches("web-*", "web-"), true);
  assert.equal(globMatches("web", "web-1"), false, "anchored");
  assert.equal(globMatches("*.eu", "a.eu"), true);
  assert.equal(globMatches("a.eu", "aXeu"), false, "a dot is a dot");
  for (const ok of ["*", "?", "web-*", "[a-z]*", "*-[0-9]", "db_1"]) assert.equal(globProblem(ok), undefined, ok);
});
