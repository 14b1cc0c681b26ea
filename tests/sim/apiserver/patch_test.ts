/** Unit tests of the three patch types, as tables. */

import { assertEquals, assertThrows } from "../../_assert.ts";
import { jsonPatch, mergeKeyFor, mergePatch, strategicMergePatch } from "./patch.ts";

Deno.test("mergePatch() follows the examples of RFC 7386 appendix A", () => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) {
    assertEquals(mergePatch(target, patch), want, JSON.stringify([target, patch]));
  }
});

Deno.test("mergeKeyFor() knows the merge keys of built-in lists", () => {
  const cases: [string[], string | undefined][] = [
    [["spec", "template", "spec", "containers"], "name"],
    [["spec", "containers"], "name"],
    [["spec", "template", "spec", "containers", "ports"], "containerPort"],
    [["spec", "ports"], "port"],
    [["spec", "template", "spec", "containers", "env"], "name"],
    [["spec", "template", "spec", "containers", "volumeMounts"], "mountPath"],
    [["metadata", "finalizers"], ""],
    [["status", "conditions"], "type"],
    [["subsets", "ports"], undefined],
    [["spec", "template", "spec", "containers", "args"], undefined],
  ];
  for (const [path, want] of cases) assertEquals(mergeKeyFor(path), want, path.join("."));
});

const POD = {
  metadata: { labels: { a: "1" }, finalizers: ["x"] },
  spec: {
    containers: [
      { name: "a", image: "a:1", ports: [{ containerPort: 80, protocol: "TCP" }] },
      { name: "b", image: "b:1", args: ["--x"] },
    ],
  },
};

Deno.test("strategicMergePatch() merges keyed lists and honours the directives kubectl sends", () => {
  const cases: [string, unknown, unknown][] = [
    [
      "merge a container by name, keep the others",
      { spec: { containers: [{ name: "b", image: "b:2" }] } },
      {
        ...POD,
        spec: { containers: [POD.spec.containers[0], { name: "b", image: "b:2", args: ["--x"] }] },
      },
    ],
    [
      "append a new container",
      { spec: { containers: [{ name: "c", image: "c:1" }] } },
      { ...POD, spec: { containers: [...POD.spec.containers, { name: "c", image: "c:1" }] } },
    ],
    [
      "delete a container with $patch: delete",
      { spec: { containers: [{ name: "a", $patch: "delete" }] } },
      { ...POD, spec: { containers: [POD.spec.containers[1]] } },
    ],
    [
      "reorder with $setElementOrder",
      { spec: { "$setElementOrder/containers": [{ name: "b" }, { name: "a" }] } },
      { ...POD, spec: { containers: [POD.spec.containers[1], POD.spec.containers[0]] } },
    ],
    [
      "merge container ports by containerPort",
      { spec: { containers: [{ name: "a", ports: [{ containerPort: 443 }] }] } },
      {
        ...POD,
        spec: {
          containers: [
            {
              ...POD.spec.containers[0],
              ports: [{ containerPort: 80, protocol: "TCP" }, { containerPort: 443 }],
            },
            POD.spec.containers[1],
          ],
        },
      },
    ],
    [
      "replace an atomic list (args)",
      { spec: { containers: [{ name: "b", args: ["--y"] }] } },
      {
        ...POD,
        spec: {
          containers: [POD.spec.containers[0], { ...POD.spec.containers[1], args: ["--y"] }],
        },
      },
    ],
    [
      "union of finalizers, and $deleteFromPrimitiveList",
      { metadata: { finalizers: ["y"], "$deleteFromPrimitiveList/finalizers": ["x"] } },
      { ...POD, metadata: { labels: { a: "1" }, finalizers: ["y"] } },
    ],
    [
      "null deletes a map key",
      { metadata: { labels: { a: null, b: "2" } } },
      { ...POD, metadata: { labels: { b: "2" }, finalizers: ["x"] } },
    ],
    [
      "$patch: replace on a map",
      { metadata: { labels: { $patch: "replace", z: "9" } } },
      { ...POD, metadata: { labels: { z: "9" }, finalizers: ["x"] } },
    ],
    [
      "$retainKeys drops the keys not listed",
      { spec: { $retainKeys: ["containers"], containers: [] } },
      { ...POD, spec: { containers: POD.spec.containers } },
    ],
  ];
  for (const [what, patch, want] of cases) {
    assertEquals(strategicMergePatch(POD, patch), want, what);
  }
  assertEquals(POD.spec.containers.length, 2, "the target is not changed");
  const svc = { spec: { ports: [{ name: "http", port: 80 }, { name: "https", port: 443 }] } };
  assertEquals(
    strategicMergePatch(svc, { spec: { ports: [{ port: 443, targetPort: 8443 }] } }),
    {
      spec: { ports: [{ name: "http", port: 80 }, { name: "https", port: 443, targetPort: 8443 }] },
    },
  );
});

