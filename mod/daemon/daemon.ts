/**
 * The background daemon: one root process per machine that holds at most one
 * connection, serves the control socket (`control.ts`), logs to a rotating
 * file, and keeps a state file of what it changed so that the next start
 * after a crash, or `vif quit --force`, puts exactly that back.
 *
 * Files in the state directory (docs/daemon.md), which must be root's alone
 * (`state_dir.ts`: checked at start, files never opened through a link):
 * - `daemon.sock`: the control socket (mode 0600, the owner's);
 * - `daemon.log`, `daemon.log.1`…: the log;
 * - `daemon.json`: the daemon's pid, owner and what it changed;
 * - `portforward.sock`: the port-forward to the manager (mode 0600, root's);
 * - `resolv.conf.orig`, `resolv.conf.json`: written by the
 *   resolv.conf mode of DNS, restored on disconnect or recovery.
 *
 * The daemon resolves the user's kubeconfig credentials only as that user
 * (`credentials.ts`), and in resolv.conf mode keeps a DNS watchdog
 * (`dns_watchdog.ts`) that puts the original back if the daemon dies or hangs.
 *
 * @module
 */

import { VERSION } from "../version.ts";
import { listenUnix, type UnixServerConnection } from "../tun/mod.ts";
import { ResolvConfConfigurator } from "./dns_config.ts";
import {
  type CaptureEvent,
  type CaptureParams,
  type CaptureResult,
  type ConnectParams,
  type ControlError,
  type ControlReply,
  type ControlRequest,
  type DaemonVersion,
  encodeLine,
  LineSplitter,
  LOG_LEVELS,
  type LogLevel,
  MAX_LINE,
  parseRequest,
  PROTOCOL_VERSION,
  SOCKET_NAME,
  STREAMING_METHODS,
} from "./control.ts";
import { parseAddress } from "../net/address.ts";
import { checkSnaplen, DEFAULT_SNAPLEN, LINKTYPE_RAW } from "../net/pcap.ts";
import { MAX_CONNECTIONS } from "./flows.ts";
import { Connection, type ConnectionStatus, PORT_FORWARD_SOCKET } from "./connection.ts";
import { credentialsHelper } from "./credentials.ts";
import { LogFile } from "./log_file.ts";
import { self as selfOf, type SelfCommand } from "./self.ts";
import { keepRunningOnErrors, type Log } from "./session.ts";
import { type InterceptParams, isMounted, unmount } from "./intercepts.ts";
import { daemonAlive, type DaemonState, LOG_NAME, readDaemonState, STATE_FILE } from "./state.ts";
import { secureStateDir, writeOwnFile } from "./state_dir.ts";

/** `vif status --output json` (docs/daemon.md): version 1 of the schema. */
export interface StatusDocument {
  schema: 1;
  client: { version: string };
  daemon: {
    running: boolean;
    version: string | null;
    pid: number | null;
    uptimeSeconds: number | null;
    logFile: string | null;
    logLevel: LogLevel | null;
    /** The daemon's memory, in MiB: resident, and the JS heap's used and total, and off-heap buffers. */
    memory: { rssMb: number; heapUsedMb: number; heapTotalMb: number; externalMb: number } | null;
  };
  connected: boolean;
  connection: ConnectionStatus | null;
  /** Why the last connection ended on its own, if it did. */
  lastError: { message: string; hint: string } | null;
}

function memory(): NonNullable<StatusDocument["daemon"]["memory"]> {
  const m = Deno.memoryUsage();
  const mb = (n: number) => Math.round(n / 1048576 * 10) / 10;
  return {
    rssMb: mb(m.rss),
    heapUsedMb: mb(m.heapUsed),
    heapTotalMb: mb(m.heapTotal),
    externalMb: mb(m.external),
  };
}

/** Options of {@linkcode runDaemon}. */
export interface DaemonOptions {
  stateDir: string;
  /**
   * The user the control socket belongs to (besides root), and as whom the
   * kubeconfig's credentials are resolved.
   */
  owner: { uid: number; gid: number };
  /** How to run this program for the helpers; default: as this process was started. */
  self?: SelfCommand;
  level?: LogLevel;
  /** Copy log lines to stderr too (`vif daemon --log-stderr`). */
  echo?: boolean;
}

