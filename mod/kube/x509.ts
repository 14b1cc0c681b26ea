/**
 * Certificates for the traffic-manager and its direct listener, made
 * in-process with `@peculiar/x509` over WebCrypto (ECDSA P-256, SHA-256): no
 * `openssl`. {@linkcode createManagerTls} makes what `vif install` puts in the
 * manager's TLS Secret: a fresh CA, and a server certificate signed by it for
 * `traffic-manager.<namespace>` (and its `.svc` and `.svc.<cluster domain>`
 * forms). The CA's private key is not kept: the Secret holds `ca.crt` only,
 * and a new pair is made when the certificate must change.
 * {@linkcode createClientCa} and {@linkcode issueClientCertificate} make the
 * direct listener's client CA and the certificates an admin hands out.
 *
 * Only `vif install` and `vif client-cert` import this module (with
 * `import()`), so only they load the library; the PEM texts everyone else
 * passes on are typed in `pem.ts`, which loads nothing.
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

// tsyringe, which @peculiar/x509 uses inside, needs the Reflect metadata API
// before it loads.
import "reflect-metadata";
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonGeneralName,
  KeyUsageFlags,
  KeyUsagesExtension,
  Name,
  PemConverter,
  PublicKey,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from "@peculiar/x509";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { type ManagerTls, pem, type PemKeyPair } from "./pem.ts";

export { type ManagerTls, pem, type PemKeyPair } from "./pem.ts";

/** Object identifiers of the subject's attributes (RFC 5280 4.1.2.4). */
const OID = { commonName: "2.5.4.3", organization: "2.5.4.10" } as const;

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
  const keyId = await keyIdentifier(keys.publicKey);
  const { notBefore, notAfter } = validity(options);
  const subject = distinguishedName(commonName, options.organization);
  const certDer = await signCertificate({
    issuer: subject,
    subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      new BasicConstraintsExtension(true, 0, true),
      new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      new SubjectKeyIdentifierExtension(hex(keyId)),
      new AuthorityKeyIdentifierExtension(hex(keyId)),
    ],
  });
  return {
    certDer,
    certPem: pem("CERTIFICATE", certDer),
    keyPem: pem("PRIVATE KEY", await exportPkcs8(keys.privateKey)),
    notAfter,
    privateKey: keys.privateKey,
    subject: new Uint8Array(subject.toArrayBuffer()),
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
 * @throws {RangeError} When no name is given, a DNS name is not ASCII, or an IP address does not parse.
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
  const names: JsonGeneralName[] = [
    ...options.dnsNames.map((name) => ({ type: "dns" as const, value: dnsName(name) })),
    ...ipAddresses.map((ip) => ({ type: "ip" as const, value: ipAddress(ip) })),
  ];
  return await issueLeaf(ca, {
    ...options,
    commonName,
    extKeyUsage: ExtendedKeyUsage.serverAuth,
    extra: [new SubjectAlternativeNameExtension(names, false)],
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
    extKeyUsage: ExtendedKeyUsage.clientAuth,
    extra: [],
  });
}

/**
 * Reads a CA back from its PEM texts (the client CA's Secret), so that it can
 * sign again: the key must be a P-256 PKCS #8 key, the certificate a CA
 * certificate whose public key is the key's.
 *
 * The certificate is read with node:crypto, the parser that
 * `reusableClientCa` in `install.ts` keeps or replaces the Secret by, so that
 * the two agree on which CA is usable; on top of that, the CA's subject must
 * be a Name the library writes back byte for byte, for it is the issuer of
 * what the CA signs.
 *
 * @param pair The CA's certificate and private key.
 * @returns The CA, ready to sign.
 * @throws {SyntaxError} When the certificate or the key does not parse.
 * @throws {TypeError} When the certificate is not a CA's, the key is not its key or not P-256,
 *   or its subject is not a Name in DER.
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
  let subject: Uint8Array;
  let privateKey: CryptoKey;
  try {
    cert = new X509Certificate(pair.certPem);
    // The certificate alone: X509Certificate takes a block with bytes after it.
    certDer = firstDerValue(new Uint8Array(cert.raw));
    subject = subjectOf(certDer);
  } catch (cause) {
    throw new SyntaxError("Cannot read the CA certificate: it is not a PEM certificate", { cause });
  }
  let pkcs8: Uint8Array<ArrayBuffer>;
  try {
    const block = PemConverter.decodeWithHeaders(pair.keyPem).find((b) => b.type === "PRIVATE KEY");
    if (block === undefined) throw new SyntaxError("Cannot read PEM: no PRIVATE KEY block");
    pkcs8 = new Uint8Array(block.rawData);
    privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, ALGORITHM, false, ["sign"]);
  } catch (cause) {
    throw new SyntaxError("Cannot read the CA key: it is not a PKCS #8 P-256 private key", {
      cause,
    });
  }
  if (!cert.ca) throw new TypeError("Cannot sign with the certificate: it is not a CA's");
  let belongs: boolean;
  try {
    // The very key WebCrypto signs with, not the first block node:crypto would pick.
    belongs = cert.checkPrivateKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }));
  } catch (cause) {
    // WebCrypto read it, node:crypto may not (an encoding it does not support).
    throw new SyntaxError("Cannot read the CA key: it is not a PKCS #8 P-256 private key", {
      cause,
    });
  }
  if (!belongs) {
    throw new TypeError("Cannot sign with the CA: the key does not belong to the certificate");
  }
  if (!reencodes(subject)) {
    throw new TypeError("Cannot sign with the CA: its subject name is not in DER");
  }
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  return {
    certDer,
    certPem: pem("CERTIFICATE", certDer),
    keyPem: pair.keyPem,
    notAfter: new Date(cert.validTo),
    privateKey,
    subject,
    keyId: await keyIdentifier(new PublicKey(new Uint8Array(spki))),
  };
}

// --- the certificate ----------------------------------------------------------

interface CertificateFields {
  issuer: Name;
  subject: Name;
  notBefore: Date;
  notAfter: Date;
  publicKey: CryptoKey;
  signingKey: CryptoKey;
  extensions: Extension[];
}

interface LeafOptions extends ValidityOptions {
  commonName: string;
  /** The one extended key usage: a leaf serves or is a client, never both. */
  extKeyUsage: ExtendedKeyUsage;
  /** More extensions (a subjectAltName). */
  extra: Extension[];
}

