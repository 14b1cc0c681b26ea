/**
 * The DNS watchdog in-process, against a DNS server that can be made silent
 * and a resolv.conf in a temporary directory:
 *
 * ```
 *  test ──ReadableStream ("stop", or EOF)──► runDnsWatchdog ──bare header──► fake daemon 127.0.0.1:P (can be paused)
 *                                                 └── DIR/resolv.conf ◄── DIR/state/resolv.conf.{orig,json}
 * ```
 */

import dgram from "node:dgram";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { clusterDnsDomains, ResolvConfConfigurator } from "./dns_config.ts";
import { runDnsWatchdog } from "./dns_watchdog.ts";

const ORIGINAL = "nameserver 198.18.0.53\nsearch corp.example\n";
const CONFIG = {
  address: "240.0.0.2",
  interfaceName: "vif0",
  ...clusterDnsDomains({ clusterDomain: "cluster.local", namespace: "default" }),
};

/** A daemon's DNS server as the watchdog sees it: it answers bare headers unless paused. */
async function fakeDaemon() {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  const state = { paused: false, probes: 0 };
  socket.on("message", (msg: Uint8Array, from: dgram.RemoteInfo) => {
    state.probes++;
    if (state.paused) return;
    const reply = new Uint8Array(msg);
    reply[2] = 0x80;
    reply[3] = 0x81;
    socket.send(reply, from.port, from.address);
  });
  return { state, port: (socket.address() as { port: number }).port, close: () => socket.close() };
}

async function setUp() {
  const dir = await Deno.makeTempDir({ prefix: "vif-watchdog-" });
  const path = `${dir}/resolv.conf`, stateDir = `${dir}/state`;
  await Deno.writeTextFile(path, ORIGINAL);
  await new ResolvConfConfigurator({ path, stateDir }).apply(CONFIG);
  const vifs = await Deno.readTextFile(path);
  const pipe = new TransformStream<Uint8Array, Uint8Array>();
  const writer = pipe.writable.getWriter();
  const lines: string[] = [];
  return { dir, path, stateDir, vifs, input: pipe.readable, writer, lines };
}

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<number> {
  const start = performance.now();
  while (!await cond()) {
    if (performance.now() - start > ms) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - start;
}

Deno.test("runDnsWatchdog() puts the original back while the daemon is silent, and vif's when it answers", async () => {
  const t = await setUp();
  const daemon = await fakeDaemon();
  try {
    const running = runDnsWatchdog({
      stateDir: t.stateDir,
      probe: { hostname: "127.0.0.1", port: daemon.port },
      input: t.input,
      intervalMs: 100,
      silenceMs: 300,
      log: (level, m) => t.lines.push(`${level} ${m}`),
    });
    await until(() => Promise.resolve(daemon.state.probes >= 3), 2000, "probes");
    assertEquals(await Deno.readTextFile(t.path), t.vifs); // healthy: nothing changes
    daemon.state.paused = true; // SIGSTOP
    const took = await until(
      async () => await Deno.readTextFile(t.path) === ORIGINAL,
      3000,
      "the original",
    );
    assert(took >= 200 && took < 1500, `${took} ms`);
    daemon.state.paused = false; // SIGCONT
    await until(async () => await Deno.readTextFile(t.path) === t.vifs, 3000, "vif's file again");
    await t.writer.write(new TextEncoder().encode("stop\n"));
    assertEquals(await running, 0);
    assertEquals(await Deno.readTextFile(t.path), t.vifs); // stopping changes nothing
    const log = t.lines.join("\n");
    assertMatch(log, /^info dns watchdog: pid \d+ watching 127\.0\.0\.1:\d+$/m);
    assertMatch(
      log,
      /^warn dns watchdog: the daemon has not answered for \d+ ms: putting the original resolv\.conf back until it does$/m,
    );
    assertMatch(log, /^info dns watchdog: .*resolv\.conf holds the original for now$/m);
    assertMatch(log, /^info dns watchdog: the daemon answers again$/m);
    assertMatch(log, /^info dns watchdog: .*resolv\.conf points at vif again$/m);
    assertMatch(log, /^info dns watchdog: stopped by the daemon$/m);
  } finally {
    daemon.close();
    await Deno.remove(t.dir, { recursive: true });
  }
});

Deno.test("runDnsWatchdog() restores resolv.conf at once when the daemon's pipe ends", async () => {
  const t = await setUp();
  const daemon = await fakeDaemon();
  try {
    const running = runDnsWatchdog({
      stateDir: t.stateDir,
      probe: { hostname: "127.0.0.1", port: daemon.port },
      input: t.input,
      log: (level, m) => t.lines.push(`${level} ${m}`),
    });
    await until(() => Promise.resolve(daemon.state.probes >= 1), 2000, "a probe");
    const start = performance.now();
    await t.writer.close(); // kill -9: the kernel closes the daemon's end
    assertEquals(await running, 0);
    const took = performance.now() - start;
    assert(took < 500, `${took} ms`);
    assertEquals(await Deno.readTextFile(t.path), ORIGINAL);
    // As the next daemon's recovery would leave it: no saved state.
    assertEquals((await Array.fromAsync(Deno.readDir(t.stateDir))).map((e) => e.name), []);
    assertMatch(
      t.lines.join("\n"),
      /^warn dns watchdog: the daemon is gone: putting the original resolv\.conf back$/m,
    );
    assertMatch(
      t.lines.join("\n"),
      /^info dns watchdog: restored .*resolv\.conf as it was before/m,
    );
    console.log(`watchdog: resolv.conf restored ${took.toFixed(0)} ms after the pipe ended`);
  } finally {
    daemon.close();
    await Deno.remove(t.dir, { recursive: true });
  }
});
