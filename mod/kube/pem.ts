/**
 * The PEM texts vif's certificates travel as (what a Secret stores), and the
 * armour around them (RFC 7468), with no X.509 library: the daemon, the
 * manager and the agent pass these texts on without making certificates, so
 * they import this module and never `x509.ts`, which loads `@peculiar/x509`.
 *
 * @example Wrap DER for a Secret
 * ```ts
 * import { pem } from "./pem.ts";
 *
 * const text = pem("CERTIFICATE", new Uint8Array([0x30, 0x00]));
 * if (text !== "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n") throw new Error(text);
 * ```
 *
 * @module
 */

/** A certificate and its private key, as PEM texts (what a Secret stores). */
export interface PemKeyPair {
  /** The certificate (PEM, `CERTIFICATE`). */
  certPem: string;
  /** Its private key (PEM, PKCS #8 `PRIVATE KEY`). */
  keyPem: string;
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

/**
 * Wraps DER in PEM armour: base64 in lines of 64 characters, and a newline
 * after the end line (RFC 7468 2), the form `openssl` and kubectl write.
 *
 * @param label The label, e.g. `CERTIFICATE`.
 * @param der The bytes.
 * @returns The PEM text, ending in a newline.
 *
 * @example
 * ```ts
 * import { pem } from "./pem.ts";
 *
 * const text = pem("TEST", new Uint8Array([1, 2, 3]));
 * if (text !== "-----BEGIN TEST-----\nAQID\n-----END TEST-----\n") throw new Error(text);
 * ```
 */
export function pem(label: string, der: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < der.length; i += 0x8000) {
    binary += String.fromCharCode(...der.subarray(i, i + 0x8000));
  }
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${
    lines.map((line) => `${line}\n`).join("")
  }-----END ${label}-----\n`;
}
