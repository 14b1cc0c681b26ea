/**
 * RBAC for the simulated cluster, as kube-apiserver's RBAC authorizer decides
 * it: a request is allowed when a (Cluster)RoleBinding whose subjects include
 * the user, one of its groups, or its service account refers to a role with a
 * rule matching the verb, API group, resource (with subresource) and, when the
 * rule lists them, the object's name. ClusterRoleBindings are visited first,
 * then the RoleBindings of the request's namespace, which grant there only.
 * There are no denies; `system:masters` may do anything.
 *
 * The simulated cluster authorizes every request with this (see `sim.ts`),
 * so a user or a service account whose roles lack a verb fails as it would in
 * a real cluster: a 403 naming the verb and resource, with `RBAC: …` after it
 * when a binding names a role that does not exist. {@linkcode bootstrapRbac}
 * makes the roles a new cluster has (`cluster-admin`, `system:basic-user`,
 * `system:auth-delegator`) and the read-only one the simulated cluster's
 * `limited` user is bound to.
 *
 * @module
 */

import {
  type AuthorizationAttributes,
  type AuthorizationDecision,
  type KubeObject,
  RESOURCES,
  type Store,
} from "./apiserver/mod.ts";

/** A `rbac.authorization.k8s.io/v1` PolicyRule. */
export interface PolicyRule {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface Subject {
  kind: string;
  name: string;
  namespace?: string;
}

interface Binding extends KubeObject {
  subjects?: Subject[];
  roleRef?: { kind: string; name: string };
}

const has = (list: string[] | undefined, value: string) =>
  (list ?? []).some((x) => x === "*" || x === value);

/**
 * Whether one rule allows the request, as RBAC's `RuleAllows` decides: a
 * resource `pods` does not cover a subresource (the rule must name
 * `pods/portforward`, `*`, or `*` followed by `/portforward`), and a rule
 * with `resourceNames` allows only requests that name one of them (a list or
 * watch names one only through a `metadata.name` field selector).
 *
 * @param rule a PolicyRule
 * @param a the request
 * @returns true when it matches
 */
export function ruleAllows(rule: PolicyRule, a: AuthorizationAttributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (!has(rule.apiGroups, a.group)) return false;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resourceOk = (rule.resources ?? []).some((r) =>
    r === "*" || r === resource || (a.subresource !== "" && r === `*/${a.subresource}`)
  );
  if (!resourceOk) return false;
  if (rule.resourceNames && rule.resourceNames.length > 0) {
    return a.name !== "" && rule.resourceNames.includes(a.name);
  }
  return true;
}

function subjectMatches(s: Subject, a: AuthorizationAttributes, bindingNamespace: string): boolean {
  if (s.kind === "User") return s.name === a.user;
  if (s.kind === "Group") return a.groups.includes(s.name);
  if (s.kind === "ServiceAccount") {
    // A RoleBinding's service account without a namespace is one of the binding's namespace.
    const ns = s.namespace || bindingNamespace;
    return ns !== "" && a.user === `system:serviceaccount:${ns}:${s.name}`;
  }
  return false;
}

/** `User "dev"`, `ServiceAccount "default/shop"`, as RBAC's reasons name a subject. */
function describeSubject(s: Subject, bindingNamespace: string): string {
  if (s.kind === "ServiceAccount") {
    return `${s.kind} ${JSON.stringify(`${s.name}/${s.namespace || bindingNamespace}`)}`;
  }
  return `${s.kind} ${JSON.stringify(s.name)}`;
}

/**
 * Decides a request from the RBAC objects in the store, with the reason
 * kube-apiserver gives: `RBAC: allowed by ClusterRoleBinding "b" of
 * ClusterRole "r" to User "u"` when allowed; when denied, `""`, or `RBAC: `
 * and the errors met on the way (a binding whose role does not exist).
 *
 * @param store the objects (roles and bindings are read on every call)
 * @param a the request
 * @returns the decision and its reason
 */
export function rbacAuthorize(store: Store, a: AuthorizationAttributes): AuthorizationDecision {
  if (a.groups.includes("system:masters")) return { allowed: true, reason: "" };
  const errors: string[] = [];
  const rulesOf = (ref: { kind: string; name: string }, namespace: string): PolicyRule[] => {
    const role = ref.kind === "ClusterRole"
      ? store.get({ resource: "clusterroles.rbac.authorization.k8s.io", name: ref.name })
      : ref.kind === "Role" && namespace
      ? store.get({ resource: "roles.rbac.authorization.k8s.io", namespace, name: ref.name })
      : undefined;
    if (!role) {
      const what = ref.kind === "ClusterRole" ? "clusterrole" : "role";
      errors.push(`${what}.rbac.authorization.k8s.io ${JSON.stringify(ref.name)} not found`);
      return [];
    }
    return (role as KubeObject & { rules?: PolicyRule[] }).rules ?? [];
  };
  const visit = (b: Binding, kind: string, namespace: string): string | undefined => {
    const subject = (b.subjects ?? []).find((s) => subjectMatches(s, a, namespace));
    if (!subject || !b.roleRef) return undefined;
    if (!rulesOf(b.roleRef, namespace).some((r) => ruleAllows(r, a))) return undefined;
    const name = namespace ? `${b.metadata.name}/${namespace}` : b.metadata.name;
    return `RBAC: allowed by ${kind} ${JSON.stringify(name)} of ${b.roleRef.kind} ${
      JSON.stringify(b.roleRef.name)
    } to ${describeSubject(subject, namespace)}`;
  };
  for (const b of store.list("clusterrolebindings.rbac.authorization.k8s.io")) {
    const reason = visit(b as Binding, "ClusterRoleBinding", "");
    if (reason) return { allowed: true, reason };
  }
  if (a.namespace) {
    const bindings = store.list("rolebindings.rbac.authorization.k8s.io", {
      namespace: a.namespace,
    });
    for (const b of bindings) {
      const reason = visit(b as Binding, "RoleBinding", a.namespace);
      if (reason) return { allowed: true, reason };
    }
  }
  const unique = [...new Set(errors)];
  // Go's errors.NewAggregate: one error as it is, several in brackets.
  const reason = unique.length === 0
    ? ""
    : `RBAC: ${unique.length === 1 ? unique[0] : `[${unique.join(", ")}]`}`;
  return { allowed: false, reason };
}

/**
 * Whether the RBAC objects in the store allow a request.
 *
 * @param store the objects (roles and bindings are read on every call)
 * @param a the request
 * @returns true when a binding grants it
 */
export function rbacAllows(store: Store, a: AuthorizationAttributes): boolean {
  return rbacAuthorize(store, a).allowed;
}

/** Options of {@linkcode bootstrapRbac}. */
export interface BootstrapRbacOptions {
  /** Users bound cluster-wide to the read-only ClusterRole `limited-view`. */
  viewers?: string[];
}

/** The name of the read-only ClusterRole (and its binding) of {@linkcode bootstrapRbac}. */
export const LIMITED_VIEW = "limited-view";

const BOOTSTRAP_META = {
  labels: { "kubernetes.io/bootstrapping": "rbac-defaults" },
  annotations: { "rbac.authorization.kubernetes.io/autoupdate": "true" },
};

function clusterRole(name: string, rules: PolicyRule[], bootstrap: boolean): KubeObject {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name, ...(bootstrap ? structuredClone(BOOTSTRAP_META) : {}) },
    rules,
  } as KubeObject;
}

