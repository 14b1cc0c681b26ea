/**
 * Certificates for the traffic-manager, made in-process with WebCrypto (ECDSA
 * P-256, SHA-256) and the DER encoder in `_asn1.ts`: no `openssl`, no npm
 * package. {@linkcode createManagerTls} makes what `vif install` puts in the
 * manager's TLS Secret: a fresh CA, and a server certificate signed by it for
 * `traffic-manager.<namespace>` (and its `.svc` and `.svc.<cluster domain>`
 * forms). The CA's private key is not kept: the Secret holds `ca.crt` only,
 * and a new pair is made when the certificate must change.
 *
 * Time is passed in (`now`), so validity is testable without a clock.
 *
 * @example Make the manager's TLS material
 * ```ts
 * import { createManagerTls } from "./x509.ts";
 *
 * const tls = await createManagerTls("vif-system");
 * if (!tls.certPem.startsWith("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM");
 * ```
 *
 * @module
 */

import {
  ascii,
  bitString,
  boolean,
  concat,
  explicit,
  implicitPrimitive,
  integer,
  namedBits,
  octetString,
  oid,
  sequence,
  set,
  unsignedInteger,
  utf8String,
  x509Time,
} from "./_asn1.ts";
import { createPrivateKey, X509Certificate } from "node:crypto";

