import grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createPrivateKey, sign, X509Certificate } from "node:crypto";
import tls from "node:tls";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import {
  CHANNEL_OPTIONS,
  create,
  managerServerName,
  ManagerService,
  type VersionInfo,
  VersionInfoSchema,
  VersionRequestSchema,
} from "../rpc/service.ts";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  createClientCa,
  createManagerTls,
  DEFAULT_CLIENT_VALID_DAYS,
  issueClientCertificate,
  issueServerCertificate,
  loadCertificateAuthority,
  managerDnsNames,
  type ManagerTls,
  pem,
} from "./x509.ts";

const NOW = new Date("2031-05-06T07:08:09.123Z");

async function hasOpenssl(): Promise<boolean> {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

const OPENSSL = await hasOpenssl();

/** Runs `openssl` with files written to a temporary directory. */
async function openssl(files: Record<string, string>, args: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "vif-x509-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    const output = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
    const decoder = new TextDecoder();
    return {
      ok: output.success,
      out: decoder.decode(output.stdout) + decoder.decode(output.stderr),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

let shared: Promise<ManagerTls> | undefined;
function managerTls(): Promise<ManagerTls> {
  shared ??= createManagerTls("vif-system", { now: new Date() });
  return shared;
}

Deno.test("managerDnsNames() lists the short, .svc and cluster-domain names", () => {
  assertEquals(managerDnsNames("vif-system"), [
    "traffic-manager.vif-system",
    "traffic-manager.vif-system.svc",
    "traffic-manager.vif-system.svc.cluster.local",
  ]);
  assertEquals(managerDnsNames("x", "corp.example.")[2], "traffic-manager.x.svc.corp.example");
  assertEquals(managerDnsNames("vif-system")[0], managerServerName("vif-system"));
});

Deno.test("createManagerTls() makes a CA and a certificate node:crypto reads and verifies", async () => {
  const tls = await createManagerTls("shop", { now: NOW, validDays: 30 });
  const ca = new X509Certificate(tls.caPem);
  const cert = new X509Certificate(tls.certPem);
  assert(ca.ca, "the CA is not a CA");
  assert(!cert.ca, "the server certificate is a CA");
  assert(cert.verify(ca.publicKey), "the CA did not sign the certificate");
  assert(cert.checkIssued(ca), "the issuer does not match the CA's subject");
  assertEquals(
    cert.subjectAltName,
    "DNS:traffic-manager.shop, DNS:traffic-manager.shop.svc, DNS:traffic-manager.shop.svc.cluster.local",
  );
  assertEquals(cert.subject, "CN=traffic-manager.shop");
  assertEquals(ca.subject, "O=vif\nCN=vif traffic-manager CA (shop)");
  assertEquals(new Date(cert.validFrom).toISOString(), "2031-05-06T07:03:09.000Z");
  assertEquals(new Date(cert.validTo).toISOString(), "2031-06-05T07:08:09.000Z");
  assertEquals(cert.checkHost("traffic-manager.shop"), "traffic-manager.shop");
  assertEquals(cert.checkHost("traffic-manager.other"), undefined);
  assertEquals(cert.serialNumber.length, 32); // 16 octets, hex.
  assert(cert.checkPrivateKey(createPrivateKey(tls.keyPem)), "the key does not match");
  assertEquals(tls.keyPem.split("\n")[0], "-----BEGIN PRIVATE KEY-----");
});

Deno.test("issueServerCertificate() never outlives its CA and carries IP addresses", async () => {
  const ca = await createCertificateAuthority("short CA", { now: NOW, validDays: 1 });
  const server = await issueServerCertificate(ca, {
    now: NOW,
    validDays: 365,
    dnsNames: [],
    ipAddresses: ["127.0.0.1", "::1", "2001:db8::1:0:0:1"],
  });
  assertEquals(server.notAfter, ca.notAfter);
  const cert = new X509Certificate(server.certPem);
  assertEquals(cert.subject, "CN=127.0.0.1");
  assertEquals(cert.checkIP("127.0.0.1"), "127.0.0.1");
  assertEquals(cert.checkIP("::1"), "::1");
  assertEquals(cert.checkIP("2001:db8::1:0:0:1"), "2001:db8::1:0:0:1");
  await assertRejects(
    () => issueServerCertificate(ca, { dnsNames: ["x"], ipAddresses: ["1.2.3"] }),
    RangeError,
    '"1.2.3"',
  );
  await assertRejects(() => issueServerCertificate(ca, { dnsNames: [] }), RangeError);
});

Deno.test("certificates after 2049 use GeneralizedTime and still parse", async () => {
  const now = new Date("2049-12-01T00:00:00Z");
  const tls = await createManagerTls("vif-system", { now });
  const cert = new X509Certificate(tls.certPem);
  assertEquals(new Date(cert.validTo).toISOString(), "2059-11-29T00:00:00.000Z");
  assert(cert.verify(new X509Certificate(tls.caPem).publicKey), "not verified");
  if (!OPENSSL) return;
  // RFC 5280 4.1.2.5.2: GeneralizedTime in whole seconds, which -x509_strict checks.
  const at = String(now.getTime() / 1000 + 86_400);
  const verify = await openssl(
    { "ca.pem": tls.caPem, "server.pem": tls.certPem },
    ["verify", "-x509_strict", "-attime", at, "-CAfile", "ca.pem", "server.pem"],
  );
  assert(verify.ok, verify.out);
  const text = await openssl({ "server.pem": tls.certPem }, ["asn1parse", "-in", "server.pem"]);
  assertMatch(text.out, /GENERALIZEDTIME\s+:20591129000000Z\n/);
});

Deno.test("issueServerCertificate() refuses addresses the library would misread and non-ASCII names", async () => {
  const ca = await createCertificateAuthority("strict CA");
  for (const ip of ["1g::1", "::ffff:198.18.0.1", "fe80::1%eth0", "01.2.3.4", "198.18.0.256"]) {
    await assertRejects(
      () => issueServerCertificate(ca, { dnsNames: ["x"], ipAddresses: [ip] }),
      RangeError,
      `"${ip}"`,
    );
  }
  await assertRejects(
    () => issueServerCertificate(ca, { dnsNames: ["bücher.example"] }),
    RangeError,
    "not ASCII",
  );
});

Deno.test("createCertificateAuthority() gives each certificate a random 16-octet serial number", async () => {
  const serials = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const ca = await createCertificateAuthority("serial CA");
    const serial = new X509Certificate(ca.certPem).serialNumber;
    assertEquals(serial.length, 32, serial);
    assert(
      Number.parseInt(serial.slice(0, 2), 16) >= 0x40,
      `not 16 octets once encoded: ${serial}`,
    );
    serials.add(serial);
  }
  assertEquals(serials.size, 8);
});

Deno.test({
  name: "createManagerTls() output passes openssl x509 -text, verify and -checkhost",
  ignore: !OPENSSL,
  async fn() {
    const tls = await managerTls();
    const files = { "ca.pem": tls.caPem, "server.pem": tls.certPem, "server.key": tls.keyPem };
    const text = await openssl(files, ["x509", "-noout", "-text", "-in", "server.pem"]);
    assert(text.ok, text.out);
    assertMatch(text.out, /Version: 3 \(0x2\)/);
    assertMatch(text.out, /Signature Algorithm: ecdsa-with-SHA256/);
    assertMatch(text.out, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    // RFC 5480 3: an EC key may not carry Key Encipherment.
    assertMatch(text.out, /X509v3 Key Usage: critical\s+Digital Signature\n/);
    // Server only: it cannot be shown as a client certificate.
    assertMatch(text.out, /X509v3 Extended Key Usage:\s+TLS Web Server Authentication\n/);
    assertMatch(text.out, /DNS:traffic-manager\.vif-system\.svc\.cluster\.local/);
    assertMatch(text.out, /X509v3 Authority Key Identifier/);
    const caText = await openssl(files, ["x509", "-noout", "-text", "-in", "ca.pem"]);
    assertMatch(caText.out, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    assertMatch(caText.out, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);

    const verify = await openssl(files, [
      "verify",
      "-x509_strict",
      "-purpose",
      "sslserver",
      "-CAfile",
      "ca.pem",
      "server.pem",
    ]);
    assert(verify.ok, verify.out);
    assertMatch(verify.out, /server\.pem: OK/);
    for (const name of managerDnsNames("vif-system")) {
      const host = await openssl(files, [
        "x509",
        "-noout",
        "-in",
        "server.pem",
        "-checkhost",
        name,
      ]);
      assertMatch(host.out, /does match certificate/);
    }
    const wrong = await openssl(files, [
      "x509",
      "-noout",
      "-in",
      "server.pem",
      "-checkhost",
      "traffic-manager.default",
    ]);
    assertMatch(wrong.out, /does NOT match certificate/);
    const key = await openssl(files, ["pkey", "-in", "server.key", "-noout", "-check"]);
    assert(key.ok, key.out);
  },
});

Deno.test({
  name: "openssl verify refuses a certificate from another CA",
  ignore: !OPENSSL,
  async fn() {
    const tls = await managerTls();
    const other = await createManagerTls("vif-system");
    const verify = await openssl(
      { "ca.pem": other.caPem, "server.pem": tls.certPem },
      ["verify", "-CAfile", "ca.pem", "server.pem"],
    );
    assert(!verify.ok, verify.out);
  },
});

Deno.test("Deno TLS: a client trusting the CA completes a handshake for traffic-manager.<ns>", async () => {
  const tls = await managerTls();
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: tls.certPem,
    key: tls.keyPem,
  });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const buffer = new Uint8Array(5);
      let n = 0;
      while (n < 5) n += (await conn.read(buffer.subarray(n))) ?? 5;
      await conn.write(buffer.map((b) => b + 1));
    } finally {
      conn.close();
    }
  })();
  try {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const conn = await Deno.startTls(tcp, {
      hostname: managerServerName("vif-system"),
      caCerts: [tls.caPem],
    });
    try {
      await conn.handshake();
      await conn.write(new Uint8Array([1, 2, 3, 4, 5]));
      const reply = new Uint8Array(5);
      let n = 0;
      while (n < 5) n += (await conn.read(reply.subarray(n))) ?? 5;
      assertEquals([...reply], [2, 3, 4, 5, 6]);
    } finally {
      conn.close();
    }
    await served;
  } finally {
    listener.close();
  }
});

