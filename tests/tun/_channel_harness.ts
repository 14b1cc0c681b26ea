/**
 * The host's side of a {@linkcode ChannelTun} for the shared suite: the test
 * plays the kernel.
 *
 * @module
 */

import {
  buildEchoRequest4,
  buildUdp,
  type Endpoint,
  parseUdp,
  type TunHarness,
  withTimeout,
} from "./_tun_suite.ts";
import type { ChannelTun } from "../../mod/tun/channel.ts";
import type { TunDevice } from "../../mod/tun/tun.ts";

/**
 * The host's side of a ChannelTun: the test plays the kernel. `unwrap` finds
 * the ChannelTun under a wrapper device (see `pcap_test.ts`).
 *
 * @param open makes a device
 * @param unwrap the ChannelTun a device is or wraps
 * @returns the harness
 */
export function channelHarness(
  open: () => Promise<TunDevice>,
  unwrap: (device: TunDevice) => ChannelTun,
): TunHarness {
  const localAddress = (device: ChannelTun, to: string) => {
    const v6 = to.includes(":");
    const address = device.addresses.find((a) => a.address.includes(":") === v6)?.address;
    if (!address) {
      throw new Error(`Cannot send to "${to}": "${device.name}" has no address of its family`);
    }
    return address;
  };
  return {
    open,
    sendUdp(device: TunDevice, to: Endpoint, payload: Uint8Array) {
      const tun = unwrap(device);
      tun.inject(buildUdp({ address: localAddress(tun, to.address), port: 40000 }, to, payload));
      return Promise.resolve();
    },
    receiveUdp(device: TunDevice, at: Endpoint) {
      const tun = unwrap(device);
      const received = (async () => {
        for (;;) {
          const udp = parseUdp(await tun.nextWritten());
          if (udp?.checksumOk && udp.dst === at.address && udp.dport === at.port) {
            return udp.payload;
          }
        }
      })();
      received.catch(() => {}); // rejects when the device closes first; awaiting it still sees that
      return Promise.resolve({ received, close: () => Promise.resolve() });
    },
    async ping(device: TunDevice, address: string) {
      const tun = unwrap(device);
      const src = localAddress(tun, address);
      tun.inject(buildEchoRequest4(src, address, 0x1234));
      try {
        for (;;) {
          const reply = await withTimeout(tun.nextWritten(), "the echo reply");
          if (reply[9] === 1 && reply[20] === 0) return true;
        }
      } catch {
        return false;
      }
    },
    view(device: TunDevice) {
      const tun = unwrap(device);
      return Promise.resolve({
        exists: !tun.closed,
        up: tun.isUp,
        mtu: tun.mtu,
        addresses: [...tun.addresses],
        routes: [...tun.routes],
      });
    },
  };
}
