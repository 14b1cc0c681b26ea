/**
 * Container probes as the kubelet runs them: `httpGet` and `tcpSocket`, made
 * from the node's network namespace to the pod's IP (so a port bound to the
 * pod's loopback fails them, as it would in a real cluster), with the
 * kubelet's defaults, thresholds and result messages.
 *
 * ```
 *  <node netns> ── curl http://<pod IP>:<port><path> ──► the container   (httpGet: 200–399 is success)
 *               └─ socat … TCP4:<pod IP>:<port> ─────────►                 (tcpSocket: connect, then close)
 * ```
 *
 * What is pure here (the threshold counter, the restart back-off) takes the
 * time as an argument; {@linkcode runProbe} spawns one short process per probe.
 *
 * @module
 */

/** The kubelet's version in the probes' `User-Agent`. */
const KUBE_PROBE_AGENT = "kube-probe/1.33";

/** A container port, as the probe's named `port` is looked up. */
export interface NamedPort {
  name?: string;
  containerPort: number;
}

/** A `core/v1` Probe: the fields the simulated kubelet reads. */
export interface ProbeSpec {
  httpGet?: {
    path?: string;
    port: number | string;
    host?: string;
    scheme?: string;
    httpHeaders?: Array<{ name: string; value: string }>;
  };
  tcpSocket?: { port: number | string; host?: string };
  exec?: unknown;
  grpc?: unknown;
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
  terminationGracePeriodSeconds?: number;
}

/** A probe checked and resolved against its container's ports, times in ms. */
export interface Probe {
  /** `readiness` or `liveness`, for messages. */
  kind: ProbeKind;
  action: { type: "http"; scheme: "http" | "https"; path: string; headers: [string, string][] } | {
    type: "tcp";
  };
  /** The port, a named port resolved. */
  port: number;
  /** The address to probe instead of the pod's IP. */
  host?: string;
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
  /** The probe's own grace period for a liveness kill, when it sets one. */
  terminationGraceMs?: number;
}

/** Which probe. */
export type ProbeKind = "readiness" | "liveness";

/** A probe spec the simulated kubelet cannot run: the message goes to the pod's status. */
export class ProbeSpecError extends TypeError {
  /**
   * @param message what is wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "ProbeSpecError";
  }
}

function seconds(v: unknown, name: string, min: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new ProbeSpecError(`${name}: must be an integer of at least ${min}, not ${v}`);
  }
  return v;
}

/**
 * Checks a Probe and resolves its port against the container's ports, with
 * the API's defaults: `periodSeconds` 10, `timeoutSeconds` 1,
 * `successThreshold` 1 (which a liveness probe must keep), `failureThreshold` 3.
 *
 * @param spec the Probe
 * @param kind which probe it is
 * @param ports the container's ports, for a named `port`
 * @returns the probe
 * @throws {ProbeSpecError} for an `exec` or `grpc` probe, a port name the
 *   container does not have, or a value the API would reject
 */
export function resolveProbe(spec: ProbeSpec, kind: ProbeKind, ports: NamedPort[]): Probe {
  const field = `${kind}Probe`;
  if (spec.exec !== undefined || spec.grpc !== undefined) {
    throw new ProbeSpecError(
      `${field}: the simulated kubelet runs httpGet and tcpSocket probes only`,
    );
  }
  const handler = spec.httpGet ?? spec.tcpSocket;
  if (!handler || (spec.httpGet && spec.tcpSocket)) {
    throw new ProbeSpecError(`${field}: exactly one of httpGet and tcpSocket must be given`);
  }
  const named = handler.port;
  const port = typeof named === "number"
    ? named
    : /^\d+$/.test(named)
    ? Number(named)
    : ports.find((p) => p.name === named)?.containerPort;
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ProbeSpecError(`${field}: port "${named}" is not defined in the container's ports`);
  }
  const successThreshold = seconds(spec.successThreshold, `${field}.successThreshold`, 1, 1);
  if (kind === "liveness" && successThreshold !== 1) {
    throw new ProbeSpecError(`${field}.successThreshold: must be 1`);
  }
  const grace = spec.terminationGracePeriodSeconds;
  let action: Probe["action"] = { type: "tcp" };
  if (spec.httpGet) {
    const scheme = (spec.httpGet.scheme ?? "HTTP").toUpperCase();
    if (scheme !== "HTTP" && scheme !== "HTTPS") {
      throw new ProbeSpecError(`${field}.httpGet.scheme: must be HTTP or HTTPS, not ${scheme}`);
    }
    const path = spec.httpGet.path ?? "";
    action = {
      type: "http",
      scheme: scheme === "HTTPS" ? "https" : "http",
      path: path === "" || path.startsWith("/") ? path : `/${path}`,
      headers: (spec.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value]),
    };
  }
  return {
    kind,
    action,
    port,
    ...(handler.host ? { host: handler.host } : {}),
    initialDelayMs: seconds(spec.initialDelaySeconds, `${field}.initialDelaySeconds`, 0, 0) * 1000,
    periodMs: seconds(spec.periodSeconds, `${field}.periodSeconds`, 1, 10) * 1000,
    timeoutMs: seconds(spec.timeoutSeconds, `${field}.timeoutSeconds`, 1, 1) * 1000,
    successThreshold,
    failureThreshold: seconds(spec.failureThreshold, `${field}.failureThreshold`, 1, 3),
    ...(grace !== undefined
      ? {
        terminationGraceMs: seconds(grace, `${field}.terminationGracePeriodSeconds`, 1, 0) * 1000,
      }
      : {}),
  };
}

