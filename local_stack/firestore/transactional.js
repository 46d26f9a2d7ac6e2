// Firestore's transaction, precondition and commit semantics for @firestore-emulator/server.
//
// Upstream (0.3.15) hands out one dummy transaction id, applies a commit's writes one by one and
// ignores update_time preconditions. This layer replaces BeginTransaction, Rollback, Commit and
// BatchGetDocuments, and wraps RunQuery/RunAggregationQuery, on the upstream gRPC server:
// - every transaction gets its own id; its reads remember the version of each document they saw
//   (including "missing") and the result of each query, and Commit answers ABORTED when any of
//   them changed since, as Firestore does (clients then retry the transaction);
// - a commit checks every precondition (exists, update_time, create conflicts) before it applies
//   any write, and restores the documents it touched if applying still fails;
// - each commit gets a strictly increasing commit time, so update_time preconditions are exact;
// - conflicts are resolved oldest-first (wound-wait, like Firestore's locks): a read-write
//   transaction reading a document another one holds waits for an older holder and wounds a
//   younger one (whose commit then aborts); a commit waits while an older live transaction
//   holds a document it writes. A retried transaction keeps its
//   original age (the client sends the first attempt's id as retry_transaction, and the id
//   encodes the age), so under contention every transaction eventually commits instead of
//   exhausting the client's attempts.
"use strict";

const crypto = require("node:crypto");
const { status: Status } = require("@grpc/grpc-js");
const {
  BatchGetDocumentsResponse,
  BeginTransactionResponse,
  CommitResponse,
} = require("@firestore-emulator/proto/dist/google/firestore/v1/firestore");
const { Empty } = require("@firestore-emulator/proto/dist/google/protobuf/empty");
const { TimestampFromDate } = require("@firestore-emulator/server");
const { CommitFaults } = require("./faults");
const { QueryIndexes, QueryRefusedError } = require("./indexes");
const { IndexExemptions, checkDocument } = require("./limits");

const SERVICE_PATH = "/google.firestore.v1.Firestore";
// An older transaction stops holding back younger commits once idle this long (its client may
// have died); it is forgotten entirely, like Firestore's 60 s idle expiry, after the second.
const DEFAULT_LOCK_IDLE_MS = 5_000;
const DEFAULT_TRANSACTION_IDLE_MS = 60_000;
const CONTENTION_MESSAGE =
  "Aborted due to cross-transaction contention: a document or query read by this transaction " +
  "changed before it committed. Retry the transaction.";

class GrpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.details = message;
  }
}

/** A transaction's identity, age and everything it read. */
class Transaction {
  constructor(id, age, readOnly, now) {
    this.id = id;
    this.key = Buffer.from(id).toString("hex");
    this.age = age;
    this.readOnly = readOnly;
    this.lastActiveMs = now;
    // Waiting or committing: never idle, whatever lastActiveMs says.
    this.busy = false;
    // Lost a conflict to an older transaction: its reads no longer lock, its commit aborts.
    this.wounded = false;
    /** @type {Map<string, number>} document path -> version seen */
    this.documentVersions = new Map();
    /** @type {{parent: string, structuredQuery: object, fingerprint: string}[]} */
    this.queries = [];
  }
}

/** Transaction registry, commit clock and conflict checks over an upstream FirestoreState. */
class TransactionalSemantics {
  constructor(state, options = {}) {
    this.state = state;
    this.lockIdleMs = options.lockIdleMs ?? DEFAULT_LOCK_IDLE_MS;
    this.transactionIdleMs = options.transactionIdleMs ?? DEFAULT_TRANSACTION_IDLE_MS;
    /** @type {Map<string, Transaction>} */
    this.transactions = new Map();
    // Versions count every write, deletes included, so "missing, created, deleted" is a change.
    this.documentWriteVersions = new WeakMap();
    this.lastCommitMs = 0;
    this.lastAge = 0n;
    this.waiters = new Set();
    // Production's data limits and the commit faults; the control server changes them.
    this.exemptions = options.exemptions ?? new IndexExemptions();
    // The indexes a query may use (Terraform's); a query they cannot serve is refused.
    this.queryIndexes = options.queryIndexes ?? new QueryIndexes();
    this.maxIndexedValueBytes = options.maxIndexedValueBytes;
    this.faults = options.faults ?? new CommitFaults();
  }

