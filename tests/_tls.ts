/**
 * Test certificates made with the `openssl` command: a CA, a server
 * certificate for `traffic-manager.<namespace>` signed by it (a directory
 * shaped like a mounted `kubernetes.io/tls` Secret: `tls.crt`, `tls.key`,
 * `ca.crt`), and a second, unrelated CA with its own server certificate for
 * "wrong CA" tests. For the manager's direct (mutual TLS) listener: a client
 * CA, written into the directory as `client-ca.crt` as `vif install --direct`
 * does, and a client certificate it signed; the unrelated CA signs a client
 * certificate too, which the manager must refuse.
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

/** A client certificate and its key, for a direct listener. */
export interface TestClientCertificate {
  /** Path of the certificate (PEM). */
  certPath: string;
  /** Path of the key (PEM). */
  keyPath: string;
  /** The certificate (PEM). */
  certPem: string;
  /** The key (PEM). */
  keyPem: string;
}

/** What {@linkcode makeTestTls} made. */
export interface TestTls extends TestCertificates {
  /** The client CA (PEM), also in the directory as `client-ca.crt`. */
  clientCaPem: string;
  /** A client certificate signed by {@linkcode TestTls.clientCaPem}. */
  client: TestClientCertificate;
  /** A client certificate signed by the unrelated CA: refused by the manager. */
  strangerClient: TestClientCertificate;
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
    const clients = `${root}/clients`;
    await Deno.mkdir(clients);
    await makeCa(clients, "vif test client CA", days);
    await Deno.copyFile(`${clients}/ca.crt`, `${main.dir}/client-ca.crt`);
    const client = await makeClient(clients, "client", "vif-test-client", days);
    const strangerClient = await makeClient(other.dir, "client", "a stranger", days);
    return {
      ...main,
      clientCaPem: await Deno.readTextFile(`${clients}/ca.crt`),
      client,
      strangerClient,
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
  await makeCa(dir, caName, days);
  await openssl([
    "req",
    ...EC,
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

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A self-signed CA: `ca.crt` and `ca.key` in `dir`. */
async function makeCa(dir: string, name: string, days: string): Promise<void> {
  await openssl([
    "req",
    "-x509",
    ...EC,
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.crt`,
    "-days",
    days,
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/** A client certificate (`<name>.crt`, `<name>.key`) signed by the CA in `dir`. */
async function makeClient(
  dir: string,
  name: string,
  commonName: string,
  days: string,
): Promise<TestClientCertificate> {
  const p = (file: string) => `${dir}/${file}`;
  await openssl([
    "req",
    ...EC,
    "-keyout",
    p(`${name}.key`),
    "-out",
    p(`${name}.csr`),
    "-subj",
    `/CN=${commonName}`,
  ]);
  await Deno.writeTextFile(
    p(`${name}.ext`),
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    p(`${name}.csr`),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p(`${name}.crt`),
    "-days",
    days,
    "-extfile",
    p(`${name}.ext`),
  ]);
  return {
    certPath: p(`${name}.crt`),
    keyPath: p(`${name}.key`),
    certPem: await Deno.readTextFile(p(`${name}.crt`)),
    keyPem: await Deno.readTextFile(p(`${name}.key`)),
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
