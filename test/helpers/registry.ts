/**
 * A fixture npm registry for tests: packuments and `.tgz` tarballs served over loopback HTTP
 * (node:http on 127.0.0.1, port 0), built from directories with the real `tar` binary. Installers
 * (npm, bun, deno) can install from it, so tests never need the internet.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exec } from "../../src/exec.ts";

/** A running fixture registry. */
export interface FixtureRegistry {
  /** Base URL with a trailing slash, e.g. `http://127.0.0.1:41234/`. */
  url: string;
  /** Stops the server and destroys every open socket (keep-alive connections included). */
  close(): Promise<void>;
  /** Every request served, as `"GET /path"`, in order. */
  requests: string[];
}

/** What {@link FixtureRegistry} publishing returns. */
export interface Published {
  /** Absolute URL of the tarball. */
  tarball: string;
  /** `sha512-…` SRI integrity of the tarball. */
  integrity: string;
  /** sha1 hex of the tarball (npm's legacy `shasum`). */
  shasum: string;
}

/** A fixture registry that can publish packages and corrupt what it serves. */
export interface PublishingRegistry extends FixtureRegistry {
  /**
   * Packs `dir` as an npm tarball (`package/` prefix, `tar -czf`) with its package.json `name` and
   * `version` set to the published ones, and serves it with sha512 integrity and sha1 shasum.
   */
  publish(name: string, version: string, dir: string): Promise<Published>;
  /**
   * Changes the bytes served for a published tarball (the gzip header's mtime, so it still unpacks
   * to the same files) while its packument keeps the original integrity: only a client that checks
   * the integrity can tell.
   */
  tamper(name: string, version: string): void;
}

interface Version {
  manifest: Record<string, unknown>;
  tarballPath: string;
}

/** Starts a fixture registry on 127.0.0.1 with an OS-assigned port. Close it at the end of the test. */
export async function startRegistry(): Promise<PublishingRegistry> {
  const packages = new Map<string, Map<string, Version>>();
  const tarballs = new Map<string, Uint8Array>();
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const work = await mkdtemp(join(tmpdir(), "bc-gitops-registry-"));

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const body = tarballs.get(path);
    if (body) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.byteLength });
      res.end(body);
      return;
    }
    const versions = packages.get(path.slice(1));
    if (!versions) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "Not found" }));
      return;
    }
    const all = [...versions.keys()];
    const packument = {
      name: path.slice(1),
      "dist-tags": { latest: all[all.length - 1] },
      versions: Object.fromEntries([...versions].map(([v, { manifest }]) => [v, manifest])),
    };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(packument));
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the fixture registry has no TCP address");
  const url = `http://127.0.0.1:${address.port}/`;
  let closed: Promise<void> | undefined;

  return {
    url,
    requests,
    async publish(name, version, dir) {
      const stage = await mkdtemp(join(work, "pack-"));
      await cp(dir, join(stage, "package"), {
        recursive: true,
        filter: (src) => !/[\\/](node_modules|\.git)$/.test(src),
      });
      const manifestPath = join(stage, "package", "package.json");
      const manifest = { ...JSON.parse(await readFile(manifestPath, "utf8")), name, version };
      await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
      const file = join(stage, "package.tgz");
      await exec("tar", ["-czf", file, "-C", stage, "package"]);
      const bytes = new Uint8Array(await readFile(file));
      const integrity = `sha512-${createHash("sha512").update(bytes).digest("base64")}`;
      const shasum = createHash("sha1").update(bytes).digest("hex");
      const tarballPath = `/${name}/-/${name.split("/").pop()}-${version}.tgz`;
      tarballs.set(tarballPath, bytes);
      const tarball = new URL(tarballPath.slice(1), url).href;
      let versions = packages.get(name);
      if (!versions) packages.set(name, (versions = new Map()));
      versions.set(version, { manifest: { ...manifest, dist: { tarball, integrity, shasum } }, tarballPath });
      await rm(stage, { recursive: true, force: true });
      return { tarball, integrity, shasum };
    },
    tamper(name, version) {
      const entry = packages.get(name)?.get(version);
      const bytes = entry && tarballs.get(entry.tarballPath);
      if (!entry || !bytes) throw new Error(`${name}@${version} is not published`);
      const copy = bytes.slice();
      copy[4] = (copy[4] ?? 0) ^ 0xff; // gzip MTIME: not covered by the CRC
      tarballs.set(entry.tarballPath, copy);
    },
    close() {
      closed ??= (async () => {
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await done;
        await rm(work, { recursive: true, force: true });
      })();
      return closed;
    },
  };
}
