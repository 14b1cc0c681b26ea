/**
 * The config file: `vif connect`'s settings that people would otherwise
 * retype, once for every context and per kubeconfig context, and `vif config
 * view`, which shows the settings in effect and where each came from.
 *
 * The file is `--config FILE`, else `$VIF_CONFIG`, else
 * `$XDG_CONFIG_HOME/vif/config.yaml`, else `~/.config/vif/config.yaml`; the
 * last two may be missing. A setting comes from the command line, else the
 * context's section of the file, else the file's top level, else vif's own
 * default. A list given on the command line replaces the file's list.
 *
 * ```yaml
 * managerNamespace: vif-system        # for every context
 * alsoProxy: [198.18.200.0/24]
 * contexts:
 *   dev:                              # a kubeconfig context's name
 *     namespace: shop
 *     neverProxy: [198.18.7.0/24]     # replaces the list above, for dev
 * ```
 *
 * The file is read by the CLI, as the user who runs it; the root daemon
 * never reads it. Its bytes are hostile until checked: at most 1 MiB, one
 * YAML document of plain mappings, lists and scalars (no aliases), every key
 * known and every value checked; a mistake is a {@linkcode UserError} naming
 * the file and the line.
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";
import {
  constructFromEvents,
  type Event,
  EVENT_ID,
  getScalarValue,
  parseEvents,
  YAMLException,
} from "js-yaml";
import { DEFAULT_GRACE_SECONDS } from "../daemon/control.ts";
import { Cidr } from "../net/address.ts";
import { isNamespaceName } from "../net/dns_name.ts";
import { DEFAULT_MANAGER_NAMESPACE } from "../rpc/names.ts";
import type { CliContext } from "./context.ts";
import { UserError } from "./errors.ts";
import { unknownCommand } from "./_usage.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";

/** The largest config file read, in bytes: a few settings need far less. */
export const CONFIG_MAX_BYTES = 1024 * 1024;

/** The most entries one list setting may hold. */
const MAX_LIST = 256;

/** The settings of `vif connect` a config file may hold, as they are used. */
export interface ConnectSettings {
  /** `--manager-namespace`: the traffic-manager's namespace. */
  managerNamespace: string;
  /** `-n, --namespace`: the namespace short names resolve in; the kubeconfig context's when undefined. */
  namespace: string | undefined;
  /** `--also-proxy`: subnets sent to the cluster too. */
  alsoProxy: string[];
  /** `--never-proxy`: subnets kept out of the TUN. */
  neverProxy: string[];
  /** `--allow-conflicting-subnets`: cluster subnets routed even over an existing route. */
  allowConflictingSubnets: string[];
  /** `--dns-include`: suffixes resolved in the cluster too. */
  dnsInclude: string[];
  /** `--dns-exclude`: suffixes never resolved in the cluster. */
  dnsExclude: string[];
  /** `--grace`: seconds the manager may be unreachable before vif disconnects. */
  grace: number;
}

/** The name of one setting: its key in the file and its option in commander. */
export type SettingKey = keyof ConnectSettings;

/** Where a setting's value came from. */
export type SettingSource =
  | { from: "flag"; flag: string }
  | { from: "file"; file: string; line: number; section: string }
  | { from: "kubeconfig"; context: string }
  | { from: "default" };

/** The settings of one section of the file, with the line each was set on. */
export interface ConfigSection {
  /** The values, checked and normalised (CIDRs in canonical form). */
  values: Partial<ConnectSettings>;
  /** The 1-based line of each value. */
  lines: Partial<Record<SettingKey, number>>;
}

/** A parsed, checked config file. */
export interface ConfigFile {
  /** The path it was read from, as given. */
  path: string;
  /** The top level: defaults for every context. */
  defaults: ConfigSection;
  /** The `contexts:` sections, by kubeconfig context name. */
  contexts: Map<string, ConfigSection>;
}

/** Where the config file is, and what named it. */
export interface ConfigLocation {
  /** The path. */
  path: string;
  /** `--config`, `VIF_CONFIG`, or the XDG default (which may be missing). */
  via: "--config" | "VIF_CONFIG" | "default";
}

/** The effective settings and where each came from. */
export interface ResolvedSettings {
  /** The values. */
  values: ConnectSettings;
  /** The source of each value. */
  sources: Record<SettingKey, SettingSource>;
}

