// A forced interleaving for tests: the next `parties` transactional reads of documents matching
// `path_pattern` wait for each other, so all of them read before any of their transactions can
// commit. Works with and without the semantics layer (the plain emulator's races become
// deterministic); a barrier not filled within `timeout_ms` lets its readers go and says so.
"use strict";

class ReadBarrier {
  constructor() {
    this.armed = null;
    this.history = [];
  }

  arm({ parties, path_pattern: pathPattern, timeout_ms: timeoutMs = 10_000 }) {
    if (!Number.isInteger(parties) || parties < 2) {
      throw new TypeError("'parties' must be an integer of at least 2");
    }
    if (typeof pathPattern !== "string") throw new TypeError("'path_pattern' is required");
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new TypeError("'timeout_ms' must be a positive integer");
    }
    this.#release("replaced");
    this.armed = { parties, pattern: new RegExp(pathPattern), timeoutMs, waiting: [], timer: null };
    return this.state();
  }

  /** Resolves at once unless armed and one of `relativePaths` matches; then when filled. */
  pass(relativePaths) {
    const armed = this.armed;
    if (!armed || !relativePaths.some((path) => armed.pattern.test(path))) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      armed.waiting.push(resolve);
      if (armed.waiting.length >= armed.parties) this.#release("filled");
      else if (!armed.timer) armed.timer = setTimeout(() => this.#release("timed_out"), armed.timeoutMs);
    });
  }

  state() {
    return {
      armed: this.armed ? { parties: this.armed.parties, waiting: this.armed.waiting.length } : null,
      history: this.history,
    };
  }

  #release(outcome) {
    const armed = this.armed;
    if (!armed) return;
    this.armed = null;
    clearTimeout(armed.timer);
    if (armed.waiting.length) this.history.push({ outcome, readers: armed.waiting.length });
    for (const resolve of armed.waiting) resolve();
  }
}

/** Puts `barrier` in front of the server's BatchGetDocuments handler (whichever is installed). */
function installReadBarrier(firestoreServer, barrier) {
  const grpcServer = firestoreServer.server;
  const path = "/google.firestore.v1.Firestore/BatchGetDocuments";
  const current = grpcServer.handlers.get(path);
  grpcServer.unregister(path);
  grpcServer.register(
    path,
    async (call) => {
      const request = call.request;
      if (request.has_transaction || request.has_new_transaction) {
        await barrier.pass(request.documents.map((name) => name.split("/documents/")[1] ?? name));
      }
      current.func(call);
    },
    current.serialize,
    current.deserialize,
    current.type,
  );
}

module.exports = { ReadBarrier, installReadBarrier };
