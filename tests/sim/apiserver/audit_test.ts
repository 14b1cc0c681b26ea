/**
 * The fake API server's audit events, as an audit webhook would get them:
 * the stages of each request, who asked, what it named, the body it sent and
 * how it was answered.
 *
 * ```
 *   test ──fetch──► startApiServer({ audit }) on 127.0.0.1:random ──events──► test's sink
 * ```
 */

import { assert, assertEquals } from "../../_assert.ts";
import {
  ADMIN_TOKEN,
  call,
  callJson,
  LIMITED_TOKEN,
  TEST_SERVICE_CIDR,
  type TestApi,
  waitFor,
  withApi,
  WRONG_TOKEN,
} from "./_testing.ts";
import type { AuditEvent, AuditLevel } from "./audit.ts";
import { Store } from "./store.ts";

const NAMESPACE = { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } };

/** Runs `fn` with a server whose audit events go to `events`. */
function withAudit(
  fn: (t: TestApi, events: AuditEvent[]) => Promise<void>,
  options: { level?: AuditLevel; sink?: (event: AuditEvent) => void } = {},
): Promise<void> {
  const events: AuditEvent[] = [];
  return withApi((t) => fn(t, events), {
    audit: {
      ...(options.level ? { level: options.level } : {}),
      sink: (event) => {
        events.push(event);
        options.sink?.(event);
      },
    },
  });
}

Deno.test("startApiServer() audits a create when it arrives and when it is answered, with the body at level Request", async () => {
  await withAudit(async (t, events) => {
    const res = await call(t, "/api/v1/namespaces?fieldManager=test", {
      method: "POST",
      body: JSON.stringify(NAMESPACE),
      headers: { "user-agent": "audit-test/1" },
    });
    assertEquals(res.status, 201);
    assertEquals(events.map((e) => e.stage), ["RequestReceived", "ResponseComplete"]);
    const [received, complete] = events as [AuditEvent, AuditEvent];
    assertEquals(res.headers.get("audit-id"), complete.auditID);
    assertEquals(received.auditID, complete.auditID);
    assertEquals(complete, {
      kind: "Event",
      apiVersion: "audit.k8s.io/v1",
      level: "Request",
      auditID: complete.auditID,
      stage: "ResponseComplete",
      requestURI: "/api/v1/namespaces?fieldManager=test",
      verb: "create",
      user: { username: "admin", groups: ["system:masters", "system:authenticated"] },
      userAgent: "audit-test/1",
      objectRef: { resource: "namespaces", apiVersion: "v1" },
      responseStatus: { metadata: {}, code: 201 },
      requestObject: NAMESPACE,
      requestReceivedTimestamp: received.requestReceivedTimestamp,
      stageTimestamp: complete.stageTimestamp,
    });
    // The body is read after RequestReceived, so that stage cannot carry it.
    assertEquals(received.requestObject, undefined);
    assertEquals(received.responseStatus, undefined);
    assert(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(received.requestReceivedTimestamp),
      received.requestReceivedTimestamp,
    );
  }, { level: "Request" });
});

Deno.test("startApiServer() audits at level Metadata without the body, and names the object, its namespace and group", async () => {
  await withAudit(async (t, events) => {
    await callJson(t, "/api/v1/namespaces", { method: "POST", body: JSON.stringify(NAMESPACE) });
    events.length = 0;
    await callJson(t, "/apis/apps/v1/namespaces/shop/deployments/web/scale");
    assertEquals(events.map((e) => [e.stage, e.verb, e.objectRef, e.responseStatus?.code]), [
      ["RequestReceived", "get", {
        resource: "deployments",
        namespace: "shop",
        name: "web",
        apiGroup: "apps",
        apiVersion: "v1",
        subresource: "scale",
      }, undefined],
      ["ResponseComplete", "get", {
        resource: "deployments",
        namespace: "shop",
        name: "web",
        apiGroup: "apps",
        apiVersion: "v1",
        subresource: "scale",
      }, 404],
    ]);
    assertEquals(events[1]!.responseStatus, {
      metadata: {},
      status: "Failure",
      message: 'deployments.apps "web" not found',
      reason: "NotFound",
      code: 404,
    });
    assert(events.every((e) => e.level === "Metadata" && e.requestObject === undefined));
  });
});

Deno.test("startApiServer() audits a refused token once, when its 401 is written, with no user", async () => {
  await withAudit(async (t, events) => {
    assertEquals((await callJson(t, "/api/v1/pods", { token: WRONG_TOKEN })).code, 401);
    assertEquals((await callJson(t, "/version", { token: null })).code, 401);
    assertEquals(events.map((e) => [e.stage, e.verb, e.user, e.responseStatus]), [
      ["ResponseStarted", "list", {}, {
        metadata: {},
        message: "Authentication failed, attempted: bearer",
        code: 401,
      }],
      ["ResponseStarted", "get", {}, {
        metadata: {},
        message: "Authentication failed, no credentials provided",
        code: 401,
      }],
    ]);
    assertEquals(events[1]!.objectRef, undefined);
  });
});

Deno.test("startApiServer() audits a denied request with its 403 Status", async () => {
  await withAudit(async (t, events) => {
    const denied = await callJson(t, "/api/v1/namespaces/default/secrets", {
      token: LIMITED_TOKEN,
    });
    assertEquals(denied.code, 403);
    const complete = events.find((e) => e.stage === "ResponseComplete")!;
    assertEquals(complete.user.username, "limited");
    assertEquals(complete.responseStatus, {
      metadata: {},
      status: "Failure",
      message: denied.body.message as string,
      reason: "Forbidden",
      code: 403,
    });
  });
});

Deno.test("startApiServer() audits a watch when it starts and again when it ends", async () => {
  await withAudit(async (t, events) => {
    const res = await call(t, "/api/v1/namespaces?watch=true&timeoutSeconds=1");
    assertEquals(res.status, 200);
    await res.text();
    await waitFor(() => events.length >= 3, 2000, "the watch's ResponseComplete");
    assertEquals(events.map((e) => [e.stage, e.verb, e.responseStatus?.code]), [
      ["RequestReceived", "watch", undefined],
      ["ResponseStarted", "watch", 200],
      ["ResponseComplete", "watch", 200],
    ]);
  });
});

Deno.test("startApiServer() hands RequestReceived to the sink before it handles the request", async () => {
  const store = new Store({ serviceCidr: TEST_SERVICE_CIDR });
  let written = false;
  await withApi(async (t) => {
    const { code, body } = await callJson(t, "/api/v1/namespaces/shop");
    assertEquals(code, 200);
    assertEquals((body.metadata as { name: string }).name, "shop");
  }, {
    store,
    audit: {
      sink: (event) => {
        // Another client's write, landing between the request's arrival and its handling.
        if (event.stage !== "RequestReceived" || written) return;
        written = true;
        store.create(NAMESPACE);
      },
    },
  });
});

Deno.test("startApiServer() answers as usual when the audit sink throws, and logs it", async () => {
  const events: AuditEvent[] = [];
  await withApi(async (t) => {
    const { code } = await callJson(t, "/api/v1/namespaces/default", { token: ADMIN_TOKEN });
    assertEquals(code, 200);
    assertEquals(events.length, 2);
    assert(
      t.logs.some((line) => /^apiserver: audit sink failed on ResponseComplete of /.test(line)),
      t.logs.join("\n"),
    );
  }, {
    audit: {
      sink: (event) => {
        events.push(event);
        throw new Error("the backend is down");
      },
    },
  });
});
