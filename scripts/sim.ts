/**
 * `deno task sim up|down|status|exec -- CMD|pod-exec POD -- CMD`: the simulated cluster
 * (tests/sim/sim.ts) as a long-running thing to try vif against by hand.
 *
 * - `up` starts it in the background (namespaces `vif-ws`, `vif-node1`, …,
 *   the sample workloads) and prints where the kubeconfig is. It waits until
 *   the cluster is ready. A second `up` says it is already up.
 * - `down` stops it; everything it made goes with it. When its process died
 *   without cleaning up, `down` removes what it left.
 * - `status` says whether it runs, and lists nodes, pods and services.
 * - `exec -- CMD [ARGS…]` runs CMD in the workstation namespace `vif-ws` (all
 *   in one mount namespace, as a workstation's processes are) with
 *   `KUBECONFIG` set, `VIF_STATE_DIR` at `/run/vif-sim/vif` (so the vif
 *   daemon started there keeps its socket, log and state apart from the
 *   machine's), and `vif` and `kubectl` (Debian's) first on `PATH`.
 *
 * - `pod-exec [-n NS] [-c CONTAINER] POD -- CMD [ARGS…]` runs CMD in a pod's
 *   container (`deployment/NAME` takes its first pod), as `kubectl exec` would:
 *   its namespaces, user, environment and resolv.conf. The fake API server
 *   has no `exec`; the running simulation does it for this command, over a
 *   Unix socket only root can open. Output comes when the command ends.
 *
 * State lives in `/run/vif-sim` (`kubeconfig`, `sim.log`, `pid`, `bin/`, `vif/`); `down` stops a
 * vif daemon still running there, then removes it all.
 *
 * @module
 */

import { DENO, Env, mountHolder, ROOT, run } from "../tests/e2e/_env.ts";
import { debianKubectl } from "../tests/sim/apiserver/_testing.ts";
import { Sim, SIM_CONTEXT, SIM_DEV_CONTEXT, SIM_LIMITED_CONTEXT } from "../tests/sim/sim.ts";

const STATE = Deno.env.get("VIF_SIM_STATE") ?? "/run/vif-sim";
const BASE = "vif";
const WS = `${BASE}-ws`;
const KUBECONFIG = `${STATE}/kubeconfig`;
const LOG = `${STATE}/sim.log`;
const PID = `${STATE}/pid`;
const READY = `${STATE}/ready`;
/** Where the simulation takes `pod-exec` requests (0600). */
const EXEC_SOCK = `${STATE}/pod-exec.sock`;
/** The pid of the process holding the workstation's mount namespace (`sim exec` joins it). */
const WS_MOUNTS = `${STATE}/ws-mounts`;
const BIN = `${STATE}/bin`;
/** The state directory of the vif daemon started in the workstation (`VIF_STATE_DIR`). */
const VIF_STATE = `${STATE}/vif`;

function say(line: string): void {
  console.log(line);
}

function fail(what: string, hint: string): never {
  console.error(`sim: ${what}`);
  console.error(`  ${hint}`);
  Deno.exit(1);
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

function readPid(): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync(PID).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function leftovers(): Promise<string[]> {
  const out = await run(["ip", "netns", "list"]);
  return out.stdout.split("\n").map((l) => l.split(" ")[0]!).filter((n) =>
    /^vif-(ws|lan|out|node\d+|p\d+)$/.test(n)
  );
}

async function up(): Promise<void> {
  if (Deno.uid() !== 0) fail("the simulated cluster needs root", "Run it with sudo.");
  const pid = readPid();
  if (pid && alive(pid)) {
    say(`The simulated cluster is already up (pid ${pid}).`);
    say(
      `  kubeconfig: ${KUBECONFIG} (contexts ${SIM_CONTEXT}, ${SIM_LIMITED_CONTEXT}, ${SIM_DEV_CONTEXT})`,
    );
    return;
  }
  if ((await leftovers()).length > 0) {
    fail(
      "namespaces of an earlier simulated cluster are still here",
      'Run "deno task sim down" first.',
    );
  }
  await Deno.mkdir(STATE, { recursive: true, mode: 0o755 });
  await Deno.remove(READY).catch(() => {});
  const script = new URL(import.meta.url).pathname;
  // Detached: its own session, its output in the log, nothing tied to this terminal.
  const child = new Deno.Command("setsid", {
    args: [
      "sh",
      "-c",
      `exec "$0" run -A --config "$1" "$2" serve >"$3" 2>&1 </dev/null`,
      DENO,
      `${ROOT}/deno.json`,
      script,
      LOG,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  say("Starting the simulated cluster (namespaces vif-*, sample workloads)…");
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      Deno.statSync(READY);
      break;
    } catch { /* not yet */ }
    const status = await Promise.race([
      child.status,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 200)),
    ]);
    if (status || Date.now() > deadline) {
      const log = await Deno.readTextFile(LOG).catch(() => "");
      console.error(log.split("\n").slice(-20).join("\n"));
      fail(
        status
          ? "the simulated cluster stopped while starting"
          : "the simulated cluster did not start in 3 minutes",
        `Its log is above and in ${LOG}; "deno task sim down" removes what it left.`,
      );
    }
  }
  say(`The simulated cluster is up (pid ${readPid()}).`);
  say(
    `  kubeconfig: ${KUBECONFIG} (contexts ${SIM_CONTEXT}, ${SIM_LIMITED_CONTEXT}, ${SIM_DEV_CONTEXT})`,
  );
  say(`  workstation: network namespace ${WS}`);
  say(`  log: ${LOG}`);
  say(`Try: deno task sim exec -- kubectl get pods -A`);
  say(`     deno task sim exec -- vif install`);
}

