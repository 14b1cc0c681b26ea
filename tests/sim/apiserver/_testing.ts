/**
 * Test helpers for the fake API server: a server on loopback with test
 * certificates and tokens, a kubeconfig for it, Debian's `kubectl`, and a
 * TCP echo server to play a pod's port.
 *
 * @module
 */

import { makeTestTls, type TestTls } from "../../_tls.ts";
import { waitUntil } from "../../e2e/_env.ts";
import { type ApiServer, type ApiServerOptions, startApiServer } from "./server.ts";
import type { KubeObject } from "./store.ts";

/** The service CIDR of test servers. */
export const TEST_SERVICE_CIDR = "198.19.0.0/18";
/** A token for user `admin` in `system:masters`. */
export const ADMIN_TOKEN = "admin-token-0123456789";
/** A token for user `limited`: no secrets, no port-forward. */
export const LIMITED_TOKEN = "limited-token-0123456789";
/** A token the server does not know. */
export const WRONG_TOKEN = "wrong-token-0123456789";

/** A running test server and what a client needs to reach it. */
export interface TestApi {
  api: ApiServer;
  tls: TestTls;
  /** A temporary directory for kubeconfigs, HOME, scripts; removed at the end. */
  dir: string;
  /** Lines the server logged. */
  logs: string[];
}

/**
 * Runs `fn` with a fake API server on 127.0.0.1 (random port), then closes
 * it and removes every file made.
 *
 * @param fn the test body
 * @param options more server options
 */
export async function withApi(
  fn: (t: TestApi) => Promise<void>,
  options: Partial<ApiServerOptions> = {},
): Promise<void> {
  const tls = await makeTestTls({ extraSans: ["IP:127.0.0.1", "DNS:localhost"] });
  const dir = await Deno.makeTempDir({ prefix: "vif-apiserver-" });
  const logs: string[] = [];
  let api: ApiServer | undefined;
  try {
    api = await startApiServer({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: tls.certPem, key: tls.keyPem },
      tokens: {
        [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] },
        [LIMITED_TOKEN]: { user: "limited", limited: true },
      },
      serviceCidr: TEST_SERVICE_CIDR,
      log: (line) => logs.push(line),
      ...options,
    });
    await fn({ api, tls, dir, logs });
  } finally {
    await api?.close();
    await tls.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Calls the server with `fetch`, trusting the test CA.
 *
 * @param t the test server
 * @param path the path and query
 * @param init method, body, headers; `token` (default the admin's, `null` for none)
 * @returns the response
 */
export async function call(
  t: TestApi,
  path: string,
  init: RequestInit & { token?: string | null; contentType?: string } = {},
): Promise<Response> {
  const client = Deno.createHttpClient({ caCerts: [t.tls.caPem] });
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? ADMIN_TOKEN : init.token;
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  if (init.contentType) headers.set("content-type", init.contentType);
  else if (init.body !== undefined) headers.set("content-type", "application/json");
  try {
    const res = await fetch(`${t.api.url}${path}`, { ...init, headers, client });
    const body = await res.arrayBuffer();
    return new Response(res.status === 204 ? null : body, {
      status: res.status,
      headers: res.headers,
    });
  } finally {
    client.close();
  }
}

/**
 * Calls the server and parses the JSON answer.
 *
 * @param t the test server
 * @param path the path
 * @param init as {@linkcode call}
 * @returns the status code and the body
 */
export async function callJson(
  t: TestApi,
  path: string,
  init: RequestInit & { token?: string | null; contentType?: string } = {},
): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await call(t, path, init);
  const text = await res.text();
  return { code: res.status, body: text ? JSON.parse(text) : {} };
}

/**
 * Writes a kubeconfig for the server with the given token.
 *
 * @param t the test server
 * @param token the bearer token
 * @param name the file name inside the test directory
 * @returns the kubeconfig's path
 */
export async function writeKubeconfig(
  t: TestApi,
  token: string,
  name = "kubeconfig",
): Promise<string> {
  const path = `${t.dir}/${name}`;
  await Deno.writeTextFile(
    path,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: sim",
      "  cluster:",
      `    server: ${t.api.url}`,
      `    certificate-authority: ${t.tls.caCertPath}`,
      "users:",
      "- name: sim-user",
      "  user:",
      `    token: ${token}`,
      "contexts:",
      "- name: sim",
      "  context:",
      "    cluster: sim",
      "    user: sim-user",
      "current-context: sim",
      "",
    ].join("\n"),
  );
  return path;
}

