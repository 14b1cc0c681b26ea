/**
 * The daemon and the commands people live in, against the simulated cluster:
 * `vif connect` starting the daemon and returning connected, `vif status`
 * (text and the JSON schema), a second connect, `connect -- CMD` with and
 * without a connection up, `loglevel`, `gather-logs`, `quit`, a `kill -9` of
 * the daemon and what puts the machine back after it, the manager's pod
 * replaced under a live connection, the manager gone for longer than the
 * grace period; then each failure of connect, checked by its message.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run, waitUntil } from "./_env.ts";
import { schemaProblems } from "./_status_schema.ts";
import { Sim } from "../sim/sim.ts";
import { debianKubectl } from "../sim/apiserver/_testing.ts";
import { denoForNobody } from "../sim/deno_nobody.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];
const MANAGER = "app.kubernetes.io/name=traffic-manager";

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

Deno.test({
  name: "the daemon: connect in the background, status, quit, -- CMD, kill -9, a lost manager",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    const state = `${env.dir}/state`;
    // Whatever happens, no daemon outlives the test.
    env.killDaemonOnCleanup(state);
    let started: Sim | undefined;
    try {
      const sim = started = await Sim.start(env, { samples: true });
      const ws = sim.ws;
      // The state directory right after the command: never after a `--`.
      const vif = ([command, ...args]: string[], options: { env?: Record<string, string> } = {}) =>
        sim.exec([...VIF, command!, "--state-dir", state, ...args], options);
      const tuns = async () =>
        (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: ws })).trim();
      const resolvConf = `/etc/netns/${ws}/resolv.conf`;
      const original = await Deno.readFile(resolvConf);
      const statusJson = async () => {
        const r = await vif(["status", "--output", "json"]);
        return { code: r.code, doc: JSON.parse(r.stdout) };
      };
      const daemonPid = async () =>
        (JSON.parse(await Deno.readTextFile(`${state}/daemon.json`)) as { pid: number }).pid;
      // A zombie waiting for its reaper is gone too.
      const alive = (pid: number) =>
        Deno.readTextFile(`/proc/${pid}/stat`).then((s) => !/^\d+ \(.*\) Z /.test(s), () => false);

      const install = await sim.exec([...VIF, "install", "--context", "vif-sim"]);
      assertEquals(install.code, 0, install.stderr);
      await sim.waitReady("vif-system", MANAGER, 1, 90_000);

      await t.step("with no daemon: status says so, in text and JSON, exit 1", async () => {
        const text = await vif(["status"]);
        assertEquals(text.code, 1);
        assertMatch(text.stdout, /^Daemon:\s+not running$/m);
        const { doc } = await statusJson();
        assertEquals(schemaProblems(doc), []);
        assertEquals([doc.daemon.running, doc.connected], [false, false]);
      });

      await t.step("vif connect starts the daemon and returns connected", async () => {
        const r = await vif(["connect", "--context", "vif-sim"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /^contacting the API server at https:\/\/198\.19\.200\.1:6443/m);
        assertMatch(r.stdout, /^port-forwarding to vif-system\/traffic-manager-/m);
        assertMatch(r.stdout, /^connected to the traffic-manager at vif-system\/traffic-manager-/m);
        assertMatch(
          r.stdout,
          /^routes: 198\.18\.0\.0\/24 \(pods\), 198\.19\.0\.0\/18 \(services\) via vif0$/m,
        );
        // The socket: the owner's only.
        const info = await Deno.stat(`${state}/daemon.sock`);
        assertEquals(info.mode! & 0o777, 0o600);
        assert(await alive(await daemonPid()));
        assertMatch(
          await must(["curl", "-sS", "--max-time", "10", "http://web.default/"], { ns: ws }),
          /^pod web-/m,
        );
      });

      await t.step("status: the table, and JSON that follows schema 1", async () => {
        await must(["dig", "+short", "web.other.svc.cluster.local"], { ns: ws });
        const text = await vif(["status"]);
        assertEquals(text.code, 0, text.stderr);
        assertMatch(text.stdout, /^Connected:\s+yes, for /m);
        assertMatch(text.stdout, /^Context:\s+vif-sim \(https:\/\/198\.19\.200\.1:6443\)$/m);
        assertMatch(text.stdout, /^Routed:\s+198\.18\.0\.0\/24\s+pods$/m);
        assertMatch(text.stdout, /^DNS:\s+240\.0\.0\.2 via resolv\.conf$/m);
        const { code, doc } = await statusJson();
        assertEquals(code, 0);
        assertEquals(schemaProblems(doc), []);
        const c = doc.connection;
        assertEquals([c.context, c.namespace, c.manager.via, c.tun.name], [
          "vif-sim",
          "default",
          "port-forward",
          "vif0",
        ]);
        assert(c.counters.connectionsTotal >= 1, JSON.stringify(c.counters));
        assert(c.counters.dnsQueries >= 1, JSON.stringify(c.counters));
        assert(c.counters.bytesFromCluster > 0, JSON.stringify(c.counters));
        console.log(`e2e: status counters: ${JSON.stringify(c.counters)}`);
      });

      await t.step(
        "connect again: the same flags change nothing, others say how to switch",
        async () => {
          const same = await vif(["connect", "--context", "vif-sim"]);
          assertEquals(same.code, 0, same.stderr);
          assertMatch(same.stdout, /^already connected \(since .*\); nothing changed$/m);
          const other = await vif(["connect", "--context", "vif-sim", "-n", "other"]);
          assertEquals(other.code, 1);
          assertEquals(
            other.stderr,
            'vif: already connected to context "vif-sim", namespace "default"\n' +
              "Run `vif quit` first, then `vif connect` with the new flags.\n",
          );
        },
      );

      await t.step(
        "connect -- CMD while connected: its exit code, and still connected",
        async () => {
          const r = await vif([
            "connect",
            "--context",
            "vif-sim",
            "-q",
            "--",
            "sh",
            "-c",
            "curl -sS --max-time 10 http://web.other/; exit 5",
          ]);
          assertEquals(r.code, 5, r.stderr);
          assertMatch(r.stdout, /^pod web-/m);
          assertEquals((await statusJson()).doc.connected, true);
        },
      );

      await t.step("loglevel changes the level now; gather-logs writes the archive", async () => {
        const r = await vif(["loglevel", "debug"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, "log level info → debug\n");
        await vif(["status"]);
        assertMatch(
          await Deno.readTextFile(`${state}/daemon.log`),
          / debug control: status from uid 0/,
        );
        const bad = await vif(["loglevel", "loud"]);
        assertEquals(bad.code, 2);
        assertMatch(bad.stderr, /unknown log level "loud"/);
        const archive = `${env.dir}/logs.tar.gz`;
        const g = await vif(["gather-logs", "-o", archive]);
        assertEquals(g.code, 0, g.stderr);
        const listing = await must(["tar", "tzf", archive]);
        for (const name of ["status.json", "version.json", "daemon.log", "daemon.json"]) {
          assertMatch(listing, new RegExp(`/${name.replace(".", "\\.")}$`, "m"));
        }
        // From the cluster, through the API server (pods/log): the manager's log and objects.
        assertMatch(listing, /\/cluster\/manager\/deployment\.json$/m);
        assertMatch(listing, /\/cluster\/manager\/pod-traffic-manager-\S+\.json$/m);
        assertEquals((await Deno.stat(archive)).mode! & 0o777, 0o600);
        const out = `${env.dir}/logs`;
        await Deno.mkdir(out);
        await must(["tar", "xzf", archive, "-C", out]);
        const [top] = await Array.fromAsync(Deno.readDir(out), (e) => e.name);
        const dir = `${out}/${top}`;
        const managerLog = (await Array.fromAsync(Deno.readDir(`${dir}/cluster/manager`)))
          .map((e) => e.name).find((n) => n.endsWith(".traffic-manager.log"));
        assert(managerLog, "no manager log in the archive");
        assertMatch(
          await Deno.readTextFile(`${dir}/cluster/manager/${managerLog}`),
          /manager: session \S+ arrived from/,
        );
        assertMatch(await Deno.readTextFile(`${dir}/summary.txt`), /context: vif-sim/);
        const errors = await Deno.readTextFile(`${dir}/errors.txt`).catch(() => "");
        assertEquals(errors, "");

        // --anonymize: the manager pod's name and address are nowhere, the same stand-in everywhere.
        const status = (await statusJson()).doc.connection;
        const realPod: string = status.manager.pod.split("/").at(-1);
        const anon = `${env.dir}/anon.tar.gz`;
        const a = await vif(["gather-logs", "--anonymize", "-o", anon]);
        assertEquals(a.code, 0, a.stderr);
        const anonDir = `${env.dir}/anon`;
        await Deno.mkdir(anonDir);
        await must(["tar", "xzf", anon, "-C", anonDir]);
        const everything = await must([
          "sh",
          "-c",
          `cd ${anonDir} && find . -type f -print -exec cat {} +`,
        ]);
        assert(!everything.includes(realPod), `${realPod} is in the anonymized archive`);
      });

      await t.step("version names the daemon's and the manager's", async () => {
        const r = await vif(["version", "--output", "json"]);
        assertEquals(r.code, 0, r.stderr);
        const v = JSON.parse(r.stdout);
        assertEquals([v.daemon, v.manager], [v.vif, v.vif]);
        assertEquals(r.stderr, "");
      });

      await t.step("doctor passes every check while connected", async () => {
        const r = await vif(["doctor"]);
        assertEquals(r.code, 0, r.stdout + r.stderr);
        for (
          const name of [
            "TUN",
            "DNS",
            "daemon",
            "kubeconfig",
            "API server",
            "traffic-manager",
            "subnets",
          ]
        ) {
          assertMatch(r.stdout, new RegExp(`^ok\\s+${name}\\s`, "m"));
        }
      });

      await t.step("another user cannot use the daemon's socket", async () => {
        const nobody = await denoForNobody(env);
        const r = await sim.exec(
          [...nobody.run(`${ROOT}/main.ts`, "status", "--state-dir", state)],
          {
            env: nobody.env,
          },
        );
        assertEquals(r.code, 1, r.stdout);
        assertMatch(r.stderr, /the vif daemon's socket ".*daemon\.sock" is not this user's/);
      });

      await t.step("the manager's pod replaced: the connection carries on by itself", async () => {
        const before = (await statusJson()).doc.connection.manager.pod;
        const kubectl = await debianKubectl();
        const del = await sim.exec([
          kubectl,
          "-n",
          "vif-system",
          "delete",
          "pod",
          "-l",
          MANAGER,
          "--wait=false",
        ]);
        assertEquals(del.code, 0, del.stderr);
        await waitUntil(
          async () => {
            const c = (await statusJson()).doc.connection;
            return c?.state === "connected" && c.manager.pod !== before;
          },
          60_000,
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
      });

      await t.step(
        "quit: no TUN, no routes, resolv.conf as it was, no socket, no daemon",
        async () => {
          const pid = await daemonPid();
          const r = await vif(["quit"]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(r.stdout, "disconnected; the daemon stopped\n");
          assertEquals(await tuns(), "");
          assert(!/ dev vif0/.test(await must(["ip", "route"], { ns: ws })));
          assertEquals(await Deno.readFile(resolvConf), original);
          assert(!await alive(pid), `daemon ${pid} still runs`);
          const left = (await Array.fromAsync(Deno.readDir(state))).map((e) => e.name).sort();
          assertEquals(left, ["daemon.log"]);
          const again = await vif(["quit"]);
          assertEquals([again.code, again.stdout], [0, "not connected; nothing to do\n"]);
        },
      );

      await t.step(
        "connect -- CMD with nothing up: connects, runs, disconnects, exit codes",
        async () => {
          const seven = await vif([
            "connect",
            "--context",
            "vif-sim",
            "--",
            "sh",
            "-c",
            "getent hosts web.default; exit 7",
          ]);
          assertEquals(seven.code, 7, seven.stderr);
          assertMatch(seven.stdout, /^198\.19\.\d+\.\d+\s+web\.default/m);
          assertMatch(seven.stdout, /exited with 7: disconnected$/m);
          assertEquals(await tuns(), "");
          const missing = await vif([
            "connect",
            "--context",
            "vif-sim",
            "-q",
            "--",
            "/nonexistent/program",
          ]);
          assertEquals(missing.code, 127, missing.stderr);
          assertMatch(missing.stderr, /cannot run "\/nonexistent\/program"/);
          const zero = await vif(["connect", "--context", "vif-sim", "-q", "--", "true"]);
          assertEquals([zero.code, zero.stdout], [0, ""]);
          assertEquals((await statusJson()).doc.daemon.running, false);
          assertEquals(await Deno.readFile(resolvConf), original);
        },
      );

      await t.step("SIGTERM to connect -- CMD: passed to CMD, then disconnected", async () => {
        const p = sim.spawn([
          ...VIF,
          "connect",
          "--state-dir",
          state,
          "--context",
          "vif-sim",
          "--",
          "sh",
          "-c",
          "echo running; exec sleep 60",
        ]);
        await p.waitFor(/^running$/, 60_000);
        Deno.kill(p.pid, "SIGTERM");
        const status = await p.child.status;
        await p.output;
        assertEquals(status.code, 128 + 15, p.errLines.join("\n"));
        assertMatch(p.lines.join("\n"), /exited with 143: disconnected/);
        assertEquals(await tuns(), "");
        assertEquals((await statusJson()).doc.daemon.running, false);
        assertEquals(await Deno.readFile(resolvConf), original);
      });

      await t.step(
        "kill -9 of the daemon: status and quit say so, quit --force puts all back",
        async () => {
          const r = await vif(["connect", "--context", "vif-sim", "-q"]);
          assertEquals(r.code, 0, r.stderr);
          const pid = await daemonPid();
          Deno.kill(pid, "SIGKILL");
          await waitUntil(async () => !await alive(pid), 10_000, `daemon ${pid} gone`);
          // The kernel takes the TUN and its routes (unregistering a device may take a
          // moment); the DNS watchdog puts resolv.conf back.
          await waitUntil(async () => await tuns() === "", 10_000, "the TUN gone with its process");
          await waitUntil(
            async () => equalBytes(await Deno.readFile(resolvConf), original),
            5_000,
            "resolv.conf put back by the watchdog",
          );
          const s = await vif(["status"]);
          assertEquals(s.code, 1);
          assertMatch(s.stdout, new RegExp(`^Last error: the daemon \\(pid ${pid}\\) died`, "m"));
          const quit = await vif(["quit"]);
          assertEquals(quit.code, 1);
          assertMatch(quit.stderr, /the daemon is gone but left changes behind/);
          assertMatch(quit.stderr, /^Run `vif quit --force` to put them back\.$/m);
          const force = await vif(["quit", "--force"]);
          assertEquals(force.code, 0, force.stderr);
          assertMatch(force.stdout, /^cleaned up: stale control socket removed$/m);
          assertEquals(await Deno.readFile(resolvConf), original);
        },
      );

      await t.step("SIGTERM to the daemon: it disconnects, puts all back and exits", async () => {
        const r = await vif(["connect", "--context", "vif-sim", "-q"]);
        assertEquals(r.code, 0, r.stderr);
        const pid = await daemonPid();
        Deno.kill(pid, "SIGTERM");
        await waitUntil(async () => !await alive(pid), 15_000, `daemon ${pid} gone after SIGTERM`);
        assertEquals(await tuns(), "");
        assertEquals(await Deno.readFile(resolvConf), original);
        const left = (await Array.fromAsync(Deno.readDir(state))).map((e) => e.name).sort();
        assertEquals(left, ["daemon.log"]);
        assertMatch(
          await Deno.readTextFile(`${state}/daemon.log`),
          /daemon: SIGTERM: shutting down/,
        );
      });

      await t.step("kill -9, then connect: the new daemon puts things back first", async () => {
        const r = await vif(["connect", "--context", "vif-sim", "-q"]);
        assertEquals(r.code, 0, r.stderr);
        Deno.kill(await daemonPid(), "SIGKILL");
        const next = await vif(["connect", "--context", "vif-sim", "-q", "--", "true"]);
        assertEquals(next.code, 0, next.stderr);
        const log = await Deno.readTextFile(`${state}/daemon.log`);
        // resolv.conf by the watchdog, at once; the rest by the next daemon.
        assertMatch(log, /dns watchdog: restored .*resolv\.conf as it was before/);
        assertMatch(log, /after a crash: stale control socket removed/);
        assertEquals(await Deno.readFile(resolvConf), original);
        assertEquals(await tuns(), "");
      });

      await t.step(
        "the manager gone for longer than --grace: torn down, status says why",
        async () => {
          const r = await vif(["connect", "--context", "vif-sim", "-q", "--grace", "4"]);
          assertEquals(r.code, 0, r.stderr);
          const scale = (n: number) => sim.scale("vif-system", "traffic-manager", n);
          assertEquals((await scale(0)).code, 0);
          try {
            await waitUntil(
              async () => !(await statusJson()).doc.connected,
              60_000,
              "the teardown",
              500,
            );
            const { doc } = await statusJson();
            assertEquals(schemaProblems(doc), []);
            assertMatch(doc.lastError.message, /^lost the traffic-manager .* for more than 4 s/);
            assertEquals(await tuns(), "");
            assertEquals(await Deno.readFile(resolvConf), original);
          } finally {
            assertEquals((await scale(1)).code, 0);
            await vif(["quit"]);
          }
          await sim.waitReady("vif-system", MANAGER, 1, 90_000);
        },
      );
    } finally {
      // In the workstation's namespace: resolv.conf there is the one to put back.
      await started?.exec([...VIF, "quit", "--force", "--state-dir", state]).catch(() => {});
      await env.cleanup();
    }
  },
});

Deno.test({
  name: "vif connect: every failure says what happened and what to do",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    const state = `${env.dir}/state`;
    let started: Sim | undefined;
    try {
      const sim = started = await Sim.start(env);
      const install = await sim.exec([...VIF, "install", "--context", "vif-sim"]);
      assertEquals(install.code, 0, install.stderr);
      await sim.waitReady("vif-system", MANAGER, 1, 90_000);
      const connect = (args: string[], extra: Record<string, string> = {}) =>
        sim.exec([...VIF, "connect", "--state-dir", state, ...args], { env: extra });
      const nothingLeft = async () => {
        assertEquals(
          (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: sim.ws })).trim(),
          "",
        );
        const left = await Array.fromAsync(Deno.readDir(state)).catch(() => []);
        assert(left.every((e) => e.name === "daemon.log"), left.map((e) => e.name).join(" "));
      };
      const twoLines = (stderr: string) => {
        assertEquals(stderr.trimEnd().split("\n").length, 2, stderr);
        assert(!/\n\s+at /.test(stderr), `a stack trace: ${stderr}`);
      };
      const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;

      await t.step("no kubeconfig", async () => {
        const r = await connect([], { KUBECONFIG: "", HOME: env.dir, DENO_DIR: denoDir });
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /^vif: no kubeconfig/);
        twoLines(r.stderr);
      });

      await t.step("a KUBECONFIG naming a missing file", async () => {
        const r = await connect([], { KUBECONFIG: `${env.dir}/nope` });
        assertEquals(r.code, 1);
        assertMatch(r.stderr, /none of the files in KUBECONFIG exists/);
        twoLines(r.stderr);
      });

      await t.step("an unknown context", async () => {
        const r = await connect(["--context", "prod"]);
        assertEquals(r.code, 1);
        assertMatch(r.stderr, /^vif: no context "prod" in the kubeconfig/);
        assertMatch(r.stderr, /^Use one of: "vif-sim", "vif-sim-limited", "vif-sim-dev"\.$/m);
        await nothingLeft();
      });

      await t.step("credentials the API server does not accept", async () => {
        const bad = `${env.dir}/bad-token`;
        await Deno.writeTextFile(
          bad,
          (await Deno.readTextFile(sim.kubeconfig)).replace(/token: .*/g, "token: expired"),
        );
        const r = await connect(["--kubeconfig", bad, "--context", "vif-sim"]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /did not accept the credentials/);
        assertMatch(r.stderr, /Log in again/);
        await nothingLeft();
      });

      await t.step("a traffic-manager older than this client supports", async () => {
        const kubectl = await debianKubectl();
        const label = (v: string) =>
          sim.exec([
            kubectl,
            "-n",
            "vif-system",
            "label",
            "pod",
            "-l",
            MANAGER,
            `app.kubernetes.io/version=${v}`,
            "--overwrite",
          ]);
        assertEquals((await label("0.0.3")).code, 0);
        try {
          const r = await connect(["--context", "vif-sim"]);
          assertEquals(r.code, 1, r.stderr);
          assertMatch(
            r.stderr,
            /the traffic-manager in "vif-system" is version 0\.0\.3, older than/,
          );
          assertMatch(r.stderr, /^Upgrade it with `vif install --context vif-sim`/m);
          await nothingLeft();
        } finally {
          await label("0.1.0");
        }
      });

      await t.step("no right to make a TUN device", async () => {
        const nobody = await denoForNobody(env);
        const kubeconfig = `${nobody.env.HOME}/kubeconfig`;
        await Deno.copyFile(sim.kubeconfig, kubeconfig);
        await Deno.chown(kubeconfig, 65534, 65534);
        const asNobody = (args: string[]) =>
          sim.exec(
            nobody.run(
              `${ROOT}/main.ts`,
              "connect",
              "--state-dir",
              // Root's, and nobody can look in: one of nobody's own would be
              // refused before sudo is looked for.
              nobody.denoDir.replace(/\/deno$/, "/state"),
              ...args,
            ),
            {
              env: { ...nobody.env, KUBECONFIG: kubeconfig, PATH: "/usr/bin:/bin" },
            },
          );
        const fg = await asNobody(["--foreground", "--context", "vif-sim"]);
        assertEquals(fg.code, 1, fg.stderr);
        assertMatch(
          fg.stderr,
          /^vif: making the TUN device needs root \(CAP_NET_ADMIN\), and vif runs as uid 65534 without it$/m,
        );
        twoLines(fg.stderr);
        const bg = await asNobody(["--context", "vif-sim"]);
        assertEquals(bg.code, 1, bg.stderr);
        assertMatch(bg.stderr, /sudo/);
      });

      await t.step("a route over a cluster subnet", async () => {
        await must(["ip", "route", "add", "198.19.0.0/20", "via", "198.19.200.1"], { ns: sim.ws });
        try {
          const r = await connect(["--context", "vif-sim"]);
          assertEquals(r.code, 1, r.stderr);
          assertMatch(
            r.stderr,
            /the cluster's service subnet 198\.19\.0\.0\/18 overlaps the route "198\.19\.0\.0\/20 via 198\.19\.200\.1 dev eth0"/,
          );
          assertMatch(r.stderr, /--never-proxy 198\.19\.0\.0\/20/);
          await nothingLeft();
        } finally {
          await must(["ip", "route", "del", "198.19.0.0/20"], { ns: sim.ws });
        }
      });

      await t.step("DNS cannot be set up (a read-only resolv.conf)", async () => {
        const resolvConf = `/etc/netns/${sim.ws}/resolv.conf`;
        const before = await Deno.readFile(resolvConf);
        const r = await sim.exec([
          "unshare",
          "-m",
          "sh",
          "-c",
          'mount -o remount,bind,ro /etc/resolv.conf && exec "$@"',
          "sh",
          ...VIF,
          "connect",
          "--state-dir",
          state,
          "--context",
          "vif-sim",
        ]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /^vif: cannot set up DNS: .*Read-only file system/m);
        assertMatch(r.stderr, /vif doctor/);
        assertEquals(await Deno.readFile(resolvConf), before);
        await nothingLeft();
      });

      await t.step("bad flags are usage errors, exit 2", async () => {
        for (
          const [flag, value, want] of [
            ["--grace", "0", /not a number of seconds/],
            ["--also-proxy", "198.18.0.0/33", /is not a subnet/],
            ["--dns-include", "a..b", /is not a DNS suffix/],
            ["--output", "xml", /xml/],
          ] as const
        ) {
          const r = await connect([flag, value]);
          assertEquals(r.code, 2, `${flag} ${value}: ${r.stderr}`);
          assertMatch(r.stderr, want);
        }
      });
    } finally {
      // In the workstation's namespace: resolv.conf there is the one to put back.
      await started?.exec([...VIF, "quit", "--force", "--state-dir", state]).catch(() => {});
      await env.cleanup();
    }
  },
});
