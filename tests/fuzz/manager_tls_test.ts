/**
 * Fuzzes the manager's reading of its TLS directory (`mod/rpc/tls.ts`:
 * `readTlsDir`, `checkTls`, `readClientCa`) with the files a mounted Secret
 * could hold: real PEMs from `mod/kube/x509.ts`, their text changed, the DER
 * inside them changed and wrapped again, and the certificate's TBS changed
 * and signed again by its CA (so that the checks after the signature run).
 *
 * An input is `tls.crt \0 tls.key \0 ca.crt`.
 *
 * @module
 */

import { ManagerSetupError } from "../../manager/errors.ts";
import { checkTls, readClientCa, readTlsDir } from "../../mod/rpc/tls.ts";
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

const NAME = "traffic-manager.vif-system";
/** What each error must name: the file or the check that failed. */
const NAMED =
  /tls\.crt|tls\.key|ca\.crt|expired|not signed|does not belong|TLS certificate|client CA/;

function fail(what: string, error: unknown): never {
  const e = error as Error;
  property(false, `${what} threw ${e?.name}: ${e?.message}, not a ManagerSetupError`);
}

async function check(dir: string, now: Date, input: Uint8Array): Promise<void> {
  const [cert, key, ca] = splitParts(input, 3);
  await Deno.writeFile(`${dir}/tls.crt`, cert!);
  await Deno.writeFile(`${dir}/tls.key`, key!);
  await Deno.writeFile(`${dir}/ca.crt`, ca!);
  const material = await readTlsDir(dir).catch((e) => fail("readTlsDir()", e));
  try {
    const checked = checkTls(material, NAME, now);
    property(!Number.isNaN(checked.validTo.getTime()), "checkTls() accepted an invalid expiry");
    property(
      checked.validTo.getTime() >= now.getTime(),
      "checkTls() accepted an expired certificate",
    );
    property(
      checked.dnsNames.every((n) => typeof n === "string") &&
        checked.warnings.every((w) => typeof w === "string" && w !== ""),
      "checkTls() returned names or warnings that are not text",
    );
  } catch (error) {
    if (error instanceof Error && error.name === "PropertyError") throw error;
    if (!(error instanceof ManagerSetupError)) {
      fail("checkTls()", error);
    }
    property(NAMED.test(error.message), `checkTls()'s error names no file: "${error.message}"`);
    property(error.hint !== "", "checkTls()'s error has no hint");
  }
  try {
    const pem = await readClientCa(`${dir}/ca.crt`);
    property(typeof pem === "string", "readClientCa() returned no text");
  } catch (error) {
    if (error instanceof Error && error.name === "PropertyError") throw error;
    if (!(error instanceof ManagerSetupError)) fail("readClientCa()", error);
    property(error.message.includes(`${dir}/ca.crt`), "readClientCa()'s error names no file");
  }
}

fuzzTest(
  "manager_tls",
  "readTlsDir(), checkTls() and readClientCa() accept good material or throw a ManagerSetupError that names the file or check, and never anything else",
  async () => {
    const now = new Date();
    const dir = await Deno.makeTempDir({ prefix: "vif-fuzz-tls-" });
    const ca = await createCertificateAuthority("vif traffic-manager CA (vif-system)", {
      organization: "vif",
    });
    const server = await issueServerCertificate(ca, { dnsNames: managerDnsNames("vif-system") });
    const other = await issueServerCertificate(ca, {
      dnsNames: ["other.example"],
      ipAddresses: ["198.18.0.1", "2001:db8::1"],
    });
    const old = new Date(now.getTime() - 20 * 365 * 86_400_000);
    const oldCa = await createCertificateAuthority("old CA", { now: old, validDays: 2 });
    const expired = await issueServerCertificate(oldCa, {
      dnsNames: [NAME],
      now: old,
      validDays: 1,
    });
    const made = await createManagerTls("vif-system");
    const seeds = [
      joinParts([server.certPem, server.keyPem, ca.certPem]),
      joinParts([made.certPem, made.keyPem, made.caPem]),
      joinParts([other.certPem, other.keyPem, ca.certPem]),
      joinParts([expired.certPem, expired.keyPem, oldCa.certPem]),
      joinParts([server.certPem, other.keyPem, ca.certPem]),
      joinParts([server.certPem + ca.certPem, server.keyPem, made.caPem]),
      joinParts(["", "", ""]),
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
      check: (input) => check(dir, now, input),
      mutators,
      maxLength: 16384,
      close: () => Deno.remove(dir, { recursive: true }),
    };
  },
);
