// Local Firestore for tests and the local stack: @firestore-emulator/server on a port.
// Usage: node server.js <port>
const { FirestoreServer } = require("@firestore-emulator/server");

async function main() {
  const port = Number(process.argv[2] || 8080);
  const server = new FirestoreServer();
  await server.start(port);
  console.log(`firestore emulator listening on 127.0.0.1:${port}`);
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
