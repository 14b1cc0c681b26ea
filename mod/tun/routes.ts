/**
 * A route of the host's routing table, as listed by `listRoutes()` in
 * `mod.ts`. This file knows no operating system.
 *
 * @module
 */

import type { Prefix } from "./tun.ts";

/**
 * One entry of the host's routing table. `address`/`prefixLength` are the
 * destination (`0.0.0.0`/0 or `::`/0 for a default route).
 */
export interface SystemRoute extends Prefix {
  /** The IP version. */
  family: 4 | 6;
  /** The routing table number (254 is Linux's `main`, 255 `local`). */
  table: number;
  /** Who installed the route (Linux: 2 kernel, 3 boot, 4 static, 0xa5 vif). */
  protocol: number;
  /** The route scope (Linux: 0 universe, 253 link, 254 host). */
  scope: number;
  /** The route type (Linux: 1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable). */
  type: number;
  /** The outgoing interface index, when the route has one. */
  interfaceIndex?: number;
  /** The outgoing interface name, when it could be found. */
  interfaceName?: string;
  /** The next hop, when the route goes through a gateway. */
  gateway?: string;
  /** The preferred source address, when set. */
  source?: string;
  /** The route metric (priority), when set. */
  metric?: number;
}
