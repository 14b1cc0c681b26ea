/**
 * Runs the workstation stack (TUN + router) with the Unix-socket dialer, for
 * the e2e tests and the demo. Prints `ready NAME` once routes are up, and the
 * router's counters as one JSON line when it gets SIGTERM or SIGINT.
 *
 * Usage: `deno run -A tests/e2e/_router_proc.ts SOCKET_PATH CIDR...`
 *
 * @module
 */

import { startStack } from "../../mod/daemon/stack.ts";
import { UnixSocketDialer } from "./_unix_dialer.ts";

if (import.meta.main) {
  const [path, ...routes] = Deno.args;
  if (!path || routes.length === 0) throw new Error("usage: _router_proc.ts SOCKET_PATH CIDR...");
  const verbose = Deno.env.get("VIF_DEBUG") === "1";
  const stack = await startStack({
    dialer: new UnixSocketDialer(path),
    routes,
    log: (level, msg) => {
      if (level !== "debug" || verbose) console.error(msg);
    },
  });
  console.log(`ready ${stack.device.name}`);
  const stop = async () => {
    console.log(JSON.stringify({ router: stack.router.stats, device: stack.device.stats }));
    await stack.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await stack.done;
}
