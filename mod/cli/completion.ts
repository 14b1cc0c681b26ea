/**
 * `vif completion bash|zsh|fish`: prints a script that makes the shell
 * complete vif's commands, flags and flag values, kubeconfig contexts, and
 * namespaces and workloads from the API server. The scripts are thin: on
 * every Tab they run the hidden `vif __complete`, which walks the live
 * commander tree (so a new command or flag completes with no list to keep)
 * and prints the candidates.
 *
 * The protocol between the two:
 *
 * ```
 * vif __complete -- WORD...          zsh, fish: the words after `vif`, the last one the word being typed
 * vif __complete --line -- LINE      bash: the command line up to the cursor, split here as the shell would
 *
 * words|files                        line 1: candidates follow, or let the shell complete file names
 * WORD                               line 2: the word being completed, unquoted
 * CANDIDATE[\tDESCRIPTION]           one a line, each a whole replacement for WORD
 * ```
 *
 * What the API part costs: the kubeconfig is read with js-yaml
 * (`mod/kube/quick_access.ts`), not with `@kubernetes/client-node` (loading
 * that takes most of a second), and
 * requests go through the small REST client of `mod/kube/api.ts`. The
 * credentials are the user's own (a token, a client certificate, an exec
 * plugin run as the user); everything that talks to the API server shares
 * one deadline of about a second. Any failure prints nothing and exits 0:
 * a Tab must never print an error into the user's command line.
 *
 * @module
 */

import { Argument, type Command, type Option } from "commander";
import { join } from "node:path";
import type { KubeApi } from "../kube/api.ts";
import { kubeconfigContexts, quickAccess } from "../kube/quick_access.ts";
import { isNamespaceName } from "../net/dns_name.ts";
import type { CliContext } from "./context.ts";

/** The shells `vif completion` writes a script for. */
export const COMPLETION_SHELLS = ["bash", "zsh", "fish"] as const;

/** One of {@linkcode COMPLETION_SHELLS}. */
export type CompletionShell = typeof COMPLETION_SHELLS[number];

/** One thing the shell may put in place of the word being typed. */
export interface Candidate {
  /** The whole word (`--output=json`, not `json`, when `--output=j` is typed). */
  value: string;
  /** One line for shells that show it (zsh, fish). */
  description?: string;
}

/** What {@linkcode complete} found for the word at the cursor. */
export interface Completions {
  /** `words`: {@linkcode Completions.candidates}; `files`: the shell completes file names. */
  mode: "words" | "files";
  /** The word being completed, unquoted. */
  word: string;
  /** The candidates, each starting with {@linkcode Completions.word}. */
  candidates: Candidate[];
}

/** Options of {@linkcode complete}. */
export interface CompleteOptions {
  /**
   * Reads an environment variable (`KUBECONFIG`, `HOME`, `PATH` for exec
   * plugins). Default: an empty environment (no kubeconfig, so no contexts).
   */
  env?: (name: string) => string | undefined;
  /** How long everything that talks to the API server may take, in ms. Default 1000. */
  timeoutMs?: number;
}

/** Reads an environment variable; undefined when unset. */
type Env = (name: string) => string | undefined;

/** {@linkcode CompleteOptions} with the defaults filled in. */
interface Settings {
  env: Env;
  timeoutMs: number;
}

/** The whole time the API part of one completion may take. */
const API_BUDGET_MS = 1000;

/** At most this many candidates come from a list call (the API server's `limit`). */
const LIST_LIMIT = 500;

/** An object name (RFC 1123 subdomain). */
const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Characters no candidate may hold: they would break the one-a-line protocol or the terminal. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/** The workload kinds `vif intercept` takes, with their `apps/v1` resources. */
const WORKLOAD_KINDS = [
  ["Deployment", "deployments"],
  ["StatefulSet", "statefulsets"],
  ["ReplicaSet", "replicasets"],
] as const;

/**
 * Option values that come from the kubeconfig or the API server, by long flag.
 * Every other value is one of the option's choices, or a file name when its
 * placeholder says so (`<file>`, `<dir>`).
 */
const VALUE_SOURCES: Record<string, "contexts" | "namespaces"> = {
  "--context": "contexts",
  "--namespace": "namespaces",
  "--manager-namespace": "namespaces",
};

/**
 * Positional arguments that name something to look up, by command and
 * argument name. `intercept` and `leave` take a workload; `help` a command.
 */
