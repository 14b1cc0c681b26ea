import { assert, assertEquals } from "../_assert.ts";
import type { AuthorizationAttributes, KubeObject } from "./apiserver/mod.ts";
import { Store } from "./apiserver/mod.ts";
import { rbacAllows, ruleAllows } from "./rbac.ts";
import { managerManifests } from "../../mod/kube/manifests.ts";

const SA = "system:serviceaccount:vif-system:traffic-manager";

function ask(
  verb: string,
  resource: string,
  extra: Partial<AuthorizationAttributes> = {},
): AuthorizationAttributes {
  return {
    user: SA,
    groups: ["system:serviceaccounts", "system:authenticated"],
    verb,
    group: "",
    resource,
    subresource: "",
    namespace: "",
    name: "",
    ...extra,
  };
}

function storeWith(objects: KubeObject[]): Store {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  for (const o of objects) {
    if (o.kind === "Namespace" && store.get({ resource: "namespaces", name: o.metadata.name! })) {
      continue;
    }
    store.create(structuredClone(o));
  }
  return store;
}

Deno.test("ruleAllows() matches verbs, groups, subresources and names as RBAC does", () => {
  const rule = { verbs: ["get", "list"], apiGroups: [""], resources: ["pods"] };
  assert(ruleAllows(rule, ask("list", "pods")));
  assert(!ruleAllows(rule, ask("delete", "pods")));
  assert(!ruleAllows(rule, ask("list", "pods", { group: "apps" })));
  // "pods" does not cover a subresource; "pods/portforward" must be named.
  assert(!ruleAllows(rule, ask("get", "pods", { subresource: "portforward" })));
  assert(
    ruleAllows(
      { verbs: ["create"], apiGroups: [""], resources: ["pods/portforward"] },
      ask("create", "pods", { subresource: "portforward" }),
    ),
  );
  assert(ruleAllows({ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }, ask("patch", "nodes")));
  const named = { verbs: ["get"], apiGroups: [""], resources: ["secrets"], resourceNames: ["a"] };
  assert(ruleAllows(named, ask("get", "secrets", { name: "a" })));
  assert(!ruleAllows(named, ask("get", "secrets", { name: "b" })));
  assert(!ruleAllows(named, ask("list", "secrets")));
});

Deno.test("the installed ClusterRole grants the manager what it uses, and no more", () => {
  const tls = { caPem: "ca", certPem: "cert", keyPem: "key" };
  const store = storeWith(managerManifests({ tls }) as unknown as KubeObject[]);
  for (const r of ["pods", "services", "nodes", "namespaces"]) {
    for (const verb of ["get", "list", "watch"]) {
      assert(rbacAllows(store, ask(verb, r)), `${verb} ${r}`);
    }
  }
  assert(rbacAllows(store, ask("create", "services", { namespace: "vif-system" })));
  assert(rbacAllows(store, ask("delete", "services", { namespace: "vif-system" })));
  assert(rbacAllows(store, ask("list", "servicecidrs", { group: "networking.k8s.io" })));
  assertEquals(rbacAllows(store, ask("get", "secrets", { namespace: "default" })), false);
  assertEquals(rbacAllows(store, ask("delete", "pods", { namespace: "default" })), false);
  assertEquals(
    rbacAllows(store, ask("create", "pods", { subresource: "portforward", namespace: "default" })),
    false,
  );
  // Another service account gets nothing from the manager's binding.
  assertEquals(
    rbacAllows(store, ask("list", "pods", { user: "system:serviceaccount:default:default" })),
    false,
  );
});

Deno.test("a RoleBinding grants only in its namespace; groups and masters count", () => {
  const store = storeWith([
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "reader", namespace: "shop" },
      rules: [{ verbs: ["list"], apiGroups: [""], resources: ["pods"] }],
    } as KubeObject,
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "readers", namespace: "shop" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "reader" },
      subjects: [{ kind: "Group", name: "team", apiGroup: "rbac.authorization.k8s.io" }],
    } as KubeObject,
  ]);
  const member = { user: "ann", groups: ["team", "system:authenticated"] };
  assert(rbacAllows(store, ask("list", "pods", { ...member, namespace: "shop" })));
  assertEquals(rbacAllows(store, ask("list", "pods", { ...member, namespace: "default" })), false);
  assertEquals(rbacAllows(store, ask("list", "pods", { ...member, namespace: "" })), false);
  assertEquals(
    rbacAllows(store, ask("list", "pods", { user: "bob", groups: [], namespace: "shop" })),
    false,
  );
  assert(
    rbacAllows(store, ask("delete", "nodes", { user: "root", groups: ["system:masters"] })),
  );
});
