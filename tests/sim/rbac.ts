/**
 * RBAC for the simulated cluster, as kube-apiserver's RBAC authorizer decides
 * it: a request is allowed when a (Cluster)RoleBinding whose subjects include
 * the user, one of its groups, or its service account refers to a role with a
 * rule matching the verb, API group, resource (with subresource) and, when the
 * rule lists them, the object's name. RoleBindings grant in their namespace
 * only. There are no denies; `system:masters` may do anything.
 *
 * The simulated cluster authorizes service-account tokens with this, so a
 * manager whose ClusterRole lacks a verb it uses fails as it would in a real
 * cluster (a 403 naming the verb and resource).
 *
 * @module
 */

import type { AuthorizationAttributes, KubeObject, Store } from "./apiserver/mod.ts";

interface Rule {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
}

interface Subject {
  kind: string;
  name: string;
  namespace?: string;
}

const has = (list: string[] | undefined, value: string) =>
  (list ?? []).some((x) => x === "*" || x === value);

/**
 * Whether one rule allows the request.
 *
 * @param rule a PolicyRule
 * @param a the request
 * @returns true when it matches
 */
export function ruleAllows(rule: Rule, a: AuthorizationAttributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (!has(rule.apiGroups, a.group)) return false;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resources = rule.resources ?? [];
  const resourceOk = resources.some((r) =>
    r === "*" || r === resource || (a.subresource && r === `*/${a.subresource}`) ||
    (!a.subresource && r === `${a.resource}/*`)
  );
  if (!resourceOk) return false;
  if (rule.resourceNames && rule.resourceNames.length > 0) {
    return a.name !== "" && rule.resourceNames.includes(a.name);
  }
  return true;
}

function subjectMatches(s: Subject, a: AuthorizationAttributes): boolean {
  if (s.kind === "User") return s.name === a.user;
  if (s.kind === "Group") return a.groups.includes(s.name);
  if (s.kind === "ServiceAccount") {
    return a.user === `system:serviceaccount:${s.namespace ?? ""}:${s.name}`;
  }
  return false;
}

/**
 * Decides a request from the RBAC objects in the store.
 *
 * @param store the objects (roles and bindings are read on every call)
 * @param a the request
 * @returns true when a binding grants it
 */
export function rbacAllows(store: Store, a: AuthorizationAttributes): boolean {
  if (a.groups.includes("system:masters")) return true;
  const rulesOf = (kind: string, name: string, namespace?: string): Rule[] => {
    const role = kind === "ClusterRole"
      ? store.get({ resource: "clusterroles.rbac.authorization.k8s.io", name })
      : store.get({ resource: "roles.rbac.authorization.k8s.io", namespace: namespace!, name });
    return ((role as KubeObject & { rules?: Rule[] } | undefined)?.rules) ?? [];
  };
  const grants = (b: KubeObject, namespace?: string): boolean => {
    const subjects = (b as KubeObject & { subjects?: Subject[] }).subjects ?? [];
    if (!subjects.some((s) => subjectMatches(s, a))) return false;
    const ref = (b as KubeObject & { roleRef?: { kind: string; name: string } }).roleRef;
    if (!ref) return false;
    return rulesOf(ref.kind, ref.name, namespace).some((r) => ruleAllows(r, a));
  };
  for (const b of store.list("clusterrolebindings.rbac.authorization.k8s.io")) {
    if (grants(b)) return true;
  }
  if (a.namespace) {
    const bindings = store.list("rolebindings.rbac.authorization.k8s.io", {
      namespace: a.namespace,
    });
    for (const b of bindings) if (grants(b, a.namespace)) return true;
  }
  return false;
}