Deno.test("Deno TLS: a client trusting another CA, or checking another name, is refused", async () => {
  const tls = await managerTls();
  const other = await createManagerTls("vif-system");
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: tls.certPem,
    key: tls.keyPem,
  });
  const accepting = (async () => {
    for (let i = 0; i < 2; i++) {
      const conn = await listener.accept();
      await conn.handshake().catch(() => {});
      conn.close();
    }
  })();
  try {
    for (
      const [name, ca] of [
        [managerServerName("vif-system"), other.caPem],
        [managerServerName("default"), tls.caPem],
      ] as const
    ) {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
      const conn = await Deno.startTls(tcp, { hostname: name, caCerts: [ca] });
      try {
        await assertRejects(() => conn.handshake());
      } finally {
        conn.close();
      }
    }
    await accepting;
  } finally {
    listener.close();
  }
});

Deno.test("grpc-js serves and calls with the certificates over TLS", async () => {
  const tls = await managerTls();
  const server = new grpc.Server();
  server.addService(ManagerService, {
    version(
      _call: unknown,
      callback: (error: grpc.ServiceError | null, value?: VersionInfo) => void,
    ) {
      callback(null, create(VersionInfoSchema, { version: "test" }));
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(tls.caPem),
    [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      credentials,
      (error, port) => error ? reject(error) : resolve(port),
    )
  );
  const Client = grpc.makeGenericClientConstructor(ManagerService, "Manager");
  const name = managerServerName("vif-system");
  const client = new Client(
    `127.0.0.1:${port}`,
    grpc.credentials.createSsl(Buffer.from(tls.caPem)),
    {
      ...CHANNEL_OPTIONS,
      "grpc.ssl_target_name_override": name,
      "grpc.default_authority": name,
    },
  ) as unknown as grpc.Client & {
    version(
      request: unknown,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: (error: grpc.ServiceError | null, value?: VersionInfo) => void,
    ): void;
  };
  try {
    const info = await new Promise<VersionInfo>((resolve, reject) =>
      client.version(
        create(VersionRequestSchema, {}),
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (error, value) => error ? reject(error) : resolve(value!),
      )
    );
    assertEquals(info.version, "test");
  } finally {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  }
});

Deno.test("the traffic-manager (vif --serve) serves with them from a Secret-shaped --tls-dir", async () => {
  const tls = await managerTls();
  const dir = await Deno.makeTempDir({ prefix: "vif-tls-dir-" });
  const { serve } = await import("../../manager/mod.ts");
  const lines: string[] = [];
  try {
    await Deno.writeTextFile(`${dir}/tls.crt`, tls.certPem);
    await Deno.writeTextFile(`${dir}/tls.key`, tls.keyPem);
    await Deno.writeTextFile(`${dir}/ca.crt`, tls.caPem);
    const manager = await serve({
      tlsDir: dir,
      listen: "127.0.0.1:0",
      managerNamespace: "vif-system",
      resolvConfPath: "/nonexistent/resolv.conf",
      sweepIntervalMs: 0,
      log: (line) => lines.push(line),
    });
    const Client = grpc.makeGenericClientConstructor(ManagerService, "Manager");
    const name = managerServerName("vif-system");
    const client = new Client(manager.address, grpc.credentials.createSsl(Buffer.from(tls.caPem)), {
      ...CHANNEL_OPTIONS,
      "grpc.ssl_target_name_override": name,
      "grpc.default_authority": name,
    }) as unknown as grpc.Client & {
      version(
        request: unknown,
        metadata: grpc.Metadata,
        options: grpc.CallOptions,
        callback: (error: grpc.ServiceError | null, value?: VersionInfo) => void,
      ): void;
    };
    try {
      const info = await new Promise<VersionInfo>((resolve, reject) =>
        client.version(
          create(VersionRequestSchema, {}),
          new grpc.Metadata(),
          { deadline: Date.now() + 5000 },
          (error, value) => error ? reject(error) : resolve(value!),
        )
      );
      assert(info.version !== "", "no version");
      assert(!lines.some((line) => /clients will refuse it/.test(line)), lines.join("\n"));
    } finally {
      client.close();
      await manager.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

let sharedClientCa: Promise<CertificateAuthority> | undefined;
function clientCa(): Promise<CertificateAuthority> {
  sharedClientCa ??= createClientCa("vif-system");
  return sharedClientCa;
}

Deno.test("issueClientCertificate() makes a client certificate node:crypto reads and verifies", async () => {
  const ca = await createClientCa("shop", { now: NOW });
  const client = await issueClientCertificate(ca, "dev@example.com", { now: NOW });
  const caCert = new X509Certificate(ca.certPem);
  const cert = new X509Certificate(client.certPem);
  assertEquals(caCert.subject, "O=vif\nCN=vif client CA (shop)");
  assert(caCert.ca, "the client CA is not a CA");
  assert(!cert.ca, "the client certificate is a CA");
  assert(cert.checkIssued(caCert) && cert.verify(caCert.publicKey), "not signed by the CA");
  assertEquals(cert.subject, "CN=dev@example.com");
  assertEquals(cert.subjectAltName, undefined);
  assertEquals(
    new Date(cert.validTo).getTime() - NOW.getTime(),
    DEFAULT_CLIENT_VALID_DAYS * 86_400_000 - 123, // Whole seconds.
  );
  assert(cert.checkPrivateKey(createPrivateKey(client.keyPem)), "the key does not match");
  const short = await createClientCa("shop", { now: NOW, validDays: 2 });
  assertEquals((await issueClientCertificate(short, "dev", { now: NOW })).notAfter, short.notAfter);
});

Deno.test("issueClientCertificate() refuses an empty, over-long or control-character name", async () => {
  const ca = await clientCa();
  for (const name of ["", "a".repeat(65), "dev\nadmin", "tab\there"]) {
    await assertRejects(() => issueClientCertificate(ca, name), RangeError);
  }
  await issueClientCertificate(ca, "é".repeat(64)); // 64 characters, more octets: fine.
});

Deno.test("issueClientCertificate() writes the common name as given, as a UTF8String", async () => {
  const ca = await clientCa();
  // What a DN string parser would take apart: commas, plus, equals, a leading #, a backslash.
  for (const name of ["#41", 'dev, O=admin+CN=x \\"q"', "é"]) {
    const client = await issueClientCertificate(ca, name);
    const utf8 = new TextEncoder().encode(name);
    const encoded = [0x0c, utf8.length, ...utf8];
    assert(
      Buffer.from(client.certDer).includes(Buffer.from(encoded)),
      `no UTF8String ${JSON.stringify(name)} in the certificate`,
    );
    assertEquals(new X509Certificate(client.certPem).subject.split("\n").length, 1);
  }
});

Deno.test("loadCertificateAuthority() reads a client CA back so that it signs again", async () => {
  const made = await clientCa();
  const ca = await loadCertificateAuthority({ certPem: made.certPem, keyPem: made.keyPem });
  assertEquals([...ca.subject], [...made.subject]);
  assertEquals([...ca.keyId], [...made.keyId]);
  assertEquals(ca.notAfter, made.notAfter);
  const client = await issueClientCertificate(ca, "later");
  const cert = new X509Certificate(client.certPem);
  assert(cert.checkIssued(new X509Certificate(made.certPem)), "the issuer does not match");
  assert(cert.verify(new X509Certificate(made.certPem).publicKey), "not signed by the CA");

  const other = await createClientCa("vif-system");
  await assertRejects(
    () => loadCertificateAuthority({ certPem: made.certPem, keyPem: other.keyPem }),
    TypeError,
    "the key does not belong to the certificate",
  );
  await assertRejects(
    () => loadCertificateAuthority({ certPem: client.certPem, keyPem: client.keyPem }),
    TypeError,
    "it is not a CA's",
  );
  await assertRejects(
    () => loadCertificateAuthority({ certPem: "junk", keyPem: made.keyPem }),
    SyntaxError,
  );
  await assertRejects(
    () => loadCertificateAuthority({ certPem: made.certPem, keyPem: "junk" }),
    SyntaxError,
  );
});

/** A DER value's header: its tag and its length, in the shortest form. */
function header(tag: number, length: number): number[] {
  if (length < 0x80) return [tag, length];
  return length < 0x100 ? [tag, 0x81, length] : [tag, 0x82, length >> 8, length & 0xff];
}

/** The values one after another in `der[from, to)`: where each starts, its header's size, and where it ends. */
function children(der: Uint8Array, from: number, to: number) {
  const out = [];
  for (let at = from; at < to;) {
    const first = der[at + 1]!;
    const octets = first & 0x80 ? first & 0x7f : 0;
    let length = octets ? 0 : first;
    for (let i = 0; i < octets; i++) length = length * 256 + der[at + 2 + i]!;
    const size = 2 + octets;
    out.push({ at, size, end: at + size + length });
    at += size + length;
  }
  return out;
}

/**
 * `ca`'s certificate with its subject's length in the long form where the
 * short one fits (BER, not DER), signed again by its own key.
 */
function withBerSubject(ca: CertificateAuthority): string {
  const der = ca.certDer;
  const [certificate] = children(der, 0, der.length);
  const [tbs, algorithm] = children(der, certificate!.size, certificate!.end);
  const fields = children(der, tbs!.at + tbs!.size, tbs!.end);
  const subject = fields[5]!; // version, serial, signature, issuer, validity, subject
  const length = subject.end - subject.at - subject.size;
  assert(subject.size === 2 && length < 0x80, "expected a short-form subject");
  const body = [
    ...der.subarray(tbs!.at + tbs!.size, subject.at),
    0x30,
    0x81,
    length,
    ...der.subarray(subject.at + 2, tbs!.end),
  ];
  const newTbs = new Uint8Array([...header(0x30, body.length), ...body]);
  const signature = sign("sha256", newTbs, {
    key: createPrivateKey(ca.keyPem),
    dsaEncoding: "der",
  });
  const rest = [
    ...newTbs,
    ...der.subarray(algorithm!.at, algorithm!.end),
    ...header(0x03, signature.length + 1),
    0,
    ...signature,
  ];
  return pem("CERTIFICATE", new Uint8Array([...header(0x30, rest.length), ...rest]));
}

Deno.test("loadCertificateAuthority() refuses a CA whose subject is not DER, which it could not name byte for byte", async () => {
  const made = await createClientCa("ber");
  const certPem = withBerSubject(made);
  const cert = new X509Certificate(certPem);
  assert(cert.verify(cert.publicKey), "node:crypto should read the BER subject and verify it");
  await assertRejects(
    () => loadCertificateAuthority({ certPem, keyPem: made.keyPem }),
    TypeError,
    "not in DER",
  );
});

Deno.test({
  name:
    "openssl verify: the client certificate is for sslclient only, the server's for sslserver only",
  ignore: !OPENSSL,
  async fn() {
    const server = await managerTls();
    const ca = await clientCa();
    const client = await issueClientCertificate(ca, "dev");
    const files = {
      "server-ca.pem": server.caPem,
      "server.pem": server.certPem,
      "client-ca.pem": ca.certPem,
      "client.pem": client.certPem,
    };
    const verify = (caFile: string, purpose: string, cert: string) =>
      openssl(files, ["verify", "-x509_strict", "-purpose", purpose, "-CAfile", caFile, cert]);
    const asClient = await verify("client-ca.pem", "sslclient", "client.pem");
    assert(asClient.ok, asClient.out);
    assertMatch(asClient.out, /client\.pem: OK/);
    const clientAsServer = await verify("client-ca.pem", "sslserver", "client.pem");
    assert(!clientAsServer.ok, clientAsServer.out);
    const asServer = await verify("server-ca.pem", "sslserver", "server.pem");
    assert(asServer.ok, asServer.out);
    const serverAsClient = await verify("server-ca.pem", "sslclient", "server.pem");
    assert(!serverAsClient.ok, serverAsClient.out);
    const otherCa = await verify("server-ca.pem", "sslclient", "client.pem");
    assert(!otherCa.ok, otherCa.out);
    const text = await openssl(files, ["x509", "-noout", "-text", "-in", "client.pem"]);
    assertMatch(text.out, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assertMatch(text.out, /X509v3 Key Usage: critical\s+Digital Signature\n/);
    assertMatch(text.out, /X509v3 Extended Key Usage:\s+TLS Web Client Authentication\n/);
    assert(!text.out.includes("Subject Alternative Name"), text.out);
  },
});

/**
 * What a client sees from a mutual-TLS server on 127.0.0.1 that trusts only
 * `clientCaPem` and answers "ok" to a client it accepted: the bytes it read
 * before the connection ended, and the error it got, if any.
 */
async function mutualTls(
  clientCaPem: string,
  clients: readonly ({ certPem: string; keyPem: string } | undefined)[],
): Promise<{ got: string; error?: string }[]> {
  const server = await managerTls();
  const listener = tls.createServer({
    key: server.keyPem,
    cert: server.certPem,
    ca: clientCaPem,
    requestCert: true,
    rejectUnauthorized: true,
  }, (socket) => socket.end("ok"));
  listener.on("tlsClientError", () => {}); // The refusals under test.
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const { port } = listener.address() as { port: number };
  try {
    const results = [];
    for (const identity of clients) {
      results.push(
        await new Promise<{ got: string; error?: string }>((resolve) => {
          const socket = tls.connect({
            host: "127.0.0.1",
            port,
            ca: server.caPem,
            servername: managerServerName("vif-system"),
            ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}),
          });
          let got = "";
          let error: string | undefined;
          socket.on("data", (chunk) => got += chunk);
          socket.on("error", (e) => error = e.message);
          socket.on("close", () => resolve({ got, ...(error ? { error } : {}) }));
        }),
      );
    }
    return results;
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
}

Deno.test("node:tls mutual TLS accepts the issued client certificate and refuses the rest", async () => {
  const ca = await clientCa();
  const client = await issueClientCertificate(ca, "dev");
  const stranger = await issueClientCertificate(await createClientCa("other"), "dev");
  const server = await managerTls(); // Its certificate is for serving only.
  const [accepted, none, foreign, serverCert] = await mutualTls(ca.certPem, [
    client,
    undefined,
    stranger,
    server,
  ]);
  assertEquals(accepted, { got: "ok" });
  assertEquals(none!.got, "");
  assertMatch(none!.error ?? "", /CertificateRequired|certificate/i);
  assertEquals(foreign!.got, "");
  assertEquals(serverCert!.got, "");
});
