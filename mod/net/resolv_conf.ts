/**
 * The manager pod's own `/etc/resolv.conf`, read as a pod's resolver reads it
 * (resolv.conf(5)): the nameservers to forward DNS queries to, and the search
 * list, whose `<namespace>.svc.<domain>` entry tells the cluster domain.
 *
 * Pure: parsing takes the text, not the file.
 *
 * @module
 */

/** What the manager takes from a resolv.conf. */
export interface ResolvConf {
  /** `nameserver` addresses, in order (resolv.conf(5) uses at most three). */
  nameservers: string[];
  /** The search list (the last `search` or `domain` line wins, as in glibc). */
  search: string[];
}

/**
 * Parses the text of a resolv.conf. Unknown lines and comments (`#`, `;`)
 * are skipped; nothing throws.
 *
 * @param text The file's contents.
 * @returns The nameservers and the search list.
 *
 * @example
 * ```ts
 * import { parseResolvConf } from "./resolv_conf.ts";
 *
 * const conf = parseResolvConf(
 *   "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.18.128.10\n",
 * );
 * if (conf.nameservers[0] !== "198.18.128.10" || conf.search.length !== 3) throw new Error();
 * ```
 */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let search: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [keyword, ...values] = line.split(/\s+/);
    if (keyword === "nameserver" && values[0] !== undefined) nameservers.push(values[0]);
    else if (keyword === "search" || keyword === "domain") {
      search = values.map((v) => v.replace(/\.$/, "")).filter((v) => v !== "");
    }
  }
  return { nameservers, search };
}

/**
 * Finds the cluster domain in a pod's search list: the part after `.svc.` in
 * its first `<namespace>.svc.<domain>` entry (kubelet writes
 * `<ns>.svc.<domain> svc.<domain> <domain>`).
 *
 * @param search The search list.
 * @returns The cluster domain, or `undefined` when no entry has that form.
 *
 * @example
 * ```ts
 * import { clusterDomainFromSearch } from "./resolv_conf.ts";
 *
 * const domain = clusterDomainFromSearch(["vif-system.svc.corp.example", "svc.corp.example"]);
 * if (domain !== "corp.example") throw new Error(domain);
 * ```
 */
export function clusterDomainFromSearch(search: readonly string[]): string | undefined {
  for (const entry of search) {
    const match = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.svc\.(.+)$/i.exec(entry);
    if (match?.[2] !== undefined) return match[2].toLowerCase();
  }
  return undefined;
}