const ARGUMENT_SOURCES: Record<string, "workloads" | "commands"> = {
  "intercept name": "workloads",
  "leave name": "workloads",
  "help command": "commands",
};

/**
 * The completion script for a shell. It calls `vif __complete` on every Tab,
 * so it stays the same as vif gains commands and flags.
 *
 * @param shell `bash`, `zsh` or `fish`.
 * @returns The script, ending in a newline.
 *
 * @example
 * ```ts
 * import { completionScript } from "./completion.ts";
 *
 * if (!completionScript("bash").includes("complete -F _vif vif")) throw new Error("no bash hook");
 * if (!completionScript("fish").includes("complete -c vif")) throw new Error("no fish hook");
 * ```
 */
export function completionScript(shell: CompletionShell): string {
  return SCRIPTS[shell];
}

const BASH_SCRIPT = `# bash completion for vif.
# Load it in this shell:  source <(vif completion bash)
# or for every shell:     vif completion bash > ~/.local/share/bash-completion/completions/vif
#
# vif splits the line itself (quotes, --flag=value). Readline replaces only
# the text after the last ':' or '=' (COMP_WORDBREAKS), so each candidate
# loses what comes before that; a word of only '=' or ':' is nothing to replace.
_vif() {
    local cur=\${COMP_WORDS[COMP_CWORD]} line=\${COMP_LINE:0:COMP_POINT}
    local mode= word= pre= reply n=0
    COMPREPLY=()
    [[ $cur == [=:] ]] && cur=
    while IFS= read -r reply; do
        if ((n == 0)); then
            mode=$reply
        elif ((n == 1)); then
            word=$reply
            if [[ $word == *"$cur" ]]; then pre=\${word%"$cur"}; fi
        elif [[ $mode == words ]]; then
            reply=\${reply%%$'\\t'*}
            COMPREPLY+=("\${reply#"$pre"}")
        fi
        n=$((n + 1))
    done < <(vif __complete --line -- "$line" 2>/dev/null)
    if [[ $mode == files ]]; then
        local file
        compopt -o filenames 2>/dev/null
        while IFS= read -r file; do
            COMPREPLY+=("$file")
        done < <(compgen -f -- "$cur")
    fi
    return 0
}
complete -F _vif vif
`;

const ZSH_SCRIPT = `#compdef vif
# zsh completion for vif.
# Load it in this shell (after compinit):  source <(vif completion zsh)
# or for every shell: vif completion zsh > ~/.zfunc/_vif, with
# fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc.
_vif() {
  local -a lines described
  local line name
  lines=("\${(@f)$(vif __complete -- "\${(@Q)words[2,CURRENT-1]}" "\${(Q)PREFIX}" 2>/dev/null)}")
  if [[ \${lines[1]} == files ]]; then
    [[ $PREFIX == -*=* ]] && compset -P '*='
    _files
    return
  fi
  [[ \${lines[1]} == words ]] || return 1
  for line in "\${(@)lines[3,-1]}"; do
    [[ -n $line ]] || continue
    name=\${line%%$'\\t'*}
    name=\${name//:/\\\\:}
    if [[ $line == *$'\\t'* ]]; then
      described+=("$name:\${line#*$'\\t'}")
    else
      described+=("$name")
    fi
  done
  (( \${#described} )) && _describe -t values vif described
}
if [[ \${funcstack[1]} == _vif ]]; then
  _vif "$@"
else
  compdef _vif vif
fi
`;

const FISH_SCRIPT = `# fish completion for vif.
# Load it in this shell:  vif completion fish | source
# or for every shell:     vif completion fish > ~/.config/fish/completions/vif.fish
function __vif_complete
    set -l words (commandline -opc)
    set -e words[1]
    set -l cur (commandline -ct)
    set -l lines (vif __complete -- $words "$cur" 2>/dev/null)
    if test "$lines[1]" = files
        set -l flag (string match -r -- '^-[^=]*=' "$cur")
        set -l path (string replace -r -- '^-[^=]*=' '' "$cur")
        __fish_complete_path "$path" | string replace -r -- '^' "$flag"
        return 0
    end
    test "$lines[1]" = words; or return 0
    set -e lines[1..2]
    printf '%s\\n' $lines
end
complete -c vif -f -a '(__vif_complete)'
`;

const SCRIPTS: Record<CompletionShell, string> = {
  bash: BASH_SCRIPT,
  zsh: ZSH_SCRIPT,
  fish: FISH_SCRIPT,
};