/** Object identifiers used here (RFC 5280 4.2.1, RFC 5758 3.2, RFC 5480). */
const OID = {
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** KeyUsage bits (RFC 5280 4.2.1.3). */
const KeyUsage = {
  digitalSignature: 0,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

const ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGN: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const DAY_MS = 86_400_000;
/** How far back `notBefore` is set, so that a client whose clock is a little behind accepts it. */
const BACKDATE_MS = 5 * 60_000;

/** The default validity of the certificates {@linkcode createManagerTls} makes: ten years. */
export const DEFAULT_VALID_DAYS = 3650;

/** The default validity of a client certificate ({@linkcode issueClientCertificate}): one year. */
export const DEFAULT_CLIENT_VALID_DAYS = 365;

/** RFC 5280 appendix A: `ub-common-name INTEGER ::= 64`. */
const MAX_COMMON_NAME = 64;

/** A certificate and its private key, as PEM texts (what a Secret stores). */
export interface PemKeyPair {
  /** The certificate (PEM, `CERTIFICATE`). */
  certPem: string;
  /** Its private key (PEM, PKCS #8 `PRIVATE KEY`). */
  keyPem: string;
}

/** A certificate and its private key. */
export interface IssuedCertificate extends PemKeyPair {
  /** The certificate (DER). */
  certDer: Uint8Array;
  /** When it stops being valid. */
  notAfter: Date;
}

/** A certificate authority that can sign: {@linkcode issueServerCertificate} takes one. */
export interface CertificateAuthority extends IssuedCertificate {
  /** The CA's private key, for signing. */
  readonly privateKey: CryptoKey;
  /** The CA's subject name (DER), the issuer of what it signs. */
  readonly subject: Uint8Array;
  /** The CA's key identifier, the authority key identifier of what it signs. */
  readonly keyId: Uint8Array;
}

/** Validity options shared by the functions here. */
export interface ValidityOptions {
  /** The time the certificate is made at; `notBefore` is five minutes earlier. Default: now. */
  now?: Date;
  /** How many days it is valid from `now`. Default {@linkcode DEFAULT_VALID_DAYS}. */
  validDays?: number;
}

/** Options of {@linkcode createCertificateAuthority}. */
export interface CertificateAuthorityOptions extends ValidityOptions {
  /** The organization (O) of the subject; none when absent. */
  organization?: string;
}

/** Options of {@linkcode issueServerCertificate}. */
export interface ServerCertificateOptions extends ValidityOptions {
  /** The DNS names the certificate is for; the first is also its common name. */
  dnsNames: readonly string[];
  /** IP addresses (IPv4 dotted or IPv6) the certificate is for. */
  ipAddresses?: readonly string[];
  /** The subject's common name. Default: the first DNS name, else the first IP address. */
  commonName?: string;
}

/** The PEM texts of a `kubernetes.io/tls` Secret with its CA. */
export interface ManagerTls {
  /** The CA certificate that clients trust (`ca.crt`). */
  caPem: string;
  /** The manager's certificate (`tls.crt`). */
  certPem: string;
  /** The manager's private key (`tls.key`). */
  keyPem: string;
}

/** Options of {@linkcode createManagerTls}. */
export interface ManagerTlsOptions extends ValidityOptions {
  /** The cluster domain of the longest name. Default `cluster.local`. */
  clusterDomain?: string;
  /** More DNS names for the certificate. */
  extraDnsNames?: readonly string[];
  /** IP addresses for the certificate. */
  ipAddresses?: readonly string[];
}

/**
 * The DNS names a manager certificate carries: `traffic-manager.<ns>` (the
 * name clients check), `traffic-manager.<ns>.svc` and
 * `traffic-manager.<ns>.svc.<clusterDomain>`.
 *
 * @param namespace The manager's namespace.
 * @param clusterDomain The cluster domain. Default `cluster.local`.
 * @returns The names, the one clients check first.
 *
 * @example
 * ```ts
 * import { managerDnsNames } from "./x509.ts";
 *
 * const names = managerDnsNames("vif-system");
 * if (names[0] !== "traffic-manager.vif-system") throw new Error(names.join());
 * ```
 */
export function managerDnsNames(namespace: string, clusterDomain = "cluster.local"): string[] {
  const service = `traffic-manager.${namespace}`;
  return [service, `${service}.svc`, `${service}.svc.${clusterDomain.replace(/\.$/, "")}`];
}

/**
 * Makes the manager's TLS material: a new CA (`vif traffic-manager CA
 * (<namespace>)`) and a server certificate it signed for
 * {@linkcode managerDnsNames}. The CA's key is dropped.
 *
 * @param namespace The manager's namespace.
 * @param options Validity, cluster domain and extra names.
 * @returns The PEM texts for `ca.crt`, `tls.crt` and `tls.key`.
 *
 * @example
 * ```ts
 * import { createManagerTls } from "./x509.ts";
 *
 * const tls = await createManagerTls("vif-system", { now: new Date("2030-01-01T00:00:00Z") });
 * if (!tls.keyPem.startsWith("-----BEGIN PRIVATE KEY-----")) throw new Error("no key");
 * ```
 */
export async function createManagerTls(
  namespace: string,
  options: ManagerTlsOptions = {},
): Promise<ManagerTls> {
  const validity = {
    ...(options.now ? { now: options.now } : {}),
    ...(options.validDays ? { validDays: options.validDays } : {}),
  };
  const ca = await createCertificateAuthority(`vif traffic-manager CA (${namespace})`, {
    ...validity,
    organization: "vif",
  });
  const server = await issueServerCertificate(ca, {
    ...validity,
    dnsNames: [
      ...managerDnsNames(namespace, options.clusterDomain),
      ...(options.extraDnsNames ?? []),
    ],
    ...(options.ipAddresses ? { ipAddresses: options.ipAddresses } : {}),
  });
  return { caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem };
}

/**
 * Makes a self-signed CA certificate with a new P-256 key: basicConstraints
 * `CA:TRUE, pathlen:0` (critical), keyUsage `keyCertSign, cRLSign`
 * (critical), subject and authority key identifiers.
 *
 * @param commonName The CA's common name.
 * @param options Validity and organization.
 * @returns The CA, ready to sign.
 *
 * @example
 * ```ts
 * import { createCertificateAuthority } from "./x509.ts";
 *
 * const ca = await createCertificateAuthority("test CA");
 * if (ca.keyId.length !== 20) throw new Error("expected a SHA-1 key identifier");
 * ```
 */
export async function createCertificateAuthority(
  commonName: string,
  options: CertificateAuthorityOptions = {},
): Promise<CertificateAuthority> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const subject = distinguishedName(commonName, options.organization);
  const keyId = await keyIdentifier(keys.publicKey);
  const { notBefore, notAfter } = validity(options);
  const extensions = [
    extension(OID.basicConstraints, true, sequence(boolean(true), integer(0))),
    extension(OID.keyUsage, true, namedBits([KeyUsage.keyCertSign, KeyUsage.cRLSign])),
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
    extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, keyId))),
  ];
  const certDer = await signCertificate({
    issuer: subject,
    subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions,
  });
  return {
    certDer,
    certPem: pem("CERTIFICATE", certDer),
    keyPem: pem("PRIVATE KEY", await exportPkcs8(keys.privateKey)),
    notAfter,
    privateKey: keys.privateKey,
    subject,
    keyId,
  };
}

