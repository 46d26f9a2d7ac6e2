// Production Firestore's data limits, checked on the document a commit would leave behind.
//
// Rules and sizes from https://cloud.google.com/firestore/quotas and "Storage size
// calculations"; the messages of production's backend where we know them (nested arrays,
// document size), our own wording otherwise. Every refusal is INVALID_ARGUMENT.
"use strict";

const { status: Status } = require("@grpc/grpc-js");

const MAX_DOCUMENT_BYTES = 1_048_576;
const MAX_DEPTH = 20;
// Production truncates longer indexed values, after which queries on them may return
// inconsistent results; the layer refuses them instead, so an un-exempted large field fails
// locally rather than silently misbehaving in production (see README).
const MAX_INDEXED_VALUE_BYTES = 1_500;
const RESERVED_NAME = /^__.*__$/;

class LimitError extends Error {
  constructor(message) {
    super(message);
    this.code = Status.INVALID_ARGUMENT;
    this.details = message;
  }
}

/**
 * Single-field index exemptions, as `google_firestore_field` with an empty `index_config`
 * declares them: a collection id (any collection with that id, as a collection group) and a
 * field path; an exempt map field exempts everything under it.
 */
class IndexExemptions {
  constructor(entries = []) {
    this.entries = entries.map(({ collection, field }) => {
      if (typeof collection !== "string" || !collection || typeof field !== "string" || !field) {
        throw new TypeError("an index exemption needs a non-empty `collection` and `field`");
      }
      return { collection, field };
    });
  }

  covers(collectionId, fieldPath) {
    return this.entries.some(
      ({ collection, field }) =>
        collection === collectionId && (fieldPath === field || fieldPath.startsWith(`${field}.`)),
    );
  }

  toJSON() {
    return this.entries;
  }
}

function utf8Bytes(text) {
  return Buffer.byteLength(text, "utf8");
}

/** "coll/doc/sub/doc2" -> size of a document name: each segment's bytes + 1, plus 16. */
function documentNameSize(relativePath) {
  return relativePath.split("/").reduce((sum, segment) => sum + utf8Bytes(segment) + 1, 16);
}

/** Size of a v1 Value object (toV1DocumentObject's shape), per Firestore's storage rules. */
function valueSize(value) {
  if ("string_value" in value) return utf8Bytes(value.string_value) + 1;
  if ("map_value" in value) return fieldsSize(value.map_value.fields ?? {});
  if ("array_value" in value) {
    return (value.array_value.values ?? []).reduce((sum, item) => sum + valueSize(item), 0);
  }
  if ("bytes_value" in value) return Buffer.from(value.bytes_value ?? []).length;
  if ("reference_value" in value) {
    return documentNameSize(value.reference_value.split("/documents/")[1] ?? "");
  }
  if ("geo_point_value" in value) return 16;
  if ("boolean_value" in value || "null_value" in value) return 1;
  return 8; // integer, double, timestamp
}

function fieldsSize(fields) {
  let sum = 0;
  for (const [name, value] of Object.entries(fields)) sum += utf8Bytes(name) + 1 + valueSize(value);
  return sum;
}

function escapeSegment(name) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : `\`${name.replace(/[`\\]/g, "\\$&")}\``;
}

/**
 * Throws LimitError if production Firestore would refuse to store `document`
 * (a v1 document object) at `relativePath` ("collection/doc[/collection/doc...]").
 */
function checkDocument(relativePath, document, exemptions, options = {}) {
  const fields = document.fields ?? {};
  const segments = relativePath.split("/");
  const collectionId = segments[segments.length - 2];
  const maxIndexed = options.maxIndexedValueBytes ?? MAX_INDEXED_VALUE_BYTES;

  const visit = (value, fieldPath, depth, insideArray) => {
    if ("array_value" in value) {
      if (insideArray) throw new LimitError("Cannot convert an array value in an array value.");
      checkDepth(depth + 1, fieldPath);
      for (const item of value.array_value.values ?? []) visit(item, fieldPath, depth + 1, true);
      return;
    }
    if ("map_value" in value) {
      checkDepth(depth + 1, fieldPath);
      visitFields(value.map_value.fields ?? {}, fieldPath, depth + 1);
      return;
    }
    let bytes = null;
    if ("string_value" in value) bytes = utf8Bytes(value.string_value);
    else if ("bytes_value" in value) bytes = Buffer.from(value.bytes_value ?? []).length;
    if (
      maxIndexed !== null &&
      bytes !== null &&
      bytes > maxIndexed &&
      !exemptions.covers(collectionId, fieldPath)
    ) {
      throw new LimitError(
        `The value of field "${fieldPath}" in document '${relativePath}' is ${bytes} bytes, ` +
          `longer than the ${maxIndexed} bytes an indexed value may have: exempt the field ` +
          `from single-field indexing (google_firestore_field with an empty index_config).`,
      );
    }
  };
  const checkDepth = (depth, fieldPath) => {
    if (depth > MAX_DEPTH) {
      throw new LimitError(
        `Field "${fieldPath}" in document '${relativePath}' nests maps and arrays ${depth} ` +
          `levels deep; the maximum depth is ${MAX_DEPTH}.`,
      );
    }
  };
  const visitFields = (entries, parentPath, depth) => {
    for (const [name, value] of Object.entries(entries)) {
      const fieldPath = parentPath ? `${parentPath}.${escapeSegment(name)}` : escapeSegment(name);
      if (RESERVED_NAME.test(name)) {
        throw new LimitError(
          `Field name "${name}" (at "${fieldPath}") in document '${relativePath}' is reserved: ` +
            `field names must not match __.*__.`,
        );
      }
      visit(value, fieldPath, depth, false);
    }
  };
  visitFields(fields, "", 0);

  const size = documentNameSize(relativePath) + fieldsSize(fields) + 32;
  if (size > MAX_DOCUMENT_BYTES) {
    throw new LimitError(
      `Document '${document.name}' cannot be written because its size ` +
        `(${size.toLocaleString("en-US")} bytes) exceeds the maximum allowed size of ` +
        `${MAX_DOCUMENT_BYTES.toLocaleString("en-US")} bytes.`,
    );
  }
}

module.exports = {
  IndexExemptions,
  LimitError,
  MAX_DEPTH,
  MAX_DOCUMENT_BYTES,
  MAX_INDEXED_VALUE_BYTES,
  checkDocument,
  documentNameSize,
};
