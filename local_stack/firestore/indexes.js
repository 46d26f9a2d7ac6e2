// The indexes production Firestore would have, and the queries it refuses without them.
//
// Production answers a query only from an index: a field exempt from single-field indexing
// (google_firestore_field with an empty index_config) cannot be filtered or ordered on, and
// a query that is not equality filters alone (or one field filtered and ordered alone)
// needs a composite index (google_firestore_index). Both are FAILED_PRECONDITION. The same
// rule, in Python, is local_stack/terraform_exemptions.py's query_refusal (the simulator's).
"use strict";

const { status: Status } = require("@grpc/grpc-js");

// StructuredQuery.FieldFilter.Operator values served by equality indexes.
const EQUALITY_OPERATORS = new Set([5, 7, 8, 9]); // EQUAL, ARRAY_CONTAINS, IN, ARRAY_CONTAINS_ANY
const DESCENDING = 2;

class QueryRefusedError extends Error {
  constructor(message) {
    super(message);
    this.code = Status.FAILED_PRECONDITION;
    this.details = message;
  }
}

/** A collection id pattern: `*` stands for any characters (a tasks collection of any name). */
function collectionMatcher(pattern) {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}

/**
 * `{exempt: [{collection, field}], composite: [{collection, fields: [{field_path, order}]}]}`
 * as Terraform declares them; `collection` may hold `*`.
 */
class QueryIndexes {
  constructor({ exempt = [], composite = [] } = {}) {
    this.exempt = exempt.map(({ collection, field }) => {
      if (typeof collection !== "string" || typeof field !== "string" || !collection || !field) {
        throw new TypeError("an exempt field needs a non-empty `collection` and `field`");
      }
      return { collection, field, matches: collectionMatcher(collection) };
    });
    this.composite = composite.map(({ collection, fields }) => {
      if (typeof collection !== "string" || !Array.isArray(fields) || fields.length === 0) {
        throw new TypeError("a composite index needs a `collection` and a list of `fields`");
      }
      return {
        collection,
        fields: fields.map(({ field_path, order = "ASCENDING" }) => ({ field_path, order })),
        matches: collectionMatcher(collection),
      };
    });
  }

  isExempt(collectionId, fieldPath, exemptions) {
    const covered = ({ field }) => fieldPath === field || fieldPath.startsWith(`${field}.`);
    return (
      this.exempt.some((entry) => entry.matches.test(collectionId) && covered(entry)) ||
      (exemptions?.covers(collectionId, fieldPath) ?? false)
    );
  }

  /** Throws QueryRefusedError if production could not serve `query` (a StructuredQuery). */
  check(query, exemptions) {
    const collectionId = query.from?.[0]?.collection_id;
    if (!collectionId || query.from[0].all_descendants) return;
    const filters = has(query, "where") ? fieldFilters(query.where) : [];
    const orders = (query.order_by ?? []).map((order) => ({
      field: order.field.field_path,
      order: order.direction === DESCENDING ? "DESCENDING" : "ASCENDING",
    }));
    for (const field of [...filters.map((f) => f.field), ...orders.map((o) => o.field)]) {
      if (field !== "__name__" && this.isExempt(collectionId, field, exemptions)) {
        throw new QueryRefusedError(
          `the query on ${collectionId} uses the field ${field}, which Terraform exempts from ` +
            "indexing (google_firestore_field with an empty index_config): no index can serve it",
        );
      }
    }
    const equality = new Set(filters.filter((f) => f.equality).map((f) => f.field));
    let ordered = orders.filter((o) => o.field !== "__name__");
    if (ordered.length === 0) {
      const inequality = [...new Set(filters.filter((f) => !f.equality).map((f) => f.field))];
      ordered = inequality.sort().map((field) => ({ field, order: "ASCENDING" }));
    }
    if (ordered.length === 0) return;
    if (equality.size === 0 && new Set(ordered.map((o) => o.field)).size === 1) return;
    const served = this.composite.some((index) => {
      if (!index.matches.test(collectionId)) return false;
      const head = index.fields.slice(0, equality.size);
      const tail = index.fields.slice(equality.size);
      return (
        head.length === equality.size &&
        head.every((f) => equality.has(f.field_path)) &&
        new Set(head.map((f) => f.field_path)).size === equality.size &&
        tail.length === ordered.length &&
        tail.every((f, i) => f.field_path === ordered[i].field && f.order === ordered[i].order)
      );
    });
    if (!served) {
      const wanted = [
        ...[...equality].sort(),
        ...ordered.map((o) => `${o.field} ${o.order.toLowerCase()}`),
      ].join(", ");
      throw new QueryRefusedError(
        `the query on ${collectionId} needs a composite index (${wanted}) that Terraform does ` +
          "not declare (google_firestore_index)",
      );
    }
  }

  toJSON() {
    return {
      exempt: this.exempt.map(({ collection, field }) => ({ collection, field })),
      composite: this.composite.map(({ collection, fields }) => ({ collection, fields })),
    };
  }
}

/** Whether a protobuf message sets `name` (generated messages answer `has_<name>`). */
function has(message, name) {
  const flag = message?.[`has_${name}`];
  return flag === undefined ? message?.[name] != null : Boolean(flag);
}

/** Every field filter of a query's `where`: [{field, equality}]. */
function fieldFilters(where) {
  if (has(where, "field_filter")) {
    const { field, op } = where.field_filter;
    return [{ field: field.field_path, equality: EQUALITY_OPERATORS.has(op) }];
  }
  if (has(where, "unary_filter")) {
    return [{ field: where.unary_filter.field.field_path, equality: true }];
  }
  if (has(where, "composite_filter")) {
    return (where.composite_filter.filters ?? []).flatMap(fieldFilters);
  }
  return [];
}

module.exports = { QueryIndexes, QueryRefusedError };