Deno.test("jsonPatch() applies RFC 6902 operations and refuses bad ones", () => {
  const doc = { a: { "b/c": 1, "d~e": 2 }, list: [1, 2, 3] };
  const cases: [unknown[], unknown][] = [
    [[{ op: "add", path: "/a/x", value: 5 }], { a: { "b/c": 1, "d~e": 2, x: 5 }, list: [1, 2, 3] }],
    [[{ op: "remove", path: "/a/b~1c" }], { a: { "d~e": 2 }, list: [1, 2, 3] }],
    [[{ op: "replace", path: "/a/d~0e", value: 9 }], {
      a: { "b/c": 1, "d~e": 9 },
      list: [1, 2, 3],
    }],
    [[{ op: "add", path: "/list/-", value: 4 }], { a: doc.a, list: [1, 2, 3, 4] }],
    [[{ op: "add", path: "/list/0", value: 0 }], { a: doc.a, list: [0, 1, 2, 3] }],
    [[{ op: "move", from: "/list", path: "/moved" }], { a: doc.a, moved: [1, 2, 3] }],
    [[{ op: "copy", from: "/list/1", path: "/two" }], { a: doc.a, list: [1, 2, 3], two: 2 }],
    [[{ op: "test", path: "/list/2", value: 3 }], doc],
  ];
  for (const [ops, want] of cases) assertEquals(jsonPatch(doc, ops), want, JSON.stringify(ops));
  assertThrows(
    () => jsonPatch(doc, [{ op: "test", path: "/list/2", value: 4 }]),
    RangeError,
    "Test failed",
  );
  assertThrows(
    () => jsonPatch(doc, [{ op: "remove", path: "/nope" }]),
    RangeError,
    "does not exist",
  );
  assertThrows(() => jsonPatch(doc, [{ op: "jump", path: "/a" }]), SyntaxError);
  assertThrows(() => jsonPatch(doc, { op: "add" }), SyntaxError);
});

const TEMPLATE = {
  spec: {
    template: {
      spec: {
        containers: [{
          name: "web",
          image: "nginx:1",
          ports: [{ name: "http", containerPort: 80, protocol: "TCP" }],
          env: [{ name: "A", value: "1" }, { name: "B", value: "2" }],
          volumeMounts: [{ name: "cfg", mountPath: "/etc/web" }],
        }],
        volumes: [{ name: "cfg", configMap: { name: "web" } }],
      },
    },
  },
};

Deno.test("strategicMergePatch() adds a sidecar to a Deployment's template as the real server merges it", () => {
  const patched = strategicMergePatch(TEMPLATE, {
    spec: {
      template: {
        spec: {
          containers: [
            {
              name: "web",
              // The port renamed (merged by containerPort), one variable changed (by name).
              ports: [{ containerPort: 80, name: "vif-web-http" }],
              env: [{ name: "B", value: "two" }],
            },
            {
              name: "traffic-agent",
              image: "ghcr.io/vif-dev/vif:1",
              ports: [{ name: "http", containerPort: 9900 }],
              volumeMounts: [{ name: "cfg", mountPath: "/vif/app/etc/web" }],
            },
          ],
          initContainers: [{ name: "vif-init", image: "ghcr.io/vif-dev/vif:1" }],
          volumes: [{ name: "vif-token", projected: { sources: [] } }],
        },
      },
    },
  }) as typeof TEMPLATE & {
    spec: { template: { spec: { initContainers: unknown[] } } };
  };
  const spec = patched.spec.template.spec;
  assertEquals(spec.containers.map((c) => c.name), ["web", "traffic-agent"]);
  assertEquals(spec.containers[0]!.ports, [{
    name: "vif-web-http",
    containerPort: 80,
    protocol: "TCP",
  }]);
  assertEquals(spec.containers[0]!.env, [{ name: "A", value: "1" }, { name: "B", value: "two" }]);
  assertEquals(spec.containers[0]!.volumeMounts, [{ name: "cfg", mountPath: "/etc/web" }]);
  assertEquals(spec.volumes.map((v) => v.name), ["cfg", "vif-token"]);
  assertEquals(spec.initContainers, [{ name: "vif-init", image: "ghcr.io/vif-dev/vif:1" }]);
  // Taking it out again: `$patch: delete` by name, and the port back by containerPort.
  const restored = strategicMergePatch(patched, {
    spec: {
      template: {
        spec: {
          containers: [
            { name: "traffic-agent", $patch: "delete" },
            {
              name: "web",
              ports: [{ containerPort: 80, name: "http" }],
              env: [{ name: "B", value: "2" }],
            },
          ],
          initContainers: null,
          volumes: [{ name: "vif-token", $patch: "delete" }],
        },
      },
    },
  });
  assertEquals(restored, TEMPLATE);
});

Deno.test("jsonPatch() and mergePatch() add a sidecar by index and replace lists whole", () => {
  const added = jsonPatch(TEMPLATE, [
    {
      op: "add",
      path: "/spec/template/spec/containers/-",
      value: { name: "agent", image: "vif:1" },
    },
    {
      op: "add",
      path: "/spec/template/spec/initContainers",
      value: [{ name: "init", image: "vif:1" }],
    },
    { op: "replace", path: "/spec/template/spec/containers/0/ports/0/name", value: "vif-web-http" },
  ]) as typeof TEMPLATE;
  assertEquals(added.spec.template.spec.containers.map((c) => c.name), ["web", "agent"]);
  assertEquals(added.spec.template.spec.containers[0]!.ports[0]!.name, "vif-web-http");
  const merged = mergePatch(TEMPLATE, {
    spec: { template: { spec: { containers: [{ name: "only", image: "x" }] } } },
  }) as typeof TEMPLATE;
  assertEquals(merged.spec.template.spec.containers, [{ name: "only", image: "x" }] as never);
  assertEquals(merged.spec.template.spec.volumes, TEMPLATE.spec.template.spec.volumes);
});