/** Makes an end-entity certificate with a new P-256 key, signed by `ca`, never outliving it. */
async function issueLeaf(
  ca: CertificateAuthority,
  options: LeafOptions,
): Promise<IssuedCertificate> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const period = validity(options);
  const notAfter = period.notAfter > ca.notAfter ? ca.notAfter : period.notAfter;
  const certDer = await signCertificate({
    issuer: new Name(ca.subject.slice()),
    subject: distinguishedName(options.commonName),
    notBefore: period.notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new BasicConstraintsExtension(false, undefined, true),
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
      new ExtendedKeyUsageExtension([options.extKeyUsage], false),
      ...options.extra,
      new SubjectKeyIdentifierExtension(hex(await keyIdentifier(keys.publicKey))),
      new AuthorityKeyIdentifierExtension(hex(ca.keyId)),
    ],
  });
  return {
    certDer,
    certPem: pem("CERTIFICATE", certDer),
    keyPem: pem("PRIVATE KEY", await exportPkcs8(keys.privateKey)),
    notAfter,
  };
}

/** Builds the certificate (RFC 5280 4.1) and signs it with ecdsa-with-SHA256. */
async function signCertificate(fields: CertificateFields): Promise<Uint8Array> {
  const cert = await X509CertificateGenerator.create({
    serialNumber: hex(serialNumber()),
    signingAlgorithm: SIGN,
    ...fields,
  });
  return new Uint8Array(cert.rawData);
}

/**
 * A serial number: 16 random octets, positive and never zero (RFC 5280
 * 4.1.2.2). Made here rather than by the library, whose random serial loses
 * its leading zero octets: this one always encodes in 16 octets.
 */
function serialNumber(): Uint8Array {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  return serial;
}

/**
 * A Name with a common name and, optionally, an organization (RFC 5280
 * 4.1.2.4), as UTF8String. Given as attribute objects, never as a string, so
 * that the library parses nothing in the name (a `,`, `+`, `\` or leading `#`).
 */
function distinguishedName(commonName: string, organization?: string): Name {
  const rdn = (type: string, value: string) => ({ [type]: [{ utf8String: value }] });
  return new Name(
    organization === undefined
      ? [rdn(OID.commonName, commonName)]
      : [rdn(OID.organization, organization), rdn(OID.commonName, commonName)],
  );
}

/** The key identifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
async function keyIdentifier(publicKey: CryptoKey | PublicKey): Promise<Uint8Array> {
  const key = publicKey instanceof PublicKey ? publicKey : await PublicKey.create(publicKey);
  return new Uint8Array(await key.getKeyIdentifier("SHA-1"));
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
 * A DNS name as a dNSName holds it: IA5String (RFC 5280 4.2.1.6).
 *
 * @throws {RangeError} When it is not ASCII.
 */
function dnsName(name: string): string {
  // deno-lint-ignore no-control-regex
  if (!/^[\x00-\x7f]*$/.test(name)) {
    throw new RangeError(`Cannot put DNS name "${name}" in a certificate: not ASCII`);
  }
  return name;
}

/**
 * An IPv4 or IPv6 address as the library takes it for an iPAddress. Checked
 * here, because the library reads what it cannot parse as something else
 * (`1g::1` as `1::1`, `::ffff:1.2.3.4` as `::ffff:1`): plain IPv4 dotted
 * quads, and IPv6 in hexadecimal groups only.
 *
 * @throws {RangeError} When it is neither.
 */
function ipAddress(ip: string): string {
  const family = isIP(ip);
  if (family === 0 || (family === 6 && !/^[0-9a-fA-F:]+$/.test(ip))) {
    throw new RangeError(`Cannot put IP address "${ip}" in a certificate: not IPv4 or IPv6`);
  }
  return ip;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Whether the library writes `name` back as the same bytes. What a CA signs
 * names it as its issuer with the name parsed and encoded again, and a
 * verifier may compare names byte for byte: a name not in DER (a long-form
 * length where a short one fits, a string that is not valid UTF-8) would
 * come back changed.
 */
function reencodes(name: Uint8Array): boolean {
  let again: Uint8Array;
  try {
    again = new Uint8Array(new Name(name.slice()).toArrayBuffer());
  } catch {
    return false;
  }
  return again.length === name.length && again.every((byte, i) => byte === name[i]);
}

/**
 * The subject Name of a DER certificate, encoded as it is there (RFC 5280
 * 4.1: `TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature,
 * issuer, validity, subject, … }`). Neither node:crypto nor the library hands
 * back a name's bytes as written, and the issuer of what a CA signs must be
 * its subject byte for byte.
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
 * The values one after another in `bytes[from, to)`.
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
