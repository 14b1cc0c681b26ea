/**
 * `-o, --output` as kubectl has it: every command that prints a structure for
 * scripts takes `json` and `yaml` (and `text`, the default, for people). One
 * option builder and one printer, so the choices, the help text and the
 * rendering are the same everywhere.
 *
 * YAML comes from js-yaml (already in the lock through client-node), which
 * quotes whatever a YAML 1.1 or 1.2 reader could take for something else.
 *
 * @example
 * ```ts
 * import { formatStructured } from "./output.ts";
 *
 * if (formatStructured({ a: 1 }, "json") !== '{\n  "a": 1\n}\n') throw new Error("json");
 * if (formatStructured({ a: 1 }, "yaml") !== "a: 1\n") throw new Error("yaml");
 * ```
 *
 * @module
 */

import { Option } from "commander";
import { dump } from "js-yaml";

/** What `-o` accepts. */
export type OutputFormat = "text" | "json" | "yaml";

/** The structured formats: those a script reads. */
export type StructuredFormat = Exclude<OutputFormat, "text">;

/**
 * The `-o, --output <format>` option: text, json or yaml, text by default.
 *
 * @param what What the structured output holds, for the help ("the status").
 * @param formats The accepted formats, when a command has no text form.
 * @returns The option, to pass to `addOption`.
 */
export function outputOption(
  what?: string,
  formats: readonly OutputFormat[] = ["text", "json", "yaml"],
): Option {
  const list = formats.length > 1
    ? `${formats.slice(0, -1).join(", ")} or ${formats.at(-1)}`
    : formats[0]!;
  return new Option("-o, --output <format>", what ? `${list} (${what})` : list)
    .choices([...formats])
    .default(formats[0]!);
}

/**
 * Renders a value for `-o json` or `-o yaml`: JSON indented by two, YAML in
 * block style with keys in the object's order. `undefined` members are left
 * out in both, as `JSON.stringify` does.
 *
 * @param value A JSON value (objects with `toJSON` are rendered through it).
 * @param format `json` or `yaml`.
 * @returns The text, ending in a newline.
 */
export function formatStructured(value: unknown, format: StructuredFormat): string {
  const json = JSON.stringify(value, null, 2);
  if (format === "json") return json + "\n";
  // Through JSON first: the YAML then holds exactly what the JSON would.
  return dump(JSON.parse(json ?? "null"), { lineWidth: -1, noRefs: true });
}

/**
 * Renders a list of documents as one YAML stream (`---` between them) or one
 * JSON `List`, as `kubectl get -o` prints several objects.
 *
 * @param values The documents.
 * @param format `json` or `yaml`.
 * @returns The text, ending in a newline.
 */
export function formatStructuredList(values: readonly unknown[], format: StructuredFormat): string {
  if (format === "json") {
    return formatStructured({ apiVersion: "v1", kind: "List", items: values }, "json");
  }
  return values.map((v) => formatStructured(v, "yaml")).join("---\n");
}
