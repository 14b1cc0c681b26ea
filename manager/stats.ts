/**
 * The manager's counters: open flows, bytes each way, dial outcomes, and the
 * bytes it holds in its own buffers, which flow control must keep bounded.
 *
 * @module
 */

import { type MuxEndStats, muxEndStats } from "../mod/rpc/mux_end.ts";

/** Counters of one manager, read through `ManagerHandle.stats`. */
export class ManagerStats {
  /** Open TCP flows. */
  tcpTunnels = 0;
  /** Open UDP flows. */
  udpTunnels = 0;
  /** Flows opened since start, by dial outcome (`ok`, `refused`, `prohibited`, …). */
  readonly dials: Record<string, number> = {};
  /** The counters every `Mux` call adds to. */
  readonly mux: MuxEndStats = muxEndStats();
  /** Bytes received from clients and written to destinations. */
  bytesToDestination = 0;
  /** UDP datagrams dropped because a side could not keep up. */
  datagramsDropped = 0;
  /** DNS queries answered, and failed. */
  dnsAnswered = 0;
  /** DNS queries that failed (no answer in time, upstream error). */
  dnsFailed = 0;
  /** Connections agents took on intercepted ports and sent on to sessions. */
  interceptedConnections = 0;
  /** DNS queries of intercepting sessions answered by an agent (the pod's resolver). */
  dnsByAgents = 0;
  #toDestination = 0;
  #toDestinationPeak = 0;

  /** Data bytes read from destinations and sent to clients. */
  get bytesToClient(): number {
    return this.mux.bytesSent;
  }

  /**
   * Frames from clients that broke the protocol: a flow that sent past its
   * credit or after its FIN, an oversized frame, a batch that broke the
   * framing. Each reset its flow or ended its call.
   */
  get violations(): number {
    return this.mux.violations;
  }

  /**
   * Bytes of batches written to `Mux` calls whose write has not completed yet
   * (held by grpc-js and the HTTP/2 stream): what flow control bounds in the
   * cluster-to-client direction.
   */
  get bufferedToClient(): number {
    return this.mux.outbound;
  }

  /** The highest {@linkcode ManagerStats.bufferedToClient} seen (see {@linkcode ManagerStats.resetPeaks}). */
  get bufferedToClientPeak(): number {
    return this.mux.outboundPeak;
  }

  /** Bytes received from clients and queued on destination sockets, not yet written. */
  get bufferedToDestination(): number {
    return this.#toDestination;
  }

  /** The highest {@linkcode ManagerStats.bufferedToDestination} seen. */
  get bufferedToDestinationPeak(): number {
    return this.#toDestinationPeak;
  }

  /** Sets the peaks to the current values. */
  resetPeaks(): void {
    this.mux.outboundPeak = this.mux.outbound;
    this.#toDestinationPeak = this.#toDestination;
  }

  /** @internal Counts `delta` bytes into (or out of) the to-destination buffer. */
  addBufferedToDestination(delta: number): void {
    this.#toDestination += delta;
    if (this.#toDestination > this.#toDestinationPeak) {
      this.#toDestinationPeak = this.#toDestination;
    }
  }

  /** @internal Counts one dial outcome. */
  countDial(outcome: string): void {
    this.dials[outcome] = (this.dials[outcome] ?? 0) + 1;
  }
}
