/** The app the hot reload benchmark reloads: 10 modules, about 48 KB, served as a fetch app or by a node:http wrapper for pm2. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Modules under lib/ besides version.js; with index.js and version.js the app has 10 modules. */
const TABLES = 8;

/** `lib/version.js`: the one module a reload changes. */
export function versionModule(version: string): string {
  return `export const VERSION = ${JSON.stringify(version)};\n`;
}

/** Writes the app into `dir`: package.json, index.js, lib/t1..t8.js (~5.8 KB each), lib/version.js. */
export async function writeBenchApp(dir: string, version: string): Promise<void> {
  await mkdir(join(dir, "lib"), { recursive: true });
  await writeFile(
    join(dir, "package.json"),
    JSON.stringify({ name: "bench-app", version: "1.0.0", type: "module", main: "index.js" }),
  );
  const imports = Array.from({ length: TABLES }, (_, i) => `import { TABLE as T${i + 1} } from "./lib/t${i + 1}.js";`);
  await writeFile(
    join(dir, "index.js"),
    [
      ...imports,
      'import { VERSION } from "./lib/version.js";',
      `const ROWS = [${Array.from({ length: TABLES }, (_, i) => `T${i + 1}`).join(", ")}].reduce((n, t) => n + t.length, 0);`,
      "export default { fetch: () => Response.json({ version: VERSION, rows: ROWS }) };",
      "",
    ].join("\n"),
  );
  for (let i = 1; i <= TABLES; i++) {
    const rows = Array.from({ length: 120 }, (_, r) => `  ${JSON.stringify(`table ${i} row ${r} `.padEnd(40, "·"))},`);
    await writeFile(join(dir, "lib", `t${i}.js`), `export const TABLE = [\n${rows.join("\n")}\n];\n`);
  }
  await writeFile(join(dir, "lib", "version.js"), versionModule(version));
}

/** A CommonJS node:http server around the app's fetch handler (what pm2 runs), listening on `PORT`. */
export const PM2_SERVER = `const { createServer } = require("node:http");
const { pathToFileURL } = require("node:url");
const { join } = require("node:path");
import(pathToFileURL(join(__dirname, "index.js")).href).then(({ default: app }) => {
  createServer(async (req, res) => {
    const response = await app.fetch(new Request("http://127.0.0.1" + req.url));
    res.writeHead(response.status, { "content-type": "application/json" });
    res.end(await response.text());
  }).listen(Number(process.env.PORT), "127.0.0.1", () => process.send?.("ready"));
});
`;