/**
 * Makes a TLS server certificate with a new P-256 key, signed by `ca`:
 * basicConstraints `CA:FALSE` (critical), keyUsage `digitalSignature`
 * (critical; RFC 5480 3 allows no encipherment bit on an EC key), extKeyUsage
 * `serverAuth` only, subjectAltName with the DNS names and IP addresses,
 * subject and authority key identifiers. It never outlives the CA.
 *
 * @param ca The CA that signs it.
 * @param options The names, and validity.
 * @returns The certificate and its key.
 * @throws {RangeError} When no name is given, or an IP address does not parse.
 *
 * @example
 * ```ts
 * import { createCertificateAuthority, issueServerCertificate } from "./x509.ts";
 *
 * const ca = await createCertificateAuthority("test CA");
 * const server = await issueServerCertificate(ca, { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
 * if (server.notAfter > ca.notAfter) throw new Error("outlives its CA");
 * ```
 */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  options: ServerCertificateOptions,
): Promise<IssuedCertificate> {
  const ipAddresses = options.ipAddresses ?? [];
  const commonName = options.commonName ?? options.dnsNames[0] ?? ipAddresses[0];
  if (commonName === undefined) {
    throw new RangeError("Cannot issue a server certificate: no DNS name or IP address given");
  }
  // RFC 5280 4.2.1.6: dNSName [2] IA5String, iPAddress [7] OCTET STRING.
  const names = [
    ...options.dnsNames.map((name) => implicitPrimitive(2, ascii(name))),
    ...ipAddresses.map((ip) => implicitPrimitive(7, ipBytes(ip))),
  ];
  return await issueLeaf(ca, {
    ...options,
    commonName,
    extKeyUsage: OID.serverAuth,
    extra: [extension(OID.subjectAltName, false, sequence(...names))],
  });
}

/**
 * Makes the CA of the direct listener's client certificates (`vif client CA
 * (<namespace>)`), with a new P-256 key. Unlike the manager's server CA, its
 * key is meant to be kept (in the Secret `traffic-manager-client-ca`), so that
 * an admin can issue client certificates later with
 * {@linkcode issueClientCertificate}. The manager trusts only its certificate.
 *
 * @param namespace The manager's namespace, for the CA's name.
 * @param options Validity.
 * @returns The CA, ready to sign.
 *
 * @example
 * ```ts
 * import { createClientCa, issueClientCertificate } from "./x509.ts";
 *
 * const ca = await createClientCa("vif-system");
 * const client = await issueClientCertificate(ca, "ci-bench");
 * if (client.notAfter > ca.notAfter) throw new Error("outlives its CA");
 * ```
 */
export async function createClientCa(
  namespace: string,
  options: ValidityOptions = {},
): Promise<CertificateAuthority> {
  return await createCertificateAuthority(`vif client CA (${namespace})`, {
    ...options,
    organization: "vif",
  });
}

/**
 * Makes a TLS client certificate for `commonName` with a new P-256 key,
 * signed by `ca`: basicConstraints `CA:FALSE` (critical), keyUsage
 * `digitalSignature` (critical), extKeyUsage `clientAuth` only (it cannot
 * serve), no subjectAltName, subject and authority key identifiers. It never
 * outlives the CA.
 *
 * @param ca The client CA that signs it.
 * @param commonName Who it is for (the subject's CN): 1 to 64 characters, no control characters.
 * @param options Validity. Default {@linkcode DEFAULT_CLIENT_VALID_DAYS} days.
 * @returns The certificate and its key.
 * @throws {RangeError} When `commonName` is empty, too long or holds a control character.
 *
 * @example
 * ```ts
 * import { createClientCa, issueClientCertificate } from "./x509.ts";
 *
 * const ca = await createClientCa("vif-system");
 * const client = await issueClientCertificate(ca, "dev", { validDays: 30 });
 * if (!client.keyPem.startsWith("-----BEGIN PRIVATE KEY-----")) throw new Error("no key");
 * ```
 */
export async function issueClientCertificate(
  ca: CertificateAuthority,
  commonName: string,
  options: ValidityOptions = {},
): Promise<IssuedCertificate> {
  // deno-lint-ignore no-control-regex
  if (commonName.length === 0 || /[\x00-\x1f\x7f]/.test(commonName)) {
    throw new RangeError(
      `Cannot issue a client certificate for "${commonName}": the name is empty or holds a control character`,
    );
  }
  if ([...commonName].length > MAX_COMMON_NAME) {
    throw new RangeError(
      `Cannot issue a client certificate for "${commonName}": the name is longer than ${MAX_COMMON_NAME} characters`,
    );
  }
  return await issueLeaf(ca, {
    ...options,
    validDays: options.validDays ?? DEFAULT_CLIENT_VALID_DAYS,
    commonName,
    extKeyUsage: OID.clientAuth,
    extra: [],
  });
}

