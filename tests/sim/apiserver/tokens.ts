/**
 * Bearer tokens as kube-apiserver issues and checks them: the table of
 * tokens the fake server accepts, service-account tokens bound to an
 * audience, an expiry and the objects they were issued for (a pod, its
 * service account), and the answer a `TokenReview` gets.
 *
 * ```
 *   kubelet ── issueServiceAccountToken(ns, sa, audiences, expirationSeconds, pod, node) ──► JWT
 *                                                   │ kept in the table with its audiences, expiry, bound objects
 *   a request's Bearer token ── authenticateToken(…, API audiences) ──► user, or 401
 *   POST tokenreviews {token, audiences} ── authenticateToken(…, audiences) ──► status.user, status.audiences, or error
 * ```
 *
 * A token is a JWT with the claims a real projected token carries (`aud`,
 * `exp`, `iat`, `nbf`, `iss`, `sub`, `jti`, `kubernetes.io` with the
 * namespace, pod, node and service account), but the table, not its
 * signature, is what makes it valid: a token not in the table is unknown. A
 * token without audiences (the static tokens of users) counts as one for
 * the API server's own audiences, as the audience-agnostic authenticators
 * of kube-apiserver do. Failures are worded as the real authenticator chain
 * words them (`[invalid bearer token, service account token has expired]`).
 *
 * @module
 */

import type { Store } from "./store.ts";
import { ApiError, badRequest, conflict, notFound } from "./status.ts";

/** The API server's own audience (`--api-audiences`, the issuer of a kubeadm cluster). */
export const API_AUDIENCE = "https://kubernetes.default.svc.cluster.local";
/** The `iss` of the tokens issued here. */
export const TOKEN_ISSUER: string = API_AUDIENCE;
/** The shortest lifetime a TokenRequest may ask for. */
export const MIN_EXPIRATION_SECONDS = 600;
/** The lifetime of a TokenRequest that asks for none. */
export const DEFAULT_EXPIRATION_SECONDS = 3600;
/** The table holds no more tokens than this (expired and invalidated ones are dropped first). */
export const MAX_TOKENS = 10_000;
const KEY_ID = "vif-sim-sa-key";

/** An object a service-account token stays valid with (it is invalidated when the object goes). */
export interface BoundObject {
  resource: "pods" | "serviceaccounts";
  namespace: string;
  name: string;
  uid: string;
}

/** Who a bearer token stands for, and while what holds. */
export interface TokenInfo {
  /** The user name (`admin`, `system:serviceaccount:vif-system:traffic-manager`). */
  user: string;
  /** Groups besides `system:authenticated`, which every token gets. */
  groups?: string[];
  /**
   * When true, the user may not touch `secrets` nor `pods/portforward` (403),
   * whatever `authorize` says: a stand-in for RBAC in this server's own tests.
   */
  limited?: boolean;
  /** The user's uid (a service account's uid). */
  uid?: string;
  /** The audiences the token was issued for; none: the API server's own. */
  audiences?: string[];
  /** When it expires, in ms since the epoch; none: never. */
  expiresAt?: number;
  /** It is valid only while these objects exist with these uids. */
  boundObjects?: BoundObject[];
  /** `user.extra` as a TokenReview reports it. */
  extra?: Record<string, string[]>;
}

/** `authentication.k8s.io/v1` UserInfo. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** What authenticating a token found. */
export type TokenCheck =
  | {
    authenticated: true;
    user: UserInfo;
    /** The token's audiences that were asked for. */
    audiences: string[];
    /** Only for the fake server's own tests (see {@linkcode TokenInfo.limited}). */
    limited: boolean;
  }
  | {
    authenticated: false;
    /** Why, as kube-apiserver says it; absent when no authenticator knew the token at all. */
    error?: string;
  };

/** What the kubelet (or a TokenRequest) asks for. */
export interface TokenRequestSpec {
  namespace: string;
  serviceAccount: string;
  /** None: the API server's own audiences. */
  audiences?: string[];
  /** Default {@linkcode DEFAULT_EXPIRATION_SECONDS}; at least {@linkcode MIN_EXPIRATION_SECONDS}. */
  expirationSeconds?: number;
  /** The pod the token is for: it is invalidated when the pod goes. */
  pod?: { name: string; uid: string };
  /** The node the pod runs on (its uid is read from the Node object). */
  node?: string;
}

