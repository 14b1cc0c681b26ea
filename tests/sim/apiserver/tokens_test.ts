/**
 * Service-account tokens and TokenReview as kube-apiserver answers them:
 * bound to an audience, an expiry, a pod and a service account; a review
 * for the right audience names the user, its groups and the pod it was
 * issued for; the wrong audience, an expired token, a deleted pod or an
 * unknown token are refused in the real server's words; a review needs
 * `create tokenreviews` (the `system:auth-delegator` ClusterRole); checked
 * with `fetch` and with Debian's python3-kubernetes.
 *
 * @module
 */

import { assert, assertEquals } from "../../_assert.ts";
import { bootstrapRbac, rbacAuthorize } from "../rbac.ts";
import { ADMIN_TOKEN, callJson, type TestApi, withApi } from "./_testing.ts";
import {
  API_AUDIENCE,
  authenticateToken,
  issueServiceAccountToken,
  jwtClaims,
  type TokenInfo,
} from "./tokens.ts";
import { type KubeObject, Store } from "./store.ts";

function podIn(store: Store, name: string): KubeObject {
  return store.create({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: { nodeName: "node1", containers: [{ name: "c", image: "x" }] },
  });
}

const API = { apiAudiences: [API_AUDIENCE] };

Deno.test("issueServiceAccountToken() makes a pod-bound JWT that authenticateToken() accepts for its audience only", () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  store.create({ apiVersion: "v1", kind: "Node", metadata: { name: "node1" } });
  const pod = podIn(store, "web-1");
  const tokens: Record<string, TokenInfo> = {};
  const t0 = Date.parse("2025-06-01T12:00:00Z");
  const issued = issueServiceAccountToken(tokens, store, {
    namespace: "default",
    serviceAccount: "default",
    audiences: ["vif"],
    expirationSeconds: 600,
    pod: { name: "web-1", uid: pod.metadata.uid! },
    node: "node1",
  }, { ...API, now: t0 });
  assertEquals(issued.expirationTimestamp, "2025-06-01T12:10:00Z");
  const claims = jwtClaims(issued.token)!;
  assertEquals(claims.aud, ["vif"]);
  assertEquals(claims.sub, "system:serviceaccount:default:default");
  assertEquals((claims["kubernetes.io"] as { pod: { name: string } }).pod.name, "web-1");

  const ok = authenticateToken(tokens, store, issued.token, {
    ...API,
    audiences: ["vif"],
    now: t0,
  });
  assert(ok.authenticated);
  assertEquals(ok.user.username, "system:serviceaccount:default:default");
  assertEquals(ok.user.groups, [
    "system:serviceaccounts",
    "system:serviceaccounts:default",
    "system:authenticated",
  ]);
  assertEquals(ok.user.extra?.["authentication.kubernetes.io/pod-name"], ["web-1"]);
  assertEquals(ok.user.extra?.["authentication.kubernetes.io/pod-uid"], [pod.metadata.uid]);
  assertEquals(ok.user.extra?.["authentication.kubernetes.io/node-name"], ["node1"]);
  assertEquals(ok.audiences, ["vif"]);

  const refused = (audiences: string[], now: number) => {
    const r = authenticateToken(tokens, store, issued.token, { ...API, audiences, now });
    assert(!r.authenticated);
    return r.error;
  };
  // Not for the API server itself: a request with it gets a 401.
  assertEquals(
    refused([], t0),
    `[invalid bearer token, token audiences ["vif"] is invalid for the target audiences ["${API_AUDIENCE}"]]`,
  );
  assertEquals(
    refused(["vif"], t0 + 600_000),
    "[invalid bearer token, service account token has expired]",
  );
  store.delete({ resource: "pods", namespace: "default", name: "web-1" });
  assertEquals(
    refused(["vif"], t0),
    "[invalid bearer token, service account token has been invalidated]",
  );
  podIn(store, "web-1");
  assert(refused(["vif"], t0)!.includes("pod UID ("));
  // An unknown JWT of ours, and a token that is no JWT.
  const forged = issued.token.slice(0, issued.token.lastIndexOf(".")) + ".AAAA";
  assertEquals(
    authenticateToken(tokens, store, forged, API),
    {
      authenticated: false,
      error: "[invalid bearer token, square/go-jose: error in cryptographic primitive]",
    },
  );
  assertEquals(authenticateToken(tokens, store, "constructor", API), { authenticated: false });
  // A user's static token is one for the API server's audience only.
  tokens["static"] = { user: "dev" };
  assert(authenticateToken(tokens, store, "static", API).authenticated);
  assertEquals(authenticateToken(tokens, store, "static", { ...API, audiences: ["vif"] }), {
    authenticated: false,
  });
});