  begin(readOnly, retryTransactionId) {
    this.#forgetExpired();
    const age = ageOf(retryTransactionId) ?? ++this.lastAge;
    const id = new Uint8Array(16);
    new DataView(id.buffer).setBigUint64(0, age);
    id.set(crypto.randomBytes(8), 8);
    const transaction = new Transaction(id, age, readOnly, Date.now());
    this.transactions.set(transaction.key, transaction);
    return transaction;
  }

  lookup(id) {
    const transaction = this.transactions.get(Buffer.from(id).toString("hex"));
    if (!transaction) {
      throw new GrpcError(
        Status.INVALID_ARGUMENT,
        "The referenced transaction has expired or is no longer valid.",
      );
    }
    transaction.lastActiveMs = Date.now();
    return transaction;
  }

  /** Resolves the transaction a read request names, beginning one for `new_transaction`. */
  transactionForRead(request) {
    if (request.has_transaction) return { transaction: this.lookup(request.transaction) };
    if (request.has_new_transaction) {
      const options = request.new_transaction;
      const retryId = options.has_read_write ? options.read_write.retry_transaction : undefined;
      return { transaction: this.begin(options.has_read_only, retryId), isNew: true };
    }
    return { transaction: null };
  }

  /**
   * Waits until no older live transaction holds any of `paths`; younger holders are wounded.
   * Read-write transactions thus read a document one at a time, as with Firestore's locks.
   */
  async lockForRead(transaction, paths) {
    if (transaction.readOnly) return;
    transaction.busy = true;
    try {
      for (;;) {
        let olderHolder = null;
        for (const holder of this.#holders(transaction, paths)) {
          if (isOlder(holder, transaction.age, transaction)) {
            olderHolder = holder;
          } else {
            holder.wounded = true;
            this.#wakeWaiters();
          }
        }
        if (!olderHolder) return;
        await this.#waitFor(olderHolder);
      }
    } finally {
      transaction.busy = false;
      transaction.lastActiveMs = Date.now();
    }
  }

  rememberDocument(transaction, path, document) {
    if (!transaction.documentVersions.has(path)) {
      transaction.documentVersions.set(path, this.#version(document));
    }
  }

  rememberQuery(transaction, parent, structuredQuery) {
    const documents = this.state.v1Query(parent, structuredQuery);
    for (const document of documents) {
      this.rememberDocument(transaction, document.getPath(), document);
    }
    transaction.queries.push({
      parent,
      structuredQuery,
      fingerprint: this.#fingerprint(documents),
    });
  }

  end(transaction) {
    this.transactions.delete(transaction.key);
    this.#wakeWaiters();
  }

  /** Applies a commit request atomically; returns [commitDate, writeResults]. */
  async commit(request, call) {
    // CommitRequest.transaction is plain bytes (no oneof): empty means "not in a transaction".
    const transaction = request.transaction?.length ? this.lookup(request.transaction) : null;
    const writes = request.writes;
    if (transaction?.readOnly && writes.length > 0) {
      this.end(transaction);
      throw new GrpcError(Status.INVALID_ARGUMENT, "Cannot write in a read-only transaction.");
    }
    const paths = writes.map(pathOfWrite);
    let keepTransaction = false;
    try {
      if (transaction) transaction.busy = true;
      const age = transaction ? transaction.age : ++this.lastAge;
      await this.#waitForOlderHolders(transaction, age, paths);
      if (call.cancelled) throw new GrpcError(Status.CANCELLED, "Commit cancelled by the client.");
      // From here to the end everything is synchronous: no other request interleaves.
      const fault = this.faults.decide(paths.map(relativePath));
      if (fault?.kind === "fail") {
        // Refused before the backend saw it: the transaction is still usable.
        keepTransaction = true;
        throw new GrpcError(fault.code, "The service is currently unavailable (injected fault).");
      }
      if (transaction && (transaction.wounded || this.#isStale(transaction))) {
        throw new GrpcError(Status.ABORTED, CONTENTION_MESSAGE);
      }
      const commitDate = this.#nextCommitDate();
      this.#checkPreconditions(writes, paths, commitDate);
      const results = this.#applyAll(writes, paths, commitDate);
      if (fault?.kind === "drop") {
        throw new GrpcError(
          fault.code,
          fault.code === Status.DEADLINE_EXCEEDED
            ? "Deadline exceeded (injected fault: the commit was applied, its answer lost)."
            : "The service is currently unavailable (injected fault: the commit was applied).",
        );
      }
      return [commitDate, results];
    } finally {
      if (transaction && keepTransaction) {
        transaction.busy = false;
        transaction.lastActiveMs = Date.now();
        this.#wakeWaiters();
      } else if (transaction) this.end(transaction);
      else this.#wakeWaiters();
    }
  }

  #version(document) {
    return this.documentWriteVersions.get(document) ?? 0;
  }

  #fingerprint(documents) {
    return documents.map((document) => `${document.getPath()}@${this.#version(document)}`).join();
  }

