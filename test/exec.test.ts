import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, realpath, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GitopsError } from "../src/errors.ts";
import { endGroup, exec } from "../src/exec.ts";
import { groupMembers, hasProc } from "../src/_proc.ts";

/** Runs `fn` and returns the GitopsError it rejects with (fails the test if it resolves). */
async function failure(fn: () => Promise<unknown>): Promise<GitopsError> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof GitopsError, `expected a GitopsError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a rejection");
}

/** A pid is gone once signalling it fails, or once it is a zombie nobody has reaped yet. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

async function waitUntilGone(pids: number[], deadlineMs = 5000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (pids.some(isAlive)) {
    if (Date.now() > deadline) assert.fail(`processes still alive: ${pids.filter(isAlive).join(", ")}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-exec-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Starts a shell that records its pid and a background child's pid in `file`, then waits forever. */
const sleeper = (file: string) => ["-c", `sleep 30 & echo $! > '${file}'; echo $$ >> '${file}'; wait`];

async function pidsIn(file: string): Promise<number[]> {
  const pids = (await readFile(file, "utf8")).trim().split("\n").map(Number);
  assert.equal(pids.length, 2, "the shell wrote both pids before it was stopped");
  return pids;
}

describe("exec", () => {
  test("a successful command resolves with its stdout, stderr and exit code", async () => {
    const result = await exec("sh", ["-c", "printf out; printf err >&2"]);
    assert.equal(result.stdout, "out");
    assert.equal(result.stderr, "err");
    assert.equal(result.exitCode, 0);
    assert.equal(typeof result.durationMs, "number");
  });

  test("arguments are passed verbatim, never through a shell", async () => {
    const tricky = "$(echo injected); `echo x` && echo y | cat > /dev/null";
    const result = await exec("printf", ["%s", tricky]);
    assert.equal(result.stdout, tricky);
  });

  test("a non-zero exit throws E_EXEC naming the command, the exit code and stderr", async () => {
    const error = await failure(() => exec("sh", ["-c", "echo first line >&2; echo 'fatal: the reason' >&2; exit 3"]));
    assert.equal(error.code, "E_EXEC");
    assert.equal(error.message, "sh -c failed (exit 3): first line\nfatal: the reason");
    assert.equal(error.details.exitCode, 3);
    assert.equal(error.details.command, "sh");
    assert.equal(error.details.stderr, "first line\nfatal: the reason");
  });

  test("a long stderr is cut to its last lines", async () => {
    const error = await failure(() =>
      exec("sh", ["-c", 'i=0; while [ $i -lt 3000 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 1']),
    );
    assert.ok(error.message.length < 2100, `message is ${error.message.length} characters`);
    assert.ok(error.message.endsWith("line 2999"));
    assert.ok(!error.message.includes("line 0\n"));
    assert.ok(String(error.details.stderr).length <= 2003);
  });

  test("exit codes listed in allowExitCodes resolve instead of throwing", async () => {
    const result = await exec("sh", ["-c", "echo hi; exit 2"], { allowExitCodes: [0, 2] });
    assert.equal(result.exitCode, 2);
    assert.equal(result.stdout, "hi\n");
    const error = await failure(() => exec("sh", ["-c", "exit 0"], { allowExitCodes: [2] }));
    assert.equal(error.details.exitCode, 0);
  });

  test("input is written to the child's stdin, and stdin is empty otherwise", async () => {
    assert.equal((await exec("cat", [], { input: "hello\nworld" })).stdout, "hello\nworld");
    assert.equal((await exec("cat", [])).stdout, "");
  });

  test("env is merged over the inherited environment and undefined removes a variable", async () => {
    const saved = process.env.BC_GITOPS_EXEC_TEST;
    process.env.BC_GITOPS_EXEC_TEST = "inherited";
    try {
      const script = 'echo "${BC_GITOPS_EXEC_TEST-unset} ${BC_GITOPS_EXEC_EXTRA-unset} ${PATH:+has-path}"';
      assert.equal((await exec("sh", ["-c", script])).stdout, "inherited unset has-path\n");
      assert.equal(
        (await exec("sh", ["-c", script], { env: { BC_GITOPS_EXEC_EXTRA: "extra", BC_GITOPS_EXEC_TEST: undefined } }))
          .stdout,
        "unset extra has-path\n",
      );
    } finally {
      if (saved === undefined) delete process.env.BC_GITOPS_EXEC_TEST;
      else process.env.BC_GITOPS_EXEC_TEST = saved;
    }
  });

  test("cwd sets the child's working directory", async () => {
    await withTempDir(async (dir) => {
      const { stdout } = await exec("pwd", [], { cwd: dir });
      assert.equal(await realpath(stdout.trim()), await realpath(dir));
    });
  });

  test("a command that is not on PATH throws E_EXEC saying so", async () => {
    const error = await failure(() => exec("bc-gitops-no-such-command", ["--version"]));
    assert.equal(error.code, "E_EXEC");
    assert.match(error.message, /bc-gitops-no-such-command was not found on PATH/);
  });

  test("a missing working directory is reported as such, not as a missing command", async () => {
    const error = await failure(() => exec("sh", ["-c", "true"], { cwd: join(tmpdir(), "bc-gitops-no-such-dir-x9") }));
    assert.equal(error.code, "E_EXEC");
    assert.match(error.message, /working directory .* does not exist/);
  });

  test("a child killed by a signal throws E_EXEC naming the signal", async () => {
    const error = await failure(() => exec("sh", ["-c", "kill -9 $$"]));
    assert.equal(error.code, "E_EXEC");
    assert.match(error.message, /killed by SIGKILL/);
  });

  test("a timeout kills the child and its children and throws E_TIMEOUT", async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, "pids");
      const error = await failure(() => exec("sh", sleeper(file), { timeoutMs: 500 }));
      assert.equal(error.code, "E_TIMEOUT");
      assert.match(error.message, /^sh -c timed out after 500 ms/);
      await waitUntilGone(await pidsIn(file));
    });
  });

  test("aborting the signal kills the child and its children and throws E_ABORTED", async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, "pids");
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 500);
      try {
        const error = await failure(() => exec("sh", sleeper(file), { signal: controller.signal, timeoutMs: 20_000 }));
        assert.equal(error.code, "E_ABORTED");
        await waitUntilGone(await pidsIn(file));
      } finally {
        clearTimeout(timer);
      }
    });
  });

  test("an already aborted signal throws E_ABORTED without starting the command", async () => {
    await withTempDir(async (dir) => {
      const marker = join(dir, "ran");
      const error = await failure(() => exec("touch", [marker], { signal: AbortSignal.abort() }));
      assert.equal(error.code, "E_ABORTED");
      await assert.rejects(readFile(marker));
    });
  });

  test("credentials in arguments and stderr are redacted from the message and details", async () => {
    const url = "https://user:s3cret@example.invalid/repo.git";
    // sh treats the URL as a script file: it is the label's first argument and shows up in stderr.
    const error = await failure(() => exec("sh", [url]));
    const everything = `${error.message} ${JSON.stringify(error.details)}`;
    assert.ok(!everything.includes("s3cret"), everything);
    assert.match(
      error.message,
      /^sh https:\/\/\*\*\*@example\.invalid\/repo\.git failed \(exit \d+\): .*https:\/\/\*\*\*@/,
    );
    assert.deepEqual(error.details.args, ["https://***@example.invalid/repo.git"]);
  });
});

describe("endGroup", () => {
  /** A process group whose leader is gone and whose member ignores SIGTERM, like one a killed agent left. */
  async function leftGroup(): Promise<number> {
    const script = 'trap "" TERM; sleep 30 >/dev/null 2>&1 & echo $$';
    return Number((await exec("sh", ["-c", script])).stdout.trim());
  }

  test(
    "a group that ignores SIGTERM gets SIGKILL after the grace, and endGroup resolves once nothing of it runs",
    { skip: !hasProc && "needs /proc to see a group's members" },
    async () => {
      const pgid = await leftGroup();
      assert.equal((await groupMembers(pgid)).length, 1, "the sleep runs in the group after its leader exited");
      assert.deepEqual(await endGroup(pgid, 200), { killed: true });
      assert.deepEqual(await groupMembers(pgid), []);
    },
  );

  test("a group that is gone is left alone", async () => {
    const pgid = await leftGroup();
    await endGroup(pgid, 200);
    assert.deepEqual(await endGroup(pgid, 200), { killed: false });
  });
});
