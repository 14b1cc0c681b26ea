/**
 * Fuzzes vif's reading of the client CA's Secret (`ca.crt`, `ca.key`):
 * `loadCertificateAuthority` in `mod/kube/x509.ts` (which also reads the
 * subject out of the DER itself) and `reusableClientCa` in
 * `mod/kube/install.ts`. Inputs are `ca.crt \0 ca.key`, from real PEMs
 * changed as text, as DER, and as a TBSCertificate signed again by its own key.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import { reusableClientCa, usableClientCa } from "../../mod/kube/install.ts";
import {
  createCertificateAuthority,
  createClientCa,
  createManagerTls,
  issueClientCertificate,
  loadCertificateAuthority,
} from "../../mod/kube/x509.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import type { Mutator } from "./_mutators.ts";
import {
  derChildren,
  derMutator,
  joinParts,
  keyOf,
  resignMutator,
  splitParts,
  swapPartMutator,
} from "./_pem.ts";

const decoder = new TextDecoder();

/** The DER of a TBSCertificate field: 2 the issuer, 4 the subject (after the optional version). */
function nameOf(der: Uint8Array, index: number): Uint8Array | undefined {
  const [certificate] = derChildren(der, 0, der.length);
  if (!certificate) return undefined;
  const [tbs] = derChildren(der, certificate.start, certificate.end);
  if (!tbs) return undefined;
  const fields = derChildren(der, tbs.start, tbs.end);
  const field = fields[(fields[0]?.tag === 0xa0 ? 1 : 0) + index];
  return field && der.subarray(field.headerStart, field.end);
}

async function check(now: Date, input: Uint8Array): Promise<void> {
  const [cert, key] = splitParts(input, 2);
  const pair = { certPem: decoder.decode(cert), keyPem: decoder.decode(key) };
  let loaded: Awaited<ReturnType<typeof loadCertificateAuthority>> | undefined;
  let loadError: unknown;
  try {
    loaded = await loadCertificateAuthority(pair);
  } catch (error) {
    loadError = error;
    property(
      error instanceof SyntaxError || error instanceof TypeError,
      `loadCertificateAuthority() threw ${(error as Error)?.name}: ${
        (error as Error)?.message
      }, not SyntaxError or TypeError`,
    );
  }
  if (loaded) {
    property(!Number.isNaN(loaded.notAfter.getTime()), "a CA loaded with an invalid expiry");
    // It can sign, and what it signs names it as the issuer and verifies with its key.
    const issued = await issueClientCertificate(loaded, "fuzz", { now });
    const caCert = new X509Certificate(pair.certPem);
    const leaf = new X509Certificate(issued.certPem);
    property(leaf.verify(caCert.publicKey), "a certificate the loaded CA signed does not verify");
    const issuer = nameOf(new Uint8Array(leaf.raw), 2),
      subject = nameOf(new Uint8Array(caCert.raw), 4);
    property(
      issuer !== undefined && subject !== undefined && Buffer.compare(issuer, subject) === 0,
      "the issued certificate's issuer is not the CA's subject, byte for byte",
    );
  }
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  const data: Record<string, string> = {};
  if (cert!.length > 0) data["ca.crt"] = b64(cert!);
  if (key!.length > 0) data["ca.key"] = b64(key!);
  let verdict: Awaited<ReturnType<typeof usableClientCa>>;
  try {
    reusableClientCa({ data }, now);
    verdict = await usableClientCa({ data }, now);
  } catch (error) {
    property(
      false,
      `reusableClientCa() threw ${(error as Error)?.name}: ${(error as Error)?.message}`,
    );
  }
  if ("reason" in verdict) {
    property(verdict.reason !== "", "a refusal without a reason");
    return;
  }
  property(!Number.isNaN(verdict.notAfter.getTime()), "reusableClientCa() kept an invalid expiry");
  property(
    loaded !== undefined,
    `usableClientCa() kept a CA that loadCertificateAuthority() cannot load: ${
      (loadError as Error)?.message
    }`,
  );
}

fuzzTest(
  "client_ca",
  "loadCertificateAuthority() loads a CA that signs certificates naming it, or throws SyntaxError or TypeError; reusableClientCa() never throws and keeps only what loads",
  async () => {
    const now = new Date();
    const client = await createClientCa("vif-system");
    const other = await createCertificateAuthority("another CA");
    const made = await createManagerTls("vif-system");
    const leaf = await issueClientCertificate(client, "dev");
    const seeds = [
      joinParts([client.certPem, client.keyPem]),
      joinParts([other.certPem, other.keyPem]),
      joinParts([made.caPem, client.keyPem]),
      joinParts([leaf.certPem, leaf.keyPem]),
      joinParts([client.certPem + other.certPem, client.keyPem]),
    ];
    const mutators: Mutator[] = [
      derMutator(2),
      resignMutator(2, 0, (parts) => {
        const key = keyOf(parts[1]!);
        return key ? { key } : undefined;
      }),
      resignMutator(2, 0, (parts) => {
        const key = keyOf(parts[1]!);
        return key ? { key } : undefined;
      }),
      swapPartMutator(2),
    ];
    return {
      seeds,
      check: (input) => check(now, input),
      mutators,
      maxLength: 16384,
    };
  },
);