  #isStale(transaction) {
    for (const [path, version] of transaction.documentVersions) {
      if (this.#version(this.state.getDocument(path)) !== version) return true;
    }
    return transaction.queries.some(
      ({ parent, structuredQuery, fingerprint }) =>
        this.#fingerprint(this.state.v1Query(parent, structuredQuery)) !== fingerprint,
    );
  }

  /** Live transactions other than `self` whose reads of any of `paths` still count. */
  *#holders(self, paths) {
    const now = Date.now();
    for (const other of this.transactions.values()) {
      if (other === self || other.readOnly || other.wounded) continue;
      if (!other.busy && now - other.lastActiveMs > this.lockIdleMs) continue;
      if (!paths.some((path) => other.documentVersions.has(path))) continue;
      if (this.#isStale(other)) continue; // it will abort anyway
      yield other;
    }
  }

  /** The oldest-first rule: a commit waits while an older transaction holds what it writes. */
  async #waitForOlderHolders(self, age, paths) {
    for (;;) {
      let olderHolder = null;
      for (const holder of this.#holders(self, paths)) {
        if (isOlder(holder, age, self)) olderHolder = holder;
      }
      if (!olderHolder) return;
      await this.#waitFor(olderHolder);
    }
  }

  /** Sleeps until some transaction ends or changes, or `holder` may have gone idle. */
  #waitFor(holder) {
    const idleLeftMs = holder.busy
      ? this.lockIdleMs
      : holder.lastActiveMs + this.lockIdleMs - Date.now();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(1, idleLeftMs + 1));
      this.waiters.add(wake);
    });
  }

  #wakeWaiters() {
    for (const wake of [...this.waiters]) wake();
  }

  #nextCommitDate() {
    // Millisecond resolution is what upstream stores, so two commits never share an update_time.
    this.lastCommitMs = Math.max(Date.now(), this.lastCommitMs + 1);
    return new Date(this.lastCommitMs);
  }

  /** Checks every write's precondition against the state the earlier writes would leave. */
  #checkPreconditions(writes, paths, commitDate) {
    const pending = new Map(); // path -> {exists, updateMs} after earlier writes of this commit
    writes.forEach((write, index) => {
      const path = paths[index];
      const document = this.state.getDocument(path);
      const current = pending.get(path) ?? {
        exists: document.metadata.hasExist,
        updateMs: document.metadata.hasExist ? document.metadata.updatedAt.getTime() : null,
      };
      if (write.has_current_document) {
        const precondition = write.current_document;
        if (precondition.has_exists && precondition.exists && !current.exists) {
          throw new GrpcError(Status.NOT_FOUND, `No document to update: ${path}`);
        }
        if (precondition.has_exists && !precondition.exists && current.exists) {
          throw new GrpcError(Status.ALREADY_EXISTS, `Document already exists: ${path}`);
        }
        if (precondition.has_update_time) {
          const expectedMs = timestampToMs(precondition.update_time);
          if (!current.exists || current.updateMs !== expectedMs) {
            throw new GrpcError(
              Status.FAILED_PRECONDITION,
              `The document ${path} was last updated at another time than the precondition's ` +
                `update_time (or does not exist).`,
            );
          }
        }
      }
      pending.set(
        path,
        write.has_delete
          ? { exists: false, updateMs: null }
          : { exists: true, updateMs: commitDate.getTime() },
      );
    });
  }

  #applyAll(writes, paths, commitDate) {
    const documents = [...new Set(paths)].map((path) => this.state.getDocument(path));
    // Upstream replaces metadata and fields with new immutable objects, so keeping the old
    // references is a complete snapshot of what a write can change.
    const saved = documents.map((document) => [document, document.metadata, document.fields]);
    let results;
    try {
      results = writes.map((write) => {
        // Firestore's set() without merge replaces the document; upstream would merge.
        if (write.has_update && !write.has_update_mask) {
          this.state.getDocument(write.update.name).fields = {};
        }
        return this.state.writeV1Document(commitDate, write);
      });
      for (const document of documents) {
        if (!document.metadata.hasExist) continue;
        const object = document.toV1DocumentObject();
        checkDocument(relativePath(object.name), object, this.exemptions, {
          maxIndexedValueBytes: this.maxIndexedValueBytes,
        });
      }
    } catch (error) {
      for (const [document, metadata, fields] of saved) {
        document.metadata = metadata;
        document.fields = fields;
      }
      if (Number.isInteger(error.code)) throw new GrpcError(error.code, error.message);
      throw new GrpcError(Status.INVALID_ARGUMENT, String(error.message ?? error));
    }
    for (const document of documents) {
      this.documentWriteVersions.set(document, commitDate.getTime());
    }
    return results;
  }

  #forgetExpired() {
    const now = Date.now();
    for (const transaction of this.transactions.values()) {
      if (!transaction.busy && now - transaction.lastActiveMs > this.transactionIdleMs) {
        this.transactions.delete(transaction.key);
      }
    }
  }
}

