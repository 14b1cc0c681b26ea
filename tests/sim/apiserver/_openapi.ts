/**
 * A minimal `/openapi/v2` document: `swagger: "2.0"`, an `info`, no paths and
 * no definitions.
 *
 * `kubectl` 1.20 validates manifests (`--validate=true`, the default) against
 * the schema it downloads from `/openapi/v2` as protobuf (gnostic's
 * `openapi_v2.Document`); without one it refuses to apply. With no
 * definitions, `validateResource` finds no schema for the kind and skips
 * validation, and `kubectl apply` falls back to the strategic-merge patch
 * metadata compiled into it. So an empty but well-formed document is enough.
 *
 * @module
 */

function field(tag: number, bytes: Uint8Array): Uint8Array {
  // Wire type 2 (length-delimited); every length here is below 128.
  if (bytes.length > 127) throw new RangeError("Field too long for a one-byte length");
  return new Uint8Array([(tag << 3) | 2, bytes.length, ...bytes]);
}

function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/**
 * The media type of the answer. Clients ask for `…spec.v2@v1.0+protobuf`, but
 * Go's `mime.ParseMediaType` rejects the `@`, so kube-openapi answers with a
 * dot instead, and so do we.
 */
export const OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/**
 * The document as gnostic protobuf.
 *
 * @param version the server's gitVersion, for `info.version`
 * @returns the bytes
 */
export function openApiV2Protobuf(version: string): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array([...field(1, text("Kubernetes")), ...field(2, text(version))]);
  return new Uint8Array([
    ...field(1, text("2.0")), // swagger
    ...field(2, info), // info
    ...field(8, new Uint8Array()), // paths
    ...field(9, new Uint8Array()), // definitions
  ]);
}

/**
 * The same document as JSON.
 *
 * @param version the server's gitVersion
 * @returns the document
 */
export function openApiV2Json(version: string): Record<string, unknown> {
  return {
    swagger: "2.0",
    info: { title: "Kubernetes", version },
    paths: {},
    definitions: {},
  };
}