/**
 * Puts back what a daemon that died (`kill -9`, a crash, a power cut while
 * connected) left: resolv.conf from its saved original, the TUN if it is
 * still there, the socket and the state file. The TUN is not persistent, so
 * the kernel removed it, and its routes, with the daemon's last file
 * descriptor; resolved's per-link settings went with the link.
 *
 * @param stateDir the state directory
 * @param log where to say what was done
 * @returns what was put back, one phrase each (empty when there was nothing)
 * @throws {Error} when the daemon of the state file still runs
 */
export async function recoverAfterCrash(stateDir: string, log: Log): Promise<string[]> {
  const done: string[] = [];
  const state = await readDaemonState(stateDir);
  if (state && await daemonAlive(state.pid) && state.pid !== Deno.pid) {
    throw new Error(`the daemon (pid ${state.pid}) still runs`);
  }
  if (await ResolvConfConfigurator.recover(stateDir, { log })) done.push("resolv.conf restored");
  // Intercept mounts: their sshfs lost its stream with the daemon; unmount them.
  for (const point of state?.mounts ?? []) {
    if (typeof point !== "string" || !point.startsWith("/")) continue;
    if (await isMounted(point) && await unmount(point, state?.owner)) {
      done.push(`${point} unmounted`);
    }
  }
  if (state?.tun) {
    // Normally gone with the daemon's fd: the delete then fails, and there is nothing to say.
    const del = await new Deno.Command("ip", {
      args: ["link", "delete", "dev", state.tun],
      stderr: "null",
    }).output().catch(() => null);
    if (del?.success) done.push(`TUN ${state.tun} removed`);
  }
  for (const name of [SOCKET_NAME, STATE_FILE, PORT_FORWARD_SOCKET]) {
    try {
      await Deno.remove(`${stateDir}/${name}`);
      if (name === SOCKET_NAME) done.push("stale control socket removed");
    } catch {
      // not there
    }
  }
  if (done.length > 0) log("info", `daemon: after a crash: ${done.join(", ")}`);
  return done;
}

function errorOf(error: unknown, code: string): ControlError {
  const e = error as { message?: string; hint?: unknown };
  return {
    message: String(e?.message ?? error),
    hint: typeof e?.hint === "string"
      ? e.hint
      : 'This is unexpected; the daemon\'s log has the details ("vif gather-logs").',
    code,
  };
}

function sameParams(a: ConnectParams, b: ConnectParams): boolean {
  const key = (p: ConnectParams) =>
    JSON.stringify([
      p.kubeconfig ?? p.kubeconfigEnv ?? "",
      p.context ?? "",
      p.as ?? "",
      p.managerAddress ?? "",
      p.managerNamespace,
      p.namespace,
      [...p.alsoProxy].sort(),
      [...p.neverProxy].sort(),
      [...p.allowConflicting].sort(),
      [...p.dnsInclude].sort(),
      [...p.dnsExclude].sort(),
    ]);
  return key(a) === key(b);
}

/** What a connection is, in a few words: `context "dev" (namespace shop)`. */
function describeTarget(
  p: { context?: string | null; managerAddress?: string; namespace: string },
): string {
  const where = p.context
    ? `context "${p.context}"`
    : p.managerAddress
    ? `the manager at ${p.managerAddress}`
    : "the current context";
  return `${where}, namespace "${p.namespace}"`;
}

