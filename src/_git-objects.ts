/**
 * Reading the gitops repository's object store without a checkout: one long-lived
 * `git cat-file --batch` process per clone answers every read (no process start per object), and
 * trees are parsed here. A tree id names its whole content, so comparing tree ids is how the agent
 * tells what changed between two commits (what `git diff-tree` does), and an unchanged app
 * directory costs one map lookup.
 */
import { posix } from "node:path";
import { spawnGit } from "./_git.ts";
import { GitopsError } from "./errors.ts";
import type { SpawnedProcess } from "./exec.ts";

/** One entry of a tree object. */
export interface TreeEntry {
  name: string;
  /** Object id (hex). */
  id: string;
  /** `tree` (a directory), `blob` (a file), `link` (a symbolic link: its blob is the target), `commit` (a submodule). */
  type: "tree" | "blob" | "link" | "commit";
  /** A file with the executable bit (mode 100755). */
  executable: boolean;
}

/** What a commit object says, as far as the agent needs it. */
export interface CommitInfo {
  tree: string;
  parents: string[];
  /** Committer time, seconds since the epoch. */
  committedAt: number;
}

/** Counts of what a {@link GitObjects} read, for tests and benchmarks. */
export interface ObjectStats {
  /** Blobs read (file contents). */
  blobs: number;
  /** Tree objects read from git (cache hits not counted). */
  trees: number;
  /** `cat-file` processes started. */
  processes: number;
}

interface Found {
  /** The object's id as git printed it (a ref asked for is resolved to it). */
  id: string;
  type: string;
  data: Buffer;
}

interface Pending {
  id: string;
  resolve: (value: Found | undefined) => void;
  reject: (error: unknown) => void;
}

/** Trees kept parsed; an agent of 1000 apps needs about 1000 + the depth of its path sources. */
const TREE_CACHE = 4096;
/** How many parsed commits a reader remembers. */
const COMMIT_CACHE = 16;

/**
 * The object store of one repository (`gitDir`), read through one `git cat-file --batch`
 * started on first use and restarted if it dies. Reads may be issued concurrently: they are
 * answered in order. {@link close} ends the process (the owner calls it before replacing the
 * repository on disk).
 */
export class GitObjects {
  readonly #gitDir: string;
  readonly #cwd: string;
  readonly #timeoutMs: number;
  readonly #trees = new Map<string, TreeEntry[]>();
  readonly #commits = new Map<string, CommitInfo>();
  #proc: SpawnedProcess | undefined;
  #starting: Promise<SpawnedProcess> | undefined;
  #pending: Pending[] = [];
  #buffer: Buffer = Buffer.alloc(0);
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** See {@link ObjectStats}. */
  readonly stats: ObjectStats = { blobs: 0, trees: 0, processes: 0 };

  /** `gitDir`: the repository (bare clone); `cwd`: where git runs (no discovery above it). */
  constructor(options: { gitDir: string; cwd: string; timeoutMs: number }) {
    this.#gitDir = options.gitDir;
    this.#cwd = options.cwd;
    this.#timeoutMs = options.timeoutMs;
  }

  /** The contents of blob `id`. Throws E_GIT when it is missing or not a blob. */
  async blob(id: string): Promise<Buffer> {
    const found = await this.#get(id, "blob");
    this.stats.blobs++;
    return found;
  }

