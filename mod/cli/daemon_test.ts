/**
 * The daemon's commands in-process: `vif daemon` refusing a state directory
 * root must not use, in two lines; `vif kube-credentials` printing what a
 * kubeconfig's user resolves to, its exec plugin run; `vif quit --force`
 * refusing to restore from a directory that is not root's.
 */

import { assertEquals, assertMatch } from "../../tests/_assert.ts";
import { main, memoryIo } from "./mod.ts";

const asRoot = { ignore: Deno.uid() !== 0 };

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vif-cli-daemon-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(
  "vif daemon: a state directory another user owns stops it with two lines",
  asRoot,
  async () => {
    await withDir(async (dir) => {
      await Deno.mkdir(`${dir}/theirs`);
      await Deno.chown(`${dir}/theirs`, 65534, 65534);
      const io = memoryIo();
      const code = await main(["daemon", "--state-dir", `${dir}/theirs/state`], { io });
      assertEquals(code, 1);
      assertEquals(
        io.err,
        `vif: the state directory "${dir}/theirs/state" is not safe for root: "${dir}/theirs" belongs to uid 65534\n` +
          `Use one that only root can change (the default is /var/lib/vif), or: sudo chown root: ${dir}/theirs\n`,
      );
    });
  },
);

Deno.test(
  "vif quit --force: restores nothing from a directory that is not root's",
  asRoot,
  async () => {
    await withDir(async (dir) => {
      const state = `${dir}/state`;
      await Deno.mkdir(state, { mode: 0o777 });
      await Deno.chmod(state, 0o777);
      await Deno.writeTextFile(`${state}/resolv.conf.json`, '{"path":"/etc/shadow","written":""}');
      const io = memoryIo();
      const code = await main(["quit", "--force", "--state-dir", state], { io });
      assertEquals(code, 1, io.err);
      assertMatch(
        io.err,
        new RegExp(
          `^vif: the state directory ".*" is not safe for root: .* is writable by everyone \\(mode 0777\\)$`,
          "m",
        ),
      );
      assertEquals((await Array.fromAsync(Deno.readDir(state))).map((e) => e.name), [
        "resolv.conf.json",
      ]);
    });
  },
);

Deno.test("vif kube-credentials: prints the context's access as one JSON line, its exec plugin run", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/plugin.sh`,
      "#!/bin/sh\n" +
        `echo ran >> ${dir}/ran\n` +
        `printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"from-plugin"}}'\n`,
      { mode: 0o755 },
    );
    const kubeconfig = [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: c",
      "  cluster:",
      "    server: https://198.18.0.1:6443",
      "users:",
      "- name: u",
      "  user:",
      "    exec:",
      "      apiVersion: client.authentication.k8s.io/v1beta1",
      `      command: ${dir}/plugin.sh`,
      "- name: t",
      "  user:",
      "    token: plain",
      "contexts:",
      "- name: exec",
      "  context: {cluster: c, user: u}",
      "- name: token",
      "  context: {cluster: c, user: t}",
      "current-context: token",
      "",
    ].join("\n");
    await Deno.writeTextFile(`${dir}/config`, kubeconfig);
    const io = memoryIo({ KUBECONFIG: `${dir}/config`, PATH: "/usr/bin:/bin" });
    assertEquals(await main(["kube-credentials", "--context", "exec"], { io }), 0, io.err);
    assertEquals(JSON.parse(io.out), {
      context: "exec",
      access: {
        server: "https://198.18.0.1:6443",
        headers: { Authorization: "Bearer from-plugin" },
      },
    });
    assertEquals(io.out.split("\n").length, 2);
    assertEquals(await Deno.readTextFile(`${dir}/ran`), "ran\n");
    const current = memoryIo({ KUBECONFIG: `${dir}/config` });
    assertEquals(await main(["kube-credentials"], { io: current }), 0, current.err);
    assertEquals(JSON.parse(current.out).access.headers, { Authorization: "Bearer plain" });
    const missing = memoryIo({ KUBECONFIG: `${dir}/config` });
    assertEquals(await main(["kube-credentials", "--context", "nope"], { io: missing }), 1);
    assertEquals(missing.out, "");
    assertMatch(missing.err, /^vif: no context "nope" in the kubeconfig/);
  });
});
