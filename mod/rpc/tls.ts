/**
 * A serving role's TLS material (the manager's): read from a directory shaped like a mounted
 * `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, `ca.crt`), checked before
 * serving (the key matches the certificate, the CA signed it, it is valid
 * now), and turned into grpc-js server credentials.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { ServerCredentials } from "@grpc/grpc-js";
import { SetupError } from "./serve.ts";
import { certificateDnsNames } from "./service.ts";

/** The PEM texts the manager serves with. */
export interface TlsMaterial {
  /** The server certificate, optionally followed by intermediates (PEM). */
  certPem: string;
  /** The server's private key (PEM). */
  keyPem: string;
  /** The CA that signed the certificate (PEM): clients trust this one. */
  caPem: string;
}

/** What {@linkcode checkTls} found worth a warning, and the certificate's names. */
export interface TlsCheck {
  /** The certificate's DNS names. */
  dnsNames: string[];
  /** When it stops being valid. */
  validTo: Date;
  /** Warnings for the log (e.g. the expected name is missing). */
  warnings: string[];
}

const FILES = { certPem: "tls.crt", keyPem: "tls.key", caPem: "ca.crt" } as const;

/**
 * Reads `tls.crt`, `tls.key` and `ca.crt` from `dir`.
 *
 * @param dir The directory (a mounted Secret of type `kubernetes.io/tls` with `ca.crt`).
 * @returns The PEM texts.
 * @throws {SetupError} When a file is missing or unreadable.
 */
export async function readTlsDir(dir: string): Promise<TlsMaterial> {
  const material: Partial<TlsMaterial> = {};
  for (const [key, name] of Object.entries(FILES) as [keyof TlsMaterial, string][]) {
    const path = `${dir.replace(/\/$/, "")}/${name}`;
    try {
      material[key] = await Deno.readTextFile(path);
    } catch (cause) {
      const what = cause instanceof Deno.errors.NotFound ? "does not exist" : "cannot be read";
      throw new SetupError(`TLS file "${path}" ${what}`, {
        hint: `Point --tls-dir at a directory holding tls.crt, tls.key and ca.crt ` +
          `(a mounted kubernetes.io/tls Secret with its CA).`,
        cause,
      });
    }
  }
  return material as TlsMaterial;
}

/**
 * Checks that the key matches the certificate, that the CA signed it and that
 * it is valid at `now`; warns when it does not name `serverName`.
 *
 * @param material The PEM texts.
 * @param serverName The name clients check: `traffic-manager.<namespace>`.
 * @param now The time to check validity at. Default: now.
 * @returns The names, the expiry and any warnings.
 * @throws {SetupError} When a PEM does not parse, the key does not match, the CA did not sign it or it has expired.
 */
