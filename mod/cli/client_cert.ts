/**
 * `vif client-cert NAME`: issue a client certificate for the traffic-manager's
 * direct (mutual TLS) listener, as an admin. It reads the client CA from the
 * Secret `traffic-manager-client-ca` with the admin's kubeconfig (only those
 * who may read Secrets in the manager's namespace can), signs a certificate
 * for NAME, and writes `client.crt`, `client.key` (mode 0600) and the
 * manager's `ca.crt` where asked, then prints the `vif connect` line that
 * uses them. The work is in `mod/kube/` (discovery and x509); this module
 * reads flags, writes files and prints.
 *
 * @module
 */

import { type Command, InvalidArgumentError } from "commander";
import { join } from "node:path";
import { DEFAULT_MANAGER_NAMESPACE } from "../rpc/names.ts";
import type { CliContext } from "./context.ts";
import { asUserError, UserError } from "./errors.ts";
import { addKubeFlags, type KubeFlags, kubeLoadOptions } from "./kube_flags.ts";

/** The options of `vif client-cert`, as commander parses them. */
interface ClientCertFlags extends KubeFlags {
  managerNamespace: string;
  out: string;
  days: number;
  force?: boolean;
}

/** The longest validity asked for: ten years, as long as the CA itself lives at most. */
const MAX_DAYS = 3650;

const HELP = `
It needs read access to the Secret "traffic-manager-client-ca" in the manager's
namespace (an admin's kubeconfig), made by "vif install --direct". The files it
writes are client.crt, client.key (mode 0600: give it to NAME only) and ca.crt
(the CA that signed the manager's certificate). It refuses to overwrite them
unless --force is given. The certificate lasts until --days have passed or the
client CA is replaced, whichever comes first; there is no revocation list, so
keep the validity short and replace the client CA ("kubectl -n <namespace>
delete secret traffic-manager-client-ca", then "vif install --direct") to cut
every certificate off at once.

Examples:
  # A certificate for a CI job, in ./ci-bench
  vif client-cert ci-bench --out ci-bench

  # A week-long one, from a manager in another namespace
  vif client-cert alice --days 7 --manager-namespace vif-dev --context prod`;

