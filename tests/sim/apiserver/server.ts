/**
 * A fake Kubernetes API server over HTTPS, faithful enough for clients
 * nobody here wrote (`kubectl` 1.20, python-kubernetes, client-node):
 * bearer-token authentication (static tokens and audience-bound
 * service-account tokens, `tokens.ts`), an authorizer the caller gives (RBAC
 * in the simulated cluster), discovery, the REST verbs
 * (get, list, watch, create, update, patch, delete, deletecollection) on the
 * resources of {@linkcode RESOURCES}, `status` and `scale` subresources,
 * the reviews (`TokenReview`, `SubjectAccessReview`,
 * `SelfSubjectAccessReview`, `SelfSubjectReview`) and `TokenRequest`
 * (`serviceaccounts/NAME/token`), server-side Table printing,
 * `pods/portforward` over WebSocket as the kubelet serves it, `pods/log`
 * from a log source the caller gives (`pod_log.ts`), and audit events of
 * every request (`audit.ts`).
 *
 * ```
 *   kubectl / python / vif ──HTTPS (h2 or http/1.1), Bearer token──► startApiServer()
 *                                                                   │  authn → authz → route
 *                                                                   ├─ discovery, /version, /openapi/v2
 *                                                                   ├─ REST ──► Store ◄── in-process controllers
 *                                                                   ├─ tokenreviews, serviceaccounts/NAME/token ──► tokens table
 *                                                                   ├─ pods/NAME/portforward (WebSocket v4.channel.k8s.io)
 *                                                                   │     └─ dialPod(ns, pod, podIP, port) ──► pod
 *                                                                   └─ pods/NAME/log ──► podLogs(ns, pod, container, run)
 * ```
 *
 * @example
 * ```ts ignore
 * const api = await startApiServer({
 *   tls: { cert, key },
 *   tokens: { "admin-token": { user: "admin", groups: ["system:masters"] } },
 *   serviceCidr: "198.19.0.0/18",
 * });
 * api.store.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } });
 * await api.close();
 * ```
 *
 * @module
 */

import {
  ApiError,
  badRequest,
  forbiddenByRbac,
  internalError,
  methodNotAllowed,
  notFound,
  pathNotFound,
  type Status,
  successStatus,
  unauthorized,
  unsupportedMediaType,
} from "./status.ts";
import { apiGroups, apiVersionOf, resourceAt, type ResourceInfo, RESOURCES } from "./resources.ts";
import { type KubeObject, type ListOptions, Store, type StoreEvent } from "./store.ts";
import { initialStatus } from "./_strategy.ts";
import { jsonPatch, mergePatch, strategicMergePatch } from "./patch.ts";
import { type IncludeObject, toTable } from "./_table.ts";
import { OPENAPI_V2_PROTOBUF, openApiV2Json, openApiV2Protobuf } from "./_openapi.ts";
import {
  choosePortForwardProtocol,
  parsePorts,
  type PodConnection,
  PORT_FORWARD_PROTOCOLS,
  type PortForwardHandle,
  servePortForward,
} from "./portforward.ts";
import { labelSelectorText } from "./selectors.ts";
import { podLogBody, type PodLogSource } from "./pod_log.ts";
import { startTlsFront, type TlsFront } from "./_tls_front.ts";
import {
  type AuditObjectRef,
  type AuditOptions,
  type AuditResponseStatus,
  RequestAudit,
} from "./audit.ts";
import {
  API_AUDIENCE,
  authenticateToken,
  issueServiceAccountToken,
  jwtClaims,
  type TokenInfo,
} from "./tokens.ts";

export type { TokenInfo } from "./tokens.ts";

/** The version `/version` reports. */
export const SERVER_VERSION = {
  major: "1",
  minor: "33",
  gitVersion: "v1.33.1",
  gitCommit: "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
  gitTreeState: "clean",
  buildDate: "2025-05-15T08:19:08Z",
  goVersion: "go1.24.2",
  compiler: "gc",
  platform: "linux/amd64",
} as const;

/** What an authorizer answers: allowed or not, and why (kube-apiserver's reason). */
export interface AuthorizationDecision {
  allowed: boolean;
  /**
   * Why: on an allowed SelfSubjectAccessReview it is the review's `reason`; on
   * a denied request it follows the 403 message after `: ` (RBAC's reason when
   * a binding names a missing role). Empty or absent: nothing is added.
   */
  reason?: string;
}

/** What the authorizer is asked. */
export interface AuthorizationAttributes {
  /** The token's user. */
  user: string;
  /** Its groups, `system:authenticated` included. */
  groups: string[];
  /** `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`. */
  verb: string;
  /** The API group, `""` for core. */
  group: string;
  /** The plural resource (`pods`). */
  resource: string;
  /** The subresource (`portforward`, `status`), or `""`. */
  subresource: string;
  /** The namespace, or `""` for cluster scope. */
  namespace: string;
  /**
   * The object's name, or `""` for collections; a list or watch with a
   * `metadata.name=` field selector names that object, as kube-apiserver's
   * request info does (so RBAC `resourceNames` can allow it).
   */
  name: string;
}

