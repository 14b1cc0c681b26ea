import { assert, assertEquals } from "../_assert.ts";
import type { AuthorizationAttributes, KubeObject } from "./apiserver/mod.ts";
import { Store } from "./apiserver/mod.ts";
import { callJson, withApi } from "./apiserver/_testing.ts";
import { bootstrapRbac, rbacAllows, rbacAuthorize, ruleAllows } from "./rbac.ts";
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
  const anySub = { verbs: ["create"], apiGroups: [""], resources: ["*/portforward", "pods/*"] };
  assert(ruleAllows(anySub, ask("create", "pods", { subresource: "portforward" })));
  // "pods/*" is no wildcard: it covers neither pods itself nor its subresources.
  assert(!ruleAllows(anySub, ask("create", "pods")));
  assert(!ruleAllows(anySub, ask("create", "pods", { subresource: "status" })));
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

/** What `vif install --grant-user dev` makes in vif-system: the users' Role and its binding. */
const DEV_GRANT: KubeObject[] = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "vif-system" } },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "vif-user", namespace: "vif-system" },
    rules: [
      { apiGroups: [""], resources: ["pods", "services"], verbs: ["get", "list"] },
      { apiGroups: [""], resources: ["pods/portforward"], verbs: ["create", "get"] },
      {
        apiGroups: [""],
        resources: ["configmaps"],
        verbs: ["get"],
        resourceNames: ["traffic-manager-ca"],
      },
    ],
  } as KubeObject,
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "vif-user", namespace: "vif-system" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "vif-user" },
    subjects: [{ kind: "User", name: "dev", apiGroup: "rbac.authorization.k8s.io" }],
  } as KubeObject,
];

const DEV = { user: "dev", groups: ["system:authenticated"] };

Deno.test("bootstrapRbac() lets every user ask what it may do, and a viewer read all but Secrets", () => {
  const store = storeWith(bootstrapRbac({ viewers: ["limited"] }));
  const review = { group: "authorization.k8s.io" };
  assert(rbacAllows(store, ask("create", "selfsubjectaccessreviews", { ...DEV, ...review })));
  assertEquals(rbacAllows(store, ask("list", "pods", { ...DEV, namespace: "default" })), false);
  assertEquals(
    rbacAllows(store, ask("get", "selfsubjectaccessreviews", { ...DEV, ...review })),
    false,
  );
  const limited = { user: "limited", groups: ["system:authenticated"] };
  for (
    const [verb, resource, extra] of [
      ["list", "pods", { namespace: "default" }],
      ["watch", "services", {}],
      ["get", "configmaps", { namespace: "vif-system", name: "x" }],
      ["list", "nodes", {}],
      ["list", "namespaces", {}],
      ["get", "deployments", { group: "apps", namespace: "default", name: "web" }],
      ["get", "deployments", { group: "apps", namespace: "default", subresource: "scale" }],
      ["list", "endpointslices", { group: "discovery.k8s.io" }],
    ] as const
  ) {
    assert(rbacAllows(store, ask(verb, resource, { ...limited, ...extra })), `${verb} ${resource}`);
  }
  for (
    const [verb, resource, extra] of [
      ["list", "secrets", { namespace: "default" }],
      ["get", "secrets", { namespace: "default", name: "x" }],
      ["create", "pods", { namespace: "default", subresource: "portforward", name: "web" }],
      ["get", "pods", { namespace: "default", subresource: "portforward", name: "web" }],
      ["delete", "pods", { namespace: "default", name: "web" }],
      ["create", "services", { namespace: "default" }],
      ["list", "clusterroles", { group: "rbac.authorization.k8s.io" }],
    ] as const
  ) {
    assertEquals(
      rbacAllows(store, ask(verb, resource, { ...limited, ...extra })),
      false,
      `${verb} ${resource}`,
    );
  }
  assert(rbacAllows(store, ask("delete", "nodes", { user: "admin", groups: ["system:masters"] })));
});

Deno.test("a Role and RoleBinding like vif install --grant-user's grant a user exactly their rules", () => {
  const store = storeWith([...bootstrapRbac(), ...DEV_GRANT]);
  const ns = { ...DEV, namespace: "vif-system" };
  const allowed: Array<[string, string, Partial<AuthorizationAttributes>]> = [
    ["get", "pods", { name: "traffic-manager-abc" }],
    ["list", "pods", {}],
    ["get", "services", { name: "traffic-manager" }],
    ["list", "services", {}],
    ["create", "pods", { subresource: "portforward", name: "traffic-manager-abc" }],
    ["get", "pods", { subresource: "portforward", name: "traffic-manager-abc" }],
    ["get", "configmaps", { name: "traffic-manager-ca" }],
    ["create", "selfsubjectaccessreviews", { group: "authorization.k8s.io", namespace: "" }],
  ];
  for (const [verb, resource, extra] of allowed) {
    assert(rbacAllows(store, ask(verb, resource, { ...ns, ...extra })), `${verb} ${resource}`);
  }
  const denied: Array<[string, string, Partial<AuthorizationAttributes>]> = [
    ["watch", "pods", {}],
    ["delete", "pods", { name: "traffic-manager-abc" }],
    ["get", "configmaps", { name: "other" }],
    ["list", "configmaps", {}],
    ["watch", "configmaps", { name: "traffic-manager-ca" }],
    ["get", "secrets", { name: "traffic-manager-tls" }],
    ["list", "endpoints", {}],
    ["list", "pods", { namespace: "default" }],
    ["create", "pods", { subresource: "portforward", name: "web", namespace: "default" }],
    ["list", "pods", { namespace: "" }],
  ];
  for (const [verb, resource, extra] of denied) {
    assertEquals(
      rbacAllows(store, ask(verb, resource, { ...ns, ...extra })),
      false,
      `${verb} ${resource} ${JSON.stringify(extra)}`,
    );
  }
  // Another user, or a service account, gets nothing from it.
  assertEquals(rbacAllows(store, ask("list", "pods", { ...ns, user: "eve" })), false);
});

