/**
 * `vif intercept` end to end in the simulated cluster: the agent is put into
 * `default/web` (a named `targetPort`) with the user's credentials and rolls
 * out; a client pod's requests to `web.default` reach a server on the
 * workstation, with their Host and body; the pod's environment (a ConfigMap
 * through envFrom, a Secret) is written out and given to `-- CMD`; its
 * volumes (a ConfigMap, an emptyDir the app wrote) are mounted with
 * `sshfs -o slave` over the tunnel; a name of the pod's namespace resolves;
 * `vif leave` gives the port back; a numeric `targetPort` goes through the
 * agent's nftables redirect; `kill -9` of the daemon gives the pod its
 * traffic back within the session's expiry; `vif uninstall --agents` puts the
 * workload back exactly.
 *
 * ```
 *  client pod ──curl web.default──► web pod: vif-agent :9900 ──► manager ──mux──► daemon ──► ws 127.0.0.1:8080 (the test's server)
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run, waitUntil } from "./_env.ts";
import type { KubeObject } from "../sim/apiserver/mod.ts";
import { Sim, SIM_LIMITED_CONTEXT } from "../sim/sim.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];
const MANAGER = "app.kubernetes.io/name=traffic-manager";

/** A local HTTP server: answers every request with what it received. */
const LOCAL_SERVER = `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        out = f"local: host={self.headers.get('Host')} method={self.command} body={body}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = answer
    def log_message(self, *a): pass
host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
http.server.ThreadingHTTPServer((host, int(sys.argv[1])), H).serve_forever()
`;

/** The app of `web` with an environment and volumes: it writes a file, then serves. */
function patchWeb(sim: Sim, namespace = "default"): Promise<unknown> {
  const store = sim.store;
  store.create({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "web-config", namespace },
    data: { GREETING: "hello from the config map", "site.conf": "listen 80;\n" },
  } as KubeObject);
  store.create({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "web-secret", namespace },
    type: "Opaque",
    data: { password: btoa("s3cret-value") },
  } as KubeObject);
  return sim.kubectl(
    "patch",
    "deployment",
    "web",
    "-n",
    namespace,
    "--type",
    "strategic",
    "-p",
    JSON.stringify({
      spec: {
        template: {
          spec: {
            containers: [{
              name: "web",
              // The app writes into its emptyDir when it starts: readable under --mount.
              command: [
                "sh",
                "-c",
                `echo 'the app wrote this' > /data/from-the-app.txt && ` +
                `exec nginx -c ${sim.net.dir}/samples/nginx.conf -e stderr`,
              ],
              envFrom: [{ configMapRef: { name: "web-config" } }],
              env: [
                {
                  name: "DB_PASSWORD",
                  valueFrom: { secretKeyRef: { name: "web-secret", key: "password" } },
                },
                { name: "GREETING_TWICE", value: "$(GREETING) $(GREETING)" },
              ],
              volumeMounts: [
                { name: "config", mountPath: "/config", readOnly: true },
                { name: "data", mountPath: "/data" },
              ],
            }],
            volumes: [
              { name: "config", configMap: { name: "web-config" } },
              { name: "data", emptyDir: {} },
            ],
          },
        },
      },
    }),
  );
}

