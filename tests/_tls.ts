/**
 * Test certificates made with the `openssl` command: a CA, a server
 * certificate for `traffic-manager.<namespace>` signed by it (a directory
 * shaped like a mounted `kubernetes.io/tls` Secret: `tls.crt`, `tls.key`,
 * `ca.crt`), and a second, unrelated CA with its own server certificate for
 * "wrong CA" tests.
 *
 * Keys are ECDSA P-256: quick to make, and accepted by Deno's TLS (rustls).
 *
 * @example Make the files, use them, remove them
 * ```ts ignore
 * import { makeTestTls } from "./_tls.ts";
 *
 * const tls = await makeTestTls({ namespace: "vif-system" });
 * try {
 *   console.log(tls.dir, tls.serverName); // ".../vif-tls-…", "traffic-manager.vif-system"
 * } finally {
 *   await tls.cleanup();
 * }
 * ```
 *
 * @module
 */

/** Options of {@linkcode makeTestTls}. */
export interface TestTlsOptions {
  /** The manager's namespace; the certificate names `traffic-manager.<namespace>`. Default `vif-system`. */
  namespace?: string;
  /** More subject alternative names for the server certificate, as `DNS:x` or `IP:198.18.0.1`. */
  extraSans?: string[];
  /** How long the certificates are valid, in days. Default 30. */
  days?: number;
}

/** One CA and a server certificate it signed. */
export interface TestCertificates {
  /** The directory holding `tls.crt`, `tls.key` and `ca.crt` (and the CA's key, `ca.key`). */
  dir: string;
  /** Path of the CA certificate (PEM). */
  caCertPath: string;
  /** Path of the server certificate (PEM). */
  certPath: string;
  /** Path of the server key (PEM, PKCS #8). */
  keyPath: string;
  /** The CA certificate (PEM). */
  caPem: string;
  /** The server certificate (PEM). */
  certPem: string;
  /** The server key (PEM). */
  keyPem: string;
}

/** What {@linkcode makeTestTls} made. */
export interface TestTls extends TestCertificates {
  /** The name the server certificate carries: `traffic-manager.<namespace>`. */
  serverName: string;
  /** The namespace it was made for. */
  namespace: string;
  /**
   * An unrelated CA and a server certificate for the same name signed by it,
   * in a directory of their own: a client trusting only {@linkcode TestTls.caPem}
   * must refuse this server, and the reverse.
   */
  other: TestCertificates;
  /** Removes every file made. */
  cleanup(): Promise<void>;
}

/**
 * Makes a CA and a server certificate for `traffic-manager.<namespace>`, plus an
 * unrelated second CA, in a new temporary directory.
 *
 * @param options The namespace, extra names and validity.
 * @returns The paths, the PEM texts and a cleanup function.
 * @throws {Error} When `openssl` is missing or fails.
 */
export async function makeTestTls(options: TestTlsOptions = {}): Promise<TestTls> {
  const namespace = options.namespace ?? "vif-system";
  const serverName = `traffic-manager.${namespace}`;
  const days = String(options.days ?? 30);
  const sans = [
    `DNS:${serverName}`,
    `DNS:${serverName}.svc`,
    ...(options.extraSans ?? []),
  ];
  const root = await Deno.makeTempDir({ prefix: "vif-tls-" });
  try {
    const main = await makeCaAndServer(`${root}/main`, "vif test CA", serverName, sans, days);
    const other = await makeCaAndServer(`${root}/other`, "unrelated CA", serverName, sans, days);
    return {
      ...main,
      serverName,
      namespace,
      other,
      cleanup: () => Deno.remove(root, { recursive: true }).catch(() => {}),
    };
  } catch (error) {
    await Deno.remove(root, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function makeCaAndServer(
  dir: string,
  caName: string,
  serverName: string,
  sans: string[],
  days: string,
): Promise<TestCertificates> {
  await Deno.mkdir(dir, { recursive: true });
  const p = (name: string) => `${dir}/${name}`;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
    "-days",
    days,
    "-subj",
    `/CN=${caName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await openssl([
    "req",
    ...ec,
    "-keyout",
    p("tls.key"),
    "-out",
    p("tls.csr"),
    "-subj",
    `/CN=${serverName}`,
  ]);
  await Deno.writeTextFile(
    p("server.ext"),
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      `subjectAltName=${sans.join(",")}`,
    ].join("\n") + "\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    p("tls.csr"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p("tls.crt"),
    "-days",
    days,
    "-extfile",
    p("server.ext"),
  ]);
  return {
    dir,
    caCertPath: p("ca.crt"),
    certPath: p("tls.crt"),
    keyPath: p("tls.key"),
    caPem: await Deno.readTextFile(p("ca.crt")),
    certPem: await Deno.readTextFile(p("tls.crt")),
    keyPem: await Deno.readTextFile(p("tls.key")),
  };
}

async function openssl(args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", { args, stdin: "null" }).output();
  } catch (cause) {
    throw new Error(`Cannot run "openssl": is it installed?`, { cause });
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`Command "openssl ${args[0]}" failed: ${stderr}`);
  }
}
