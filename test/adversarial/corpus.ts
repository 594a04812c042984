/**
 * A corpus of hostile app specs, generated at test time (some are megabytes or 20,000 levels deep):
 * deep nesting in every format, YAML alias bombs, a path source escaping the repository, symlinks
 * and oversized files. Each case says which file must get the error, what it says and where.
 */
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/** One hostile app directory and the error it must produce. */
export interface HostileCase {
  /** The app directory under `apps/`. */
  dir: string;
  /** Files to write, relative to the repository root. */
  files: Record<string, string | Uint8Array>;
  /** Symlinks to create, relative to the repository root -> link target. */
  links?: Record<string, string>;
  /** The file the error is reported on (relative to the repository root). */
  file: string;
  message: RegExp;
  /** Where the error points; absent when the error is about the file as a whole. */
  at?: { line: number; column: number };
}

/** The spec nesting limit these cases are built around (src/_spec-limits.ts). */
const LIMIT = 100;
const DEEP = 20_000;
const TOO_DEEP = /nesting deeper than 100 levels/;
const head = (name: string) => `name: ${name}\nversion: "1.0.0"\nenv:\n`;

/** Every hostile case, freshly generated. */
export function hostileCases(): HostileCase[] {
  const cases: HostileCase[] = [];
  const add = (dir: string, name: string, content: string | Uint8Array, message: RegExp, at?: HostileCase["at"]) =>
    cases.push({ dir, files: { [`apps/${dir}/${name}`]: content }, file: `apps/${dir}/${name}`, message, at });

  // The issue's case: 40 KB of JSON whose env holds 20,000 nested lists. The top-level object is
  // level 1 and env level 2, so the 99th "[" opens level 101.
  const json = `{"name":"deep-json","version":"1.0.0","env":{"a":`;
  add("deep-json", "app.json", `${json}${"[".repeat(DEEP)}${"]".repeat(DEEP)}}}`, TOO_DEEP, {
    line: 1,
    column: json.length + LIMIT - 1,
  });

  add("deep-flow", "app.yaml", `${head("deep-flow")}  a: ${"[".repeat(DEEP)}${"]".repeat(DEEP)}\n`, TOO_DEEP, {
    line: 4,
    column: 5 + LIMIT - 1,
  });
  add(
    "deep-flow-map",
    "app.yaml",
    `${head("deep-flow-map")}  a: ${"{a: ".repeat(DEEP)}1${"}".repeat(DEEP)}\n`,
    TOO_DEEP,
    { line: 4, column: 6 + 4 * (LIMIT - 2) },
  );
  // Compact block sequences: "- - - 1" nests one level per "- ".
  add("deep-block", "app.yaml", `${head("deep-block")}  a:\n    ${"- ".repeat(DEEP)}1\n`, TOO_DEEP, {
    line: 5,
    column: 5 + 2 * (LIMIT - 2),
  });
  // Block mappings by indentation: line 4 + j holds key k<j>, in the mapping at level j + 2.
  const keys = Array.from({ length: 1200 }, (_, j) => `${" ".repeat(j + 2)}k${j}:`).join("\n");
  add("deep-indent", "app.yaml", `${head("deep-indent")}${keys} 1\n`, TOO_DEEP, {
    line: 4 + LIMIT - 1,
    column: LIMIT + 2,
  });

  // Erlang terms: the parser's own limit (1000 term levels), and a value past 100 levels within it.
  const erl = (name: string) => `#{name => '${name}', version => <<"1.0.0">>, env => #{a => `;
  add(
    "deep-erlang",
    "app.config",
    `${erl("deep-erlang")}${"[".repeat(DEEP)}${"]".repeat(DEEP)}}}.\n`,
    /nesting deeper than 1000 levels/,
    { line: 1, column: erl("deep-erlang").length + 1000 - 1 },
  );
  add(
    "deep-erlang-value",
    "app.config",
    `${erl("deep-erlang-value")}${"[".repeat(500)}${"]".repeat(500)}}}.\n`,
    TOO_DEEP,
    { line: 1, column: erl("deep-erlang-value").length + LIMIT - 1 },
  );

  // Billion laughs: a9 is 10^9 values. The error points at the alias that expands the most.
  const laughs = Array.from(
    { length: 9 },
    (_, i) => `  a${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(",")}]\n`,
  ).join("");
  add("alias-bomb", "app.yaml", `${head("alias-bomb")}  a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n${laughs}`, /alias bomb/, {
    line: 13,
    column: 12,
  });
  // The same with merge keys, which the yaml package would otherwise expand in exponential time.
  const merges = Array.from(
    { length: 9 },
    (_, i) => `  a${i + 1}: &a${i + 1} {<<: [${Array(10).fill(`*a${i}`).join(",")}]}\n`,
  ).join("");
  add("merge-bomb", "app.yml", `${head("merge-bomb")}  a0: &a0 {x: 1}\n${merges}`, /alias bomb/, {
    line: 13,
    column: 17,
  });
  add("alias-cycle", "app.yaml", `${head("alias-cycle")}  a: &a [*a]\n`, /refers to a value that contains it/, {
    line: 4,
    column: 10,
  });
  // Each list is 60 levels deep, within the limit; the alias puts one inside the other.
  add(
    "alias-deep",
    "app.yaml",
    `${head("alias-deep")}  a: &a ${"[".repeat(60)}${"]".repeat(60)}\n  b: ${"[".repeat(60)}*a${"]".repeat(60)}\n`,
    TOO_DEEP,
    { line: 5, column: 6 + 60 },
  );
  add("alias-unknown", "app.yaml", `${head("alias-unknown")}  a: *nope\n`, /Unresolved alias/, { line: 4, column: 6 });
  // 101,000 values in 200 KB of JSON: the 99,996th item of the list is one past the budget.
  const many = `{"name":"many-values","version":"1.0.0","env":{"a":[`;
  add("many-values", "app.json", `${many}${Array(101_000).fill("0").join(",")}]}}`, /more than 100000 values/, {
    line: 1,
    column: many.length + 1 + 2 * 99_995,
  });

  // A path source climbing out of the repository.
  add(
    "escape",
    "app.yaml",
    `name: escape\nversion: "1.0.0"\nsource:\n  type: path\n  path: ../..\n`,
    /leaves the repository/,
    { line: 5, column: 9 },
  );
  // Files that are not a spec at all.
  add(
    "too-big",
    "app.yaml",
    `name: too-big\nversion: "1.0.0"\ndescription: ${"x".repeat(1024 * 1024)}\n`,
    /at most 1 MB/,
  );
  add("binary", "app.yaml", new Uint8Array([0x6e, 0x61, 0x6d, 0x65, 0x3a, 0x00, 0xff]), /NUL bytes/);
  // JSON with a repeated key and a field error: finding the field's position must not fail the load.
  add("json-dup", "app.json", `{"name":"json-dup","name":"json-dup","version":1}`, /quote it/, { line: 1, column: 48 });

  // Symlinks: a spec file pointing outside the repository, and an app directory pointing above it.
  cases.push({
    dir: "link-spec",
    files: {},
    links: { "apps/link-spec/app.yaml": "../../../../../../../../etc/hostname" },
    file: "apps/link-spec/app.yaml",
    message: /symbolic link/,
  });
  cases.push({
    dir: "link-dir",
    files: {},
    links: { "apps/link-dir": "../.." },
    file: "apps/link-dir",
    message: /symbolic link/,
  });
  return cases;
}

/** A valid spec just under the 1 MB limit: big files are fine, only files over it are refused. */
export function bigValidSpec(name: string): string {
  const head = `name: ${name}\nversion: "1.0.0"\nenv:\n  blob: `;
  return `${head}${"x".repeat(1024 * 1024 - head.length - 1)}\n`;
}

/** Writes the files and symlinks of `cases` under `root`. */
export async function writeCases(root: string, cases: readonly HostileCase[]): Promise<void> {
  for (const c of cases) {
    for (const [path, content] of Object.entries(c.files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), content);
    }
    for (const [path, target] of Object.entries(c.links ?? {})) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await symlink(target, join(root, path));
    }
  }
}