async function serve(): Promise<void> {
  const env = await new Env().init();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log("sim: stopping");
    await env.cleanup();
    await Deno.remove(READY).catch(() => {});
    await Deno.remove(PID).catch(() => {});
    await Deno.remove(WS_MOUNTS).catch(() => {});
    await Deno.remove(EXEC_SOCK).catch(() => {});
    await Deno.remove(BIN, { recursive: true }).catch(() => {});
    await Deno.remove(KUBECONFIG).catch(() => {});
    console.log("sim: stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await Deno.writeTextFile(PID, `${Deno.pid}\n`);
  try {
    const sim = await Sim.start(env, {
      base: BASE,
      samples: true,
      kubeconfigPath: KUBECONFIG,
      log: (line) => console.log(line),
    });
    await Deno.mkdir(BIN, { recursive: true });
    await Deno.writeTextFile(
      `${BIN}/vif`,
      `#!/bin/sh\nexec '${DENO}' run -A --config '${ROOT}/deno.json' '${ROOT}/main.ts' "$@"\n`,
      { mode: 0o755 },
    );
    await Deno.symlink(await debianKubectl(), `${BIN}/kubectl`);
    await Deno.writeTextFile(WS_MOUNTS, `${mountHolder(sim.ws) ?? ""}\n`);
    servePodExec(sim);
    console.log(`sim: up; API server ${sim.apiUrl}; kubeconfig ${sim.kubeconfig}`);
    await Deno.writeTextFile(READY, "");
  } catch (error) {
    console.error(`sim: cannot start: ${(error as Error)?.stack ?? error}`);
    await stop();
  }
}

async function down(): Promise<void> {
  // A vif daemon left connected in the workstation goes first: it puts its own changes back.
  const daemon = await Deno.readTextFile(`${VIF_STATE}/daemon.json`).then(
    (t) => (JSON.parse(t) as { pid?: number }).pid,
    () => undefined,
  );
  if (daemon && alive(daemon)) {
    Deno.kill(daemon, "SIGTERM");
    const deadline = Date.now() + 15_000;
    while (alive(daemon) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(daemon)) Deno.kill(daemon, "SIGKILL");
  }
  const pid = readPid();
  if (pid && alive(pid)) {
    Deno.kill(pid, "SIGTERM");
    const deadline = Date.now() + 60_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) fail(`the simulated cluster (pid ${pid}) did not stop`, `See ${LOG}.`);
  }
  // A process that died leaves its namespaces: take them away.
  const left = await leftovers();
  for (const ns of left) {
    await run(["ip", "netns", "del", ns]);
    await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
  }
  await Deno.remove("/etc/netns").catch(() => {}); // only when empty
  // The log too: nothing of the cluster stays on the machine.
  await Deno.remove(STATE, { recursive: true }).catch(() => {});
  say(
    pid || left.length
      ? `The simulated cluster is down${
        left.length ? ` (removed ${left.length} leftover namespaces)` : ""
      }.`
      : "The simulated cluster was not up.",
  );
}

async function status(): Promise<void> {
  const pid = readPid();
  if (!pid || !alive(pid)) {
    const left = await leftovers();
    say(
      left.length
        ? `The simulated cluster is not running, but left namespaces: ${
          left.join(" ")
        } ("deno task sim down" removes them).`
        : "The simulated cluster is not up.",
    );
    Deno.exit(left.length ? 1 : 3);
  }
  say(`The simulated cluster is up (pid ${pid}); kubeconfig ${KUBECONFIG}.`);
  const code = await exec(["kubectl", "get", "nodes,pods,services", "-A", "-o", "wide"]);
  if (code !== 0) Deno.exit(code);
}