/**
 * Splits a command line into words as a POSIX shell would, for completion:
 * single and double quotes and backslashes, no expansion. The last word is
 * the one at the cursor: empty when the line ends in a space, the rest of
 * the line when a quote is still open.
 *
 * @param line The line up to the cursor.
 * @returns The words, unquoted; at least one.
 *
 * @example
 * ```ts
 * import { splitCommandLine } from "./completion.ts";
 *
 * const words = splitCommandLine(`vif connect --kubeconfig "my config" `);
 * if (words.join("|") !== "vif|connect|--kubeconfig|my config|") throw new Error(words.join("|"));
 * ```
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === "'") {
      inWord = true;
      const end = line.indexOf("'", i + 1);
      word += line.slice(i + 1, end < 0 ? line.length : end);
      i = end < 0 ? line.length : end + 1;
    } else if (c === '"') {
      inWord = true;
      i++;
      while (i < line.length && line[i] !== '"') {
        const next = line[i + 1];
        if (line[i] === "\\" && next !== undefined && '"\\$`\n'.includes(next)) {
          if (next !== "\n") word += next;
          i += 2;
        } else {
          word += line[i];
          i++;
        }
      }
      i++; // The closing quote.
    } else if (c === "\\") {
      inWord = true;
      const next = line[i + 1];
      if (next !== undefined && next !== "\n") word += next;
      i += 2;
    } else if (c === " " || c === "\t" || c === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
    } else {
      inWord = true;
      word += c;
      i++;
    }
  }
  words.push(word);
  return words;
}

/**
 * Renders {@linkcode Completions} in the protocol the scripts read: the mode,
 * the word, then one candidate a line (`value\tdescription` when described).
 * A candidate with a control character in its value is left out; one in its
 * description loses the description.
 *
 * @param completions What to print.
 * @returns The text, ending in a newline.
 *
 * @example
 * ```ts
 * import { formatCompletions } from "./completion.ts";
 *
 * const text = formatCompletions({
 *   mode: "words",
 *   word: "con",
 *   candidates: [{ value: "connect", description: "connect to a cluster" }],
 * });
 * if (text !== "words\ncon\nconnect\tconnect to a cluster\n") throw new Error(text);
 * ```
 */
export function formatCompletions(completions: Completions): string {
  const lines = [completions.mode, completions.word.replace(/\n/g, " ")];
  for (const { value, description } of completions.candidates) {
    if (value === "" || CONTROL.test(value)) continue;
    const shown = description === undefined ? "" : description.replace(/\s+/g, " ").trim();
    lines.push(shown === "" || CONTROL.test(shown) ? value : `${value}\t${shown}`);
  }
  return lines.join("\n") + "\n";
}

/** Where the walk of the words before the cursor ended. */
interface LineState {
  /** The command being typed. */
  command: Command;
  /** Its positional arguments so far. */
  operands: string[];
  /** The last value of each value option given, by its long flag (else its short one). */
  values: Map<string, string>;
  /** Whether `--` came: every word after it is an operand. */
  afterDashDash: boolean;
  /** An option whose value the word at the cursor is (`--context <TAB>`). */
  valueFor?: Option;
  /** Whether that option's value is optional (`--dry-run [strategy]`). */
  optionalValue?: boolean;
}

/**
 * Completes the word at the cursor: a command, a flag of the command being
 * typed, a flag's value (its choices, a kubeconfig context, a namespace, a
 * file name), or an argument (a workload for `intercept` and `leave`).
 * Namespaces and workloads are asked of the API server as the user, within
 * {@linkcode CompleteOptions.timeoutMs}; a failure there gives no candidates.
 *
 * @param program The root command, with every command registered.
 * @param words The words after the program name; the last is the one being typed.
 * @param options The environment and the time allowed.
 * @returns The candidates, each starting with the word.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { complete } from "./completion.ts";
 *
 * const program = new Command("vif");
 * program.command("connect");
 * program.command("connections");
 * const found = await complete(program, ["conne"], { env: () => undefined });
 * if (found.candidates.map((c) => c.value).join() !== "connect,connections") throw new Error();
 * ```
 */
