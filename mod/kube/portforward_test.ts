/**
 * The port-forward proxy and manager discovery against the fake API server.
 *
 * ```
 *  test ──unix──► proxy /tmp/vif-pf-…/pf.sock ──WebSocket/TLS──► fake API server ──TCP──► echo "pod" (127.0.0.1)
 * ```
 */

import { KubeConfig } from "@kubernetes/client-node";
import { type ApiAccess, kubeApi } from "./api.ts";
import { resolveAccess } from "./client.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import {
  ADMIN_TOKEN,
  type EchoServer,
  LIMITED_TOKEN,
  runningPod,
  startEchoServer,
  withApi,
  writeKubeconfig,
} from "../../tests/sim/apiserver/_testing.ts";
import { PortForwardError, type PortForwardProxy, startPortForwardProxy } from "./portforward.ts";
import { discoverManager, DiscoveryError } from "./discovery.ts";
import { CA_CONFIGMAP_NAME, MANAGER_NAME } from "./manifests.ts";

const options = { sanitizeOps: false, sanitizeResources: false };

/** The access a kubeconfig file gives, resolved as the CLI does. */
async function accessOf(kubeconfig: string): Promise<ApiAccess> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return await resolveAccess(kc);
}

/** Connects to a proxy's `unix:/path` address. */
function dial(address: string): Promise<Deno.UnixConn> {
  assertMatch(address, /^unix:\//);
  return Deno.connect({ transport: "unix", path: address.slice("unix:".length) });
}

async function roundTrip(address: string, bytes: Uint8Array): Promise<Uint8Array> {
  const conn = await dial(address);
  try {
    await conn.write(bytes);
    const got = new Uint8Array(bytes.length);
    let off = 0;
    while (off < got.length) {
      const n = await conn.read(got.subarray(off));
      if (n === null) break;
      off += n;
    }
    return got.subarray(0, off);
  } finally {
    conn.close();
  }
}

/**
 * Runs `fn` with a proxy port-forwarding to an echo server standing for the
 * pod `vif-system/traffic-manager-1`; closes both after.
 */
async function withEchoProxy(
  fn: (proxy: PortForwardProxy, echo: EchoServer) => Promise<void>,
): Promise<void> {
  await withApi(async (t) => {
    const echo = startEchoServer();
    try {
      t.api.store.create({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: "vif-system" },
      });
      t.api.store.create(runningPod("vif-system", "traffic-manager-1"));
      const access = await accessOf(await writeKubeconfig(t, ADMIN_TOKEN));
      const proxy = await startPortForwardProxy(access, {
        namespace: "vif-system",
        pod: "traffic-manager-1",
        port: echo.port,
      });
      try {
        await fn(proxy, echo);
      } finally {
        await proxy.close();
      }
    } finally {
      echo.close();
    }
  });
}

Deno.test(
  "startPortForwardProxy() carries connections to a pod through the API server",
  options,
  () =>
    withEchoProxy(async (proxy) => {
      const payload = crypto.getRandomValues(new Uint8Array(60_000));
      const [a, b] = await Promise.all([
        roundTrip(proxy.address, payload),
        roundTrip(proxy.address, new TextEncoder().encode("second")),
      ]);
      assertEquals(a, payload);
      assertEquals(new TextDecoder().decode(b), "second");
      assertEquals(proxy.connections, 2);
    }),
);

Deno.test("startPortForwardProxy() explains a forbidden port-forward", options, async () => {
  await withApi(async (t) => {
    t.api.store.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "vif-system" } });
    t.api.store.create(runningPod("vif-system", "traffic-manager-1"));
    const access = await accessOf(await writeKubeconfig(t, LIMITED_TOKEN));
    const e = await assertRejects(
      () =>
        startPortForwardProxy(access, {
          namespace: "vif-system",
          pod: "traffic-manager-1",
          port: 8081,
        }),
      PortForwardError,
    );
    assertMatch(e.message, /not allowed to port-forward to pods in "vif-system"/);
  });
});

Deno.test(
  "startPortForwardProxy() fails in bounded time when the API server is unreachable",
  options,
  async () => {
    const access: ApiAccess = {
      server: "https://127.0.0.1:1",
      insecure: true,
      headers: { Authorization: "Bearer x" },
    };
    const t0 = performance.now();
    const e = await assertRejects(
      () =>
        startPortForwardProxy(access, { namespace: "n", pod: "p", port: 1 }, { timeoutMs: 3000 }),
      PortForwardError,
    );
    assert(performance.now() - t0 < 5000);
    assertMatch(e.message, /127\.0\.0\.1:1/);
  },
);

