/**
 * `deno task bench [--quick] [--json FILE] [--paths a,b,…]`: vif against the
 * direct path and the tools a user would otherwise pick, on one simulated
 * topology, in one run, with real clients and servers.
 *
 * The topology is the simulated cluster (tests/sim): the workstation `ws`
 * reaches node 1 over a veth LAN; nginx, iperf3 and a UDP echo run in pods on
 * node 1. Each path is set up, measured and taken down in turn:
 *
 * | path | how the workstation reaches the pods |
 * | --- | --- |
 * | `direct` | routed straight to node 1 (no tunnel): the ceiling |
 * | `vif-direct` | `vif connect --manager-address` to the manager pod's direct port (mutual TLS, a client certificate from `vif client-cert`) |
 * | `vif` | `vif connect --context` through the simulated API server's port-forward |
 * | `openvpn` | an OpenVPN tun tunnel (static key, UDP) from the workstation to node 1 |
 * | `sshuttle` | sshuttle to an sshd on node 1 |
 *
 * Figures per path: iperf3 TCP throughput with 1 and 8 flows, both directions;
 * wrk keep-alive requests/s with p50 and p99 latency against nginx; wrk with
 * `Connection: close` (a new connection per request); UDP request/response
 * rate with p50/p99. For vif also: DNS query rate (dnsperf) and latency of
 * cached and uncached cluster names, the time from `vif connect` to the first
 * answered request, the daemon's RSS holding 1,000 idle connections, and how
 * many concurrent connections it holds before the first failure. And the
 * intercept: requests from a client pod answered by the pod, by the pod with
 * the agent passing through, and by the workstation through `vif intercept`;
 * and the time from `vif intercept` to the first intercepted request.
 *
 * The table goes to stdout; `--json FILE` writes every figure and, for each
 * vif figure, its ratio to `direct`, `openvpn` and `sshuttle` of the same run.
 * A path that cannot run (a tool missing) has `null` figures and an `error`.
 *
 * Nothing leaves the namespaces the run makes (198.18.0.0/15 and 240.0.0.0/4
 * only), and everything is removed at the end, also on failure or Ctrl-C.
 *
 * @module
 */

import { DENO, Env, iperfGbits, must, type Proc, ROOT, run } from "../tests/e2e/_env.ts";
import { API_IP, Sim } from "../tests/sim/sim.ts";
import { V8_FLAGS } from "../mod/cli/daemon_client.ts";
import { DEFAULT_DIRECT_PORT } from "../mod/rpc/service.ts";
import type { KubeObject } from "../tests/sim/apiserver/mod.ts";

/**
 * `BENCH_DENO_FLAGS="--cpu-prof --cpu-prof-dir=/var/tmp/vif-prof"` profiles
 * the vif processes the bench starts: the daemon, and the manager in its pod
 * (which runs as an unprivileged user, so the directory is made writable).
 * Pick a directory outside /tmp and /run: pods mount their own there.
 */
const DENO_FLAGS = Deno.env.get("BENCH_DENO_FLAGS")?.split(" ").filter((f) => f) ?? [];
/** `vif` as the compiled binary runs it: with the V8 flags `deno compile` bakes in. */
const VIF = [
  DENO,
  "run",
  "-A",
  `--v8-flags=${V8_FLAGS}`,
  ...DENO_FLAGS,
  "--config",
  `${ROOT}/deno.json`,
  `${ROOT}/main.ts`,
];
const MANAGER = "app.kubernetes.io/name=traffic-manager";
const PATHS = ["direct", "vif-direct", "vif", "openvpn", "sshuttle"] as const;
type PathName = typeof PATHS[number];

/** The figures measured on every path. */
export interface PathFigures {
  tcp1_mbps: number | null;
  tcp1_rev_mbps: number | null;
  tcp8_mbps: number | null;
  tcp8_rev_mbps: number | null;
  http_rps: number | null;
  http_p50_ms: number | null;
  http_p99_ms: number | null;
  conn_rps: number | null;
  conn_p50_ms: number | null;
  conn_p99_ms: number | null;
  udp_rps: number | null;
  udp_p50_ms: number | null;
  udp_p99_ms: number | null;
  /**
   * CPU time the path's own processes (vif's daemon and manager, OpenVPN's two
   * ends, sshuttle and its sshd) spent per unit of work, summed over both
   * ends: the figure that says what a path costs, whatever else the shared
   * machine was doing. `null` for `direct`, which has no such processes.
   */
  tcp1_cpu_s_per_gb: number | null;
  /** See {@linkcode PathFigures.tcp1_cpu_s_per_gb}: CPU microseconds per keep-alive request. */
  http_cpu_us: number | null;
  /** CPU microseconds per new connection (with its one request). */
  conn_cpu_us: number | null;
  /** CPU microseconds per UDP request and its answer. */
  udp_cpu_us: number | null;
  /** Why the path could not run, when it could not. */
  error?: string;
}

/** The figures measured on vif only. */
export interface VifFigures {
  dns_qps: number | null;
  dns_cached_p50_ms: number | null;
  dns_cached_p99_ms: number | null;
  dns_uncached_p50_ms: number | null;
  dns_uncached_p99_ms: number | null;
  /** `vif connect` (daemon start, API server, port-forward) to the first answered request. */
  connect_s: number | null;
  /** The same with `--manager-address` (no Kubernetes API on the way), in the foreground. */
  connect_direct_s: number | null;
  /** The daemon's RSS holding 1,000 idle connections, once it has been idle for {@linkcode SETTLE_S} s. */
  rss_mb_1000_conns: number | null;
  /** The same the moment the 1,000th connection is open (right after the other measurements' load). */
  rss_mb_1000_conns_at_once: number | null;
  /** Where the settled memory is, from `vif status`: the JS heap used and reserved, and buffers, in MiB. */
  rss_detail: { heap_used_mb: number; heap_total_mb: number; external_mb: number } | null;
  max_conns: number | null;
  max_conns_tried: number;
  error?: string;
}

/**
 * The intercept (`vif intercept`): requests from a client pod to a Service,
 * answered by its nginx pod, by the same pod with the agent passing through,
 * and by an nginx on the workstation through the intercept; and how long
 * from `vif intercept` to the first request the workstation answers.
 */
