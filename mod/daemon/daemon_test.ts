/**
 * The daemon in-process: the control socket's methods and errors, a connect
 * that fails before anything is made, quit, what it leaves behind, and the
 * recovery of a crashed daemon's state file.
 */

import { staleSocket } from "../../tests/_unix.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import { schemaProblems } from "../../tests/e2e/_status_schema.ts";
import { ControlClient, DaemonError, encodeLine } from "./control.ts";
import { recoverAfterCrash, runDaemon, type StatusDocument } from "./daemon.ts";
import { StateDirError } from "./state_dir.ts";

async function waitForSocket(path: string): Promise<ControlClient> {
  for (let i = 0; i < 100; i++) {
    try {
      return await ControlClient.connect(path);
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`no socket at ${path}`);
}

Deno.test({
  name: "runDaemon: version, status, loglevel, errors, a failed connect, quit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vif-daemon-" });
    const running = runDaemon({ stateDir: dir, owner: { uid: 0, gid: 0 } });
    const client = await waitForSocket(`${dir}/daemon.sock`);
    try {
      const v = await client.request("version", {});
      assertEquals([v.pid, v.protocol, v.owner], [Deno.pid, 1, 0]);
      const s = await client.request("status", {}) as StatusDocument;
      assertEquals(schemaProblems(s), []);
      assertEquals([s.daemon.running, s.connected, s.daemon.logFile], [
        true,
        false,
        `${dir}/daemon.log`,
      ]);
      assertEquals(await client.request("loglevel", { level: "debug" }), {
        previous: "info",
        level: "debug",
      });
      const bad = await assertRejects(
        // deno-lint-ignore no-explicit-any
        () => client.request("loglevel", { level: "loud" as any }),
        DaemonError,
      );
      assertEquals((bad as DaemonError).code, "bad-request");
      const unknown = await assertRejects(
        // deno-lint-ignore no-explicit-any
        () => client.request("frobnicate" as any, {}),
        DaemonError,
        'unknown method "frobnicate"',
      );
      assertEquals((unknown as DaemonError).code, "unknown-method");
      // A manager nobody listens for: refused at Arrive, before any TUN.
      const failed = await assertRejects(
        () =>
          client.request("connect", {
            managerAddress: "127.0.0.1:9",
            managerCaPem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            managerNamespace: "vif-system",
            namespace: "default",
            alsoProxy: [],
            neverProxy: [],
            allowConflicting: [],
            dnsInclude: [],
            dnsExclude: [],
            graceSeconds: 30,
          }),
        DaemonError,
      );
      assertEquals((failed as DaemonError).code, "connect-failed");
      assert((failed as DaemonError).hint.length > 0);
      const state = JSON.parse(await Deno.readTextFile(`${dir}/daemon.json`));
      assertEquals([state.pid, state.tun, state.dns], [Deno.pid, null, null]);
      // A line that is not JSON gets an error, and the connection stays usable.
      const raw = await Deno.connect({ transport: "unix", path: `${dir}/daemon.sock` });
      await raw.write(new TextEncoder().encode("hello\n"));
      await raw.write(encodeLine({ id: 4, method: "logs" }));
      const buf = new Uint8Array(4096);
      let text = "";
      while (text.split("\n").length < 3) {
        const n = await raw.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      raw.close();
      const [first, second] = text.trim().split("\n").map((l) => JSON.parse(l));
      assertEquals([first.id, first.error.code], [0, "bad-request"]);
      assertEquals(second, { id: 4, result: { files: [`${dir}/daemon.log`] } });
      // connections and capture need a connection; capture checks its parameters first.
      for (const method of ["connections", "capture"] as const) {
        const e = await assertRejects(() => client.request(method, {}), DaemonError);
        assertEquals((e as DaemonError).code, "not-connected", method);
      }
      for (
        const params of [{ port: 0 }, { hosts: ["web.default"] }, { snaplen: 10 }, {
          durationMs: -1,
        }]
      ) {
        const e = await assertRejects(() => client.request("capture", params), DaemonError);
        assertEquals((e as DaemonError).code, "bad-request", JSON.stringify(params));
      }
      const tooMany = await assertRejects(
        () => client.request("connections", { limit: 10_001 }),
        DaemonError,
      );
      assertEquals((tooMany as DaemonError).code, "bad-request");
      // stop with no stream running stops nothing.
      assertEquals(await client.request("stop", {}), { stopped: false });
      assertEquals(await client.request("quit", {}), { wasConnected: false });
    } finally {
      client.close();
    }
    assertEquals(await running, 0);
    const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
    assertEquals(left, ["daemon.log"]);
    const log = await Deno.readTextFile(`${dir}/daemon.log`);
    assertMatch(log, /daemon: log level info → debug/);
    assertMatch(log, /daemon: connect failed: /);
    assertMatch(log, /daemon: stopped$/m);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("recoverAfterCrash: a dead daemon's socket and state go; nothing when there was nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-daemon-" });
  try {
    assertEquals(await recoverAfterCrash(dir, () => {}), []);
    // A pid that is not a daemon's (pid 1 is init): the state is stale.
    await Deno.writeTextFile(
      `${dir}/daemon.json`,
      JSON.stringify({ pid: 1, tun: "vif-nonexistent", routes: [], dns: null }),
    );
    await staleSocket(`${dir}/daemon.sock`);
    const said: string[] = [];
    assertEquals(await recoverAfterCrash(dir, (_l, m) => said.push(m)), [
      "stale control socket removed",
    ]);
    assertEquals((await Array.fromAsync(Deno.readDir(dir))).length, 0);
    assertMatch(said.join("\n"), /after a crash: stale control socket removed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "runDaemon: refuses a state directory another user owns, and a log that is a link",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vif-daemon-" });
    try {
      const theirs = `${dir}/theirs`;
      await Deno.mkdir(theirs);
      await Deno.chown(theirs, 65534, 65534);
      const bad = await assertRejects(
        () => runDaemon({ stateDir: theirs, owner: { uid: 0, gid: 0 } }),
        StateDirError,
      );
      assertEquals(
        bad.message,
        `the state directory "${theirs}" is not safe for root: "${theirs}" belongs to uid 65534`,
      );
      assertEquals((await Array.fromAsync(Deno.readDir(theirs))).length, 0);

      const state = `${dir}/state`;
      await Deno.mkdir(state);
      await Deno.writeTextFile(`${dir}/target`, "precious\n");
      await Deno.symlink(`${dir}/target`, `${state}/daemon.log`);
      await assertRejects(
        () => runDaemon({ stateDir: state, owner: { uid: 0, gid: 0 } }),
        StateDirError,
        'daemon.log" is a symbolic link',
      );
      assertEquals(await Deno.readTextFile(`${dir}/target`), "precious\n");
      assertEquals((await Array.fromAsync(Deno.readDir(state))).map((e) => e.name), ["daemon.log"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "runDaemon: a connect without credentials has them resolved by the helper, as the owner",
  ignore: Deno.uid() !== 0,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vif-daemon-" });
    await Deno.chmod(dir, 0o755);
    // Stands in for `vif kube-credentials`: notes who ran it with what, and
    // answers with an API server nobody listens on.
    const script = `${dir}/helper.sh`;
    await Deno.writeTextFile(
      script,
      "#!/bin/sh\n" +
        `echo "$(id -u) $* HOME=$HOME KUBECONFIG=$KUBECONFIG" > ${dir}/ran\n` +
        `printf '{"context":"dev","access":{"server":"https://127.0.0.1:9","headers":{}}}'\n`,
      { mode: 0o755 },
    );
    await Deno.writeTextFile(`${dir}/ran`, "");
    await Deno.chown(`${dir}/ran`, 65534, 65534);
    await Deno.mkdir(`${dir}/state`);
    const running = runDaemon({
      stateDir: `${dir}/state`,
      owner: { uid: 65534, gid: 65534 },
      self: { argv: ["/bin/sh", script], env: {} },
    });
    const client = await waitForSocket(`${dir}/state/daemon.sock`);
    try {
      const failed = await assertRejects(
        () =>
          client.request("connect", {
            context: "dev",
            kubeconfigEnv: "/home/someone/.kube/config",
            home: "/home/someone",
            managerNamespace: "vif-system",
            namespace: "default",
            alsoProxy: [],
            neverProxy: [],
            allowConflicting: [],
            dnsInclude: [],
            dnsExclude: [],
            graceSeconds: 30,
          }),
        DaemonError,
      );
      // Past the credentials: the API server the helper named does not answer.
      assertMatch(failed.message, /127\.0\.0\.1:9/);
      assertEquals(
        await Deno.readTextFile(`${dir}/ran`),
        "65534 kube-credentials --context dev HOME=/home/someone KUBECONFIG=/home/someone/.kube/config\n",
      );
      await client.request("quit", {});
    } finally {
      client.close();
    }
    assertEquals(await running, 0);
    await Deno.remove(dir, { recursive: true });
  },
});