function clusterRoleBinding(
  name: string,
  role: string,
  subjects: Subject[],
  bootstrap: boolean,
): KubeObject {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name, ...(bootstrap ? structuredClone(BOOTSTRAP_META) : {}) },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
    subjects: subjects.map((s) => ({ apiGroup: "rbac.authorization.k8s.io", ...s })),
  } as KubeObject;
}

/**
 * The rules of `limited-view`: get, list and watch on every core, `apps` and
 * `discovery.k8s.io` resource the fake server serves (their `status` and
 * `scale` subresources too), except Secrets and `pods/portforward`. Like the
 * `view` ClusterRole of a real cluster, plus Nodes and Namespaces, which the
 * `limited` user could always read here.
 *
 * @returns the rules, one per API group
 */
export function limitedViewRules(): PolicyRule[] {
  const groups = ["", "apps", "discovery.k8s.io"];
  return groups.map((group) => ({
    apiGroups: [group],
    resources: RESOURCES.filter((r) =>
      r.group === group && r.resource !== "secrets" && r.verbs.includes("get")
    ).flatMap((r) => [
      r.resource,
      ...r.subresources.filter((s) => s.name !== "portforward" && s.verbs.includes("get"))
        .map((s) => `${r.resource}/${s.name}`),
    ]),
    verbs: ["get", "list", "watch"],
  }));
}

/**
 * The RBAC objects a new simulated cluster starts with:
 *
 * | ClusterRole | bound by the ClusterRoleBinding of the same name to | grants |
 * | --- | --- | --- |
 * | `cluster-admin` | Group `system:masters` | everything (masters are allowed before RBAC is asked, as in kube-apiserver) |
 * | `system:basic-user` | Group `system:authenticated` | `create` `selfsubjectaccessreviews` and `selfsubjectrulesreviews` (what `kubectl auth can-i` needs) and `selfsubjectreviews` (`kubectl auth whoami`) |
 * | `system:auth-delegator` | nobody (bind it to a delegating authenticator) | `create` `tokenreviews` and `subjectaccessreviews` |
 * | `limited-view` | the users in `viewers` | see {@linkcode limitedViewRules} |
 *
 * @param options who gets `limited-view`
 * @returns the objects, for `Store.create`
 */
export function bootstrapRbac(options: BootstrapRbacOptions = {}): KubeObject[] {
  const viewers = options.viewers ?? [];
  return [
    clusterRole("cluster-admin", [
      { apiGroups: ["*"], resources: ["*"], verbs: ["*"] },
      { nonResourceURLs: ["*"], verbs: ["*"] },
    ], true),
    clusterRoleBinding("cluster-admin", "cluster-admin", [{
      kind: "Group",
      name: "system:masters",
    }], true),
    clusterRole("system:basic-user", [{
      apiGroups: ["authorization.k8s.io"],
      resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
      verbs: ["create"],
    }, {
      // Kubernetes 1.28 on: `kubectl auth whoami`.
      apiGroups: ["authentication.k8s.io"],
      resources: ["selfsubjectreviews"],
      verbs: ["create"],
    }], true),
    clusterRoleBinding("system:basic-user", "system:basic-user", [{
      kind: "Group",
      name: "system:authenticated",
    }], true),
    // Unbound, as in a new cluster: a delegating authenticator (vif's manager checking an
    // agent's token) is bound to it by whoever installs it.
    clusterRole("system:auth-delegator", [{
      apiGroups: ["authentication.k8s.io"],
      resources: ["tokenreviews"],
      verbs: ["create"],
    }, {
      apiGroups: ["authorization.k8s.io"],
      resources: ["subjectaccessreviews"],
      verbs: ["create"],
    }], true),
    ...(viewers.length > 0
      ? [
        clusterRole(LIMITED_VIEW, limitedViewRules(), false),
        clusterRoleBinding(
          LIMITED_VIEW,
          LIMITED_VIEW,
          viewers.map((name) => ({ kind: "User", name })),
          false,
        ),
      ]
      : []),
  ];
}
