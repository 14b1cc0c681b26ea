/**
 * Finding what to intercept and the ports its Services reach: the pure
 * resolution as tables, and findWorkload()/servicePortsFor() against the fake
 * API server.
 *
 * ```
 *   workloadApi(admin token) ──HTTPS──► startApiServer() on 127.0.0.1:random
 * ```
 */

import type { V1Service } from "@kubernetes/client-node";
import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/_assert.ts";
import { ADMIN_TOKEN, withApi } from "../../tests/sim/apiserver/_testing.ts";
import type { KubeObject } from "../../tests/sim/apiserver/mod.ts";
import { KubeApiError } from "./api.ts";
import { KubeError } from "./errors.ts";
import {
  findWorkload,
  type PodTemplate,
  portTargets,
  requestFailure,
  resolveServicePort,
  selectorText,
  servicePortsFor,
  workloadApi,
} from "./workloads.ts";

const options = { sanitizeOps: false, sanitizeResources: false };

const TEMPLATE: PodTemplate = {
  metadata: { labels: { app: "web", tier: "front" } },
  spec: {
    containers: [
      {
        name: "web",
        image: "nginx",
        ports: [
          { name: "http", containerPort: 8080 },
          { name: "admin", containerPort: 8081 },
          { name: "dns", containerPort: 53, protocol: "UDP" },
        ],
      },
      { name: "proxy", image: "envoy", ports: [{ name: "proxy", containerPort: 15001 }] },
    ],
  },
};

function svc(name: string, selector: Record<string, string>, ports: object[]): V1Service {
  return { metadata: { name }, spec: { selector, ports } } as V1Service;
}

const SERVICES: V1Service[] = [
  svc("web", { app: "web" }, [
    { name: "http", port: 80, targetPort: "http" },
    { name: "admin", port: 81, targetPort: 8081 },
  ]),
  svc("web-dns", { app: "web" }, [{ name: "dns", port: 53, targetPort: "dns", protocol: "UDP" }]),
  svc("proxy", { app: "web", tier: "front" }, [{ port: 15001 }]),
  svc("raw", { app: "web" }, [{ name: "raw", port: 7000, targetPort: 7000 }]),
  svc("other", { app: "db" }, [{ port: 5432 }]),
  svc("manual", {}, [{ port: 1 }]),
];

Deno.test("portTargets() resolves named and numeric targetPorts as the endpoints controller does", () => {
  const targets = portTargets(TEMPLATE, SERVICES);
  assertEquals(targets, [
    {
      service: "web",
      portName: "http",
      port: 80,
      protocol: "TCP",
      targetPort: "http",
      takeover: "name",
      container: "web",
      containerPort: 8080,
      containerPortName: "http",
    },
    {
      service: "web",
      portName: "admin",
      port: 81,
      protocol: "TCP",
      targetPort: 8081,
      takeover: "redirect",
      container: "web",
      containerPort: 8081,
      containerPortName: "admin",
    },
    {
      service: "web-dns",
      portName: "dns",
      port: 53,
      protocol: "UDP",
      targetPort: "dns",
      takeover: "name",
      container: "web",
      containerPort: 53,
      containerPortName: "dns",
    },
    {
      service: "proxy",
      port: 15001,
      protocol: "TCP",
      targetPort: 15001,
      takeover: "redirect",
      container: "proxy",
      containerPort: 15001,
      containerPortName: "proxy",
    },
    // Declared by no container: the pod's port, container unknown.
    {
      service: "raw",
      portName: "raw",
      port: 7000,
      protocol: "TCP",
      targetPort: 7000,
      takeover: "redirect",
      containerPort: 7000,
    },
  ]);
  // A named port whose protocol differs is not the one.
  const udpName = portTargets(TEMPLATE, [
    svc("x", { app: "web" }, [{ port: 1, targetPort: "http", protocol: "UDP" }]),
  ]);
  assertEquals(udpName[0]?.container, undefined);
  assertEquals(udpName[0]?.containerPort, undefined);
});