export interface InterceptFigures {
  /** wrk from the client pod to the Service, the pod answering (no agent). */
  pod_http_rps: number | null;
  pod_http_p50_ms: number | null;
  pod_http_p99_ms: number | null;
  /** The same with the agent in the pod and no intercept (it passes through to the app). */
  agent_http_rps: number | null;
  agent_http_p50_ms: number | null;
  agent_http_p99_ms: number | null;
  /** The same through the intercept: agent → manager → daemon → nginx on the workstation. */
  intercept_http_rps: number | null;
  intercept_http_p50_ms: number | null;
  intercept_http_p99_ms: number | null;
  /** `vif intercept` to the first answer from the workstation, the agent injected and rolled out. */
  first_request_inject_s: number | null;
  /** The same with the agent in the pods already. */
  first_request_agent_s: number | null;
  error?: string;
}

/** What `--json` writes. */
export interface BenchReport {
  schema: 1;
  quick: boolean;
  seconds_per_test: number;
  machine: { cpus: number; kernel: string; deno: string; date: string };
  paths: Record<PathName, PathFigures>;
  vif: VifFigures;
  intercept: InterceptFigures;
  /** For `vif` and `vif-direct`: figure → vif's figure ÷ the other path's. */
  ratios: Record<string, Record<string, Record<string, number | null>>>;
}

const TESTS = ["tcp", "http", "conn", "udp", "extras", "intercept"] as const;
type TestName = typeof TESTS[number];

interface Options {
  quick: boolean;
  json?: string;
  paths: PathName[];
  /** Which measurements to take (all by default): for profiling one of them. */
  tests: Set<TestName>;
  /** Set up the first path, print where it is, and hold it until Ctrl-C instead of measuring. */
  hold: boolean;
}

function parseArgs(args: string[]): Options {
  const options: Options = {
    quick: false,
    paths: [...PATHS],
    tests: new Set(TESTS),
    hold: false,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--quick") options.quick = true;
    else if (a === "--hold") options.hold = true;
    else if (a === "--json") options.json = args[++i];
    else if (a === "--paths") {
      const wanted = (args[++i] ?? "").split(",").filter((p) => p);
      const bad = wanted.filter((p) => !(PATHS as readonly string[]).includes(p));
      if (bad.length) fail(`unknown path "${bad[0]}"`, `Use some of: ${PATHS.join(", ")}.`);
      options.paths = wanted as PathName[];
    } else if (a === "--tests") {
      const wanted = (args[++i] ?? "").split(",").filter((p) => p);
      const bad = wanted.filter((p) => !(TESTS as readonly string[]).includes(p));
      if (bad.length) fail(`unknown test "${bad[0]}"`, `Use some of: ${TESTS.join(", ")}.`);
      options.tests = new Set(wanted as TestName[]);
    } else if (a === "-h" || a === "--help") {
      console.log(
        "deno task bench [--quick] [--json FILE] [--paths direct,vif-direct,vif,openvpn,sshuttle]\n" +
          "                [--tests tcp,http,conn,udp,extras,intercept] [--hold]\n\n" +
          "--hold sets up the first of --paths, prints its namespaces, addresses and\n" +
          "process ids as JSON, and keeps it up until Ctrl-C: for profiling by hand.",
      );
      Deno.exit(0);
    } else fail(`unknown flag "${a}"`, "Run: deno task bench --help");
  }
  return options;
}

function fail(message: string, hint: string): never {
  console.error(`bench: ${message}\n${hint}`);
  Deno.exit(2);
}

const empty = (): PathFigures => ({
  tcp1_mbps: null,
  tcp1_rev_mbps: null,
  tcp8_mbps: null,
  tcp8_rev_mbps: null,
  http_rps: null,
  http_p50_ms: null,
  http_p99_ms: null,
  conn_rps: null,
  conn_p50_ms: null,
  conn_p99_ms: null,
  udp_rps: null,
  udp_p50_ms: null,
  udp_p99_ms: null,
  tcp1_cpu_s_per_gb: null,
  http_cpu_us: null,
  conn_cpu_us: null,
  udp_cpu_us: null,
});

// --- the clients ---------------------------------------------------------------

/** UDP request/response: one datagram out, its echo back, as fast as that goes. */
const UDP_CLIENT = `
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((host, port))
lat = []; lost = 0; payload = b"x" * 64
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter()
    s.send(payload)
    try:
        s.recv(2048)
        lat.append(time.perf_counter() - t0)
    except socket.timeout:
        lost += 1
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else -1
print(len(lat) / seconds, pct(0.5), pct(0.99), lost)
`;

/** DNS latency: sequential queries for names from a file, p50/p99. */
const DNS_CLIENT = `
import random, socket, struct, sys, time
server, seconds = sys.argv[1], float(sys.argv[2])
names = [l.split()[0] for l in open(sys.argv[3]) if l.strip()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
s.connect((server, 53))
def query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\\0" + struct.pack(">HH", 1, 1)
lat = []; i = 0
end = time.perf_counter() + seconds
while time.perf_counter() < end and i < len(names):
    qid = random.randrange(65536)
    t0 = time.perf_counter()
    s.send(query(qid, names[i]))
    try:
        while struct.unpack(">H", s.recv(4096)[:2])[0] != qid:
            pass
        lat.append(time.perf_counter() - t0)
    except socket.timeout:
        pass
    i += 1
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else -1
print(len(lat), pct(0.5), pct(0.99))
`;

/**
 * Opens up to N keep-alive HTTP connections (one request each, then held
 * idle), reports after each thousand, holds them until stdin closes.
 */
const HOLDER = `
import resource, socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, max(n + 100, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
req = b"GET / HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n"
held = []
err = ""
for i in range(n):
    try:
        c = socket.create_connection((host, 80), timeout=5)
        c.sendall(req)
        data = b""
        while b"\\r\\n\\r\\n" not in data or not data.rstrip().endswith(b"\\n"):
            chunk = c.recv(4096)
            if not chunk: raise OSError("closed by the server")
            data += chunk
            if data.count(b"\\n") >= 7: break
        held.append(c)
    except Exception as e:
        err = str(e); break
    if (i + 1) % 1000 == 0:
        print("held", i + 1, flush=True)
print("done", len(held), err, flush=True)
sys.stdin.read()
`;

