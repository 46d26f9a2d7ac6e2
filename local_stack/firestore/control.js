// The control API of the local Firestore (HTTP/JSON on its own loopback port): commit faults,
// index exemptions and the indexed-value limit, changed at runtime by tests and the stack.
"use strict";

const http = require("node:http");
const { FaultConfigError } = require("./faults");
const { QueryIndexes } = require("./indexes");
const { IndexExemptions } = require("./limits");

const MAX_BODY_BYTES = 1_048_576;

function readJson(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) reject(new RangeError("request body too large"));
      else chunks.push(chunk);
    });
    request.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch (error) {
        reject(new SyntaxError(`body is not JSON: ${error.message}`));
      }
    });
    request.on("error", reject);
  });
}

/**
 * Serves the control routes: the read barrier always, the layer's routes when `semantics` is
 * given; `initialFaults` is what POST /reset restores.
 */
function createControlServer({ semantics, barrier, initialFaults = {} }) {
  const common = {
    "GET /health": () => ({ status: "ok", semantics: semantics !== null }),
    "GET /barrier": () => barrier.state(),
    "POST /barrier": (body) => barrier.arm(body),
  };
  const layered = {
    "GET /faults": () => semantics.faults.config,
    "POST /faults": (body) => {
      semantics.faults.configure(body);
      return semantics.faults.config;
    },
    "POST /reset": () => {
      semantics.faults.configure(initialFaults);
      return { status: "reset" };
    },
    "GET /stats": () => semantics.faults.stats(),
    "GET /index-exemptions": () => ({ exemptions: semantics.exemptions }),
    "PUT /index-exemptions": (body) => {
      semantics.exemptions = new IndexExemptions(body.exemptions ?? []);
      return { exemptions: semantics.exemptions };
    },
    "GET /query-indexes": () => semantics.queryIndexes,
    "PUT /query-indexes": (body) => {
      semantics.queryIndexes = new QueryIndexes(body);
      return semantics.queryIndexes;
    },
    "GET /limits": () => ({ max_indexed_value_bytes: semantics.maxIndexedValueBytes ?? 1500 }),
    "PUT /limits": (body) => {
      const value = body.max_indexed_value_bytes;
      if (value !== null && !(Number.isInteger(value) && value > 0)) {
        throw new TypeError("'max_indexed_value_bytes' must be a positive integer or null");
      }
      semantics.maxIndexedValueBytes = value;
      return { max_indexed_value_bytes: value };
    },
  };
  const routes = semantics ? { ...common, ...layered } : common;
  return http.createServer(async (request, response) => {
    const send = (status, body) => {
      const content = JSON.stringify(body);
      response.writeHead(status, {
        "Content-Type": "application/json",
        "Content-Length": Buffer.byteLength(content),
      });
      response.end(content);
    };
    const route = routes[`${request.method} ${new URL(request.url, "http://x").pathname}`];
    if (!route) return send(404, { detail: `no control route ${request.method} ${request.url}` });
    try {
      return send(200, route(await readJson(request)));
    } catch (error) {
      const known = [FaultConfigError, TypeError, RangeError, SyntaxError];
      if (known.some((kind) => error instanceof kind)) return send(400, { detail: error.message });
      console.error(error);
      return send(500, { detail: String(error?.message ?? error) });
    }
  });
}

module.exports = { createControlServer };