const ROOT = new URL("../../../", import.meta.url).pathname.replace(/\/$/, "");
let kubectlPath: Promise<string> | undefined;

async function findKubectl(): Promise<string> {
  const fromEnv = Deno.env.get("VIF_KUBECTL");
  if (fromEnv) return fromEnv;
  const unpacked = `${ROOT}/.tools/kubernetes-client/usr/bin/kubectl`;
  const candidates = ["/usr/bin/kubectl", unpacked];
  for (const path of candidates) {
    try {
      const out = await new Deno.Command(path, {
        args: ["version", "--client", "--short"],
        stdout: "piped",
        stderr: "null",
      }).output();
      if (out.success && new TextDecoder().decode(out.stdout).includes("v1.20.")) return path;
    } catch {
      // Not there.
    }
  }
  const script = `${ROOT}/tests/sim/apiserver/install_kubectl.sh`;
  const out = await new Deno.Command("bash", { args: [script], stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `Cannot get Debian's kubectl: ${script} failed: ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/**
 * The path of Debian's `kubectl` 1.20: `$VIF_KUBECTL`, `/usr/bin/kubectl` when
 * it is that one, or the package unpacked into `.tools/` by `install_kubectl.sh`
 * (run here when needed).
 *
 * @returns the path
 * @throws {Error} when it cannot be had
 */
export function debianKubectl(): Promise<string> {
  kubectlPath ??= findKubectl();
  return kubectlPath;
}

/** The result of one kubectl run. */
export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs kubectl with a kubeconfig (never `~/.kube`: HOME points into the test
 * directory, so its discovery cache lands there too).
 *
 * @param t the test server
 * @param kubeconfig the kubeconfig's path
 * @param args the arguments after `--kubeconfig`
 * @param stdin text for standard input
 * @returns exit code and output
 */
export async function kubectl(
  t: TestApi,
  kubeconfig: string,
  args: string[],
  stdin?: string,
): Promise<KubectlResult> {
  const child = new Deno.Command(await debianKubectl(), {
    args: ["--kubeconfig", kubeconfig, "--request-timeout=15s", ...args],
    env: { HOME: t.dir, PATH: "/usr/bin:/bin" },
    clearEnv: true,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** A TCP echo server on 127.0.0.1. */
export interface EchoServer {
  port: number;
  /** How many connections it accepted. */
  accepted(): number;
  close(): void;
}

/**
 * Starts a TCP echo server on 127.0.0.1 (a random port).
 *
 * @returns the server
 */
export function startEchoServer(): EchoServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let accepted = 0;
  (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        conns.add(conn);
        conn.readable.pipeTo(conn.writable).catch(() => {}).finally(() => conns.delete(conn));
      }
    } catch {
      // Listener closed.
    }
  })();
  return {
    port: listener.addr.port,
    accepted: () => accepted,
    close() {
      try {
        listener.close();
      } catch { /* closed already */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/**
 * A Running pod at 127.0.0.1 (so the default dialer reaches local servers).
 *
 * @param namespace the namespace
 * @param name the name
 * @returns the pod object for `store.create`
 */
export function runningPod(namespace: string, name: string): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { app: name } },
    spec: { containers: [{ name: "main", image: "echo:1" }], nodeName: "node1" },
    status: {
      phase: "Running",
      podIP: "127.0.0.1",
      podIPs: [{ ip: "127.0.0.1" }],
      conditions: [{ type: "Ready", status: "True" }],
      // name, image, imageID, ready and restartCount are required by typed
      // clients (python-kubernetes refuses a status without imageID).
      containerStatuses: [{
        name: "main",
        image: "echo:1",
        imageID: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: new Date().toISOString().replace(/\.\d{3}Z$/, "Z") } },
      }],
    },
  };
}

/**
 * Polls `cond` every 20 ms until it is true or `ms` pass.
 *
 * @param cond the condition
 * @param ms the limit
 * @param what what is awaited, for the error
 * @throws {Error} on time-out
 */
export function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  return waitUntil(cond, ms, what, 20);
}