// --- CPU accounting -------------------------------------------------------------

/** Linux's USER_HZ: what `/proc/<pid>/stat` counts CPU time in. */
const CLK_TCK = 100;

/** User + system CPU ticks of each process in `roots` and of all their descendants. */
async function cpuTicks(roots: number[]): Promise<Map<number, number>> {
  const procs = new Map<number, { ppid: number; ticks: number }>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${entry.name}/stat`);
    } catch {
      continue; // ended meanwhile
    }
    // The command (field 2) may hold spaces: the fields start after its last ")".
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    procs.set(Number(entry.name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
  }
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of procs) children.set(ppid, [...children.get(ppid) ?? [], pid]);
  const out = new Map<number, number>();
  const todo = roots.filter((pid) => procs.has(pid));
  for (let pid; (pid = todo.pop()) !== undefined;) {
    if (out.has(pid)) continue;
    out.set(pid, procs.get(pid)!.ticks);
    todo.push(...children.get(pid) ?? []);
  }
  return out;
}

/** A path's processes by the part they play (`daemon`, `manager`, `client`, `server`). */
type PathPids = Record<string, number[]>;

/**
 * Runs `work` and measures the CPU seconds the path's processes spent meanwhile.
 *
 * @param pids the path's processes (their descendants count too); none: no figure
 * @param work the test
 * @returns the test's result, the CPU seconds in all (or null), and per part
 */
async function withCpu<T>(
  pids: (() => Promise<PathPids>) | undefined,
  work: () => Promise<T>,
): Promise<[T, number | null, Record<string, number>]> {
  if (!pids) return [await work(), null, {}];
  const parts = Object.entries(await pids());
  const before = await Promise.all(parts.map(([, roots]) => cpuTicks(roots)));
  const result = await work();
  const after = await Promise.all(parts.map(([, roots]) => cpuTicks(roots)));
  const each: Record<string, number> = {};
  let all = 0;
  parts.forEach(([part], i) => {
    let ticks = 0;
    for (const [pid, t] of after[i]!) ticks += t - (before[i]!.get(pid) ?? 0);
    each[part] = ticks / CLK_TCK;
    all += ticks / CLK_TCK;
  });
  return [result, all, each];
}

/** `cpu` seconds over `count` units, in `scale` units of time (1e6: µs); null without both. */
function perUnit(cpu: number | null, count: number | null, scale: number, digits = 1) {
  return cpu !== null && count ? round((cpu * scale) / count, digits) : null;
}

/** The pids of the processes in a network namespace. */
async function netnsPids(netns: string): Promise<number[]> {
  const out = await run(["ip", "netns", "pids", netns]);
  return out.stdout.split(/\s+/).filter((p) => p).map(Number);
}

// --- a path's measurements -----------------------------------------------------

interface Targets {
  web: string;
  iperf: string;
  echo: string;
}

function wrkFigures(text: string): { rps: number; p50: number; p99: number; requests: number } {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const requests = Number(/^\s*(\d+) requests in /m.exec(text)?.[1]);
  const ms = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(text);
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
  };
  return { rps, p50: ms("50"), p99: ms("99"), requests };
}

const round = (v: number, digits = 2) => Number.isFinite(v) ? Number(v.toFixed(digits)) : null;

async function measurePath(
  ws: string,
  t: Targets,
  seconds: number,
  options: Pick<Options, "quick" | "tests">,
  log: (line: string) => void,
  pids?: () => Promise<PathPids>,
): Promise<PathFigures> {
  const f = empty();
  const { quick, tests } = options;
  const split: string[] = [];
  const share = (what: string, each: Record<string, number>, all: number | null) => {
    if (!all) return;
    const parts = Object.entries(each).map(([k, v]) => `${k} ${Math.round((v / all) * 100)}%`);
    split.push(`${what}: ${parts.join(", ")}`);
  };
  const iperf = async (args: string[]) => {
    // iperf3's server takes one test at a time and says "busy" while the last
    // one is still closing: try again a few times before calling it a failure.
    let why = "";
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 1000));
      const out = await run(["iperf3", "-J", "-t", String(seconds), "-c", t.iperf, ...args], {
        ns: ws,
      });
      const report = (() => {
        try {
          return JSON.parse(out.stdout) as { error?: string };
        } catch {
          return { error: out.stdout.slice(0, 200) || out.stderr.slice(0, 200) };
        }
      })();
      if (out.code === 0 && !report.error) return round(iperfGbits(out.stdout) * 1000, 0);
      why = report.error ?? `exit ${out.code}`;
    }
    throw new Error(`iperf3 ${args.join(" ")}: ${why}`);
  };
  if (tests.has("tcp")) {
    const [tcp1, cpu, cpuEach] = await withCpu(pids, () => iperf([]));
    f.tcp1_mbps = tcp1;
    f.tcp1_cpu_s_per_gb = perUnit(cpu, tcp1! * seconds / 8000, 1, 2);
    share("tcp", cpuEach, cpu);
    f.tcp8_mbps = await iperf(["-P", "8"]);
    if (!quick) {
      f.tcp1_rev_mbps = await iperf(["-R"]);
      f.tcp8_rev_mbps = await iperf(["-R", "-P", "8"]);
    }
    log(`tcp ${f.tcp1_mbps}/${f.tcp8_mbps} Mbit/s`);
  }
  const wrk = async (extra: string[]) => {
    const out = await run([
      "wrk",
      "-t2",
      "-c16",
      `-d${seconds}s`,
      "--latency",
      ...extra,
      `http://${t.web}/`,
    ], { ns: ws });
    if (out.code !== 0) throw new Error(`wrk: ${out.stderr || out.stdout}`);
    return wrkFigures(out.stdout);
  };
  /** One wrk run: rate, p50, p99 and CPU per request, rounded as the report has them. */
  const http = async (what: string, extra: string[]) => {
    const [r, cpu, each] = await withCpu(pids, () => wrk(extra));
    share(what, each, cpu);
    return [
      round(r.rps, 0),
      round(r.p50, 3),
      round(r.p99, 3),
      perUnit(cpu, r.requests, 1e6),
    ] as const;
  };
  if (tests.has("http")) {
    [f.http_rps, f.http_p50_ms, f.http_p99_ms, f.http_cpu_us] = await http("http", []);
  }
  if (tests.has("conn")) {
    [f.conn_rps, f.conn_p50_ms, f.conn_p99_ms, f.conn_cpu_us] = await http(
      "new connections",
      ["-H", "Connection: close"],
    );
  }
  log(`http ${f.http_rps} req/s, new connections ${f.conn_rps}/s`);
  if (tests.has("udp")) {
    const [udp, udpCpu, udpEach] = await withCpu(
      pids,
      () => run(["python3", "-c", UDP_CLIENT, t.echo, "7", String(seconds)], { ns: ws }),
    );
    const [rps, p50, p99] = udp.stdout.trim().split(/\s+/).map(Number);
    f.udp_cpu_us = perUnit(udpCpu, rps! * seconds, 1e6);
    share("udp", udpEach, udpCpu);
    if (!(rps! > 0)) log("udp: no answers (the path carries no UDP)");
    [f.udp_rps, f.udp_p50_ms, f.udp_p99_ms] = [
      round(rps!, 0),
      p50! >= 0 ? round(p50!, 3) : null,
      p99! >= 0 ? round(p99!, 3) : null,
    ];
    log(`udp ${f.udp_rps} req/s`);
  }
  if (pids) {
    log(
      `cpu: ${f.tcp1_cpu_s_per_gb} s/GB, ${f.http_cpu_us} µs/request, ${f.conn_cpu_us} µs/connection, ${f.udp_cpu_us} µs/datagram (${
        split.join("; ")
      })`,
    );
  }
  return f;
}

