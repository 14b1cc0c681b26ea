/**
 * Kubeconfig text for tests: one cluster, one user with a bearer token and
 * one context, all under one name.
 *
 * @module
 */

/** Options of {@linkcode kubeconfigYaml}. */
export interface KubeconfigYamlOptions {
  /** The bearer token. */
  token: string;
  /** The CA to trust (PEM); the system's when absent. */
  caPem?: string;
  /** The name of the cluster, the user and the context. Default `sim`. */
  name?: string;
  /** Whether the context is the current one. Default true. */
  current?: boolean;
}

/**
 * A kubeconfig with one cluster, one user and one context of the same name.
 *
 * @param server the API server's URL
 * @param options the token, the CA, the name
 * @returns the YAML text
 * @example
 * ```ts
 * import { kubeconfigYaml } from "./_kubeconfig.ts";
 *
 * const text = kubeconfigYaml("https://127.0.0.1:6443", { token: "t" });
 * if (!text.includes("current-context: sim\n")) throw new Error(text);
 * ```
 */
export function kubeconfigYaml(server: string, options: KubeconfigYamlOptions): string {
  const name = options.name ?? "sim";
  const ca = options.caPem === undefined
    ? ""
    : `\n    certificate-authority-data: ${btoa(options.caPem)}`;
  const current = options.current === false ? "" : `current-context: ${name}\n`;
  return `apiVersion: v1
kind: Config
clusters:
- name: ${name}
  cluster:
    server: ${server}${ca}
users:
- name: ${name}
  user:
    token: ${options.token}
contexts:
- name: ${name}
  context:
    cluster: ${name}
    user: ${name}
${current}`;
}