/**
 * Adds `vif client-cert` to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerClientCert(program: Command, context: CliContext): void {
  const command = program
    .command("client-cert")
    .description("issue a client certificate for the manager's direct listener (admins)")
    .argument("<name>", "who the certificate is for (its common name)", commonName);
  addKubeFlags(command)
    .option("--out <dir>", "the directory to write client.crt, client.key and ca.crt in", ".")
    .option("--days <n>", "how many days it is valid", days, 365)
    .option("--force", "overwrite client.crt, client.key and ca.crt if they exist")
    .option(
      "--manager-namespace <ns>",
      "the traffic-manager's namespace",
      DEFAULT_MANAGER_NAMESPACE,
    )
    .addHelpText("after", HELP)
    .action(async (name: string, flags: ClientCertFlags) => {
      const out = (line: string) => context.io.stdout(line + "\n");
      const files = {
        cert: join(flags.out, "client.crt"),
        key: join(flags.out, "client.key"),
        ca: join(flags.out, "ca.crt"),
      };
      // Before the cluster is asked anything: nothing is issued that cannot be written.
      if (!flags.force) {
        for (const path of Object.values(files)) await refuseExisting(path);
      }

      const [{ loadKubeConfig, resolveAccess }, { kubeApi }, { discoverDirectListener }, x509] =
        await Promise.all([
          import("../kube/client.ts"),
          import("../kube/api.ts"),
          import("../kube/discovery.ts"),
          import("../kube/x509.ts"),
        ]);
      const namespace = flags.managerNamespace;
      let listener;
      try {
        const loaded = loadKubeConfig(kubeLoadOptions(flags, context.io.env));
        listener = await discoverDirectListener(
          kubeApi(await resolveAccess(loaded.kubeConfig)),
          namespace,
        );
      } catch (error) {
        throw asUserError(error);
      }

      const reinstall = `vif install --direct${
        namespace === DEFAULT_MANAGER_NAMESPACE ? "" : ` --namespace ${namespace}`
      }`;
      let ca;
      try {
        ca = await x509.loadCertificateAuthority(listener.clientCa);
      } catch (cause) {
        throw new UserError(
          `the client CA in Secret "traffic-manager-client-ca" cannot sign: ${
            (cause as Error).message
          }`,
          {
            hint: `Run \`${reinstall}\`: it makes a new client CA when the old one cannot sign.`,
            cause,
          },
        );
      }
      if (ca.notAfter.getTime() <= Date.now()) {
        throw new UserError(
          `the client CA in Secret "traffic-manager-client-ca" expired on ${
            ca.notAfter.toISOString().slice(0, 10)
          }`,
          { hint: `Run \`${reinstall}\` to make a new one, then issue the certificates again.` },
        );
      }
      const issued = await x509.issueClientCertificate(ca, name, { validDays: flags.days });

      try {
        await Deno.mkdir(flags.out, { recursive: true, mode: 0o700 });
        await writeNew(files.key, issued.keyPem, 0o600, flags.force ?? false);
        await writeNew(files.cert, issued.certPem, 0o644, flags.force ?? false);
        await writeNew(files.ca, listener.caPem, 0o644, flags.force ?? false);
      } catch (cause) {
        if (cause instanceof UserError) throw cause;
        throw new UserError(`cannot write to "${flags.out}": ${(cause as Error).message}`, {
          hint: "Pass --out a directory you can write to.",
          cause,
        });
      }

      const until = issued.notAfter.toISOString().slice(0, 10);
      const host = listener.loadBalancer ?? listener.clusterIP ?? "HOST";
      out(
        `Issued a client certificate for "${name}", valid until ${until}, ` +
          `from the client CA of the traffic-manager in "${namespace}":`,
      );
      out(`  ${files.cert}`);
      out(`  ${files.key} (private: give it to ${name} only)`);
      out(`  ${files.ca} (the CA that signed the manager's certificate)`);
      if (listener.loadBalancer === undefined) {
        out(
          listener.clusterIP === undefined
            ? `Replace HOST with an address where port ${listener.port} of the manager is reachable.`
            : `${listener.clusterIP} is the Service's ClusterIP; from outside the cluster use ` +
              `the address where port ${listener.port} of the manager is exposed.`,
        );
      }
      out("Connect with:");
      out(
        `  vif connect --manager-address ${hostPort(host, listener.port)}` +
          (namespace === DEFAULT_MANAGER_NAMESPACE ? "" : ` --manager-namespace ${namespace}`) +
          ` --manager-ca ${shellWord(files.ca)} --client-cert ${shellWord(files.cert)}` +
          ` --client-key ${shellWord(files.key)}`,
      );
    });
}

/**
 * Refuses to go on when `path` exists (a file, a link, anything).
 *
 * @throws {UserError} When it does.
 */
async function refuseExisting(path: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new UserError(`cannot check "${path}": ${(error as Error).message}`, {
      hint: "Pass --out a directory you can write to.",
      cause: error,
    });
  }
  throw new UserError(`"${path}" already exists`, {
    hint: "Pass --force to overwrite it, or --out another directory.",
  });
}

/**
 * Writes a new file with `mode` from its creation on (O_EXCL: a link planted
 * at `path` is not followed). With `force`, what is at `path` is removed
 * first, so that the mode is this one and not the old file's.
 */
async function writeNew(path: string, text: string, mode: number, force: boolean): Promise<void> {
  if (force) {
    await Deno.remove(path).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
  try {
    await Deno.writeTextFile(path, text, { createNew: true, mode });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) await refuseExisting(path);
    throw error;
  }
}

/** `host:port`, with an IPv6 address in brackets. */
function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A path as one shell word: as it is when it is plain, else in single quotes. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/**
 * Checks the certificate's name: 1 to 64 characters, no control character.
 *
 * @throws {InvalidArgumentError} When it cannot be one.
 */
function commonName(value: string): string {
  // deno-lint-ignore no-control-regex
  if (value === "" || [...value].length > 64 || /[\x00-\x1f\x7f]/.test(value)) {
    throw new InvalidArgumentError(
      'A name is 1 to 64 characters with no control characters, e.g. "ci-bench".',
    );
  }
  return value;
}

/**
 * Checks a number of days: a whole number from 1 to 3650.
 *
 * @throws {InvalidArgumentError} When it is not one.
 */
function days(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_DAYS) {
    throw new InvalidArgumentError(`Give a whole number of days from 1 to ${MAX_DAYS}.`);
  }
  return n;
}