async function exec(cmd: string[]): Promise<number> {
  if (cmd.length === 0) {
    fail("nothing to run", 'Give the command after "--": deno task sim exec -- kubectl get pods');
  }
  const pid = readPid();
  if (!pid || !alive(pid)) fail("the simulated cluster is not up", 'Run "deno task sim up" first.');
  // Every command joins the workstation's one mount namespace, so that what one mounts
  // (vif intercept --mount) the next sees, as on a laptop.
  const holder = Number(await Deno.readTextFile(WS_MOUNTS).catch(() => ""));
  const prefix = Number.isInteger(holder) && holder > 0 && alive(holder)
    ? ["nsenter", `--target=${holder}`, "--mount", "--net", `--wd=${Deno.cwd()}`, "--"]
    : ["ip", "netns", "exec", WS];
  const child = new Deno.Command(prefix[0]!, {
    args: [...prefix.slice(1), ...cmd],
    env: {
      KUBECONFIG,
      VIF_STATE_DIR: Deno.env.get("VIF_STATE_DIR") ?? VIF_STATE,
      PATH: `${BIN}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
    },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Signals are for the command (Ctrl-C, or a script stopping `sim exec`), not for this wrapper.
  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch { /* ended */ }
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((s) => {
    const h = forward(s);
    Deno.addSignalListener(s, h);
    return () => Deno.removeSignalListener(s, h);
  });
  const code = (await child.status).code;
  for (const remove of handlers) remove();
  return code;
}

/** The request `pod-exec` sends: one line of JSON. */
interface PodExecRequest {
  namespace: string;
  pod: string;
  container?: string;
  cmd: string[];
}

/** The most bytes of a request: a command line, not a file. */
const MAX_EXEC_REQUEST = 64 * 1024;

/** Serves `pod-exec`: one request per connection, answered with the command's output as JSON. */
function servePodExec(sim: Sim): void {
  try {
    Deno.removeSync(EXEC_SOCK); // a leftover of a killed run
  } catch { /* none */ }
  const listener = Deno.listen({ transport: "unix", path: EXEC_SOCK });
  Deno.chmodSync(EXEC_SOCK, 0o600);
  (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          const text = await readAll(conn, MAX_EXEC_REQUEST);
          const r = JSON.parse(text) as PodExecRequest;
          if (
            typeof r.namespace !== "string" || typeof r.pod !== "string" ||
            !Array.isArray(r.cmd) || r.cmd.length === 0 ||
            !r.cmd.every((w) => typeof w === "string")
          ) throw new Error("a pod-exec request is {namespace, pod, container?, cmd: [...]}");
          const out = await sim.execInPod(r.namespace, r.pod, r.cmd, {
            ...(typeof r.container === "string" ? { container: r.container } : {}),
          });
          await writeAll(conn, JSON.stringify(out));
        } catch (error) {
          await writeAll(conn, JSON.stringify({ code: 1, stdout: "", stderr: `${error}\n` }))
            .catch(() => {});
        } finally {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    }
  })().catch(() => {});
}

async function readAll(conn: Deno.Conn, max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(16 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    size += n;
    if (size > max) throw new Error(`more than ${max} bytes`);
    chunks.push(buf.slice(0, n));
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

async function writeAll(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

async function podExec(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const before = dash < 0 ? args : args.slice(0, dash);
  const cmd = dash < 0 ? [] : args.slice(dash + 1);
  let namespace = "default";
  let container: string | undefined;
  let pod: string | undefined;
  for (let i = 0; i < before.length; i++) {
    const a = before[i]!;
    if (a === "-n" || a === "--namespace") namespace = before[++i] ?? "";
    else if (a === "-c" || a === "--container") container = before[++i];
    else if (pod === undefined && !a.startsWith("-")) pod = a;
    else fail(`unexpected "${a}"`, "Use: deno task sim pod-exec [-n NS] [-c CONTAINER] POD -- CMD");
  }
  if (!pod || cmd.length === 0) {
    fail(
      "a pod and a command are needed",
      "Use: deno task sim pod-exec [-n NS] [-c CONTAINER] POD -- CMD (POD may be deployment/NAME)",
    );
  }
  const pid = readPid();
  if (!pid || !alive(pid)) fail("the simulated cluster is not up", 'Run "deno task sim up" first.');
  const conn = await Deno.connect({ transport: "unix", path: EXEC_SOCK });
  await writeAll(conn, JSON.stringify({ namespace, pod, container, cmd }));
  await conn.closeWrite();
  const out = JSON.parse(await readAll(conn, 64 * 1024 * 1024)) as {
    code: number;
    stdout: string;
    stderr: string;
  };
  conn.close();
  await Deno.stdout.write(new TextEncoder().encode(out.stdout));
  await Deno.stderr.write(new TextEncoder().encode(out.stderr));
  return out.code;
}

const [command, ...rest] = Deno.args;
switch (command) {
  case "up":
    await up();
    break;
  case "serve":
    await serve();
    break;
  case "down":
    await down();
    break;
  case "status":
    await status();
    break;
  case "exec":
    Deno.exit(await exec(rest[0] === "--" ? rest.slice(1) : rest));
    break;
  case "pod-exec":
    Deno.exit(await podExec(rest));
    break;
  default:
    fail(
      command ? `unknown command "${command}"` : "no command",
      "Use: deno task sim up | down | status | exec -- CMD [ARGS…] | pod-exec POD -- CMD [ARGS…]",
    );
}
