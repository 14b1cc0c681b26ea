/**
 * A container's log through the API server (`GET pods/NAME/log`, RBAC `get`
 * on `pods/log`), as `kubectl logs` reads it: the last lines, the run before
 * a restart (`previous`), bounded on both sides (the server is asked for one
 * byte more than `limitBytes`, to tell a cut log; reading stops at the limit
 * whatever the server sends).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { type ApiAccess, KubeApiError, requestTo, statusError } from "./api.ts";

/** Options of {@linkcode readPodLog}. */
export interface ReadPodLogOptions {
  /** The container; the server picks the pod's only one when absent. */
  container?: string;
  /** Only the last this many lines (`tailLines`). */
  tailLines?: number;
  /** At most this many bytes (`limitBytes`); reading stops there too. Default 4 MiB. */
  limitBytes?: number;
  /** The run before the last restart (`previous=true`). */
  previous?: boolean;
  /** How long the whole request may take, in ms. Default: the access's, else 30 s. */
  timeoutMs?: number;
}

/** A container's log as read. */
export interface PodLog {
  /** The text (UTF-8, a broken last character replaced). */
  text: string;
  /** Whether it was cut at {@linkcode ReadPodLogOptions.limitBytes}. */
  truncated: boolean;
}

/** The default of {@linkcode ReadPodLogOptions.limitBytes}. */
export const DEFAULT_LOG_LIMIT_BYTES = 4 << 20;

/** The most bytes of an error answer read. */
const MAX_ERROR_BYTES = 64 * 1024;

/**
 * Reads a container's log.
 *
 * @param access the API server and credentials
 * @param pod the pod's namespace and name
 * @param options the container, how much, which run
 * @returns the log
 * @throws {KubeApiError} for an error status (404 no such pod, 400 no such
 * container or no previous run, 403 no `get` on `pods/log`), no answer, or no
 * answer in time
 * @example
 * ```ts ignore
 * const { text } = await readPodLog(access, { namespace: "vif-system", name: pod }, {
 *   container: "traffic-manager",
 *   tailLines: 10_000,
 * });
 * ```
 */
export function readPodLog(
  access: ApiAccess,
  pod: { namespace: string; name: string },
  options: ReadPodLogOptions = {},
): Promise<PodLog> {
  const limit = options.limitBytes ?? DEFAULT_LOG_LIMIT_BYTES;
  if (!(Number.isInteger(limit) && limit > 0)) {
    throw new RangeError(`Cannot read a log of at most ${limit} bytes`);
  }
  const base = new URL(access.server);
  const query = new URLSearchParams();
  if (options.container) query.set("container", options.container);
  if (options.tailLines !== undefined) query.set("tailLines", String(options.tailLines));
  // One byte more than is kept: what arrives beyond the limit says the log was cut.
  query.set("limitBytes", String(limit + 1));
  if (options.previous) query.set("previous", "true");
  const path = `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${
    encodeURIComponent(pod.name)
  }/log?${query}`;
  const url = new URL(base.pathname.replace(/\/$/, "") + path, base);
  const timeoutMs = options.timeoutMs ?? access.timeoutMs ?? 30_000;
  return new Promise<PodLog>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = timeoutMs > 0
      ? setTimeout(() => {
        const error = new KubeApiError(
          `no complete answer within ${Math.round(timeoutMs / 1000)} s`,
          undefined,
        );
        settle(() => reject(error));
        req.destroy();
      }, timeoutMs)
      : undefined;
    const req = requestTo(access, url, {
      method: "GET",
      headers: { Accept: "text/plain, application/json", ...access.headers },
      timeout: timeoutMs,
    }, (res) => {
      const status = res.statusCode ?? 0;
      const ok = status >= 200 && status < 300;
      const max = ok ? limit : MAX_ERROR_BYTES;
      const chunks: Buffer[] = [];
      let length = 0;
      let truncated = false;
      const done = () => {
        const text = new TextDecoder().decode(Buffer.concat(chunks, length));
        settle(() =>
          ok ? resolve({ text, truncated }) : reject(statusError(status, text, res.statusMessage))
        );
      };
      res.on("data", (chunk: Buffer) => {
        if (settled) return;
        const room = max - length;
        if (chunk.length >= room) {
          chunks.push(chunk.subarray(0, room));
          length = max;
          truncated = ok && chunk.length > room;
          if (truncated || !ok) {
            done();
            req.destroy();
          }
          return;
        }
        chunks.push(chunk);
        length += chunk.length;
      });
      res.on("end", done);
      res.on(
        "error",
        (e) => settle(() => reject(new KubeApiError(e.message, undefined, { cause: e }))),
      );
    });
    req.on(
      "timeout",
      () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`)),
    );
    req.on(
      "error",
      (e: Error) => settle(() => reject(new KubeApiError(e.message, undefined, { cause: e }))),
    );
    req.end();
  });
}
