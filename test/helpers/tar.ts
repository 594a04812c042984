/**
 * Writes ustar archives byte by byte, so a test can hold entries (device nodes, FIFOs, escaping
 * hard links) that creating with `tar` would need root or a crafted tree for.
 */
import { Buffer } from "node:buffer";

/** One archive entry; `type` is the ustar typeflag ('0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' directory, '6' FIFO, '7' contiguous). */
export interface TarEntry {
  name: string;
  type?: "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7";
  content?: string;
  /** Target of a hard link or symlink. */
  link?: string;
  /** Permission bits (default 0o644, 0o755 for directories). */
  mode?: number;
}

const BLOCK = 512;

/** The archive holding `entries`, in order, followed by the two zero blocks that end a tar. */
export function tarBytes(entries: readonly TarEntry[]): Uint8Array {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const type = entry.type ?? "0";
    const body = Buffer.from(type === "0" || type === "7" ? (entry.content ?? "") : "");
    const header = Buffer.alloc(BLOCK);
    const field = (offset: number, length: number, value: string) => header.write(value, offset, length, "utf8");
    const octal = (offset: number, length: number, value: number) =>
      field(offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
    if (Buffer.byteLength(entry.name) > 100) throw new Error(`tar entry name longer than 100 bytes: ${entry.name}`);
    field(0, 100, entry.name);
    octal(100, 8, entry.mode ?? (type === "5" ? 0o755 : 0o644));
    octal(108, 8, 0); // uid
    octal(116, 8, 0); // gid
    octal(124, 12, body.length);
    octal(136, 12, 1_700_000_000); // mtime
    field(156, 1, type);
    field(157, 100, entry.link ?? "");
    field(257, 6, "ustar\0");
    field(263, 2, "00");
    field(265, 32, "root");
    field(297, 32, "root");
    octal(329, 8, type === "3" ? 1 : 0); // devmajor: 1,3 is /dev/null's
    octal(337, 8, type === "3" ? 3 : 0); // devminor
    // The checksum is the byte sum of the header with its own field read as eight spaces.
    field(148, 8, "        ");
    const sum = header.reduce((total, byte) => total + byte, 0);
    field(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
    blocks.push(header, body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK));
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  return new Uint8Array(Buffer.concat(blocks));
}