Deno.test(
  "discoverManager() finds the ready pod, its port and the CA, or says to install",
  options,
  async () => {
    await withApi(async (t) => {
      const api = kubeApi(await accessOf(await writeKubeconfig(t, ADMIN_TOKEN)));
      const missing = await assertRejects(() => discoverManager(api, "vif-system"), DiscoveryError);
      assertMatch(missing.message, /not installed in namespace "vif-system"/);
      assertMatch((missing as DiscoveryError).hint, /vif install/);

      const s = t.api.store;
      s.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "vif-system" } });
      s.create({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: MANAGER_NAME, namespace: "vif-system" },
        spec: {
          selector: { app: "traffic-manager" },
          ports: [{ name: "grpc", port: 8081, targetPort: "grpc" }],
        },
      });
      const pod = runningPod("vif-system", "traffic-manager-abc");
      pod.metadata.labels = { app: "traffic-manager" };
      (pod.spec as { containers: unknown[] }).containers = [{
        name: "manager",
        image: "vif",
        ports: [{ name: "grpc", containerPort: 9443 }],
      }];
      s.create(pod);
      s.create({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: CA_CONFIGMAP_NAME, namespace: "vif-system" },
        data: { "ca.crt": t.tls.caPem },
      });
      const found = await discoverManager(api, "vif-system");
      assertEquals([found.pod, found.podIP, found.port], [
        "traffic-manager-abc",
        "127.0.0.1",
        9443,
      ]);
      assertEquals(found.caPem, t.tls.caPem);
    });
  },
);

Deno.test(
  "startPortForwardProxy() reports a connection cut from the pod's side, not one closed here",
  options,
  () =>
    withEchoProxy(async (proxy, echo) => {
      let dropped: PortForwardError | undefined;
      proxy.dropped.then((e) => dropped = e);
      // A connection this side closes is no drop.
      await roundTrip(proxy.address, new TextEncoder().encode("bye"));
      await new Promise((r) => setTimeout(r, 300));
      assertEquals(dropped, undefined);
      // One the pod's side cuts is.
      const conn = await dial(proxy.address);
      await conn.write(new TextEncoder().encode("hello"));
      await conn.read(new Uint8Array(5));
      echo.close();
      const error = await Promise.race([
        proxy.dropped,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000)),
      ]);
      conn.close();
      assert(error instanceof PortForwardError, "no drop reported");
      assertMatch(error.message, /vif-system\/traffic-manager-1/);
      assertMatch(error.hint, /vif connect/);
    }),
);

Deno.test(
  "startPortForwardProxy() listens on a socket only its user may connect to",
  { ...options, ignore: Deno.uid() !== 0 },
  () =>
    withEchoProxy(async (proxy) => {
      const info = await Deno.stat(proxy.path);
      assert(info.isSocket);
      assertEquals([info.mode! & 0o777, info.uid], [0o600, Deno.uid()]);
      assertEquals((await Deno.stat(proxy.path.replace(/\/[^/]*$/, ""))).mode! & 0o777, 0o700);
      // Another local user (nobody) is refused by the kernel.
      const other = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "--",
          "socat",
          "-u",
          `UNIX-CONNECT:${proxy.path}`,
          "-",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(other.code, 1);
      assertMatch(new TextDecoder().decode(other.stderr), /Permission denied/);
      assertEquals(proxy.connections, 0);
      // Its owner is carried.
      assertEquals(
        new TextDecoder().decode(await roundTrip(proxy.address, new TextEncoder().encode("mine"))),
        "mine",
      );
      await proxy.close();
      assertEquals(await Deno.stat(proxy.path).catch(() => null), null);
    }),
);

Deno.test(
  "startPortForwardProxy() replaces a stale socket at the path it is given",
  options,
  async () => {
    await withApi(async (t) => {
      const echo = startEchoServer();
      const dir = await Deno.makeTempDir({ prefix: "vif-pf-test-" });
      try {
        t.api.store.create({
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name: "vif-system" },
        });
        t.api.store.create(runningPod("vif-system", "traffic-manager-1"));
        const access = await accessOf(await writeKubeconfig(t, ADMIN_TOKEN));
        const path = `${dir}/portforward.sock`;
        Deno.listen({ transport: "unix", path }).close(); // what a killed daemon leaves
        const target = { namespace: "vif-system", pod: "traffic-manager-1", port: echo.port };
        const proxy = await startPortForwardProxy(access, target, { socketPath: path });
        try {
          assertEquals(proxy.address, `unix:${path}`);
          assertEquals(
            new TextDecoder().decode(
              await roundTrip(proxy.address, new TextEncoder().encode("hi")),
            ),
            "hi",
          );
        } finally {
          await proxy.close();
        }
        // Something that is not a socket is left alone.
        await Deno.writeTextFile(path, "not a socket");
        const refused = await assertRejects(
          () => startPortForwardProxy(access, target, { socketPath: path }),
          PortForwardError,
        );
        assertMatch(refused.message, /something else is there/);
        assertEquals(await Deno.readTextFile(path), "not a socket");
      } finally {
        echo.close();
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
);