export async function complete(
  program: Command,
  words: readonly string[],
  options: CompleteOptions = {},
): Promise<Completions> {
  const all = words.length === 0 ? [""] : words;
  const word = all[all.length - 1]!;
  const state = walk(program, all.slice(0, -1));
  const settings = {
    env: options.env ?? (() => undefined),
    timeoutMs: options.timeoutMs ?? API_BUDGET_MS,
  };
  const found = await candidatesFor(program, state, word, settings);
  if (found === "files") return { mode: "files", word, candidates: [] };
  const seen = new Set<string>();
  const candidates = found.filter((c) =>
    c.value.startsWith(word) && !seen.has(c.value) && seen.add(c.value)
  );
  return { mode: "words", word, candidates };
}

/** Follows the words before the cursor through the command tree, as commander would parse them. */
function walk(program: Command, words: readonly string[]): LineState {
  const state: LineState = {
    command: program,
    operands: [],
    values: new Map(),
    afterDashDash: false,
  };
  const setValue = (option: Option, value: string) => {
    state.values.set(option.long ?? option.short ?? option.flags, value);
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const last = i === words.length - 1;
    if (state.afterDashDash) {
      state.operands.push(w);
    } else if (w === "--") {
      state.afterDashDash = true;
    } else if (w.startsWith("--")) {
      const eq = w.indexOf("=");
      const option = findOption(state.command, eq < 0 ? w : w.slice(0, eq));
      if (option === undefined || option.isBoolean()) continue;
      if (eq >= 0) {
        setValue(option, w.slice(eq + 1));
      } else if (option.required) {
        if (last) state.valueFor = option;
        else setValue(option, words[++i]!);
      } else if (last) {
        state.valueFor = option;
        state.optionalValue = true;
      } else if (!words[i + 1]!.startsWith("-")) {
        setValue(option, words[++i]!);
      }
    } else if (w.startsWith("-") && w.length > 1) {
      // A cluster of short flags (`-qo json`, `-ojson`): the first one that
      // takes a value takes the rest of the word, or the next word.
      for (let j = 1; j < w.length; j++) {
        const option = findOption(state.command, `-${w[j]}`);
        if (option === undefined || option.isBoolean()) continue;
        const rest = w.slice(j + 1);
        if (rest !== "") setValue(option, rest);
        else if (option.required && last) state.valueFor = option;
        else if (option.required) setValue(option, words[++i]!);
        else if (last) [state.valueFor, state.optionalValue] = [option, true];
        break;
      }
    } else {
      const sub = state.operands.length === 0 ? findCommand(state.command, w) : undefined;
      if (sub !== undefined) {
        state.command = sub;
        state.operands = [];
      } else {
        state.operands.push(w);
      }
    }
  }
  return state;
}

/** The option `flag` (`--context`, `-n`) of `command` or of a command above it. */
function findOption(command: Command, flag: string): Option | undefined {
  for (let c: Command | null = command; c !== null; c = c.parent) {
    const option = c.options.find((o) => o.long === flag || o.short === flag);
    if (option !== undefined) return option;
  }
  return undefined;
}

/** The subcommand `name` (or alias) of `command`, hidden ones included. */
function findCommand(command: Command, name: string): Command | undefined {
  return command.commands.find((c) => c.name() === name || c.aliases().includes(name));
}

async function candidatesFor(
  program: Command,
  state: LineState,
  word: string,
  options: Settings,
): Promise<Candidate[] | "files"> {
  const { command } = state;
  if (state.valueFor !== undefined) {
    if (!state.optionalValue) return await valuesOf(state.valueFor, state, options);
    if (!word.startsWith("-")) return choicesOf(state.valueFor);
  }
  if (state.afterDashDash) return "files";
  if (word.startsWith("--") && word.includes("=")) {
    const eq = word.indexOf("=");
    const option = findOption(command, word.slice(0, eq));
    if (option === undefined || option.isBoolean()) return [];
    const values = await valuesOf(option, state, options);
    if (values === "files") return "files";
    return values.map((c) => ({ ...c, value: `${word.slice(0, eq + 1)}${c.value}` }));
  }
  if (/^-[^-]/.test(word) && word.length > 2) {
    // `-ojs`: the value of a short option, in the same word.
    const option = findOption(command, word.slice(0, 2));
    if (option !== undefined && !option.isBoolean()) {
      const values = await valuesOf(option, state, options);
      if (values === "files") return "files";
      return values.map((c) => ({ ...c, value: `${word.slice(0, 2)}${c.value}` }));
    }
  }
  if (word.startsWith("-")) return flagsOf(command);
  if (state.operands.length === 0 && command.commands.length > 0) {
    return commandsOf(command, word);
  }
  const declared = command.registeredArguments;
  const index = state.operands.length;
  const argument = index < declared.length
    ? declared[index]
    : declared.at(-1)?.variadic
    ? declared.at(-1)
    : undefined;
  if (argument === undefined) return [];
  if (argument.argChoices) return argument.argChoices.map((value) => ({ value }));
  const source = ARGUMENT_SOURCES[`${command.name()} ${argument.name()}`];
  if (source === "commands") return commandsOf(program, word);
  if (source === "workloads" && index === 0) {
    return await fromApi(state, options, workloadsIn);
  }
  return [];
}

