/**
 * The environment the simulated kubelet gives a container, checked without
 * namespaces against the kubelet's rules: `$(VAR)` expansion, `envFrom`
 * with prefixes and skipped keys, `valueFrom` of every kind, optional
 * references, the errors that keep a container from starting, and the
 * service variables.
 *
 * @module
 */

import { assertEquals, assertThrows } from "../_assert.ts";
import {
  ContainerConfigError,
  containerEnv,
  type EnvContext,
  expand,
  expandWords,
  serviceEnv,
} from "./_container_env.ts";
import type { Container } from "./_pod_spec.ts";
import { formatMap, parseQuantity, resourceFieldValue } from "./_downward.ts";

function context(extra: Partial<EnvContext> = {}): EnvContext {
  return {
    pod: {
      namespace: "shop",
      name: "web-1",
      uid: "uid-1",
      labels: { app: "web", "app.kubernetes.io/name": "web" },
      annotations: { note: "x" },
      nodeName: "node1",
      serviceAccountName: "default",
      podIPs: ["198.18.0.3"],
      hostIPs: ["198.19.200.1"],
    },
    services: [
      {
        namespace: "default",
        name: "kubernetes",
        clusterIP: "198.19.0.1",
        ports: [{ name: "https", port: 443, protocol: "TCP" }],
      },
      {
        namespace: "shop",
        name: "web-api",
        clusterIP: "198.19.0.20",
        ports: [{ name: "http", port: 80 }, { name: "dns", port: 53, protocol: "UDP" }],
      },
      { namespace: "shop", name: "headless", clusterIP: "None", ports: [{ port: 80 }] },
      { namespace: "other", name: "db", clusterIP: "198.19.0.30", ports: [{ port: 5432 }] },
    ],
    configMap: (name) =>
      name === "cfg"
        ? { data: { greeting: "hello", "index.html": "<h1>", "a=b": "no" } }
        : undefined,
    secret: (name) => name === "sec" ? { data: { password: btoa("s3cret") } } : undefined,
    containers: [],
    allocatable: { cpu: "2", memory: "8Gi", "ephemeral-storage": "100Gi" },
    ...extra,
  };
}

Deno.test("expand() replaces defined names, keeps undefined ones and unescapes $$", () => {
  const vars: Record<string, string> = { A: "1", B: "two" };
  const look = (n: string) => vars[n];
  assertEquals(expand("$(A)-$(B)", look), "1-two");
  assertEquals(expand("$(C) stays", look), "$(C) stays");
  assertEquals(expand("$$(A) is escaped", look), "$(A) is escaped");
  assertEquals(expand("$A and $", look), "$A and $");
  assertEquals(expand("open $(A", look), "open $(A");
  assertEquals(expandWords(["echo", "$(A)"], [["A", "x"]]), ["echo", "x"]);
});

Deno.test("serviceEnv() makes the Docker-link variables of services with a ClusterIP", () => {
  const env = Object.fromEntries(serviceEnv(context().services.slice(1, 3)));
  assertEquals(env, {
    WEB_API_SERVICE_HOST: "198.19.0.20",
    WEB_API_SERVICE_PORT: "80",
    WEB_API_SERVICE_PORT_HTTP: "80",
    WEB_API_SERVICE_PORT_DNS: "53",
    WEB_API_PORT: "tcp://198.19.0.20:80",
    WEB_API_PORT_80_TCP: "tcp://198.19.0.20:80",
    WEB_API_PORT_80_TCP_PROTO: "tcp",
    WEB_API_PORT_80_TCP_PORT: "80",
    WEB_API_PORT_80_TCP_ADDR: "198.19.0.20",
    WEB_API_PORT_53_UDP: "udp://198.19.0.20:53",
    WEB_API_PORT_53_UDP_PROTO: "udp",
    WEB_API_PORT_53_UDP_PORT: "53",
    WEB_API_PORT_53_UDP_ADDR: "198.19.0.20",
  });
});

