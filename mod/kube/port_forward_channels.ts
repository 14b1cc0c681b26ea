/**
 * The kubelet's port-forward channel framing, read one WebSocket message at
 * a time (`v4.channel.k8s.io` and `channel.k8s.io`, binary messages only),
 * for a forward of one port. Pure: no I/O, no clock.
 *
 * ```
 * u8 channel | payload          channel 0: data, channel 1: error text
 * ```
 *
 * The first message on each channel is its port header: exactly the
 * forwarded port, 2 bytes little-endian, and nothing else. Everything the
 * API server sends is checked against that: a message on another channel, a
 * header that is not 2 bytes or names another port, a text message, an error
 * text over {@linkcode MAX_ERROR_TEXT} bytes is a protocol violation, after
 * which the reader answers only with that violation.
 *
 * @module
 */

/** The longest error text accepted on channel 1, in bytes (the kubelet's are one line). */
export const MAX_ERROR_TEXT = 4096;

/** What one message from the API server comes to. */
export type ChannelMessage =
  /** Bytes from the pod's port (a view into the message, never empty). */
  | { kind: "data"; bytes: Uint8Array }
  /** The kubelet's error text (trimmed, control characters made spaces, never empty). */
  | { kind: "error"; text: string }
  /** A channel's port header, checked and consumed. */
  | { kind: "port"; channel: 0 | 1 }
  /** Nothing to act on: an empty message, no data, an empty error text. */
  | { kind: "none" }
  /** The API server broke the protocol; the forward should end. */
  | { kind: "violation"; reason: string };

const NONE: ChannelMessage = { kind: "none" };
const decoder = new TextDecoder();

/**
 * Reads the messages of one port-forward WebSocket.
 *
 * @example
 * ```ts
 * import { PortForwardChannels } from "./port_forward_channels.ts";
 *
 * const channels = new PortForwardChannels(8081);
 * const header = [8081 & 0xff, 8081 >> 8];
 * channels.read(new Uint8Array([0, ...header])); // { kind: "port", channel: 0 }
 * channels.read(new Uint8Array([1, ...header])); // { kind: "port", channel: 1 }
 * const m = channels.read(new Uint8Array([0, 104, 105]));
 * if (m.kind !== "data" || m.bytes.length !== 2) throw new Error(m.kind);
 * const bad = channels.read(new Uint8Array([2, 0]));
 * if (bad.kind !== "violation") throw new Error(bad.kind);
 * ```
 */
export class PortForwardChannels {
  #port: number;
  #seenHeader = [false, false];
  #violation: ChannelMessage | undefined;

  /**
   * @param port the forwarded port, which each channel's header must name
   * @throws {RangeError} when it is not a port number
   */
  constructor(port: number) {
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) {
      throw new RangeError(`Cannot read port-forward channels: "${port}" is not a port`);
    }
    this.#port = port;
  }

  /** Why the API server broke the protocol, once it has. */
  get violation(): string | undefined {
    return this.#violation?.kind === "violation" ? this.#violation.reason : undefined;
  }

  /**
   * Reads one message.
   *
   * @param message a WebSocket message as the client delivers it (binary as
   *   bytes, text as a string)
   * @returns what it carries; after a violation, that violation again
   */
  read(message: Uint8Array | string): ChannelMessage {
    if (this.#violation) return this.#violation;
    if (typeof message === "string") {
      return this.#fail(`a text message on the binary channel protocol (${message.length} chars)`);
    }
    if (message.length === 0) return NONE;
    const channel = message[0]!;
    const payload = message.subarray(1);
    if (channel > 1) {
      return this.#fail(
        `a message on channel ${channel}: one port has only 0 (data) and 1 (error)`,
      );
    }
    if (!this.#seenHeader[channel]) {
      if (payload.length !== 2) {
        return this.#fail(
          `the first message on channel ${channel} is not a 2-byte port header (${payload.length} bytes)`,
        );
      }
      const port = payload[0]! | (payload[1]! << 8);
      if (port !== this.#port) {
        return this.#fail(
          `channel ${channel} names port ${port}, not the forwarded port ${this.#port}`,
        );
      }
      this.#seenHeader[channel] = true;
      return { kind: "port", channel: channel as 0 | 1 };
    }
    if (channel === 0) return payload.length === 0 ? NONE : { kind: "data", bytes: payload };
    if (payload.length > MAX_ERROR_TEXT) {
      return this.#fail(`an error text of ${payload.length} bytes (at most ${MAX_ERROR_TEXT})`);
    }
    // The text reaches logs and the terminal: no escape sequences, no line breaks.
    // deno-lint-ignore no-control-regex
    const text = decoder.decode(payload).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ")
      .trim();
    return text === "" ? NONE : { kind: "error", text };
  }

  #fail(reason: string): ChannelMessage {
    this.#violation = { kind: "violation", reason };
    return this.#violation;
  }
}