/**
 * Reads a CA back from its PEM texts (the client CA's Secret), so that it can
 * sign again: the key must be a P-256 PKCS #8 key, the certificate a CA
 * certificate whose public key is the key's.
 *
 * @param pair The CA's certificate and private key.
 * @returns The CA, ready to sign.
 * @throws {SyntaxError} When the certificate or the key does not parse.
 * @throws {TypeError} When the certificate is not a CA's, or the key is not its key or not P-256.
 *
 * @example
 * ```ts
 * import { createClientCa, issueClientCertificate, loadCertificateAuthority } from "./x509.ts";
 *
 * const made = await createClientCa("vif-system");
 * const ca = await loadCertificateAuthority({ certPem: made.certPem, keyPem: made.keyPem });
 * await issueClientCertificate(ca, "dev");
 * ```
 */
export async function loadCertificateAuthority(pair: PemKeyPair): Promise<CertificateAuthority> {
  let cert: X509Certificate;
  let certDer: Uint8Array;
  let privateKey: CryptoKey;
  try {
    cert = new X509Certificate(pair.certPem);
    // The certificate alone: X509Certificate takes a block with bytes after it.
    certDer = firstDerValue(new Uint8Array(cert.raw));
  } catch (cause) {
    throw new SyntaxError("Cannot read the CA certificate: it is not a PEM certificate", { cause });
  }
  try {
    privateKey = await crypto.subtle.importKey(
      "pkcs8",
      fromPem(pair.keyPem, "PRIVATE KEY") as Uint8Array<ArrayBuffer>,
      ALGORITHM,
      false,
      ["sign"],
    );
  } catch (cause) {
    throw new SyntaxError("Cannot read the CA key: it is not a PKCS #8 P-256 private key", {
      cause,
    });
  }
  if (!cert.ca) throw new TypeError("Cannot sign with the certificate: it is not a CA's");
  let belongs: boolean;
  try {
    belongs = cert.checkPrivateKey(createPrivateKey(pair.keyPem));
  } catch (cause) {
    // WebCrypto read it, node:crypto may not (an encoding it does not support).
    throw new SyntaxError("Cannot read the CA key: it is not a PKCS #8 P-256 private key", {
      cause,
    });
  }
  if (!belongs) {
    throw new TypeError("Cannot sign with the CA: the key does not belong to the certificate");
  }
  const spki = new Uint8Array(cert.publicKey.export({ type: "spki", format: "der" }));
  const publicKey = await crypto.subtle.importKey(
    "spki",
    spki as Uint8Array<ArrayBuffer>,
    ALGORITHM,
    true,
    ["verify"],
  );
  return {
    certDer,
    certPem: pem("CERTIFICATE", certDer),
    keyPem: pair.keyPem,
    notAfter: new Date(cert.validTo),
    privateKey,
    subject: subjectOf(certDer),
    keyId: await keyIdentifier(publicKey),
  };
}

/**
 * Wraps DER in PEM armour: base64 in lines of 64 characters (RFC 7468).
 *
 * @param label The label, e.g. `CERTIFICATE`.
 * @param der The bytes.
 * @returns The PEM text, ending in a newline.
 *
 * @example
 * ```ts
 * import { pem } from "./x509.ts";
 *
 * const text = pem("TEST", new Uint8Array([1, 2, 3]));
 * if (text !== "-----BEGIN TEST-----\nAQID\n-----END TEST-----\n") throw new Error(text);
 * ```
 */
export function pem(label: string, der: Uint8Array): string {
  const base64 = toBase64(der);
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}${
    lines.length > 0 ? "\n" : ""
  }-----END ${label}-----\n`;
}

/**
 * Converts an ECDSA signature from the IEEE P1363 form WebCrypto returns
 * (`r || s`, each the size of the curve) to the DER form X.509 wants:
 * `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 5480 / RFC 3279 2.2.3).
 *
 * @param signature `r || s`.
 * @returns The DER SEQUENCE.
 * @throws {RangeError} When the length is odd.
 *
 * @example
 * ```ts
 * import { p1363ToDer } from "./x509.ts";
 *
 * const der = p1363ToDer(new Uint8Array([0x80, 0x01]));
 * // r = 0x80 needs a leading zero to stay positive.
 * if (der.join() !== [0x30, 7, 2, 2, 0, 0x80, 2, 1, 1].join()) throw new Error(der.join());
 * ```
 */