// Ages can tie when a client reuses another attempt's id as retry_transaction; the id breaks the
// tie so that "older" stays a total order and two commits never wait for each other.
function isOlder(other, age, self) {
  if (other.age !== age) return other.age < age;
  return self !== null && other.key < self.key;
}

function ageOf(retryTransactionId) {
  if (!retryTransactionId || retryTransactionId.length !== 16) return null;
  return Buffer.from(retryTransactionId).readBigUInt64BE(0);
}

function timestampToMs(timestamp) {
  return Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6);
}

/** "projects/p/databases/d/documents/a/b" -> "a/b". */
function relativePath(name) {
  const marker = "/documents/";
  const at = name.indexOf(marker);
  return at < 0 ? name : name.slice(at + marker.length);
}

function pathOfWrite(write) {
  if (write.has_update) return write.update.name;
  if (write.has_delete) return write.delete;
  if (write.has_transform) return write.transform.document;
  throw new GrpcError(Status.INVALID_ARGUMENT, "A write needs update, delete or transform.");
}

function sendUnaryError(callback, error) {
  if (error instanceof GrpcError) return callback(error, null);
  console.error(error);
  return callback(new GrpcError(Status.INTERNAL, String(error?.message ?? error)), null);
}

function sendStreamError(call, error) {
  const known = error instanceof GrpcError || error instanceof QueryRefusedError;
  if (!known) console.error(error);
  const code = known ? error.code : Status.INTERNAL;
  call.emit("error", new GrpcError(code, String(error?.message ?? error)));
}