/**
 * Runs the daemon until `quit` or SIGTERM/SIGINT.
 *
 * @param options state directory, owner, log level
 * @returns the exit code
 * @throws {StateDirError} when the state directory is not root's alone, or
 *   the log is a symbolic link
 */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const { owner } = options;
  const stateDir = await secureStateDir(options.stateDir, { create: true });
  const self = options.self ?? selfOf((name) => Deno.env.get(name));
  const credentials = credentialsHelper({ self, user: owner });
  const logFile = LogFile.open(`${stateDir}/${LOG_NAME}`, {
    level: options.level ?? "info",
    owner,
    ...(options.echo
      ? { echo: (line: string) => Deno.stderr.writeSync(new TextEncoder().encode(line)) }
      : {}),
  });
  const log: Log = (level, message) => logFile.write(level, message);
  const startedAt = new Date();
  log("info", `daemon: vif ${VERSION} starting, pid ${Deno.pid}, state in ${stateDir}`);

  // Only one daemon per state directory: recovery refuses while another runs.
  try {
    await recoverAfterCrash(stateDir, log);
  } catch (error) {
    log("warn", `daemon: ${(error as Error).message}; exiting`);
    logFile.close();
    return 1;
  }

  const state: DaemonState = {
    pid: Deno.pid,
    version: VERSION,
    startedAt: startedAt.toISOString(),
    owner,
    tun: null,
    routes: [],
    dns: null,
  };
  const saveState = () => {
    const json = new TextEncoder().encode(JSON.stringify(state, null, 2) + "\n");
    writeOwnFile(`${stateDir}/${STATE_FILE}`, json, 0o644);
    return Promise.resolve();
  };
  await saveState();

  let connection: Connection | null = null;
  let connecting: Promise<unknown> | null = null;
  let lastError: { message: string; hint: string } | null = null;
  const quit = Promise.withResolvers<string>();

  const releaseErrors = keepRunningOnErrors(log);
  const signals: Array<[Deno.Signal, () => void]> = (["SIGINT", "SIGTERM"] as const).map(
    (s) => [s, () => quit.resolve(s)],
  );
  for (const [s, fn] of signals) Deno.addSignalListener(s, fn);
  // A terminal that goes away must not take the daemon with it.
  const ignoreHup = () => log("debug", "daemon: SIGHUP ignored");
  Deno.addSignalListener("SIGHUP", ignoreHup);

  const status = (): StatusDocument => ({
    schema: 1,
    client: { version: VERSION },
    daemon: {
      running: true,
      version: VERSION,
      pid: Deno.pid,
      uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
      logFile: logFile.path,
      logLevel: logFile.level,
      memory: memory(),
    },
    connected: connection !== null,
    connection: connection?.status() ?? null,
    lastError,
  });

  const disconnect = async (): Promise<boolean> => {
    const c = connection;
    if (!c) return false;
    connection = null;
    log("info", "daemon: disconnecting");
    await c.close();
    state.tun = null;
    state.routes = [];
    state.dns = null;
    await saveState();
    return true;
  };

  const connect = async (params: ConnectParams, progress: (line: string) => void) => {
    if (connection) {
      if (sameParams(connection.params, params)) return { ...status(), alreadyConnected: true };
      const now = describeTarget({ ...connection.params, context: connection.context ?? null });
      throw Object.assign(new Error(`already connected to ${now}`), {
        hint: "Run `vif quit` first, then `vif connect` with the new flags.",
        code: "already-connected",
      });
    }
    if (connecting) {
      throw Object.assign(new Error("another `vif connect` is connecting right now"), {
        hint: "Wait for it to finish, then check with `vif status`.",
        code: "busy",
      });
    }
    const attempt = (async () => {
      log("info", `daemon: connecting to ${describeTarget(params)}`);
      lastError = null;
      const c = await Connection.open(params, {
        stateDir,
        credentials,
        self,
        log,
        progress: (step) => {
          log("info", `connect: ${step}`);
          progress(step);
        },
        ...(owner.uid !== 0 ? { user: owner } : {}),
        onInterceptsChanged: () => {
          state.mounts = connection?.session.intercepts.mountPoints ?? [];
          saveState();
        },
      });
      connection = c;
      const s = c.status();
      state.tun = s.tun?.name ?? null;
      state.routes = s.subnets.routed.map((r) => r.cidr);
      state.dns = s.dns.mode;
      await saveState();
      c.ended.then(async (error) => {
        if (connection !== c) return;
        lastError = { message: error.message, hint: error.hint };
        await disconnect();
      });
      log("info", `daemon: connected (${state.tun}; ${state.routes.join(" ")})`);
      return status();
    })();
    connecting = attempt;
    try {
      return await attempt;
    } catch (error) {
      log("warn", `daemon: connect failed: ${(error as Error).message}`);
      throw error;
    } finally {
      connecting = null;
    }
  };

  const connected = (): Connection => {
    if (connection === null) {
      throw Object.assign(new Error("vif is not connected"), {
        hint: "Run `vif connect --context NAME` first.",
        code: "not-connected",
      });
    }
    return connection;
  };

  const capture = async (
    p: CaptureParams & { snaplen: number },
    event: (e: CaptureEvent) => Promise<void>,
    signal: AbortSignal | undefined,
  ): Promise<CaptureResult> => {
    const c = connected().session.capture({
      snaplen: p.snaplen,
      ...(p.hosts?.length ? { hosts: p.hosts.map((h) => parseAddress(h)!) } : {}),
      ...(p.port !== undefined ? { port: p.port } : {}),
      ...(p.count !== undefined ? { count: p.count } : {}),
    });
    const stop = () => c.stop("stopped");
    signal?.addEventListener("abort", stop);
    const timer = p.durationMs ? setTimeout(() => c.stop("duration"), p.durationMs) : undefined;
    const filter = [
      ...(p.hosts?.length ? [`host ${p.hosts.join(" or ")}`] : []),
      ...(p.port !== undefined ? [`port ${p.port}`] : []),
    ].join(" and ") || "everything";
    log("info", `capture: started (${filter}, snap length ${p.snaplen})`);
    try {
      await event({ type: "start", snaplen: p.snaplen, linktype: LINKTYPE_RAW });
      for (;;) {
        const batch = await c.next(CAPTURE_BATCH_BYTES);
        if (batch === null) break;
        await event({
          type: "packets",
          count: batch.count,
          dropped: c.counts.dropped,
          data: batch.records.toBase64(),
        });
      }
    } catch (error) {
      c.stop("failed");
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
      c.stop("stopped");
      log(
        "info",
        `capture: ended (${c.ended}): ${c.counts.delivered} packets sent, ${c.counts.dropped} dropped`,
      );
    }
    return { packets: c.counts.delivered, dropped: c.counts.dropped, reason: c.ended ?? "stopped" };
  };

  const handle = async (
    method: string,
    params: unknown,
    progress: (line: string) => void,
    event: (e: CaptureEvent) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<unknown> => {
    switch (method) {
      case "version":
        return {
          version: VERSION,
          protocol: PROTOCOL_VERSION,
          pid: Deno.pid,
          startedAt: startedAt.toISOString(),
          owner: owner.uid,
        } satisfies DaemonVersion;
      case "status":
        return status();
      case "connect":
        return await connect(params as ConnectParams, progress);
      case "disconnect":
        return { wasConnected: await disconnect() };
      case "quit": {
        const was = await disconnect();
        quit.resolve("quit");
        return { wasConnected: was };
      }
      case "loglevel": {
        const level = (params as { level?: string })?.level as LogLevel;
        if (!LOG_LEVELS.includes(level)) {
          throw Object.assign(new Error(`unknown log level "${level}"`), {
            hint: `Use one of: ${LOG_LEVELS.join(", ")}.`,
            code: "bad-request",
          });
        }
        const previous = logFile.level;
        logFile.level = level;
        log("info", `daemon: log level ${previous} → ${level}`);
        return { previous, level };
      }
      case "logs":
        return { files: logFile.files() };
      case "intercept":
        return await connected().session.intercepts.create(
          checkInterceptParams(params),
          progress,
        );
      case "leave": {
        const id = (params as { id?: unknown })?.id;
        if (typeof id !== "string" || id === "") {
          throw Object.assign(new Error("leave needs the intercept's id or workload"), {
            hint: "Run `vif leave NAME`.",
            code: "bad-request",
          });
        }
        const ended = await connected().session.intercepts.leave(id);
        if (ended.length === 0) {
          throw Object.assign(new Error(`no intercept of "${id}"`), {
            hint: "See the intercepts with `vif status`.",
            code: "not-intercepted",
          });
        }
        return { ended: ended.map((e) => e.id) };
      }
      case "agents": {
        const ns = (params as { namespace?: unknown })?.namespace;
        const list = await connected().session.intercepts.agents(typeof ns === "string" ? ns : "");
        return {
          agents: list.agents.map((a) => ({
            pod: a.podName,
            namespace: a.namespace,
            ip: a.podIp,
            workload: `${a.workloadKind}/${a.workloadName}`,
            ports: a.ports.map((p) => ({ name: p.name, port: p.containerPort })),
            version: a.version,
          })),
          intercepts: list.intercepts.map((i) => ({
            id: i.id,
            namespace: i.namespace,
            workload: i.workloadName,
            port: i.containerPort,
            holder: i.holder,
          })),
        };
      }
      case "connections": {
        const limit = (params as { limit?: unknown })?.limit;
        if (
          limit !== undefined &&
          !(typeof limit === "number" && Number.isInteger(limit) && limit >= 1 &&
            limit <= MAX_CONNECTIONS)
        ) {
          throw Object.assign(new Error(`the limit must be 1 to ${MAX_CONNECTIONS}`), {
            hint: "Ask for fewer connections.",
            code: "bad-request",
          });
        }
        return connected().session.connections(limit as number | undefined);
      }
      case "capture":
        return await capture(checkCaptureParams(params), event, signal);
      default:
        throw Object.assign(new Error(`unknown method "${method}"`), {
          hint: "See docs/daemon.md for the methods.",
          code: "unknown-method",
        });
    }
  };

  const serveOne = async (conn: UnixServerConnection) => {
    // One write at a time: a long line (a capture's batch) is written in
    // several pieces, and another line must not land between them.
    let writing: Promise<void> = Promise.resolve();
    const write = (reply: ControlReply): Promise<void> => {
      const done = writing.then(() => conn.write(encodeLine(reply)));
      writing = done.catch(() => {});
      return done;
    };
    const send = (reply: ControlReply) => write(reply).catch(() => {});
    if (conn.peer.uid !== 0 && conn.peer.uid !== owner.uid) {
      log(
        "warn",
        `daemon: refused a control connection from uid ${conn.peer.uid} (pid ${conn.peer.pid})`,
      );
      await send({
        id: 0,
        error: {
          message: `the vif daemon belongs to uid ${owner.uid}, not to uid ${conn.peer.uid}`,
          hint: "Use vif as the user who connected, or as root.",
          code: "permission-denied",
        },
      });
      conn.close();
      return;
    }
    const answer = async (request: ControlRequest, signal?: AbortSignal) => {
      try {
        const result = await handle(
          request.method,
          request.params,
          (progress) => void send({ id: request.id, progress }),
          (event) => write({ id: request.id, event }),
          signal,
        );
        await send({ id: request.id, result });
      } catch (error) {
        const code = (error as { code?: unknown })?.code;
        await send({
          id: request.id,
          error: errorOf(
            error,
            typeof code === "string"
              ? code
              : request.method === "connect"
              ? "connect-failed"
              : "failed",
          ),
        });
      }
    };
    // A streaming request runs while the connection is read on, for its `stop`.
    let stream: { id: number; stop: AbortController; done: Promise<void> } | null = null;
    const splitter = new LineSplitter();
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          const request = parseRequest(line);
          if ("error" in request) {
            await send(request);
            continue;
          }
          log("debug", `control: ${request.method} from uid ${conn.peer.uid} pid ${conn.peer.pid}`);
          if (request.method === "stop") {
            const target = (request.params as { id?: unknown })?.id;
            const running = stream;
            const stopping = running !== null && (target === undefined || target === running.id);
            if (stopping) running.stop.abort();
            await send({ id: request.id, result: { stopped: stopping } });
            continue;
          }
          if (stream !== null) {
            await send({
              id: request.id,
              error: {
                message: `request ${stream.id} streams on this connection`,
                hint: 'Send {"method": "stop"} first, or use another connection.',
                code: "busy",
              },
            });
            continue;
          }
          if (STREAMING_METHODS.has(request.method)) {
            const stop = new AbortController();
            const running = { id: request.id, stop, done: Promise.resolve() };
            running.done = answer(request, stop.signal).finally(() => {
              if (stream === running) stream = null;
            });
            stream = running;
            continue;
          }
          await answer(request);
        }
      }
    } catch (error) {
      log("debug", `control: connection ended: ${(error as Error).message}`);
    } finally {
      // The client hung up: its stream ends with it.
      const running = stream as { stop: AbortController; done: Promise<void> } | null;
      running?.stop.abort();
      await running?.done;
      conn.close();
    }
  };

  // Discovery and the port-forward are small (no Kubernetes client library,
  // see mod/kube/api.ts): load them now, while the first `vif connect` is on
  // its way.
  Promise.all([
    import("../kube/discovery.ts"),
    import("../kube/portforward.ts"),
  ]).catch(() => {});
  const server = await listenUnix(`${stateDir}/${SOCKET_NAME}`, { mode: 0o600, owner });
  log("info", `daemon: listening on ${server.path} for uid ${owner.uid} and root`);
  const serving = (async () => {
    for await (const conn of server) serveOne(conn);
  })().catch((error) => quit.resolve(`the control socket failed: ${error.message}`));

  const why = await quit.promise;
  log("info", `daemon: ${why}: shutting down`);
  await (connecting as Promise<unknown> | null)?.catch(() => {});
  await disconnect().catch((e) => log("warn", `daemon: disconnect failed: ${e}`));
  // Let the answer to `quit` reach the client before the socket goes.
  await new Promise((r) => setTimeout(r, 50));
  await server.close();
  await serving;
  await Deno.remove(`${stateDir}/${STATE_FILE}`).catch(() => {});
  for (const [s, fn] of signals) Deno.removeSignalListener(s, fn);
  Deno.removeSignalListener("SIGHUP", ignoreHup);
  releaseErrors();
  log("info", "daemon: stopped");
  logFile.close();
  return 0;
}

