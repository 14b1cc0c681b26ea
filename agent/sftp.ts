/**
 * The agent's side of an intercept's volume mounts: the workstation runs
 * `sshfs -o slave`, whose sftp stream travels as one mux flow
 * (`PROTOCOL_SFTP`, opened by the manager toward the agent) to an
 * `sftp-server` started here for that flow, its stdin and stdout joined to
 * the flow. No sshd and no ssh encryption: the tunnel is TLS. The server
 * starts in {@linkcode APP_MOUNT_PREFIX}, where the agent's container has the
 * app's volumes.
 *
 * One child per flow, killed when the flow ends; at most `max` at once.
 *
 * @module
 */

import { APP_MOUNT_PREFIX } from "../mod/kube/agent_config.ts";
import type { Socket } from "../mod/net/dialer.ts";
import type { Accepted } from "../mod/rpc/mux_end.ts";
import { AppStream } from "../mod/rpc/mux_socket.ts";
import { DialResult_Code } from "../mod/rpc/service.ts";
import type { AgentLog } from "./log.ts";

/** The default bound of sftp servers running at once. */
export const MAX_SFTP_SERVERS = 8;

/** Where distributions put `sftp-server` (Debian first: the agent's image is Debian's). */
const SFTP_SERVER_PATHS = [
  "/usr/lib/openssh/sftp-server",
  "/usr/libexec/openssh/sftp-server",
  "/usr/lib/ssh/sftp-server",
  "/usr/libexec/sftp-server",
];

/** Lines of one server's stderr that are logged; the rest is read and dropped. */
const MAX_LOGGED_LINES = 32;

/** Options of {@linkcode SftpServers}. */
export interface SftpOptions {
  /** The `sftp-server` program; found in the usual places and on `path` when absent. */
  program?: string;
  /** The agent's `PATH`, to look for `sftp-server` on. */
  path?: string;
  /** Where the server starts. Default {@linkcode APP_MOUNT_PREFIX}. */
  root?: string;
  /** The most servers at once. Default {@linkcode MAX_SFTP_SERVERS}. */
  max?: number;
  /** Log sink. */
  log: AgentLog;
}

/** The sftp servers of the agent's flows. */
export class SftpServers {
  #options: SftpOptions;
  #max: number;
  #program: Promise<string | undefined> | undefined;
  /** Servers running, and the slots taken by servers being started. */
  #children = new Set<Deno.ChildProcess>();
  #starting = 0;
  #started = 0;

  /** @param options the program, where it starts, the bound, the log */
  constructor(options: SftpOptions) {
    this.#options = options;
    this.#max = options.max ?? MAX_SFTP_SERVERS;
  }

  /** How many servers run now. */
  get running(): number {
    return this.#children.size;
  }

  /** How many were started since the agent started. */
  get started(): number {
    return this.#started;
  }

  /**
   * Serves an sftp OPEN: starts a server for the flow.
   *
   * @param signal aborted when the manager gives up on the flow
   * @returns the flow's socket side, or a refusal
   */
  async accept(signal: AbortSignal): Promise<Accepted> {
    if (this.#children.size + this.#starting >= this.#max) {
      return {
        code: DialResult_Code.UNREACHABLE,
        message: `the traffic-agent runs ${this.#max} sftp servers already`,
      };
    }
    this.#starting++;
    let child: Deno.ChildProcess;
    try {
      const program = await this.#find();
      if (program === undefined) {
        return {
          code: DialResult_Code.UNREACHABLE,
          message: "the traffic-agent's image has no sftp-server (openssh-sftp-server)",
        };
      }
      if (signal.aborted) {
        return { code: DialResult_Code.UNREACHABLE, message: "the flow was given up" };
      }
      try {
        child = new Deno.Command(program, {
          // -e: errors to stderr (the agent's log); -d: where the mounts are.
          args: ["-e", "-d", this.#options.root ?? APP_MOUNT_PREFIX],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
          // The agent's environment holds the app's (secrets among them): none of it for the child.
          clearEnv: true,
        }).spawn();
      } catch (error) {
        return {
          code: DialResult_Code.UNREACHABLE,
          message: `cannot start "${program}": ${(error as Error).message}`,
        };
      }
    } finally {
      this.#starting--;
    }
    this.#started++;
    this.#children.add(child);
    const { log } = this.#options;
    log("debug", `agent: sftp: server ${child.pid} started`);
    this.#logStderr(child);
    child.status.then((status) => {
      this.#children.delete(child);
      log("debug", `agent: sftp: server ${child.pid} ended (${describe(status)})`);
    });
    return {
      message: "sftp-server started",
      tcp: (flow) => {
        const stream = new AppStream(flow);
        stream.joinSocket(new ChildSocket(child)).then(() => {
          // Both ways ended: the flow is over for the manager too.
          flow.closed();
          kill(child);
        });
        return stream;
      },
      onEnd: () => kill(child),
    };
  }

  /** Kills every server (the agent is stopping). */
  closeAll(): void {
    for (const child of this.#children) kill(child);
  }

  #find(): Promise<string | undefined> {
    return this.#program ??= findProgram(this.#options);
  }

  async #logStderr(child: Deno.ChildProcess): Promise<void> {
    const decoder = new TextDecoder();
    let logged = 0;
    let partial = "";
    try {
      for await (const chunk of child.stderr) {
        if (logged >= MAX_LOGGED_LINES) continue; // Still read, so the child never blocks.
        const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
        partial = (lines.pop() ?? "").slice(0, 1024);
        for (const line of lines) {
          if (line.trim() === "" || logged >= MAX_LOGGED_LINES) continue;
          logged++;
          this.#options.log("info", `agent: sftp-server ${child.pid}: ${clean(line)}`);
        }
      }
    } catch {
      // The child is gone.
    }
  }
}

/** A child process as a socket: reads are its stdout, writes its stdin; close kills it. */
class ChildSocket implements Socket {
  #child: Deno.ChildProcess;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #left: Uint8Array | null = null;

  constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#reader = child.stdout.getReader();
    this.#writer = child.stdin.getWriter();
  }

  async read(buf: Uint8Array): Promise<number | null> {
    let chunk = this.#left;
    this.#left = null;
    if (chunk === null) {
      const { value, done } = await this.#reader.read();
      if (done) return null;
      chunk = value;
    }
    const n = Math.min(chunk.length, buf.length);
    buf.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#left = chunk.subarray(n);
    return n;
  }

  async write(data: Uint8Array): Promise<number> {
    await this.#writer.write(data);
    return data.length;
  }

  async closeWrite(): Promise<void> {
    await this.#writer.close();
  }

  close(): void {
    kill(this.#child);
    this.#reader.cancel().catch(() => {});
    this.#writer.abort().catch(() => {});
  }
}

function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // It has exited already.
  }
}

async function findProgram(options: SftpOptions): Promise<string | undefined> {
  const candidates = options.program !== undefined ? [options.program] : [
    ...SFTP_SERVER_PATHS,
    ...(options.path ?? "").split(":").filter((dir) => dir.startsWith("/")).map((dir) =>
      `${dir.replace(/\/$/, "")}/sftp-server`
    ),
  ];
  for (const path of candidates) {
    try {
      const info = await Deno.stat(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // Not there.
    }
  }
  return undefined;
}

function describe(status: Deno.CommandStatus): string {
  return status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`;
}

/** A line of the child's stderr, safe for one log line. */
function clean(line: string): string {
  // deno-lint-ignore no-control-regex
  return line.replace(/[\x00-\x1f\x7f]/g, " ").slice(0, 300);
}
