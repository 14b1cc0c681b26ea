/**
 * The session's intercepts, on the workstation's side: asking the manager
 * for them (`CreateIntercept`, waiting while the agents arrive), serving the
 * connections the manager opens toward the daemon for them (each one dialed
 * to the local port, `127.0.0.1:LOCAL` or `--address`), and the volume
 * mounts: `sshfs -o slave`, run as the user the daemon serves, whose stdin
 * and stdout are an sftp stream to the intercepted pod's agent over the
 * session's Mux call. No sshd, no port opened anywhere.
 *
 * A local port that refuses makes the cluster's client see a reset (the
 * manager tells the agent, which closes its connection), not a hang.
 *
 * @module
 */

import grpc from "@grpc/grpc-js";
import { APP_MOUNT_PREFIX, type InterceptClaim } from "../kube/agent_config.ts";
import { MuxProtocol, type OpenFrame } from "../rpc/mux.ts";
import type { Accepted } from "../rpc/mux_end.ts";
import { AppStream } from "../rpc/mux_socket.ts";
import {
  type AgentList,
  create,
  CreateInterceptRequestSchema,
  DialResult_Code,
  type InterceptInfo,
  InterceptRefSchema,
  ListAgentsRequestSchema,
} from "../rpc/service.ts";
import type { KubeApi } from "../kube/api.ts";
import { KubeError } from "../kube/errors.ts";
import { claimIntercept, releaseIntercept } from "../kube/intercept_claims.ts";
import { setprivPrefix } from "./credentials.ts";
import type { ManagerClient } from "./manager_client.ts";
import { unary } from "./manager_client.ts";
import type { MuxDialer } from "./mux_dialer.ts";
import type { Log } from "./session.ts";

/** What `intercept` asks of the daemon. */
export interface InterceptParams {
  namespace: string;
  workloadKind: "Deployment" | "StatefulSet" | "ReplicaSet";
  workloadName: string;
  /** The app container's port to take. */
  containerPort: number;
  /** Where the intercepted connections go on the workstation. */
  localHost: string;
  localPort: number;
  /** An empty directory of the user's to mount the pod's volumes on; none when absent. */
  mountPoint?: string;
  /** How long to wait for the agents, in ms. Default 120000. */
  timeoutMs?: number;
}

/** An intercept as `vif status` and `vif intercept` show it. */
export interface InterceptStatus {
  id: string;
  namespace: string;
  workload: string;
  containerPort: number;
  holder: string;
  /** `host:port` on the workstation. */
  local: string;
  /** Where the pod's volumes are mounted; null when they are not. */
  mountPoint: string | null;
  /** The workload's agents: pod names and IPs. */
  agents: Array<{ pod: string; ip: string }>;
  /** The app container's environment (values included: the CLI writes them out). */
  environment: Record<string, string>;
  /** The pod's resolv.conf search list. */
  searchPath: string[];
  /** The app container's mounts, where the agent has them. */
  mounts: Array<{ name: string; mountPath: string; readOnly: boolean }>;
  /** Connections taken so far. */
  connections: number;
}

/** An error with what to do, as the control protocol carries it. */
export class InterceptError extends Error {
  readonly hint: string;
  readonly code: string;
  /**
   * @param message what happened
   * @param hint what to do
   * @param code a stable name
   */
  constructor(message: string, hint: string, code = "intercept-failed") {
    super(message);
    this.name = "InterceptError";
    this.hint = hint;
    this.code = code;
  }
}

/** Options of {@linkcode Intercepts}. */
export interface InterceptsOptions {
  client: ManagerClient;
  dialer: MuxDialer;
  sessionId(): string;
  log: Log;
  /** The user the daemon serves: sshfs and fusermount run as them. Absent: as this process. */
  user?: { uid: number; gid: number };
  /** Called when the set of intercepts or mounts changes (the state file records the mounts). */
  changed?(): void;
  /**
   * The Kubernetes API with the user's credentials, to write the session's
   * claim on the workload. Absent (a manager dialed directly): no intercepts.
   */
  kube?(): KubeApi | undefined;
  /** Who holds the intercepts, as the workload's claims and `vif list` show it (`alice@laptop`). */
  holder: string;
}

interface Held {
  info: InterceptInfo;
  params: InterceptParams;
  connections: number;
  mount: Mount | null;
}

interface Mount {
  point: string;
  child: Deno.ChildProcess;
  stream: AppStream;
  done: Promise<void>;
  /** sshfs's last lines on stderr. */
  said: () => string;
}