Deno.test("containerEnv() resolves envFrom and env in order, as the kubelet does", () => {
  const container: Container = {
    name: "web",
    resources: { limits: { cpu: "1500m", memory: "128Mi" } },
    envFrom: [{ configMapRef: { name: "cfg" }, prefix: "CFG_" }, {
      secretRef: { name: "missing", optional: true },
    }],
    env: [
      { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "sec", key: "password" } } },
      { name: "MSG", value: "$(CFG_greeting) $(PASSWORD) $(WEB_API_SERVICE_HOST) $(LATER)" },
      { name: "LATER", value: "late" },
      { name: "IPS", valueFrom: { fieldRef: { fieldPath: "status.podIPs" } } },
      { name: "APP", valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
      { name: "NONE", valueFrom: { fieldRef: { fieldPath: "metadata.annotations['nope']" } } },
      { name: "CPU", valueFrom: { resourceFieldRef: { resource: "limits.cpu" } } },
      {
        name: "MEM",
        valueFrom: { resourceFieldRef: { resource: "limits.memory", divisor: "1Mi" } },
      },
      {
        name: "OPT",
        valueFrom: { configMapKeyRef: { name: "cfg", key: "nope", optional: true } },
      },
      { name: "CFG_greeting", value: "overridden" },
    ],
  };
  const { env, skipped } = containerEnv(container, context());
  const map = Object.fromEntries(env);
  assertEquals(map["CFG_greeting"], "overridden");
  assertEquals(map["CFG_index.html"], "<h1>");
  assertEquals(map["PASSWORD"], "s3cret");
  assertEquals(map["MSG"], "hello s3cret 198.19.0.20 $(LATER)");
  assertEquals(map["IPS"], "198.18.0.3");
  assertEquals(map["APP"], "web");
  assertEquals(map["NONE"], "");
  assertEquals(map["CPU"], "2");
  assertEquals(map["MEM"], "128");
  assertEquals("OPT" in map, false);
  assertEquals(map["KUBERNETES_SERVICE_HOST"], "198.19.0.1");
  assertEquals(map["KUBERNETES_PORT_443_TCP"], "tcp://198.19.0.1:443");
  assertEquals(map["DB_SERVICE_HOST"], undefined); // another namespace
  assertEquals(skipped, [{ kind: "configMap", namespace: "shop", name: "cfg", keys: ["CFG_a=b"] }]);
  // Service links off: only the kubernetes service's.
  const off = Object.fromEntries(
    containerEnv({ name: "c" }, context({ enableServiceLinks: false })).env,
  );
  assertEquals(Object.keys(off).some((k) => k.startsWith("WEB_API_")), false);
  assertEquals(off["KUBERNETES_SERVICE_PORT"], "443");
});

Deno.test("containerEnv() refuses what is missing and not optional, in the kubelet's words", () => {
  const fails = (container: Container, message: string) => {
    const error = assertThrows(() => containerEnv(container, context()), ContainerConfigError);
    assertEquals(error.message, message);
    assertEquals((error as ContainerConfigError).reason, "CreateContainerConfigError");
  };
  fails(
    { name: "c", envFrom: [{ configMapRef: { name: "later" } }] },
    'configmap "later" not found',
  );
  fails({ name: "c", envFrom: [{ secretRef: { name: "later" } }] }, 'secret "later" not found');
  fails(
    { name: "c", env: [{ name: "X", valueFrom: { configMapKeyRef: { name: "cfg", key: "k" } } }] },
    "couldn't find key k in ConfigMap shop/cfg",
  );
  fails(
    { name: "c", env: [{ name: "X", valueFrom: { secretKeyRef: { name: "sec", key: "k" } } }] },
    "couldn't find key k in Secret shop/sec",
  );
  fails(
    { name: "c", env: [{ name: "X", valueFrom: { secretKeyRef: { name: "gone", key: "k" } } }] },
    'secret "gone" not found',
  );
});

Deno.test("parseQuantity() and resourceFieldValue() follow resource.Quantity and the divisor", () => {
  assertEquals(parseQuantity("500m"), 0.5);
  assertEquals(parseQuantity("128Mi"), 128 * 2 ** 20);
  assertEquals(parseQuantity("1G"), 1e9);
  assertEquals(parseQuantity("1e3"), 1000);
  const allocatable = { cpu: "2", memory: "1Gi", "ephemeral-storage": "10Gi" };
  const c: Container = { name: "c", resources: { requests: { cpu: "250m" } } };
  assertEquals(
    resourceFieldValue({ resource: "requests.cpu", divisor: "1m" }, c, allocatable),
    "250",
  );
  assertEquals(resourceFieldValue({ resource: "requests.cpu" }, c, allocatable), "1");
  // No limit: the node's allocatable.
  assertEquals(
    resourceFieldValue({ resource: "limits.memory", divisor: "1Mi" }, c, allocatable),
    "1024",
  );
  assertEquals(resourceFieldValue({ resource: "requests.memory" }, c, allocatable), "0");
});

Deno.test("formatMap() writes labels as the downward API does", () => {
  assertEquals(formatMap({ b: "2", a: 'say "hi"' }), 'a="say \\"hi\\""\nb="2"');
});
