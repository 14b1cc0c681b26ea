/**
 * `vif agent-init`, the init container of an injected pod (the only part
 * with NET_ADMIN, run as root before the app and the agent start): for each
 * port a Service reaches by number (`takeover: "redirect"`), an nftables rule
 * in the pod's network namespace that sends TCP to the container port, from
 * any interface but loopback, to the agent's port instead. Loopback is left
 * alone so that the agent's pass-through to `127.0.0.1:containerPort`, and
 * the app's own calls to itself, reach the app. Ports a Service reaches by
 * name (`takeover: "name"`) need nothing: the agent's port carries the name.
 *
 * The table is replaced whole in one `nft -f` transaction, so running it
 * again (a restarted pod) gives the same rules.
 *
 * @module
 */

import type { AgentConfig, AgentPortConfig } from "../mod/kube/agent_config.ts";

/** The agent's nftables table (family `inet`: IPv4 and IPv6). */
export const NFT_TABLE = "vif_agent";

/** A redirect could not be installed: what happened, and what to do. */
export class AgentInitError extends Error {
  /** What to do about it, as a full sentence. */
  readonly hint: string;

  /**
   * Makes the error.
   *
   * @param message what happened
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentInitError";
    this.hint = hint;
  }
}

/**
 * The nftables script that replaces the agent's table with one redirect per
 * port taken by number.
 *
 * @param ports the agent's ports
 * @returns the script for `nft -f -`, or `undefined` when no port needs a redirect
 *
 * @example
 * ```ts
 * import { redirectRuleset } from "./init.ts";
 *
 * const script = redirectRuleset([{ containerPort: 80, agentPort: 9900, takeover: "redirect" }]);
 * if (!script?.includes('iifname != "lo" tcp dport 80 redirect to :9900')) throw new Error(script);
 * ```
 */
export function redirectRuleset(ports: readonly AgentPortConfig[]): string | undefined {
  const redirected = ports.filter((port) => port.takeover === "redirect");
  if (redirected.length === 0) return undefined;
  const rules = redirected.map((port) => {
    checkPort(port.containerPort);
    checkPort(port.agentPort);
    return `    iifname != "lo" tcp dport ${port.containerPort} redirect to :${port.agentPort}`;
  });
  return [
    // Made first so that the delete works on a first run too: one transaction either way.
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    "  chain prerouting {",
    "    type nat hook prerouting priority -100; policy accept;",
    ...rules,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Options of {@linkcode installRedirects}. */
export interface InstallRedirectsOptions {
  /** The command that runs nft, arguments first (default `["nft"]`). */
  nft?: string[];
  /** Log sink (one line of what was done). */
  log?: (line: string) => void;
}

/**
 * Installs the redirects of `config` in this network namespace.
 *
 * @param config the agent's configuration
 * @param options how nft is run, the log
 * @returns how many ports are redirected
 * @throws {AgentInitError} when nft is missing or refuses the rules
 */
export async function installRedirects(
  config: AgentConfig,
  options: InstallRedirectsOptions = {},
): Promise<number> {
  const log = options.log ?? (() => {});
  const script = redirectRuleset(config.ports);
  if (script === undefined) {
    log("agent-init: no port is taken by number; nothing to redirect");
    return 0;
  }
  const [program, ...args] = options.nft ?? ["nft"];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program!, {
      args: [...args, "-f", "-"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound) {
      throw new AgentInitError(
        `Cannot redirect the ports: the "${program}" program is not in the image`,
        "Run the init container from the vif image, which has nftables (the nft program).",
        { cause },
      );
    }
    throw new AgentInitError(
      `Cannot run "${program}": ${(cause as Error).message}`,
      "Run the init container from the vif image, as root, with the NET_ADMIN capability.",
      { cause },
    );
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script)).catch(() => {});
  await writer.close().catch(() => {});
  const output = await child.output();
  if (!output.success) {
    const detail = new TextDecoder().decode(output.stderr).trim().split("\n").slice(0, 3)
      .join("; ");
    throw new AgentInitError(
      `Cannot redirect the ports: nft failed (exit code ${output.code}): ${detail || "no message"}`,
      "The init container needs root with the NET_ADMIN capability, and a kernel with " +
        "nftables NAT (nf_tables, nft_redir).",
    );
  }
  const ports = config.ports.filter((port) => port.takeover === "redirect");
  log(
    `agent-init: redirected ${
      ports.map((port) => `${port.containerPort}→${port.agentPort}`).join(", ")
    } (nftables table inet ${NFT_TABLE})`,
  );
  return ports.length;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot redirect port ${port}: not a port number`);
  }
}