/** The visible subcommands of `command`, and an alias when it is what is being typed. */
function commandsOf(command: Command, word: string): Candidate[] {
  const found: Candidate[] = [];
  for (const sub of command.createHelp().visibleCommands(command)) {
    const description = firstLine(sub.summary() || sub.description());
    for (const name of [sub.name(), ...sub.aliases()]) {
      if (name === sub.name() || (word !== "" && name.startsWith(word))) {
        found.push({ value: name, description });
      }
    }
  }
  return found;
}

/** The visible flags of `command`, long and short, help included. */
function flagsOf(command: Command): Candidate[] {
  const found: Candidate[] = [];
  for (const option of command.createHelp().visibleOptions(command)) {
    const description = firstLine(option.description);
    for (const flag of [option.long, option.short]) {
      if (flag) found.push({ value: flag, description });
    }
  }
  return found;
}

function choicesOf(option: Option): Candidate[] {
  return (option.argChoices ?? []).map((value) => ({ value }));
}

/** The values of a value option: its choices, contexts, namespaces, or file names. */
async function valuesOf(
  option: Option,
  state: LineState,
  options: Settings,
): Promise<Candidate[] | "files"> {
  if (option.argChoices) return choicesOf(option);
  const source = VALUE_SOURCES[option.long ?? ""];
  if (source === "contexts") return contextsOf(kubeconfigOf(state, options.env), options.env);
  if (source === "namespaces") return await fromApi(state, options, namespacesOf);
  // `<file>`, `<dir>`, `<dir|true|false>`: the shell knows file names best.
  return /[<[][^>\]]*(file|dir|path)/i.test(option.flags) ? "files" : [];
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.trim();
}

/** `--kubeconfig` as given on the line, `~/` expanded. */
function kubeconfigOf(state: LineState, env: Env): string | undefined {
  const given = state.values.get("--kubeconfig");
  if (given === undefined || given === "") return undefined;
  const home = env("HOME");
  return given.startsWith("~/") && home ? join(home, given.slice(2)) : given;
}

/** The contexts of the kubeconfig, described by their cluster and namespace. */
function contextsOf(explicit: string | undefined, env: Env): Candidate[] {
  return kubeconfigContexts(explicit, env).map(({ name, cluster, namespace }) => {
    const parts = [cluster ? `cluster ${cluster}` : "", namespace ? `namespace ${namespace}` : ""]
      .filter((p) => p !== "");
    return { value: name, description: parts.join(", ") };
  });
}

type Lister = (api: KubeApi, state: LineState, namespace: string) => Promise<Candidate[]>;

/**
 * Asks the API server, as the user in the line's context, within the time
 * allowed; any failure (no kubeconfig, no answer, 403) gives nothing.
 */
async function fromApi(
  state: LineState,
  options: Settings,
  list: Lister,
): Promise<Candidate[]> {
  const deadline = Date.now() + options.timeoutMs;
  const work = (async () => {
    const kubeconfig = kubeconfigOf(state, options.env);
    const context = state.values.get("--context");
    const as = state.values.get("--as");
    const found = await quickAccess(options.env, {
      deadline,
      ...(kubeconfig !== undefined ? { kubeconfig } : {}),
      ...(context ? { context } : {}),
      ...(as ? { as } : {}),
    });
    const ms = deadline - Date.now();
    if (found === undefined || ms <= 0) return [];
    const { kubeApi } = await import("../kube/api.ts");
    const api = kubeApi(found.access, { timeoutMs: ms });
    return await list(api, state, found.namespace);
  })();
  return await beforeDeadline(work.catch(() => []), deadline) ?? [];
}