/** One row: what the user gave, and the chosen container port or the error's first words. */
const RESOLVE_CASES: {
  name: string;
  wanted?: string;
  container?: string;
  services?: V1Service[];
  port?: number;
  error?: RegExp;
  hint?: RegExp;
}[] = [
  { name: "a service port name", wanted: "http", port: 8080 },
  { name: "a service port number", wanted: "81", port: 8081 },
  { name: "a container port name when no service port has it", wanted: "proxy", port: 15001 },
  { name: "a container port number when no service port has it", wanted: "8080", port: 8080 },
  {
    name: "nothing, with several ports",
    error: /^the services of deployment "web" in namespace "default" reach 4 container ports$/,
    hint:
      /--port LOCAL:SERVICE_PORT\. Choose one of: service "web" port "http" \(80 → container "web" port 8080\);/,
  },
  {
    name: "nothing, with one TCP port",
    services: [SERVICES[0]!].map((s) => ({
      ...s,
      spec: { ...s.spec, ports: [s.spec!.ports![0]!] },
    })),
    port: 8080,
  },
  {
    name: "an unknown name",
    wanted: "https",
    error: /^no service port "https" of deployment "web"/,
    hint:
      /Choose one of: .*service "raw" port "raw" \(7000 → pod port 7000, declared by no container\)/,
  },
  {
    name: "a UDP-only port",
    wanted: "dns",
    error:
      /^service port "dns" of deployment "web" in namespace "default" is UDP only: vif intercepts TCP$/,
    hint: /^Choose one of: service "web" port "http"/,
  },
  {
    name: "a numeric port no container declares, several containers",
    wanted: "raw",
    error: /^cannot tell which container serves service "raw" port "raw" \(7000 → pod port 7000/,
    hint: /name the container \(one of: "web", "proxy"\)/,
  },
  {
    name: "a numeric port no container declares, container given",
    wanted: "raw",
    container: "web",
    port: 7000,
  },
  {
    name: "a named targetPort no container has",
    wanted: "gone",
    services: [svc("gone", { app: "web" }, [{ name: "gone", port: 1, targetPort: "nope" }])],
    error: /reaches no container/,
    hint: /No container has a port named "nope"/,
  },
  {
    name: "no service at all",
    services: [],
    error: /^no service selects the pods of deployment "web"/,
    hint: /kubectl expose deployment web -n default --port PORT/,
  },
];

for (const c of RESOLVE_CASES) {
  Deno.test(`resolveServicePort() with ${c.name}`, () => {
    const targets = portTargets(TEMPLATE, c.services ?? SERVICES);
    const resolve = () =>
      resolveServicePort(targets, c.wanted, {
        workload: { kind: "Deployment", name: "web", namespace: "default" },
        containers: ["web", "proxy"],
        ...(c.container ? { container: c.container } : {}),
      });
    if (c.error) {
      const e = assertThrows(resolve, KubeError);
      assert(c.error.test(e.message), e.message);
      assert(c.hint!.test(e.hint), e.hint);
    } else {
      assertEquals(resolve().containerPort, c.port);
    }
  });
}

Deno.test("resolveServicePort() accepts two Services that reach the same container port", () => {
  const targets = portTargets(TEMPLATE, [
    svc("a", { app: "web" }, [{ port: 80, targetPort: "http" }]),
    svc("b", { app: "web" }, [{ port: 8080, targetPort: 8080 }]),
  ]);
  const t = resolveServicePort(targets, undefined);
  assertEquals([t.container, t.containerPort], ["web", 8080]);
});

Deno.test("selectorText() writes matchLabels and every expression operator", () => {
  assertEquals(
    selectorText({
      matchLabels: { app: "web" },
      matchExpressions: [
        { key: "a", operator: "In", values: ["x", "y"] },
        { key: "b", operator: "NotIn", values: ["z"] },
        { key: "c", operator: "Exists" },
        { key: "d", operator: "DoesNotExist" },
      ],
    }),
    "app=web,a in (x,y),b notin (z),c,!d",
  );
  assertEquals(selectorText(undefined), "");
});

Deno.test("requestFailure() says what was refused and what to do, per status", () => {
  const req = { verb: "patch", resource: "deployments", name: "web", namespace: "default" };
  const server = "https://198.19.200.1:6443";
  const forbidden = requestFailure(new KubeApiError("HTTP 403: nope", 403), req, server);
  assertEquals(forbidden.message, 'you may not patch deployments "web" in namespace "default"');
  assertEquals(
    forbidden.hint,
    "Ask a cluster admin for vif's intercept permissions in that namespace; " +
      'check with "kubectl auth can-i patch deployments -n default".',
  );
  const all = requestFailure(new KubeApiError("HTTP 403", 403), {
    verb: "list",
    resource: "deployments",
  }, server);
  assertEquals(all.message, "you may not list deployments in any namespace");
  assert(all.hint.endsWith('"kubectl auth can-i list deployments --all-namespaces".'));
  const unreachable = requestFailure(
    new KubeApiError("connect ECONNREFUSED", undefined),
    req,
    server,
  );
  assertEquals(
    unreachable.message,
    "cannot reach the API server at https://198.19.200.1:6443: connect ECONNREFUSED",
  );
  const invalid = requestFailure(new KubeApiError("HTTP 422: bad template", 422), req, server);
  assertEquals(
    invalid.message,
    'the API server rejected the patch of deployments "web" in namespace "default": bad template',
  );
  assertEquals(requestFailure(new KubeApiError("HTTP 401", 401), req, server).status, 401);
  const terminating = requestFailure(
    new KubeApiError("HTTP 403: namespace default is being terminated", 403),
    req,
    server,
  );
  assertEquals(terminating.message, 'namespace "default" is being deleted');
});

function obj(o: object): KubeObject {
  return o as KubeObject;
}

Deno.test(
  "findWorkload() looks for a Deployment, a StatefulSet, then a ReplicaSet",
  options,
  async () => {
    await withApi(async (t) => {
      const api = workloadApi({
        server: t.api.url,
        caPem: t.tls.caPem,
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const spec = (app: string) => ({
        replicas: 1,
        selector: { matchLabels: { app } },
        template: {
          metadata: { labels: { app } },
          spec: { containers: [{ name: "c", image: "x:1" }] },
        },
      });
      const put = (kind: string, name: string, extra: object = {}) =>
        t.api.store.create(obj({
          apiVersion: "apps/v1",
          kind,
          metadata: { name, namespace: "default", ...extra },
          spec: spec(name),
        }));
      put("StatefulSet", "both");
      put("Deployment", "both");
      put("StatefulSet", "db");
      put("ReplicaSet", "solo");
      const owner = put("Deployment", "front");
      put("ReplicaSet", "front-5d8f", {
        ownerReferences: [{
          apiVersion: "apps/v1",
          kind: "Deployment",
          name: "front",
          uid: owner.metadata.uid,
          controller: true,
        }],
      });
      assertEquals((await findWorkload(api, "default", "both")).kind, "Deployment");
      assertEquals((await findWorkload(api, "default", "sts/both")).kind, "StatefulSet");
      assertEquals((await findWorkload(api, "default", "db")).kind, "StatefulSet");
      const solo = await findWorkload(api, "default", "solo");
      assertEquals([solo.kind, solo.metadata.name, solo.metadata.namespace], [
        "ReplicaSet",
        "solo",
        "default",
      ]);
      const owned = await assertRejects(
        () => findWorkload(api, "default", "front-5d8f"),
        KubeError,
      );
      assertEquals(
        owned.message,
        'replicaset "front-5d8f" in namespace "default" belongs to deployment "front"',
      );
      assertEquals((owned as KubeError).hint, 'Intercept the Deployment: "vif intercept front".');
      const missing = await assertRejects(() => findWorkload(api, "default", "nope"), KubeError);
      assertEquals(
        missing.message,
        'no deployment, statefulset or replicaset "nope" in namespace "default"',
      );
      assertEquals((missing as KubeError).hint, 'See what there is with "vif list -n default".');
      const onlyDeploy = await assertRejects(
        () => findWorkload(api, "default", "deploy/db"),
        KubeError,
      );
      assertEquals(onlyDeploy.message, 'no deployment "db" in namespace "default"');
      const badKind = await assertRejects(() => findWorkload(api, "default", "pod/x"), KubeError);
      assert((badKind as KubeError).hint.includes("deploy/NAME"));
      await assertRejects(
        () => findWorkload(api, "default", "Bad_Name"),
        KubeError,
        "is not a Kubernetes object name",
      );
    });
  },
);

Deno.test(
  "servicePortsFor() lists the namespace's Services and the ports of those that select the pods",
  options,
  async () => {
    await withApi(async (t) => {
      const api = workloadApi({
        server: t.api.url,
        caPem: t.tls.caPem,
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const d = t.api.store.create(obj({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "web", namespace: "default" },
        spec: { replicas: 1, selector: { matchLabels: { app: "web" } }, template: TEMPLATE },
      }));
      for (const s of SERVICES.filter((s) => s.metadata!.name !== "manual")) {
        t.api.store.create(
          obj({
            apiVersion: "v1",
            kind: "Service",
            metadata: { ...s.metadata, namespace: "default" },
            spec: s.spec,
          }),
        );
      }
      const found = await servicePortsFor(api, "default", d as never);
      // Every Service of the namespace (the kubernetes one too), and the ports of the five selecting ones.
      assert(found.services.some((s) => s.metadata?.name === "kubernetes"));
      assertEquals(found.targets.map((x) => `${x.service}:${x.port}`), [
        "proxy:15001",
        "raw:7000",
        "web:80",
        "web:81",
        "web-dns:53",
      ]);
    });
  },
);
