/**
 * What `vif gather-logs` does to the text it puts in an archive: secrets are
 * always redacted ({@linkcode redactSecrets}, {@linkcode redactJson}); with
 * `--anonymize`, an {@linkcode Anonymizer} also replaces names and addresses,
 * the same input by the same replacement in every file.
 *
 * The scheme (README, "Bug reports"):
 *
 * | what | becomes |
 * | --- | --- |
 * | a name it was told of (namespace, pod, service, workload, node, container, user, host, kubeconfig cluster, context or user) | `<kind>-<n>`: `namespace-1`, `pod-3`, `node-1`, … |
 * | an IPv4 address | `250.0.0.<n>` onwards (class E: no network routes it, so it cannot be taken for a real address) |
 * | an IPv6 address | `2001:db8::<n>` (the documentation prefix, RFC 3849) |
 *
 * Kept as they are, because they identify nobody: vif's own names
 * (`traffic-manager`, `vif-agent`, `vif-system`), Kubernetes' own
 * (`default`, `kube-system`, `kubernetes`, `cluster.local`, …), names without
 * a letter, and the well-known addresses: `0.0.0.0`, `127.0.0.0/8`,
 * `169.254.0.0/16`, `255.x.x.x` (netmasks), vif's own block `240.0.0.0/24`,
 * `::` and `::1`. A prefix length stays (`10.96.0.0/12` → `250.0.0.4/12`).
 *
 * Names are matched as whole words of letters, digits and single hyphens,
 * and inside such a word at its hyphens (`web` in `web-7d9f8-x2l4k`), so a
 * pod name nobody registered still loses the name of its workload. A
 * registered name that holds other characters (`alice@example.com`,
 * `arn:aws:eks:…/prod`) is replaced wherever it occurs. The mapping itself
 * is never written anywhere.
 *
 * @example
 * ```ts
 * import { Anonymizer } from "./anonymize.ts";
 *
 * const a = new Anonymizer();
 * a.addName("shop", "namespace");
 * a.addName("web-7d9f8-x2l4k", "pod");
 * const out = a.text("pod shop/web-7d9f8-x2l4k at 10.0.3.7, dns 127.0.0.1");
 * if (out !== "pod namespace-1/pod-1 at 250.0.0.1, dns 127.0.0.1") throw new Error(out);
 * ```
 *
 * @module
 */

/** The kinds of names an {@linkcode Anonymizer} replaces, each with its own numbering. */
export type NameKind =
  | "namespace"
  | "pod"
  | "service"
  | "workload"
  | "node"
  | "container"
  | "serviceaccount"
  | "user"
  | "host"
  | "cluster"
  | "context"
  | "name";

/** Names left as they are: vif's and Kubernetes' own, which identify nobody. */
export const KEPT_NAMES: ReadonlySet<string> = new Set([
  "traffic-manager",
  "vif",
  "vif-agent",
  "vif-agent-init",
  "vif-system",
  "default",
  "kube-system",
  "kube-public",
  "kube-node-lease",
  "kubernetes",
  "kube-dns",
  "coredns",
  "localhost",
  "cluster.local",
  "svc",
  "local",
  "root",
]);

/** The placeholder for a redacted secret. */
export const REDACTED = "(redacted)";

/** A word: letters and digits, with single hyphens inside. */
const WORD = "[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*";
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = `(?<![0-9A-Za-z.])${OCTET}(?:\\.${OCTET}){3}(?![0-9A-Za-z]|\\.\\d)`;
/** Something shaped like an IPv6 address; {@linkcode parseIpv6} decides. */
const IPV6 =
  `(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\\d{1,3}(?:\\.\\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![0-9A-Za-z:])`;

/**
 * Replaces names and addresses consistently across every text and JSON value
 * it is given (see the module documentation), and redacts secrets.
 */
export class Anonymizer {
  /** Simple names (one word), by their lower-case form. */
  #words = new Map<string, string>();
  /** Names with other characters, replaced wherever they occur. */
  #literals = new Map<string, string>();
  #addresses = new Map<string, string>();
  #counters = new Map<string, number>();
  #ipv4 = 0;
  #ipv6 = 0;
  #pattern: RegExp | undefined;

