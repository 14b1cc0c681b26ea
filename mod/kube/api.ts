/**
 * A small Kubernetes API client for the daemon: the few REST calls manager
 * discovery makes, from an {@linkcode ApiAccess} (the API server's address,
 * its CA, and the user's credentials, resolved from the kubeconfig).
 *
 * The daemon used `@kubernetes/client-node` for these calls; loading it costs
 * about 90 MB of resident memory (its generated models are some 25 MB of
 * JavaScript) and most of a second, for five requests. The CLI, which loads
 * the kubeconfig as the user anyway, resolves the access (running exec
 * credential plugins as that user) and hands it to the daemon.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import https from "node:https";
import http from "node:http";

/**
 * How to reach the API server and who to be there: everything a request
 * needs, resolved from a kubeconfig's context. Holds credentials: never log
 * or store it.
 */
export interface ApiAccess {
  /** The API server's URL (`https://host:port`). */
  server: string;
  /** The CA to verify the server with (PEM); the system's roots when absent. */
  caPem?: string;
  /** A client certificate (PEM), with {@linkcode ApiAccess.keyPem}. */
  certPem?: string;
  /** The client certificate's key (PEM). */
  keyPem?: string;
  /** `insecure-skip-tls-verify`: the server's certificate is not checked. */
  insecure?: boolean;
  /** `tls-server-name`: the name to verify the certificate against, instead of the host. */
  serverName?: string;
  /** Headers every request carries (`Authorization`, `Impersonate-User`, …). */
  headers: Record<string, string>;
  /**
   * How long one request may take, in ms, when the call names no time-out of
   * its own (`--request-timeout`; 0: no limit). Default 10 s.
   */
  timeoutMs?: number;
}

/** A request the API server answered with an error status, or could not be made. */
export class KubeApiError extends Error {
  /** The HTTP status; undefined when no answer came (the server is unreachable). */
  readonly statusCode: number | undefined;
  /** The `reason` of the API server's Status object (`NotFound`, `Forbidden`, …). */
  readonly reason: string | undefined;

  /**
   * @param message what happened
   * @param statusCode the HTTP status, if there was an answer
   * @param options the reason and the cause
   */
  constructor(
    message: string,
    statusCode: number | undefined,
    options: ErrorOptions & { reason?: string } = {},
  ) {
    super(message, options);
    this.name = "KubeApiError";
    this.statusCode = statusCode;
    this.reason = options.reason;
  }
}

/** The calls discovery needs; tests may implement it in memory. */
export interface KubeApi {
  /** The API server's URL, for messages. */
  readonly server: string;
  /**
   * GETs a path and parses the JSON answer.
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  get<T>(path: string): Promise<T>;
  /**
   * POSTs a JSON body to a path and parses the JSON answer.
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  post<T>(path: string, body: unknown): Promise<T>;
  /**
   * PUTs a whole object (its `metadata.resourceVersion` guards against a
   * change made since it was read: 409 Conflict).
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  put?<T>(path: string, body: unknown): Promise<T>;
  /**
   * PATCHes an object with a JSON merge patch (RFC 7386).
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  patch?<T>(path: string, body: unknown): Promise<T>;
  /**
   * DELETEs an object.
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  delete?<T>(path: string): Promise<T>;
}

/** Options of {@linkcode kubeApi}. */
export interface KubeApiOptions {
  /** How long one request may take, in ms (default: the access's, else 10 s; 0: no limit). */
  timeoutMs?: number;
}

/**
 * Makes a client for `access`.
 *
 * @param access the API server and credentials
 * @param options the time-out
 * @returns the client
 * @throws {TypeError} when the server is not an http(s) URL
 * @example
 * ```ts ignore
 * import { kubeApi } from "./api.ts";
 * const api = kubeApi({ server: "https://198.19.200.1:6443", caPem, headers: { Authorization: "Bearer …" } });
 * const svc = await api.get("/api/v1/namespaces/vif-system/services/traffic-manager");
 * ```
 */
export function kubeApi(access: ApiAccess, options: KubeApiOptions = {}): KubeApi {
  const base = new URL(access.server);
  if (base.protocol !== "https:" && base.protocol !== "http:") {
    throw new TypeError(`Cannot use API server "${access.server}": not an http(s) URL`);
  }
  const timeoutMs = options.timeoutMs ?? access.timeoutMs ?? 10_000;
  const request = <T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<T> => {
    const url = new URL(base.pathname.replace(/\/$/, "") + path, base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      Accept: "application/json",
      ...access.headers,
      ...(payload ? { "Content-Type": contentType } : {}),
    };
    return new Promise<T>((resolve, reject) => {
      const req = requestTo(access, url, { method, headers, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e) => reject(new KubeApiError(e.message, undefined, { cause: e })));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          if (status >= 200 && status < 300) {
            if (parsed === undefined && text) {
              reject(new KubeApiError(`the API server answered ${status} with no JSON`, status));
            } else resolve(parsed as T);
            return;
          }
          reject(statusError(status, text, res.statusMessage));
        });
      });
      req.on("timeout", () => {
        req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`));
      });
      req.on("error", (e: Error) => reject(new KubeApiError(e.message, undefined, { cause: e })));
      req.end(payload);
    });
  };
  return {
    server: access.server,
    get: (path) => request("GET", path),
    post: (path, body) => request("POST", path, body),
    put: (path, body) => request("PUT", path, body),
    patch: (path, body) => request("PATCH", path, body, "application/merge-patch+json"),
    delete: (path) => request("DELETE", path),
  };
}

/**
 * Starts a request to `url` on the API server of `access`, with its TLS
 * settings (CA, client certificate, `insecure-skip-tls-verify`,
 * `tls-server-name`) on an https URL.
 *
 * @param access the API server and credentials
 * @param url the full URL
 * @param options method, headers, time-out
 * @param onResponse called with the response
 * @returns the request, to end
 */
export function requestTo(
  access: ApiAccess,
  url: URL,
  options: { method: string; headers: Record<string, string>; timeout: number },
  onResponse?: (res: http.IncomingMessage) => void,
): http.ClientRequest {
  if (url.protocol !== "https:") return http.request(url, options, onResponse);
  return https.request(url, {
    ...options,
    ...(access.caPem ? { ca: access.caPem } : {}),
    ...(access.certPem ? { cert: access.certPem } : {}),
    ...(access.keyPem ? { key: access.keyPem } : {}),
    ...(access.insecure ? { rejectUnauthorized: false } : {}),
    ...(access.serverName ? { servername: access.serverName } : {}),
  }, onResponse);
}

/**
 * The error for an answer with an error status: the message and reason of
 * the API server's Status object when the body is one, else its first line.
 *
 * @param status the HTTP status
 * @param body the response body
 * @param statusMessage the HTTP reason phrase
 * @returns the error
 */
export function statusError(status: number, body: string, statusMessage?: string): KubeApiError {
  let st: { message?: string; reason?: string } | undefined;
  try {
    st = JSON.parse(body);
  } catch {
    st = undefined;
  }
  const message = st?.message || body.split("\n", 1)[0] || statusMessage || "";
  return new KubeApiError(`HTTP ${status}: ${message}`, status, {
    ...(st?.reason ? { reason: st.reason } : {}),
  });
}

/**
 * Whether the daemon can open port-forward WebSockets for `access` with
 * Deno's own client: it cannot skip certificate checks or verify against
 * another name than the host's.
 *
 * @param access the API server and credentials
 * @returns true when no kubeconfig feature the native client lacks is used
 */
export function nativeWebSocketCan(access: ApiAccess): boolean {
  return !access.insecure && !access.serverName;
}
