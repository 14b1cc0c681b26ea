/**
 * Fuzzes the client's handling of the manager's CA: what `readManagerCa`
 * (`mod/kube/discovery.ts`) accepts from the ConfigMap `traffic-manager-ca`
 * goes to `createManagerClient` (`mod/daemon/manager_client.ts`), whose
 * grpc-js credentials parse it only when they connect: so each input is
 * also used for one `Version` call to a small gRPC server on 127.0.0.1 that
 * serves with the real manager certificate.
 *
 * An input is the ConfigMap's `ca.crt` text, where `@CA@` stands for the
 * manager's CA and `@OTHER@` for another CA (made anew each run).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import grpc from "@grpc/grpc-js";
import { createManagerClient, unary } from "../../mod/daemon/manager_client.ts";
import type { KubeApi } from "../../mod/kube/api.ts";
import { DiscoveryError, readManagerCa } from "../../mod/kube/discovery.ts";
import { CA_CONFIGMAP_KEY } from "../../mod/kube/manifests.ts";
import { createManagerTls, type ManagerTls } from "../../mod/kube/x509.ts";
import { create, ManagerService, VersionInfoSchema } from "../../mod/rpc/service.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { type Mutator, pick } from "./_mutators.ts";
import { claimEscapes } from "./_guards.ts";
import { derChildren, derMutator, joinParts } from "./_pem.ts";

const NAMESPACE = "vif-system";
const decoder = new TextDecoder();

/** An API server that has only the ConfigMap, holding `text`. */
function api(text: string): KubeApi {
  return {
    server: "https://198.18.0.1:6443",
    get<T>(path: string): Promise<T> {
      if (path.endsWith("/configmaps/traffic-manager-ca")) {
        return Promise.resolve({ data: { [CA_CONFIGMAP_KEY]: text } } as T);
      }
      return Promise.reject(new Error(`not in the fuzz API: ${path}`));
    },
    post<T>(): Promise<T> {
      return Promise.reject(new Error("not in the fuzz API"));
    },
  };
}

/** The DER of every CERTIFICATE block in a text. */
function certificates(text: string): Buffer[] {
  const out: Buffer[] = [];
  for (
    const m of text.matchAll(
      /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----/g,
    )
  ) {
    out.push(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
  }
  return out;
}

/** What `@CA@` and `@OTHER@` in an input stand for, so that kept inputs replay with any run's CA. */
interface Placeholders {
  ca: string;
  other: string;
}

async function check(
  address: string,
  realCa: Buffer,
  names: Placeholders,
  input: Uint8Array,
): Promise<void> {
  const text = decoder.decode(input).replaceAll("@CA@", names.ca).replaceAll(
    "@OTHER@",
    names.other,
  );
  let caPem: string;
  try {
    caPem = await readManagerCa(api(text), NAMESPACE);
  } catch (error) {
    property(
      error instanceof DiscoveryError,
      `readManagerCa() threw ${(error as Error)?.name}: ${(error as Error)?.message}`,
    );
    return;
  }
  let client: ReturnType<typeof createManagerClient>;
  try {
    client = createManagerClient({ address, caPem, managerNamespace: NAMESPACE });
  } catch (error) {
    property(
      false,
      `createManagerClient() threw ${(error as Error)?.name}: ${(error as Error)?.message}`,
    );
  }
  try {
    await unary(client, "version", create(VersionInfoSchema, {}), 500);
    // Trusted: a block must carry the manager's CA as a trust anchor (its subject and key).
    const anchor = trustAnchor(realCa)!;
    property(
      certificates(caPem).some((der) => trustAnchor(der) === anchor),
      "a Version call succeeded with a CA text that holds no certificate with the CA's subject and key",
    );
  } catch (error) {
    if ((error as Error).name === "PropertyError") throw error;
    const code = (error as grpc.ServiceError).code;
    property(
      code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED,
      `the call failed with ${(error as Error)?.name} (code ${code}): ${(error as Error)?.message}`,
    );
  } finally {
    client.close();
  }
  // Errors thrown from the TLS socket's callbacks, not from the call.
  await new Promise((resolve) => setTimeout(resolve, 0));
  const escaped = claimEscapes();
  if (escaped.length > 0) {
    const first = escaped[0] as Error;
    property(
      false,
      `${escaped.length} error(s) escaped the client's TLS connection: ${first?.message}`,
    );
  }
}

/**
 * What a client trusts of a CA certificate: its subject and its public key
 * (the TBSCertificate's fields 5 and 6 after the optional version), as hex.
 */
function trustAnchor(der: Uint8Array): string | undefined {
  const [certificate] = derChildren(der, 0, der.length);
  if (!certificate) return undefined;
  const [tbs] = derChildren(der, certificate.start, certificate.end);
  if (!tbs) return undefined;
  const fields = derChildren(der, tbs.start, tbs.end);
  const at = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[at + 4], key = fields[at + 5];
  if (!subject || !key) return undefined;
  return Buffer.from(der.subarray(subject.headerStart, key.end)).toString("hex");
}

/** A small gRPC server with the manager's certificate, answering Version. */
async function startServer(tls: ManagerTls): Promise<{ address: string; close(): Promise<void> }> {
  const server = new grpc.Server();
  server.addService(ManagerService, {
    version(_call: unknown, callback: grpc.sendUnaryData<unknown>) {
      callback(null, create(VersionInfoSchema, { name: "fuzz", version: "0" }));
    },
  } as unknown as grpc.UntypedServiceImplementation);
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(tls.caPem),
    [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (e, p) => e ? reject(e) : resolve(p))
  );
  return {
    address: `127.0.0.1:${port}`,
    close: () => Promise.resolve(server.forceShutdown()),
  };
}

fuzzTest(
  "manager_ca",
  "readManagerCa() returns a CA text or throws DiscoveryError; createManagerClient() takes whatever it returned without throwing, and a call then succeeds only when the manager's CA is in it, else fails UNAVAILABLE",
  async () => {
    const tls = await createManagerTls(NAMESPACE);
    const other = await createManagerTls(NAMESPACE);
    const server = await startServer(tls);
    const realCa = Buffer.from(new X509Certificate(tls.caPem).raw);
    const seeds = [
      tls.caPem,
      other.caPem,
      other.caPem + tls.caPem,
      "@OTHER@@CA@",
      "@CA@\n@CA@",
      `# the manager's CA\n${tls.caPem}\n`,
      tls.certPem,
      "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
      "",
    ].map((t) => new TextEncoder().encode(t));
    const bundle: Mutator = (b, r, pool) =>
      joinParts([b, pick(r, pool)]).map((x) => x === 0 ? 10 : x);
    return {
      seeds,
      check: (input) => check(server.address, realCa, { ca: tls.caPem, other: other.caPem }, input),
      mutators: [derMutator(1), derMutator(1), bundle],
      maxLength: 8192,
      hangMs: 5000,
      close: () => server.close(),
    };
  },
  { sanitize: false },
);
