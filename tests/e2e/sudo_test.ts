/**
 * vif as a developer runs it: an ordinary user, whose `vif connect` starts
 * the root daemon through sudo, allowed by a sudoers rule for exactly
 * `vif daemon --detach …` (README, "Without a password"). The user has a
 * Deno cache of their own (vif runs from source here); root's daemon must
 * not write into it. Without the rule, sudo would ask for a password with no
 * terminal to ask on: connect says what to do, at once.
 *
 * The user and the sudoers file are made for the test and removed after it.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run } from "./_env.ts";
import { Sim } from "../sim/sim.ts";
import { denoForNobody } from "../sim/deno_nobody.ts";
import { selfCommand } from "../../mod/daemon/self.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];

/** A sudoers command-line argument: `,`, `:`, `=` and `\` are escaped. */
function sudoersWord(word: string): string {
  return word.replace(/[\\,:=]/g, (c) => `\\${c}`);
}

/** A free id for both a user and a group, from a range nothing else here uses. */
async function freeId(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const id = 61_000 + Math.floor(Math.random() * 900);
    const user = await run(["getent", "passwd", String(id)]);
    const group = await run(["getent", "group", String(id)]);
    if (user.code !== 0 && group.code !== 0) return id;
  }
  throw new Error("No free id in 61000-61899");
}

Deno.test({
  name:
    "an ordinary user with a sudoers rule: connect, status, curl, quit; without it, a clear error",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    // Root's state directory, which the user can reach (not the machine's /var/lib/vif).
    const top = await Deno.makeTempDir({ prefix: "vif-e2e-sudo-" });
    env.defer(() => Deno.remove(top, { recursive: true }).catch(() => {}));
    await Deno.chmod(top, 0o755);
    const state = `${top}/state`;
    let started: Sim | undefined;
    try {
      const sim = started = await Sim.start(env, { samples: true });
      const install = await sim.exec([...VIF, "install", "--context", "vif-sim"]);
      assertEquals(install.code, 0, install.stderr);

      // The user, with a home and a Deno cache of their own.
      const id = await freeId();
      const name = `vif-e2e-${id}`;
      await must(["groupadd", "--gid", String(id), name]);
      env.defer(() => run(["groupdel", name]).then(() => {}));
      const deno = await denoForNobody(env, { uid: id });
      const home = deno.env.HOME!;
      await must([
        "useradd",
        "--uid",
        String(id),
        "--gid",
        String(id),
        "--no-create-home",
        "--home-dir",
        home,
        "--shell",
        "/usr/sbin/nologin",
        name,
      ]);
      env.defer(() => run(["userdel", name]).then(() => {}));
      const kubeconfig = `${home}/kubeconfig`;
      await Deno.copyFile(sim.kubeconfig, kubeconfig);
      await Deno.chown(kubeconfig, id, id);

      env.killDaemonOnCleanup(state);

      // Exactly `vif daemon --detach …`, nothing else, without a password.
      const daemon = [...selfCommand(), "daemon", "--detach"].map(sudoersWord).join(" ");
      const sudoers = `/etc/sudoers.d/vif-e2e-${id}`;
      env.defer(() => Deno.remove(sudoers).catch(() => {}));
      await Deno.writeTextFile(sudoers, `${name} ALL=(root) NOPASSWD: ${daemon} *\n`, {
        mode: 0o440,
      });
      await must(["visudo", "-cf", sudoers]);

      const asUser = (args: string[]) =>
        sim.exec(
          [
            "setpriv",
            `--reuid=${id}`,
            `--regid=${id}`,
            "--init-groups",
            "--",
            DENO,
            "run",
            "-A",
            "--cached-only",
            "--config",
            `${ROOT}/deno.json`,
            `${ROOT}/main.ts`,
            args[0]!,
            "--state-dir",
            state,
            ...args.slice(1),
          ],
          {
            env: {
              ...deno.env,
              KUBECONFIG: kubeconfig,
              USER: name,
              LOGNAME: name,
              PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
              SUDO_UID: "",
              SUDO_GID: "",
            },
          },
        );

      await t.step("connect starts the daemon through sudo -n, for this user", async () => {
        const r = await asUser(["connect", "--context", "vif-sim"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stderr, /starting the daemon as root \(sudo\)/);
        const owner = (await Deno.stat(`${state}/daemon.sock`)).uid;
        assertEquals(owner, id);
      });

      await t.step("status and curl as the user", async () => {
        const status = await asUser(["status", "-o", "json"]);
        assertEquals(status.code, 0, status.stderr);
        assertEquals(JSON.parse(status.stdout).connection?.state, "connected");
        const curl = await sim.exec([
          "setpriv",
          `--reuid=${id}`,
          `--regid=${id}`,
          "--init-groups",
          "--",
          "curl",
          "-sS",
          "--max-time",
          "10",
          "http://web.default/",
        ]);
        assertEquals(curl.code, 0, curl.stderr);
        assert(curl.stdout.length > 0, "no answer from web");
      });

      await t.step("quit as the user puts everything back", async () => {
        const r = await asUser(["quit"]);
        assertEquals(r.code, 0, r.stderr);
        const links = await run(["ip", "-o", "link", "show", "type", "tun"], { ns: sim.ws });
        assertEquals(links.stdout.trim(), "", "a TUN device is left");
      });

      await t.step("root's daemon wrote nothing into the user's Deno cache or home", async () => {
        const foreign = await run(["find", deno.denoDir, home, "!", "-user", String(id)]);
        assertEquals(foreign.stdout.trim(), "");
      });

      await t.step(
        "without the rule: sudo would ask for a password, and connect says what to do",
        async () => {
          await Deno.remove(sudoers);
          const before = Date.now();
          const r = await asUser(["connect", "--context", "vif-sim"]);
          assertEquals(r.code, 1, r.stdout);
          assertMatch(
            r.stderr,
            /^vif: sudo needs your password to start vif's daemon, and there is no terminal to ask for it\n/m,
          );
          assertMatch(r.stderr, /sudo -v/);
          assert(Date.now() - before < 30_000, "connect waited for a password");
        },
      );
    } finally {
      await started?.exec([...VIF, "quit", "--force", "--state-dir", state]).catch(() => {});
      await env.cleanup();
    }
  },
});
