/**
 * A container's life in the simulated cluster, as a kubelet leads it:
 * readiness probes decide the pod's `Ready` and its Service's endpoints over
 * time; a liveness probe that times out gets the container killed and started
 * again; a container that keeps ending backs off; probes come from the node
 * to the pod's IP, while a port-forward dials the pod's localhost, tcp4 then
 * tcp6.
 *
 * ```
 *  <base>-node1 ── curl / socat to 198.18.0.x ──► pod netns (one per pod below)
 *   flip:  python3 HTTP :8082, /readyz 200 or 503 (SIGUSR1 flips it)   readinessProbe httpGet, Service "flip"
 *   stuck: python3 HTTP :8082, /livez                                  livenessProbe httpGet, timeoutSeconds 1
 *   crash: sh -c "exit 3"                                              restartPolicy Always
 *   once:  sh -c "sleep 600 & exit 3"                                  restartPolicy Never
 *   leaver: sh -c "sleep 600 & exec sleep 600"                         deleted
 *   local: socat 127.0.0.1:8090 only                                   readinessProbe tcpSocket 8090
 *   v6:    socat [::1]:8091 only                                       (port-forward only)
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { Env, must, waitUntil } from "../e2e/_env.ts";
import type { KubeObject } from "./apiserver/mod.ts";
import { dialInPod, Sim } from "./sim.ts";

/** An HTTP server on port argv[1]: `/readyz` says 503 after SIGUSR1 (and 200 after the next). */
const SERVER = `
import http.server, signal, sys
state = {"ready": True}
def flip(*_):
    state["ready"] = not state["ready"]
signal.signal(signal.SIGUSR1, flip)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if self.path == "/readyz" and not state["ready"] else 200
        self.send_response(code)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")
    def log_message(self, *args):
        pass
print("serving", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
`;

interface PodStatus {
  phase: string;
  conditions?: { type: string; status: string }[];
  containerStatuses?: Array<{
    ready: boolean;
    restartCount: number;
    state: Record<string, { reason?: string; message?: string; exitCode?: number }>;
    lastState: Record<string, { reason?: string; exitCode?: number }>;
  }>;
}

function pod(name: string, container: Record<string, unknown>, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", labels: { app: name } },
    spec: { ...spec, containers: [{ name, ...container }] },
  } as KubeObject;
}