/** One probe's outcome: `output` is what the kubelet's event says after `… probe failed: `. */
export interface ProbeResult {
  ok: boolean;
  output: string;
}

/**
 * The URL a probe asks for (`tcp://IP:PORT` for a tcpSocket probe).
 *
 * @param probe the probe
 * @param podIp the pod's IP, unless the probe names a host
 * @returns the URL
 */
export function probeUrl(probe: Probe, podIp: string): string {
  const host = probe.host ?? podIp;
  const h = host.includes(":") ? `[${host}]` : host;
  const path = probe.action.type === "http" ? probe.action.path : "";
  return `${
    probe.action.type === "http" ? probe.action.scheme : "tcp"
  }://${h}:${probe.port}${path}`;
}

async function spawnBounded(
  argv: string[],
  limitMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // The tool's own time-out ends it first; this bounds a tool that hangs anyway.
    signal: AbortSignal.timeout(limitMs + 2000),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, 64 * 1024));
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** `Connection refused` (strerror) → `connect: connection refused` (Go's net error). */
function goConnectError(strerror: string): string {
  const e = strerror.trim().toLowerCase();
  return /timed out/.test(e) ? "i/o timeout" : `connect: ${e}`;
}

/**
 * Runs one probe from the node's network namespace, where the kubelet runs
 * it from: `httpGet` with curl (200–399 is success; no
 * redirect is followed, so a 3xx counts as success as the kubelet counts a
 * redirect off the pod), `tcpSocket` with socat (connect, then close).
 * Failures are worded as the kubelet words them: `HTTP probe failed with
 * statuscode: 503`, `Get "http://…": context deadline exceeded
 * (Client.Timeout exceeded while awaiting headers)`, `dial tcp IP:PORT:
 * connect: connection refused`.
 *
 * @param probe the probe
 * @param where the node's network namespace and the pod's IP
 * @returns the result
 */
export async function runProbe(
  probe: Probe,
  where: { nodeNetns: string; podIp: string },
): Promise<ProbeResult> {
  const host = probe.host ?? where.podIp;
  const hostPort = `${host.includes(":") ? `[${host}]` : host}:${probe.port}`;
  const seconds = String(probe.timeoutMs / 1000);
  if (probe.action.type === "tcp") {
    const r = await spawnBounded([
      "ip",
      "netns",
      "exec",
      where.nodeNetns,
      "socat",
      "-t0",
      "-u",
      "OPEN:/dev/null",
      `TCP:${hostPort},connect-timeout=${seconds}`,
    ], probe.timeoutMs);
    if (r.code === 0) return { ok: true, output: "" };
    const errno = /: ([^:]+)$/m.exec(/ E (.*)$/m.exec(r.stderr)?.[1] ?? "")?.[1];
    return {
      ok: false,
      output: `dial tcp ${hostPort}: ${errno ? goConnectError(errno) : r.stderr.trim()}`,
    };
  }
  const url = probeUrl(probe, where.podIp);
  // The probe's own headers replace the kubelet's of the same name, whatever their case.
  const headers = new Map<string, string>();
  for (
    const [name, value] of [
      ["User-Agent", KUBE_PROBE_AGENT],
      ["Accept", "*/*"],
      ["Connection", "close"],
      ...probe.action.headers,
    ] as const
  ) {
    headers.set(name.toLowerCase(), `${name}: ${value}`);
  }
  const r = await spawnBounded([
    "ip",
    "netns",
    "exec",
    where.nodeNetns,
    "curl",
    "-sS",
    "-v",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "--max-time",
    seconds,
    "--noproxy",
    "*",
    ...(probe.action.scheme === "https" ? ["-k"] : []),
    ...[...headers.values()].flatMap((h) => ["-H", h]),
    url,
  ], probe.timeoutMs);
  if (r.code === 0) {
    const status = Number(r.stdout.trim());
    if (status >= 200 && status < 400) return { ok: true, output: "" };
    return { ok: false, output: `HTTP probe failed with statuscode: ${status}` };
  }
  if (r.code === 28) {
    return {
      ok: false,
      output:
        `Get "${url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
    };
  }
  const refused = /^\* connect to .* failed: (.*)$/m.exec(r.stderr)?.[1];
  if (refused) {
    return { ok: false, output: `Get "${url}": dial tcp ${hostPort}: ${goConnectError(refused)}` };
  }
  const why = /^curl: \(\d+\) (.*)$/m.exec(r.stderr)?.[1] ?? `curl exit ${r.code}`;
  return { ok: false, output: `Get "${url}": ${why}` };
}

/**
 * The kubelet's result of a probe over time: the result changes only after
 * `successThreshold` consecutive successes or `failureThreshold` consecutive
 * failures; until then it keeps its initial value (failure for readiness,
 * success for liveness).
 */
export class ProbeCounter {
  #result: boolean;
  #last: boolean | undefined;
  #run = 0;
  #success: number;
  #failure: number;

  /**
   * @param initial the result before any probe ran
   * @param thresholds the probe's `successThreshold` and `failureThreshold`
   */
  constructor(
    initial: boolean,
    thresholds: { successThreshold: number; failureThreshold: number },
  ) {
    this.#result = initial;
    this.#success = thresholds.successThreshold;
    this.#failure = thresholds.failureThreshold;
  }

  /** The result now. */
  get result(): boolean {
    return this.#result;
  }

  /**
   * Counts one probe.
   *
   * @param ok whether it succeeded
   * @returns the result after it
   */
  record(ok: boolean): boolean {
    if (this.#last === ok) this.#run++;
    else {
      this.#last = ok;
      this.#run = 1;
    }
    if (this.#run >= (ok ? this.#success : this.#failure)) this.#result = ok;
    return this.#result;
  }
}

/**
 * The kubelet's back-off between restarts of a container that keeps ending
 * (CrashLoopBackOff): the first restart is at once, the next waits 10 s after
 * the container ended, then 20 s, 40 s, … up to 5 min; after 10 min without
 * a restart it starts again at 10 s.
 */
export class CrashBackoff {
  #backoffMs = 0;
  #lastRestart = -Infinity;
  #initialMs: number;
  #maxMs: number;

  /**
   * @param options the first and the longest wait, in ms (default 10 s and 5 min)
   */
  constructor(options: { initialMs?: number; maxMs?: number } = {}) {
    this.#initialMs = options.initialMs ?? 10_000;
    this.#maxMs = options.maxMs ?? 300_000;
  }

  #expired(at: number): boolean {
    return this.#backoffMs === 0 || at - this.#lastRestart > 2 * this.#maxMs;
  }

  /**
   * How long to wait before restarting a container that ended at `endedAt`.
   *
   * @param endedAt when it ended (ms)
   * @param now the time (ms)
   * @returns ms still to wait; 0 to restart now
   */
  wait(endedAt: number, now: number): number {
    if (this.#expired(endedAt)) return 0;
    return Math.max(0, endedAt + this.#backoffMs - now);
  }

  /** The current back-off in ms (0 before the first restart), for `back-off 10s …`. */
  get currentMs(): number {
    return this.#backoffMs;
  }

  /**
   * Records a restart of a container that ended at `endedAt`, made at `now`.
   *
   * @param endedAt when it ended (ms)
   * @param now the time of the restart (ms)
   */
  restarted(endedAt: number, now: number): void {
    this.#backoffMs = this.#expired(endedAt)
      ? this.#initialMs
      : Math.min(this.#backoffMs * 2, this.#maxMs);
    this.#lastRestart = now;
  }
}

/**
 * A whole number of seconds as Go prints a `time.Duration`: `10s`, `1m20s`, `5m0s`.
 *
 * @param ms the duration
 * @returns the text
 */
export function goDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h${m}m${r}s` : `${m}m${r}s`;
}