/** One setting: its flag, whether it is a list, and how a value is checked. */
interface SettingSpec {
  key: SettingKey;
  flag: string;
  list: boolean;
  /** Checks one value (one item of a list) given as text; throws a message. */
  check(text: string): string | number;
  /** What a right value looks like, for a hint. */
  example: string;
}

/**
 * A value from the file or the command line, quoted and clipped for a
 * message: JSON's escapes keep control characters from the terminal.
 */
function quote(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/**
 * Checks a subnet as `--also-proxy` and the file take it.
 *
 * @param text ADDRESS/PREFIX
 * @returns the subnet in canonical form
 * @throws {RangeError} when it is not a subnet
 *
 * @example
 * ```ts
 * import { checkCidr } from "./config.ts";
 *
 * if (checkCidr("198.18.7.0/24") !== "198.18.7.0/24") throw new Error("changed");
 * ```
 */
export function checkCidr(text: string): string {
  try {
    return Cidr.parse(text).toString();
  } catch (cause) {
    throw new RangeError(
      `${quote(text)} is not a subnet; give it as ADDRESS/PREFIX, e.g. 198.18.5.0/24.`,
      { cause },
    );
  }
}

/**
 * Checks a DNS suffix as `--dns-include` and the file take it.
 *
 * @param text a domain, leading and trailing dots allowed
 * @returns it in lower case without the dots around it
 * @throws {RangeError} when it is not a domain
 *
 * @example
 * ```ts
 * import { checkDnsSuffix } from "./config.ts";
 *
 * if (checkDnsSuffix(".Corp.Example.") !== "corp.example") throw new Error("not cleaned");
 * ```
 */
export function checkDnsSuffix(text: string): string {
  const clean = text.trim().replace(/^\.+|\.+$/g, "").toLowerCase();
  if (
    clean.length > 253 ||
    !/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(clean)
  ) {
    throw new RangeError(`${quote(text)} is not a DNS suffix; give it as e.g. corp.example.`);
  }
  return clean;
}

/**
 * Checks `--grace`: seconds, with or without an `s`, from 1 to 3600.
 *
 * @param text the value
 * @returns the seconds
 * @throws {RangeError} when it is not that
 *
 * @example
 * ```ts
 * import { checkGrace } from "./config.ts";
 *
 * if (checkGrace("45s") !== 45) throw new Error("misread");
 * ```
 */
export function checkGrace(text: string): number {
  const n = Number(text.trim().replace(/s$/, ""));
  if (text.trim() === "" || !Number.isFinite(n) || n < 1 || n > 3600) {
    throw new RangeError(`${quote(text)} is not a number of seconds from 1 to 3600.`);
  }
  return n;
}

function checkNamespace(text: string): string {
  if (!isNamespaceName(text)) {
    throw new RangeError(
      `${quote(text)} is not a namespace; a namespace is a DNS label (lower-case letters, digits ` +
        `and "-", at most 63).`,
    );
  }
  return text;
}

const SPECS: readonly SettingSpec[] = [
  {
    key: "managerNamespace",
    flag: "--manager-namespace",
    list: false,
    check: checkNamespace,
    example: "managerNamespace: vif-system",
  },
  {
    key: "namespace",
    flag: "--namespace",
    list: false,
    check: checkNamespace,
    example: "namespace: shop",
  },
  {
    key: "alsoProxy",
    flag: "--also-proxy",
    list: true,
    check: checkCidr,
    example: "alsoProxy: [198.18.200.0/24]",
  },
  {
    key: "neverProxy",
    flag: "--never-proxy",
    list: true,
    check: checkCidr,
    example: "neverProxy: [198.18.7.0/24]",
  },
  {
    key: "allowConflictingSubnets",
    flag: "--allow-conflicting-subnets",
    list: true,
    check: checkCidr,
    example: "allowConflictingSubnets: [198.18.0.0/16]",
  },
  {
    key: "dnsInclude",
    flag: "--dns-include",
    list: true,
    check: checkDnsSuffix,
    example: "dnsInclude: [corp.example]",
  },
  {
    key: "dnsExclude",
    flag: "--dns-exclude",
    list: true,
    check: checkDnsSuffix,
    example: "dnsExclude: [internal.example]",
  },
  { key: "grace", flag: "--grace", list: false, check: checkGrace, example: "grace: 30" },
];

const SETTING_KEYS: readonly SettingKey[] = SPECS.map((s) => s.key);

/** vif's own defaults, under the file and the flags. */
function builtinDefaults(): ConnectSettings {
  return {
    managerNamespace: DEFAULT_MANAGER_NAMESPACE,
    namespace: undefined,
    alsoProxy: [],
    neverProxy: [],
    allowConflictingSubnets: [],
    dnsInclude: [],
    dnsExclude: [],
    grace: DEFAULT_GRACE_SECONDS,
  };
}

/** Commander's parser for a repeatable flag: checks the value and collects it. */
function collect(
  check: (text: string) => string,
): (value: string, previous: string[] | undefined) => string[] {
  return (value, previous) => {
    try {
      return [...previous ?? [], check(value)];
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function single<T>(check: (text: string) => T): (value: string) => T {
  return (value) => {
    try {
      return check(value);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

/**
 * Adds the options of the settings a config file may hold, as `vif connect`
 * takes them: `--manager-namespace`, `-n`, `--also-proxy`, `--never-proxy`,
 * `--allow-conflicting-subnets`, `--dns-include`, `--dns-exclude`, `--grace`.
 * {@linkcode typedSettings} then tells which ones were typed.
 *
 * @param command the command
 * @returns the same command, for chaining
 */
export function addSettingOptions(command: Command): Command {
  const list = (flags: string, what: string, check: (text: string) => string) =>
    new Option(flags, `${what} (repeatable; replaces the config file's list)`)
      .argParser(collect(check));
  return command
    .addOption(
      new Option(
        "--manager-namespace <ns>",
        "the manager's namespace; its certificate names traffic-manager.<ns>",
      ).argParser(single(checkNamespace))
        .default(DEFAULT_MANAGER_NAMESPACE, `the config file's, else ${DEFAULT_MANAGER_NAMESPACE}`),
    )
    .addOption(
      new Option(
        "-n, --namespace <ns>",
        "the namespace short names resolve in (default: the config file's, else the " +
          "context's, else default)",
      ).argParser(single(checkNamespace)),
    )
    .addOption(list(
      "--also-proxy <cidr>",
      "send this subnet to the cluster too, though outside its subnets",
      checkCidr,
    ))
    .addOption(list(
      "--never-proxy <cidr>",
      "keep this subnet out of the TUN, on the route it had",
      checkCidr,
    ))
    .addOption(list(
      "--allow-conflicting-subnets <cidr>",
      "route this part of the cluster's subnets even over an existing route",
      checkCidr,
    ))
    .addOption(list(
      "--dns-include <suffix>",
      "resolve names under this suffix in the cluster too",
      checkDnsSuffix,
    ))
    .addOption(list(
      "--dns-exclude <suffix>",
      "never resolve names under this suffix in the cluster",
      checkDnsSuffix,
    ))
    .addOption(
      new Option(
        "--grace <seconds>",
        "how long the manager may be unreachable before vif disconnects",
      ).argParser(single(checkGrace))
        .default(DEFAULT_GRACE_SECONDS, `the config file's, else ${DEFAULT_GRACE_SECONDS}`),
    );
}

/**
 * The `--config FILE` option of the commands that read the config file.
 *
 * @returns the option, to pass to `addOption`
 */
export function configOption(): Option {
  return new Option(
    "--config <file>",
    "the vif config file (default: $VIF_CONFIG, else $XDG_CONFIG_HOME/vif/config.yaml, " +
      "else ~/.config/vif/config.yaml)",
  );
}

/**
 * The settings typed on the command line, told from defaults by commander's
 * `getOptionValueSource()`.
 *
 * @param command a command given {@linkcode addSettingOptions}, after parsing
 * @returns the typed values only
 */
export function typedSettings(command: Command): Partial<ConnectSettings> {
  const typed: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    if (command.getOptionValueSource(key) === "cli") typed[key] = command.getOptionValue(key);
  }
  return typed as Partial<ConnectSettings>;
}

/**
 * Where the config file is: `--config`, else `VIF_CONFIG`, else
 * `$XDG_CONFIG_HOME/vif/config.yaml` (when absolute, as the XDG spec wants),
 * else `$HOME/.config/vif/config.yaml`.
 *
 * @param flag the `--config` flag, if given
 * @param env reads an environment variable
 * @returns the location, or undefined with neither XDG_CONFIG_HOME nor HOME
 *
 * @example
 * ```ts
 * import { configLocation } from "./config.ts";
 *
 * const env = (name: string) => ({ HOME: "/home/alice" } as Record<string, string>)[name];
 * const at = configLocation(undefined, env);
 * if (at?.path !== "/home/alice/.config/vif/config.yaml") throw new Error(at?.path);
 * ```
 */
export function configLocation(
  flag: string | undefined,
  env: (name: string) => string | undefined,
): ConfigLocation | undefined {
  if (flag !== undefined) return { path: flag, via: "--config" };
  const named = env("VIF_CONFIG");
  if (named) return { path: named, via: "VIF_CONFIG" };
  const xdg = env("XDG_CONFIG_HOME");
  if (xdg?.startsWith("/")) {
    return { path: `${xdg.replace(/\/+$/, "")}/vif/config.yaml`, via: "default" };
  }
  const home = env("HOME");
  if (home) return { path: `${home.replace(/\/+$/, "")}/.config/vif/config.yaml`, via: "default" };
  return undefined;
}

/**
 * Reads and checks the config file, as the user who runs this process. The
 * default location may be missing; a file named by `--config` or `VIF_CONFIG`
 * may not.
 *
 * @param location where it is ({@linkcode configLocation})
 * @returns the file, or undefined when there is none
 * @throws {UserError} when it cannot be read or is wrong
 */
export async function readConfigFile(
  location: ConfigLocation | undefined,
): Promise<ConfigFile | undefined> {
  if (location === undefined) return undefined;
  const { path, via } = location;
  const unreadable = (what: string, hint: string, cause?: unknown) =>
    new UserError(`cannot read the config file "${path}": ${what}`, { hint, cause });
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound && via === "default") return undefined;
    throw unreadable(
      (cause as Error).message,
      via === "default" ? "Make it readable by you, or remove it." : `Check the path in ${via}.`,
      cause,
    );
  }
  let bytes: Uint8Array;
  try {
    const info = await file.stat();
    if (info.isDirectory) {
      throw unreadable(
        "it is a directory",
        `Point ${via === "default" ? "VIF_CONFIG" : via} at a file.`,
      );
    }
    // Anyone could have written a file everyone may write; ssh refuses its config so too.
    if (info.isFile && info.mode !== null && (info.mode & 0o002) !== 0) {
      throw unreadable(
        "anyone may write it",
        `Run "chmod o-w ${path}", then check what it holds.`,
      );
    }
    bytes = await readBounded(file, CONFIG_MAX_BYTES);
  } catch (cause) {
    if (cause instanceof UserError) throw cause;
    throw unreadable((cause as Error).message, "Check the file.", cause);
  } finally {
    file.close();
  }
  if (bytes.length > CONFIG_MAX_BYTES) {
    throw unreadable(
      `it is larger than ${CONFIG_MAX_BYTES / 1024 / 1024} MiB`,
      via === "default"
        ? "A vif config file holds a few settings; check what is in it."
        : `A vif config file holds a few settings; check that ${via} names the right file.`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (cause) {
    throw unreadable("it is not UTF-8 text", "Save it as UTF-8 text.", cause);
  }
  return parseConfig(text, path);
}

/** Reads at most `limit + 1` bytes: enough to tell that a file is too large. */
async function readBounded(file: Deno.FsFile, limit: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(limit + 1);
  let length = 0;
  while (length < buffer.length) {
    const n = await file.read(buffer.subarray(length));
    if (n === null) break;
    length += n;
  }
  return buffer.subarray(0, length);
}

/** Where each node of the document starts: its key's offset and its value's. */
interface Offsets {
  keys: Map<string, number>;
  values: Map<string, number>;
}

const pathKey = (path: readonly string[]) => JSON.stringify(path);

/**
 * Parses and checks the text of a config file.
 *
 * @param text the file's text
 * @param path the file's path, for messages
 * @returns the checked file
 * @throws {UserError} naming the line of the first mistake
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 *
 * const file = parseConfig("grace: 45\ncontexts:\n  dev:\n    namespace: shop\n", "config.yaml");
 * if (file.contexts.get("dev")?.values.namespace !== "shop") throw new Error("no dev");
 * if (file.defaults.lines.grace !== 1) throw new Error("no line");
 * ```
 */
export function parseConfig(text: string, path: string): ConfigFile {
  const lineOf = (offset: number) => {
    let line = 1;
    for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) line++;
    return line;
  };
  const fail = (line: number, what: string, hint: string, cause?: unknown): never => {
    throw new UserError(`config file "${path}", line ${line}: ${what}`, { hint, cause });
  };
  let events: Event[];
  let documents: unknown[];
  try {
    // No aliases at all: a few of them nested make a document that explodes when walked.
    events = parseEvents(text, { filename: path, maxDepth: 8 });
    documents = constructFromEvents(events, { source: text, filename: path, maxAliases: 0 });
  } catch (cause) {
    if (!(cause instanceof YAMLException)) throw cause;
    const aliases = /alias/i.test(cause.reason);
    return fail(
      (cause.mark?.line ?? 0) + 1,
      aliases ? "aliases (*name) are not allowed" : quote(cause.reason).slice(1, -1),
      aliases
        ? "Write each value out where it is used."
        : 'Fix the YAML there; "vif config view" checks the file.',
      cause,
    );
  }
  const offsets = nodeOffsets(events, text);
  if (documents.length > 1) {
    return fail(
      lineOf(offsets.secondDocument ?? 0),
      "more than one YAML document",
      'A config file holds one document: remove the "---" and what follows it, or merge them.',
    );
  }
  const lineAt = (path: readonly string[], key = false): number => {
    for (let p = [...path];; p = p.slice(0, -1)) {
      const offset = (key ? offsets.keys : offsets.values).get(pathKey(p)) ??
        offsets.keys.get(pathKey(p));
      if (offset !== undefined) return lineOf(offset);
      if (p.length === 0) return 1;
    }
  };
  const root = documents[0] ?? null;
  const defaults = section(root, [], true, { lineAt, fail });
  const contexts = new Map<string, ConfigSection>();
  if (isMapping(root) && Object.hasOwn(root, "contexts")) {
    const all = root.contexts;
    if (all !== null && !isMapping(all)) {
      fail(
        lineAt(["contexts"]),
        '"contexts" is not a mapping',
        'Give it a section per kubeconfig context, e.g. "contexts: {dev: {namespace: shop}}".',
      );
    }
    for (const name of Object.keys(all ?? {})) {
      // deno-lint-ignore no-control-regex
      if (name === "" || name.length > 1024 || /[\x00-\x1f\x7f]/.test(name)) {
        fail(
          lineAt(["contexts", name], true),
          `${quote(name)} is not a context name`,
          "Name each section after a context of your kubeconfig (kubectl config get-contexts).",
        );
      }
      const value = (all as Record<string, unknown>)[name];
      contexts.set(name, section(value, ["contexts", name], false, { lineAt, fail }));
    }
  }
  return { path, defaults, contexts };
}

/** What {@linkcode section} needs to report a mistake at its line. */
interface Reporter {
  lineAt(path: readonly string[], key?: boolean): number;
  fail(line: number, what: string, hint: string): never;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks one section: the top level (where `contexts` may be) or a context's. */
function section(
  value: unknown,
  at: string[],
  top: boolean,
  { lineAt, fail }: Reporter,
): ConfigSection {
  const out: ConfigSection = { values: {}, lines: {} };
  if (value === null || value === undefined) return out;
  const where = top ? "" : ` in "${at.join(".")}"`;
  if (!isMapping(value)) {
    return fail(
      lineAt(at),
      top ? "the file is not a mapping of settings" : `"${at.join(".")}" is not a mapping`,
      `Write one "key: value" per line, e.g. "${SPECS[0]!.example}".`,
    );
  }
  const known = top ? [...SETTING_KEYS, "contexts"] : [...SETTING_KEYS];
  for (const key of Object.keys(value)) {
    if (top && key === "contexts") continue;
    const spec = SPECS.find((s) => s.key === key);
    if (spec === undefined) {
      const guess = known.find((k) => normalise(k) === normalise(key)) ??
        known.find((k) => normalise(key).length >= 4 && normalise(k).startsWith(normalise(key)));
      const suggestion = guess === undefined ? "" : `Did you mean "${guess}"? `;
      const contexts = top ? "" : ' (a context\'s section cannot hold "contexts")';
      return fail(
        lineAt([...at, key], true),
        `unknown key ${quote(key)}${where}`,
        `${suggestion}The keys are: ${known.join(", ")}${contexts}.`,
      );
    }
    const line = lineAt([...at, key]);
    const item = value[key];
    const typeHint = `Write it as "${spec.example}".`;
    if (item === null) {
      return fail(line, `"${key}"${where} has no value`, `${typeHint} Or delete the line.`);
    }
    if (spec.list) {
      if (!Array.isArray(item)) {
        return fail(line, `"${key}"${where} is not a list`, typeHint);
      }
      if (item.length > MAX_LIST) {
        return fail(line, `"${key}"${where} has more than ${MAX_LIST} entries`, "Shorten it.");
      }
      const list: string[] = [];
      item.forEach((entry, index) => {
        const entryLine = lineAt([...at, key, String(index)]);
        if (typeof entry !== "string") {
          fail(entryLine, `an entry of "${key}"${where} is not text`, typeHint);
        }
        try {
          list.push(spec.check(entry as string) as string);
        } catch (error) {
          fail(
            entryLine,
            `${key}${where}: ${problem(error)}`,
            hint(spec),
          );
        }
      });
      (out.values as Record<string, unknown>)[key] = list;
    } else {
      const text = typeof item === "string"
        ? item
        : typeof item === "number" && spec.key === "grace"
        ? String(item)
        : undefined;
      if (text === undefined) {
        return fail(
          line,
          `"${key}"${where} is not ${spec.key === "grace" ? "a number" : "text"}`,
          typeHint,
        );
      }
      try {
        (out.values as Record<string, unknown>)[key] = spec.check(text);
      } catch (error) {
        return fail(
          line,
          `${key}${where}: ${problem(error)}`,
          hint(spec),
        );
      }
    }
    out.lines[key as SettingKey] = lineAt([...at, key], true);
  }
  return out;
}

function hint(spec: SettingSpec): string {
  if (spec.check === checkCidr) return `Give subnets as ADDRESS/PREFIX: "${spec.example}".`;
  if (spec.check === checkDnsSuffix) return `Give domains: "${spec.example}".`;
  if (spec.check === checkGrace) {
    return `Give a number of seconds from 1 to 3600: "${spec.example}".`;
  }
  return 'A namespace is a DNS label: lower-case letters, digits and "-", at most 63 ' +
    `("${spec.example}").`;
}

/** A check's message without its advice (the hint gives it) and final period. */
function problem(error: unknown): string {
  return (error as Error).message.replace(/;.*$/, "").replace(/\.$/, "");
}

function normalise(key: string): string {
  return key.toLowerCase().replace(/[-_\s]/g, "");
}

/**
 * Where each node of the (first) document starts, by its path of keys and
 * list indexes; and where a second document starts, if there is one.
 */
function nodeOffsets(
  events: readonly Event[],
  text: string,
): Offsets & { secondDocument?: number } {
  const keys = new Map<string, number>();
  const values = new Map<string, number>();
  type Frame = { kind: "seq" | "map" | "doc"; path: string[]; index: number; key?: string | null };
  const stack: Frame[] = [];
  let documents = 0;
  let secondDocument: number | undefined;
  for (const event of events) {
    if (event.type === EVENT_ID.DOCUMENT) {
      documents++;
      stack.push({ kind: "doc", path: [], index: 0 });
      continue;
    }
    if (event.type === EVENT_ID.POP) {
      stack.pop();
      continue;
    }
    const offset = event.type === EVENT_ID.SCALAR
      ? event.valueStart
      : event.type === EVENT_ID.ALIAS
      ? event.anchorStart
      : event.start;
    if (documents > 1) {
      if (secondDocument === undefined && offset >= 0) secondDocument = offset;
      continue;
    }
    const top = stack.at(-1);
    if (top === undefined) continue;
    let path: string[];
    if (top.kind === "doc") path = [];
    else if (top.kind === "seq") path = [...top.path, String(top.index++)];
    else if (top.key === undefined) {
      // A key. Only a scalar can be one here (the loader refused others).
      top.key = event.type === EVENT_ID.SCALAR ? getScalarValue(text, event) : null;
      if (top.key !== null && offset >= 0) keys.set(pathKey([...top.path, top.key]), offset);
      if (event.type === EVENT_ID.SEQUENCE || event.type === EVENT_ID.MAPPING) {
        stack.push({ kind: "seq", path: [...top.path, "\0"], index: 0 });
      }
      continue;
    } else {
      path = [...top.path, top.key ?? "\0"];
      top.key = undefined;
    }
    if (offset >= 0) values.set(pathKey(path), offset);
    if (event.type === EVENT_ID.SEQUENCE) stack.push({ kind: "seq", path, index: 0 });
    if (event.type === EVENT_ID.MAPPING) stack.push({ kind: "map", path, index: 0 });
  }
  return secondDocument === undefined ? { keys, values } : { keys, values, secondDocument };
}

/** Options of {@linkcode resolveSettings}. */
export interface ResolveOptions {
  /** The config file, if there is one. */
  file?: ConfigFile | undefined;
  /** The kubeconfig context whose section applies, if known. */
  context?: string | undefined;
}

/**
 * The effective settings: each one typed on the command line, else from the
 * context's section of the file, else from the file's top level, else vif's
 * default. A list is taken whole from one place, never merged.
 *
 * @param typed the settings typed on the command line ({@linkcode typedSettings})
 * @param options the file and the context
 * @returns the values and their sources
 *
 * @example
 * ```ts
 * import { parseConfig, resolveSettings } from "./config.ts";
 *
 * const file = parseConfig("grace: 45\ncontexts:\n  dev:\n    grace: 60\n", "c.yaml");
 * const { values, sources } = resolveSettings({}, { file, context: "dev" });
 * if (values.grace !== 60 || sources.grace.from !== "file") throw new Error("not the section");
 * if (resolveSettings({ grace: 5 }, { file, context: "dev" }).values.grace !== 5) {
 *   throw new Error("the flag lost");
 * }
 * ```
 */
export function resolveSettings(
  typed: Partial<ConnectSettings>,
  options: ResolveOptions = {},
): ResolvedSettings {
  const values = builtinDefaults();
  const sources = {} as Record<SettingKey, SettingSource>;
  const { file, context } = options;
  const own = context === undefined ? undefined : file?.contexts.get(context);
  for (const spec of SPECS) {
    const key = spec.key;
    const set = (value: unknown, source: SettingSource) => {
      (values as unknown as Record<string, unknown>)[key] = Array.isArray(value)
        ? [...value]
        : value;
      sources[key] = source;
    };
    if (typed[key] !== undefined) set(typed[key], { from: "flag", flag: spec.flag });
    else if (own !== undefined && own.values[key] !== undefined) {
      set(own.values[key], {
        from: "file",
        file: file!.path,
        line: own.lines[key] ?? 0,
        section: `contexts.${context}`,
      });
    } else if (file !== undefined && file.defaults.values[key] !== undefined) {
      set(file.defaults.values[key], {
        from: "file",
        file: file.path,
        line: file.defaults.lines[key] ?? 0,
        section: "top level",
      });
    } else sources[key] = { from: "default" };
  }
  return { values, sources };
}

/**
 * The current context of the kubeconfig, read leniently: undefined when there
 * is no kubeconfig or it cannot be used (the command that needs it says why).
 *
 * @param options what `loadKubeConfig` takes
 * @returns the context's name and namespace, if any
 */
async function kubeContext(
  options: { kubeconfig?: string; context?: string; env: (name: string) => string | undefined },
): Promise<{ context: string; namespace: string } | undefined> {
  const { loadKubeConfig } = await import("../kube/client.ts");
  try {
    const loaded = loadKubeConfig(options);
    return { context: loaded.context, namespace: loaded.namespace };
  } catch {
    return undefined;
  }
}

/**
 * The namespace the config file gives a kubeconfig context (its section,
 * else the top level), for commands that default `-n` as `vif connect` does.
 *
 * @param context the kubeconfig context in use
 * @param options `--config` and the environment
 * @returns the namespace, or undefined when the file sets none
 * @throws {UserError} when the file is wrong
 */
export async function configuredNamespace(
  context: string,
  options: { config?: string | undefined; env: (name: string) => string | undefined },
): Promise<string | undefined> {
  const file = await readConfigFile(configLocation(options.config, options.env));
  return resolveSettings({}, { file, context }).values.namespace;
}

/**
 * The context whose section of the file applies: `--context`, else the
 * kubeconfig's current one. Reads the kubeconfig only when the file has
 * context sections and no `--context` was given.
 *
 * @param file the config file, if any
 * @param options `--context`, `--kubeconfig` and the environment
 * @returns the context's name, or undefined when none can be told
 */
export async function sectionContext(
  file: ConfigFile | undefined,
  options: {
    context?: string | undefined;
    kubeconfig?: string | undefined;
    env: (name: string) => string | undefined;
  },
): Promise<string | undefined> {
  if (options.context) return options.context;
  if (file === undefined || file.contexts.size === 0) return undefined;
  return (await kubeContext({
    ...(options.kubeconfig ? { kubeconfig: options.kubeconfig } : {}),
    env: options.env,
  }))?.context;
}

interface ViewOptions {
  context?: string;
  kubeconfig?: string;
  config?: string;
  output: OutputFormat;
}

/** The document `vif config view -o json|yaml` prints. */
interface ConfigView {
  file: { path: string | null; found: boolean; via: ConfigLocation["via"] | null };
  context: { name: string | null; from: "flag" | "kubeconfig" | null };
  settings: Record<SettingKey, { value: unknown } & SettingSource>;
}

const VIEW_EXAMPLES = `
Examples:
  vif config view                   # the current context's settings, and where each comes from
  vif config view --context dev -o yaml
  vif config view --never-proxy 198.18.7.0/24   # what connect would do with that flag

The file (YAML, every key optional):
  managerNamespace: vif-system      # for every context
  alsoProxy: [198.18.200.0/24]
  contexts:
    dev:                            # a kubeconfig context
      namespace: shop
      neverProxy: [198.18.7.0/24]

Keys: ${SETTING_KEYS.join(", ")}; each is the flag of "vif connect" of the same
name. A flag beats the context's section, which beats the top level, which
beats vif's default; a list flag replaces the file's list.`;

/**
 * Adds `vif config` and `vif config view` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerConfig(program: Command, context: CliContext): void {
  const config = program
    .command("config")
    .description("show the settings vif connect takes from the config file")
    .usage("[options] [command]")
    .argument("[command]");
  config.action((name: string | undefined) => {
    if (name !== undefined) throw unknownCommand(name, config);
    config.outputHelp();
  });
  const view = config
    .command("view")
    .description("show the settings vif connect would use, and where each comes from")
    .option("--context <name>", "the kubeconfig context (default: the current one)")
    .option(
      "--kubeconfig <file>",
      "the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
    )
    .addOption(configOption());
  addSettingOptions(view)
    .addOption(outputOption("the settings and their sources"))
    .addHelpText("after", VIEW_EXAMPLES)
    .action(async (options: ViewOptions, command: Command) => {
      const env = context.io.env;
      const location = configLocation(options.config, env);
      const file = await readConfigFile(location);
      const kube = await kubeContext({
        ...(options.kubeconfig ? { kubeconfig: options.kubeconfig } : {}),
        ...(options.context ? { context: options.context } : {}),
        env,
      });
      const name = options.context ?? kube?.context;
      const resolved = resolveSettings(typedSettings(command), { file, context: name });
      const settings = {} as ConfigView["settings"];
      for (const key of SETTING_KEYS) {
        let value: unknown = resolved.values[key];
        let source = resolved.sources[key];
        if (key === "namespace" && value === undefined) {
          value = kube?.namespace ?? "default";
          if (kube) source = { from: "kubeconfig", context: kube.context };
        }
        settings[key] = { value, ...source };
      }
      const doc: ConfigView = {
        file: {
          path: location?.path ?? null,
          found: file !== undefined,
          via: location?.via ?? null,
        },
        context: {
          name: name ?? null,
          from: options.context ? "flag" : name ? "kubeconfig" : null,
        },
        settings,
      };
      if (options.output !== "text") context.io.stdout(formatStructured(doc, options.output));
      else context.io.stdout(formatView(doc, env("HOME")).join("\n") + "\n");
    });
}

/**
 * The text form of `vif config view`.
 *
 * @param doc what it shows
 * @param home the home directory, shown as ~
 * @returns the lines
 */
function formatView(doc: ConfigView, home: string | undefined): string[] {
  const short = (path: string) =>
    home && home !== "/" && path.startsWith(`${home}/`) ? `~${path.slice(home.length)}` : path;
  const file = doc.file.path === null
    ? "none (neither XDG_CONFIG_HOME nor HOME is set)"
    : doc.file.found
    ? short(doc.file.path)
    : `${short(doc.file.path)} (not found: vif's defaults)`;
  const context = doc.context.name === null
    ? "none (no kubeconfig context)"
    : doc.context.from === "flag"
    ? `${doc.context.name} (--context)`
    : `${doc.context.name} (the kubeconfig's current context)`;
  const rows = [["SETTING", "VALUE", "FROM"]];
  for (const key of SETTING_KEYS) {
    const s = doc.settings[key];
    const value = Array.isArray(s.value)
      ? (s.value.length ? s.value.join(", ") : "none")
      : String(s.value);
    const from = s.from === "flag"
      ? s.flag
      : s.from === "file"
      ? `${short(s.file)}:${s.line} (${s.section})`
      : s.from === "kubeconfig"
      ? `the kubeconfig (context ${s.context})`
      : "vif's default";
    rows.push([key, value, from]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [
    `Config file:  ${file}`,
    `Context:      ${context}`,
    "",
    ...rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i]!)).join("  ")),
  ];
}