export function p1363ToDer(signature: Uint8Array): Uint8Array {
  if (signature.length === 0 || signature.length % 2 !== 0) {
    throw new RangeError(`Cannot convert ECDSA signature: odd length ${signature.length}`);
  }
  const half = signature.length / 2;
  return sequence(
    unsignedInteger(signature.subarray(0, half)),
    unsignedInteger(signature.subarray(half)),
  );
}

// --- the certificate ----------------------------------------------------------

interface CertificateFields {
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  publicKey: CryptoKey;
  signingKey: CryptoKey;
  extensions: Uint8Array[];
}

interface LeafOptions extends ValidityOptions {
  commonName: string;
  /** The one extended key usage: a leaf serves or is a client, never both. */
  extKeyUsage: string;
  /** More extensions (a subjectAltName). */
  extra: Uint8Array[];
}

/** Makes an end-entity certificate with a new P-256 key, signed by `ca`, never outliving it. */
async function issueLeaf(
  ca: CertificateAuthority,
  options: LeafOptions,
): Promise<IssuedCertificate> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const keyId = await keyIdentifier(keys.publicKey);
  const period = validity(options);
  const notAfter = period.notAfter > ca.notAfter ? ca.notAfter : period.notAfter;
  const extensions = [
    // CA:FALSE is the DEFAULT, which DER leaves out: an empty SEQUENCE.
    extension(OID.basicConstraints, true, sequence()),
    extension(OID.keyUsage, true, namedBits([KeyUsage.digitalSignature])),
    extension(OID.extKeyUsage, false, sequence(oid(options.extKeyUsage))),
    ...options.extra,
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
    extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, ca.keyId))),
  ];
  const certDer = await signCertificate({
    issuer: ca.subject,
    subject: distinguishedName(options.commonName),
    notBefore: period.notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions,
  });
  return {
    certDer,
    certPem: pem("CERTIFICATE", certDer),
    keyPem: pem("PRIVATE KEY", await exportPkcs8(keys.privateKey)),
    notAfter,
  };
}

/**
 * The subject Name of a DER certificate, encoded as it is there (RFC 5280
 * 4.1: `TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature,
 * issuer, validity, subject, … }`), to be the issuer of what it signs.
 *
 * @throws {SyntaxError} When the DER is not shaped like a certificate.
 */
function subjectOf(certDer: Uint8Array): Uint8Array {
  const certificate = derChildren(certDer, 0, certDer.length)[0];
  if (certificate === undefined) throw new SyntaxError("Cannot read the certificate: empty");
  const [tbs] = derChildren(certDer, certificate.start, certificate.end);
  if (tbs === undefined) throw new SyntaxError("Cannot read the certificate: no TBSCertificate");
  const fields = derChildren(certDer, tbs.start, tbs.end);
  const skip = fields[0]?.tag === 0xa0 ? 1 : 0; // The version is optional (v1).
  const subject = fields[skip + 4];
  if (subject === undefined || subject.tag !== 0x30) {
    throw new SyntaxError("Cannot read the certificate: no subject");
  }
  return certDer.slice(subject.headerStart, subject.end);
}

/**
 * The first DER value of `bytes`, header and contents, without what follows it.
 *
 * @throws {SyntaxError} When it is cut short.
 */
function firstDerValue(bytes: Uint8Array): Uint8Array {
  return bytes.slice(0, derValue(bytes, 0, bytes.length).end);
}

/**
 * The values one after another in `bytes[from, to)`: each one's tag, where
 * its header starts, and where its contents start and end.
 *
 * @throws {SyntaxError} When a length runs past `to` or uses the indefinite form.
 */
function derChildren(bytes: Uint8Array, from: number, to: number): DerValue[] {
  const out = [];
  for (let at = from; at < to;) {
    const value = derValue(bytes, at, to);
    out.push(value);
    at = value.end;
  }
  return out;
}

/** One DER value's tag, where its header starts, and where its contents start and end. */
interface DerValue {
  tag: number;
  headerStart: number;
  start: number;
  end: number;
}

