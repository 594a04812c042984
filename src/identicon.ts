/**
 * Identicons byte-for-byte as bc_gitops (Erlang) makes them in `bc_gitops_identicon`
 * (beam-campus/bc-gitops, src/bc_gitops_identicon.erl), so dashboards built for bc_gitops show the
 * same picture for an app that has no `icon` in its spec.
 *
 * The algorithm: MD5 of the UTF-8 name; bytes 0-2 give hue/saturation/lightness; the first 15 bits
 * (most significant first) of bytes 3-10 fill 5 rows of 3 cells, each row mirrored to 5; an SVG
 * whose cell is `size div 5`, with a pale background and one rounded rect per filled cell.
 */
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";

/** bc_gitops's `?DEFAULT_SIZE`: the size of the icon an app shows when its spec has none. */
export const IDENTICON_DEFAULT_SIZE = 64;

/** The MIME type bc_gitops records for identicons (and that the data URI carries). */
export const IDENTICON_MIME_TYPE = "image/svg+xml";

const GRID = 5;

/** How an app's icon is given in its spec, and shown in status (`AppState.icon`). */
export type IconType = "identicon" | "url" | "base64";

/** An icon as written in a spec; `value` may be absent (an identicon needs none). */
export interface IconSpec {
  type: IconType;
  value?: string;
  mime_type?: string;
}

/** An icon as an app shows it: always has a value to render. */
export interface Icon {
  type: IconType;
  value: string;
  mime_type?: string;
}

/**
 * SVG text of the identicon of `name`, identical to `bc_gitops_identicon:generate(Name, Size)`.
 * The SVG is `5 * floor(size / 5)` pixels square (the Erlang code drops the remainder).
 * Throws a RangeError unless `size` is a positive integer (the Erlang spec's `pos_integer()`).
 */
export function identiconSvg(name: string, size: number = IDENTICON_DEFAULT_SIZE): string {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`identicon size must be a positive integer, got ${String(size)}`);
  }
  const hash = createHash("md5").update(name, "utf8").digest();
  const byte = (i: number): number => hash[i] ?? 0;

  // Erlang `div` on non-negative integers is floor division; `*` binds as tightly as `div`,
  // so `H * 360 div 256` is `(H * 360) div 256`.
  const hue = Math.floor((byte(0) * 360) / 256);
  const saturation = 50 + Math.floor((byte(1) * 30) / 256);
  const lightness = 40 + Math.floor((byte(2) * 20) / 256);

  const cell = Math.floor(size / GRID);
  const actual = cell * GRID;
  const color = `hsl(${hue}, ${saturation}%, ${lightness}%)`;
  const background = `hsl(${hue}, ${Math.floor(saturation / 2)}%, ${Math.min(95, lightness + 40)}%)`;
  const margin = Math.floor(cell / 8);
  const inner = cell - 2 * margin;

  let rects = "";
  for (const [y, row] of identiconGrid(hash).entries()) {
    for (const [x, filled] of row.entries()) {
      if (!filled) continue;
      rects +=
        `<rect x="${x * cell + margin}" y="${y * cell + margin}" width="${inner}" height="${inner}" ` +
        `fill="${color}" rx="${margin}"/>`;
    }
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" ` +
    `width="${actual}" height="${actual}" viewBox="0 0 ${actual} ${actual}">` +
    `<rect width="100%" height="100%" fill="${background}" rx="${Math.floor(cell / 4)}"/>` +
    rects +
    `</svg>`
  );
}

/**
 * `data:image/svg+xml;base64,…` URI of the identicon of `name` (standard, padded base64 of the
 * UTF-8 SVG), identical to `bc_gitops_identicon:to_data_uri(Name, Size)`; this is what status
 * shows as `icon.value`. Same size rules as {@link identiconSvg}.
 */
export function identiconDataUri(name: string, size: number = IDENTICON_DEFAULT_SIZE): string {
  // A pure function of its arguments, asked for every app at every status: remembered.
  const key = `${size}\0${name}`;
  let uri = dataUris.get(key);
  if (uri === undefined) {
    uri = `data:${IDENTICON_MIME_TYPE};base64,${Buffer.from(identiconSvg(name, size), "utf8").toString("base64")}`;
    if (dataUris.size >= 4096) dataUris.clear();
    dataUris.set(key, uri);
  }
  return uri;
}

const dataUris = new Map<string, string>();

/**
 * The icon an app shows, as bc_gitops's `parse_icon_spec/2` decides it:
 * - no icon, or `type: identicon` (any given value is ignored): the identicon of `name` at the
 *   default size, with `mime_type: "image/svg+xml"`;
 * - `url`: kept as given (`mime_type` only if given);
 * - `base64`: kept as given, `mime_type` defaulting to `"image/png"`.
 * A `url`/`base64` icon without a value falls back to the identicon so a dashboard always has
 * something to draw (bc_gitops would keep an undefined value; it falls back only for a non-map icon).
 */
export function iconFor(name: string, icon?: IconSpec): Icon {
  if (icon === undefined || icon.type === "identicon" || !icon.value) {
    return { type: "identicon", value: identiconDataUri(name), mime_type: IDENTICON_MIME_TYPE };
  }
  if (icon.type === "base64") {
    return { type: "base64", value: icon.value, mime_type: icon.mime_type ?? "image/png" };
  }
  return icon.mime_type === undefined
    ? { type: "url", value: icon.value }
    : { type: "url", value: icon.value, mime_type: icon.mime_type };
}

/** The 5x5 grid (rows of columns, true = filled) bc_gitops derives from hash bytes 3-10. */
function identiconGrid(hash: Uint8Array): boolean[][] {
  const bit = (n: number): boolean => (((hash[3 + (n >> 3)] ?? 0) >> (7 - (n & 7))) & 1) === 1;
  const rows: boolean[][] = [];
  for (let r = 0; r < GRID; r++) {
    const a = bit(r * 3);
    const b = bit(r * 3 + 1);
    const c = bit(r * 3 + 2);
    rows.push([a, b, c, b, a]);
  }
  return rows;
}
