import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { iconFor, identiconDataUri, identiconSvg } from "../src/identicon.ts";
import type { Icon, IconSpec } from "../src/identicon.ts";

const PREFIX = "data:image/svg+xml;base64,";

interface Cell {
  x: number;
  y: number;
  width: number;
  height: number;
  fill: string;
  rx: number;
}

/** The filled cells of an identicon SVG (every rect but the 100% background). */
function cellsOf(svg: string): Cell[] {
  const out: Cell[] = [];
  const re = /<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" fill="([^"]+)" rx="(\d+)"\/>/g;
  for (const m of svg.matchAll(re)) {
    out.push({
      x: Number(m[1]),
      y: Number(m[2]),
      width: Number(m[3]),
      height: Number(m[4]),
      fill: m[5] ?? "",
      rx: Number(m[6]),
    });
  }
  return out;
}

/** The 5x5 on/off grid drawn by an SVG whose cells are `cell` px with `margin` px inset. */
function gridOf(svg: string, cell: number, margin: number): boolean[][] {
  const grid = Array.from({ length: 5 }, () => Array.from({ length: 5 }, () => false));
  for (const c of cellsOf(svg)) {
    const col = (c.x - margin) / cell;
    const row = (c.y - margin) / cell;
    assert.ok(Number.isInteger(col) && Number.isInteger(row), `rect off the grid: ${JSON.stringify(c)}`);
    const r = grid[row];
    assert.ok(r !== undefined && col >= 0 && col < 5, `rect outside 5x5: ${JSON.stringify(c)}`);
    r[col] = true;
  }
  return grid;
}

/** The grid the algorithm prescribes, read straight off the md5 hex: bits of bytes 3.., MSB first. */
function expectedGrid(name: string): boolean[][] {
  const hex = createHash("md5").update(name).digest("hex");
  const bits = [...hex.slice(6, 22)].map((h) => parseInt(h, 16).toString(2).padStart(4, "0")).join("");
  return [0, 1, 2, 3, 4].map((r) => {
    const [a, b, c] = [...bits.slice(r * 3, r * 3 + 3)].map((ch) => ch === "1");
    return [a, b, c, b, a].map(Boolean);
  });
}

describe("identiconSvg", () => {
  test("the SVG of demo_uptime is exactly what bc_gitops_identicon:generate(demo_uptime) renders", () => {
    // Worked by hand from md5("demo_uptime") = 8d51e0c8c72b19d067e184abec9fdfd6:
    // hue 0x8d=141*360 div 256=198, sat 50+(0x51=81*30 div 256)=59, light 40+(0xe0=224*20 div 256)=57;
    // background hsl(198, 59 div 2, min(95, 97)); size 64 -> cell 12, drawn 60, margin 1, rect 10, bg rx 3.
    // Grid bits from c8 c7: 110 010 001 100 011 -> rows 11011, 01010, 00100, 10001, 01110.
    const f = 'width="10" height="10" fill="hsl(198, 59%, 57%)" rx="1"/>';
    const expected =
      '<svg xmlns="http://www.w3.org/2000/svg" width="60" height="60" viewBox="0 0 60 60">' +
      '<rect width="100%" height="100%" fill="hsl(198, 29%, 95%)" rx="3"/>' +
      `<rect x="1" y="1" ${f}<rect x="13" y="1" ${f}<rect x="37" y="1" ${f}<rect x="49" y="1" ${f}` +
      `<rect x="13" y="13" ${f}<rect x="37" y="13" ${f}` +
      `<rect x="25" y="25" ${f}` +
      `<rect x="1" y="37" ${f}<rect x="49" y="37" ${f}` +
      `<rect x="13" y="49" ${f}<rect x="25" y="49" ${f}<rect x="37" y="49" ${f}` +
      "</svg>";
    assert.equal(identiconSvg("demo_uptime"), expected);
    assert.equal(identiconSvg("demo_uptime", 64), expected);
  });

  test("the same name always gives the same SVG and different names give different SVGs", () => {
    const names = ["app_one", "app_two", "app_three", "demo_uptime", "my_web_app"];
    for (const n of names) assert.equal(identiconSvg(n), identiconSvg(n));
    assert.equal(new Set(names.map((n) => identiconSvg(n))).size, names.length);
  });

  const colours = [
    // md5 bytes 0-2 -> hue = b0*360 div 256, sat = 50 + b1*30 div 256, light = 40 + b2*20 div 256
    // my_web_app: e1 62 e2 = 225 98 226 -> 316, 61, 57; background lightness capped at 95.
    { name: "my_web_app", fg: "hsl(316, 61%, 57%)", bg: "hsl(316, 30%, 95%)" },
    // db_proxy: 61 f2 03 = 97 242 3 -> 136, 78, 40; background lightness 40 + 40 = 80 (under the cap).
    { name: "db_proxy", fg: "hsl(136, 78%, 40%)", bg: "hsl(136, 39%, 80%)" },
  ];
  for (const { name, fg, bg } of colours) {
    test(`the colours of ${name} come from md5 bytes 0-2 as the algorithm says`, () => {
      const svg = identiconSvg(name);
      assert.ok(svg.includes(`<rect width="100%" height="100%" fill="${bg}" rx="3"/>`), svg);
      const cells = cellsOf(svg);
      assert.ok(cells.length > 0);
      for (const c of cells) assert.equal(c.fill, fg);
    });
  }

  test("db_proxy draws the grid its md5 bytes 3-4 (1f f1) prescribe: three full middle rows", () => {
    const row = (on: boolean) => [on, on, on, on, on];
    assert.deepEqual(gridOf(identiconSvg("db_proxy"), 12, 1), [
      row(false),
      row(true),
      row(true),
      row(true),
      row(false),
    ]);
  });

  for (const name of ["demo_uptime", "my_web_app", "db_proxy", "test_app", "a", "x.y-z_9"]) {
    test(`the grid of ${name} is mirrored left to right and matches the hash bits`, () => {
      const svg = Buffer.from(identiconDataUri(name).slice(PREFIX.length), "base64").toString("utf8");
      const grid = gridOf(svg, 12, 1);
      for (const r of grid) assert.deepEqual(r, [...r].reverse());
      assert.deepEqual(grid, expectedGrid(name));
    });
  }

  const sizes = [
    // size -> cell = size div 5, drawn = 5 * cell, margin = cell div 8, rect = cell - 2*margin, bg rx = cell div 4
    { size: 67, cell: 13, drawn: 65, margin: 1, rect: 11, bgRx: 3 },
    { size: 100, cell: 20, drawn: 100, margin: 2, rect: 16, bgRx: 5 },
    { size: 129, cell: 25, drawn: 125, margin: 3, rect: 19, bgRx: 6 },
    { size: 9, cell: 1, drawn: 5, margin: 0, rect: 1, bgRx: 0 },
  ];
  for (const s of sizes) {
    test(`size ${s.size} gives cells of ${s.cell}px (size div 5) and a ${s.drawn}px SVG`, () => {
      const svg = identiconSvg("demo_uptime", s.size);
      assert.ok(
        svg.startsWith(
          `<svg xmlns="http://www.w3.org/2000/svg" width="${s.drawn}" height="${s.drawn}" viewBox="0 0 ${s.drawn} ${s.drawn}">` +
            `<rect width="100%" height="100%" fill="hsl(198, 29%, 95%)" rx="${s.bgRx}"/>`,
        ),
        svg,
      );
      const cells = cellsOf(svg);
      assert.equal(cells.length, 12);
      for (const c of cells) {
        assert.equal(c.width, s.rect);
        assert.equal(c.height, s.rect);
        assert.equal(c.rx, s.margin);
      }
      assert.deepEqual(gridOf(svg, s.cell, s.margin), expectedGrid("demo_uptime"));
    });
  }

  for (const bad of [0, -5, 12.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    test(`size ${bad} is rejected with a RangeError`, () => {
      assert.throws(() => identiconSvg("demo_uptime", bad), RangeError);
      assert.throws(() => identiconDataUri("demo_uptime", bad), RangeError);
    });
  }
});

describe("identiconDataUri", () => {
  test("the data URI is the base64 of the SVG behind the data:image/svg+xml;base64, prefix", () => {
    for (const size of [undefined, 32, 67]) {
      const uri = identiconDataUri("my_web_app", size);
      assert.ok(uri.startsWith(PREFIX), uri);
      const b64 = uri.slice(PREFIX.length);
      assert.match(b64, /^[A-Za-z0-9+/]+={0,2}$/);
      assert.equal(Buffer.from(b64, "base64").toString("utf8"), identiconSvg("my_web_app", size));
    }
  });
});

describe("iconFor", () => {
  const identicon: Icon = {
    type: "identicon",
    value: identiconDataUri("my_web_app", 64),
    mime_type: "image/svg+xml",
  };
  const cases: Array<{ why: string; icon: IconSpec | undefined; want: Icon }> = [
    { why: "no icon gets the identicon", icon: undefined, want: identicon },
    { why: "an identicon icon is filled in", icon: { type: "identicon" }, want: identicon },
    { why: "an identicon icon's own value is replaced", icon: { type: "identicon", value: "x" }, want: identicon },
    {
      why: "a url icon is kept",
      icon: { type: "url", value: "https://example.com/a.png" },
      want: { type: "url", value: "https://example.com/a.png" },
    },
    {
      why: "a url icon keeps its mime_type",
      icon: { type: "url", value: "https://example.com/a", mime_type: "image/webp" },
      want: { type: "url", value: "https://example.com/a", mime_type: "image/webp" },
    },
    {
      why: "a base64 icon is kept and its mime_type defaults to image/png",
      icon: { type: "base64", value: "iVBORw0KGgo=" },
      want: { type: "base64", value: "iVBORw0KGgo=", mime_type: "image/png" },
    },
    {
      why: "a base64 icon keeps its own mime_type",
      icon: { type: "base64", value: "PHN2Zy8+", mime_type: "image/svg+xml" },
      want: { type: "base64", value: "PHN2Zy8+", mime_type: "image/svg+xml" },
    },
    { why: "a url icon with no value falls back to the identicon", icon: { type: "url" }, want: identicon },
    {
      why: "a base64 icon with an empty value falls back to the identicon",
      icon: { type: "base64", value: "" },
      want: identicon,
    },
  ];
  for (const { why, icon, want } of cases) {
    test(why, () => {
      assert.deepEqual(iconFor("my_web_app", icon), want);
    });
  }
});