  /**
   * Registers a name to replace, unless it is kept or already registered
   * (the first kind given wins).
   *
   * @param name the name as it occurs (`web`, `alice@example.com`)
   * @param kind what it names, which picks its replacement's prefix
   */
  addName(name: string | undefined | null, kind: NameKind): void {
    const n = (name ?? "").trim();
    if (n === "" || n.length > 253 || !/[A-Za-z]/.test(n)) return;
    const lower = n.toLowerCase();
    if (KEPT_NAMES.has(lower) || this.#words.has(lower) || this.#literals.has(n)) return;
    const simple = new RegExp(`^${WORD}$`).test(n);
    const replacement = this.#next(kind);
    if (simple) this.#words.set(lower, replacement);
    else this.#literals.set(n, replacement);
    this.#pattern = undefined;
    if (!simple && (kind === "user" || kind === "host")) {
      // alice@example.com, laptop.corp.example.com: the first part on its own too.
      const first = n.split(/[@.]/, 1)[0];
      if (first && first !== n) this.addName(first, kind);
    }
  }

  /** How many names are registered. */
  get names(): number {
    return this.#words.size + this.#literals.size;
  }

  /**
   * Finds the names that cluster DNS names in `text` hold
   * (`web.shop.svc.cluster.local`: service `web` in namespace `shop`) and
   * registers them.
   *
   * @param text a log
   */
  learnFromText(text: string): void {
    for (
      const m of text.matchAll(/(?<![A-Za-z0-9-])([a-z0-9-]{1,63})\.([a-z0-9-]{1,63})\.svc\b/g)
    ) {
      this.addName(m[2], "namespace");
      this.addName(m[1], "service");
    }
  }

  /**
   * The text with secrets redacted and names and addresses replaced.
   *
   * @param text any text
   * @returns the anonymized text
   */
  text(text: string): string {
    const redacted = redactSecrets(text);
    return redacted.replace(this.#regex(), (match, literal, ipv6, ipv4, word) => {
      if (literal !== undefined) return this.#literals.get(literal) ?? literal;
      if (ipv6 !== undefined) return this.#ipv6Of(ipv6) ?? this.#wordsIn(ipv6);
      if (ipv4 !== undefined) return this.#ipv4Of(ipv4);
      if (word !== undefined) return this.#word(word);
      return match;
    });
  }

