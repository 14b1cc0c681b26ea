/**
 * Audit events of the fake API server, as kube-apiserver writes them to an
 * audit backend (`audit.k8s.io/v1` `Event`): one event per stage of a request,
 * each with the request's `auditID` (also its `Audit-Id` response header), who
 * asked, the verb and the object it names, and how it was answered.
 *
 * ```
 *   request ──► authentication ──fails──► ResponseStarted (401, no user)
 *                    │
 *                    ▼
 *               RequestReceived ──► authorization, handler ──► ResponseComplete (code, status)
 *                                                  │
 *                                                  └─ watch, portforward: ResponseStarted, then
 *                                                     ResponseComplete when the stream ends
 * ```
 *
 * The policy is one level for every request: `Metadata` (who, what, the
 * answer) or `Request` (the request's body too, as `requestObject`, in the
 * `ResponseStarted` and `ResponseComplete` stages: the body is not read yet when
 * `RequestReceived` is sent). The sink is called synchronously, so a sink that
 * writes to the store on `RequestReceived` writes before the request is
 * handled, as another client's write would land.
 *
 * @module
 */

/** How much of a request an event carries (`Metadata` or `Request`; there is no `RequestResponse`). */
export type AuditLevel = "Metadata" | "Request";

/** The stage of a request an event reports. */
export type AuditStage = "RequestReceived" | "ResponseStarted" | "ResponseComplete";

/** `audit.k8s.io/v1` `ObjectReference`: what a resource request names. */
export interface AuditObjectRef {
  /** The plural resource (`deployments`). */
  resource: string;
  /** The namespace, absent for cluster-scoped requests. */
  namespace?: string;
  /** The object's name, absent for collections. */
  name?: string;
  /** The API group, absent for the core group. */
  apiGroup?: string;
  /** The API version (`v1`). */
  apiVersion: string;
  /** The subresource (`status`, `portforward`). */
  subresource?: string;
}

/** The answer, as an audit event reports it (`metav1.Status`, `code` always set). */
export interface AuditResponseStatus {
  metadata: Record<string, never>;
  /** `Failure` on an error answer; absent on success. */
  status?: "Failure";
  message?: string;
  reason?: string;
  code: number;
}

/** One `audit.k8s.io/v1` `Event`. */
export interface AuditEvent {
  kind: "Event";
  apiVersion: "audit.k8s.io/v1";
  level: AuditLevel;
  /** The same in every stage of one request. */
  auditID: string;
  stage: AuditStage;
  /** The path and query, as requested. */
  requestURI: string;
  /** The Kubernetes verb (`get`, `list`, `create`, …), or the HTTP method in lower case for a non-resource path. */
  verb: string;
  /** Who asked: empty when authentication failed. */
  user: { username?: string; groups?: string[] };
  userAgent?: string;
  /** What a resource request names. */
  objectRef?: AuditObjectRef;
  /** Absent in the `RequestReceived` stage. */
  responseStatus?: AuditResponseStatus;
  /** The request's body as JSON, at level `Request`, when it had one. */
  requestObject?: unknown;
  /** RFC 3339 with microseconds. */
  requestReceivedTimestamp: string;
  stageTimestamp: string;
}

/** Where the server sends its audit events (`--audit-webhook-config-file`, in-process). */
export interface AuditOptions {
  /** The level of every event. Default `Metadata`. */
  level?: AuditLevel;
  /**
   * Gets each event as it happens. What it throws is logged and otherwise
   * ignored, as a failing audit backend does not fail requests.
   */
  sink: (event: AuditEvent) => void;
}

/** What the server knows of a request before handling it. */
export interface AuditedRequest {
  requestURI: string;
  verb: string;
  objectRef?: AuditObjectRef;
  userAgent?: string;
}

/** `2030-01-01T00:00:00.123000Z`: RFC 3339 with microseconds, as `metav1.MicroTime` prints. */
function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, "000Z");
}

/**
 * The audit events of one request, stage by stage.
 *
 * @example
 * ```ts
 * import { RequestAudit, type AuditEvent } from "./audit.ts";
 *
 * const events: AuditEvent[] = [];
 * const audit = new RequestAudit({ sink: (e) => events.push(e) }, {
 *   requestURI: "/api/v1/namespaces",
 *   verb: "list",
 *   objectRef: { resource: "namespaces", apiVersion: "v1" },
 * }, () => {});
 * audit.received({ username: "admin", groups: ["system:masters"] });
 * audit.completed({ metadata: {}, code: 200 });
 * if (events.map((e) => e.stage).join() !== "RequestReceived,ResponseComplete") throw new Error();
 * ```
 */
export class RequestAudit {
  #options: AuditOptions;
  #request: AuditedRequest;
  #log: (line: string) => void;
  #now: () => Date;
  #received: string;
  #user: AuditEvent["user"] = {};
  #requestObject: unknown = undefined;

  /** The request's audit ID. */
  readonly auditID: string = crypto.randomUUID();

  /**
   * @param options the level and the sink
   * @param request the URI, verb and object of the request
   * @param log where a sink's failure is reported
   * @param now the clock
   */
  constructor(
    options: AuditOptions,
    request: AuditedRequest,
    log: (line: string) => void,
    now: () => Date = () => new Date(),
  ) {
    this.#options = options;
    this.#request = request;
    this.#log = log;
    this.#now = now;
    this.#received = microTime(now());
  }

  /**
   * Keeps a copy of the request's body, as it came, for the later stages (at
   * level `Request`): the handler may change the parsed body as it goes.
   *
   * @param body the parsed JSON body
   */
  set requestObject(body: unknown) {
    this.#requestObject = structuredClone(body);
  }

  /**
   * The `RequestReceived` stage, once the user is known.
   *
   * @param user who the credentials are
   */
  received(user: { username: string; groups: string[] }): void {
    this.#user = { username: user.username, groups: [...user.groups] };
    this.#emit("RequestReceived", undefined);
  }

  /**
   * The `ResponseStarted` stage: headers sent of a long-running request, or
   * the 401 of a failed authentication (then the only stage).
   *
   * @param status the answer
   */
  started(status: AuditResponseStatus): void {
    this.#emit("ResponseStarted", status);
  }

  /**
   * The `ResponseComplete` stage.
   *
   * @param status the answer
   */
  completed(status: AuditResponseStatus): void {
    this.#emit("ResponseComplete", status);
  }

  #emit(stage: AuditStage, status: AuditResponseStatus | undefined): void {
    const level = this.#options.level ?? "Metadata";
    const { objectRef, userAgent } = this.#request;
    const event: AuditEvent = {
      kind: "Event",
      apiVersion: "audit.k8s.io/v1",
      level,
      auditID: this.auditID,
      stage,
      requestURI: this.#request.requestURI,
      verb: this.#request.verb,
      user: structuredClone(this.#user),
      ...(userAgent ? { userAgent } : {}),
      ...(objectRef ? { objectRef: { ...objectRef } } : {}),
      ...(status ? { responseStatus: { ...status } } : {}),
      ...(level === "Request" && stage !== "RequestReceived" && this.#requestObject !== undefined
        ? { requestObject: structuredClone(this.#requestObject) }
        : {}),
      requestReceivedTimestamp: this.#received,
      stageTimestamp: microTime(this.#now()),
    };
    try {
      this.#options.sink(event);
    } catch (error) {
      this.#log(`apiserver: audit sink failed on ${stage} of ${this.auditID}: ${error}`);
    }
  }
}
