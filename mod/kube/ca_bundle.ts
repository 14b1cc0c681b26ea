/**
 * A CA bundle from a peer (the ConfigMap `traffic-manager-ca`, a
 * `--manager-ca` file): every CERTIFICATE block must be a certificate, and
 * only those blocks are kept. TLS stacks handle a bundle with a block they
 * cannot read in their own ways (rustls skips it, Deno's `node:tls` then
 * throws inside the handshake's callback, where no caller can catch it), so
 * such a bundle is refused here, with which block is wrong.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";

/** The most certificates a bundle may hold. */
export const MAX_BUNDLE_CERTIFICATES = 16;

const BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----/g;

/**
 * Reads a CA bundle: the certificates it holds, each re-armoured, nothing else.
 *
 * @param text The PEM text.
 * @returns The certificates as PEM, one block each, ending in a newline.
 * @throws {SyntaxError} When it holds no certificate, more than
 *   {@linkcode MAX_BUNDLE_CERTIFICATES}, or a block that is not one (which it names).
 *
 * @example
 * ```ts ignore
 * import { readCaBundle } from "./ca_bundle.ts";
 *
 * const pem = readCaBundle(await Deno.readTextFile("ca.crt"));
 * ```
 */
export function readCaBundle(text: string): string {
  const blocks = [...text.matchAll(BLOCK)];
  if (blocks.length === 0) throw new SyntaxError("it holds no PEM certificate");
  if (blocks.length > MAX_BUNDLE_CERTIFICATES) {
    throw new SyntaxError(
      `it holds ${blocks.length} certificates, more than ${MAX_BUNDLE_CERTIFICATES}`,
    );
  }
  return blocks.map((block, i) => {
    const der = decodeBase64(block[1]!.replace(/\s+/g, ""));
    try {
      const cert = new X509Certificate(der);
      // Parsed lazily: read what a TLS stack reads.
      void cert.publicKey;
      void cert.subject;
      void cert.validTo;
      return armour(new Uint8Array(cert.raw));
    } catch (cause) {
      throw new SyntaxError(`its certificate ${i + 1} of ${blocks.length} does not parse`, {
        cause,
      });
    }
  }).join("");
}

function decodeBase64(text: string): Uint8Array {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return new Uint8Array(0);
  }
}

function armour(der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}