  /**
   * A JSON value with secrets redacted ({@linkcode redactJson}) and every
   * string in it anonymized; keys stay, but those of `labels` and
   * `annotations`, which are the user's own.
   *
   * @param value parsed JSON
   * @returns a new value
   */
  json(value: unknown): unknown {
    const walk = (v: unknown, userKeys: boolean): unknown => {
      if (typeof v === "string") return this.text(v);
      if (Array.isArray(v)) return v.map((x) => walk(x, false));
      if (v === null || typeof v !== "object") return v;
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        out[userKeys ? this.text(k) : k] = walk(x, k === "labels" || k === "annotations");
      }
      return out;
    };
    return walk(redactJson(value), false);
  }

  #next(kind: string): string {
    const n = (this.#counters.get(kind) ?? 0) + 1;
    this.#counters.set(kind, n);
    return `${kind}-${n}`;
  }

  #regex(): RegExp {
    if (this.#pattern) return this.#pattern;
    const literals = [...this.#literals.keys()].sort((a, b) => b.length - a.length)
      .map((l) => l.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
    const alternatives = [
      literals.length > 0 ? `(${literals.join("|")})` : "(?!)()",
      `(${IPV6})`,
      `(${IPV4})`,
      `(${WORD})`,
    ];
    this.#pattern = new RegExp(alternatives.join("|"), "g");
    return this.#pattern;
  }

  /** A word, or its parts between hyphens that are registered names (the longest first). */
  #word(word: string): string {
    const whole = this.#words.get(word.toLowerCase());
    if (whole !== undefined) return whole;
    if (!word.includes("-")) return word;
    const parts = word.split("-");
    const out: string[] = [];
    for (let i = 0; i < parts.length;) {
      let matched = false;
      for (let j = parts.length; j > i; j--) {
        const r = this.#words.get(parts.slice(i, j).join("-").toLowerCase());
        if (r !== undefined) {
          out.push(r);
          i = j;
          matched = true;
          break;
        }
      }
      if (!matched) out.push(parts[i++]!);
    }
    return out.join("-");
  }

  /** The words of something that looked like an IPv6 address but was not one (`12:30:05`). */
  #wordsIn(text: string): string {
    return text.replace(new RegExp(WORD, "g"), (w) => this.#word(w));
  }

  #ipv4Of(address: string): string {
    const o = address.split(".").map(Number) as [number, number, number, number];
    const kept = o[0] === 0 || o[0] === 127 || o[0] === 255 ||
      (o[0] === 169 && o[1] === 254) || (o[0] === 240 && o[1] === 0 && o[2] === 0);
    if (kept) return address;
    let r = this.#addresses.get(address);
    if (r === undefined) {
      let n: number;
      do n = ++this.#ipv4; while ((n & 255) === 0 || (n & 255) === 255);
      r = `250.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
      this.#addresses.set(address, r);
    }
    return r;
  }

  #ipv6Of(text: string): string | undefined {
    const groups = parseIpv6(text);
    if (groups === undefined) return undefined;
    if (groups.slice(0, 7).every((g) => g === 0) && groups[7]! <= 1) return text; // :: and ::1
    const key = groups.join(":");
    let r = this.#addresses.get(key);
    if (r === undefined) {
      r = `2001:db8::${(++this.#ipv6).toString(16)}`;
      this.#addresses.set(key, r);
    }
    return r;
  }
}

/**
 * The eight 16-bit groups of an IPv6 address in text form (with `::`, with
 * an IPv4 address as its last 32 bits), or undefined when it is not one.
 *
 * @param text the text
 * @returns the groups
 */
export function parseIpv6(text: string): number[] | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (const [i, p] of parts.entries()) {
      if (i === parts.length - 1 && p.includes(".")) {
        const o = p.split(".");
        if (o.length !== 4 || o.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255)) {
          return undefined;
        }
        const [a, b, c, d] = o.map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else return undefined;
    }
    return out;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return undefined;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

/** JSON keys whose string values are secrets. */
const SECRET_KEY =
  /^(token|password|passwd|secret|client-key-data|client-certificate-data|authorization|bearer-?token|access-?token|refresh-?token|id-?token|api-?key|private-?key)$/i;
/** Environment variable names whose values are secrets. */
const SECRET_ENV = /TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|CREDENTIAL/i;

/**
 * Redacts the secrets text can hold: PEM blocks, JSON Web Tokens, `Bearer`
 * and `Basic` credentials, and the value after `token`, `password`,
 * `secret`, `api-key` and the like followed by `=` or `:`.
 *
 * @param text any text
 * @returns the text with each secret replaced by {@linkcode REDACTED}
 * @example
 * ```ts
 * import { redactSecrets } from "./anonymize.ts";
 *
 * const out = redactSecrets("Authorization: Bearer abc.def password=hunter2");
 * if (out !== "Authorization: Bearer (redacted) password=(redacted)") throw new Error(out);
 * ```
 */
export function redactSecrets(text: string): string {
  return text
    .replace(
      /-----BEGIN ([A-Z0-9 ]{1,40})-----[\s\S]*?-----END \1-----/g,
      (_m, label) => `-----BEGIN ${label}-----\n${REDACTED}\n-----END ${label}-----`,
    )
    .replace(/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, REDACTED)
    .replace(/\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{4,}/gi, `$1$2${REDACTED}`)
    .replace(
      /\b(token|password|passwd|secret|api[-_]?key|access[-_]?key|private[-_]?key|client[-_]?key)(["']?\s*[:=]\s*["']?)(?!\(redacted\))([^\s"',;}]+)/gi,
      `$1$2${REDACTED}`,
    );
}

/**
 * A JSON value with its secrets redacted: string values under keys like
 * `token` or `password`, the `value` of environment variables named like
 * `*_TOKEN` or `*PASSWORD*`, and whatever {@linkcode redactSecrets} finds in
 * any string.
 *
 * @param value parsed JSON
 * @returns a new value
 */
export function redactJson(value: unknown): unknown {
  if (typeof value === "string") return redactSecrets(value);
  if (Array.isArray(value)) return value.map(redactJson);
  if (value === null || typeof value !== "object") return value;
  const o = value as Record<string, unknown>;
  const envSecret = typeof o.name === "string" && typeof o.value === "string" &&
    SECRET_ENV.test(o.name);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    out[k] = typeof v === "string" && (SECRET_KEY.test(k) || (envSecret && k === "value"))
      ? REDACTED
      : redactJson(v);
  }
  return out;
}