  /** The entries of tree `id`, parsed once and remembered (a tree id never changes content). */
  async tree(id: string): Promise<readonly TreeEntry[]> {
    const cached = this.#trees.get(id);
    if (cached) return cached;
    const entries = parseTree(await this.#get(id, "tree"), id.length / 2);
    this.stats.trees++;
    if (this.#trees.size >= TREE_CACHE) this.#trees.delete(this.#trees.keys().next().value!);
    this.#trees.set(id, entries);
    return entries;
  }

  /** The tree, parents and committer time of commit `id` (the last few remembered: a tick reads its commit twice). */
  async commit(id: string): Promise<CommitInfo> {
    const known = this.#commits.get(id);
    if (known) return known;
    const info = await this.#readCommit(id);
    if (this.#commits.size >= COMMIT_CACHE) this.#commits.delete(this.#commits.keys().next().value!);
    this.#commits.set(id, info);
    return info;
  }

  async #readCommit(id: string): Promise<CommitInfo> {
    const text = (await this.#get(id, "commit")).toString("utf8");
    const head = text.slice(0, text.indexOf("\n\n") >>> 0);
    const tree = /^tree ([0-9a-f]+)$/m.exec(head)?.[1];
    if (!tree) throw new GitopsError(`commit ${id} has no tree`, { code: "E_GIT" });
    const parents = [...head.matchAll(/^parent ([0-9a-f]+)$/gm)].map((m) => m[1]!);
    const committedAt = Number(/^committer .* (\d+) [+-]\d{4}$/m.exec(head)?.[1] ?? NaN);
    return { tree, parents, committedAt };
  }

  /**
   * The entry at `path` (`/`-separated, relative) under tree `root`; `undefined` when nothing is
   * there. Walking stops at a symbolic link or a file on the way: `at` says where it stopped.
   */
  async entryAt(root: string, path: string): Promise<{ entry: TreeEntry | undefined; at: string }> {
    const parts = path.split("/").filter((p) => p !== "" && p !== ".");
    let entry: TreeEntry = { name: "", id: root, type: "tree", executable: false };
    for (let i = 0; i < parts.length; i++) {
      if (entry.type !== "tree") return { entry, at: parts.slice(0, i).join("/") };
      const next = (await this.tree(entry.id)).find((e) => e.name === parts[i]);
      if (!next) return { entry: undefined, at: parts.slice(0, i + 1).join("/") };
      entry = next;
    }
    return { entry, at: parts.join("/") };
  }

  /**
   * The commit a branch points at in the repository now (`refs/heads/<branch>`), read by the
   * running reader: no process is started. `undefined` when the branch does not exist.
   */
  async head(ref: string): Promise<string | undefined> {
    if (!/^refs\/heads\/[^\s\\]+$/.test(ref))
      throw new GitopsError(`not a branch ref: ${JSON.stringify(ref)}`, { code: "E_UNSAFE" });
    const found = await this.#request(`${ref}^{commit}`);
    return found?.type === "commit" ? found.id : undefined;
  }

  /** Ends the reader process; the next read starts a new one. */
  async close(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    this.#starting = undefined;
    this.#failAll(new GitopsError("the object reader was closed", { code: "E_GIT" }));
    if (proc) await proc.terminate(1000);
  }

  /** Forgets the parsed trees (a clone was replaced: ids are still valid, but be safe and cheap). */
  forget(): void {
    this.#trees.clear();
  }

  async #get(id: string, type: string): Promise<Buffer> {
    if (!/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(id))
      throw new GitopsError(`not an object id: ${JSON.stringify(id)}`, { code: "E_UNSAFE" });
    const found = await this.#request(id);
    if (!found) throw new GitopsError(`object ${id} is missing from the local clone`, { code: "E_GIT" });
    if (found.type !== type) throw new GitopsError(`object ${id} is a ${found.type}, not a ${type}`, { code: "E_GIT" });
    return found.data;
  }

  async #request(id: string): Promise<Found | undefined> {
    const proc = await this.#process();
    return new Promise((resolve, reject) => {
      this.#pending.push({ id, resolve, reject });
      this.#arm();
      proc.stdin!.write(`${id}\n`);
    });
  }

  #process(): Promise<SpawnedProcess> {
    if (this.#proc && this.#proc.exit === undefined) return Promise.resolve(this.#proc);
    return (this.#starting ??= this.#start().finally(() => (this.#starting = undefined)));
  }

  async #start(): Promise<SpawnedProcess> {
    const proc = await spawnGit(["cat-file", "--batch"], { cwd: this.#cwd, env: { GIT_DIR: this.#gitDir } });
    this.stats.processes++;
    this.#proc = proc;
    this.#buffer = Buffer.alloc(0);
    let stderr = "";
    proc.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    proc.stdout.on("data", (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
      this.#drain();
    });
    void proc.exited.then((exit) => {
      if (this.#proc === proc) this.#proc = undefined;
      const why = stderr.trim() || `exit ${exit.code ?? exit.signal}`;
      this.#failAll(new GitopsError(`git cat-file --batch ended: ${why}`, { code: "E_GIT" }));
    });
    return proc;
  }

  /** Answers pending reads from the output buffer, in order. */
  #drain(): void {
    for (;;) {
      const next = this.#pending[0];
      if (!next) {
        this.#buffer = Buffer.alloc(0);
        break;
      }
      const eol = this.#buffer.indexOf(10);
      if (eol < 0) return;
      const header = this.#buffer.subarray(0, eol).toString("latin1");
      const [id, type, size] = header.split(" ");
      if (type === "missing" || type === "ambiguous" || size === undefined) {
        this.#buffer = this.#buffer.subarray(eol + 1);
        this.#pending.shift();
        next.resolve(undefined);
        continue;
      }
      const length = Number(size);
      if (this.#buffer.length < eol + 1 + length + 1) return;
      const data = Buffer.from(this.#buffer.subarray(eol + 1, eol + 1 + length));
      this.#buffer = this.#buffer.subarray(eol + 1 + length + 1);
      this.#pending.shift();
      next.resolve({ id: id!, type: type!, data });
    }
    this.#arm();
  }

  /** A deadline over the oldest pending read: git that stops answering is killed, and every read fails. */
  #arm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    this.#timer = setTimeout(() => {
      const proc = this.#proc;
      this.#proc = undefined;
      this.#failAll(
        new GitopsError(`git cat-file --batch did not answer within ${this.#timeoutMs} ms`, { code: "E_TIMEOUT" }),
      );
      void proc?.terminate(0);
    }, this.#timeoutMs);
    // Not unref'd: while a read is pending, this deadline keeps the process alive (the reader's own
    // process and pipes are unref'd so that an idle reader never does).
  }

  #failAll(error: unknown): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) p.reject(error);
  }
}

/** Parses a binary tree object: `<mode> <name>\0<id bytes>` repeated. */
function parseTree(data: Buffer, idBytes: number): TreeEntry[] {
  const entries: TreeEntry[] = [];
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(32, at);
    const nul = data.indexOf(0, space);
    if (space < 0 || nul < 0 || nul + 1 + idBytes > data.length)
      throw new GitopsError(`a tree object is malformed at byte ${at}`, { code: "E_GIT" });
    const mode = data.toString("latin1", at, space);
    const name = data.toString("utf8", space + 1, nul);
    const id = data.toString("hex", nul + 1, nul + 1 + idBytes);
    at = nul + 1 + idBytes;
    entries.push({ name, id, type: typeOf(mode), executable: mode === "100755" });
  }
  return entries;
}

function typeOf(mode: string): TreeEntry["type"] {
  if (mode === "40000") return "tree";
  if (mode === "120000") return "link";
  if (mode === "160000") return "commit";
  return "blob";
}

/** A path inside the repository as trees name it: `/`-separated, without `./` or a trailing `/` (`""`: the root). */
export function treePath(path: string): string {
  // normalize leaves no `./` in front, keeps `..` (never stripped: it is how a path leaves the tree).
  const normal = posix.normalize(path.replaceAll("\\", "/")).replace(/\/+$/, "");
  return normal === "." ? "" : normal;
}