// --- the paths ------------------------------------------------------------------

interface Path {
  up(): Promise<void>;
  down(): Promise<void>;
  /** The processes that carry the path's tunnel, both ends; none for `direct`. */
  pids?(): Promise<PathPids>;
}

function ipOf(o: KubeObject | undefined): string {
  const ip = (o?.status as { podIP?: string } | undefined)?.podIP;
  if (!ip) throw new Error(`no pod IP: ${JSON.stringify(o?.metadata)}`);
  return ip;
}

async function waitHttp(ws: string, url: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const r = await run(["curl", "-sS", "--max-time", "2", "-o", "/dev/null", url], { ns: ws });
    if (r.code === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

function waitLine(proc: Proc, re: RegExp, ms: number, what: string): Promise<string> {
  return proc.waitFor(re, ms).catch(() => {
    throw new Error(
      `${what} did not come up: ${[...proc.lines, ...proc.errLines].slice(-8).join(" | ")}`,
    );
  });
}

/** `--hold`: prints where the path is and waits for Ctrl-C (which cleans up). */
async function hold(
  name: PathName,
  ws: string,
  targets: Targets,
  pids: PathPids | undefined,
  say: (line: string) => void,
): Promise<never> {
  console.log(JSON.stringify({ path: name, workstation_netns: ws, targets, pids: pids ?? {} }));
  say(`path ${name}: up; try: ip netns exec ${ws} wrk -c16 -d5s http://${targets.web}/`);
  say("holding until Ctrl-C");
  return await new Promise<never>(() => {});
}

async function main(): Promise<number> {
  const options = parseArgs(Deno.args);
  if (Deno.uid() !== 0) fail("the benchmark needs root", "Run it as root: sudo deno task bench");
  const seconds = options.quick ? 1 : 5;
  const started = performance.now();
  const say = (line: string) => console.error(`bench: ${line}`);
  const env = await new Env().init();
  if (DENO_FLAGS.length > 0) {
    Deno.env.set("VIF_SIM_DENO_FLAGS", DENO_FLAGS.join(" "));
    const dir = DENO_FLAGS.find((f) => f.startsWith("--cpu-prof-dir="))?.split("=")[1];
    if (dir) {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.chmod(dir, 0o1777);
    }
  }
  // Ctrl-C (and --hold's end): the path that is up goes down first, so a vif
  // daemon in the workstation namespace is quit, not left behind the namespace.
  let current: Path | undefined;
  const stop = async () => {
    await current?.down().catch(() => {});
    await env.cleanup();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const report: BenchReport = {
    schema: 1,
    quick: options.quick,
    seconds_per_test: seconds,
    machine: {
      cpus: navigator.hardwareConcurrency,
      kernel: Deno.osRelease(),
      deno: Deno.version.deno,
      date: new Date().toISOString(),
    },
    paths: Object.fromEntries(PATHS.map((p) => [p, { ...empty(), error: "not run" }])) as Record<
      PathName,
      PathFigures
    >,
    vif: {
      dns_qps: null,
      dns_cached_p50_ms: null,
      dns_cached_p99_ms: null,
      dns_uncached_p50_ms: null,
      dns_uncached_p99_ms: null,
      connect_s: null,
      connect_direct_s: null,
      rss_mb_1000_conns: null,
      rss_mb_1000_conns_at_once: null,
      rss_detail: null,
      max_conns: null,
      max_conns_tried: options.quick ? 2000 : 10_000,
    },
    intercept: {
      pod_http_rps: null,
      pod_http_p50_ms: null,
      pod_http_p99_ms: null,
      agent_http_rps: null,
      agent_http_p50_ms: null,
      agent_http_p99_ms: null,
      intercept_http_rps: null,
      intercept_http_p50_ms: null,
      intercept_http_p99_ms: null,
      first_request_inject_s: null,
      first_request_agent_s: null,
      error: "not run",
    },
    ratios: {},
  };
  try {
    say("starting the simulated cluster");
    const sim = await Sim.start(env, { samples: true, largeFileMiB: 1 });
    const ws = sim.ws;
    const pods = (ns: string, sel: string) =>
      sim.store.list("pods", { namespace: ns, labelSelector: sel });
    const targets: Targets = {
      web: ipOf(pods("default", "app=web")[0]),
      iperf: ipOf(pods("default", "app=iperf")[0]),
      echo: ipOf(pods("default", "app=echo")[0]),
    };
    // --direct: the vif-direct path dials the manager's mutual-TLS listener.
    const install = await sim.exec([...VIF, "install", "--context", "vif-sim", "--direct"]);
    if (install.code !== 0) throw new Error(`vif install: ${install.stderr}`);
    const managerPod = (await sim.waitReady("vif-system", MANAGER, 1, 90_000))[0];
    const manager = ipOf(managerPod);
    const managerNetns = sim.pod("vif-system", managerPod!.metadata.name!)?.netns;
    if (!managerNetns) throw new Error("the manager's pod has no network namespace");
    const managerPids = () => netnsPids(managerNetns);
    const podIps = [targets.web, targets.iperf, targets.echo];
    const node1 = sim.net.nodes[0]!;
    const dir = env.dir;

    const paths: Record<PathName, Path> = {
      direct: {
        async up() {
          for (const ip of podIps) await sim.net.exposeToWorkstation(ip);
        },
        async down() {
          for (const ip of podIps) await sim.net.unexposeFromWorkstation(ip);
        },
      },
      "vif-direct": (() => {
        let proc: Proc | undefined;
        return {
          async up() {
            await sim.net.exposeToWorkstation(manager);
            const certs = `${dir}/client`;
            const issued = await sim.exec([...VIF, "client-cert", "bench", "--out", certs]);
            if (issued.code !== 0) throw new Error(`vif client-cert: ${issued.stderr}`);
            const t0 = performance.now();
            proc = sim.spawn([
              ...VIF,
              "connect",
              "--foreground",
              "--manager-address",
              `${manager}:${DEFAULT_DIRECT_PORT}`,
              "--manager-ca",
              `${certs}/ca.crt`,
              "--client-cert",
              `${certs}/client.crt`,
              "--client-key",
              `${certs}/client.key`,
              "--state-dir",
              `${dir}/state-direct`,
            ]);
            await waitLine(proc, /^connected to the traffic-manager/, 60_000, "vif (direct)");
            await waitHttp(ws, `http://${targets.web}/`, 10_000);
            report.vif.connect_direct_s = round((performance.now() - t0) / 1000, 2);
          },
          async down() {
            await proc?.stop(10_000);
            await sim.net.unexposeFromWorkstation(manager);
          },
          async pids() {
            return { daemon: [proc!.pid], manager: await managerPids() };
          },
        };
      })(),
      vif: {
        async up() {
          const t0 = performance.now();
          const r = await sim.exec([
            ...VIF,
            "connect",
            "--state-dir",
            `${dir}/state`,
            "--context",
            "vif-sim",
            "-q",
          ]);
          if (r.code !== 0) throw new Error(`vif connect: ${r.stderr}`);
          await waitHttp(ws, `http://${targets.web}/`, 10_000);
          report.vif.connect_s = round((performance.now() - t0) / 1000, 2);
        },
        async down() {
          await sim.exec([...VIF, "quit", "--state-dir", `${dir}/state`]);
        },
        async pids() {
          return { daemon: [await daemonPid(`${dir}/state`)], manager: await managerPids() };
        },
      },
      openvpn: (() => {
        let server: Proc | undefined;
        let client: Proc | undefined;
        const common = [
          "--dev",
          "tun",
          "--proto",
          "udp",
          "--cipher",
          "AES-256-CBC",
          "--auth",
          "SHA256",
          "--verb",
          "3",
        ];
        return {
          async up() {
            await must(["openvpn", "--genkey", "secret", `${dir}/ovpn.key`]);
            server = env.spawn([
              "openvpn",
              ...common,
              "--secret",
              `${dir}/ovpn.key`,
              "0",
              "--lport",
              "1194",
              "--ifconfig",
              "240.0.9.1",
              "240.0.9.2",
            ], { ns: node1.netns });
            client = env.spawn([
              "openvpn",
              ...common,
              "--secret",
              `${dir}/ovpn.key`,
              "1",
              "--remote",
              API_IP,
              "1194",
              "--nobind",
              "--ifconfig",
              "240.0.9.2",
              "240.0.9.1",
              "--route",
              "198.18.0.0",
              "255.255.0.0",
            ], { ns: ws });
            await waitLine(
              server,
              /Initialization Sequence Completed/,
              20_000,
              "the OpenVPN server",
            );
            await waitLine(
              client,
              /Initialization Sequence Completed/,
              20_000,
              "the OpenVPN client",
            );
            await waitHttp(ws, `http://${targets.web}/`, 10_000);
          },
          async down() {
            await client?.stop();
            await server?.stop();
          },
          pids: () => Promise.resolve({ client: [client!.pid], server: [server!.pid] }),
        };
      })(),
      sshuttle: (() => {
        let sshd: Proc | undefined;
        let client: Proc | undefined;
        let madeRunSshd = false;
        return {
          async up() {
            await must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`]);
            await must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/user_key`]);
            await Deno.copyFile(`${dir}/user_key.pub`, `${dir}/authorized_keys`);
            await Deno.writeTextFile(
              `${dir}/sshd_config`,
              [
                `ListenAddress ${API_IP}`,
                "Port 22",
                `HostKey ${dir}/host_key`,
                `AuthorizedKeysFile ${dir}/authorized_keys`,
                `PidFile ${dir}/sshd.pid`,
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "",
              ].join("\n"),
            );
            try {
              await Deno.stat("/run/sshd");
            } catch {
              await Deno.mkdir("/run/sshd", { mode: 0o755 });
              madeRunSshd = true;
            }
            sshd = env.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", `${dir}/sshd_config`], {
              ns: node1.netns,
            });
            const ssh = `ssh -i ${dir}/user_key -o StrictHostKeyChecking=no ` +
              `-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR`;
            client = env.spawn([
              "sh",
              "-c",
              'exec "$@" 2>&1',
              "sh",
              "sshuttle",
              "--method",
              "nft",
              "-e",
              ssh,
              "-r",
              `root@${API_IP}`,
              "198.18.0.0/16",
            ], { ns: ws });
            await waitLine(client, /Connected to server/, 30_000, "sshuttle");
            // sshuttle redirects in the nat OUTPUT hook, after routing: the kernel must
            // have a route first. One to a LAN address where nobody lives, so that
            // traffic sshuttle does not take fails instead of going direct.
            await must(["ip", "route", "add", "198.18.0.0/16", "via", "198.19.200.99"], { ns: ws });
            await waitHttp(ws, `http://${targets.web}/`, 10_000).catch((e) => {
              throw new Error(`${e.message}; sshuttle: ${client!.lines.slice(-6).join(" | ")}`);
            });
          },
          async down() {
            await run(["ip", "route", "del", "198.18.0.0/16"], { ns: ws });
            await client?.stop(5000);
            await sshd?.stop();
            if (madeRunSshd) await Deno.remove("/run/sshd").catch(() => {});
          },
          pids: () => Promise.resolve({ client: [client!.pid], server: [sshd!.pid] }),
        };
      })(),
    };

    for (const name of options.paths) {
      say(`path ${name}: setting up`);
      const path = paths[name];
      current = path;
      try {
        await path.up();
        if (options.hold) {
          await hold(name, ws, targets, await path.pids?.(), say);
          break;
        }
        say(`path ${name}: measuring`);
        report.paths[name] = await measurePath(
          ws,
          targets,
          seconds,
          options,
          (l) => say(`path ${name}: ${l}`),
          path.pids?.bind(path),
        );
        if (name === "vif" && options.tests.has("extras")) {
          await measureVifExtras(sim, targets, seconds, report, say, `${dir}/state`);
        }
        if (name === "vif" && options.tests.has("intercept")) {
          await measureIntercept(sim, seconds, report.intercept, say, `${dir}/state`).catch(
            (error) => {
              const message = String((error as Error)?.message ?? error).split("\n")[0]!;
              say(`intercept: failed: ${message}`);
              report.intercept.error = message;
            },
          );
        }
      } catch (error) {
        const message = String((error as Error)?.message ?? error).split("\n")[0]!;
        say(`path ${name}: failed: ${message}`);
        report.paths[name] = { ...report.paths[name], ...empty(), error: message };
        if (name === "vif") report.vif.error = message;
      } finally {
        current = undefined;
        await path.down().catch((e) => say(`path ${name}: teardown: ${e}`));
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    await env.cleanup();
  }
  report.ratios = ratios(report);
  console.log(formatTable(report));
  say(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (options.json) await Deno.writeTextFile(options.json, JSON.stringify(report, null, 2) + "\n");
  return 0;
}

async function measureVifExtras(
  sim: Sim,
  t: Targets,
  seconds: number,
  report: BenchReport,
  say: (l: string) => void,
  stateDir: string,
): Promise<void> {
  const ws = sim.ws;
  const dir = sim.net.dir;
  const v = report.vif;
  // DNS: the same name over and over (cached after the first), then names never asked before.
  await Deno.writeTextFile(`${dir}/dns-cached`, "web.default.svc.cluster.local A\n".repeat(50));
  const unique = Array.from(
    { length: 5000 },
    (_, i) => `nx${i}-${crypto.randomUUID().slice(0, 8)}.default.svc.cluster.local A`,
  );
  await Deno.writeTextFile(`${dir}/dns-uncached`, unique.join("\n") + "\n");
  const perf = await run([
    "dnsperf",
    "-s",
    "240.0.0.2",
    "-d",
    `${dir}/dns-cached`,
    "-l",
    String(seconds),
    "-c",
    "4",
    "-Q",
    "100000",
  ], { ns: ws });
  v.dns_qps = round(Number(/Queries per second:\s+([\d.]+)/.exec(perf.stdout)?.[1]), 0);
  const latency = async (file: string): Promise<[number | null, number | null]> => {
    const r = await run(["python3", "-c", DNS_CLIENT, "240.0.0.2", String(seconds), file], {
      ns: ws,
    });
    const [, p50, p99] = r.stdout.trim().split(/\s+/).map(Number);
    return [p50! >= 0 ? round(p50!, 3) : null, p99! >= 0 ? round(p99!, 3) : null];
  };
  [v.dns_cached_p50_ms, v.dns_cached_p99_ms] = await latency(`${dir}/dns-cached`);
  [v.dns_uncached_p50_ms, v.dns_uncached_p99_ms] = await latency(`${dir}/dns-uncached`);
  say(
    `path vif: dns ${v.dns_qps} q/s, cached p50 ${v.dns_cached_p50_ms} ms, uncached p50 ${v.dns_uncached_p50_ms} ms`,
  );
  // Connections held open: the daemon's memory with 1,000, then how many it takes.
  const daemon = await daemonPid(stateDir);
  const rssMb = async () => {
    const status = await Deno.readTextFile(`/proc/${daemon}/status`);
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
  };
  const hold = async (n: number, onHeld: (held: number) => Promise<void>) => {
    const holder = sim.spawn(["python3", "-c", HOLDER, t.web, String(n)]);
    try {
      const done = await holder.waitFor(/^done /, 300_000);
      const held = Number(done.split(" ")[1]);
      await onHeld(held);
      return { held, why: done.split(" ").slice(2).join(" ") };
    } finally {
      await holder.stop(5000);
    }
  };
  await hold(1000, async (held) => {
    if (held < 1000) return;
    v.rss_mb_1000_conns_at_once = round(await rssMb(), 1);
    await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
    v.rss_mb_1000_conns = round(await rssMb(), 1);
    const status = await sim.exec([...VIF, "status", "-o", "json", "--state-dir", stateDir]);
    let m: { heapUsedMb: number; heapTotalMb: number; externalMb: number } | null = null;
    try {
      m = JSON.parse(status.stdout).daemon.memory;
    } catch {
      say(`path vif: no memory detail from vif status: ${status.stderr.trim()}`);
    }
    if (m) {
      v.rss_detail = {
        heap_used_mb: m.heapUsedMb,
        heap_total_mb: m.heapTotalMb,
        external_mb: m.externalMb,
      };
    }
  });
  await new Promise((r) => setTimeout(r, 1000));
  const max = await hold(v.max_conns_tried, async () => {});
  v.max_conns = max.held;
  say(
    `path vif: RSS ${v.rss_mb_1000_conns} MB with 1000 idle connections (${v.rss_mb_1000_conns_at_once} MB at once; JS heap ${
      v.rss_detail?.heap_used_mb ?? "-"
    } of ${v.rss_detail?.heap_total_mb ?? "-"} MB); held ${max.held} of ${v.max_conns_tried}${
      max.why ? ` (${max.why})` : ""
    }`,
  );
}

/**
 * Measures `vif intercept` on a Deployment of its own (`ibench`, nginx as
 * the samples' `web`, so that the other paths' pods stay as they were): wrk
 * from the client pod to its Service with the pod answering, then with the
 * agent injected and passing through, then through the intercept to an nginx
 * on the workstation; and the time from `vif intercept` to the first request
 * the workstation answers, with the injection and rollout, and again with
 * the agent there. The first-request times include polling with curl from
 * the pod (every 50 ms, each a process started in the pod).
 */
async function measureIntercept(
  sim: Sim,
  seconds: number,
  f: InterceptFigures,
  say: (l: string) => void,
  stateDir: string,
): Promise<void> {
  const dir = sim.net.dir;
  const web = sim.store.get({ resource: "deployments", namespace: "default", name: "web" })!;
  const template = structuredClone((web.spec as { template: Record<string, unknown> }).template);
  (template.metadata as { labels: Record<string, string> }).labels = { app: "ibench" };
  const containers = (template.spec as { containers: Array<{ name: string }> }).containers;
  containers[0]!.name = "ibench";
  sim.store.create({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "ibench", namespace: "default", labels: { app: "ibench" } },
    spec: { replicas: 1, selector: { matchLabels: { app: "ibench" } }, template },
  } as KubeObject);
  sim.store.create({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "ibench", namespace: "default", labels: { app: "ibench" } },
    spec: {
      selector: { app: "ibench" },
      ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }],
    },
  } as KubeObject);
  await sim.waitReady("default", "app=ibench", 1, 60_000);

  // The developer's program: nginx on the workstation's loopback, as the pod's.
  const local = `${dir}/ibench-local`;
  await Deno.mkdir(`${local}/tmp`, { recursive: true });
  await Deno.writeTextFile(
    `${local}/nginx.conf`,
    `user root;
worker_processes 1;
daemon off;
pid ${local}/nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${local}/tmp/body;
  proxy_temp_path ${local}/tmp/proxy;
  fastcgi_temp_path ${local}/tmp/fastcgi;
  uwsgi_temp_path ${local}/tmp/uwsgi;
  scgi_temp_path ${local}/tmp/scgi;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:8080;
    location = / { return 200 "workstation $hostname $server_addr\\n"; }
  }
}
`,
  );
  const nginx = sim.spawn(["nginx", "-c", `${local}/nginx.conf`, "-e", "stderr"]);
  try {
    await waitHttp(sim.ws, "http://127.0.0.1:8080/", 10_000);
    const url = "http://ibench.default/";
    const fromPod = (cmd: string[]) => sim.execInPod("default", "deployment/client", cmd);
    const wrk = async () => {
      const out = await fromPod(["wrk", "-t2", "-c16", `-d${seconds}s`, "--latency", url]);
      if (out.code !== 0) throw new Error(`wrk in the client pod: ${out.stderr || out.stdout}`);
      const r = wrkFigures(out.stdout);
      return [round(r.rps, 0), round(r.p50, 3), round(r.p99, 3)] as const;
    };
    const answeredBy = async () =>
      (await fromPod(["curl", "-s", "--max-time", "2", url])).stdout.split(" ")[0];
    const untilAnsweredBy = async (who: string, t0: number) => {
      const deadline = t0 + 120_000;
      while ((await answeredBy()) !== who) {
        if (performance.now() > deadline) throw new Error(`no answer from the ${who} in 120 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return round((performance.now() - t0) / 1000, 2);
    };
    const vif = async (args: string[]) => {
      const r = await sim.exec([...VIF, ...args, "--state-dir", stateDir]);
      if (r.code !== 0) throw new Error(`vif ${args.join(" ")}: ${r.stderr.trim()}`);
    };

    [f.pod_http_rps, f.pod_http_p50_ms, f.pod_http_p99_ms] = await wrk();
    say(`intercept: pod ${f.pod_http_rps} req/s, p50 ${f.pod_http_p50_ms} ms`);

    let t0 = performance.now();
    await vif(["intercept", "ibench", "--port", "8080:http"]);
    f.first_request_inject_s = await untilAnsweredBy("workstation", t0);
    [f.intercept_http_rps, f.intercept_http_p50_ms, f.intercept_http_p99_ms] = await wrk();
    say(
      `intercept: first request ${f.first_request_inject_s} s after vif intercept (injection ` +
        `included); ${f.intercept_http_rps} req/s, p50 ${f.intercept_http_p50_ms} ms`,
    );

    await vif(["leave", "ibench"]);
    await untilAnsweredBy("pod", performance.now());
    t0 = performance.now();
    await vif(["intercept", "ibench", "--port", "8080:http"]);
    f.first_request_agent_s = await untilAnsweredBy("workstation", t0);
    await vif(["leave", "ibench"]);
    await untilAnsweredBy("pod", performance.now());
    [f.agent_http_rps, f.agent_http_p50_ms, f.agent_http_p99_ms] = await wrk();
    say(
      `intercept: first request ${f.first_request_agent_s} s with the agent there; ` +
        `agent passing through ${f.agent_http_rps} req/s, p50 ${f.agent_http_p50_ms} ms`,
    );
    delete f.error;
  } finally {
    await nginx.stop();
  }
}

/** The pid of the daemon that keeps its state in `stateDir`. */
async function daemonPid(stateDir: string): Promise<number> {
  return (JSON.parse(await Deno.readTextFile(`${stateDir}/daemon.json`)) as { pid: number }).pid;
}

/** How long the daemon holds the 1,000 connections idle before its memory is read. */
const SETTLE_S = 5;

const VIF_PATHS = ["vif", "vif-direct"] as const;
const OTHERS = ["direct", "openvpn", "sshuttle"] as const;

function ratios(report: BenchReport): BenchReport["ratios"] {
  const out: BenchReport["ratios"] = {};
  for (const p of VIF_PATHS) {
    out[p] = {};
    for (const [key, value] of Object.entries(report.paths[p])) {
      if (key === "error") continue;
      out[p][key] = Object.fromEntries(OTHERS.map((o) => {
        const other = report.paths[o][key as keyof PathFigures] as number | null;
        const mine = value as number | null;
        return [o, mine !== null && other ? round(mine / other, 2) : null];
      }));
    }
  }
  return out;
}

/**
 * The human table: one row per figure, one column per path.
 *
 * @param r the report
 * @returns the table's text
 */
export function formatTable(r: BenchReport): string {
  const rows: Array<[string, keyof PathFigures]> = [
    ["TCP 1 flow, Mbit/s", "tcp1_mbps"],
    ["TCP 1 flow reverse", "tcp1_rev_mbps"],
    ["TCP 8 flows, Mbit/s", "tcp8_mbps"],
    ["TCP 8 flows reverse", "tcp8_rev_mbps"],
    ["HTTP keep-alive req/s", "http_rps"],
    ["  p50 ms", "http_p50_ms"],
    ["  p99 ms", "http_p99_ms"],
    ["HTTP new conn/s", "conn_rps"],
    ["  p50 ms", "conn_p50_ms"],
    ["  p99 ms", "conn_p99_ms"],
    ["UDP req/resp /s", "udp_rps"],
    ["  p50 ms", "udp_p50_ms"],
    ["  p99 ms", "udp_p99_ms"],
    ["CPU s/GB, TCP 1 flow", "tcp1_cpu_s_per_gb"],
    ["CPU µs/req keep-alive", "http_cpu_us"],
    ["CPU µs/new conn", "conn_cpu_us"],
    ["CPU µs/UDP req", "udp_cpu_us"],
  ];
  const cols = PATHS;
  const cell = (v: unknown) => v === null || v === undefined ? "-" : String(v);
  const width = 22;
  const lines = [
    ["", ...cols].map((c, i) => i === 0 ? c.padEnd(width) : c.padStart(11)).join(""),
  ];
  for (const [label, key] of rows) {
    lines.push(
      label.padEnd(width) + cols.map((c) => cell(r.paths[c][key]).padStart(11)).join(""),
    );
  }
  for (const c of cols) {
    if (r.paths[c].error) lines.push(`${c}: not measured: ${r.paths[c].error}`);
  }
  const v = r.vif;
  lines.push(
    "",
    `vif only: DNS ${cell(v.dns_qps)} queries/s; cached p50 ${cell(v.dns_cached_p50_ms)} ms, ` +
      `p99 ${cell(v.dns_cached_p99_ms)} ms; uncached p50 ${cell(v.dns_uncached_p50_ms)} ms, ` +
      `p99 ${cell(v.dns_uncached_p99_ms)} ms`,
    `          connect to first request ${cell(v.connect_s)} s (--manager-address: ${
      cell(v.connect_direct_s)
    } s); daemon RSS with 1000 idle connections ` +
      `${cell(v.rss_mb_1000_conns)} MB (${
        cell(v.rss_mb_1000_conns_at_once)
      } MB at once); connections held ${cell(v.max_conns)} of ${v.max_conns_tried}`,
  );
  const i = r.intercept;
  const ratio = (a: number | null, b: number | null) => a !== null && b ? round(a / b, 2) : null;
  lines.push(
    "",
    `intercept: from a client pod, keep-alive req/s (p50 | p99 ms): pod ${cell(i.pod_http_rps)} ` +
      `(${cell(i.pod_http_p50_ms)} | ${cell(i.pod_http_p99_ms)}), agent passing through ${
        cell(i.agent_http_rps)
      } (${cell(i.agent_http_p50_ms)} | ${cell(i.agent_http_p99_ms)}), intercepted to the ` +
      `workstation ${cell(i.intercept_http_rps)} (${cell(i.intercept_http_p50_ms)} | ${
        cell(i.intercept_http_p99_ms)
      }); intercepted ÷ pod ${cell(ratio(i.intercept_http_rps, i.pod_http_rps))}`,
    `           vif intercept to first request: ${cell(i.first_request_inject_s)} s injecting ` +
      `the agent, ${cell(i.first_request_agent_s)} s with it there${
        i.error ? `; not measured: ${i.error}` : ""
      }`,
  );
  const vd = r.ratios["vif-direct"];
  const vk = r.ratios["vif"];
  if (vd && vk) {
    lines.push(
      "",
      `ratios (vif-direct | vif) to openvpn: TCP 1 flow ${cell(vd.tcp1_mbps?.openvpn)} | ${
        cell(vk.tcp1_mbps?.openvpn)
      }, 8 flows ${cell(vd.tcp8_mbps?.openvpn)} | ${cell(vk.tcp8_mbps?.openvpn)}, HTTP ${
        cell(vd.http_rps?.openvpn)
      } | ${cell(vk.http_rps?.openvpn)}, new conn ${cell(vd.conn_rps?.openvpn)} | ${
        cell(vk.conn_rps?.openvpn)
      }`,
      `ratios (vif-direct | vif) to sshuttle: TCP 1 flow ${cell(vd.tcp1_mbps?.sshuttle)} | ${
        cell(vk.tcp1_mbps?.sshuttle)
      }; to direct: TCP 1 flow ${cell(vd.tcp1_mbps?.direct)} | ${cell(vk.tcp1_mbps?.direct)}`,
    );
  }
  lines.push(
    `(${r.quick ? "--quick, " : ""}${r.seconds_per_test} s per test; ${r.machine.cpus} CPUs, ` +
      `Linux ${r.machine.kernel}, Deno ${r.machine.deno}, ${r.machine.date})`,
  );
  return lines.join("\n");
}

if (import.meta.main) Deno.exit(await main());
