/**
 * The manager's counters: open tunnels, bytes each way, dial outcomes, and the
 * bytes it holds in its own buffers, which flow control must keep bounded.
 *
 * @module
 */

/** Counters of one manager, read through `ManagerHandle.stats`. */
export class ManagerStats {
  /** Open TCP tunnels. */
  tcpTunnels = 0;
  /** Open UDP tunnels. */
  udpTunnels = 0;
  /** Tunnels opened since start, by dial outcome (`ok`, `refused`, `prohibited`, …). */
  readonly dials: Record<string, number> = {};
  /** Bytes read from destinations and handed to the client. */
  bytesToClient = 0;
  /** Bytes received from clients and written to destinations. */
  bytesToDestination = 0;
  /** UDP datagrams dropped because a side could not keep up. */
  datagramsDropped = 0;
  /** DNS queries answered, and failed. */
  dnsAnswered = 0;
  /** DNS queries that failed (no answer in time, upstream error). */
  dnsFailed = 0;
  /**
   * Frames from clients that broke the protocol: a flow that sent past its
   * credit or after its FIN, an oversized frame, a batch that broke the
   * framing. Each reset its flow or ended its call.
   */
  violations = 0;
  #toClient = 0;
  #toClientPeak = 0;
  #toDestination = 0;
  #toDestinationPeak = 0;

  /**
   * Bytes read from destination sockets and written to gRPC calls whose write
   * has not completed yet (held by grpc-js and the HTTP/2 stream): what flow
   * control bounds in the cluster-to-client direction.
   */
  get bufferedToClient(): number {
    return this.#toClient;
  }

  /** The highest {@linkcode ManagerStats.bufferedToClient} seen (see {@linkcode ManagerStats.resetPeaks}). */
  get bufferedToClientPeak(): number {
    return this.#toClientPeak;
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
    this.#toClientPeak = this.#toClient;
    this.#toDestinationPeak = this.#toDestination;
  }

  /** @internal Counts `delta` bytes into (or, negative, out of) the to-client buffer. */
  addBufferedToClient(delta: number): void {
    this.#toClient += delta;
    if (this.#toClient > this.#toClientPeak) this.#toClientPeak = this.#toClient;
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