Deno.test({
  name:
    "vif intercept: the cluster's requests to web reach the workstation, with the pod's environment and volumes",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    const state = `${env.dir}/state`;
    // Its mounts are in the workstation's mount namespace, which ends with its last process.
    env.killDaemonOnCleanup(state);
    try {
      const sim = await Sim.start(env, { samples: true });
      const ws = sim.ws;
      const vif = (args: string[], options: { env?: Record<string, string> } = {}) =>
        sim.exec([...VIF, args[0]!, "--state-dir", state, ...args.slice(1)], options);
      const curl = (url: string, ...extra: string[]) =>
        sim.execInPod("default", "deployment/client", [
          "curl",
          "-sS",
          "--max-time",
          "10",
          ...extra,
          url,
        ]);
      const webTemplate = () =>
        JSON.stringify(
          (sim.store.get({ resource: "deployments", namespace: "default", name: "web" })!
            .spec as { template: unknown }).template,
        );

      const install = await sim.exec([...VIF, "install", "--context", "vif-sim"]);
      assertEquals(install.code, 0, install.stderr);
      await sim.waitReady("vif-system", MANAGER, 1, 90_000);
      await Promise.all([patchWeb(sim), patchWeb(sim, "other")]);
      await sim.waitReady("default", "app=web", 1, 60_000);
      await sim.waitReady("other", "app=web", 1, 60_000);
      const original = webTemplate();
      const connect = await vif(["connect", "--context", "vif-sim"]);
      assertEquals(connect.code, 0, connect.stderr);

      // The developer's program on the workstation.
      const server = sim.spawn(["python3", "-c", LOCAL_SERVER, "8080"]);
      env.defer(() => server.stop());
      await waitUntil(
        () => run(["curl", "-s", "http://127.0.0.1:8080/"], { ns: ws }).then((r) => r.code === 0),
        10_000,
        "the local server",
      );
      const mount = `${env.dir}/mnt`;
      const envFile = `${env.dir}/web.env`;
      const envJson = `${env.dir}/web.json`;

      await t.step("a user who may not patch the Deployment is told so, in two lines", async () => {
        const r = await sim.exec([
          ...VIF,
          "intercept",
          "web",
          "--state-dir",
          state,
          "--port",
          "8080:http",
          "--context",
          SIM_LIMITED_CONTEXT,
        ]);
        assertEquals(r.code, 1, r.stdout);
        assertMatch(
          r.stderr,
          /^vif: you may not patch deployments "web" in namespace "default"\n/m,
        );
        assertMatch(r.stderr, /kubectl auth can-i patch deployments -n default/);
        assertEquals(webTemplate(), original);
      });

      let interceptSeconds = 0;
      let apiOriginal = "";
      await t.step(
        "vif intercept web --port 8080:http: injected, rolled out, intercepting",
        async () => {
          const t0 = performance.now();
          const r = await vif([
            "intercept",
            "web",
            "--port",
            "8080:http",
            "--env-file",
            envFile,
            "--env-json",
            envJson,
            "--mount",
            mount,
          ]);
          interceptSeconds = (performance.now() - t0) / 1000;
          assertEquals(r.code, 0, r.stderr);
          assertMatch(
            r.stdout,
            /^intercepting deployment\/web in default: web port http \(container web port 80\) → 127\.0\.0\.1:8080$/m,
          );
          assertMatch(r.stdout, /^ {2}volumes: mounted on /m);
          console.log(
            `e2e: vif intercept with injection and rollout: ${interceptSeconds.toFixed(1)} s`,
          );
          const status = await vif(["status"]);
          assertMatch(
            status.stdout,
            /^Intercepts:\s+default\/web port 80 → 127\.0\.0\.1:8080 \(1 pod/m,
          );
        },
      );

      await t.step(
        "a client pod's requests reach the workstation with their Host and body: 100 in a row, 50 at once",
        async () => {
          for (let i = 0; i < 100; i++) {
            const r = await curl("http://web.default/", "-d", `request ${i}`);
            assertEquals(r.code, 0, r.stderr);
            assertEquals(r.stdout, `local: host=web.default method=POST body=request ${i}\n`);
          }
          const many = await Promise.all(
            Array.from(
              { length: 50 },
              (_, i) => curl("http://web.default/", "-d", `together ${i}`),
            ),
          );
          for (const [i, r] of many.entries()) {
            assertEquals(
              r.stdout,
              `local: host=web.default method=POST body=together ${i}\n`,
              r.stderr,
            );
          }
          // Each intercepted connection leaves the daemon's tables when it ends: of the 150,
          // none is left (a readiness probe may be passing through).
          await waitUntil(
            async () => {
              const listed = JSON.parse((await vif(["connections", "-o", "json"])).stdout);
              return listed.flows.filter((f: { kind: string }) => f.kind === "intercept").length <=
                1;
            },
            10_000,
            "the intercepted connections to leave vif connections",
          );
        },
      );

      await t.step(
        "the env files hold the app's variables: envFrom a ConfigMap, a Secret, $(VAR)",
        async () => {
          const json = JSON.parse(await Deno.readTextFile(envJson));
          assertEquals(json.GREETING, "hello from the config map");
          assertEquals(json.DB_PASSWORD, "s3cret-value");
          assertEquals(json.GREETING_TWICE, "hello from the config map hello from the config map");
          assert(!Object.keys(json).some((k) => k.startsWith("VIF_")), Object.keys(json).join(" "));
          const sh = await Deno.readTextFile(envFile);
          assertMatch(sh, /^export DB_PASSWORD='s3cret-value'$/m);
          assertEquals((await Deno.stat(envFile)).mode! & 0o777, 0o600);
        },
      );

      await t.step(
        "the pod's volumes: a ConfigMap file and what the app wrote are read here; a file written here is in the pod",
        async () => {
          // As the workstation's processes see it (the daemon's mount namespace).
          const conf = await sim.exec(["cat", `${mount}/config/site.conf`]);
          assertEquals(conf.stdout, "listen 80;\n", conf.stderr);
          const fromApp = await sim.exec(["cat", `${mount}/data/from-the-app.txt`]);
          assertEquals(fromApp.stdout, "the app wrote this\n", fromApp.stderr);
          const write = await sim.exec([
            "sh",
            "-c",
            `echo 'written over sftp' > ${mount}/data/from-the-workstation.txt`,
          ]);
          assertEquals(write.code, 0, write.stderr);
          const inPod = await sim.execInPod("default", "deployment/web", [
            "cat",
            "/data/from-the-workstation.txt",
          ], { container: "web" });
          assertEquals(inPod.stdout, "written over sftp\n", inPod.stderr);
        },
      );

      await t.step("vif leave web: the pod answers again", async () => {
        const r = await vif(["leave", "web"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch((await curl("http://web.default/")).stdout, /^pod web-/);
        assert(
          !(await sim.exec(["cat", "/proc/self/mountinfo"])).stdout.includes(mount),
          "the mount outlived the intercept",
        );
      });

      await t.step("the agent already there: intercepting again is quick", async () => {
        const t0 = performance.now();
        const r = await vif(["intercept", "web", "--port", "8080:http"]);
        const s = (performance.now() - t0) / 1000;
        assertEquals(r.code, 0, r.stderr);
        console.log(`e2e: vif intercept with the agent there: ${s.toFixed(1)} s`);
        assertMatch((await curl("http://web.default/")).stdout, /^local: /);
      });

      await t.step(
        "a second session, from another workstation, is refused the port with the holder's name; its own intercept mounts the volumes for its user, and vif quit unmounts them",
        async () => {
          const ws2 = await sim.net.addWorkstation("ws2", "198.19.200.3");
          const state2 = `${env.dir}/state2`;
          env.killDaemonOnCleanup(state2);
          // This developer is nobody (uid 65534), as `sudo vif connect` from their account makes it:
          // the daemon serves them, and runs their sshfs as them.
          const asUser = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
          const vif2 = (args: string[]) =>
            sim.execOn(ws2, [...VIF, args[0]!, "--state-dir", state2, ...args.slice(1)], {
              env: { SUDO_UID: "65534", SUDO_GID: "65534" },
            });
          // fusermount3 opens /dev/fuse as the user: mode 0666, as Debian's udev makes it (this
          // machine has no udev, and 0600), put back as it was afterwards.
          const fuseMode = (await Deno.stat("/dev/fuse")).mode! & 0o7777;
          env.defer(() => Deno.chmod("/dev/fuse", fuseMode));
          await Deno.chmod("/dev/fuse", 0o666);
          const mount2 = await Deno.makeTempDir({ prefix: "vif-e2e-mnt-" });
          env.defer(() => Deno.remove(mount2, { recursive: true }).catch(() => {}));
          await Deno.chown(mount2, 65534, 65534);
          const connect2 = await vif2(["connect", "--context", "vif-sim"]);
          assertEquals(connect2.code, 0, connect2.stderr);
          try {
            const claims = () =>
              (sim.store.get({ resource: "deployments", namespace: "default", name: "web" })!
                .metadata.annotations ?? {})["vif.dev/intercepts"];
            const before = claims();
            const r = await vif2(["intercept", "web", "--port", "8080:http"]);
            assertEquals(r.code, 1, r.stdout);
            assertMatch(
              r.stderr,
              /^vif: port 80 of Deployment default\/web is intercepted by root@\S+\n.*vif leave web/m,
            );
            // The holder's claim is back, and its intercept goes on.
            assertEquals(claims(), before);
            assertMatch((await curl("http://web.default/")).stdout, /^local: /);

            const own = await vif2([
              "intercept",
              "web",
              "-n",
              "other",
              "--port",
              "8080:http",
              "--mount",
              mount2,
            ]);
            assertEquals(own.code, 0, own.stderr);
            assertMatch(own.stdout, /^ {2}volumes: mounted on /m);
            const read = await sim.execOn(ws2, [
              ...asUser,
              "sh",
              "-c",
              `stat -c %U ${mount2} && cat ${mount2}/config/site.conf ${mount2}/data/from-the-app.txt`,
            ]);
            assertEquals(read.stdout, "nobody\nlisten 80;\nthe app wrote this\n", read.stderr);
          } finally {
            assertEquals((await vif2(["quit"])).code, 0);
          }
          const mounts = await sim.execOn(ws2, ["cat", "/proc/self/mountinfo"]);
          assert(!mounts.stdout.includes(mount2), "vif quit left the mount");
        },
      );

      await t.step(
        "-- CMD runs with the pod's environment and VIF_ROOT, and leaves when it exits",
        async () => {
          await vif(["leave", "web"]);
          const r = await vif([
            "intercept",
            "web",
            "--port",
            "8080:http",
            "--mount",
            "true",
            "--",
            "sh",
            "-c",
            'echo "G=$GREETING P=$DB_PASSWORD R=$VIF_ROOT"; cat "$VIF_ROOT/config/site.conf"; exit 7',
          ]);
          assertEquals(r.code, 7, r.stderr);
          assertMatch(r.stdout, /^G=hello from the config map P=s3cret-value R=\/\S+$/m);
          assertMatch(r.stdout, /^listen 80;$/m);
          assertMatch((await curl("http://web.default/")).stdout, /^pod web-/);
        },
      );

      await t.step(
        "intercepting a pod of another namespace, its names resolve here as in the pod",
        async () => {
          sim.store.create({
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: "only-in-other", namespace: "other" },
            spec: {
              selector: { app: "web" },
              ports: [{ name: "http", port: 80, targetPort: "http" }],
            },
          } as KubeObject);
          const before = await run(["getent", "hosts", "only-in-other"], { ns: ws });
          assertEquals(before.code, 2, before.stdout);
          const r = await vif(["intercept", "web", "-n", "other", "--port", "8080:http"]);
          assertEquals(r.code, 0, r.stderr);
          await waitUntil(
            async () => (await run(["getent", "hosts", "only-in-other"], { ns: ws })).code === 0,
            10_000,
            "only-in-other to resolve",
          );
          assertMatch(await must(["getent", "hosts", "only-in-other"], { ns: ws }), /^198\.19\./);
          // --remove-agent: the workload in "other" goes back to its template before vif.
          const left = await vif(["leave", "web", "-n", "other", "--remove-agent"]);
          assertEquals(left.code, 0, left.stderr);
          const containers =
            (sim.store.get({ resource: "deployments", namespace: "other", name: "web" })!
              .spec as { template: { spec: { containers: Array<{ name: string }> } } }).template
              .spec
              .containers.map((c) => c.name);
          assertEquals(containers, ["web"]);
        },
      );

      await t.step(
        "a numeric targetPort: the agent takes it with the init container's nftables redirect",
        async () => {
          const www = `${env.dir}/api-www`;
          await Deno.mkdir(www, { recursive: true });
          await Deno.writeTextFile(`${www}/index.html`, "api pod\n");
          await Deno.chmod(env.dir, 0o755);
          sim.store.create({
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: "api", namespace: "default", labels: { app: "api" } },
            spec: {
              replicas: 1,
              selector: { matchLabels: { app: "api" } },
              template: {
                metadata: { labels: { app: "api" } },
                spec: {
                  containers: [{
                    name: "api",
                    image: "python:3-alpine",
                    command: ["python3", "-m", "http.server", "8000", "--directory", www],
                    ports: [{ containerPort: 8000, protocol: "TCP" }],
                    readinessProbe: { tcpSocket: { port: 8000 } },
                  }],
                },
              },
            },
          } as KubeObject);
          sim.store.create({
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: "api", namespace: "default" },
            spec: { selector: { app: "api" }, ports: [{ port: 80, targetPort: 8000 }] },
          } as KubeObject);
          await sim.waitReady("default", "app=api", 1, 60_000);
          assertEquals((await curl("http://api.default/")).stdout, "api pod\n");
          apiOriginal = JSON.stringify(
            (sim.store.get({ resource: "deployments", namespace: "default", name: "api" })!
              .spec as { template: unknown }).template,
          );
          // To another local address: a second server, on 127.0.0.2 (--address).
          const second = sim.spawn(["python3", "-c", LOCAL_SERVER, "8080", "127.0.0.2"]);
          env.defer(() => second.stop());
          await waitUntil(
            () =>
              run(["curl", "-s", "http://127.0.0.2:8080/"], { ns: ws }).then((r) => r.code === 0),
            10_000,
            "the server on 127.0.0.2",
          );
          const r = await vif(["intercept", "api", "--port", "8080", "--address", "127.0.0.2"]);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stdout, /\(container api port 8000\) → 127\.0\.0\.2:8080$/m);
          for (let i = 0; i < 100; i++) {
            const one = await curl("http://api.default/", "-d", `request ${i}`);
            assertEquals(one.stdout, `local: host=api.default method=POST body=request ${i}\n`);
          }
          const many = await Promise.all(
            Array.from(
              { length: 50 },
              (_, i) => curl("http://api.default/", "-d", `together ${i}`),
            ),
          );
          for (const [i, one] of many.entries()) {
            assertEquals(
              one.stdout,
              `local: host=api.default method=POST body=together ${i}\n`,
              one.stderr,
            );
          }
          assertEquals((await vif(["leave", "api"])).code, 0);
          assertEquals((await curl("http://api.default/")).stdout, "api pod\n");
        },
      );

      await t.step(
        "after kill -9 of the daemon, the pod answers its own traffic within the session's expiry",
        async () => {
          const again = await vif(["intercept", "web", "--port", "8080:http", "--mount", "true"]);
          assertEquals(again.code, 0, again.stderr);
          const s = JSON.parse(await Deno.readTextFile(`${state}/daemon.json`));
          assertEquals(s.mounts.length, 1);
          Deno.kill(s.pid, "SIGKILL");
          const t0 = performance.now();
          await waitUntil(
            async () => /^pod web-/.test((await curl("http://web.default/")).stdout),
            60_000,
            "the pod's own answer",
          );
          console.log(
            `e2e: the pod answered again ${
              ((performance.now() - t0) / 1000).toFixed(1)
            } s after kill -9`,
          );
          const quit = await vif(["quit", "--force"]);
          assertEquals(quit.code, 0, quit.stderr);
          assert(
            !(await sim.exec(["cat", "/proc/self/mountinfo"])).stdout.includes(s.mounts[0]),
            "vif quit --force left the mount",
          );
        },
      );

      await t.step("vif uninstall --agents puts the workload back, byte for byte", async () => {
        const r = await sim.exec([...VIF, "uninstall", "--agents", "--context", "vif-sim"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /^deployment\.apps\/web in default: agent removed$/m);
        assertEquals(webTemplate(), original);
        assertMatch(r.stdout, /^deployment\.apps\/api in default: agent removed$/m);
        assertEquals(
          JSON.stringify(
            (sim.store.get({ resource: "deployments", namespace: "default", name: "api" })!
              .spec as { template: unknown }).template,
          ),
          apiOriginal,
        );
        const annotations =
          (sim.store.get({ resource: "deployments", namespace: "default", name: "web" })!
            .metadata.annotations ?? {}) as Record<string, string>;
        assert(
          !Object.keys(annotations).some((k) => k.startsWith("vif.dev/")),
          JSON.stringify(annotations),
        );
      });
    } finally {
      await env.cleanup();
    }
  },
});