Deno.test("rbacAuthorize() gives kube-apiserver's reasons", () => {
  const store = storeWith([
    ...bootstrapRbac(),
    ...DEV_GRANT,
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "dangling", namespace: "vif-system" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "gone" },
      // A ServiceAccount subject without a namespace is one of the binding's namespace.
      subjects: [{ kind: "ServiceAccount", name: "builder" }, { kind: "User", name: "dev" }],
    } as KubeObject,
  ]);
  const ns = { ...DEV, namespace: "vif-system" };
  assertEquals(rbacAuthorize(store, ask("list", "pods", ns)), {
    allowed: true,
    reason: `RBAC: allowed by RoleBinding "vif-user/vif-system" of Role "vif-user" to User "dev"`,
  });
  assertEquals(
    rbacAuthorize(
      store,
      ask("create", "selfsubjectaccessreviews", { ...DEV, group: "authorization.k8s.io" }),
    ),
    {
      allowed: true,
      reason:
        `RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"`,
    },
  );
  assertEquals(rbacAuthorize(store, ask("delete", "pods", ns)), {
    allowed: false,
    reason: `RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found`,
  });
  assertEquals(rbacAuthorize(store, ask("delete", "pods", { ...ns, namespace: "default" })), {
    allowed: false,
    reason: "",
  });
  const sa = {
    user: "system:serviceaccount:vif-system:builder",
    groups: ["system:serviceaccounts"],
  };
  assertEquals(rbacAuthorize(store, ask("get", "pods", { ...sa, namespace: "vif-system" })), {
    allowed: false,
    reason: `RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found`,
  });
});

Deno.test("startApiServer() with RBAC: 403s in kube-apiserver's words, names from field selectors, reviews with reasons", async () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  for (const o of [...bootstrapRbac(), ...DEV_GRANT]) store.create(structuredClone(o));
  store.create({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "traffic-manager-ca", namespace: "vif-system" },
    data: { "ca.crt": "pem" },
  } as KubeObject);
  const DEV_TOKEN = "dev-token-0123456789";
  await withApi(async (t) => {
    const as = (path: string) => callJson(t, path, { token: DEV_TOKEN });
    const cms = "/api/v1/namespaces/vif-system/configmaps";
    assertEquals((await as(`${cms}/traffic-manager-ca`)).code, 200);
    // A list by name is authorized as naming the object, as on a real server.
    const byName = `${cms}?fieldSelector=metadata.name%3Dtraffic-manager-ca`;
    assertEquals(
      (await as(byName)).body.message,
      `configmaps "traffic-manager-ca" is forbidden: User "dev" cannot list resource "configmaps" in API group "" in the namespace "vif-system"`,
    );
    store.create({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "ca-lister", namespace: "vif-system" },
      rules: [{
        apiGroups: [""],
        resources: ["configmaps"],
        verbs: ["list"],
        resourceNames: ["traffic-manager-ca"],
      }],
    } as KubeObject);
    store.create({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "ca-lister", namespace: "vif-system" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "ca-lister" },
      subjects: [{ kind: "User", name: "dev" }],
    } as KubeObject);
    assertEquals((await as(byName)).code, 200);
    const all = await as(cms);
    assertEquals(all.code, 403);
    assertEquals(
      all.body.message,
      `configmaps is forbidden: User "dev" cannot list resource "configmaps" in API group "" in the namespace "vif-system"`,
    );
    const other = await as("/api/v1/namespaces/default/pods/web");
    assertEquals(
      other.body.message,
      `pods "web" is forbidden: User "dev" cannot get resource "pods" in API group "" in the namespace "default"`,
    );
    const review = await callJson(t, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      method: "POST",
      token: DEV_TOKEN,
      body: JSON.stringify({
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: {
          resourceAttributes: {
            namespace: "vif-system",
            verb: "create",
            resource: "pods",
            subresource: "portforward",
          },
        },
      }),
    });
    assertEquals(review.code, 201);
    assertEquals(review.body.status, {
      allowed: true,
      reason: `RBAC: allowed by RoleBinding "vif-user/vif-system" of Role "vif-user" to User "dev"`,
    });
    // Who am I (`kubectl auth whoami`): every authenticated user may ask.
    const whoami = await callJson(t, "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
      method: "POST",
      token: DEV_TOKEN,
      body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
    });
    assertEquals(whoami.code, 201);
    assertEquals(
      (whoami.body.status as { userInfo: { username: string } }).userInfo.username,
      "dev",
    );
    // The bootstrap binding removed, nobody but masters may ask any more.
    store.delete({
      resource: "clusterrolebindings.rbac.authorization.k8s.io",
      name: "system:basic-user",
    });
    const refused = await callJson(t, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      method: "POST",
      token: DEV_TOKEN,
      body: JSON.stringify({
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: {},
      }),
    });
    assertEquals(
      refused.body.message,
      `selfsubjectaccessreviews.authorization.k8s.io is forbidden: User "dev" cannot create resource "selfsubjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope`,
    );
  }, {
    store,
    tokens: { [DEV_TOKEN]: { user: "dev" } },
    authorize: (a) => rbacAuthorize(store, a),
  });
});