const CONNECT_TIMEOUT_MS = 5000;

/** The session's intercepts: see the module documentation. */
export class Intercepts {
  #o: InterceptsOptions;
  #held = new Map<string, Held>();

  /** @param options the manager's client, the dialer, the user */
  constructor(options: InterceptsOptions) {
    this.#o = options;
  }

  /** Whether any intercept is held (the Mux call must stay open). */
  get active(): boolean {
    return this.#held.size > 0;
  }

  /** The mount points in use, for the state file (crash recovery unmounts them). */
  get mountPoints(): string[] {
    return [...this.#held.values()].flatMap((h) => h.mount ? [h.mount.point] : []);
  }

  /**
   * The search domains of the intercepted pods, first seen first: while
   * intercepting, names resolve on the workstation as in the pod.
   */
  searchPath(): string[] {
    const all = [...this.#held.values()].flatMap((h) => h.info.searchPath);
    return [...new Set(all.map((d) => d.toLowerCase().replace(/\.$/, "")))].slice(0, 6);
  }

  /** What `vif status` shows. */
  list(): InterceptStatus[] {
    return [...this.#held.values()].map((h) => statusOf(h));
  }

  /**
   * Serves an OPEN from the manager: an intercepted connection, dialed to
   * its intercept's local port.
   *
   * @param open the OPEN
   * @returns the flow's serving, or a refusal the cluster's client sees as a reset
   */
  async accept(open: OpenFrame): Promise<Accepted> {
    if (open.protocol !== MuxProtocol.Intercepted) {
      return {
        code: DialResult_Code.PROHIBITED,
        message: "vif accepts intercepted connections only",
      };
    }
    const held = this.#held.get(open.tag ?? "");
    if (held === undefined) {
      return { code: DialResult_Code.REFUSED, message: `no intercept "${open.tag ?? ""}" here` };
    }
    const { localHost, localPort } = held.params;
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname: localHost,
        port: localPort,
        signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
      } as Deno.ConnectOptions);
    } catch (error) {
      this.#o.log(
        "info",
        `intercept ${held.info.id}: ${localHost}:${localPort} refused a connection: ` +
          (error as Error).message,
      );
      const timedOut = (error as Error).name === "TimeoutError";
      return {
        code: timedOut ? DialResult_Code.TIMEOUT : DialResult_Code.REFUSED,
        message: `${localHost}:${localPort} on the workstation: ${(error as Error).message}`,
      };
    }
    held.connections++;
    return {
      message: `${localHost}:${localPort}`,
      tcp: (flow) => {
        const stream = new AppStream(flow);
        stream.joinSocket(conn).finally(() => {
          try {
            conn.close();
          } catch {
            // closed already
          }
          // Both ways done: the flow leaves the mux's table (and vif connections).
          flow.closed();
        });
        return stream;
      },
    };
  }

  /**
   * Asks the manager for an intercept, waiting (with progress) while the
   * workload's agents arrive, then mounts the volumes when asked.
   *
   * @param params what to intercept and where it goes
   * @param progress progress lines
   * @returns the intercept
   * @throws {InterceptError} saying why and what to do
   */
  async create(
    params: InterceptParams,
    progress: (line: string) => void,
  ): Promise<InterceptStatus> {
    const what = `${params.workloadKind.toLowerCase()}/${params.workloadName}`;
    const deadline = Date.now() + (params.timeoutMs ?? 120_000);
    const replaced = await this.#claim(params);
    // The Mux call must be open before the manager can send anything on it.
    this.#o.dialer.open();
    let info: InterceptInfo | undefined;
    let said = "";
    // Refused (the port is another session's, no agent came): the claim comes off again, and
    // the claim it replaced goes back, so the holder's stays on the workload.
    const unclaim = () =>
      this.#release(params, replaced).catch((e) =>
        this.#o.log("info", `intercept of ${what}: its claim stays on the workload: ${e}`)
      );
    while (info === undefined) {
      try {
        info = await unary<InterceptInfo>(
          this.#o.client,
          "createIntercept",
          create(CreateInterceptRequestSchema, {
            sessionId: this.#o.sessionId(),
            namespace: params.namespace,
            workloadKind: params.workloadKind,
            workloadName: params.workloadName,
            containerPort: params.containerPort,
          }),
          15_000,
        );
      } catch (error) {
        const e = error as grpc.ServiceError;
        if (e.code === grpc.status.FAILED_PRECONDITION && Date.now() < deadline) {
          if (e.details !== said) progress(`waiting: ${e.details}`);
          said = e.details;
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        await unclaim();
        throw interceptError(e, what, params);
      }
    }
    const held: Held = { info, params, connections: 0, mount: null };
    this.#held.set(info.id, held);
    this.#o.changed?.();
    progress(
      `intercepting port ${params.containerPort} of ${what} (${info.agents.length} pod` +
        `${info.agents.length === 1 ? "" : "s"}) → ${params.localHost}:${params.localPort}`,
    );
    if (params.mountPoint !== undefined) {
      try {
        const mount = await this.#mount(info, params.mountPoint);
        held.mount = mount;
        this.#o.changed?.();
        this.#watchMount(held, mount);
        progress(`volumes of ${info.agents[0]?.podName ?? what} mounted on ${params.mountPoint}`);
      } catch (error) {
        await this.leave(info.id, "the mount failed").catch(() => {});
        throw error;
      }
    }
    return statusOf(held);
  }

  /**
   * Ends an intercept: unmounts, tells the manager, forgets it.
   *
   * @param id the intercept's id, or `namespace/workload` (every port of it), or the workload's name
   * @param reason for the log
   * @returns the intercepts ended
   */
  async leave(id: string, reason = "left"): Promise<InterceptStatus[]> {
    const matches = [...this.#held.values()].filter((h) =>
      h.info.id === id || `${h.info.namespace}/${h.info.workloadName}` === id ||
      h.info.workloadName === id
    );
    const ended: InterceptStatus[] = [];
    for (const held of matches) {
      this.#held.delete(held.info.id);
      await this.#unmount(held);
      await this.#release(held.params).catch((e) =>
        this.#o.log("info", `intercept ${held.info.id}: its claim stays on the workload: ${e}`)
      );
      await unary(
        this.#o.client,
        "removeIntercept",
        create(InterceptRefSchema, { sessionId: this.#o.sessionId(), id: held.info.id }),
        10_000,
      ).catch((e: grpc.ServiceError) =>
        this.#o.log("debug", `intercept ${held.info.id}: RemoveIntercept: ${e.details ?? e}`)
      );
      this.#o.log("info", `intercept ${held.info.id}: ended (${reason})`);
      ended.push(statusOf(held));
    }
    if (matches.length > 0) this.#o.changed?.();
    return ended;
  }

  /**
   * The session arrived again (a new id): the manager forgot its
   * intercepts, so they are claimed and asked for again.
   */
  async renew(): Promise<void> {
    for (const held of [...this.#held.values()]) {
      try {
        await this.#claim(held.params);
        held.info = await unary<InterceptInfo>(
          this.#o.client,
          "createIntercept",
          create(CreateInterceptRequestSchema, {
            sessionId: this.#o.sessionId(),
            namespace: held.params.namespace,
            workloadKind: held.params.workloadKind,
            workloadName: held.params.workloadName,
            containerPort: held.params.containerPort,
          }),
          15_000,
        );
        this.#o.log("info", `intercept ${held.info.id}: taken again for the new session`);
      } catch (error) {
        const e = error as grpc.ServiceError & Error;
        this.#o.log(
          "warn",
          `intercept ${held.info.id}: lost with the old session: ${e.details ?? e.message}`,
        );
        this.#held.delete(held.info.id);
        await this.#unmount(held);
        this.#o.changed?.();
      }
    }
  }

  /** The session's claim on the workload, written with the user's credentials. */
  async #claim(params: InterceptParams): Promise<InterceptClaim | undefined> {
    const api = this.#o.kube?.();
    if (api === undefined) {
      throw new InterceptError(
        "intercepts need the Kubernetes API, and this connection has none (--manager-address)",
        "Connect with --context (vif connect --context NAME), then intercept.",
        "no-kube",
      );
    }
    try {
      return await claimIntercept(api, target(params), {
        session: await sha256Hex(this.#o.sessionId()),
        holder: this.#o.holder,
        since: new Date().toISOString(),
      });
    } catch (error) {
      if (error instanceof KubeError) {
        throw new InterceptError(error.message, error.hint, "not-allowed");
      }
      throw error;
    }
  }

  async #release(params: InterceptParams, restore?: InterceptClaim): Promise<void> {
    const api = this.#o.kube?.();
    if (api === undefined) return;
    await releaseIntercept(api, target(params), await sha256Hex(this.#o.sessionId()), restore);
  }

  /** Ends every intercept (the session is closing). */
  async leaveAll(reason: string): Promise<void> {
    for (const id of [...this.#held.keys()]) await this.leave(id, reason);
  }

  /**
   * The agents and intercepts the manager knows of.
   *
   * @param namespace one namespace, or every one when empty
   * @returns the manager's list
   */
  agents(namespace: string): Promise<AgentList> {
    return unary<AgentList>(
      this.#o.client,
      "listAgents",
      create(ListAgentsRequestSchema, { sessionId: this.#o.sessionId(), namespace }),
      10_000,
    );
  }

  // --- volumes ---------------------------------------------------------------

  async #mount(info: InterceptInfo, point: string): Promise<Mount> {
    const pod = info.agents[0];
    if (pod === undefined) {
      throw new InterceptError(
        "no agent to mount the volumes from",
        "Try again once the pod runs.",
      );
    }
    const opened = await this.#o.dialer.openStream({
      protocol: MuxProtocol.Sftp,
      sourceIp: new Uint8Array(4),
      sourcePort: 0,
      destinationIp: new Uint8Array(4),
      destinationPort: 0,
      dialTimeoutMs: 0,
      window: 0,
      tag: info.id,
    });
    if (!opened.ok) {
      throw new InterceptError(
        `cannot open the volumes of ${pod.podName}: ${opened.message ?? opened.reason}`,
        "Check that the agent's image has sftp-server (vif's image does), or leave out --mount.",
        "mount-failed",
      );
    }
    const stream = opened.value;
    const user = this.#o.user;
    const asUser = user && Deno.uid() === 0 ? await setprivPrefix(user) : [];
    const argv = [
      ...asUser,
      "sshfs",
      "-f",
      "-o",
      "slave",
      "-o",
      "idmap=user",
      "-o",
      `fsname=vif:${info.id}`,
      `vif:${APP_MOUNT_PREFIX}`,
      point,
    ];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(argv[0]!, {
        args: argv.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        clearEnv: true,
        env: { PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" },
      }).spawn();
    } catch (error) {
      stream.writable.abort("sshfs did not start").catch(() => {});
      throw new InterceptError(
        `cannot start sshfs: ${(error as Error).message}`,
        "Install sshfs (Debian: apt install sshfs), or leave out --mount.",
        "mount-failed",
      );
    }
    const errors: string[] = [];
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        if (errors.join("").length < 4096) errors.push(decoder.decode(chunk));
      }
    })().catch(() => {});
    const toSshfs = stream.readable.pipeTo(child.stdin).catch(() => {});
    const fromSshfs = child.stdout.pipeTo(stream.writable).catch(() => {});
    const done = Promise.all([toSshfs, fromSshfs, child.status]).then(() => {});
    // sshfs -f mounts, then serves: wait until the mount is there, or sshfs gave up.
    const mounted = await waitForMount(point, child.status, 15_000);
    if (!mounted.ok) {
      await Promise.race([child.status, new Promise((r) => setTimeout(r, 200))]);
      const said = lastLines(errors);
      try {
        child.kill("SIGTERM");
      } catch {
        // gone already
      }
      stream.writable.abort("sshfs failed").catch(() => {});
      throw new InterceptError(
        `cannot mount the volumes of ${pod.podName} on ${point}: ${mounted.reason}${
          said ? ` (${said})` : ""
        }`,
        /\/dev\/fuse: Permission denied/.test(said)
          ? "/dev/fuse is not yours to open (most systems make it mode 0666); fix that, " +
            "or leave out --mount. `vif doctor` checks it."
          : "Check that the directory is empty and yours, and that FUSE works (/dev/fuse), " +
            "or leave out --mount.",
        "mount-failed",
      );
    }
    this.#o.log(
      "info",
      `intercept ${info.id}: volumes mounted on ${point} (sshfs pid ${child.pid})`,
    );
    return { point, child, stream, done, said: () => lastLines(errors) };
  }

  /**
   * Says so when sshfs ends on its own (the agent's pod went, the flow was
   * reset), and takes the dead mount away, so that the state file and
   * `vif status` do not claim it.
   */
  #watchMount(held: Held, mount: Mount): void {
    mount.child.status.then(async (status) => {
      if (held.mount !== mount) return; // unmounted on purpose
      held.mount = null;
      this.#o.log(
        "warn",
        `intercept ${held.info.id}: sshfs ended (exit ${status.code}${
          mount.said() ? `: ${mount.said()}` : ""
        }); the volumes on ${mount.point} are gone`,
      );
      await unmount(mount.point, this.#o.user);
      this.#o.changed?.();
    }).catch(() => {});
  }

  async #unmount(held: Held): Promise<void> {
    const mount = held.mount;
    if (mount === null) return;
    held.mount = null;
    await unmount(mount.point, this.#o.user);
    try {
      mount.child.kill("SIGTERM");
    } catch {
      // gone already
    }
    await Promise.race([mount.done, new Promise((r) => setTimeout(r, 2000))]);
  }
}

