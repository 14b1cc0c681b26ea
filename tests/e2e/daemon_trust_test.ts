/**
 * What the root daemon trusts, against the simulated cluster:
 *
 * - credentials: a user (nobody) connects through a daemon that serves
 *   them, with a kubeconfig whose user is an exec credential plugin (a shell
 *   script that notes `id -u`); when its token expires (the API server
 *   answers 401) the daemon gets a new one by running the plugin again, as
 *   nobody, never as root, and the connection carries on;
 * - the port-forward's local end is a Unix socket no other user may open;
 * - the state directory: one that another user owns, or a log that is a
 *   link, stops vif with two lines and writes nothing;
 * - DNS survives the daemon: SIGSTOP (the watchdog puts the original
 *   resolv.conf back within seconds, and vif's when SIGCONT), `kill -9`
 *   (back at once; `connect --foreground` too), checked with glibc
 *   (`getent`) and musl (a getaddrinfo program built with musl-gcc).
 *
 * ```
 *  vs…-ws (workstation)                                              vs…-out
 *  vif daemon (root, --owner 65534) ──► 198.19.200.1:6443 API ──► traffic-manager pod
 *    ├─ setpriv nobody: vif kube-credentials ─► plugin.sh (id -u ≫ uids)
 *    ├─ STATE/portforward.sock (0600 root)
 *    └─ vif dns-watchdog ──probe──► 240.0.0.2:53        /etc/resolv.conf: 240.0.0.2 ⇄ 198.19.200.53 (outside.example)
 *  vif connect (nobody) ──STATE/daemon.sock──┘
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run, waitUntil } from "./_env.ts";
import { Sim } from "../sim/sim.ts";
import { OUTSIDE_HOST_IP, OUTSIDE_NAME } from "../sim/cluster_net.ts";
import { denoForNobody } from "../sim/deno_nobody.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];
const MANAGER = "app.kubernetes.io/name=traffic-manager";
const NOBODY = 65534;

const MUSL_RESOLVE = `
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  struct addrinfo hints, *res;
  char text[INET_ADDRSTRLEN];
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(argv[1], NULL, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\\n", argv[1], gai_strerror(rc));
    return 2;
  }
  inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, text, sizeof text);
  printf("%s\\n", text);
  freeaddrinfo(res);
  return 0;
}
`;

Deno.test({
  name:
    "the root daemon: credentials as the user, a private port-forward, a safe state dir, DNS that outlives it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    // Every directory on the way to the state directory must be root's, and
    // nobody must reach the control socket: a directory of our own, 0755.
    const top = await Deno.makeTempDir({ prefix: "vif-trust-" });
    env.defer(() => Deno.remove(top, { recursive: true }).catch(() => {}));
    await Deno.chmod(top, 0o755);
    const state = `${top}/state`;
    const pids = new Set<number>();
    // Whatever happens, no daemon or watchdog outlives the test (a stopped one included).
    env.defer(async () => {
      const s = await Deno.readTextFile(`${state}/daemon.json`).then(JSON.parse, () => null);
      if (s?.pid) pids.add(s.pid);
      for (const pid of pids) {
        for (const signal of ["SIGCONT", "SIGKILL"] as const) {
          try {
            Deno.kill(pid, signal);
          } catch {
            // gone
          }
        }
      }
    });
    let started: Sim | undefined;
    try {
      const sim = started = await Sim.start(env, { samples: true });
      const ws = sim.ws;
      const vif = ([command, ...args]: string[]) =>
        sim.exec([...VIF, command!, "--state-dir", state, ...args]);
      const resolvConf = `/etc/netns/${ws}/resolv.conf`;
      const original = await Deno.readTextFile(resolvConf);
      const statusJson = async () => JSON.parse((await vif(["status", "--output", "json"])).stdout);
      const daemonPid = async () =>
        (JSON.parse(await Deno.readTextFile(`${state}/daemon.json`)) as { pid: number }).pid;
      const alive = (pid: number) =>
        Deno.readTextFile(`/proc/${pid}/stat`).then((s) => !/^\d+ \(.*\) Z /.test(s), () => false);
      const log = () => Deno.readTextFile(`${state}/daemon.log`).catch(() => "");

      const install = await sim.exec([...VIF, "install", "--context", "vif-sim"]);
      assertEquals(install.code, 0, install.stderr);
      await sim.waitReady("vif-system", MANAGER, 1, 90_000);

      await t.step("a state directory another user owns: two lines, nothing made", async () => {
        const theirs = `${top}/theirs`;
        await Deno.mkdir(theirs, { mode: 0o755 });
        await Deno.chown(theirs, NOBODY, NOBODY);
        const r = await sim.exec([...VIF, "connect", "--state-dir", `${theirs}/state`, "-q"]);
        assertEquals(r.code, 1, r.stderr);
        assertEquals(
          r.stderr,
          `vif: the state directory "${theirs}/state" is not safe for root: "${theirs}" belongs to uid ${NOBODY}\n` +
            `Use one that only root can change (the default is /var/lib/vif), or: sudo chown root: ${theirs}\n`,
        );
        const daemon = await sim.exec([...VIF, "daemon", "--state-dir", `${theirs}/state`]);
        assertEquals(daemon.code, 1);
        assertEquals(daemon.stderr, r.stderr);
        assertEquals((await Array.fromAsync(Deno.readDir(theirs))).length, 0);
      });

      await t.step("a log that is a link: two lines, its target untouched", async () => {
        const linked = `${top}/linked`;
        await Deno.mkdir(linked, { mode: 0o755 });
        await Deno.writeTextFile(`${top}/precious`, "precious\n");
        await Deno.symlink(`${top}/precious`, `${linked}/daemon.log`);
        for (const command of ["daemon", "connect"]) {
          const r = await sim.exec([...VIF, command, "--state-dir", linked]);
          assertEquals(r.code, 1, `${command}: ${r.stderr}`);
          assertEquals(
            r.stderr,
            `vif: "${linked}/daemon.log" is a symbolic link: vif does not write through links in its state directory\n` +
              `Remove it (rm ${linked}/daemon.log) and start vif again.\n`,
          );
        }
        assertEquals(await Deno.readTextFile(`${top}/precious`), "precious\n");
        assertEquals((await Array.fromAsync(Deno.readDir(linked))).map((e) => e.name), [
          "daemon.log",
        ]);
      });

      // nobody's files: a home whose Deno cache is the one prepared for nobody,
      // an exec plugin that notes who runs it, and the token it hands out.
      const nobody = await denoForNobody(env);
      const home = nobody.env.HOME!;
      await Deno.mkdir(`${home}/.cache`, { recursive: true });
      await Deno.symlink(nobody.denoDir, `${home}/.cache/deno`);
      const uids = `${home}/plugin-uids`;
      await Deno.writeTextFile(
        `${home}/plugin.sh`,
        "#!/bin/sh\n" +
          `id -u >> ${uids}\n` +
          `printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"%s"}}' "$(cat ${home}/token)"\n`,
        { mode: 0o755 },
      );
      const simConfig = await Deno.readTextFile(sim.kubeconfig);
      const ca = /certificate-authority-data: (\S+)/.exec(simConfig)![1]!;
      const kubeconfig = `${home}/kubeconfig`;
      await Deno.writeTextFile(
        kubeconfig,
        [
          "apiVersion: v1",
          "kind: Config",
          "clusters:",
          "- name: sim",
          "  cluster:",
          `    server: ${sim.apiUrl}`,
          `    certificate-authority-data: ${ca}`,
          "users:",
          "- name: plugin",
          "  user:",
          "    exec:",
          "      apiVersion: client.authentication.k8s.io/v1beta1",
          `      command: ${home}/plugin.sh`,
          "      interactiveMode: Never",
          "contexts:",
          "- name: vif-exec",
          "  context: {cluster: sim, user: plugin}",
          "current-context: vif-exec",
          "",
        ].join("\n"),
      );
      const first = `exec-${crypto.randomUUID()}`;
      const admin = { user: "admin", groups: ["system:masters"] };
      sim.grantToken(first, admin);
      await Deno.writeTextFile(`${home}/token`, first);
      await must(["chown", "-R", `${NOBODY}:${NOBODY}`, home]);
      const asNobody = (...args: string[]) =>
        sim.exec(nobody.run(`${ROOT}/main.ts`, ...args, "--state-dir", state), {
          env: { ...nobody.env, KUBECONFIG: kubeconfig, PATH: "/usr/bin:/bin" },
        });
      const apiAnswers = async (token: string) =>
        (await sim.exec([
          "curl",
          "-sk",
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          "-H",
          `Authorization: Bearer ${token}`,
          `${sim.apiUrl}/api/v1/namespaces`,
        ])).stdout;

      await t.step("nobody connects through a root daemon that serves nobody", async () => {
        assertEquals(await apiAnswers(first), "200");
        const daemon = sim.spawn([
          ...VIF,
          "daemon",
          "--state-dir",
          state,
          "--owner",
          `${NOBODY}:${NOBODY}`,
          "--log-level",
          "debug",
        ]);
        pids.add(daemon.pid);
        await waitUntil(
          () => Deno.stat(`${state}/daemon.sock`).then(() => true, () => false),
          30_000,
          "the daemon's socket",
        );
        const r = await asNobody("connect", "--context", "vif-exec");
        assertEquals(r.code, 0, r.stderr + r.stdout);
        assertMatch(r.stdout, /^connected to the traffic-manager/m);
        // The plugin ran once, in nobody's `vif connect`.
        assertEquals(await Deno.readTextFile(uids), `${NOBODY}\n`);
        assertMatch(
          await must(["curl", "-sS", "--max-time", "10", "http://web.default/"], { ns: ws }),
          /^pod web-/m,
        );
      });

      await t.step("the port-forward's socket: root's, 0600, and nobody is refused", async () => {
        const sock = `${state}/portforward.sock`;
        const info = await Deno.stat(sock);
        assert(info.isSocket);
        assertEquals([info.mode! & 0o777, info.uid], [0o600, 0]);
        const refused = await sim.exec([
          "setpriv",
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "--",
          "socat",
          "-u",
          `UNIX-CONNECT:${sock}`,
          "-",
        ]);
        assertEquals(refused.code, 1);
        assertMatch(refused.stderr, /Permission denied/);
        // And nothing of the daemon's listens on TCP loopback any more.
        const listening = await must(["ss", "-Hltnp"], { ns: ws });
        const pid = await daemonPid();
        assert(
          !listening.split("\n").some((l) => l.includes(`pid=${pid},`) && /127\.0\.0\.1:/.test(l)),
          listening,
        );
      });

      await t.step(
        "the token expires: the daemon runs the plugin again as nobody and carries on",
        async () => {
          const before = (await statusJson()).connection.manager.pod;
          const second = `exec-${crypto.randomUUID()}`;
          sim.revokeToken(first);
          sim.grantToken(second, admin);
          assertEquals(await apiAnswers(first), "401");
          await Deno.writeTextFile(`${home}/token`, second);
          // The port-forward is cut (the manager's pod replaced): finding the new
          // pod meets the 401 and renews the credentials.
          const del = await sim.kubectl(
            "-n",
            "vif-system",
            "delete",
            "pod",
            "-l",
            MANAGER,
            "--wait=false",
          );
          assertEquals(del.code, 0, del.stderr);
          await waitUntil(
            async () => {
              const c = (await statusJson()).connection;
              return c?.state === "connected" && c.manager.pod !== before;
            },
            90_000,
            "the connection on the manager's new pod",
            500,
          );
          await waitUntil(
            async () =>
              (await run(["curl", "-sS", "--max-time", "3", "http://web.default/"], { ns: ws }))
                .stdout.startsWith("pod "),
            30_000,
            "web.default through the new manager pod",
            500,
          );
          const ran = (await Deno.readTextFile(uids)).trim().split("\n");
          assert(ran.length >= 2, ran.join(","));
          assertEquals(
            ran.filter((u) => u !== String(NOBODY)),
            [],
            "the plugin ran as someone else",
          );
          const text = await log();
          assertMatch(text, /connection: the API server refused the credentials; renewing them/);
          assert(!text.includes(first) && !text.includes(second), "a token in the log");
          const q = await vif(["quit"]);
          assertEquals(q.code, 0, q.stderr);
        },
      );

      // --- DNS that outlives the daemon ---------------------------------------------------
      const musl = await run(["sh", "-c", "command -v musl-gcc"]);
      const muslBin = `${top}/musl-resolve`;
      if (musl.code === 0) {
        await Deno.writeTextFile(`${top}/resolve.c`, MUSL_RESOLVE);
        await must(["musl-gcc", "-static", "-Os", "-o", muslBin, `${top}/resolve.c`]);
      } else {
        console.log("e2e: musl-gcc is missing (Debian's musl-tools): the musl half is skipped");
      }
      const glibc = async (name: string) =>
        (await run(["getent", "ahostsv4", name], { ns: ws })).stdout.split(/\s/)[0] ?? "";
      const muslResolve = async (name: string) =>
        musl.code === 0 ? (await run([muslBin, name], { ns: ws })).stdout.trim() : "skipped";
      const watchdogPid = async () => {
        const m = [...(await log()).matchAll(/dns: dns watchdog started \(pid (\d+)\)/g)].at(-1);
        return Number(m?.[1]);
      };

      await t.step("while vif runs, glibc and musl get cluster names from vif", async () => {
        const r = await vif(["connect", "--context", "vif-sim", "-q"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(await Deno.readTextFile(resolvConf), /^nameserver 240\.0\.0\.2$/m);
        assert(
          !/^nameserver 198\./m.test(await Deno.readTextFile(resolvConf)),
          "only vif's nameserver",
        );
        for (const name of ["web.default", "web.default.svc.cluster.local"]) {
          assertMatch(`${name} ${await glibc(name)}`, /^\S+ 198\.19\.\d+\.\d+$/);
          if (musl.code === 0) {
            assertMatch(`musl ${name} ${await muslResolve(name)}`, /^musl \S+ 198\.19\.\d+\.\d+$/);
          }
        }
        const pid = await watchdogPid();
        assert(await alive(pid), `watchdog ${pid}`);
        pids.add(pid);
        // Its size once it has started and probed a few times.
        await waitUntil(
          async () => new RegExp(`dns watchdog: pid ${pid} watching`).test(await log()),
          20_000,
          "the watchdog at work",
        );
        await new Promise((r) => setTimeout(r, 3000));
        const rss = /^VmRSS:\s+(\d+) kB$/m.exec(await Deno.readTextFile(`/proc/${pid}/status`))
          ?.[1];
        console.log(
          `e2e: the dns watchdog (pid ${pid}) holds ${
            (Number(rss) / 1024).toFixed(1)
          } MiB resident`,
        );
      });

      await t.step(
        "SIGSTOP of the daemon: other names resolve within seconds; SIGCONT: vif's again",
        async () => {
          const pid = await daemonPid();
          const stopped = performance.now();
          Deno.kill(pid, "SIGSTOP");
          try {
            await waitUntil(
              async () => await Deno.readTextFile(resolvConf) === original,
              10_000,
              "the original resolv.conf",
              100,
            );
            assertEquals(await glibc(OUTSIDE_NAME), OUTSIDE_HOST_IP);
            const took = performance.now() - stopped;
            if (musl.code === 0) assertEquals(await muslResolve(OUTSIDE_NAME), OUTSIDE_HOST_IP);
            console.log(
              `e2e: ${OUTSIDE_NAME} resolved ${(took / 1000).toFixed(1)} s after SIGSTOP`,
            );
            assert(took < 8000, `${took} ms`);
            // The saved state stays: the daemon still owns resolv.conf.
            await Deno.stat(`${state}/resolv.conf.json`);
          } finally {
            Deno.kill(pid, "SIGCONT");
          }
          await waitUntil(
            async () => /^nameserver 240\.0\.0\.2$/m.test(await Deno.readTextFile(resolvConf)),
            10_000,
            "vif's resolv.conf again",
            100,
          );
          await waitUntil(
            async () => /^198\.19\./.test(await glibc("web.default")),
            20_000,
            "web.default again",
            500,
          );
          const text = await log();
          assertMatch(text, /warn {2}dns watchdog: the daemon has not answered for \d+ ms/);
          assertMatch(text, /info {2}dns watchdog: the daemon answers again/);
        },
      );

      await t.step(
        "kill -9 of the daemon: DNS is back at once, and quit --force finds only the socket",
        async () => {
          const pid = await daemonPid();
          const watchdog = await watchdogPid();
          const killed = performance.now();
          Deno.kill(pid, "SIGKILL");
          await waitUntil(
            async () => await Deno.readTextFile(resolvConf) === original,
            5_000,
            "the original",
            20,
          );
          console.log(
            `e2e: resolv.conf restored ${(performance.now() - killed).toFixed(0)} ms after kill -9`,
          );
          assertEquals(await glibc(OUTSIDE_NAME), OUTSIDE_HOST_IP);
          if (musl.code === 0) assertEquals(await muslResolve(OUTSIDE_NAME), OUTSIDE_HOST_IP);
          await waitUntil(async () => !await alive(watchdog), 5_000, "the watchdog gone");
          assertMatch(
            await log(),
            /warn {2}dns watchdog: the daemon is gone: putting the original resolv\.conf back/,
          );
          const force = await vif(["quit", "--force"]);
          assertEquals(force.code, 0, force.stderr);
          assertEquals(force.stdout, "cleaned up: stale control socket removed\n");
          assertEquals(await Deno.readTextFile(resolvConf), original);
          const left = (await Array.fromAsync(Deno.readDir(state))).map((e) => e.name).sort();
          assertEquals(left, ["daemon.log"]);
        },
      );

      await t.step(
        "connect --foreground, kill -9: its watchdog puts resolv.conf back too",
        async () => {
          const fgState = `${top}/state-foreground`;
          const p = sim.spawn([
            ...VIF,
            "connect",
            "--foreground",
            "--context",
            "vif-sim",
            "--state-dir",
            fgState,
          ]);
          pids.add(p.pid);
          await p.waitFor(/^connected to the traffic-manager/, 60_000);
          assertMatch(await Deno.readTextFile(resolvConf), /^nameserver 240\.0\.0\.2$/m);
          const fgLog = () => Deno.readTextFile(`${fgState}/daemon.log`).catch(() => "");
          await waitUntil(
            async () => /dns watchdog: pid \d+ watching/.test(await fgLog()),
            20_000,
            "its watchdog",
          );
          Deno.kill(p.pid, "SIGKILL");
          await waitUntil(
            async () => await Deno.readTextFile(resolvConf) === original,
            5_000,
            "the original",
            20,
          );
          assertEquals(await glibc(OUTSIDE_NAME), OUTSIDE_HOST_IP);
          // The file is written before the line that says so: wait for the line.
          await waitUntil(
            async () =>
              /dns watchdog: restored .*resolv\.conf as it was before/.test(await fgLog()),
            5_000,
            "the watchdog's log line",
          );
        },
      );
    } finally {
      await started?.exec([...VIF, "quit", "--force", "--state-dir", state]).catch(() => {});
      await env.cleanup();
    }
  },
});
