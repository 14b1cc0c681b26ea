/**
 * `vif --serve` and `vif manager` from the command line: two-line errors and
 * exit codes in-process, and a real process that serves over TLS until SIGTERM.
 *
 * @module
 */

import { main, memoryIo } from "./mod.ts";
import { serveAlias } from "./manager.ts";
import type { VersionInfo } from "../rpc/service.ts";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { call, makeClient, testTls } from "../../tests/_manager.ts";

const ROOT = new URL("../..", import.meta.url);

async function run(args: string[], env: Record<string, string> = {}) {
  const io = memoryIo(env);
  const code = await main(args, { io });
  return { code, out: io.out, err: io.err };
}

Deno.test("serveAlias() turns a leading --serve into the manager command", () => {
  assertEquals(serveAlias(["--serve", "--listen", ":1"]), ["manager", "--listen", ":1"]);
  assertEquals(serveAlias(["--debug", "--serve"]), ["manager", "--debug"]);
  assertEquals(serveAlias(["version", "--serve"]), ["version", "--serve"]);
  assertEquals(serveAlias(["--", "--serve"]), ["--", "--serve"]);
  assertEquals(serveAlias([]), []);
});

Deno.test("vif --help lists the manager command and --serve", async () => {
  const { code, out } = await run(["--help"]);
  assertEquals(code, 0);
  assertMatch(out, /^ {2}manager\b.*traffic-manager/m);
  assertMatch(out, /vif --serve \[flags\]/);
});

Deno.test("vif --serve without --tls-dir is a usage error in two lines", async () => {
  const { code, err } = await run(["--serve"]);
  assertEquals(code, 2);
  assertEquals(
    err,
    "vif: no TLS certificate for the traffic-manager\n" +
      "Pass --tls-dir DIR, a directory holding tls.crt, tls.key and ca.crt.\n",
  );
});

Deno.test("vif manager with a missing TLS directory fails with exit code 1", async () => {
  const { code, err } = await run([
    "manager",
    "--tls-dir",
    "/nonexistent/tls",
    "--listen",
    "127.0.0.1:0",
  ]);
  assertEquals(code, 1);
  const lines = err.trimEnd().split("\n");
  assertEquals(lines.length, 2);
  assertEquals(lines[0], 'vif: TLS file "/nonexistent/tls/tls.crt" does not exist');
  assertMatch(lines[1]!, /^Point --tls-dir at a directory holding tls\.crt, tls\.key and ca\.crt/);
});

Deno.test("vif --serve rejects bad flag values with exit code 2", async () => {
  const tls = await testTls();
  const cases: [string[], RegExp][] = [
    [
      ["--pod-cidr", "198.18.0.0/99"],
      /^vif: cannot parse pod subnet "198\.18\.0\.0\/99"\nPass --pod-cidr/,
    ],
    [["--listen", "somewhere"], /^vif: cannot listen on "somewhere": expected HOST:PORT/],
    [
      ["--listen", "0.0.0.0:8081"],
      /^vif: cannot serve clients on "0\.0\.0\.0:8081": the client listener is on loopback only\nClients reach it through the API server's pods\/portforward/,
    ],
    [
      ["--allow-also-proxy", "0.0.0.0/99"],
      /^vif: cannot parse also-proxy subnet "0\.0\.0\.0\/99"\nPass --allow-also-proxy/,
    ],
    [
      ["--max-tcp-flows", "many"],
      /^vif: option "--max-tcp-flows <count>" argument "many" is invalid/,
    ],
    [
      ["--max-tcp-flows-per-session", "100", "--max-tcp-flows", "10"],
      /^vif: the limit --max-tcp-flows-per-session \(100\) is above --max-tcp-flows \(10\)\n/,
    ],
    [
      ["--dial-timeout", "soon"],
      /^vif: option "--dial-timeout <duration>" argument "soon" is invalid\n/,
    ],
    [["--pod-ip", "pod-1"], /^vif: the pod IP "pod-1" is not an IP address\n/],
    [["--frobnicate"], /^vif: unknown option "--frobnicate"\nRun "vif manager --help"/],
  ];
  for (const [flags, pattern] of cases) {
    const { code, err } = await run(["--serve", "--tls-dir", tls.dir, ...flags]);
    assertEquals(code, 2, err);
    assertMatch(err, pattern);
    assertEquals(err.trimEnd().split("\n").length, 2, err);
  }
  const noCa = await run([
    "--serve",
    "--tls-dir",
    tls.dir,
    "--listen",
    "127.0.0.1:0",
    "--no-health-listen",
    "--direct-listen",
    "127.0.0.1:0",
    "--client-ca",
    "/nonexistent/ca.crt",
  ]);
  assertEquals(noCa.code, 1, noCa.err);
  assertMatch(noCa.err, /^vif: the client CA "\/nonexistent\/ca\.crt" does not exist\n/);
  const fromEnv = await run(["--serve", "--tls-dir", tls.dir], {
    VIF_SERVICE_CIDRS: "198.18.128.0/20,nope",
  });
  assertEquals(fromEnv.code, 2);
  assertMatch(fromEnv.err, /^vif: cannot parse service subnet "nope"/);
});

Deno.test("vif --serve as a process serves over TLS and stops on SIGTERM with exit code 0", async () => {
  const tls = await testTls();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "main.ts",
      "--serve",
      "--tls-dir",
      tls.dir,
      "--listen",
      "127.0.0.1:0",
      "--health-listen",
      "127.0.0.1:0",
      "--service-cidr",
      "198.18.128.0/20",
      "--resolv-conf",
      "/nonexistent/resolv.conf",
      "--dns-server",
      "198.18.128.10",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", VIF_POD_CIDRS: "198.18.64.0/18, 198.18.96.0/19", POD_IP: "198.18.64.7" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let err = "";
  try {
    const deadline = Date.now() + 30_000;
    while (
      !err.includes("manager: health on") ||
      !err.slice(err.indexOf("manager: health on")).includes("\n")
    ) {
      assert(Date.now() < deadline, `no "serving" line:\n${err}`);
      const { value, done } = await reader.read();
      if (done) break;
      err += value;
    }
    const serving = err.split("\n").find((line) => line.startsWith("manager: serving clients"))!;
    assertMatch(
      serving,
      /^manager: serving clients on 127\.0\.0\.1:\d+ \(TLS, traffic-manager\.vif-system; through pods\/portforward\), pods 198\.18\.64\.0\/18 198\.18\.96\.0\/19, services 198\.18\.128\.0\/20, domain cluster\.local, DNS 198\.18\.128\.10:53$/,
    );
    const address = /serving clients on (\S+)/.exec(serving)![1]!;
    const health = /^manager: health on (\S+) /m.exec(err)![1]!;
    const live = await fetch(`${health}/livez`);
    assertEquals([live.status, await live.text()], [200, "ok\n"]);
    const ready = await fetch(`${health}/readyz`);
    assertEquals([ready.status, await ready.text()], [200, "ok\n"]);
    const client = makeClient(address, tls.caPem, tls.serverName);
    try {
      const info = await call<VersionInfo>(client, "version", {});
      assertEquals(info.name, "vif-traffic-manager");
    } finally {
      client.close();
    }
    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      err += value;
    }
    const status = await child.status;
    assertEquals(status.code, 0, err);
    assertMatch(err, /manager: SIGTERM: stopping\nmanager: stopped\n$/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await child.status;
    await child.stdout.cancel().catch(() => {});
    reader.releaseLock();
    await child.stderr.cancel().catch(() => {});
  }
});
