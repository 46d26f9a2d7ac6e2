"""ingest_webhook: HTTP endpoint SRP calls back; status goes into the task's Firestore record."""

from __future__ import annotations

import flask
import functions_framework

from srp_bundle import log, wiring
from srp_bundle.callback_auth import REQUEST_ID_PARAM, TOKEN_HEADER
from srp_bundle.callbacks import MAX_CALLBACK_BYTES

services = wiring.services_for("ingest_webhook")
log.configure()


@functions_framework.http
def ingest_webhook(request: flask.Request) -> flask.Response:
    """Answer SRP: 2xx once recorded (duplicates too), 4xx for what must not be retried."""
    request_id = request.args.get(REQUEST_ID_PARAM)
    trace = log.trace_field(
        services.settings.project_id,
        request.headers.get("X-Cloud-Trace-Context") or request.headers.get("traceparent"),
    )
    with log.bind(request_id=request_id, **trace):
        # Read one byte past the limit so an oversized body is refused without buffering it.
        body = request.stream.read(MAX_CALLBACK_BYTES + 1)
        reply = services.ingestor.ingest(
            request.method, request_id, request.headers.get(TOKEN_HEADER), body
        )
        return flask.make_response(flask.jsonify(reply.body), reply.status_code)