/** An issued token (`TokenRequest.status`). */
export interface IssuedToken {
  token: string;
  /** RFC 3339. */
  expirationTimestamp: string;
  /** The same, in ms since the epoch. */
  expiresAt: number;
  /** When it was issued, in ms since the epoch. */
  issuedAt: number;
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Go's `%q` of a `[]string`: `["a" "b"]`. */
function goQuoteList(list: readonly string[]): string {
  return `[${list.map((x) => JSON.stringify(x)).join(" ")}]`;
}

function aggregate(message: string): string {
  return `[invalid bearer token, ${message}]`;
}

/** Whether `token` looks like a JWT issued here (three parts, our issuer). */
function isOurJwt(token: string): boolean {
  return token.split(".").length === 3 && jwtClaims(token)?.iss === TOKEN_ISSUER;
}

/** Why a bound object no longer backs the token, in the validator's words, or undefined. */
function invalidated(store: Store, o: BoundObject): string | undefined {
  const now = store.get({ resource: o.resource, namespace: o.namespace, name: o.name });
  if (!now) return "service account token has been invalidated";
  if (now.metadata.uid !== o.uid) {
    const what = o.resource === "pods" ? "pod" : "service account";
    return `${what} UID (${now.metadata.uid}) does not match claim (${o.uid})`;
  }
  return undefined;
}

/**
 * Authenticates a bearer token for some audiences, as kube-apiserver's
 * token authenticators do for a request (the API audiences) or a
 * TokenReview (its `spec.audiences`, or the API audiences when empty).
 *
 * @param tokens the table
 * @param store the objects bound tokens depend on
 * @param token the token
 * @param options the audiences asked for, the API server's, and now (ms)
 * @returns the user and audiences, or why not
 */
export function authenticateToken(
  tokens: Readonly<Record<string, TokenInfo>>,
  store: Store,
  token: string,
  options: { audiences?: readonly string[]; apiAudiences: readonly string[]; now?: number },
): TokenCheck {
  // Own keys only: a token such as "constructor" must not find Object's.
  const info = Object.hasOwn(tokens, token) ? tokens[token] : undefined;
  if (!info) {
    return isOurJwt(token)
      ? {
        authenticated: false,
        error: aggregate("square/go-jose: error in cryptographic primitive"),
      }
      : { authenticated: false };
  }
  const now = options.now ?? Date.now();
  const requested = options.audiences?.length ? options.audiences : options.apiAudiences;
  const own = info.audiences ?? options.apiAudiences;
  const audiences = own.filter((a) => requested.includes(a));
  if (audiences.length === 0) {
    // A user's static token is audience-agnostic: it is simply not one for other audiences.
    if (!info.audiences) return { authenticated: false };
    return {
      authenticated: false,
      error: aggregate(
        `token audiences ${goQuoteList(own)} is invalid for the target audiences ${
          goQuoteList(requested)
        }`,
      ),
    };
  }
  if (info.expiresAt !== undefined && info.expiresAt <= now) {
    return { authenticated: false, error: aggregate("service account token has expired") };
  }
  for (const o of info.boundObjects ?? []) {
    const why = invalidated(store, o);
    if (why) return { authenticated: false, error: aggregate(why) };
  }
  return {
    authenticated: true,
    user: {
      username: info.user,
      ...(info.uid ? { uid: info.uid } : {}),
      groups: [...(info.groups ?? []), "system:authenticated"],
      ...(info.extra ? { extra: structuredClone(info.extra) } : {}),
    },
    audiences,
    limited: info.limited ?? false,
  };
}

/** Drops expired and invalidated tokens; throws when the table is still full. */
function prune(tokens: Record<string, TokenInfo>, store: Store, now: number): void {
  for (const [token, info] of Object.entries(tokens)) {
    const gone = (info.expiresAt !== undefined && info.expiresAt <= now) ||
      (info.boundObjects ?? []).some((o) => invalidated(store, o) !== undefined);
    if (gone) delete tokens[token];
  }
  if (Object.keys(tokens).length >= MAX_TOKENS) {
    throw new ApiError({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `the simulated API server holds ${MAX_TOKENS} live tokens already`,
      reason: "TooManyRequests",
      code: 429,
    });
  }
}

/**
 * Issues a service-account token and adds it to the table, as the
 * TokenRequest API does for the kubelet (projected `serviceAccountToken`
 * volumes) or a client (`serviceaccounts/<name>/token`). Expired and
 * invalidated tokens are dropped from the table on the way.
 *
 * @param tokens the table (changed)
 * @param store the service account, pod and node are read from it
 * @param spec namespace, service account, audiences, lifetime, pod, node
 * @param options the API server's audiences, now (ms)
 * @returns the token and its expiry
 * @throws {ApiError} 404 for a missing service account or pod, 409 for a pod uid that does not
 *   match, 400 for a lifetime under 10 minutes, 429 when the table is full
 */
export function issueServiceAccountToken(
  tokens: Record<string, TokenInfo>,
  store: Store,
  spec: TokenRequestSpec,
  options: { apiAudiences: readonly string[]; now?: number },
): IssuedToken {
  const now = options.now ?? Date.now();
  const { namespace } = spec;
  const seconds = spec.expirationSeconds ?? DEFAULT_EXPIRATION_SECONDS;
  if (!Number.isInteger(seconds) || seconds < MIN_EXPIRATION_SECONDS) {
    throw badRequest(
      `spec.expirationSeconds: Invalid value: ${seconds}: may not specify a duration less than 10 minutes`,
    );
  }
  const sa = store.get({ resource: "serviceaccounts", namespace, name: spec.serviceAccount });
  if (!sa) throw notFound({ group: "", resource: "serviceaccounts" }, spec.serviceAccount);
  const bound: BoundObject[] = [{
    resource: "serviceaccounts",
    namespace,
    name: spec.serviceAccount,
    uid: sa.metadata.uid!,
  }];
  const extra: Record<string, string[]> = {};
  const claims: Record<string, unknown> = {
    namespace,
    serviceaccount: { name: spec.serviceAccount, uid: sa.metadata.uid },
  };
  if (spec.pod) {
    const pod = store.get({ resource: "pods", namespace, name: spec.pod.name });
    if (!pod) throw notFound({ group: "", resource: "pods" }, spec.pod.name);
    if (pod.metadata.uid !== spec.pod.uid) {
      throw conflict(
        { group: "", resource: "pods" },
        spec.pod.name,
        `the UID in the bound object reference (${spec.pod.uid}) does not match the UID in record. The object might have been deleted and then recreated`,
      );
    }
    bound.push({ resource: "pods", namespace, name: spec.pod.name, uid: spec.pod.uid });
    claims.pod = { name: spec.pod.name, uid: spec.pod.uid };
    extra["authentication.kubernetes.io/pod-name"] = [spec.pod.name];
    extra["authentication.kubernetes.io/pod-uid"] = [spec.pod.uid];
    if (spec.node) {
      const node = store.get({ resource: "nodes", name: spec.node });
      if (node) {
        claims.node = { name: spec.node, uid: node.metadata.uid };
        extra["authentication.kubernetes.io/node-name"] = [spec.node];
        extra["authentication.kubernetes.io/node-uid"] = [node.metadata.uid!];
      }
    }
  }
  prune(tokens, store, now);
  const jti = crypto.randomUUID();
  extra["authentication.kubernetes.io/credential-id"] = [`JTI=${jti}`];
  const audiences = spec.audiences?.length ? [...spec.audiences] : [...options.apiAudiences];
  const iat = Math.floor(now / 1000);
  const exp = iat + seconds;
  const user = `system:serviceaccount:${namespace}:${spec.serviceAccount}`;
  const json = (v: unknown) => base64url(new TextEncoder().encode(JSON.stringify(v)));
  const token = [
    json({ alg: "RS256", kid: KEY_ID }),
    json({
      aud: audiences,
      exp,
      iat,
      iss: TOKEN_ISSUER,
      jti,
      "kubernetes.io": claims,
      nbf: iat,
      sub: user,
    }),
    base64url(crypto.getRandomValues(new Uint8Array(256))),
  ].join(".");
  tokens[token] = {
    user,
    groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`],
    uid: sa.metadata.uid!,
    audiences,
    expiresAt: exp * 1000,
    boundObjects: bound,
    extra: Object.fromEntries(Object.entries(extra).sort(([a], [b]) => a < b ? -1 : 1)),
  };
  return {
    token,
    expirationTimestamp: rfc3339(exp * 1000),
    expiresAt: exp * 1000,
    issuedAt: iat * 1000,
  };
}

/**
 * The decoded claims of a JWT (no check of its signature), for tests and
 * for a kubelet that wants to know when a token it got expires.
 *
 * @param token the JWT
 * @returns the claims, or undefined when it is no JWT
 */
export function jwtClaims(token: string): Record<string, unknown> | undefined {
  const part = token.split(".")[1];
  if (part === undefined) return undefined;
  try {
    const binary = atob(part.replaceAll("-", "+").replaceAll("_", "/"));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const v = JSON.parse(new TextDecoder().decode(bytes));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
