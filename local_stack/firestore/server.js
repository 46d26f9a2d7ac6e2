// Local Firestore for tests and the local stack: @firestore-emulator/server on a loopback port,
// with Firestore's transaction and commit semantics (transactional.js) unless
// FIRESTORE_SEMANTICS=off, which serves plain upstream behaviour (the control in tests).
// Usage: node server.js <port>
"use strict";

const { ServerCredentials } = require("@grpc/grpc-js");
const { FirestoreServer } = require("@firestore-emulator/server");
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
  const server = new FirestoreServer();
  if (process.env.FIRESTORE_SEMANTICS !== "off") installTransactionalSemantics(server);
  // Upstream's start() binds 0.0.0.0; a test emulator has no business outside loopback.
  await bindLoopback(server.server, port);
  console.log(`firestore emulator listening on 127.0.0.1:${port}`);
  const stop = () => {
    // Close the listening socket first: exiting alone leaves it open for a moment after the
    // main thread is gone, and callers take a closed port as "the emulator has stopped".
    server.server.forceShutdown();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