/** Options of {@linkcode startApiServer}. */
export interface ApiServerOptions {
  /** Address to listen on. Default `127.0.0.1`. */
  hostname?: string;
  /** Port to listen on. Default 0 (any free port). */
  port?: number;
  /** The server certificate (chain) and key, PEM. */
  tls: { cert: string; key: string };
  /**
   * Bearer tokens and who they are. Read on every request, so keys added
   * later count; a TokenRequest adds to it (see `tokens.ts`).
   */
  tokens: Record<string, TokenInfo>;
  /** The audiences of the API server itself (`--api-audiences`). Default `[API_AUDIENCE]`. */
  apiAudiences?: string[];
  /** The service CIDR (IPv4) ClusterIPs are allocated from. */
  serviceCidr: string;
  /**
   * Opens a TCP connection to a pod's port for `pods/portforward` (the
   * kubelet connects to localhost inside the pod's network namespace).
   * Default: `Deno.connect` to `podIP:port` from this process. A rejection's
   * message goes to the client on the port's error channel.
   */
  dialPod?: (
    namespace: string,
    podName: string,
    podIP: string,
    port: number,
  ) => Promise<PodConnection>;
  /**
   * Where `pods/log` reads a container run's lines (the kubelet's side).
   * Default: none, and every log is empty. {@linkcode ApiServer.podLogs} can
   * change it later.
   */
  podLogs?: PodLogSource;
  /** Log lines, each starting `apiserver: `. Default: none. */
  log?: (line: string) => void;
  /**
   * Decides every resource request (after the `limited` rule); without it,
   * every authenticated request is allowed. Non-resource paths (discovery,
   * `/version`) are not asked, as a real cluster allows them to everyone.
   */
  authorize?: (attributes: AuthorizationAttributes) => boolean | AuthorizationDecision;
  /** The address the `default/kubernetes` Endpoints names. Default: `hostname` if it is an IPv4 address, else 127.0.0.1. */
  advertiseAddress?: string;
  /**
   * The port the `default/kubernetes` Endpoints names, when clients reach the
   * server through a relay on another port (the simulated node's :6443).
   * Default: the port it listens on.
   */
  advertisePort?: number;
  /** Use this store instead of a new one (its service CIDR wins). */
  store?: Store;
  /** Events kept for resumed watches. Default 1000. */
  historySize?: number;
  /** How long a deleted namespace stays Terminating. Default 300 ms. */
  namespaceDeletionDelayMs?: number;
  /** A CA bundle to publish as ConfigMap `kube-root-ca.crt` in every namespace. */
  rootCaPem?: string;
  /** Interval of BOOKMARK events for watches with `allowWatchBookmarks=true`. Default 10 s. */
  bookmarkIntervalMs?: number;
  /** Audit events of every request, to a sink (see `audit.ts`). Default: none. */
  audit?: AuditOptions;
}

/** A running API server. */
export interface ApiServer {
  /** `https://127.0.0.1:PORT` */
  url: string;
  /** The address it listens on. */
  hostname: string;
  /** The port it listens on. */
  port: number;
  /** The objects; write here to play a controller or a kubelet. */
  store: Store;
  /**
   * Where `pods/log` reads the lines, asked on every request: set it to feed
   * logs to a test (see {@linkcode ApiServerOptions.podLogs}).
   */
  podLogs: PodLogSource | undefined;
  /** Ends every watch and port-forward and stops listening. */
  close(): Promise<void>;
}

interface User {
  name: string;
  groups: string[];
  limited: boolean;
}

interface RequestInfo {
  verb: string;
  info: ResourceInfo;
  namespace: string;
  name: string;
  subresource: string;
  /** The name the authorizer is given: `name`, or a list's `metadata.name` field selector. */
  authzName: string;
}

const JSON_HEADERS = {
  "content-type": "application/json",
  "cache-control": "no-cache, private",
};

function respond(code: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status: code,
    headers: { ...JSON_HEADERS, "audit-id": crypto.randomUUID() },
  });
}

function statusResponse(status: Status): Response {
  return respond(status.code, status);
}

/** Names the request's audit ID in the `Audit-Id` header, where the response lets headers change. */
function setAuditId(response: Response, auditID: string): void {
  try {
    response.headers.set("audit-id", auditID);
  } catch {
    // An upgrade's headers are fixed; its audit events still carry the ID.
  }
}