Deno.test("issueServiceAccountToken() drops expired and invalidated tokens from the table", () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  const tokens: Record<string, TokenInfo> = { static: { user: "admin" } };
  const t0 = Date.now();
  const first = issueServiceAccountToken(tokens, store, {
    namespace: "default",
    serviceAccount: "default",
    expirationSeconds: 600,
  }, { ...API, now: t0 });
  const pod = podIn(store, "p");
  issueServiceAccountToken(tokens, store, {
    namespace: "default",
    serviceAccount: "default",
    pod: { name: "p", uid: pod.metadata.uid! },
  }, { ...API, now: t0 });
  store.delete({ resource: "pods", namespace: "default", name: "p" });
  issueServiceAccountToken(tokens, store, { namespace: "default", serviceAccount: "default" }, {
    ...API,
    now: t0 + 601_000,
  });
  assertEquals(Object.keys(tokens).length, 2); // the static one and the newest
  assert(!(first.token in tokens));
});

async function review(t: TestApi, token: string, body: Record<string, unknown>) {
  return await callJson(t, "/apis/authentication.k8s.io/v1/tokenreviews", {
    method: "POST",
    token,
    body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", ...body }),
  });
}

Deno.test("POST tokenreviews answers as kube-apiserver, to whoever may create tokenreviews", async () => {
  const tokens: Record<string, TokenInfo> = {
    [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] },
  };
  let store: Store | undefined;
  await withApi(async (t) => {
    store = t.api.store;
    for (const o of bootstrapRbac()) t.api.store.create(o);
    t.api.store.create({
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "manager", namespace: "default" },
    });
    const pod = podIn(t.api.store, "web-1");
    const agent = issueServiceAccountToken(tokens, t.api.store, {
      namespace: "default",
      serviceAccount: "default",
      audiences: ["vif"],
      pod: { name: "web-1", uid: pod.metadata.uid! },
    }, API).token;
    const manager = issueServiceAccountToken(tokens, t.api.store, {
      namespace: "default",
      serviceAccount: "manager",
    }, API).token;

    // The manager's own token is good for the API; a review needs the grant.
    const denied = await review(t, manager, { spec: { token: agent, audiences: ["vif"] } });
    assertEquals(denied.code, 403);
    assertEquals(
      denied.body.message,
      'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:default:manager" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope',
    );
    t.api.store.create({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "vif-manager-auth-delegator" },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "system:auth-delegator",
      },
      subjects: [{ kind: "ServiceAccount", name: "manager", namespace: "default" }],
    } as KubeObject);

    const ok = await review(t, manager, { spec: { token: agent, audiences: ["vif"] } });
    assertEquals(ok.code, 201);
    const status = ok.body.status as Record<string, unknown>;
    assertEquals(status.authenticated, true);
    assertEquals(status.audiences, ["vif"]);
    const user = status.user as { username: string; uid: string; extra: Record<string, string[]> };
    assertEquals(user.username, "system:serviceaccount:default:default");
    assertEquals(
      user.uid,
      t.api.store.get({ resource: "serviceaccounts", namespace: "default", name: "default" })!
        .metadata.uid,
    );
    assertEquals(user.extra["authentication.kubernetes.io/pod-name"], ["web-1"]);
    assertEquals(user.extra["authentication.kubernetes.io/pod-uid"], [pod.metadata.uid]);
    assertEquals((ok.body.spec as { token: string }).token, agent);

    const wrong = await review(t, manager, { spec: { token: agent, audiences: ["other"] } });
    assertEquals(wrong.body.status, {
      user: {},
      error:
        '[invalid bearer token, token audiences ["vif"] is invalid for the target audiences ["other"]]',
    });
    const empty = await review(t, manager, { spec: {} });
    assertEquals([empty.code, empty.body.message], [
      400,
      "token is required for TokenReview in authentication",
    ]);
    // The agent's token is not one for the API server.
    assertEquals(
      (await callJson(t, "/api/v1/namespaces/default/pods", { token: agent })).code,
      401,
    );
  }, { tokens, authorize: (a) => rbacAuthorize(store!, a) });
});

Deno.test("python-kubernetes gets a TokenRequest and reviews it with AuthenticationV1Api", async () => {
  const tokens: Record<string, TokenInfo> = {
    [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] },
  };
  await withApi(async (t) => {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [
        new URL("./_python_client.py", import.meta.url).pathname,
        "tokenrequest",
        "default",
        "default",
        "vif",
      ],
      env: { VIF_API_URL: t.api.url, VIF_API_CA: t.tls.caCertPath, VIF_API_TOKEN: ADMIN_TOKEN },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assert(/^20\d\d-/.test(result.expiration), result.expiration);
    assertEquals(result.review.authenticated, true);
    assertEquals(result.review.audiences, ["vif"]);
    assertEquals(result.review.user.username, "system:serviceaccount:default:default");
    assertEquals(result.review.user.groups, [
      "system:serviceaccounts",
      "system:serviceaccounts:default",
      "system:authenticated",
    ]);
    const bad = await new Deno.Command("/usr/bin/python3", {
      args: [
        new URL("./_python_client.py", import.meta.url).pathname,
        "tokenreview",
        "nonsense",
        "vif",
      ],
      env: { VIF_API_URL: t.api.url, VIF_API_CA: t.tls.caCertPath, VIF_API_TOKEN: ADMIN_TOKEN },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(bad.code, 0, new TextDecoder().decode(bad.stderr));
    const refused = JSON.parse(new TextDecoder().decode(bad.stdout));
    assertEquals(refused.authenticated, null);
    assertEquals(refused.audiences, null);
  }, { tokens });
});
