/**
 * Why vif keeps its own WebSocket client (`mod/kube/websocket.ts`) for the
 * API server's port-forward rather than the `ws` package (in the lock through
 * client-node): both clients push the same bytes, in the 64 KiB messages a
 * port-forward carries, through one connection to a `ws` echo server on
 * loopback, alternating, and the rate each moved is printed.
 *
 *     deno run -A scripts/ws_bench.ts [rounds]
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import { WebSocket, WebSocketServer } from "ws";
import { connectWebSocket } from "../mod/kube/websocket.ts";

const MESSAGE = new Uint8Array(64 * 1024).fill(7);
const COUNT = 128; // 8 MiB each way per round trip
const TRIPS = 4;
const PROTOCOL = "v4.channel.k8s.io";
const rounds = Number(Deno.args[0] ?? 6);

type Echoing = { on(event: "message", fn: (data: Buffer) => void): void; send(data: Buffer): void };
const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
server.on("connection", (socket: Echoing) => socket.on("message", (data) => socket.send(data)));
await new Promise<void>((resolve) => server.once("listening", () => resolve()));
const port = (server.address() as { port: number }).port;

const ours = await connectWebSocket(
  { server: `http://127.0.0.1:${port}`, headers: {} },
  "/",
  { protocols: [PROTOCOL] },
);
const theirs = new WebSocket(`ws://127.0.0.1:${port}/`, [PROTOCOL]);
await new Promise<void>((resolve) => theirs.once("open", () => resolve()));

/** Sends COUNT messages, each once the socket took the last, and waits for every echo. */
async function roundTrip(
  send: (data: Uint8Array) => Promise<void>,
  onEcho: (fn: (bytes: number) => void) => void,
): Promise<void> {
  let echoed = 0;
  const all = new Promise<void>((resolve) => {
    onEcho((bytes) => {
      echoed += bytes;
      if (echoed >= COUNT * MESSAGE.length) resolve();
    });
  });
  for (let i = 0; i < COUNT; i++) await send(MESSAGE);
  await all;
}

const clients = {
  "vif's client": () =>
    roundTrip(
      (data) => ours.send(data),
      (fn) => ours.onmessage = (m) => fn(m.length),
    ),
  "the ws package": () =>
    roundTrip(
      (data) =>
        new Promise<void>((resolve, reject) =>
          theirs.send(data, { binary: true }, (e?: Error) => e ? reject(e) : resolve())
        ),
      (fn) => {
        theirs.removeAllListeners("message");
        theirs.on("message", (m: Buffer) => fn(m.length));
      },
    ),
};

const rates: Record<string, number[]> = {};
for (let round = 0; round < rounds; round++) {
  for (const [name, trip] of Object.entries(clients)) {
    const t0 = performance.now();
    for (let k = 0; k < TRIPS; k++) await trip();
    const seconds = (performance.now() - t0) / 1000;
    const mib = (TRIPS * COUNT * MESSAGE.length * 2) / (1 << 20);
    (rates[name] ??= []).push(Math.round(mib / seconds));
  }
}
for (const [name, list] of Object.entries(rates)) {
  const sorted = [...list].sort((a, b) => a - b);
  console.log(
    `${name}: median ${sorted[Math.floor(sorted.length / 2)]} MiB/s moved (rounds: ${
      list.join(", ")
    })`,
  );
}
ours.close();
theirs.close();
server.close();
