#!/usr/bin/env node
/**
 * Fails (exit 1) when the modules under a directory (default `src/`) import each other in a cycle,
 * type-only imports included: a type belongs to the module that produces it. Prints every cycle as
 * `a.ts -> b.ts -> a.ts`. Plain Node, no dependencies: `node scripts/check-cycles.mjs [DIR]`.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(process.argv[2] ?? "src");

/** Every .ts file below `dir`. */
function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

/** Relative specifiers a module imports or re-exports, statically or with `import()`. */
function importsOf(text) {
  const found = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']/gms)) found.push(m[1]);
  for (const m of text.matchAll(/^\s*import\s*["'](\.{1,2}\/[^"']+)["']/gm)) found.push(m[1]);
  for (const m of text.matchAll(/\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g)) found.push(m[1]);
  return found;
}

const files = sources(root);
const known = new Set(files);
const graph = new Map(
  files.map((file) => [
    file,
    [...new Set(importsOf(readFileSync(file, "utf8")).map((s) => resolve(dirname(file), s)))].filter((d) =>
      known.has(d),
    ),
  ]),
);

// Tarjan's strongly connected components: every component of more than one module is a cycle.
let index = 0;
const stack = [];
const info = new Map();
const components = [];
function connect(node) {
  info.set(node, { index, low: index, onStack: true });
  index++;
  stack.push(node);
  for (const next of graph.get(node)) {
    if (!info.has(next)) {
      connect(next);
      info.get(node).low = Math.min(info.get(node).low, info.get(next).low);
    } else if (info.get(next).onStack) info.get(node).low = Math.min(info.get(node).low, info.get(next).index);
  }
  if (info.get(node).low === info.get(node).index) {
    const component = [];
    let member;
    do {
      member = stack.pop();
      info.get(member).onStack = false;
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node).includes(node)) components.push(component);
  }
}
for (const file of files) if (!info.has(file)) connect(file);

/** One concrete cycle through `start` inside its component, for the message. */
function cycleThrough(start, members) {
  const inside = new Set(members);
  const parent = new Map([[start, undefined]]);
  const queue = [start];
  for (const node of queue) {
    for (const next of graph.get(node)) {
      if (next === start) {
        const path = [node];
        while (parent.get(path[0]) !== undefined) path.unshift(parent.get(path[0]));
        return [...path, start];
      }
      if (inside.has(next) && !parent.has(next)) {
        parent.set(next, node);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

if (components.length === 0) {
  console.log(`no import cycles in ${relative(process.cwd(), root) || "."} (${files.length} modules)`);
} else {
  for (const component of components) {
    const start = [...component].sort()[0];
    console.error(
      `import cycle: ${cycleThrough(start, component)
        .map((f) => relative(root, f))
        .join(" -> ")}`,
    );
  }
  console.error(`${components.length} import cycle(s): move the shared types to the module that produces them`);
  process.exitCode = 1;
}