/** Checks `intercept`'s parameters: they come from a client of the control socket. */
function checkInterceptParams(params: unknown): InterceptParams {
  const p = (params ?? {}) as Record<string, unknown>;
  const bad = (what: string) =>
    Object.assign(new Error(`intercept: ${what}`), {
      hint: "Run `vif intercept NAME --port LOCAL` (see vif intercept --help).",
      code: "bad-request",
    });
  const name = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
  if (typeof p.namespace !== "string" || !name.test(p.namespace)) throw bad("a namespace");
  if (typeof p.workloadName !== "string" || !name.test(p.workloadName)) throw bad("a workload");
  if (!["Deployment", "StatefulSet", "ReplicaSet"].includes(String(p.workloadKind))) {
    throw bad("a workload kind");
  }
  const port = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0 && v < 65536;
  if (!port(p.containerPort)) throw bad("a container port");
  if (!port(p.localPort)) throw bad("a local port");
  if (typeof p.localHost !== "string" || !/^[0-9a-fA-F:.]{2,45}$|^localhost$/.test(p.localHost)) {
    throw bad("a local address");
  }
  if (
    p.mountPoint !== undefined &&
    (typeof p.mountPoint !== "string" || !p.mountPoint.startsWith("/"))
  ) {
    throw bad("an absolute mount point");
  }
  const timeoutMs = typeof p.timeoutMs === "number" && p.timeoutMs > 0
    ? Math.min(p.timeoutMs, 600_000)
    : undefined;
  return {
    namespace: p.namespace,
    workloadKind: p.workloadKind as InterceptParams["workloadKind"],
    workloadName: p.workloadName,
    containerPort: p.containerPort as number,
    localHost: p.localHost,
    localPort: p.localPort as number,
    ...(typeof p.mountPoint === "string" ? { mountPoint: p.mountPoint } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
  };
}

/** The most bytes of pcap records in one event line: their base64 and the line's frame fit in {@linkcode MAX_LINE}. */
const CAPTURE_BATCH_BYTES = Math.floor((MAX_LINE - 4096) / 4) * 3;

/** The longest capture asked for: a week. */
const MAX_CAPTURE_MS = 7 * 24 * 3600 * 1000;

/** Checks `capture`'s parameters: they come from a client of the control socket. */
function checkCaptureParams(params: unknown): CaptureParams & { snaplen: number } {
  const p = (params ?? {}) as Record<string, unknown>;
  const bad = (what: string) =>
    Object.assign(new Error(`capture: ${what}`), {
      hint: "Run `vif capture --help` for the options.",
      code: "bad-request",
    });
  const whole = (v: unknown, min: number, max: number) =>
    typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
  const out: CaptureParams & { snaplen: number } = { snaplen: DEFAULT_SNAPLEN };
  if (p.hosts !== undefined) {
    if (!Array.isArray(p.hosts) || p.hosts.length > 16) {
      throw bad("hosts must be at most 16 addresses");
    }
    for (const h of p.hosts) {
      if (typeof h !== "string" || parseAddress(h) === undefined) {
        throw bad(`${JSON.stringify(h).slice(0, 60)} is not an IP address`);
      }
    }
    out.hosts = p.hosts as string[];
  }
  if (p.port !== undefined) {
    if (!whole(p.port, 1, 65535)) throw bad("the port must be 1 to 65535");
    out.port = p.port as number;
  }
  if (p.snaplen !== undefined) {
    try {
      out.snaplen = checkSnaplen(p.snaplen as number);
    } catch (error) {
      throw bad((error as Error).message);
    }
  }
  if (p.durationMs !== undefined) {
    if (!whole(p.durationMs, 1, MAX_CAPTURE_MS)) throw bad("the duration must be 1 ms to 7 days");
    out.durationMs = p.durationMs as number;
  }
  if (p.count !== undefined) {
    if (!whole(p.count, 1, 1e9)) throw bad("the count must be 1 to 1000000000");
    out.count = p.count as number;
  }
  return out;
}