/**
 * The value whose header starts at `at`, which must end by `to`. Definite
 * lengths only, as DER has.
 *
 * @throws {SyntaxError} When its length runs past `to` or uses the indefinite form.
 */
function derValue(bytes: Uint8Array, at: number, to: number): DerValue {
  const headerStart = at;
  const tag = bytes[at++]!;
  let length = bytes[at++];
  if (length === undefined) throw new SyntaxError("Cannot read DER: truncated header");
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4) throw new SyntaxError("Cannot read DER: bad length");
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + (bytes[at++] ?? NaN);
  }
  const end = at + length;
  if (!(end <= to)) throw new SyntaxError("Cannot read DER: a value runs past its parent");
  return { tag, headerStart, start: at, end };
}

/** The DER inside a PEM block with `label`. */
function fromPem(text: string, label: string): Uint8Array {
  const match = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`)
    .exec(text);
  if (!match) throw new SyntaxError(`Cannot read PEM: no ${label} block`);
  return Uint8Array.from(atob(match[1]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

/** Builds the TBSCertificate (RFC 5280 4.1) and signs it with ecdsa-with-SHA256. */
async function signCertificate(fields: CertificateFields): Promise<Uint8Array> {
  const algorithm = sequence(oid(OID.ecdsaWithSha256)); // Parameters absent: RFC 5758 3.2.
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", fields.publicKey));
  const tbs = sequence(
    explicit(0, integer(2)), // v3
    unsignedInteger(serialNumber()),
    algorithm,
    fields.issuer,
    sequence(x509Time(fields.notBefore), x509Time(fields.notAfter)),
    fields.subject,
    spki,
    explicit(3, sequence(...fields.extensions)),
  );
  const signature = new Uint8Array(
    await crypto.subtle.sign(SIGN, fields.signingKey, tbs as Uint8Array<ArrayBuffer>),
  );
  return sequence(tbs, algorithm, bitString(p1363ToDer(signature)));
}

/** A serial number: 16 random octets, positive and never zero (RFC 5280 4.1.2.2). */
function serialNumber(): Uint8Array {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x40; // Positive, and 16 octets long once encoded.
  return serial;
}

/** `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`. */
function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

/** A Name with a common name and, optionally, an organization (RFC 5280 4.1.2.4). */
function distinguishedName(commonName: string, organization?: string): Uint8Array {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  return organization === undefined
    ? sequence(rdn(OID.commonName, commonName))
    : sequence(rdn(OID.organization, organization), rdn(OID.commonName, commonName));
}

/** The key identifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
async function keyIdentifier(publicKey: CryptoKey): Promise<Uint8Array> {
  const raw = await crypto.subtle.exportKey("raw", publicKey);
  return new Uint8Array(await crypto.subtle.digest("SHA-1", raw));
}

function validity(options: ValidityOptions): { notBefore: Date; notAfter: Date } {
  const now = (options.now ?? new Date()).getTime();
  const days = options.validDays ?? DEFAULT_VALID_DAYS;
  if (!(days > 0)) throw new RangeError(`Cannot make a certificate valid for ${days} days`);
  // Whole seconds: that is all the encoding keeps.
  const second = (ms: number) => new Date(Math.floor(ms / 1000) * 1000);
  return { notBefore: second(now - BACKDATE_MS), notAfter: second(now + days * DAY_MS) };
}

async function exportPkcs8(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}

/**
 * The octets of an IPv4 or IPv6 address.
 *
 * @throws {RangeError} When it is neither.
 */
function ipBytes(ip: string): Uint8Array {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (v4) {
    const octets = v4.slice(1).map(Number);
    if (octets.every((n) => n <= 255)) return new Uint8Array(octets);
  } else if (ip.includes(":") && /^[0-9a-fA-F:]+$/.test(ip)) {
    const [head = "", tail, extra] = ip.split("::");
    const groups = (text: string | undefined) => text ? text.split(":") : [];
    const left = groups(head), right = groups(tail);
    const missing = 8 - left.length - right.length;
    const ok = extra === undefined && (tail === undefined ? missing === 0 : missing > 0);
    const all = [...left, ...new Array<string>(Math.max(missing, 0)).fill("0"), ...right];
    if (ok && all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) {
      return concat(...all.map((g) => {
        const n = parseInt(g, 16);
        return new Uint8Array([n >> 8, n & 0xff]);
      }));
    }
  }
  throw new RangeError(`Cannot put IP address "${ip}" in a certificate: not IPv4 or IPv6`);
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