Deno.test({
  name: "the kubelet probes containers over time, restarts them, and backs off",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env);
      const store = sim.store;
      const status = (name: string) =>
        (store.get({ resource: "pods", namespace: "default", name }) as
          | KubeObject & { status?: PodStatus }
          | undefined)?.status;
      const container = (name: string) => status(name)?.containerStatuses?.[0];
      const ready = (name: string) =>
        (status(name)?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
      const events = (name: string) => sim.kubelet.events("default", name).map((e) => e.message);

      store.create(
        pod(
          "once",
          { image: "busybox:sim", command: ["sh", "-c", "sleep 600 & echo $!; exit 3"] },
          {
            restartPolicy: "Never",
          },
        ),
      );
      const python = {
        image: "python:3-alpine",
        command: ["/usr/bin/python3", "-c", SERVER, "8082"],
        ports: [{ name: "health", containerPort: 8082 }],
      };
      store.create({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "flip", namespace: "default" },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: "flip" } },
          template: {
            metadata: { labels: { app: "flip" } },
            spec: {
              securityContext: { runAsUser: 65534, runAsGroup: 65534 },
              containers: [{
                name: "flip",
                ...python,
                readinessProbe: {
                  httpGet: { path: "/readyz", port: "health" },
                  periodSeconds: 1,
                  failureThreshold: 2,
                },
              }],
            },
          },
        },
      } as KubeObject);
      store.create({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "flip", namespace: "default" },
        spec: { selector: { app: "flip" }, ports: [{ port: 80, targetPort: "health" }] },
      } as KubeObject);
      store.create(pod("stuck", {
        ...python,
        livenessProbe: {
          httpGet: { path: "/livez", port: 8082 },
          periodSeconds: 1,
          timeoutSeconds: 1,
          failureThreshold: 2,
        },
      }, { terminationGracePeriodSeconds: 1 }));
      store.create(pod("local", {
        image: "alpine/socat:latest",
        command: ["socat", "TCP4-LISTEN:8090,bind=127.0.0.1,fork,reuseaddr", "SYSTEM:echo local"],
        readinessProbe: { tcpSocket: { port: 8090 }, periodSeconds: 1 },
      }));
      store.create(pod("v6", {
        image: "alpine/socat:latest",
        command: ["socat", "TCP6-LISTEN:8091,bind=[::1],fork,reuseaddr", "SYSTEM:echo v6"],
      }));

      await t.step(
        "a failing httpGet readiness probe takes the pod out of Ready and the endpoints",
        async () => {
          const [obj] = await sim.waitReady("default", "app=flip");
          const name = obj!.metadata.name!;
          const p = sim.pod("default", name)!;
          const endpoints = () =>
            JSON.stringify(
              store.get({ resource: "endpoints", namespace: "default", name: "flip" }),
            );
          assertMatch(endpoints(), new RegExp(`"ip":"${p.ip.replaceAll(".", "\\.")}"`));
          Deno.kill(p.proc!.pid, "SIGUSR1");
          await waitUntil(() => !ready(name), 10_000, "the pod to be not Ready", 100);
          assertEquals(container(name)?.ready, false);
          assertEquals(status(name)?.phase, "Running");
          assertEquals(sim.net.endpoints("default", "flip"), []);
          await waitUntil(() => !endpoints().includes(p.ip), 5_000, "the endpoints to lose it", 50);
          assert(
            events(name).includes("Readiness probe failed: HTTP probe failed with statuscode: 503"),
            events(name).join("\n"),
          );
          Deno.kill(p.proc!.pid, "SIGUSR1");
          await waitUntil(() => ready(name), 10_000, "the pod to be Ready again", 100);
          await waitUntil(() => endpoints().includes(p.ip), 5_000, "the endpoints to have it", 50);
          assertEquals(container(name)?.restartCount, 0);
        },
      );

      await t.step(
        "a liveness probe that times out gets the container killed and started again",
        async () => {
          await sim.waitReady("default", "app=stuck");
          const before = sim.pod("default", "stuck")!.proc!;
          // It still accepts connections (the kernel does), but never answers.
          Deno.kill(before.pid, "SIGSTOP");
          await waitUntil(() => container("stuck")?.restartCount === 1, 20_000, "a restart", 100);
          const c = container("stuck")!;
          assertEquals(c.lastState.terminated?.exitCode, 137); // SIGTERM waits while stopped: SIGKILL
          assertEquals(c.lastState.terminated?.reason, "Error");
          const ip = sim.pod("default", "stuck")!.ip;
          assert(
            events("stuck").includes(
              `Liveness probe failed: Get "http://${ip}:8082/livez": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
            ),
            events("stuck").join("\n"),
          );
          assert(
            events("stuck").includes("Container stuck failed liveness probe, will be restarted"),
          );
          await before.output;
          const after = sim.pod("default", "stuck")!.proc!;
          assert(after.pid !== before.pid);
          await sim.waitReady("default", "app=stuck", 1, 15_000);
          assert("running" in container("stuck")!.state, JSON.stringify(container("stuck")));
          // The new process answers: no further restart.
          await new Promise((r) => setTimeout(r, 3000));
          assertEquals(container("stuck")?.restartCount, 1);
        },
      );

      await t.step(
        "a tcpSocket probe comes from the node: a port on the pod's loopback fails it",
        async () => {
          await waitUntil(
            () => events("local").some((m) => m.startsWith("Readiness probe failed: ")),
            10_000,
            "a failed probe",
            100,
          );
          const ip = sim.pod("default", "local")!.ip;
          assert(
            events("local").includes(
              `Readiness probe failed: dial tcp ${ip}:8090: connect: connection refused`,
            ),
            events("local").join("\n"),
          );
          assertEquals(ready("local"), false);
          // A port-forward reaches it all the same: it dials the pod's localhost.
          const conn = await dialInPod(sim.pod("default", "local")!, 8090);
          assertEquals(await readAll(conn), "local\n");
        },
      );

      await t.step(
        "a port-forward falls back to [::1], and names both attempts when both fail",
        async () => {
          await sim.waitReady("default", "app=v6");
          const p = sim.pod("default", "v6")!;
          assertEquals(
            (await must(["sysctl", "-n", "net.ipv6.conf.lo.disable_ipv6"], { ns: p.netns })).trim(),
            "0",
          );
          await waitUntil(
            async () =>
              (await must(["ss", "-Hltn", "sport = 8091"], { ns: p.netns })).includes("[::1]"),
            5_000,
            "socat on [::1]:8091",
          );
          assertEquals(await readAll(await dialInPod(p, 8091)), "v6\n");
          const failed = await dialInPod(p, 8092).then(() => "connected", (e: Error) => e.message);
          assertEquals(
            failed,
            `failed to connect to localhost:8092 inside namespace "${p.netns}", IPv4: dial tcp4 127.0.0.1:8092: connect: connection refused IPv6 dial tcp6 [::1]:8092: connect: connection refused `,
          );
        },
      );

      await t.step(
        "a container that keeps ending is restarted at once, then after 10 s, 20 s",
        async () => {
          store.create(pod("crash", { image: "busybox:sim", command: ["sh", "-c", "exit 3"] }));
          const uid = store.get({ resource: "pods", namespace: "default", name: "crash" })!.metadata
            .uid;
          await waitUntil(
            () => container("crash")?.state.waiting?.reason === "CrashLoopBackOff",
            10_000,
            "CrashLoopBackOff",
            50,
          );
          const waiting = container("crash")!;
          const since = Date.now();
          assertEquals(waiting.restartCount, 1);
          assertEquals(waiting.lastState.terminated?.exitCode, 3);
          assertEquals(
            waiting.state.waiting?.message,
            `back-off 10s restarting failed container=crash pod=crash_default(${uid})`,
          );
          assertEquals(status("crash")?.phase, "Running");
          await waitUntil(() => container("crash")?.restartCount === 2, 15_000, "restart 2", 50);
          const waited = Date.now() - since;
          assert(waited > 9_000 && waited < 11_500, `restarted after ${waited} ms`);
          await waitUntil(
            () => /^back-off 20s /.test(container("crash")?.state.waiting?.message ?? ""),
            5_000,
            "the next back-off",
            50,
          );
          assert(
            events("crash").includes(
              `Back-off restarting failed container crash in pod crash_default(${uid})`,
            ),
          );
          // With restartPolicy Never, the pod is done, and what its process left is killed.
          assertEquals(status("once")?.phase, "Failed");
          assertEquals(container("once")?.state.terminated?.exitCode, 3);
          assertEquals(container("once")?.restartCount, 0);
          const sleeper = sim.pod("default", "once")!.proc!.lines[0]!;
          assertMatch(sleeper, /^\d+$/);
          const state = await Deno.readTextFile(`/proc/${sleeper}/stat`).then(
            (stat) => stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3),
            () => "gone",
          );
          assert(state === "gone" || state === "Z", `the leftover sleep is in state ${state}`);
        },
      );

      await t.step(
        "deleting a pod kills what its process left, and does not wait on it",
        async () => {
          store.create(
            pod("leaver", {
              image: "busybox:sim",
              command: ["sh", "-c", "sleep 600 & echo $!; exec sleep 600"],
            }),
          );
          await sim.waitReady("default", "app=leaver");
          const p = sim.pod("default", "leaver")!;
          await p.proc!.waitFor(/^\d+$/);
          const child = p.proc!.lines[0]!;
          const began = Date.now();
          store.delete({ resource: "pods", namespace: "default", name: "leaver" });
          await waitUntil(() => !sim.net.pod("default", "leaver"), 15_000, "the pod to go", 50);
          // The network goes first (out of the endpoints), then the processes.
          const state = () =>
            Deno.readTextFile(`/proc/${child}/stat`).then(
              (stat) => stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3),
              () => "gone",
            );
          await waitUntil(
            async () => ["gone", "Z"].includes(await state()),
            5_000,
            "the leftover sleep to be killed",
            50,
          );
          assert(Date.now() - began < 5_000, `removed after ${Date.now() - began} ms`);
        },
      );
    } finally {
      await env.cleanup();
    }
  },
});

async function readAll(conn: { read(p: Uint8Array): Promise<number | null>; close(): void }) {
  const buf = new Uint8Array(256);
  let text = "";
  for (let n; (n = await conn.read(buf)) !== null;) {
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  conn.close();
  return text;
}
