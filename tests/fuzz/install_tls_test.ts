/**
 * Fuzzes the checks `vif install` makes on the TLS Secret it finds
 * (`reusableTls` in `mod/kube/install.ts`): whether the old certificate can
 * keep serving. Inputs are the Secret's three values before base64:
 * `tls.crt \0 tls.key \0 ca.crt`, from real PEMs changed as text, as DER, and
 * as a TBSCertificate signed again by its CA. What install keeps must also
 * pass the manager's own check (`checkTls`) without a warning.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import { checkTls } from "../../mod/rpc/tls.ts";
import { reusableTls } from "../../mod/kube/install.ts";
import {
  createCertificateAuthority,
  createManagerTls,
  issueServerCertificate,
  managerDnsNames,
} from "../../mod/kube/x509.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import type { Mutator } from "./_mutators.ts";
import {
  derMutator,
  joinParts,
  keyOf,
  resignMutator,
  splitParts,
  swapPartMutator,
} from "./_pem.ts";

const NAMESPACE = "vif-system";

function check(now: Date, input: Uint8Array): void {
  const [cert, key, ca] = splitParts(input, 3);
  const data: Record<string, string> = {};
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  if (cert!.length > 0) data["tls.crt"] = b64(cert!);
  if (key!.length > 0) data["tls.key"] = b64(key!);
  if (ca!.length > 0) data["ca.crt"] = b64(ca!);
  let verdict: ReturnType<typeof reusableTls>;
  try {
    verdict = reusableTls({ data }, NAMESPACE, now);
  } catch (error) {
    property(false, `reusableTls() threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
  }
  if ("reason" in verdict) {
    property(
      typeof verdict.reason === "string" && verdict.reason !== "",
      "a refusal without a reason",
    );
    return;
  }
  property(
    !Number.isNaN(verdict.notAfter.getTime()),
    "reusableTls() kept a certificate with an invalid expiry",
  );
  property(verdict.notAfter.getTime() > now.getTime(), "reusableTls() kept an expired certificate");
  // What install keeps, the manager must accept: no error, and no warning that clients will refuse it.
  let warnings: string[];
  try {
    warnings = checkTls(verdict.tls, `traffic-manager.${NAMESPACE}`, now).warnings;
  } catch (error) {
    property(
      false,
      `reusableTls() kept material the manager refuses: ${(error as Error)?.message}`,
    );
  }
  if (warnings.length === 0) return;
  const x509 = new X509Certificate(verdict.tls.certPem);
  const names = (x509.subjectAltName ?? "").split(/,\s*/).filter((n) => n.startsWith("DNS:"));
  property(
    false,
    `reusableTls() kept a certificate the manager warns about (DNS names: ${
      names.join(", ") || "none"
    }): ${warnings.join("; ")}`,
  );
}

fuzzTest(
  "install_tls",
  "reusableTls() never throws, keeps only material with a valid future expiry, and what it keeps passes the manager's checkTls() without a warning",
  async () => {
    const now = new Date();
    const ca = await createCertificateAuthority("vif traffic-manager CA (vif-system)", {
      organization: "vif",
    });
    const server = await issueServerCertificate(ca, { dnsNames: managerDnsNames(NAMESPACE) });
    const wildcard = await issueServerCertificate(ca, { dnsNames: ["*.vif-system"] });
    const soon = await issueServerCertificate(ca, {
      dnsNames: managerDnsNames(NAMESPACE),
      validDays: 10,
    });
    const made = await createManagerTls(NAMESPACE);
    const seeds = [
      joinParts([server.certPem, server.keyPem, ca.certPem]),
      joinParts([made.certPem, made.keyPem, made.caPem]),
      joinParts([wildcard.certPem, wildcard.keyPem, ca.certPem]),
      joinParts([soon.certPem, soon.keyPem, ca.certPem]),
      joinParts([server.certPem, made.keyPem, made.caPem]),
      joinParts(["", server.keyPem, ca.certPem]),
    ];
    const caKey = keyOf(ca.keyPem)!;
    const mutators: Mutator[] = [
      derMutator(3),
      resignMutator(3, 0, () => ({ key: caKey, setPart: [2, ca.certPem] })),
      resignMutator(3, 0, () => ({ key: caKey, setPart: [2, ca.certPem] })),
      swapPartMutator(3),
    ];
    return {
      seeds,
      check: (input) => check(now, input),
      mutators,
      maxLength: 16384,
    };
  },
);