function mediaType(req: Request): string {
  return (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
}

async function readJson(req: Request): Promise<unknown> {
  const type = mediaType(req);
  const text = await req.text();
  if (text.trim() === "") return undefined;
  if (type !== "" && type !== "application/json" && !type.endsWith("+json")) {
    throw unsupportedMediaType(type);
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw badRequest(
      `couldn't get version/kind; json parse error: ${
        cause instanceof Error ? cause.message : cause
      }`,
    );
  }
}

/** Go's `strconv.ParseBool` truth, which query booleans go through (`watch=True` from python). */
function queryBool(v: string | null): boolean {
  return v !== null && ["1", "t", "T", "TRUE", "true", "True"].includes(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` → `meta.k8s.io/v1`. */
function tableVersion(req: Request): string | undefined {
  for (const part of (req.headers.get("accept") ?? "").split(",")) {
    const [type, ...params] = part.split(";").map((s) => s.trim());
    const p = Object.fromEntries(params.map((x) => x.split("=").map((s) => s.trim())));
    if (type === "application/json" && p.as === "Table" && p.g === "meta.k8s.io") {
      if (p.v === "v1" || p.v === "v1beta1") return `meta.k8s.io/${p.v}`;
    }
    if ((type === "application/json" || type === "*/*") && p.as === undefined) return undefined;
  }
  return undefined;
}

function listKind(info: ResourceInfo): string {
  return `${info.kind}List`;
}

/** Items of a typed list carry no kind/apiVersion, as the real server writes them. */
function asItem(o: KubeObject): KubeObject {
  const { kind: _k, apiVersion: _a, ...rest } = o;
  return rest as KubeObject;
}

function discoveryResources(group: string, version: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const r of RESOURCES) {
    if (r.group !== group || r.version !== version) continue;
    out.push({
      name: r.resource,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: r.verbs,
      ...(r.shortNames ? { shortNames: r.shortNames } : {}),
      ...(r.categories ? { categories: r.categories } : {}),
      storageVersionHash: r.storageVersionHash,
    });
    for (const s of r.subresources) {
      out.push({
        name: `${r.resource}/${s.name}`,
        singularName: "",
        namespaced: r.namespaced,
        ...(s.group !== undefined ? { group: s.group, version: s.version } : {}),
        kind: s.kind,
        verbs: s.verbs,
      });
    }
  }
  return out;
}

/**
 * Starts the fake API server.
 *
 * @param options address, TLS, tokens, service CIDR, pod dialer, log
 * @returns the running server
 * @throws {Deno.errors.AddrInUse} when the port is taken
 */
export function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const log = options.log ?? (() => {});
  const store = options.store ?? new Store({
    serviceCidr: options.serviceCidr,
    ...(options.historySize !== undefined ? { historySize: options.historySize } : {}),
    ...(options.namespaceDeletionDelayMs !== undefined
      ? { namespaceDeletionDelayMs: options.namespaceDeletionDelayMs }
      : {}),
    ...(options.rootCaPem !== undefined ? { rootCaPem: options.rootCaPem } : {}),
  });
  const dialPod = options.dialPod ??
    ((_ns: string, _pod: string, ip: string, port: number) => Deno.connect({ hostname: ip, port }));
  const bookmarkMs = options.bookmarkIntervalMs ?? 10_000;
  let podLogs = options.podLogs;
  const apiAudiences = options.apiAudiences ?? [API_AUDIENCE];
  const watches = new Set<() => void>();
  const forwards = new Set<PortForwardHandle>();
  let serverAddress = "";
  const audits = new WeakMap<Request, RequestAudit>();

  /** The JSON body, kept for the request's audit events. */
  async function readBody(req: Request): Promise<unknown> {
    const body = await readJson(req);
    const audit = audits.get(req);
    if (audit) audit.requestObject = body;
    return body;
  }

  /** The verb and object an audit event names; for a path that is no resource, the method. */
  function auditTarget(
    parts: string[],
    req: Request,
    url: URL,
  ): { verb: string; objectRef?: AuditObjectRef; longRunning: boolean } {
    let ri: RequestInfo;
    try {
      ri = parseResourcePath(parts, req, new URL(url));
    } catch {
      return { verb: req.method.toLowerCase(), longRunning: false };
    }
    const name = ri.name || ri.authzName;
    return {
      verb: ri.verb,
      objectRef: {
        resource: ri.info.resource,
        ...(ri.namespace ? { namespace: ri.namespace } : {}),
        ...(name ? { name } : {}),
        ...(ri.info.group ? { apiGroup: ri.info.group } : {}),
        apiVersion: ri.info.version,
        ...(ri.subresource ? { subresource: ri.subresource } : {}),
      },
      longRunning: ri.verb === "watch" || ri.subresource === "portforward",
    };
  }

  function authenticate(req: Request): User {
    const header = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
    if (!m) throw unauthorized();
    const r = authenticateToken(options.tokens, store, m[1]!, { apiAudiences });
    if (!r.authenticated) throw unauthorized();
    const user = { name: r.user.username, groups: r.user.groups, limited: r.limited };
    return impersonated(req, user) ?? user;
  }

  /**
   * `Impersonate-User` (and `Impersonate-Group`), as the API server's
   * impersonation filter: the authenticated user needs `impersonate` on
   * `users` (and `groups`) of those names, and the request then is the
   * impersonated user's, in `system:authenticated` and the groups asked for.
   */
  function impersonated(req: Request, user: User): User | undefined {
    const name = req.headers.get("impersonate-user");
    const groups = (req.headers.get("impersonate-group") ?? "").split(",").map((g) => g.trim())
      .filter((g) => g !== "");
    if (name === null) {
      if (groups.length > 0) {
        throw badRequest("requested [Impersonate-Group] without impersonating a user");
      }
      return undefined;
    }
    const check = (resource: string, n: string) => {
      const a = {
        verb: "impersonate",
        group: "",
        resource,
        subresource: "",
        namespace: "",
        name: n,
      };
      if (!decide(user, a).allowed) {
        throw forbiddenByRbac({
          user: user.name,
          verb: "impersonate",
          group: "",
          resource,
          name: n,
        });
      }
    };
    check("users", name);
    for (const g of groups) check("groups", g);
    return { name, groups: [...new Set([...groups, "system:authenticated"])], limited: false };
  }

  function decide(
    user: User,
    a: Omit<AuthorizationAttributes, "user" | "groups">,
  ): AuthorizationDecision {
    if (user.limited && (a.resource === "secrets" || a.subresource === "portforward")) {
      return { allowed: false };
    }
    const d = options.authorize?.({ ...a, user: user.name, groups: user.groups }) ?? true;
    return typeof d === "boolean" ? { allowed: d } : d;
  }

  function authorize(user: User, ri: RequestInfo, verb = ri.verb): void {
    const a = {
      verb,
      group: ri.info.group,
      resource: ri.info.resource,
      subresource: ri.subresource,
      namespace: ri.namespace,
      name: ri.authzName,
    };
    const d = decide(user, a);
    if (!d.allowed) {
      throw forbiddenByRbac({
        user: user.name,
        verb,
        group: a.group,
        resource: a.resource,
        ...(a.subresource ? { subresource: a.subresource } : {}),
        ...(a.namespace ? { namespace: a.namespace } : {}),
        ...(a.name ? { name: a.name } : {}),
        ...(d.reason ? { reason: d.reason } : {}),
      });
    }
  }

  /** `metadata.name` of a field selector that requires exactly one name, as RequiresExactMatch finds it. */
  function selectedName(url: URL): string {
    for (const term of (url.searchParams.get("fieldSelector") ?? "").split(",")) {
      const m = /^\s*metadata\.name\s*==?\s*([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\s*$/.exec(term);
      if (m) return m[1]!;
    }
    return "";
  }

  function discovery(parts: string[], req: Request): Response | undefined {
    const path = "/" + parts.join("/");
    if (path === "/version") return respond(200, SERVER_VERSION);
    if (path === "/healthz" || path === "/livez" || path === "/readyz") {
      return new Response("ok", { headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    if (path === "/api") {
      return respond(200, {
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
      });
    }
    const groupEntry = (g: { group: string; version: string }) => ({
      name: g.group,
      versions: [{ groupVersion: `${g.group}/${g.version}`, version: g.version }],
      preferredVersion: { groupVersion: `${g.group}/${g.version}`, version: g.version },
    });
    if (path === "/apis") {
      return respond(200, {
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: apiGroups().map(groupEntry),
      });
    }
    if (path === "/api/v1") {
      return respond(200, {
        kind: "APIResourceList",
        groupVersion: "v1",
        resources: discoveryResources("", "v1"),
      });
    }
    if (parts[0] === "apis" && parts.length === 2) {
      const g = apiGroups().find((x) => x.group === parts[1]);
      if (!g) throw pathNotFound();
      return respond(200, { kind: "APIGroup", apiVersion: "v1", ...groupEntry(g) });
    }
    if (parts[0] === "apis" && parts.length === 3) {
      if (!apiGroups().some((x) => x.group === parts[1] && x.version === parts[2])) {
        throw pathNotFound();
      }
      return respond(200, {
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: `${parts[1]}/${parts[2]}`,
        resources: discoveryResources(parts[1]!, parts[2]!),
      });
    }
    if (path === "/openapi/v2") {
      const accept = req.headers.get("accept") ?? "";
      if (accept.includes("protobuf")) {
        return new Response(openApiV2Protobuf(SERVER_VERSION.gitVersion), {
          headers: { "content-type": OPENAPI_V2_PROTOBUF },
        });
      }
      return respond(200, openApiV2Json(SERVER_VERSION.gitVersion));
    }
    if (path === "/openapi/v3") return respond(200, { paths: {} });
    return undefined;
  }

  function parseResourcePath(parts: string[], req: Request, url: URL): RequestInfo {
    let group: string, version: string, rest: string[];
    if (parts[0] === "api" && parts.length >= 3) {
      group = "";
      version = parts[1]!;
      rest = parts.slice(2);
    } else if (parts[0] === "apis" && parts.length >= 4) {
      group = parts[1]!;
      version = parts[2]!;
      rest = parts.slice(3);
    } else {
      throw pathNotFound();
    }
    let watchPath = false;
    if (rest[0] === "watch") {
      watchPath = true;
      rest = rest.slice(1);
    }
    let namespace = "";
    if (rest[0] === "namespaces" && rest.length > 1) {
      namespace = rest[1]!;
      if (rest.length > 2 && rest[2] !== "status" && rest[2] !== "finalize") rest = rest.slice(2);
    }
    if (rest.length === 0 || rest.length > 3) throw pathNotFound();
    const [resource, name = "", subresource = ""] = rest;
    const info = resourceAt(group, version, resource!);
    if (!info) throw pathNotFound();
    if (info.namespaced && !namespace && name) throw pathNotFound();
    if (!info.namespaced && info.resource !== "namespaces" && namespace) throw pathNotFound();
    if (subresource && !info.subresources.some((s) => s.name === subresource)) {
      throw pathNotFound();
    }
    const isWatch = watchPath || queryBool(url.searchParams.get("watch"));
    let verb: string;
    switch (req.method) {
      case "GET":
      case "HEAD":
        verb = isWatch ? "watch" : name ? "get" : "list";
        break;
      case "POST":
        verb = "create";
        break;
      case "PUT":
        verb = "update";
        break;
      case "PATCH":
        verb = "patch";
        break;
      case "DELETE":
        verb = name ? "delete" : "deletecollection";
        break;
      default:
        throw methodNotAllowed(`the server does not allow this method on the requested resource`);
    }
    if (watchPath && name) {
      url.searchParams.set("fieldSelector", `metadata.name=${name}`);
      return { verb, info, namespace, name: "", subresource, authzName: name };
    }
    const authzName = name || (verb === "list" || verb === "watch" ? selectedName(url) : "");
    return { verb, info, namespace, name, subresource, authzName };
  }

  function listOptions(ri: RequestInfo, url: URL): ListOptions {
    return {
      ...(ri.info.namespaced && ri.namespace ? { namespace: ri.namespace } : {}),
      labelSelector: url.searchParams.get("labelSelector") ?? "",
      fieldSelector: url.searchParams.get("fieldSelector") ?? "",
    };
  }

  function render(req: Request, url: URL, info: ResourceInfo, o: KubeObject): unknown {
    const tv = tableVersion(req);
    if (!tv) return o;
    return toTable(info, [o], {
      apiVersion: tv,
      includeObject: (url.searchParams.get("includeObject") as IncludeObject) ?? "Metadata",
      metadata: { resourceVersion: o.metadata.resourceVersion },
      now: new Date(),
    });
  }

  function list(req: Request, url: URL, ri: RequestInfo): Response {
    let items = store.list(ri.info, listOptions(ri, url));
    const rv = store.resourceVersion;
    const key = (o: KubeObject) => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
    const cont = url.searchParams.get("continue");
    if (cont) {
      let start: string;
      try {
        start = JSON.parse(atob(cont)).start;
      } catch {
        throw badRequest(`continue key is not valid: ${cont}`);
      }
      items = items.filter((o) => key(o) > start);
    }
    const limit = Number(url.searchParams.get("limit") ?? "0");
    const metadata: Record<string, unknown> = { resourceVersion: rv };
    if (limit > 0 && items.length > limit) {
      const remaining = items.length - limit;
      items = items.slice(0, limit);
      metadata.continue = btoa(
        JSON.stringify({ v: "meta.k8s.io/v1", rv, start: key(items[limit - 1]!) }),
      );
      metadata.remainingItemCount = remaining;
    }
    const tv = tableVersion(req);
    if (tv) {
      return respond(
        200,
        toTable(ri.info, items, {
          apiVersion: tv,
          includeObject: (url.searchParams.get("includeObject") as IncludeObject) ?? "Metadata",
          metadata,
          now: new Date(),
        }),
      );
    }
    return respond(200, {
      kind: listKind(ri.info),
      apiVersion: apiVersionOf(ri.info),
      metadata,
      items: items.map(asItem),
    });
  }

  function watch(
    req: Request,
    url: URL,
    ri: RequestInfo,
    completed: Promise<void>,
  ): Response {
    const opts = listOptions(ri, url);
    const match = store.matcher(ri.info, opts);
    const tv = tableVersion(req);
    const includeObject = (url.searchParams.get("includeObject") as IncludeObject) ?? "Metadata";
    const rvParam = url.searchParams.get("resourceVersion") ?? "";
    const timeoutSeconds = Number(url.searchParams.get("timeoutSeconds") ?? "0");
    const bookmarks = queryBool(url.searchParams.get("allowWatchBookmarks"));
    const encoder = new TextEncoder();
    let stop = () => {};
    let headersSent = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let open = true;
        const timers: ReturnType<typeof setTimeout>[] = [];
        let unsubscribe = () => {};
        const emit = (type: string, object: unknown) => {
          if (!open) return;
          let obj = object;
          if (tv && type !== "ERROR" && type !== "BOOKMARK") {
            obj = toTable(ri.info, [object as KubeObject], {
              apiVersion: tv,
              includeObject,
              metadata: { resourceVersion: (object as KubeObject).metadata.resourceVersion },
              now: new Date(),
              noHeaders: headersSent,
            });
            headersSent = true;
          }
          try {
            controller.enqueue(encoder.encode(JSON.stringify({ type, object: obj }) + "\n"));
          } catch {
            stop();
          }
        };
        stop = () => {
          if (!open) return;
          open = false;
          unsubscribe();
          for (const t of timers) clearTimeout(t), clearInterval(t);
          watches.delete(stop);
          try {
            controller.close();
          } catch { /* already closed */ }
        };
        watches.add(stop);
        const onEvent = (e: StoreEvent) => {
          if (e.resource !== ri.info) return;
          const now = e.type !== "DELETED" && match(e.object);
          const before = e.oldObject !== undefined && match(e.oldObject);
          if (e.type === "ADDED" && now) emit("ADDED", e.object);
          else if (e.type === "MODIFIED") {
            if (now && before) emit("MODIFIED", e.object);
            else if (now) emit("ADDED", e.object);
            else if (before) {
              const gone = structuredClone(e.oldObject!);
              gone.metadata.resourceVersion = String(e.resourceVersion);
              emit("DELETED", gone);
            }
          } else if (e.type === "DELETED" && match(e.object)) emit("DELETED", e.object);
        };
        if (rvParam === "" || rvParam === "0") {
          for (const o of store.list(ri.info, opts)) emit("ADDED", o);
        } else {
          const since = Number(rvParam);
          if (!Number.isInteger(since) || since < 0) {
            emit("ERROR", badRequest(`invalid resource version: ${rvParam}`).status);
            stop();
            return;
          }
          try {
            for (const e of store.eventsSince(since)) onEvent(e);
          } catch (error) {
            if (error instanceof ApiError) {
              emit("ERROR", error.status);
              stop();
              return;
            }
            throw error;
          }
        }
        unsubscribe = store.watch(onEvent);
        if (timeoutSeconds > 0) timers.push(setTimeout(stop, timeoutSeconds * 1000));
        if (bookmarks) {
          timers.push(setInterval(() => {
            emit("BOOKMARK", {
              kind: ri.info.kind,
              apiVersion: apiVersionOf(ri.info),
              metadata: { resourceVersion: store.resourceVersion },
            });
          }, bookmarkMs));
        }
        // Settles when the client has the whole body or went away.
        completed.then(() => stop(), () => stop());
      },
      cancel() {
        stop();
      },
    });
    return new Response(body, {
      status: 200,
      headers: { ...JSON_HEADERS, "audit-id": crypto.randomUUID() },
    });
  }

  function checkBody(ri: RequestInfo, body: unknown): KubeObject {
    if (!isObject(body)) {
      throw badRequest("the object provided is unrecognized (must be a JSON object)");
    }
    const o = body as KubeObject;
    const want = apiVersionOf(ri.info);
    if (o.apiVersion !== undefined && o.apiVersion !== want) {
      throw badRequest(
        `the API version in the data (${o.apiVersion}) does not match the expected API version (${want})`,
      );
    }
    if (o.kind !== undefined && o.kind !== ri.info.kind) {
      throw badRequest(
        `the kind in the data (${o.kind}) does not match the expected kind (${ri.info.kind})`,
      );
    }
    if (!isObject(o.metadata)) o.metadata = {};
    if (ri.info.namespaced) {
      if (o.metadata.namespace && o.metadata.namespace !== ri.namespace) {
        throw badRequest(
          "the namespace of the provided object does not match the namespace sent on the request",
        );
      }
      o.metadata.namespace = ri.namespace;
    }
    return o;
  }

  function dryRun(url: URL, body?: unknown): boolean {
    if (url.searchParams.getAll("dryRun").includes("All")) return true;
    return isObject(body) && Array.isArray(body.dryRun) && body.dryRun.includes("All");
  }

  function current(ri: RequestInfo): KubeObject {
    const o = store.getIn(ri.info, ri.namespace, ri.name);
    if (!o) throw notFound({ group: ri.info.group, resource: ri.info.resource }, ri.name);
    return o;
  }

  function toScale(d: KubeObject): Record<string, unknown> {
    const spec = (d.spec ?? {}) as Record<string, unknown>;
    const status = (d.status ?? {}) as Record<string, unknown>;
    return {
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      metadata: {
        name: d.metadata.name,
        namespace: d.metadata.namespace,
        uid: d.metadata.uid,
        resourceVersion: d.metadata.resourceVersion,
        creationTimestamp: d.metadata.creationTimestamp,
      },
      spec: { replicas: spec.replicas ?? 1 },
      status: {
        replicas: Number(status.replicas) || 0,
        selector: labelSelectorText(spec.selector),
      },
    };
  }

  /** The object a PUT or PATCH result becomes, given which part the request may change. */
  function merged(ri: RequestInfo, now: KubeObject, next: KubeObject): KubeObject {
    next.metadata ??= {};
    next.metadata.name = ri.name;
    if (ri.info.namespaced) next.metadata.namespace = ri.namespace;
    if (ri.subresource === "status") {
      const out = structuredClone(now);
      out.status = next.status;
      out.metadata.resourceVersion = next.metadata.resourceVersion;
      return out;
    }
    if (ri.info.hasStatus) {
      if (now.status === undefined) delete next.status;
      else next.status = now.status;
    }
    return next;
  }

  function applyPatch(req: Request, target: unknown, patch: unknown): unknown {
    const type = mediaType(req);
    try {
      switch (type) {
        case "application/merge-patch+json":
          return mergePatch(target, patch);
        case "application/strategic-merge-patch+json":
          return strategicMergePatch(target, patch);
        case "application/json-patch+json":
          return jsonPatch(target, patch);
        case "application/apply-patch+yaml":
          // Server-side apply, simplified: a JSON body merged in.
          return mergePatch(target, patch);
        default:
          throw unsupportedMediaType(type);
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
      throw new ApiError({
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: error instanceof Error ? error.message : String(error),
        reason: "Invalid",
        code: 422,
      });
    }
  }

  function portForward(req: Request, url: URL, ri: RequestInfo): Response {
    const pod = current(ri);
    const upgrade = (req.headers.get("upgrade") ?? "").toLowerCase();
    if (upgrade.startsWith("spdy")) {
      throw badRequest(
        "SPDY port-forward is not served by this simulated API server: use a WebSocket client (v4.channel.k8s.io)",
      );
    }
    if (upgrade !== "websocket") throw badRequest("Upgrade request required");
    const status = (pod.status ?? {}) as Record<string, unknown>;
    const phase = String(status.phase ?? "Pending");
    if (phase !== "Running") {
      throw badRequest(
        `pod ${ri.name} is not running and cannot be port-forwarded: its phase is ${phase}`,
      );
    }
    let ports: number[];
    try {
      ports = parsePorts(url.searchParams.getAll("ports"));
    } catch (error) {
      throw badRequest((error as Error).message);
    }
    const offered = req.headers.get("sec-websocket-protocol");
    const protocol = choosePortForwardProtocol(offered);
    if (protocol === undefined) {
      throw badRequest(
        `requested protocol(s) are not supported: [${offered}]; supports [${
          PORT_FORWARD_PROTOCOLS.join(" ")
        }]`,
      );
    }
    const podIP = String(status.podIP ?? "");
    let handle: PortForwardHandle | undefined = undefined;
    const served = servePortForward(req, {
      ports,
      protocol,
      podName: `${ri.namespace}/${ri.name}`,
      uid: pod.metadata.uid ?? "",
      log,
      dial: (port) => {
        if (!podIP && !options.dialPod) {
          return Promise.reject(new Error("the pod has no IP address"));
        }
        return dialPod(ri.namespace, ri.name, podIP, port);
      },
      onClose: () => {
        if (handle) forwards.delete(handle);
      },
    });
    handle = served.handle;
    forwards.add(handle);
    return served.response;
  }

  /** `POST tokenreviews`: who a token is, for the audiences asked (the API's when none). */
  function tokenReview(body: unknown): Record<string, unknown> {
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    const token = typeof spec.token === "string" ? spec.token : "";
    if (!token) throw badRequest("token is required for TokenReview in authentication");
    const audiences = Array.isArray(spec.audiences)
      ? spec.audiences.filter((a): a is string => typeof a === "string")
      : [];
    const r = authenticateToken(options.tokens, store, token, { audiences, apiAudiences });
    // `authenticated` is omitempty: a failed review leaves it out, and `user` is an empty object.
    const status = r.authenticated
      ? { authenticated: true, user: r.user, audiences: r.audiences }
      : { user: {}, ...(r.error ? { error: r.error } : {}) };
    return {
      kind: "TokenReview",
      apiVersion: "authentication.k8s.io/v1",
      metadata: { creationTimestamp: null },
      spec,
      status,
    };
  }

  /** `POST subjectaccessreviews`: whether the user in the spec may do what it asks. */
  function subjectAccessReview(body: unknown): Record<string, unknown> {
    const spec = (isObject(body) && isObject(body.spec) ? body.spec : {}) as Record<
      string,
      unknown
    >;
    const ra = (isObject(spec.resourceAttributes) ? spec.resourceAttributes : undefined) as
      | Record<string, string>
      | undefined;
    const groups = Array.isArray(spec.groups) ? spec.groups.map(String) : [];
    const user: User = { name: String(spec.user ?? ""), groups, limited: false };
    const d: AuthorizationDecision = ra
      ? decide(user, {
        verb: ra.verb ?? "",
        group: ra.group ?? "",
        resource: ra.resource ?? "",
        subresource: ra.subresource ?? "",
        namespace: ra.namespace ?? "",
        name: ra.name ?? "",
      })
      : { allowed: false };
    return {
      kind: "SubjectAccessReview",
      apiVersion: "authorization.k8s.io/v1",
      metadata: { creationTimestamp: null },
      spec,
      status: { allowed: d.allowed, ...(d.reason ? { reason: d.reason } : {}) },
    };
  }

  /** `POST serviceaccounts/NAME/token`: a TokenRequest. */
  function tokenRequest(ri: RequestInfo, body: unknown): Record<string, unknown> {
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    const bound = isObject(spec.boundObjectRef) ? spec.boundObjectRef : undefined;
    if (bound && bound.kind !== "Pod") {
      throw badRequest(
        `spec.boundObjectRef.kind: Unsupported value: ${
          JSON.stringify(bound.kind)
        }: supported values: "Pod"`,
      );
    }
    const pod = bound
      ? store.get({ resource: "pods", namespace: ri.namespace, name: String(bound.name ?? "") })
      : undefined;
    if (bound && !pod) throw notFound({ group: "", resource: "pods" }, String(bound.name ?? ""));
    const issued = issueServiceAccountToken(options.tokens, store, {
      namespace: ri.namespace,
      serviceAccount: ri.name,
      ...(Array.isArray(spec.audiences) ? { audiences: spec.audiences.map(String) } : {}),
      ...(typeof spec.expirationSeconds === "number"
        ? { expirationSeconds: spec.expirationSeconds }
        : {}),
      ...(pod
        ? {
          pod: { name: pod.metadata.name!, uid: String(bound!.uid ?? pod.metadata.uid) },
          ...((pod.spec as { nodeName?: string })?.nodeName
            ? { node: (pod.spec as { nodeName: string }).nodeName }
            : {}),
        }
        : {}),
    }, { apiAudiences });
    return {
      kind: "TokenRequest",
      apiVersion: "authentication.k8s.io/v1",
      metadata: { name: ri.name, namespace: ri.namespace, creationTimestamp: null },
      spec: {
        ...spec,
        audiences: jwtClaims(issued.token)?.aud ?? [],
        expirationSeconds: typeof spec.expirationSeconds === "number"
          ? spec.expirationSeconds
          : 3600,
      },
      status: { token: issued.token, expirationTimestamp: issued.expirationTimestamp },
    };
  }

  async function resource(
    req: Request,
    url: URL,
    parts: string[],
    user: User,
    completed: Promise<void>,
  ): Promise<Response> {
    const ri = parseResourcePath(parts, req, url);
    const { info } = ri;
    if (ri.subresource === "log") {
      if (req.method !== "GET") {
        throw methodNotAllowed("the server does not allow this method on the requested resource");
      }
      authorize(user, ri, "get");
      return new Response(podLogBody(current(ri), url, podLogs), {
        status: 200,
        headers: { "content-type": "text/plain", "cache-control": "no-cache, private" },
      });
    }
    if (ri.subresource === "portforward") {
      if (req.method !== "GET" && req.method !== "POST") {
        throw methodNotAllowed("the server does not allow this method on the requested resource");
      }
      // A WebSocket upgrade (GET) is authorized as "create" too, as
      // AuthorizePodWebsocketUpgradeCreatePermission does since 1.31.
      authorize(user, ri, "create");
      return portForward(req, url, ri);
    }
    const sub = ri.subresource
      ? info.subresources.find((s) => s.name === ri.subresource)
      : undefined;
    const allowedVerbs = sub ? sub.verbs : info.verbs;
    const verbForCheck = ri.verb === "watch" && ri.name ? "get" : ri.verb;
    if (
      !allowedVerbs.includes(verbForCheck) ||
      (ri.name && ri.verb === "create" && !sub) ||
      (!ri.name && (ri.verb === "update" || ri.verb === "patch"))
    ) {
      throw methodNotAllowed("the server does not allow this method on the requested resource");
    }
    authorize(user, ri);

    switch (ri.verb) {
      case "get": {
        const o = current(ri);
        if (ri.subresource === "scale") return respond(200, toScale(o));
        return respond(200, render(req, url, info, o));
      }
      case "list":
        return list(req, url, ri);
      case "watch":
        return watch(req, url, ri, completed);
      case "create": {
        const body = await readBody(req);
        if (info.kind === "SelfSubjectReview") {
          // `kubectl auth whoami`: who the request's credentials are.
          return respond(201, {
            kind: "SelfSubjectReview",
            apiVersion: "authentication.k8s.io/v1",
            metadata: { creationTimestamp: null },
            status: { userInfo: { username: user.name, groups: user.groups } },
          });
        }
        if (info.kind === "TokenReview") return respond(201, tokenReview(body));
        if (info.kind === "SubjectAccessReview") return respond(201, subjectAccessReview(body));
        if (ri.subresource === "token") return respond(201, tokenRequest(ri, body));
        if (info.kind === "SelfSubjectAccessReview") {
          const spec = (isObject(body) && isObject(body.spec) ? body.spec : {}) as Record<
            string,
            Record<string, string>
          >;
          const ra = spec.resourceAttributes;
          const d: AuthorizationDecision = ra
            ? decide(user, {
              verb: ra.verb ?? "",
              group: ra.group ?? "",
              resource: ra.resource ?? "",
              subresource: ra.subresource ?? "",
              namespace: ra.namespace ?? "",
              name: ra.name ?? "",
            })
            : { allowed: true };
          return respond(201, {
            kind: "SelfSubjectAccessReview",
            apiVersion: "authorization.k8s.io/v1",
            metadata: { creationTimestamp: null },
            spec,
            status: { allowed: d.allowed, ...(d.reason ? { reason: d.reason } : {}) },
          });
        }
        const o = checkBody(ri, body);
        if (info.hasStatus) {
          const s = initialStatus(info);
          if (s === undefined) delete o.status;
          else o.status = s;
        }
        return respond(201, store.createIn(info, o, { dryRun: dryRun(url) }));
      }
      case "update": {
        const body = await readBody(req);
        if (ri.subresource === "scale") {
          const replicas = isObject(body) && isObject(body.spec) ? body.spec.replicas : undefined;
          const d = current(ri);
          (d.spec as Record<string, unknown>).replicas = replicas;
          return respond(200, toScale(store.updateIn(info, d, { dryRun: dryRun(url) })));
        }
        if (ri.subresource === "finalize") {
          const d = current(ri);
          const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
          d.spec = {
            ...(d.spec as Record<string, unknown> ?? {}),
            finalizers: spec.finalizers ?? [],
          };
          return respond(200, store.updateIn(info, d, { dryRun: dryRun(url) }));
        }
        const o = checkBody(ri, body);
        if ((o.metadata.name ?? "") !== ri.name) {
          throw badRequest(
            `the name of the object (${
              o.metadata.name ?? ""
            }) does not match the name on the URL (${ri.name})`,
          );
        }
        const now = current(ri);
        return respond(200, store.updateIn(info, merged(ri, now, o), { dryRun: dryRun(url) }));
      }
      case "patch": {
        const patch = await readBody(req);
        const now = current(ri);
        if (ri.subresource === "scale") {
          const scaled = applyPatch(req, toScale(now), patch) as Record<string, unknown>;
          const replicas = isObject(scaled.spec) ? scaled.spec.replicas : undefined;
          (now.spec as Record<string, unknown>).replicas = replicas;
          return respond(200, toScale(store.updateIn(info, now, { dryRun: dryRun(url) })));
        }
        const patched = applyPatch(req, now, patch);
        if (!isObject(patched)) throw badRequest("the patch result is not an object");
        const o = patched as KubeObject;
        if (!isObject(o.metadata)) o.metadata = {};
        if (o.metadata.resourceVersion === undefined) {
          o.metadata.resourceVersion = now.metadata.resourceVersion;
        }
        return respond(200, store.updateIn(info, merged(ri, now, o), { dryRun: dryRun(url) }));
      }
      case "delete": {
        const body = await readBody(req);
        const b = isObject(body) ? body : {};
        const policy = (b.propagationPolicy ?? url.searchParams.get("propagationPolicy") ??
          (b.orphanDependents === true ? "Orphan" : undefined)) as
            | "Background"
            | "Foreground"
            | "Orphan"
            | undefined;
        const pre = isObject(b.preconditions) ? b.preconditions as Record<string, string> : {};
        const result = store.deleteIn(info, ri.namespace, ri.name, {
          ...(policy ? { propagationPolicy: policy } : {}),
          preconditions: pre,
          dryRun: dryRun(url, body),
        });
        if (result.deleted && !info.deleteReturnsObject) {
          return respond(
            200,
            successStatus({
              name: ri.name,
              ...(info.group ? { group: info.group } : {}),
              kind: info.resource,
              uid: result.object.metadata.uid ?? "",
            }),
          );
        }
        return respond(200, result.object);
      }
      case "deletecollection": {
        const items = store.list(info, listOptions(ri, url));
        const gone: KubeObject[] = [];
        for (const o of items) {
          try {
            gone.push(
              store.deleteIn(info, o.metadata.namespace, o.metadata.name!, { dryRun: dryRun(url) })
                .object,
            );
          } catch (error) {
            if (!(error instanceof ApiError && error.code === 404)) throw error;
          }
        }
        return respond(200, {
          kind: listKind(info),
          apiVersion: apiVersionOf(info),
          metadata: { resourceVersion: store.resourceVersion },
          items: gone.map(asItem),
        });
      }
    }
    throw methodNotAllowed("the server does not allow this method on the requested resource");
  }

  async function handler(req: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    const url = new URL(req.url);
    const parts = url.pathname.split("/").filter((p) => p !== "");
    let code = 0;
    let who = "-";
    let audit: RequestAudit | undefined;
    let longRunning = false;
    if (options.audit) {
      const target = auditTarget(parts, req, url);
      longRunning = target.longRunning;
      const userAgent = req.headers.get("user-agent");
      audit = new RequestAudit(options.audit, {
        requestURI: url.pathname + url.search,
        verb: target.verb,
        ...(target.objectRef ? { objectRef: target.objectRef } : {}),
        ...(userAgent ? { userAgent } : {}),
      }, log);
      audits.set(req, audit);
    }
    let authenticated = false;
    try {
      const user = authenticate(req);
      authenticated = true;
      who = user.name;
      audit?.received({ username: user.name, groups: user.groups });
      const response = discovery(parts, req) ??
        await resource(req, url, parts, user, info.completed);
      code = response.status;
      if (audit) {
        setAuditId(response, audit.auditID);
        const status: AuditResponseStatus = { metadata: {}, code };
        if ((longRunning && code < 300) || code === 101) {
          // A watch or a WebSocket: started now, complete when the stream ends.
          audit.started(status);
          info.completed.finally(() => audit.completed(status)).catch(() => {});
        } else {
          audit.completed(status);
        }
      }
      return response;
    } catch (error) {
      const status = error instanceof ApiError
        ? error.status
        : internalError(error instanceof Error ? error.message : String(error)).status;
      if (!(error instanceof ApiError)) {
        log(`apiserver: internal error: ${(error as Error)?.stack ?? error}`);
      }
      code = status.code;
      const response = statusResponse(status);
      if (audit) {
        setAuditId(response, audit.auditID);
        if (authenticated) {
          audit.completed({
            metadata: {},
            status: "Failure",
            ...(status.message !== undefined ? { message: status.message } : {}),
            ...(status.reason !== undefined ? { reason: status.reason } : {}),
            code: status.code,
          });
        } else {
          // Audited once, when its 401 is written, with the methods tried (getAuthMethods).
          const bearer = /^bearer\s+\S/i.test((req.headers.get("authorization") ?? "").trim());
          audit.started({
            metadata: {},
            message: bearer
              ? "Authentication failed, attempted: bearer"
              : "Authentication failed, no credentials provided",
            code: status.code,
          });
        }
      }
      return response;
    } finally {
      log(`apiserver: ${who} ${req.method} ${url.pathname}${url.search} ${code}`);
    }
  }

  // The handler runs in a plaintext Deno.serve on loopback; TLS is
  // terminated by the front (see _tls_front.ts for why).
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
    onError: (error) => {
      log(`apiserver: handler failed: ${error}`);
      return statusResponse(internalError(String(error)).status);
    },
  }, handler);
  let front: TlsFront;
  try {
    front = startTlsFront({
      hostname,
      port: options.port ?? 0,
      cert: options.tls.cert,
      key: options.tls.key,
      innerPort: server.addr.port,
      log,
    });
  } catch (error) {
    server.shutdown();
    throw error;
  }
  const port = front.addr.port;
  serverAddress = `${hostname}:${port}`;
  const advertise = options.advertiseAddress ??
    (/^\d+\.\d+\.\d+\.\d+$/.test(hostname) && hostname !== "0.0.0.0" ? hostname : "127.0.0.1");
  const advertisePort = options.advertisePort ?? port;
  store.modify({ resource: "services", namespace: "default", name: "kubernetes" }, (s) => {
    const spec = s.spec as { ports: { targetPort: number }[] };
    spec.ports[0]!.targetPort = advertisePort;
  });
  const endpoints = {
    apiVersion: "v1",
    kind: "Endpoints",
    metadata: {
      name: "kubernetes",
      namespace: "default",
      labels: { "endpointslice.kubernetes.io/skip-mirror": "true" },
    },
    subsets: [{
      addresses: [{ ip: advertise }],
      ports: [{ name: "https", port: advertisePort, protocol: "TCP" }],
    }],
  };
  if (store.get({ resource: "endpoints", namespace: "default", name: "kubernetes" })) {
    store.modify({ resource: "endpoints", namespace: "default", name: "kubernetes" }, (e) => {
      e.subsets = endpoints.subsets;
    });
  } else {
    store.create(endpoints);
  }
  log(`apiserver: listening on https://${serverAddress}`);

  return Promise.resolve({
    url: `https://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`,
    hostname,
    port,
    store,
    get podLogs() {
      return podLogs;
    },
    set podLogs(source: PodLogSource | undefined) {
      podLogs = source;
    },
    async close() {
      front.close();
      for (const stop of [...watches]) stop();
      for (const f of [...forwards]) f.close();
      store.close();
      await server.shutdown();
      log(`apiserver: stopped`);
    },
  });
}