/** The last lines a program wrote to stderr, on one line. */
function lastLines(chunks: string[]): string {
  return chunks.join("").trim().split("\n").slice(-3).join("; ");
}

/**
 * Unmounts a FUSE mount of vif's, lazily (a process in it does not keep it):
 * as its user with `fusermount3`, else as root with `umount`.
 *
 * @param point the mount point
 * @param user who mounted it
 * @returns whether it is gone
 */
export async function unmount(
  point: string,
  user?: { uid: number; gid: number },
): Promise<boolean> {
  const asUser = user && Deno.uid() === 0 ? await setprivPrefix(user) : [];
  const tries = [[...asUser, "fusermount3", "-u", "-z", point], ["umount", "-l", point]];
  for (const argv of tries) {
    const ok = await new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output().then((o) => o.success, () => false);
    if (ok) return true;
  }
  return !(await isMounted(point));
}

/**
 * Whether something is mounted on `point` (per /proc/self/mountinfo).
 *
 * @param point an absolute path
 * @returns whether it is a mount point
 */
export async function isMounted(point: string): Promise<boolean> {
  const text = await Deno.readTextFile("/proc/self/mountinfo").catch(() => "");
  const escaped = point.replace(
    /[ \t\n\\]/g,
    (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`,
  );
  return text.split("\n").some((line) => line.split(" ")[4] === escaped);
}

async function waitForMount(
  point: string,
  exited: Promise<Deno.CommandStatus>,
  timeoutMs: number,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  let gone: Deno.CommandStatus | undefined;
  exited.then((s) => gone = s);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await isMounted(point)) return { ok: true };
    if (gone !== undefined) return { ok: false, reason: `sshfs exited with ${gone.code}` };
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ok: false, reason: `no mount after ${timeoutMs / 1000} s` };
}

function target(params: InterceptParams) {
  return {
    namespace: params.namespace,
    kind: params.workloadKind,
    name: params.workloadName,
    port: params.containerPort,
  };
}

/** The hex SHA-256 of a text: a session's claim names its id's hash, not the id. */
async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function statusOf(h: Held): InterceptStatus {
  return {
    id: h.info.id,
    namespace: h.info.namespace,
    workload: h.info.workloadName,
    containerPort: h.info.containerPort,
    holder: h.info.holder,
    local: `${h.params.localHost}:${h.params.localPort}`,
    mountPoint: h.mount?.point ?? null,
    agents: h.info.agents.map((a) => ({ pod: a.podName, ip: a.podIp })),
    environment: { ...h.info.environment },
    searchPath: [...h.info.searchPath],
    mounts: h.info.mounts.map((m) => ({
      name: m.name,
      mountPath: m.mountPath,
      readOnly: m.readOnly,
    })),
    connections: h.connections,
  };
}

function interceptError(e: grpc.ServiceError, what: string, params: InterceptParams): Error {
  const details = e.details || e.message;
  switch (e.code) {
    case grpc.status.ALREADY_EXISTS:
      return new InterceptError(
        details,
        `Ask them to run \`vif leave ${params.workloadName}\`, or intercept another port.`,
        "intercept-taken",
      );
    case grpc.status.FAILED_PRECONDITION:
      return new InterceptError(
        `${details} (waited ${Math.round((params.timeoutMs ?? 120_000) / 1000)} s)`,
        `Check the pods of ${what}: kubectl -n ${params.namespace} get pods; ` +
          "then run vif intercept again.",
        "no-agent",
      );
    case grpc.status.PERMISSION_DENIED:
      return new InterceptError(
        details,
        `Run vif intercept again; if it fails the same way, check that you may patch ${what}.`,
        "not-claimed",
      );
    case grpc.status.UNIMPLEMENTED:
      return new InterceptError(
        details,
        "Reinstall the traffic-manager with `vif install` (a manager in a pod serves intercepts).",
        "no-intercepts",
      );
    default:
      return new InterceptError(
        `cannot intercept ${what}: ${details}`,
        "Check `vif status`, then try again.",
      );
  }
}