/**
 * Gives an upstream FirestoreServer Firestore's transaction and commit semantics.
 * Call before the server starts serving; returns the TransactionalSemantics in use.
 */
function installTransactionalSemantics(firestoreServer, options = {}) {
  const semantics = new TransactionalSemantics(firestoreServer.state, options);
  // Upstream keeps its gRPC server and handler table private; a change made upstream would
  // live inside FirestoreServiceV1Impl instead of replacing handlers here.
  const grpcServer = firestoreServer.server;
  const handlers = grpcServer.handlers;
  const replace = (method, makeHandler) => {
    const path = `${SERVICE_PATH}/${method}`;
    const upstream = handlers.get(path);
    if (!upstream) throw new Error(`upstream emulator has no handler for ${path}`);
    grpcServer.unregister(path);
    grpcServer.register(
      path,
      makeHandler(upstream.func),
      upstream.serialize,
      upstream.deserialize,
      upstream.type,
    );
  };

  replace("BeginTransaction", () => (call, callback) => {
    try {
      const request = call.request;
      const options = request.has_options ? request.options : null;
      const retryId = options?.has_read_write ? options.read_write.retry_transaction : undefined;
      const transaction = semantics.begin(Boolean(options?.has_read_only), retryId);
      callback(null, BeginTransactionResponse.fromObject({ transaction: transaction.id }));
    } catch (error) {
      sendUnaryError(callback, error);
    }
  });

  replace("Rollback", () => (call, callback) => {
    const transaction = semantics.transactions.get(
      Buffer.from(call.request.transaction).toString("hex"),
    );
    if (transaction) semantics.end(transaction);
    callback(null, Empty.fromObject({}));
  });

  replace("Commit", () => (call, callback) => {
    semantics.commit(call.request, call).then(
      ([commitDate, results]) =>
        callback(
          null,
          CommitResponse.fromObject({
            commit_time: TimestampFromDate(commitDate).toObject(),
            write_results: results.map((result) => result.toObject()),
          }),
        ),
      (error) => sendUnaryError(callback, error),
    );
  });

  replace("BatchGetDocuments", () => async (call) => {
    try {
      const { transaction, isNew } = semantics.transactionForRead(call.request);
      if (isNew) call.write(BatchGetDocumentsResponse.fromObject({ transaction: transaction.id }));
      if (transaction) await semantics.lockForRead(transaction, call.request.documents);
      const readTime = TimestampFromDate(new Date()).toObject();
      for (const path of call.request.documents) {
        const document = semantics.state.getDocument(path);
        if (transaction) semantics.rememberDocument(transaction, path, document);
        const exists = document.metadata.hasExist;
        call.write(
          BatchGetDocumentsResponse.fromObject({
            found: exists ? document.toV1DocumentObject() : undefined,
            missing: exists ? undefined : path,
            read_time: readTime,
          }),
        );
      }
      call.end();
    } catch (error) {
      sendStreamError(call, error);
    }
  });

  // Queries keep upstream's evaluation; inside a transaction their results are remembered and
  // upstream is handed our transaction id to echo.
  for (const [method, queryOf] of [
    ["RunQuery", (request) => request.structured_query],
    ["RunAggregationQuery", (request) => request.structured_aggregation_query.structured_query],
  ]) {
    replace(method, (upstreamHandler) => (call) => {
      try {
        semantics.queryIndexes.check(queryOf(call.request), semantics.exemptions);
        const { transaction } = semantics.transactionForRead(call.request);
        if (transaction) {
          semantics.rememberQuery(transaction, call.request.parent, queryOf(call.request));
          call.request.transaction = transaction.id;
        }
      } catch (error) {
        sendStreamError(call, error);
        return;
      }
      upstreamHandler(call);
    });
  }
  return semantics;
}

module.exports = { installTransactionalSemantics, TransactionalSemantics };
