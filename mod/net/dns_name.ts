/**
 * Which texts may stand as DNS names where vif writes them for the OS
 * (resolv.conf `search` lines, systemd-resolved routing domains): names the
 * traffic-manager announces (the cluster domain, namespaces) and the user's
 * own (`--namespace`, `--dns-include`). A name with a newline, a space or a
 * `#` would become extra lines or words in resolv.conf, written by root, so
 * only hostname-shaped names pass (RFC 1035 2.3.1 as RFC 1123 2.1 relaxed
 * it, plus `_` for service labels).
 *
 * Pure: no I/O.
 *
 * @module
 */

/** The longest name in text form (RFC 1035 2.3.4: 255 octets on the wire). */
export const MAX_NAME_LENGTH = 253;

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const NAMESPACE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Tells whether `text` is a DNS name vif may hand the OS: dot-separated
 * labels of letters, digits, `-` and `_`, 1 to 63 characters each, not
 * starting or ending with `-`, at most {@linkcode MAX_NAME_LENGTH} in all;
 * one trailing dot allowed.
 *
 * @param text The name.
 * @returns Whether it is one.
 *
 * @example
 * ```ts
 * import { isDnsName } from "./dns_name.ts";
 *
 * if (!isDnsName("cluster.local") || isDnsName("cluster.local\nnameserver 1.2.3.4")) {
 *   throw new Error();
 * }
 * ```
 */
export function isDnsName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  return name.split(".").every((label) => LABEL.test(label));
}

/**
 * Tells whether `text` is a Kubernetes namespace name: an RFC 1123 label,
 * lower-case letters, digits and `-`, 1 to 63 characters.
 *
 * @param text The name.
 * @returns Whether it is one.
 *
 * @example
 * ```ts
 * import { isNamespaceName } from "./dns_name.ts";
 *
 * if (!isNamespaceName("kube-system") || isNamespaceName("Shop") || isNamespaceName("a.b")) {
 *   throw new Error();
 * }
 * ```
 */
export function isNamespaceName(text: string): boolean {
  return NAMESPACE.test(text);
}
