// Local Firestore for tests and the local stack: @firestore-emulator/server on a loopback port,
// with Firestore's transaction and commit semantics (transactional.js) unless
// FIRESTORE_SEMANTICS=off, which serves plain upstream behaviour (the control in tests).
// Usage: node server.js <port> [<control port>]
// The control port serves control.js: the read barrier always, commit faults and index
// exemptions with the layer.
// FIRESTORE_FAULTS (JSON) sets the initial commit faults, FIRESTORE_INDEX_EXEMPTIONS (a JSON
// list of {collection, field}) the single-field index exemptions, FIRESTORE_QUERY_INDEXES
// (JSON {exempt, composite}, collections may hold `*`) the indexes queries are held to.
"use strict";

const { ServerCredentials } = require("@grpc/grpc-js");
const { FirestoreServer } = require("@firestore-emulator/server");
const { ReadBarrier, installReadBarrier } = require("./barrier");
const { createControlServer } = require("./control");
const { CommitFaults } = require("./faults");
const { QueryIndexes } = require("./indexes");
const { IndexExemptions } = require("./limits");
const { installTransactionalSemantics } = require("./transactional");

function bindLoopback(grpcServer, port) {
  return new Promise((resolve, reject) => {
    grpcServer.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    );
  });
}

async function main() {
  const port = Number(process.argv[2] || 8080);
  const controlPort = process.argv[3] ? Number(process.argv[3]) : null;
  const server = new FirestoreServer();
  const initialFaults = JSON.parse(process.env.FIRESTORE_FAULTS || "{}");
  const semantics =
    process.env.FIRESTORE_SEMANTICS === "off"
      ? null
      : installTransactionalSemantics(server, {
          faults: new CommitFaults(initialFaults),
          exemptions: new IndexExemptions(
            JSON.parse(process.env.FIRESTORE_INDEX_EXEMPTIONS || "[]"),
          ),
          queryIndexes: new QueryIndexes(JSON.parse(process.env.FIRESTORE_QUERY_INDEXES || "{}")),
        });
  const barrier = new ReadBarrier();
  installReadBarrier(server, barrier);
  let control = null;
  if (controlPort !== null) {
    control = createControlServer({ semantics, barrier, initialFaults });
    await new Promise((resolve, reject) => {
      control.once("error", reject);
      control.listen(controlPort, "127.0.0.1", resolve);
    });
  }
  // Upstream's start() binds 0.0.0.0; a test emulator has no business outside loopback.
  await bindLoopback(server.server, port);
  console.log(`firestore emulator listening on 127.0.0.1:${port}`);
  const stop = () => {
    // Close the listening socket first: exiting alone leaves it open for a moment after the
    // main thread is gone, and callers take a closed port as "the emulator has stopped".
    server.server.forceShutdown();
    control?.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
