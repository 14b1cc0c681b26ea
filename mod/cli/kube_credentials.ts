/**
 * `vif kube-credentials` (hidden): resolves a kubeconfig context as the user
 * who runs it (its exec credential plugin, its token file) and prints the
 * API server's access as one line of JSON on stdout. The root daemon runs it
 * as the user it serves when it needs credentials (`mod/daemon/credentials.ts`),
 * so that none of the user's code runs, and none of the user's files is
 * read, as root. It prints nothing else on stdout; a failure is the usual
 * two lines on stderr.
 *
 * @module
 */

import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { asUserError } from "./errors.ts";
import { addKubeFlags, type KubeFlags, kubeLoadOptions } from "./kube_flags.ts";

/**
 * Adds `vif kube-credentials` (hidden) to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerKubeCredentials(program: Command, context: CliContext): void {
  const command = program
    .command("kube-credentials", { hidden: true })
    .description("print a kubeconfig context's API access as JSON (the daemon runs it as you)");
  addKubeFlags(command)
    .action(async (options: KubeFlags) => {
      const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
      try {
        const loaded = loadKubeConfig(kubeLoadOptions(options, context.io.env));
        const access = await resolveAccess(loaded.kubeConfig);
        context.io.stdout(JSON.stringify({ context: loaded.context, access }) + "\n");
      } catch (error) {
        throw asUserError(error);
      }
    });
}