/** `promise`'s value, or undefined when it has not settled by `deadline`. */
async function beforeDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((done) => {
    timer = setTimeout(() => done(undefined), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The names in a list answer that pass `check`, at most {@linkcode LIST_LIMIT}. */
function namesIn(
  list: unknown,
  check: (name: string) => boolean,
): { name: string; item: Record<string, unknown> }[] {
  const items = isRecord(list) && Array.isArray(list.items) ? list.items : [];
  const found: { name: string; item: Record<string, unknown> }[] = [];
  for (const item of items.slice(0, LIST_LIMIT)) {
    const meta = isRecord(item) && isRecord(item.metadata) ? item.metadata : {};
    if (typeof meta.name === "string" && check(meta.name)) {
      found.push({ name: meta.name, item: meta });
    }
  }
  return found;
}

/** Every namespace the user may list. */
async function namespacesOf(api: KubeApi): Promise<Candidate[]> {
  const list = await api.get(`/api/v1/namespaces?limit=${LIST_LIMIT}`);
  return namesIn(list, isNamespaceName).map(({ name }) => ({ value: name })).sort(byValue);
}

/**
 * What `vif intercept` takes in the namespace of `-n`, else the context's:
 * Deployments, StatefulSets, and ReplicaSets no Deployment owns.
 */
async function workloadsIn(
  api: KubeApi,
  state: LineState,
  contextNamespace: string,
): Promise<Candidate[]> {
  const given = state.values.get("--namespace");
  const namespace = given !== undefined && isNamespaceName(given) ? given : contextNamespace;
  const lists = await Promise.all(WORKLOAD_KINDS.map(([, resource]) =>
    api.get(
      `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/${resource}?limit=${LIST_LIMIT}`,
    ).catch(() => undefined)
  ));
  const kinds = new Map<string, string[]>();
  WORKLOAD_KINDS.forEach(([kind], i) => {
    for (const { name, item } of namesIn(lists[i], (n) => DNS_SUBDOMAIN.test(n))) {
      const owners = Array.isArray(item.ownerReferences) ? item.ownerReferences : [];
      const owned = owners.some((o) =>
        isRecord(o) && o.controller === true && o.kind === "Deployment"
      );
      if (kind === "ReplicaSet" && owned) continue;
      kinds.set(name, [...kinds.get(name) ?? [], kind]);
    }
  });
  return [...kinds].map(([value, k]) => ({ value, description: k.join(", ") })).sort(byValue);
}

function byValue(a: Candidate, b: Candidate): number {
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const COMPLETION_HELP = `
Load it in the running shell:
  bash:  source <(vif completion bash)
  zsh:   source <(vif completion zsh)     (after compinit)
  fish:  vif completion fish | source

Or for every new shell:
  bash:  vif completion bash > ~/.local/share/bash-completion/completions/vif
  zsh:   vif completion zsh > ~/.zfunc/_vif  (and fpath=(~/.zfunc $fpath) before compinit)
  fish:  vif completion fish > ~/.config/fish/completions/vif.fish

Commands, flags and their values complete, and so do the kubeconfig's
contexts (--context), namespaces (-n, --manager-namespace) and the workloads
of "vif intercept" and "vif leave", asked of the API server as you, for at
most a second; when it does not answer, nothing is offered.`;

/**
 * Adds `vif completion <shell>` and the hidden `vif __complete` that its
 * scripts call to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerCompletion(program: Command, context: CliContext): void {
  program
    .command("completion")
    .description("print the shell completion script for bash, zsh or fish")
    .addArgument(new Argument("<shell>", "the shell").choices([...COMPLETION_SHELLS]))
    .addHelpText("after", COMPLETION_HELP)
    .action((shell: CompletionShell) => {
      context.io.stdout(completionScript(shell));
    });

  program
    .command("__complete", { hidden: true })
    .description("print the candidates for the word at the cursor (the completion scripts call it)")
    .option("--line", "the one argument is the command line up to the cursor (bash)")
    .argument("[words...]", "the words after vif, the last one the word being typed")
    .action(async (words: string[], flags: { line?: boolean }) => {
      try {
        const typed = flags.line ? wordsAfterProgram(words.join(" ")) : words;
        const found = await complete(program, typed, { env: context.io.env });
        context.io.stdout(formatCompletions(found));
      } catch {
        // A Tab prints nothing rather than an error into the command line.
      }
    });
}

/** The words of a command line after the program name (and any `NAME=value` before it). */
function wordsAfterProgram(line: string): string[] {
  const words = splitCommandLine(line);
  let i = 0;
  while (i < words.length - 1 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!)) i++;
  return words.slice(i + 1);
}