export function checkTls(material: TlsMaterial, serverName: string, now = new Date()): TlsCheck {
  const hint = "Make the certificate again for that name, signed by the CA in ca.crt.";
  // X509Certificate parses lazily: a field it cannot read throws when read,
  // so every part of a certificate is read here, inside the check that names it.
  let cert: X509Certificate;
  let subject: string;
  let validTo: Date;
  let altNames: string;
  try {
    cert = new X509Certificate(material.certPem);
    subject = String(cert.subject ?? "").replaceAll("\n", ", ");
    validTo = new Date(cert.validTo);
    altNames = cert.subjectAltName ?? "";
  } catch (cause) {
    throw new SetupError("The TLS certificate (tls.crt) is not a PEM certificate", {
      hint,
      cause,
    });
  }
  let caKey: KeyObject;
  try {
    caKey = new X509Certificate(material.caPem).publicKey;
  } catch (cause) {
    throw new SetupError("The CA certificate (ca.crt) is not a PEM certificate", {
      hint,
      cause,
    });
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(material.keyPem));
  } catch (cause) {
    throw new SetupError("The TLS key (tls.key) is not a PEM private key", { hint, cause });
  }
  if (!matches) {
    throw new SetupError("The TLS key (tls.key) does not belong to the certificate", {
      hint: "Mount the key and certificate of one pair.",
    });
  }
  let signed: boolean;
  try {
    signed = cert.verify(caKey);
  } catch {
    signed = false; // A key the signature cannot be checked with did not sign it.
  }
  if (!signed) {
    throw new SetupError(
      `The TLS certificate "${subject}" is not signed by the CA in ca.crt`,
      { hint: "Clients trust only ca.crt: sign the certificate with that CA." },
    );
  }
  if (Number.isNaN(validTo.getTime())) {
    throw new SetupError("The TLS certificate (tls.crt) has no readable expiry", { hint });
  }
  if (validTo.getTime() < now.getTime()) {
    throw new SetupError(`The TLS certificate expired on ${validTo.toISOString()}`, {
      hint,
    });
  }
  const dnsNames = certificateDnsNames(altNames);
  const warnings: string[] = [];
  if (!dnsNames.includes(serverName.toLowerCase())) {
    warnings.push(
      `the TLS certificate names ${
        dnsNames.length === 0 ? "no DNS name" : dnsNames.map((n) => `"${n}"`).join(", ")
      }, not "${serverName}": clients will refuse it`,
    );
  }
  return { dnsNames, validTo, warnings };
}

/**
 * Reads and checks the client CA of the direct listener: the CA whose
 * certificates the manager accepts from clients that dial it directly.
 *
 * @param path The PEM file (`client-ca.crt` in the TLS directory by default).
 * @returns The PEM text.
 * @throws {SetupError} When the file is missing, unreadable, or not a CA certificate.
 */
export async function readClientCa(path: string): Promise<string> {
  let pem: string;
  try {
    pem = await Deno.readTextFile(path);
  } catch (cause) {
    const what = cause instanceof Deno.errors.NotFound ? "does not exist" : "cannot be read";
    throw new SetupError(`The client CA "${path}" ${what}`, {
      hint: "The direct listener needs the CA of its clients' certificates: " +
        "`vif install --direct` puts it in the TLS Secret as client-ca.crt, or pass --client-ca FILE.",
      cause,
    });
  }
  let ca: X509Certificate;
  try {
    ca = new X509Certificate(pem);
  } catch (cause) {
    throw new SetupError(`The client CA "${path}" is not a PEM certificate`, {
      hint: "Pass --client-ca a PEM file holding the CA certificate of the clients.",
      cause,
    });
  }
  if (!ca.ca) {
    throw new SetupError(`The client CA "${path}" is not a CA certificate`, {
      hint: "Pass the CA that signs the clients' certificates, not a client certificate.",
    });
  }
  return pem;
}

/**
 * Makes the credentials of the direct listener: the manager's certificate,
 * and mutual TLS: a client must show a certificate signed by `clientCaPem`,
 * else the handshake fails and it gets nothing but the TLS alert.
 *
 * @param material The manager's PEM texts.
 * @param clientCaPem The CA of the clients' certificates.
 * @returns The credentials for `Server.bindAsync`.
 */
export function directCredentials(material: TlsMaterial, clientCaPem: string): ServerCredentials {
  return ServerCredentials.createSsl(
    Buffer.from(clientCaPem),
    [{ private_key: Buffer.from(material.keyPem), cert_chain: Buffer.from(material.certPem) }],
    true,
  );
}

/**
 * Makes grpc-js server credentials. The CA goes in as the first argument on
 * purpose: with `null`, grpc-js loads the default root bundle as `ca`, and
 * Deno's `node:tls` then sends that whole bundle in the certificate chain,
 * which clients reject ("HandshakePayloadTooLarge", DESIGN.md §4). Client
 * certificates are not asked for.
 *
 * @param material The PEM texts.
 * @returns The credentials for `Server.bindAsync`.
 */
export function serverCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(
    Buffer.from(material.caPem),
    [{ private_key: Buffer.from(material.keyPem), cert_chain: Buffer.from(material.certPem) }],
    false,
  );
}
